"""Live: one crafted packet must not get a connection offloaded, and a connection the
appliance did not see begin (started before it, or forgotten by a worker restart) is
still judged by its rules. The replay side is tests/replay/test_review_offload.py.

Each test holds a real TCP connection open between the client and server namespaces,
sends the crafted packet through the appliance (scapy, from the namespace the packet
would come from), then lets the connection carry what a blocked name or port would
carry, and checks that it never reached the other end -- and, for the offload findings,
that the conntrack entry of the connection carries no PASS mark.

Own topology (namespaces prefixed "ofl-"), deleted at the end of the module.
"""
import os
import signal
import subprocess
import sys
import time

import pytest

from datapath import topology_fixture, REPO, appliances, wait_for
from appliance import netfilter
from appliance.config import DEFAULT_MARK_MASK as MARK_MASK

MARK_PASS = netfilter.offload_marks(MARK_MASK)["pass"]

sys.path.insert(0, os.path.join(REPO, "tests", "replay"))
from replaykit import client_hello, tls_records  # noqa: E402

pytestmark = pytest.mark.netns

EVIL_HELLO = tls_records(client_hello("evil.example")).hex()

# Like rules/examples/sni-allowlist.yaml (its ICMP pass rules included), without the
# `direction: outbound` the bench's HOME_NET would turn around.
ALLOWLIST = """\
default_action: drop
rules:
  - {id: 1, action: pass, proto: icmp}
  - {id: 2, action: pass, proto: icmpv6}
  - {id: 3, action: pass, proto: tcp, dst_port: 443, tls_sni: [good.example]}
"""
BLOCKLIST = """\
default_action: pass
rules:
  - {id: 1, action: drop, proto: tcp, tls_sni: evil.example}
  - {id: 2, action: drop, proto: tcp, http_host: evil.example}
"""
# No name rule: a mid-stream flow is judged by its ports alone.
PORT_BLOCK = """\
default_action: pass
rules:
  - {id: 1, action: drop, proto: tcp, dst_port: 2222}
"""

# Accepts one connection; with "first", speaks first; prints every byte count it reads.
SERVER = """
import socket, sys
fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
ls = socket.socket(fam, socket.SOCK_STREAM)
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((sys.argv[1], int(sys.argv[2]))); ls.listen(1)
print('listening', flush=True)
s, _ = ls.accept()
print('accepted', flush=True)
for line in sys.stdin:
    if line.startswith('speak'):
        s.send(b'SSH-2.0-banner\\r\\n'); print('spoke', flush=True)
    elif line.startswith('read'):
        s.settimeout(float(line.split()[1]))
        got = b''
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                got += b
        except OSError:
            pass
        print('got', len(got), flush=True)
"""

# Connects; prints its port and its next send / receive sequence numbers (TCP_REPAIR
# reads them, so a crafted segment can be in window); then sends hex payloads on
# request and reports what it received.
CLIENT = """
import socket, struct, sys
TCP_REPAIR, TCP_REPAIR_QUEUE, TCP_QUEUE_SEQ = 19, 20, 21
fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.setsockopt(socket.SOL_TCP, TCP_REPAIR, 1)
seqs = []
for q in (2, 1):                                  # send queue, receive queue
    s.setsockopt(socket.SOL_TCP, TCP_REPAIR_QUEUE, q)
    seqs.append(struct.unpack('I', s.getsockopt(socket.SOL_TCP, TCP_QUEUE_SEQ, 4))[0])
s.setsockopt(socket.SOL_TCP, TCP_REPAIR, 0)
print('connected', s.getsockname()[1], *seqs, flush=True)
for line in sys.stdin:
    if line.startswith('send'):
        s.send(bytes.fromhex(line.split()[1])); print('sent', flush=True)
    elif line.startswith('read'):
        s.settimeout(float(line.split()[1]))
        try:
            got = s.recv(65536)
        except OSError:
            got = b''
        print('got', len(got), flush=True)
    elif line.startswith('reset'):                # abort: RST, no TIME_WAIT left behind
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        s.close(); print('reset', flush=True)
"""

SEND = """
import sys
from scapy.all import *
send(eval(sys.argv[1]), verbose=0)
"""


topo = topology_fixture("ofl")


class Proc:
    """A line-oriented helper script in a namespace."""

    def __init__(self, topo, ns, script, *args):
        self.p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", script, *args],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)

    def say(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def expect(self, word):
        line = self.p.stdout.readline()
        assert line.startswith(word), (line, self.p.stderr.read() if self.p.poll() is not None else "")
        return line.split()[1:]

    def close(self):
        self.p.kill()
        self.p.wait()


@pytest.fixture
def conn(topo):
    """conn(port, v6=False) -> (server Proc, client Proc, client port, client snd_nxt, rcv_nxt)."""
    made = []

    def make(port, v6=False):
        sip = topo.server_ip6 if v6 else topo.server_ip
        server = Proc(topo, topo.server, SERVER, "::" if v6 else "0.0.0.0", str(port))
        made.append(server)
        server.expect("listening")
        client = Proc(topo, topo.client, CLIENT, sip, str(port))
        made.append(client)
        cport, snd, rcv = (int(x) for x in client.expect("connected"))
        server.expect("accepted")
        return server, client, cport, snd, rcv
    yield make
    for p in made:
        p.close()


@pytest.fixture
def appliance(topo, tmp_path):
    yield from appliances(topo, tmp_path, ALLOWLIST)


def scapy_send(topo, ns, expr):
    topo.ex(ns, sys.executable, "-c", SEND, expr, check=True)


def conntrack_marks(topo, port, v6=False):
    """The offload bits of every conntrack entry toward `port`."""
    out = topo.ex(topo.fw, "conntrack", "-L", "-f", "ipv6" if v6 else "ipv4", "-p", "tcp",
                  "--dport", str(port)).stdout
    marks = []
    for line in out.splitlines():
        for field in line.split():
            if field.startswith("mark="):
                marks.append(int(field[5:]) & MARK_MASK)
    return marks


def queued_more(a, before):
    wait_for(lambda: a.queued() > before, timeout=5, what="the crafted packet queued to the appliance")


# --- ICMP errors ------------------------------------------------------------------------

@pytest.mark.parametrize("v6", [False, True], ids=["ipv4-port-unreachable", "ipv6-packet-too-big"])
def test_icmp_error_does_not_offload_a_pending_connection(topo, appliance, conn, v6):
    a = appliance(rules=ALLOWLIST, workers=1).start()
    server, client, cport, snd, rcv = conn(443, v6)
    c_ip, s_ip = (topo.client_ip6, topo.server_ip6) if v6 else (topo.client_ip, topo.server_ip)
    before = a.queued()
    if v6:      # from the server's side, quoting the client's segment (conntrack: RELATED)
        quoted = f"IPv6(src='{c_ip}', dst='{s_ip}')/TCP(sport={cport}, dport=443, flags='A', seq={snd}, ack={rcv})"
        scapy_send(topo, topo.server, f"IPv6(src='{s_ip}', dst='{c_ip}')/ICMPv6PacketTooBig(mtu=1280)/raw({quoted})")
    else:
        quoted = f"raw(IP(src='{c_ip}', dst='{s_ip}')/TCP(sport={cport}, dport=443, flags='A', seq={snd}, ack={rcv}))[:28]"
        scapy_send(topo, topo.server, f"IP(src='{s_ip}', dst='{c_ip}')/ICMP(type=3, code=3)/Raw({quoted})")
    queued_more(a, before)
    time.sleep(0.3)
    # was: the ICMP "flow" was passed by the ICMP rule and offloaded: CONNMARK --save-mark
    # put PASS on the quoted connection, and its ClientHello went by in the kernel
    assert MARK_PASS not in conntrack_marks(topo, 443, v6)
    client.say("send " + EVIL_HELLO)
    client.expect("sent")
    server.say("read 2")
    assert server.expect("got") == ["0"], "the blocked ClientHello reached the server"
    assert MARK_PASS not in conntrack_marks(topo, 443, v6)
    a.stop()


# --- IPv6 extension headers past the decoder's bound --------------------------------------

def test_segment_behind_too_many_extension_headers_does_not_offload(topo, appliance, conn):
    from appliance.decode import MAX_IPV6_EXTHDRS
    a = appliance(rules=BLOCKLIST, workers=1).start()
    server, client, cport, snd, rcv = conn(443, v6=True)
    chain = "/".join(["IPv6ExtHdrDestOpt()"] * (MAX_IPV6_EXTHDRS + 1))
    before = a.queued()
    # the client's own next segment (in window for conntrack, which follows the whole
    # chain) carrying the blocked ClientHello
    scapy_send(topo, topo.client,
               f"IPv6(src='{topo.client_ip6}', dst='{topo.server_ip6}')/{chain}/"
               f"TCP(sport={cport}, dport=443, flags='PA', seq={snd}, ack={rcv})/Raw(bytes.fromhex('{EVIL_HELLO}'))")
    queued_more(a, before)
    time.sleep(0.3)
    # was: a port-less protocol-60 flow, passed by default and offloaded onto the connection
    assert MARK_PASS not in conntrack_marks(topo, 443, v6=True)
    server.say("read 1")
    assert server.expect("got") == ["0"], "the segment behind the chain reached the server"
    client.say("send " + EVIL_HELLO)
    client.expect("sent")
    server.say("read 2")
    assert server.expect("got") == ["0"], "the blocked ClientHello reached the server"
    a.stop()


# --- connections the appliance did not see begin ---------------------------------------

def test_connection_made_before_the_appliance_started_server_speaks_first(topo, appliance, conn):
    a = appliance(rules=PORT_BLOCK, workers=1)
    topo.ex(topo.fw, "conntrack", "-F")
    server, client, cport, _, _ = conn(2222)             # no appliance: forwarded as is
    a.start()
    server.say("speak")
    server.expect("spoke")
    client.say("read 2")
    # was: the server's banner made it the initiator, dst_port was the client's port: passed
    assert client.expect("got") == ["0"], "the server's bytes on a dst_port-dropped connection got through"
    client.say("send " + b"hello".hex())
    client.expect("sent")
    server.say("read 2")
    assert server.expect("got") == ["0"]
    assert a.queued() > 0                                 # judged by the appliance, not missed by it
    a.stop()


def test_worker_killed_after_the_handshake_blocked_host_still_dropped(topo, appliance, conn):
    a = appliance(rules=BLOCKLIST, workers=1, failure_mode="closed").start()
    server, client, cport, _, _ = conn(8080)
    worker = a.worker_pids()
    assert len(worker) == 1
    os.kill(worker[0], signal.SIGKILL)                    # forgets the pending flow
    wait_for(lambda: a.worker_pids() and a.worker_pids() != worker and a.log_text().count("bound (") >= 2,
             timeout=15, what="the worker restarted")
    client.say("send " + b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n".hex())
    client.expect("sent")
    server.say("read 3")
    # the rest of the connection is a nameless mid-stream flow: its Host cannot be known
    # for sure, so the drop rule on it holds (exception policy "drop")
    assert server.expect("got") == ["0"], "the blocked Host reached the server after a worker restart"
    assert any(e["anomaly"]["event"] == "exception.midstream" for e in a.events("anomaly"))
    a.stop()


# --- found in the follow-up review: a new connection on an offloaded connection's ports ---

# Accepts two connections in turn and reports the bytes each one read.
TWO_SERVER = """
import socket, sys
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(('0.0.0.0', 443)); ls.listen(2); print('listening', flush=True)
for _ in range(2):
    ls.settimeout(10)
    try:
        s, _ = ls.accept()
    except OSError:
        print('got none', flush=True); continue
    s.settimeout(3); got = b''
    try:
        while len(got) < 100:
            b = s.recv(65536)
            if not b:
                break
            got += b
    except OSError:
        pass
    print('got', len(got), flush=True)
"""

# The client's second connection, by hand: the same ports and the same ISN as the first.
REOPEN = """
import sys
from scapy.all import *
c, s, cport, isn, hello = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), bytes.fromhex(sys.argv[5])
ip = IP(src=c, dst=s)
sa = sr1(ip / TCP(sport=cport, dport=443, flags='S', seq=isn), timeout=3, verbose=0)
if sa is None or not sa.haslayer(TCP) or sa[TCP].flags != 'SA':
    print('no-synack', flush=True); sys.exit()
ack = sa[TCP].seq + 1
send(ip / TCP(sport=cport, dport=443, flags='A', seq=isn + 1, ack=ack), verbose=0)
send(ip / TCP(sport=cport, dport=443, flags='PA', seq=isn + 1, ack=ack) / Raw(hello), verbose=0)
print('sent', flush=True)
"""

GOOD_HELLO = tls_records(client_hello("good.example")).hex()
NEXT_FLIGHT = (b"\x14\x03\x03\x00\x01\x01" + b"\x17\x03\x03\x00\x05hello").hex()   # CCS + an encrypted record


def test_new_connection_on_an_offloaded_connections_ports_and_isn_is_inspected(topo, appliance):
    a = appliance(rules=ALLOWLIST, workers=1).start()
    server = Proc(topo, topo.server, TWO_SERVER)
    client = None
    try:
        server.expect("listening")
        client = Proc(topo, topo.client, CLIENT, topo.server_ip, "443")
        cport, snd, _ = (int(x) for x in client.expect("connected"))
        client.say("send " + GOOD_HELLO)
        client.expect("sent")
        client.say("send " + NEXT_FLIGHT)                     # no second ClientHello can follow:
        client.expect("sent")
        assert server.expect("got") != ["0"]                  # allowed: passed and offloaded
        assert MARK_PASS in conntrack_marks(topo, 443)
        client.say("reset")                                   # the RST goes by in the kernel
        client.expect("reset")
        # the client's kernel has no socket left for the hand-made connection: keep its RSTs in
        topo.ex(topo.client, "iptables-nft", "-A", "OUTPUT", "-p", "tcp", "--tcp-flags", "RST", "RST",
                "--sport", str(cport), "-j", "DROP", check=True)
        r = topo.ex(topo.client, sys.executable, "-c", REOPEN, topo.client_ip, topo.server_ip, str(cport),
                    str(snd - 1), EVIL_HELLO, check=True)
        assert r.stdout.strip() == "sent", r.stdout + r.stderr
        # was: the SYN joined the old connection's final pass, was offloaded, and the blocked
        # ClientHello of the new connection went by in the kernel
        assert server.expect("got") == ["0"], "the new connection's blocked ClientHello reached the server"
    finally:
        server.close()
        if client:
            client.close()
        topo.ex(topo.client, "iptables-nft", "-F", "OUTPUT")
        a.stop()
