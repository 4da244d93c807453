"""Live: a packet that bears the server's address but enters on the client's side is not the
server's (appliance/ingress.py). The client forges the server's RST with a packet socket,
addressed to itself through the appliance (the kernel routes it back out of eth0): NFQUEUE
says it entered on eth0 and leaves by eth0, where the flow's server packets enter on eth1.
It is dropped (flow.wrong_side) and the flow is read on: review s19 F6's attack (the forged
RST closed the flow here, a SYN opened a new one, and the request after it passed unread).

Own topology (namespaces prefixed "ing-"), deleted at the end of the module.
"""
import json
import sys

import pytest

from datapath import topology_fixture, appliances, wait_for
from test_live_offload import ALLOWLIST, EVIL_HELLO, GOOD_HELLO, NEXT_FLIGHT, conn, scapy_send  # noqa: F401 (conn: a fixture)

pytestmark = pytest.mark.netns

topo = topology_fixture("ing", client_aliases=1)        # 10.1.0.3: a second outside host

# argv: interface, destination MAC, a scapy expression of the IP packet
SENDP = """
import sys
from scapy.all import Ether, IP, TCP, UDP, Raw, sendp
sendp(Ether(dst=sys.argv[2]) / eval(sys.argv[3]), iface=sys.argv[1], verbose=0)
"""


@pytest.fixture
def appliance(topo, tmp_path):
    yield from appliances(topo, tmp_path, ALLOWLIST)


def mac(topo, ns, dev):
    return json.loads(topo.ex(ns, "ip", "-j", "link", "show", dev, check=True).stdout)[0]["address"]


def forge_server_rst(topo, cport, rcv):
    """From the client's namespace, in the server's name, to the appliance's eth0 MAC."""
    rst = f"IP(src='{topo.server_ip}', dst='{topo.client_ip}') / TCP(sport=443, dport={cport}, flags='R', seq={rcv})"
    topo.ex(topo.client, sys.executable, "-c", SENDP, "c0", mac(topo, topo.fw, "eth0"), rst, check=True)


def wrong_side(a):
    return [e for e in a.events("anomaly") if e["anomaly"]["event"] == "flow.wrong_side"]


def test_a_server_rst_sent_from_the_clients_side_is_dropped(topo, appliance, conn):
    a = appliance(workers=1).start()
    try:
        server, client, cport, snd, rcv = conn(443)
        forge_server_rst(topo, cport, rcv)
        wait_for(lambda: wrong_side(a), timeout=10, what="flow.wrong_side in EVE")
        [ev] = wrong_side(a)
        assert (ev["in_iface"], ev["src_ip"], ev["src_port"], ev["dest_port"]) == ("eth0", topo.server_ip, 443, cport)
        # it never reached the client (its socket is open) nor the flow (read on: passed)
        client.say("send " + GOOD_HELLO)
        client.expect("sent")
        client.say("send " + NEXT_FLIGHT)
        client.expect("sent")
        server.say("read 1")
        assert server.expect("got") == ["89"]
    finally:
        a.stop()


def test_a_forged_server_rst_then_a_syn_does_not_hide_the_request(topo, appliance, conn):
    """Review s19 F6 end to end: the forged RST, then a SYN with another ISN on the same ports
    (the server answers it with a challenge ACK), then the blocked ClientHello on the open
    connection. The client's kernel is told to ignore RSTs from the server (the attacker's
    own), so the forged one cannot end its socket whatever the appliance does."""
    topo.ex(topo.client, "iptables-nft", "-I", "INPUT", "-p", "tcp", "--tcp-flags", "RST", "RST",
            "-s", topo.server_ip, "-j", "DROP", check=True)
    a = appliance(workers=1).start()
    try:
        server, client, cport, snd, rcv = conn(443)
        before = a.queued()
        forge_server_rst(topo, cport, rcv)
        scapy_send(topo, topo.client, f"IP(src='{topo.client_ip}', dst='{topo.server_ip}') / "
                                      f"TCP(sport={cport}, dport=443, flags='S', seq=777777)")
        wait_for(lambda: a.queued() >= before + 3, timeout=5, what="the RST, the SYN and its challenge ACK queued")
        client.say("send " + EVIL_HELLO)
        client.expect("sent")
        server.say("read 2")
        assert server.expect("got") == ["0"], "the blocked ClientHello reached the server"
        assert wrong_side(a)
    finally:
        a.stop()
        topo.ex(topo.client, "iptables-nft", "-F", "INPUT")


# Prints how many datagrams reach argv[1]:9999 within 2 s of "ready".
UDP_LISTEN = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], 9999)); s.settimeout(0.2)
print('ready', flush=True)
n, end = 0, time.monotonic() + 2
while time.monotonic() < end:
    try:
        s.recv(100); n += 1
    except socket.timeout:
        pass
print('got', n, flush=True)
"""


def test_a_packet_routed_back_out_where_it_came_in_is_inspected(topo, appliance):
    """An outside host sends a datagram with a source that is not its own (the data ENIs do no
    source check) through the appliance to another outside host: the kernel routes it back out
    of eth0. It used to be forwarded uninspected (only eth0 -> eth1 and eth1 -> eth0 were
    queued); now it is a flow like any other, and the rules' default drops it."""
    from test_live_offload import Proc
    a = appliance(workers=1).start()
    listener = Proc(topo, topo.client, UDP_LISTEN, "10.1.0.3")
    try:
        listener.expect("ready")
        dgram = "IP(src='10.1.0.9', dst='10.1.0.3') / UDP(sport=5555, dport=9999) / Raw(b'relayed')"
        for _ in range(3):
            topo.ex(topo.client, sys.executable, "-c", SENDP, "c0", mac(topo, topo.fw, "eth0"), dgram, check=True)
        assert listener.expect("got") == ["0"], "the hairpinned datagram went by uninspected"
    finally:
        listener.close()
        a.stop()


def test_the_kernel_decides_a_routed_back_flow_as_it_decides_one_from_that_side(topo, appliance):
    """inspection.kernel_decisions: the nftables table judges what enters on eth0 as inbound
    whichever way it leaves (as the queue rules take it and Inspector._direction calls it):
    the hairpinned datagram meets the header-only drop rule in the kernel, counted there."""
    from appliance.netfilter_decisions import TABLE, counters
    from test_live_offload import Proc
    rules = "default_action: pass\nrules:\n  - {id: 7, msg: relay, action: drop, proto: udp, dst_port: 9999, log: false}\n"
    a = appliance(rules=rules, workers=1, extra="inspection: {kernel_decisions: true}\n").start()
    listener = Proc(topo, topo.client, UDP_LISTEN, "10.1.0.3")
    try:
        listener.expect("ready")
        dgram = "IP(src='10.1.0.9', dst='10.1.0.3') / UDP(sport=5556, dport=9999) / Raw(b'relayed')"
        topo.ex(topo.client, sys.executable, "-c", SENDP, "c0", mac(topo, topo.fw, "eth0"), dgram, check=True)
        assert listener.expect("got") == ["0"]
        table = topo.ex(topo.fw, "nft", "list", "table", "inet", TABLE, check=True).stdout
        assert counters(table).get(("rule 7", "drop"), 0) >= 1, table
    finally:
        listener.close()
        a.stop()
