"""Live: `overload.established_first` under a flood of new flows spoofed from many sources.

A UDP flood (hping3 --rand-source: every datagram a new flow from its own address) far past
one worker's capacity, while an established TCP connection that the rules keep inspected
(a content rule it never matches, a large depth) exchanges messages through the same
worker, failure_mode closed. With the switch on, the flood overflows the new flows' queue
(kernel drops there) and the connection loses nothing: every exchange answered, no
retransmission either side, every packet seen by the worker. With it off, the same flood in
the same run fills the one queue and the connection's segments are dropped with it. Counts
only, nothing timed.

Also the claim the split rests on: queue-balance hashes addresses (and protocol) with one
seed, so with equal ranges a host pair's new and established packets reach the same offset.

Own topology (namespaces prefixed "prio-").
"""
import json
import re
import shutil
import subprocess
import sys

import pytest

from datapath import REPO, appliances, topology_fixture, wait_for

pytestmark = pytest.mark.netns

topo = topology_fixture("prio")

RULES = """\
default_action: pass
rules:
  - {id: 1, action: drop, proto: tcp, dst_port: 9000, content: "NEVER-SENT-ON-THIS-CONNECTION"}
  - {id: 2, action: drop, proto: udp, dst_port: 9}
"""
INSPECT = "inspection: {depth_packets: 1000000, depth_bytes: 100000000}\n"
EXCHANGES, INTERVAL = 60, 0.05


@pytest.fixture
def appliance(topo, tmp_path):
    yield from appliances(topo, tmp_path, RULES)



def _conversation_under_flood(topo, a):
    """The echo connection's exchanges while hping3 floods: (client result, server result,
    queue counters before, after)."""
    server = subprocess.Popen(["ip", "netns", "exec", topo.server, sys.executable, "-m", "bench.echo_exchange",
                               "server", "9000"], cwd=REPO, stdout=subprocess.PIPE, text=True)
    client = flood = None
    try:
        assert server.stdout.readline().strip() == "listening"
        client = subprocess.Popen(["ip", "netns", "exec", topo.client, sys.executable, "-m", "bench.echo_exchange",
                                   "client", topo.server_ip, "9000", str(EXCHANGES), str(INTERVAL)],
                                  cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert client.stdout.readline().strip() == "ready"
        before = a.queues()
        flood = subprocess.Popen(["ip", "netns", "exec", topo.client, "hping3", "-q", "--udp", "-p", "9",
                                  "--rand-source", "--flood", topo.server_ip],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # the flood under way: the queues overflow before the first exchange
        wait_for(lambda: sum(d for _, d in a.queues().values()) > sum(d for _, d in before.values()) + 1000,
                 what="the flood overflowing a queue")
        client.stdin.write("go\n")
        client.stdin.flush()
        got = json.loads(client.stdout.readline())
        after = a.queues()
    finally:
        if flood is not None:
            flood.kill()
            flood.wait()
        if client is not None and client.poll() is None:
            client.kill()
        if client is not None:
            client.wait()
    line = server.stdout.readline()
    server.kill()
    server.wait()
    return got, json.loads(line) if line.strip() else {}, before, after


def _metric(text, name, **labels):
    """The value of the Prometheus sample `name{labels}` (labels in any order), or None."""
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)$", line)
        if m and m.group(1) == name and dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or "")) == labels:
            return float(m.group(4))
    return None


def _flow_packets(a):
    """The echo connection's packets the worker saw (its EVE flow event, written at stop)."""
    flows = [e["flow"] for e in a.events("flow") if e.get("dest_port") == 9000 and e.get("proto") == "TCP"]
    return sum(f["pkts_toserver"] + f["pkts_toclient"] for f in flows)


def test_established_flows_are_read_ahead_of_a_spoofed_flood_of_new_flows(topo, tmp_path, appliance):
    if not shutil.which("hping3"):
        pytest.skip("hping3 is not installed (dev/setup.sh)")
    on = appliance(workers=1, failure_mode="closed", offload=False,
                   extra=INSPECT + "overload: {established_first: true}\n").start()
    assert "--ctstate NEW,RELATED -j NFQUEUE --queue-num 1" in on.iptables_save()
    got, served, before, after = _conversation_under_flood(topo, on)
    on.stop()
    seen = _flow_packets(on)
    print(f"on: {got} {served} queues {before} -> {after}, the flow's packets seen {seen}")
    # the flood's new flows overflowed their own queue (1); the established one (0) lost nothing
    assert after[1][1] - before[1][1] > 1000, (before, after)
    assert after[0][1] == before[0][1], (before, after)
    assert got == {"answered": EXCHANGES, "failed": 0, "retransmissions": 0}, got
    assert served == {"server_retransmissions": 0}, served
    assert seen >= 2 * (EXCHANGES + 1), seen          # each exchange's message and its echo, inspected
    on.remove()
    topo.ex(topo.fw, "conntrack", "-F")

    off = appliance(workers=1, failure_mode="closed", offload=False, extra=INSPECT).start()
    got_off, served_off, before, after = _conversation_under_flood(topo, off)
    off.stop()
    print(f"off: {got_off} {served_off} queues {before} -> {after}")
    # the same flood through one queue: the connection's segments were dropped with it
    assert after[0][1] - before[0][1] > 1000, (before, after)
    lost = got_off.get("retransmissions", 0) + served_off.get("server_retransmissions", 0) + got_off.get("failed", 0)
    assert lost > 0 or "error" in got_off, (got_off, served_off)


def test_one_host_pair_reaches_the_same_offset_in_both_ranges(topo, tmp_path, appliance):
    """Two workers: each binds queue i and 2 + i. Connections from eight client addresses
    (eight host pairs), each with a new-flow part (its SYN, queued on 2..3) and an
    established part (the rest, queued on 0..1). Were the ranges hashed apart, the worker
    that took a SYN would not see the rest: one EVE flow record with the SYN alone there, one
    picked up midstream on the other. One record per connection, with its SYN (flag 0x02
    from the client) and its data, says one worker saw all of it; both ranges at work."""
    aliases = [f"10.1.0.{i}" for i in range(3, 10)]
    a = appliance(workers=2, failure_mode="closed", offload=False,
                  extra="overload: {established_first: true}\ncontrol: {listen: 127.0.0.1:9900}\n")
    for ip in aliases:
        topo.ex(topo.client, "ip", "addr", "add", f"{ip}/24", "dev", "c0", check=True)
    try:
        a.start()
        server = subprocess.Popen(["ip", "netns", "exec", topo.server, sys.executable, "-m", "bench.echo_exchange",
                                   "server", "9000"], cwd=REPO, stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout.readline().strip() == "listening"
            for src in [topo.client_ip, *aliases]:
                r = topo.ex(topo.client, "nc", "-s", src, "-w", "2", "-N", topo.server_ip, "9000",
                            input="hello\n" * 5)
                assert r.stdout == "hello\n" * 5, r
        finally:
            server.kill()
            server.wait()
        queues = a.queues()
        metrics = topo.ex(topo.fw, "curl", "-sS", "-m", "10", "http://127.0.0.1:9900/metrics").stdout
        a.stop()
    finally:
        for ip in aliases:
            topo.ex(topo.client, "ip", "addr", "del", f"{ip}/24", "dev", "c0")
    assert all(queues[q][0] > 0 for q in (0, 1, 2, 3)), queues      # both workers, both ranges
    # /metrics knows the second range: every packet our rules queued was taken by a worker
    assert _metric(metrics, "appliance_chain_packets_total", family="ipv4", chain="APPLIANCE-INSPECT",
                   rule="queued_new") >= 1 + len(aliases), metrics     # the SYNs
    assert _metric(metrics, "appliance_fail_closed_drops_total") == 0, metrics
    assert _metric(metrics, "appliance_nfqueue_queued_total", queue="3") == queues[3][0], metrics
    flows = [e for e in a.events("flow") if e.get("dest_port") == 9000]
    assert len(flows) == 1 + len(aliases), flows
    for e in flows:
        assert int(e["tcp"]["tcp_flags_ts"], 16) & 0x02, e            # the client's SYN ...
        assert e["flow"]["pkts_toserver"] >= 3 and e["flow"]["bytes_toserver"] >= 30, e   # ... and its data
