"""Live packet capture: `appliance run` with a pcap_log writes an alerted flow's packets
(its handshake from the ring, the request that alerted, the answer) to its worker's pcapng,
findable from the EVE alert's flow_id; a quiet flow is not there. `appliance capture` on
the inside and outside interfaces with a filter, bounded by time and by size, leaves the
datapath (netfilter, the interfaces' promiscuity) as it was."""
import glob
import os
import shutil
import subprocess
import sys

import pytest

from datapath import appliances, curl, topology_fixture, wait_for
from test_datapath import servers, url  # noqa: F401  (fixtures)

pytestmark = pytest.mark.netns

dp_topo = topology_fixture("i11pc")        # namespaces of this file's own (servers uses dp_topo)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

RULES = """\
default_action: pass
rules:
  - {id: 3001, msg: "pcap me", action: alert, proto: tcp, dst_port: 8080, http_host: 10.2.0.2}
"""


@pytest.fixture
def appliance(dp_topo, servers, tmp_path):  # noqa: F811
    yield from appliances(dp_topo, tmp_path, RULES)


def tshark(path, *fields):
    args = [a for f in fields for a in ("-e", f)]
    r = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-E", "separator=|", *args],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [line.split("|") for line in r.stdout.splitlines()]


@pytest.fixture(autouse=True)
def _tools():
    for tool in ("tshark", "tcpdump"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (dev/setup.sh)")


def test_alerted_flow_packets_in_the_pcap_log_found_from_its_eve_event(dp_topo, appliance, tmp_path):
    t = dp_topo
    a = appliance(extra="pcap_log: {dir: pcaps}\n").start()
    assert curl(t, url(t, 8080)).returncode == 0          # alerts on its request
    assert curl(t, url(t, 8082)).returncode == 0          # no rule: not in the log
    alert = wait_for(lambda: a.events("alert"), what="the alert")[0]
    assert alert["alert"]["signature_id"] == 3001
    quiet = wait_for(lambda: [e for e in a.events("http") if e["dest_port"] == 8082], what="the quiet flow's http")
    # the writer gathers blocks; the worker's tick writes them: an idle log is readable while it runs
    wait_for(lambda: [f for f in glob.glob(str(tmp_path / "pcaps" / "q*.pcapng"))
                      if [r for r in tshark(f, "frame.comment") if r[0] == f"flow_id={alert['flow_id']}"]],
             what="the alerted flow's packets in the file while the worker runs")
    assert a.stop() == 0
    files = sorted(glob.glob(str(tmp_path / "pcaps" / "q*.pcapng")))
    assert files, os.listdir(tmp_path)
    rows = [r for f in files for r in tshark(f, "frame.comment", "tcp.flags", "tcp.srcport", "tcp.dstport",
                                                "http.request.uri", "http.response.code")]
    mine = [r for r in rows if r[0] == f"flow_id={alert['flow_id']}"]
    flags = [int(r[1], 16) for r in mine]
    assert flags[0] == 0x02                                # the SYN, held in the ring before the alert
    assert [r[4] for r in mine if r[4]] == ["/hello"]      # the request that alerted
    assert "200" in [r[5] for r in mine]                   # the answer, still inspected (http log on)
    assert all("8080" in (r[2], r[3]) for r in mine)
    assert not [r for r in rows if r[0] == f"flow_id={quiet[0]['flow_id']}" or "8082" in (r[2], r[3])]
    stats = [e for e in a.events("stats")]
    assert all(e["stats"]["appliance"]["pcap_log"]["lost"] == 0 for e in stats)


def capture(t, cfg, *args):
    return subprocess.Popen(["ip", "netns", "exec", t.fw, sys.executable, "-m", "appliance", "capture",
                             "--config", str(cfg), *map(str, args)], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": REPO})


def while_running(proc, action, timeout=30):
    """Run `action` again and again until the capture ends (so no packet depends on when
    tcpdump began listening); the capture's own bounds must end it."""
    try:
        proc.wait(0.3)
    except subprocess.TimeoutExpired:
        pass
    deadline = timeout
    while proc.poll() is None and deadline > 0:
        action()
        deadline -= 1
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return err


def datapath_state(t):
    def rules(cmd):
        return [line for line in t.ex(t.fw, cmd).stdout.splitlines() if not line.startswith("#")]   # no date
    return rules("iptables-nft-save"), rules("ip6tables-nft-save"), t.ex(t.fw, "ip", "-d", "link", "show").stdout


def test_capture_on_both_interfaces_with_a_filter_bounded_by_time_and_size(dp_topo, appliance, tmp_path):
    t = dp_topo
    a = appliance().start()
    before = datapath_state(t)
    for role, dev in (("inside", t.inside), ("outside", t.outside)):
        out = tmp_path / f"{role}.pcapng"
        proc = capture(t, a.config, "--iface", role, "--filter", "tcp port 8080", "--duration", 3, "--out", out)
        links = []                                         # the interfaces while the capture runs
        err = while_running(proc, lambda: (curl(t, url(t, 8080)), curl(t, url(t, 8082)),
                                           links.append(t.ex(t.fw, "ip", "-d", "link", "show", dev).stdout)))
        assert links and all("promiscuity 0" in x for x in links)   # not put in promiscuous mode
        assert "3 s passed" in err and f"capture: {dev}:" in err, err
        rows = tshark(out, "frame.interface_name", "ip.src", "ip.dst", "tcp.srcport", "tcp.dstport")
        assert rows and {r[0] for r in rows} == {dev}
        assert all("8080" in (r[3], r[4]) for r in rows)                       # the filter held
        assert {(r[1], r[2]) for r in rows} == {(t.client_ip, t.server_ip), (t.server_ip, t.client_ip)}
    # size: a 4 MiB download on a 16 KiB bound ends the capture at the bound, well before its time
    out = tmp_path / "bounded.pcapng"
    proc = capture(t, a.config, "--iface", "inside", "--filter", "tcp port 8080", "--duration", 60,
                   "--max-bytes", "16K", "--out", out)
    err = while_running(proc, lambda: curl(t, url(t, 8080, "mid"), max_time=10), timeout=60)
    assert "size bound (16384 bytes)" in err, err
    assert 0 < os.path.getsize(out) <= 16384
    assert tshark(out, "frame.number")
    assert datapath_state(t) == before                     # no rule, no promiscuity changed
    assert "promiscuity 0" in before[2]
    # a filter tcpdump cannot parse: said, exit 2, nothing captured
    r = capture(t, a.config, "--iface", "outside", "--filter", "tcp port eighty", "--duration", 1,
                "--out", tmp_path / "bad.pcapng")
    _, err = r.communicate(timeout=30)
    assert r.returncode == 2 and "appliance capture:" in err and not (tmp_path / "bad.pcapng").exists()
    assert a.stop() == 0
