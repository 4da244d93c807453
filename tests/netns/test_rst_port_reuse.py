"""Live: a new connection on the ports of an aborted, offloaded one is judged (review rst).

Conntrack reopens a closed entry (new entry, no mark) only after a FIN, or a RST from the
new SYN's own side. After the server's RST it "ignores" the client's next SYN from the same
port and the SYN/ACK re-syncs the same entry: the old PASS connmark stayed and the new
connection's blocked ClientHello went by in the kernel. netfilter.py now clears the mark of
every bare SYN, so each one reaches a worker, which waits for the server's answer
(Inspector._process): a SYN/ACK starts a new flow, judged; a challenge ACK (an open
connection ignoring the SYN) keeps the old one, offloaded again.

Own topology (namespaces prefixed "rpr-"), deleted at the end of the module.
"""
import sys

import pytest

from datapath import topology_fixture, appliances, wait_for
from appliance import netfilter
from test_live_offload import (CLIENT, SERVER as READ_SERVER, Proc, scapy_send, MARK_MASK, MARK_PASS,
                               GOOD_HELLO, EVIL_HELLO, NEXT_FLIGHT, ALLOWLIST)

pytestmark = pytest.mark.netns

MARK_DROP = netfilter.offload_marks(MARK_MASK)["drop"]

topo = topology_fixture("rpr")


@pytest.fixture
def appliance(topo, tmp_path):
    yield from appliances(topo, tmp_path, ALLOWLIST)


# Connection 1: reads the good hello and the next flight; on "rst" aborts it (SO_LINGER 0:
# the server's RST), on "keep" leaves it be. Connection 2: prints how many bytes it read.
SERVER = """
import socket, struct, sys
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(('0.0.0.0', 443)); ls.listen(2); print('listening', flush=True)
s, _ = ls.accept(); s.settimeout(3); got = b''
try:
    while len(got) < 89:
        b = s.recv(65536)
        if not b: break
        got += b
except OSError: pass
print('first', len(got), flush=True)
if sys.stdin.readline().startswith('rst'):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0)); s.close()
print('closed', flush=True)
ls.settimeout(8)
try:
    s2, _ = ls.accept()
except OSError:
    print('second none', flush=True); sys.exit()
s2.settimeout(3); got = b''
try:
    while len(got) < 100:
        b = s2.recv(65536)
        if not b: break
        got += b
except OSError: pass
print('second', len(got), flush=True)
"""

# The client's second connection: an ordinary socket bound to the first one's port.
REUSE = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[3]))); s.settimeout(5)
try:
    s.connect((sys.argv[2], 443)); s.send(bytes.fromhex(sys.argv[4])); print('sent', flush=True)
except OSError as e:
    print('failed', e, flush=True)
"""


def entries(topo, cport):
    """conntrack's entries of the client port's connection to :443 (earlier tests' linger)."""
    return topo.ex(topo.fw, "conntrack", "-L", "-p", "tcp", "--sport", str(cport), "--dport", "443").stdout


def marks(topo, cport):
    """The offload bits of those entries."""
    return [int(f[5:]) & MARK_MASK for line in entries(topo, cport).splitlines()
            for f in line.split() if f.startswith("mark=")]


def first_connection(topo, server):
    """Connection 1, SNI good.example: passed and offloaded. Returns (client Proc, port, snd, rcv)."""
    server.expect("listening")
    client = Proc(topo, topo.client, CLIENT, topo.server_ip, "443")
    cport, snd, rcv = (int(x) for x in client.expect("connected"))
    client.say("send " + GOOD_HELLO)
    client.expect("sent")
    client.say("send " + NEXT_FLIGHT)
    client.expect("sent")
    assert server.expect("first") == ["89"]
    wait_for(lambda: marks(topo, cport) == [MARK_PASS], timeout=5, what="connection 1 offloaded")
    return client, cport, snd, rcv


def reconnect_with_evil_hello(topo, a, server, cport):
    before = a.queued()
    r = topo.ex(topo.client, sys.executable, "-c", REUSE, topo.client_ip, topo.server_ip, str(cport), EVIL_HELLO)
    assert server.expect("second") in (["none"], ["0"]), \
        f"the new connection's evil.example ClientHello reached the server ({r.stdout.strip()})"
    # queued to a worker and judged there: the drop is offloaded onto the (re-synced) entry
    assert a.queued() > before
    assert marks(topo, cport) == [MARK_DROP]


def test_new_connection_after_the_servers_rst_is_judged(topo, appliance):
    a = appliance(rules=ALLOWLIST, workers=1).start()
    server = Proc(topo, topo.server, SERVER)
    client = None
    try:
        client, cport, _, _ = first_connection(topo, server)
        server.say("rst")
        server.expect("closed")
        # conntrack: CLOSE, the last RST the server's; the client's new SYN does not reopen it
        wait_for(lambda: " CLOSE " in entries(topo, cport),
                 timeout=5, what="the server's RST seen by conntrack")
        client.close()
        client = None
        reconnect_with_evil_hello(topo, a, server, cport)
    finally:
        server.close()
        if client:
            client.close()
        a.stop()


FORGE_RST = "IP(src='{s}', dst='{c}') / TCP(sport=443, dport={cport}, flags='R', seq={seq})"


@pytest.mark.parametrize("forged", [True, False], ids=["client-rst-then-forged-server-rst", "client-rst-only"])
def test_new_connection_after_the_clients_rst_is_judged(topo, appliance, forged):
    """The client alone: its own RST (the server forgets the connection), then -- the
    attack -- a RST in the server's name, so that conntrack's last RST is the other side's
    and it does not reopen the entry for the client's next SYN. Without the forged RST
    conntrack reopens it (the control: judged before the fix too)."""
    a = appliance(rules=ALLOWLIST, workers=1).start()
    server = Proc(topo, topo.server, SERVER)
    client = None
    try:
        client, cport, _, rcv = first_connection(topo, server)
        server.say("keep")
        server.expect("closed")
        client.say("reset")
        client.expect("reset")
        if forged:
            scapy_send(topo, topo.client, FORGE_RST.format(s=topo.server_ip, c=topo.client_ip, cport=cport, seq=rcv))
        wait_for(lambda: " CLOSE " in entries(topo, cport),
                 timeout=5, what="the RST seen by conntrack")
        client.close()
        client = None
        reconnect_with_evil_hello(topo, a, server, cport)
    finally:
        server.close()
        if client:
            client.close()
        a.stop()


def test_a_syn_on_an_open_offloaded_connection_does_not_break_it(topo, appliance):
    """A duplicate or spoofed SYN (here from the client's namespace, another ISN) on an open,
    offloaded connection: it loses the mark and goes to a worker, the server answers with a
    challenge ACK, and the connection carries on, offloaded again."""
    a = appliance(rules=ALLOWLIST, workers=1).start()
    server = Proc(topo, topo.server, READ_SERVER, "0.0.0.0", "443")
    client = None
    try:
        server.expect("listening")
        client = Proc(topo, topo.client, CLIENT, topo.server_ip, "443")
        cport, _, _ = (int(x) for x in client.expect("connected"))
        server.expect("accepted")
        client.say("send " + GOOD_HELLO)
        client.expect("sent")
        client.say("send " + NEXT_FLIGHT)
        client.expect("sent")
        server.say("read 1")
        assert server.expect("got") == ["89"]
        wait_for(lambda: marks(topo, cport) == [MARK_PASS], timeout=5, what="the connection offloaded")
        before = a.queued()
        scapy_send(topo, topo.client, f"IP(src='{topo.client_ip}', dst='{topo.server_ip}') / "
                                      f"TCP(sport={cport}, dport=443, flags='S', seq=123456789)")
        wait_for(lambda: a.queued() > before, timeout=5, what="the SYN queued to a worker")
        more = (b"\x17\x03\x03\x00\x05world").hex()
        client.say("send " + more)
        client.expect("sent")
        server.say("read 1")
        assert server.expect("got") == [str(len(more) // 2)]
        wait_for(lambda: marks(topo, cport) == [MARK_PASS], timeout=5, what="the connection offloaded again")
    finally:
        server.close()
        if client:
            client.close()
        a.stop()
