"""Live: the appliance forwards from one side to the other and nothing else (netfilter.py). A
packet routed back out where it came in bears an address of the side it came from: the
client's forged server RST (review s19 F6: the RST closed the flow here, a SYN opened a new
one and the request after it passed unread), a spoofed source relayed to a neighbour. It is
dropped in FORWARD, before conntrack confirms an entry for it: queued, one could start a flow
whose answer is the real traffic (review s20 F1); forwarded, it went by uninspected.

Own topology (namespaces prefixed "ing-"), deleted at the end of the module.
"""
import json
import sys

import pytest

from datapath import topology_fixture, appliances, wait_for
from test_live_offload import (ALLOWLIST, EVIL_HELLO, GOOD_HELLO, NEXT_FLIGHT, Proc, conn,  # noqa: F401 (conn: a fixture)
                               scapy_send)

pytestmark = pytest.mark.netns

topo = topology_fixture("ing", client_aliases=1)        # 10.1.0.3: a second outside host

# argv: interface, destination MAC, a scapy expression of the IP packet
SENDP = """
import sys
from scapy.all import Ether, IP, TCP, UDP, Raw, sendp
sendp(Ether(dst=sys.argv[2]) / eval(sys.argv[3]), iface=sys.argv[1], verbose=0)
"""

# Prints how many datagrams reach argv[1]:argv[2] within 2 s of "ready".
UDP_LISTEN = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], int(sys.argv[2]))); s.settimeout(0.2)
print('ready', flush=True)
n, end = 0, time.monotonic() + 2
while time.monotonic() < end:
    try:
        s.recv(100); n += 1
    except socket.timeout:
        pass
print('got', n, flush=True)
"""


@pytest.fixture
def appliance(topo, tmp_path):
    yield from appliances(topo, tmp_path, ALLOWLIST)


def mac(topo, ns, dev):
    return json.loads(topo.ex(ns, "ip", "-j", "link", "show", dev, check=True).stdout)[0]["address"]


def sendp(topo, ns, dev, fw_dev, expr):
    """From `ns` out of `dev`, to the appliance's `fw_dev` MAC, whatever the addresses say."""
    topo.ex(ns, sys.executable, "-c", SENDP, dev, mac(topo, topo.fw, fw_dev), expr, check=True)


def side_drops(topo, iface):
    """Packets APPLIANCE-FWD dropped that entered on `iface` (neither to the other side)."""
    out = topo.ex(topo.fw, "iptables-nft", "-L", "APPLIANCE-FWD", "-v", "-x", "-n", check=True).stdout
    return sum(int(f[0]) for f in (line.split() for line in out.splitlines())
               if len(f) > 6 and f[2] == "DROP" and f[5] == iface)


def forge_server_rst(topo, cport, rcv):
    """From the client's namespace, in the server's name, to the appliance's eth0 MAC: the
    kernel routes it back out of eth0, toward the client."""
    sendp(topo, topo.client, "c0", "eth0",
          f"IP(src='{topo.server_ip}', dst='{topo.client_ip}') / TCP(sport=443, dport={cport}, flags='R', seq={rcv})")


def test_a_server_rst_sent_from_the_clients_side_is_dropped(topo, appliance, conn):
    a = appliance(workers=1).start()
    try:
        server, client, cport, snd, rcv = conn(443)
        before = side_drops(topo, "eth0")
        forge_server_rst(topo, cport, rcv)
        wait_for(lambda: side_drops(topo, "eth0") > before, timeout=5, what="the forged RST dropped in FORWARD")
        # it never came back to the client (its socket is open) nor reached a worker's flow
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
    connection. The client's kernel ignores RSTs from the server (the attacker's own), so the
    forged one cannot end its socket whatever the appliance does."""
    topo.ex(topo.client, "iptables-nft", "-I", "INPUT", "-p", "tcp", "--tcp-flags", "RST", "RST",
            "-s", topo.server_ip, "-j", "DROP", check=True)
    a = appliance(workers=1).start()
    try:
        server, client, cport, snd, rcv = conn(443)
        before = a.queued()
        forge_server_rst(topo, cport, rcv)
        scapy_send(topo, topo.client, f"IP(src='{topo.client_ip}', dst='{topo.server_ip}') / "
                                      f"TCP(sport={cport}, dport=443, flags='S', seq=777777)")
        wait_for(lambda: a.queued() > before, timeout=5, what="the SYN queued")
        client.say("send " + EVIL_HELLO)
        client.expect("sent")
        server.say("read 2")
        assert server.expect("got") == ["0"], "the blocked ClientHello reached the server"
    finally:
        a.stop()
        topo.ex(topo.client, "iptables-nft", "-F", "INPUT")


@pytest.mark.parametrize("kernel", [False, True], ids=["worker", "kernel_decisions"])
def test_a_packet_routed_back_out_where_it_came_in_is_dropped(topo, appliance, kernel):
    """An outside host relays a datagram with a source not its own (the data ENIs do no
    source check) through the appliance to another outside host. It used to go by
    uninspected; the rules pass everything here, and it is dropped all the same."""
    extra = "inspection: {kernel_decisions: true}\n" if kernel else ""
    a = appliance(rules="default_action: pass\nrules: []\n", workers=1, extra=extra).start()
    listener = Proc(topo, topo.client, UDP_LISTEN, "10.1.0.3", "9999")
    try:
        listener.expect("ready")
        for _ in range(3):
            sendp(topo, topo.client, "c0", "eth0", "IP(src='10.1.0.9', dst='10.1.0.3') / UDP(sport=5555, dport=9999) / Raw(b'relayed')")
        assert listener.expect("got") == ["0"], "the relayed datagram went through"
        assert side_drops(topo, "eth0") >= 3
    finally:
        listener.close()
        a.stop()


# Review s20 F1 (of f6889c8, which queued such packets): an inside host that can spoof sends,
# in the outside host's name, one datagram to itself (routed back out of eth1); judged as an
# outbound flow and passed by a header rule, its conntrack entry got the pass mark, and the
# inside host's datagrams to the outside host, that entry's reply direction, went by.
EGRESS = """\
default_action: drop
rules:
  - {id: 1, action: pass, proto: udp, direction: outbound, dst_port: 123}
"""

SEND_FROM = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("10.2.0.2", int(sys.argv[3])))
for _ in range(5):
    s.sendto(b"exfil", (sys.argv[1], int(sys.argv[2]))); time.sleep(0.05)
"""


@pytest.mark.parametrize("kernel", [False, True], ids=["worker", "kernel_decisions"])
def test_a_forged_reverse_flow_does_not_open_the_way_out(topo, appliance, kernel):
    extra = "inspection: {kernel_decisions: true}\n" if kernel else ""
    a = appliance(rules=EGRESS, workers=1, extra=extra).start()
    port = 4400 if kernel else 4300
    listener = Proc(topo, topo.client, UDP_LISTEN, topo.client_ip, str(port))
    try:
        listener.expect("ready")
        sendp(topo, topo.server, "s0", "eth1",
              f"IP(src='{topo.client_ip}', dst='{topo.server_ip}') / UDP(sport={port}, dport=123) / Raw(b'x')")
        topo.ex(topo.server, sys.executable, "-c", SEND_FROM, topo.client_ip, str(port), "123", check=True)
        assert listener.expect("got") == ["0"], "datagrams to a port no rule allows reached the outside host"
        assert side_drops(topo, "eth1") >= 1
    finally:
        listener.close()
        a.stop()
