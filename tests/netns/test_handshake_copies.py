"""Live: handshake copies (inspection.handshake_copies; netfilter.copy_rules, source/nflog.py).
A plain SYN and SYN/ACK are passed by the kernel and copied to the worker, which reads them
before the flow's queued packets: the same verdicts and the same EVE flow records as with the
copies off, two packets queued per connection instead of four; every other client segment is
still queued (a PAWS decoy on the handshake ACK is still read as the server reads it); a
lost copy (a socket too small for a burst) says so and forgets the flows in their handshake.

Own topology (namespaces prefixed "hc-"), deleted at the end of the module.
"""
import subprocess
import sys
import time

import pytest

from datapath import topology_fixture, appliances, http_servers, wait_for

pytestmark = pytest.mark.netns

topo = topology_fixture("hc")

RULES = """\
default_action: drop
rules:
  - {id: 1, msg: named, action: pass, proto: tcp, dst_port: 8084, http_host: a.example}
"""
ON = "inspection: {kernel_decisions: true, handshake_copies: true, copy_group: 4243}\n"
OFF = "inspection: {kernel_decisions: true}\n"


@pytest.fixture
def appliance(topo, tmp_path):
    yield from appliances(topo, tmp_path, RULES)


def get(topo, host, v6=False, max_time=2):
    server = f"[{topo.server_ip6}]" if v6 else topo.server_ip
    r = topo.ex(topo.client, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", str(max_time),
                "-H", f"Host: {host}", f"http://{server}:8084/hello")
    return {0: r.stdout, 28: "timeout"}.get(r.returncode, f"curl exit {r.returncode}")


def run_clients(topo, a):
    before = a.queued()
    got = [get(topo, h, v6) for h in ("a.example", "b.example", "a.example", "b.example") for v6 in (False, True)]
    time.sleep(0.5)
    return got, a.queued() - before


def flow_records(a, skip_ports=()):
    """What a flow record says of each connection, without times, ids, client ports and packet
    counts (a retransmission is timing). `skip_ports`: client ports of an earlier run, whose
    refused connections' retransmissions go on into this one."""
    out = []
    for e in a.events("flow"):
        if e["src_port"] in skip_ports:
            continue
        f, t = e["flow"], e.get("tcp", {})
        out.append((e["dest_port"], e["src_ip"], f["action"], f.get("bypass"), f["state"],
                    t.get("tcp_flags_ts"), t.get("tcp_flags_tc"), e.get("http", {}).get("hostname")))
    return sorted(out, key=repr)


def test_names_decide_as_without_copies_with_half_the_packets_queued(topo, appliance, tmp_path):
    with http_servers(topo, tmp_path, (8084,), bind="::"):
        off = appliance(extra=OFF, workers=1).without_protocol_logs().start()
        try:
            got_off, queued_off = run_clients(topo, off)
        finally:
            off.stop()
        records_off = flow_records(off)
        ports_off = {e["src_port"] for e in off.events("flow")}
        off.eve.rename(tmp_path / "eve-off.json")
        topo.ex(topo.fw, "conntrack", "-F")
        on = appliance(extra=ON, workers=1).without_protocol_logs().start()
        try:
            wait_for(lambda: "NFLOG" in on.iptables_save() and "NFLOG" in on.iptables_save(v6=True),
                     what="copy rules")
            got_on, queued_on = run_clients(topo, on)
        finally:
            on.stop()
    assert got_off == ["200", "200", "timeout", "timeout"] * 2, got_off
    assert got_on == got_off
    # SYN, SYN/ACK, ACK, request queued without; the ACK and the request with (the allowed
    # ones; a refused one's retransmitted SYNs are copies too)
    assert queued_off >= 4 * 4 and queued_on <= queued_off - 2 * 4, (queued_off, queued_on)
    # the copies went through the same Inspector path: the same flow records, SYN counted
    # (a SYN seen by the engine is in tcp_flags_ts: 0x02)
    assert flow_records(on, ports_off) == records_off, (flow_records(on, ports_off), records_off)
    assert all(int(r[5], 16) & 0x02 for r in records_off), records_off
    assert "handshake copies on (NFLOG group 4243)" in on.log_text()
    assert not on.events("anomaly")


PAWS_CLIENT = r"""
import sys, time
from scapy.all import IP, TCP, Raw, conf, send, sr1
conf.verb = 0
C, S, P = sys.argv[1], sys.argv[2], 8084
GOOD = b"GET /hello HTTP/1.1\r\nHost: a.example\r\n\r\n"
EVIL = b"GET /hello HTTP/1.1\r\nHost: evil.example\r\n\r\n"
A = 1000
syn = IP(src=C, dst=S) / TCP(sport=41000, dport=P, flags="S", seq=A, window=64240,
                             options=[("WScale", 7), ("Timestamp", (100000, 0))])
sa = sr1(syn, timeout=3)
B = sa[TCP].seq
tsecr = dict(sa[TCP].options)["Timestamp"][0]
def seg(flags, data=b"", tsval=100001):
    p = IP(src=C, dst=S) / TCP(sport=41000, dport=P, flags=flags, seq=A + 1, ack=B + 1, window=502,
                               options=[("Timestamp", (tsval, tsecr))])
    send(p / Raw(data) if data else p)
    time.sleep(0.2)
# the handshake ACK moves the server's ts_recent far up: the decoy's older stamp is discarded
# by PAWS, the evil request at the same sequence number is what the server reads
seg("A", tsval=200000)
seg("PA", GOOD, tsval=100002)
seg("PA", EVIL, tsval=200001)
print("sent", flush=True)
"""

SERVER = r"""
import socket, sys
s = socket.socket(socket.AF_INET); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 8084)); s.listen(5); s.settimeout(15)
print("ready", flush=True)
c, _ = s.accept(); c.settimeout(2)
out = b""
try:
    while True:
        d = c.recv(65536)
        if not d:
            break
        out += d
except socket.timeout:
    pass
print(out.decode(errors="replace"), flush=True)
"""


def test_a_paws_decoy_on_the_handshake_ack_is_still_read_as_the_server_reads_it(topo, appliance):
    pytest.importorskip("scapy")
    # the client's own kernel knows no socket for scapy's connection: keep its RSTs in
    topo.ex(topo.client, "iptables", "-A", "OUTPUT", "-p", "tcp", "--tcp-flags", "RST", "RST", "-j", "DROP",
            check=True)
    server = subprocess.Popen(["ip", "netns", "exec", topo.server, sys.executable, "-c", SERVER, topo.server_ip],
                              stdout=subprocess.PIPE, text=True)
    a = appliance(extra=ON, workers=1).without_protocol_logs().start()
    try:
        assert server.stdout.readline().strip() == "ready"
        wait_for(lambda: "NFLOG" in a.iptables_save(), what="copy rules")
        r = topo.ex(topo.client, sys.executable, "-c", PAWS_CLIENT, topo.client_ip, topo.server_ip, timeout=30)
        assert "sent" in r.stdout, r.stderr
        read, _ = server.communicate(timeout=30)
    finally:
        a.stop()
        server.kill()
        topo.ex(topo.client, "iptables", "-F", "OUTPUT")
    # the server read no request with the evil host: the handshake ACK was queued and the
    # receiver model discarded the decoy as the server did, so the evil request was judged
    assert "evil.example" not in read, read
    assert [e for e in a.events("flow") if e["dest_port"] == 8084 and e["flow"]["action"] == "drop"]


BURST = r"""
import socket, sys, threading
ok = []
def one(i):
    try:
        s = socket.create_connection((sys.argv[1], 8084), timeout=3)
        s.sendall(b"GET /hello HTTP/1.0\r\nHost: " + (b"a" if i % 2 else b"b") + b".example\r\n\r\n")
        ok.append((i % 2, b" 200 " in s.recv(4096)))
    except OSError:
        ok.append((i % 2, False))
ts = [threading.Thread(target=one, args=(i,)) for i in range(int(sys.argv[2]))]
for t in ts: t.start()
for t in ts: t.join()
print(sum(1 for a, good in ok if a and good), sum(1 for a, good in ok if not a and good))
"""


def test_a_lost_copy_is_said_and_its_flows_are_forgotten(topo, appliance, tmp_path):
    # 1 KiB of socket: a burst of SYNs overflows it before the worker reads
    with http_servers(topo, tmp_path, (8084,)):
        a = appliance(extra=ON.replace("}", ", copy_buffer: 1024}"), workers=1).without_protocol_logs().start()
        try:
            wait_for(lambda: "NFLOG" in a.iptables_save(), what="copy rules")
            lost = []
            for _ in range(5):
                r = topo.ex(topo.client, sys.executable, "-c", BURST, topo.server_ip, "60", timeout=60)
                good_a, good_b = map(int, r.stdout.split())
                assert good_b == 0                       # the refused name never passes
                lost = [e for e in a.events("anomaly") if e["anomaly"]["event"] == "copy.lost"]
                if lost:
                    break
        finally:
            a.stop()
    assert lost, "no copy was lost: the burst did not overflow the socket"
    forgotten = [e for e in a.events("flow") if e["flow"]["reason"] == "copy_lost"]
    assert forgotten and all(e["flow"]["action"] != "pass" or e["flow"].get("bypass") is None for e in forgotten)
