"""Live: a SYN flood from one source, far faster than the per-source limit (`overload:`),
while a legitimate client keeps fetching a page through the same worker. The flood's SYNs
past the limit are dropped by the kernel before the queue (counted, never queued), the
client's connections all succeed, no worker restarts. Counts only, nothing timed.

Own topology (namespaces prefixed "ovl-"): the client namespace has a second address,
10.1.0.3, the flood's source; the legitimate client is 10.1.0.2.
"""
import json
import subprocess
import sys

import pytest

from datapath import REPO, appliances, curl, http_servers, topology_fixture, wait_for

pytestmark = pytest.mark.netns

topo = topology_fixture("ovl", client_aliases=1)

RULES = """\
default_action: pass
rules:
  - {id: 1, action: drop, proto: tcp, http_host: blocked.example}
"""
RATE, BURST = 50, 100                  # new flows per second (and at once) from one source
SYNS, SYN_RATE = 30_000, 10_000        # the flood: 200x the limit
FETCHES = 40


@pytest.fixture
def appliance(topo, tmp_path):
    yield from appliances(topo, tmp_path, RULES)


def _limited(a):
    """Packets the source-limit rule dropped (iptables-save -c counters of our chain)."""
    out = a.topo.ex(a.topo.fw, "iptables-nft-save", "-c").stdout
    return sum(int(line[1:].split(":")[0]) for line in out.splitlines()
               if line.startswith("[") and "-m hashlimit" in line)


def test_a_flood_from_one_source_is_dropped_before_the_queue_and_the_client_gets_through(topo, tmp_path, appliance):
    a = appliance(workers=1, extra=f"overload: {{new_flows_per_source: {RATE}, new_flows_burst: {BURST}}}\n").start()
    assert "--hashlimit-above 50/sec" in a.iptables_save()
    workers = a.worker_pids()
    with http_servers(topo, tmp_path, [80]):
        assert curl(topo, "http://10.2.0.2/hello").stdout == "200"
        # what one fetch costs the queue (the handshake and request until the flow is decided)
        q0 = a.queued()
        assert all(curl(topo, "http://10.2.0.2/hello").stdout == "200" for _ in range(10))
        per_fetch = (a.queued() - q0) / 10
        queued_before = a.queued()
        flood = subprocess.Popen(["ip", "netns", "exec", topo.client, sys.executable, "-m", "bench.nsload",
                                  "synflood", "10.2.0.2", "80", str(SYNS), str(SYN_RATE), "10.1.0", "3", "3"],
                                 cwd=REPO, stdout=subprocess.PIPE, text=True)
        codes = [curl(topo, "http://10.2.0.2/hello", max_time=5).stdout for _ in range(FETCHES)]
        while flood.poll() is None:    # the flood outlasted the fetches: keep the client busy
            codes.append(curl(topo, "http://10.2.0.2/hello", max_time=5).stdout)
        sent = json.loads(flood.communicate(timeout=60)[0])
        queued = a.queued() - queued_before
        limited = _limited(a)
    ok = codes.count("200")
    print(f"sent {sent}, queued {queued}, limited {limited}, fetches {ok}/{len(codes)}, {per_fetch} queued each")
    assert sent["sent"] == SYNS
    seconds = sent["seconds"]
    assert ok >= 0.95 * len(codes), codes
    # what reached the worker: the client's fetches and the flood's burst plus its rate for as
    # long as it ran (each admitted SYN: the SYN, the server's SYN/ACK, the client's RST) --
    # not the flood itself
    admitted = BURST + RATE * (seconds + 2)
    assert queued <= 3 * admitted + 2 * per_fetch * len(codes), (queued, admitted, per_fetch, len(codes))
    assert limited >= SYNS - admitted, (limited, SYNS)
    assert a.worker_pids() == workers
    # the supervisor never saw its chain edited (the limit rule lists as installed)
    wait_for(lambda: "running:" in a.log_text())
    assert "re-installing" not in a.log_text()


def test_a_flood_back_on_five_tuples_conntrack_knows_is_limited_too(topo, tmp_path, appliance):
    """From 10.1.0.77 (no one's: the server's SYN/ACKs die unanswered at the appliance, so the
    admitted SYNs' entries stay in SYN_RECV) over 200 source ports: after the burst, every
    SYN lands on a 5-tuple conntrack has seen a reply for -- ESTABLISHED to conntrack, a new
    flow to a worker. A limit on ctstate NEW alone would queue all of them."""
    a = appliance(workers=1, extra=f"overload: {{new_flows_per_source: {RATE}, new_flows_burst: {BURST}}}\n").start()
    with http_servers(topo, tmp_path, [80]):
        queued_before = a.queued()
        r = subprocess.run(["ip", "netns", "exec", topo.client, sys.executable, "-m", "bench.nsload",
                            "synflood", "10.2.0.2", "80", str(SYNS), str(SYN_RATE), "10.1.0", "77", "77", "200"],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
        sent = json.loads(r.stdout)
        queued = a.queued() - queued_before
        limited = _limited(a)
    print(f"sent {sent}, queued {queued}, limited {limited}")
    admitted = BURST + RATE * (sent["seconds"] + 2)
    assert queued <= 2 * admitted, (queued, admitted)     # each admitted SYN and the server's SYN/ACK
    assert limited >= SYNS - admitted, (limited, SYNS)
