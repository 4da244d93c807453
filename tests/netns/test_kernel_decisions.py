"""Live: kernel pre-decision (inspection.kernel_decisions; detect/kernel_policy.py,
netfilter_decisions.py). The same connections, with the kernel decisions on and off, get the
same verdict per flow (connects, times out, is refused), while flows decided by header-only
rules never reach a queue (the queues' own counters); a SIGHUP recompiles the table, the
watch puts back a deleted one, a stop deletes it.

Own topology (namespaces prefixed "kd-"), deleted at the end of the module.
"""
import signal
import subprocess
import sys
import time

import pytest

from datapath import topology_fixture, appliances, http_servers, wait_for
from appliance.netfilter_decisions import TABLE, counters

pytestmark = pytest.mark.netns

topo = topology_fixture("kd", client_aliases=2)     # clients 10.1.0.2-4 and fd01::2

RULES = """\
default_action: drop
rules:
  - {id: 1, msg: web, action: pass, proto: tcp, dst_port: 8081}
  - {id: 2, msg: closed, action: drop, proto: tcp, dst_port: 8082, log: false}
  - {id: 3, msg: refused, action: reject, proto: tcp, dst_port: 8083, log: false}
  - {id: 4, msg: named, action: pass, proto: tcp, dst_port: 8084, http_host: a.example}
  - {id: 5, msg: logged, action: drop, proto: tcp, dst_port: 8085}
  - {id: 6, msg: dns-ish, action: pass, proto: udp, dst_port: 9001}
"""
TCP_PORTS = (8081, 8082, 8083, 8084, 8085, 8086)
UDP_PORTS = (9001, 9002)
# verdicts per port: 8086 and 9002 by the default action (drop)
EXPECTED = {8081: "200", 8082: "timeout", 8083: "refused", 8084: "200", 8085: "timeout", 8086: "timeout",
            9001: "reply", 9002: "timeout"}

UDP_ECHO = """
import socket, sys
socks = []
for p in sys.argv[1:]:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.bind(("::", int(p))); socks.append(s)  # v4 and v6
import select
print("ready", flush=True)
while True:
    for s in select.select(socks, [], [])[0]:
        data, peer = s.recvfrom(100); s.sendto(data, peer)
"""
UDP_ASK = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1.5)
s.connect((sys.argv[1], int(sys.argv[2])))
try:
    s.send(b"hello"); s.recv(100); print("reply")
except OSError:
    print("timeout")
"""


@pytest.fixture
def appliance(topo, tmp_path):
    yield from appliances(topo, tmp_path, RULES)


@pytest.fixture
def servers(topo, tmp_path):
    echo = subprocess.Popen(["ip", "netns", "exec", topo.server, sys.executable, "-c", UDP_ECHO,
                             *map(str, UDP_PORTS)], stdout=subprocess.PIPE, text=True)
    try:
        assert echo.stdout.readline().strip() == "ready"
        with http_servers(topo, tmp_path, TCP_PORTS, bind="::"):      # v4 and v6
            yield
    finally:
        echo.kill()
        echo.wait()


def verdict(topo, port):
    if port in UDP_PORTS:
        return topo.ex(topo.client, sys.executable, "-c", UDP_ASK, topo.server_ip, str(port)).stdout.strip()
    r = topo.ex(topo.client, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "1.5",
                "-H", "Host: a.example", f"http://{topo.server_ip}:{port}/hello")
    return {0: r.stdout, 7: "refused", 28: "timeout"}.get(r.returncode, f"curl exit {r.returncode}")


def verdicts(topo):
    return {port: verdict(topo, port) for port in (*TCP_PORTS, *UDP_PORTS)}


def nft_table(topo):
    r = topo.ex(topo.fw, "nft", "list", "table", "inet", TABLE)
    return r.stdout if r.returncode == 0 else None


def queued_for(a, topo, port, n=5):
    """Packets queued while n connections to the port ran."""
    before = a.queued()
    for _ in range(n):
        verdict(topo, port)
    time.sleep(0.3)
    return a.queued() - before


def config(kernel):
    return f"inspection: {{kernel_decisions: {str(kernel).lower()}}}\n"


def test_same_verdicts_on_and_off_and_header_decided_flows_never_queued(topo, appliance, servers):
    off = appliance(extra=config(False), workers=1).without_protocol_logs().start()
    try:
        assert nft_table(topo) is None
        got_off = verdicts(topo)
        queued_off = queued_for(off, topo, 8081)
    finally:
        off.stop()
    topo.ex(topo.fw, "conntrack", "-F")
    on = appliance(extra=config(True), workers=1).without_protocol_logs().start()
    try:
        wait_for(lambda: nft_table(topo), what="kernel decisions table")
        got_on = verdicts(topo)
        queued_on = {port: queued_for(on, topo, port) for port in (8081, 8082, 8086, 8084)}
        counted = counters(nft_table(topo))
    finally:
        on.stop()
    assert got_off == EXPECTED, got_off
    assert got_on == got_off
    # a header-decided flow never reaches the queue (pass, drop, the default); a flow a name
    # rule may still judge does, as with the decisions off
    assert queued_off >= 5, queued_off         # (offload: the SYN decides, the rest is marked)
    assert queued_on[8081] == queued_on[8082] == queued_on[8086] == 0, queued_on
    assert queued_on[8084] >= 5, queued_on
    assert nft_table(topo) is None                    # the stop deleted it
    assert "kernel decisions were changed" not in on.log_text()    # its listing is stable: no false drift
    # the kernel's own count of what it decided (the workers never saw those flows)
    assert counted[("rule 1", "pass")] >= 6 and counted[("rule 2", "drop")] >= 6, counted
    assert counted[("default action", "drop")] >= 6 and ("rule 4", "pass") not in counted, counted
    assert "kernel decisions, packets per rule" in on.log_text()
    # the engine's alert for the logging drop rule is still written: that flow was queued
    assert [e for e in on.events("alert") if e["alert"]["signature_id"] == 5]


def test_reload_recompiles_and_watch_puts_the_table_back(topo, appliance, servers):
    a = appliance(extra=config(True), workers=1).without_protocol_logs().start()
    try:
        wait_for(lambda: nft_table(topo), what="kernel decisions table")
        assert verdict(topo, 8081) == "200"
        a.rules.write_text(RULES.replace("action: pass, proto: tcp, dst_port: 8081",
                                         "action: drop, proto: tcp, dst_port: 8081, log: false"))
        a.signal(signal.SIGHUP)
        wait_for(lambda: 'goto APPLIANCE-DECIDE-DROP comment "rule 1"' in (nft_table(topo) or ""), what="recompiled table")
        assert verdict(topo, 8081) == "timeout"
        assert queued_for(a, topo, 8081, n=2) == 0
        topo.ex(topo.fw, "nft", "delete", "table", "inet", TABLE, check=True)
        wait_for(lambda: nft_table(topo), timeout=15, what="the watch re-installing the table")
        assert "re-installing" in a.log_text()
    finally:
        a.stop()
    assert nft_table(topo) is None


# Addresses, negations, both families, a direction and an alert rule watching the reply.
BY_ADDRESS = """\
default_action: pass
rules:
  - {id: 1, msg: a, action: drop, proto: tcp, src: 10.1.0.3, dst_port: 8081, log: false}
  - {id: 2, msg: b, action: drop, proto: tcp, src: "fd01::/64", dst_port: 8082, log: false}
  - {id: 3, msg: c, action: reject, proto: tcp, src: "!10.1.0.0/30", dst_port: [8081, 8082], log: false}
  - {id: 4, msg: d, action: drop, proto: udp, dst: "10.2.0.0/16", dst_port: "!9001", direction: inbound, log: false}
  - {id: 6, msg: f, action: drop, proto: udp, dst_port: 9001, direction: outbound, log: false}
  - {id: 5, msg: e, action: alert, proto: tcp, src_port: 8083}
"""
CLIENTS = ("10.1.0.2", "10.1.0.3", "10.1.0.4", "fd01::2")
UDP_FROM = """
import socket, sys
fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(1.5); s.bind((sys.argv[1], 0))
s.connect((sys.argv[2], int(sys.argv[3])))
try:
    s.send(b"hello"); s.recv(100); print("reply")
except OSError:
    print("timeout")
"""


def verdict_from(topo, client, port):
    v6 = ":" in client
    server = topo.server_ip6 if v6 else topo.server_ip
    if port in UDP_PORTS:
        return topo.ex(topo.client, sys.executable, "-c", UDP_FROM, client, server, str(port)).stdout.strip()
    url = f"http://[{server}]:{port}/hello" if v6 else f"http://{server}:{port}/hello"
    r = topo.ex(topo.client, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "1.5",
                "--interface", client, url)
    return {0: r.stdout, 7: "refused", 28: "timeout"}.get(r.returncode, f"curl exit {r.returncode}")


def test_same_verdicts_by_address_and_family(topo, appliance, servers):
    """Per (client address, port): the engine's verdict (decisions off) and the kernel's (on)."""
    pairs = [(c, p) for c in CLIENTS for p in (8081, 8082, 8083, 9001, 9002)]
    got = {}
    for kernel in (False, True):
        topo.ex(topo.fw, "conntrack", "-F")
        a = appliance(rules=BY_ADDRESS, extra=config(kernel), workers=1).without_protocol_logs().start()
        try:
            if kernel:
                wait_for(lambda: nft_table(topo), what="kernel decisions table")
            before = a.queued()
            got[kernel] = {pair: verdict_from(topo, *pair) for pair in pairs if pair[1] != 8083}
            decided_queued = a.queued() - before
            got[kernel].update({pair: verdict_from(topo, *pair) for pair in pairs if pair[1] == 8083})
            watched_queued = a.queued() - before - decided_queued
        finally:
            a.stop()
        if kernel:
            assert decided_queued == 0, decided_queued          # every one of those flows decided by headers
            assert watched_queued >= len(CLIENTS), watched_queued   # the alert rule's flows were queued
    assert got[True] == got[False]
    assert got[False][("10.1.0.3", 8081)] == "timeout" and got[False][("10.1.0.4", 8081)] == "refused"
    assert got[False][("fd01::2", 8082)] == "timeout" and got[False][("fd01::2", 8081)] == "refused"
    assert got[False][("10.1.0.2", 9002)] == "timeout" and got[False][("10.1.0.2", 9001)] == "reply"
    assert got[False][("fd01::2", 9002)] == "reply" and got[False][("10.1.0.2", 8082)] == "200"


# A flow whose first packet was dropped leaves no conntrack entry, but the engine keeps the
# flow (final, or pending its next packet): a packet the other way is that flow's to the
# engine, while conntrack calls it NEW with the other end as initiator. The kernel must
# judge it as the flow it belongs to, not as a new one the other way round.
REVERSED = """\
default_action: pass
rules:
  - {id: 1, msg: no-out, action: drop, proto: udp, src: 10.2.0.0/16, dst_port: 9500, log: false}
  - {id: 2, msg: evil, action: drop, proto: udp, dst_port: 9501, content: evil, log: false}
"""
PEER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", int(sys.argv[1])))
s.sendto(sys.argv[4].encode(), (sys.argv[2], int(sys.argv[3])))
s.settimeout(float(sys.argv[5]))
try:
    s.recv(100); print("got")
except OSError:
    print("none")
"""


def exchange(topo, first, first_port, second, second_port, payload, between=None):
    """`first` sends `payload` from first_port to second_port (and waits); then (after
    `between()`) `second` sends the other way: did that reach `first`?"""
    ns = {"client": (topo.client, topo.client_ip), "server": (topo.server, topo.server_ip)}
    (a, a_ip), (b, b_ip) = ns[first], ns[second]
    p = subprocess.Popen(["ip", "netns", "exec", a, sys.executable, "-c", PEER, str(first_port), b_ip,
                          str(second_port), payload, "10" if between else "3"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    if between:
        between()
    topo.ex(b, sys.executable, "-c", PEER, str(second_port), a_ip, str(first_port), "x", "0.5")
    return p.communicate(timeout=10)[0].strip()


def test_a_dropped_first_packet_keeps_its_flow_for_the_other_side(topo, appliance):
    got = {}
    for kernel in (False, True):
        topo.ex(topo.fw, "conntrack", "-F")
        a = appliance(rules=REVERSED, extra=config(kernel), workers=1).without_protocol_logs().start()
        try:
            if kernel:
                wait_for(lambda: nft_table(topo), what="kernel decisions table")
            # the kernel dropped the server's datagram (rule 1); the client answers on that flow
            got[kernel, "kernel drop"] = exchange(topo, "server", 9600, "client", 9500, "out")
            # a worker dropped the client's datagram (rule 2's content); the server answers
            got[kernel, "worker drop"] = exchange(topo, "client", 9700, "server", 9501, "evil")
        finally:
            a.stop()
    assert got[False, "kernel drop"] == got[False, "worker drop"] == "none", got
    assert got[True, "kernel drop"] == got[True, "worker drop"] == "none", got


def test_a_reload_keeps_the_flows_the_table_remembers(topo, appliance):
    """A SIGHUP (or the watch) replaces the table in one transaction: the flows_* sets survive
    it, or a flow dropped just before a reload is judged the other way round just after."""
    a = appliance(rules=REVERSED, extra=config(True), workers=1).without_protocol_logs().start()
    n = [3]

    def reload():
        a.rules.write_text(REVERSED + f"  - {{id: {n[0]}, msg: more, action: drop, proto: tcp, dst_port: 1, log: false}}\n")
        a.signal(signal.SIGHUP)
        wait_for(lambda: f'comment "rule {n[0]}"' in (nft_table(topo) or ""), what="recompiled table")
        n[0] += 1
    try:
        wait_for(lambda: nft_table(topo), what="kernel decisions table")
        kernel = exchange(topo, "server", 9610, "client", 9500, "out", between=reload)
        worker = exchange(topo, "client", 9710, "server", 9501, "evil", between=reload)
    finally:
        a.stop()
    assert (kernel, worker) == ("none", "none")


# An IPv6 SYN behind more extension headers than the decoder follows (decode.MAX_IPV6_EXTHDRS):
# nftables (and conntrack) read its ports, the engine cannot (Packet.unread) and judges it by
# its addresses against the attacker (docs/rules.md). The kernel must not decide it by ports.
EXTHDRS = """\
default_action: pass
rules:
  - {id: 1, msg: no-8082, action: drop, proto: tcp, dst_port: 8082, log: false}
"""
SYN_BEHIND = """
import random, sys, time
from scapy.all import AsyncSniffer, IPv6, IPv6ExtHdrDestOpt, TCP, conf, send
conf.verb = 0
p = IPv6(src=sys.argv[1], dst=sys.argv[2])
for _ in range(int(sys.argv[4])):
    p = p / IPv6ExtHdrDestOpt()
sport = random.randint(20000, 60000)
sniffer = AsyncSniffer(filter=f"ip6 and tcp and dst port {sport}", count=1)
sniffer.start(); time.sleep(0.2)
send(p / TCP(sport=sport, dport=int(sys.argv[3]), flags="S"))
sniffer.join(timeout=1.5)
r = sniffer.stop() if sniffer.running else sniffer.results
print("none" if not r else "rst" if r[0][TCP].flags & 4 else "synack")
"""


def test_a_transport_the_engine_cannot_read_is_not_decided_by_its_ports(topo, appliance, tmp_path):
    from appliance.decode import MAX_IPV6_EXTHDRS
    got = {}
    with http_servers(topo, tmp_path, (8081,), bind="::"):
        for kernel in (False, True):
            topo.ex(topo.fw, "conntrack", "-F")
            a = appliance(rules=EXTHDRS, extra=config(kernel), workers=1).without_protocol_logs().start()
            try:
                if kernel:
                    wait_for(lambda: nft_table(topo), what="kernel decisions table")
                for n in (0, 2, MAX_IPV6_EXTHDRS + 1):
                    got[kernel, n] = topo.ex(topo.client, sys.executable, "-c", SYN_BEHIND, topo.client_ip6,
                                             topo.server_ip6, "8081", str(n)).stdout.strip()
            finally:
                a.stop()
    assert got[False, 2] == "synack", got                          # read: no rule against it
    assert got[False, MAX_IPV6_EXTHDRS + 1] == "none", got         # unread: the drop rule may fit
    assert got[True, 2] == got[False, 2] and got[True, MAX_IPV6_EXTHDRS + 1] == got[False, MAX_IPV6_EXTHDRS + 1], got


# conntrack forgets an answered UDP flow after nf_conntrack_udp_timeout (30 s: answered within
# its first 2 s) or _stream (120 s), the engine after flow.TIMEOUTS[UDP][ESTABLISHED] (300 s): in
# between, a packet from the responder is NEW to conntrack, the other way round. (The test
# shortens conntrack's to 2 s.)
IDLE = """\
default_action: pass
rules:
  - {id: 1, msg: no-in, action: drop, proto: udp, dst: 10.1.0.0/16, dst_port: 9800, log: false}
"""
TALK = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 9900)); s.settimeout(8)
data, peer = s.recvfrom(100); s.sendto(b"answer", peer)
time.sleep(float(sys.argv[1])); s.sendto(b"later", peer)
"""
LISTEN = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 9800)); s.settimeout(2)
s.sendto(b"hello", (sys.argv[1], 9900))
print(s.recv(100).decode())
s.settimeout(float(sys.argv[2]) + 2)
try:
    print(s.recv(100).decode())
except OSError:
    print("none")
"""


def test_an_idle_answered_udp_flow_is_the_engines_until_its_timeout(topo, appliance):
    keys = ("net.netfilter.nf_conntrack_udp_timeout", "net.netfilter.nf_conntrack_udp_timeout_stream")
    old = {key: topo.ex(topo.fw, "sysctl", "-n", key).stdout.strip() for key in keys}
    for key in keys:
        topo.ex(topo.fw, "sysctl", "-w", f"{key}=2", check=True)
    got = {}
    try:
        for kernel in (False, True):
            topo.ex(topo.fw, "conntrack", "-F")
            a = appliance(rules=IDLE, extra=config(kernel), workers=1).without_protocol_logs().start()
            try:
                if kernel:
                    wait_for(lambda: nft_table(topo), what="kernel decisions table")
                server = subprocess.Popen(["ip", "netns", "exec", topo.server, sys.executable, "-c", TALK, "4"])
                time.sleep(0.3)
                got[kernel] = topo.ex(topo.client, sys.executable, "-c", LISTEN, topo.server_ip, "4").stdout.split()
                server.wait(timeout=10)
            finally:
                a.stop()
    finally:
        for key in keys:
            topo.ex(topo.fw, "sysctl", "-w", f"{key}={old[key]}")
    assert got[False] == ["answer", "later"], got      # the engine's flow: passed, still within its 300 s
    assert got[True] == got[False], got
