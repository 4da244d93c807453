"""`appliance run` on a real kernel: NFQUEUE workers, verdicts, offload, failure modes,
signals, with real clients (curl, nc, python sockets, scapy) across three namespaces."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from datapath import UDP_COUNT, UDP_PROBE, appliances, curl, wait_for

pytestmark = pytest.mark.netns

RULES = """\
default_action: pass
rules:
  - {id: 1001, msg: "block tcp 8081", action: drop, proto: tcp, dst_port: 8081, log: true}
  - {id: 1002, msg: "reject tcp 8082", action: reject, proto: tcp, dst_port: 8082, log: true}
  - {id: 1003, msg: "reject udp 9999", action: reject, proto: udp, dst_port: 9999, log: true}
"""
BIG = 16 * 1024 * 1024


@pytest.fixture(scope="module")
def servers(dp_topo, tmp_path_factory):
    """HTTP on 8080/8081/8082 (one file of BIG bytes) and a UDP echo on 9999, in the server ns."""
    root = tmp_path_factory.mktemp("www")
    (root / "big").write_bytes(os.urandom(1024) * (BIG // 1024))
    (root / "mid").write_bytes(os.urandom(1024) * 4096)
    (root / "hello").write_text("hello from the server\n")
    procs = []
    for port in (8080, 8081, 8082):
        procs.append(subprocess.Popen(["ip", "netns", "exec", dp_topo.server, sys.executable, "-m", "http.server",
                                       str(port), "--bind", "::", "--directory", str(root)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    procs.append(subprocess.Popen(["ip", "netns", "exec", dp_topo.server, "socat",
                                   "UDP6-RECVFROM:9999,fork,reuseaddr", "EXEC:cat"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    wait_for(lambda: all(f":{p} " in dp_topo.ex(dp_topo.server, "ss", "-ltnH").stdout for p in (8080, 8081, 8082)),
             what="http servers")
    yield root
    for p in procs:
        p.kill()
        p.wait()


@pytest.fixture
def appliance(dp_topo, servers, tmp_path):
    yield from appliances(dp_topo, tmp_path, RULES)


def url(topo, port, path="hello", v6=False):
    host = f"[{topo.server_ip6}]" if v6 else topo.server_ip
    return f"http://{host}:{port}/{path}"


def test_allow_drop_reject_and_alerts(dp_topo, appliance):
    a = appliance().start()
    t = dp_topo
    # allowed, both families
    assert curl(t, url(t, 8080)).stdout == "200"
    assert curl(t, url(t, 8080, v6=True), v6=True).stdout == "200"
    # dropped: the connection never completes
    r = curl(t, url(t, 8081), max_time=2)
    assert r.returncode == 28, r
    # rejected: refused at once (a RST from the appliance), IPv4 and IPv6
    for host in (t.server_ip, t.server_ip6):
        r = t.ex(t.client, "nc", "-zv", "-w", "3", host, "8082")
        assert r.returncode == 1 and "refused" in r.stderr.lower(), r
    # UDP reject: ICMP / ICMPv6 administratively prohibited; Linux reports them to the
    # client socket as EHOSTUNREACH (113) and EACCES (13)
    for host, errno in ((t.server_ip, 113), (t.server_ip6, 13)):
        out = t.ex(t.client, sys.executable, "-c", UDP_PROBE, host, "9999").stdout
        assert out.startswith(f"error {errno} "), (host, out)
    alerts = wait_for(lambda: len({e["alert"]["signature_id"] for e in a.events("alert")}) >= 3 and a.events("alert"),
                      what="alerts in EVE")
    by_sid = {}
    for e in alerts:
        by_sid.setdefault(e["alert"]["signature_id"], e)
    drop = by_sid[1001]
    assert drop["src_ip"] == t.client_ip and drop["dest_ip"] == t.server_ip and drop["dest_port"] == 8081
    assert drop["in_iface"] == "eth0" and drop["proto"] == "TCP"
    assert by_sid[1002]["dest_port"] == 8082 and by_sid[1003]["proto"] == "UDP"
    assert a.stop() == 0
    # open mode: a clean stop queues nothing any more and traffic forwards uninspected; our
    # chains keep only the offloaded verdicts (test_control.py: a dropped flow stays dropped)
    assert "NFQUEUE" not in a.iptables_save() and "NFQUEUE" not in a.iptables_save(v6=True)
    assert curl(t, url(t, 8081)).stdout == "200"


def test_offload_keeps_decided_flows_in_the_kernel(dp_topo, appliance):
    t = dp_topo
    a = appliance().without_protocol_logs().start()
    before = a.queued()
    r = curl(t, url(t, 8080, "big"), max_time=30)
    assert r.stdout == "200", r
    offloaded = a.queued() - before
    # the whole 16 MB transfer cost a handful of queued packets: the kernel carried the rest
    assert offloaded < 20, offloaded
    ct = t.ex(t.fw, "conntrack", "-L", "-p", "tcp", "--dport", "8080").stdout
    assert f"mark={0x1000}" in ct, ct                     # the pass bit of the default mark_mask 0x3000
    # SIGUSR1: every worker writes a stats event with its capture counters
    a.signal(signal.SIGUSR1)
    stats = wait_for(lambda: len(a.events("stats")) >= 2 and a.events("stats"), what="stats events")
    assert sum(s["stats"]["capture"]["kernel_packets"] for s in stats) >= 1
    a.stop()

    # the same transfer without offload: every packet goes through a worker
    t.ex(t.fw, "conntrack", "-F")
    b = appliance(offload=False).start()
    before = b.queued()
    assert curl(t, url(t, 8080, "mid"), max_time=60).stdout == "200"
    assert b.queued() - before > 60                  # 4 MB is at least 64 GSO super-packets
    b.stop()


def _background_download(t, rate="4M"):
    return subprocess.Popen(["ip", "netns", "exec", t.client, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                             "--max-time", "40", "--limit-rate", rate, url(t, 8080, "big")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_kill9_fail_open_then_restart(dp_topo, appliance):
    t = dp_topo
    a = appliance(failure_mode="open").start()
    dl = _background_download(t)
    time.sleep(1)
    os.kill(a.proc.pid, signal.SIGKILL)
    a.proc.wait()
    wait_for(lambda: not t.ex(t.fw, "cat", "/proc/net/netfilter/nfnetlink_queue").stdout.strip(),
             what="workers gone with the supervisor")
    # open: new connections pass (queue bypass), even to the dropped port; the offloaded transfer completes
    assert curl(t, url(t, 8080)).stdout == "200"
    assert curl(t, url(t, 8081)).stdout == "200"
    out, err = dl.communicate(60)
    assert out == "200", err
    # restart: inspection is back and the FORWARD jump is not duplicated
    t.ex(t.fw, "conntrack", "-F")
    a.start()
    assert a.iptables_save().count("-j APPLIANCE-FWD") == 1
    assert a.iptables_save(v6=True).count("-j APPLIANCE-FWD") == 1
    assert curl(t, url(t, 8081), max_time=2).returncode == 28
    a.stop()


def test_kill9_fail_closed(dp_topo, appliance):
    t = dp_topo
    a = appliance(failure_mode="closed", workers=1).start()
    dl = _background_download(t)
    time.sleep(1)
    os.kill(a.proc.pid, signal.SIGKILL)
    a.proc.wait()
    wait_for(lambda: not t.ex(t.fw, "cat", "/proc/net/netfilter/nfnetlink_queue").stdout.strip(),
             what="worker gone with the supervisor")
    # closed: new connections fail; the flow already offloaded keeps its kernel verdict
    assert curl(t, url(t, 8080), max_time=2).returncode == 28
    out, err = dl.communicate(60)
    assert out == "200", err
    a.start()
    assert a.iptables_save().count("-j APPLIANCE-FWD") == 1
    assert curl(t, url(t, 8080)).stdout == "200"
    # a clean stop in closed mode keeps the chains: still dropping
    assert a.stop() == 0
    assert "APPLIANCE-FWD" in a.iptables_save()
    assert curl(t, url(t, 8080), max_time=2).returncode == 28


def test_reload_keeps_old_rules_on_error_and_applies_good_ones(dp_topo, appliance):
    t = dp_topo
    a = appliance(workers=1).start()
    assert curl(t, url(t, 8081), max_time=2).returncode == 28
    a.rules.write_text(RULES + "  - {id: 1004, action: dorp, proto: tcp}\n")
    a.signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in a.log_text(), what="reload refused")
    assert "rules.yaml:6: action must be one of" in a.log_text()
    assert curl(t, url(t, 8081), max_time=2).returncode == 28        # old rules still enforced
    a.rules.write_text(RULES.replace("dst_port: 8081", "dst_port: 8083"))
    a.signal(signal.SIGHUP)
    wait_for(lambda: "config and rules reloaded" in a.log_text(), what="workers reloaded")
    assert curl(t, url(t, 8081)).stdout == "200"                     # new flows see the new rules
    a.stop()


def test_reload_applies_config_where_safe(dp_topo, appliance):
    """SIGHUP re-reads the config: a new rules path and EVE path take effect; a changed
    worker count needs a restart, is logged, and the running workers stay."""
    t = dp_topo
    a = appliance(workers=1).start()
    assert curl(t, url(t, 8081), max_time=2).returncode == 28
    (a.tmp / "other.yaml").write_text(RULES.replace("dst_port: 8081", "dst_port: 8083"))
    cfg = a.config.read_text()
    a.config.write_text(cfg.replace("rules: rules.yaml", "rules: other.yaml")
                           .replace("eve: eve.json", "eve: eve2.json").replace("workers: 1", "workers: 2"))
    pids = a.worker_pids()
    a.signal(signal.SIGHUP)
    wait_for(lambda: "config and rules reloaded" in a.log_text(), what="workers reloaded")
    assert "workers changed" in a.log_text() and a.worker_pids() == pids
    assert curl(t, url(t, 8081)).stdout == "200"                     # the new rules file
    assert curl(t, url(t, 8083), max_time=2).returncode == 28
    eve2 = a.tmp / "eve2.json"
    wait_for(lambda: eve2.exists() and any(e.get("alert", {}).get("signature_id") == 1001 and e["dest_port"] == 8083
                                           for e in map(json.loads, eve2.read_text().splitlines())),
             timeout=5, what="the drop alert in the new EVE file")
    a.stop()


MALFORMED = r"""
from scapy.all import IP, IPv6, TCP, UDP, Raw, send, fragment, conf
conf.verb = 0
d, d6 = "10.2.0.2", "fd02::2"
pkts = [
    IP(dst=d, ihl=15) / TCP(dport=8080),                       # header length beyond the packet
    IP(dst=d, len=20) / TCP(dport=8080) / Raw(b"x" * 40),      # total length shorter than the data
    IP(dst=d) / TCP(dport=8080, dataofs=15, flags="S"),        # TCP offset beyond the segment
    IP(dst=d) / TCP(dport=8080, dataofs=2, flags="S"),         # TCP offset below the minimum
    IP(dst=d) / TCP(dport=8080, flags="S", options=[(2, b"")]) / Raw(b"\x02\x00\x00"),
    IP(dst=d) / TCP(dport=8080, flags="S") / Raw(b"\x00" * 3),
    IP(dst=d) / UDP(dport=9999, len=4) / Raw(b"abcdef"),       # UDP length below its header
    IP(dst=d, proto=6) / Raw(b"\x01\x02"),                     # truncated TCP header
    IPv6(dst=d6, plen=4) / TCP(dport=8080),
    IPv6(dst=d6, nh=0) / Raw(b"\x06\xff" + b"\x00" * 3),       # hop-by-hop claiming more than there is
]
pkts += fragment(IP(dst=d) / TCP(dport=8080, flags="S") / Raw(b"A" * 64), fragsize=8)  # tiny fragments
pkts += [IP(dst=d, frag=1, flags=0) / Raw(b"B" * 8)]                                    # offset 8, no first
for p in pkts:
    send(p, iface="c0")
print(len(pkts))
"""


def test_malformed_packets_do_not_crash_workers(dp_topo, appliance):
    t = dp_topo
    a = appliance(workers=2).start()
    pids = a.worker_pids()
    assert len(pids) == 2
    r = t.ex(t.client, sys.executable, "-c", MALFORMED, timeout=120)
    assert r.returncode == 0, r.stderr
    assert curl(t, url(t, 8080)).stdout == "200"
    time.sleep(1.5)                                  # a crashed worker would have been restarted by now
    assert a.worker_pids() == pids
    assert "died" not in a.log_text()
    assert a.stop() == 0


def test_a_dead_worker_is_restarted(dp_topo, appliance):
    t = dp_topo
    a = appliance(workers=2).start()
    pids = a.worker_pids()
    os.kill(pids[0], signal.SIGKILL)
    wait_for(lambda: "died" in a.log_text() and len(a.worker_pids()) == 2 and pids[0] not in a.worker_pids(),
             what="worker restart")
    wait_for(lambda: a.log_text().count("bound (") >= 3, what="restarted worker bound")
    assert pids[1] in a.worker_pids()
    assert curl(t, url(t, 8080)).stdout == "200"
    assert curl(t, url(t, 8081), max_time=2).returncode == 28       # still inspected
    assert a.stop() == 0


SEND_BIG_WRITE = """
import socket, sys
s = socket.create_connection((sys.argv[1], 8080), timeout=5)
data = bytearray(b"A" * 12000)
data[6000:6020] = b"NEEDLE-WHOLE-SEGMENT"
s.sendall(bytes(data))
s.close()
"""


def test_gso_super_packets_are_inspected_whole(dp_topo, appliance):
    """One 12 KB write leaves the client as a GSO super-packet. The worker asks the kernel
    for whole packets (netfilterqueue alone stops at ~4 KB and, for longer packets, loses
    the message): a content match at payload offset >= 5000 proves the whole packet was seen."""
    rules = RULES + '  - {id: 1010, msg: "needle deep in one packet", action: alert, proto: tcp, ' \
                    'content: {value: "NEEDLE-WHOLE-SEGMENT", offset: 5000}}\n'
    a = appliance(rules=rules, workers=1).start()
    assert "copy 65531 bytes" in a.log_text()
    t = dp_topo
    for _ in range(3):
        t.ex(t.client, sys.executable, "-c", SEND_BIG_WRITE, t.server_ip)
    alerts = wait_for(lambda: [e for e in a.events("alert") if e["alert"]["signature_id"] == 1010],
                      what="the deep content alert")
    assert alerts[0]["dest_port"] == 8080
    assert not [e for e in a.events("anomaly") if e["anomaly"]["event"].endswith("trunc_pkt")]
    a.stop()


def test_rules_changed_by_someone_else_are_put_back(dp_topo, appliance):
    """Another tool flushes our chain, or inserts a rule above our jump: inspection must not
    silently stop. The supervisor notices within seconds, logs it and re-installs, keeping
    the other tool's rule."""
    t = dp_topo
    a = appliance(workers=1).start()
    assert curl(t, url(t, 8081), max_time=2).returncode == 28                  # dropped
    t.ex(t.fw, "iptables-nft", "-F", "APPLIANCE-INSPECT", check=True)         # someone flushes ours
    wait_for(lambda: "re-installing" in a.log_text(), timeout=20, what="the watch to re-install")
    wait_for(lambda: "-A APPLIANCE-INSPECT" in a.iptables_save(), timeout=20, what="our chain refilled")
    assert curl(t, url(t, 8081), max_time=2).returncode == 28                  # inspected again
    t.ex(t.fw, "iptables-nft", "-I", "FORWARD", "1", "-p", "udp", "--dport", "5", "-j", "ACCEPT", check=True)
    wait_for(lambda: a.log_text().count("re-installing") >= 2, timeout=20, what="the second repair")

    def forward_chain():
        return [x for x in a.iptables_save().splitlines() if x.startswith("-A FORWARD")]
    # The warning is logged before the re-install runs: wait for the kernel's state itself.
    forward = wait_for(lambda: (f := forward_chain()) and "appliance" in f[0] and f,
                       timeout=20, what="our jump back on top")
    assert "appliance" in forward[0] and "--dport 5" in forward[1]             # ours first, theirs kept
    assert sum("-j APPLIANCE-FWD" in x for x in forward) == 1
    a.stop()


UDP_BURST = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[2])):
    s.sendto(b"x" * 32, (sys.argv[1], 9998))
"""


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_full_queue_fails_open_or_closed(dp_topo, appliance, mode):
    """A worker that stops reading (SIGSTOP: alive, bound, not consuming) lets its queue fill
    (4096 packets). Past that, `open` passes packets (the fail-open flag) and `closed` drops them."""
    t = dp_topo
    a = appliance(workers=1, failure_mode=mode, offload=False).start()
    counter = subprocess.Popen(["ip", "netns", "exec", t.server, sys.executable, "-c", UDP_COUNT, "6"],
                               stdout=subprocess.PIPE, text=True)
    assert counter.stdout.readline().strip() == "ready"
    [worker] = a.worker_pids()
    os.kill(worker, signal.SIGSTOP)
    try:
        t.ex(t.client, sys.executable, "-c", UDP_BURST, t.server_ip, "8000", check=True)
    finally:
        os.kill(worker, signal.SIGCONT)
    got = int(counter.stdout.readline())
    counter.wait()
    queued_then_released = 4096                  # the queue's length, verdicts after SIGCONT
    if mode == "open":
        assert got > queued_then_released + 1000, got      # the overflow was passed
    else:
        assert got <= queued_then_released, got            # the overflow was dropped
    a.stop()
