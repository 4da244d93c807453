"""Live: a segment that dies past the appliance (review s19d F2/F4). The client sends its
allowed ClientHello with a TTL that lets it through the appliance and no further, then its
real, blocked one at the same sequence numbers: the server reads only the second. The
appliance keeps the bytes it read until the server acknowledges them and compares the
second copy with them (appliance/stream.py): a conflict, read against the attacker.

The hop past the appliance is stood in for by an nftables rule in the server's namespace
that drops what arrives with TTL 1 (a router there would: the appliance forwarded it with
TTL 2 - 1). Own topology (namespaces prefixed "unc-"), deleted at the end of the module.
"""
import pytest

from datapath import topology_fixture, appliances, wait_for
from test_live_offload import (ALLOWLIST, BLOCKLIST, EVIL_HELLO, GOOD_HELLO, NEXT_FLIGHT, MARK_PASS, conn,  # noqa: F401 (conn: a fixture)
                               conntrack_marks, scapy_send)

pytestmark = pytest.mark.netns

topo = topology_fixture("unc")

HOP = "table ip hop {\n chain pre {\n  type filter hook prerouting priority -300; policy accept;\n" \
      "  ip protocol tcp ip ttl 1 counter drop\n }\n}\n"


@pytest.fixture
def appliance(topo, tmp_path):
    yield from appliances(topo, tmp_path, ALLOWLIST)


@pytest.fixture
def hop(topo):
    topo.ex(topo.server, "nft", "-f", "-", input=HOP, check=True)
    yield lambda: int(topo.ex(topo.server, "nft", "list", "table", "ip", "hop", check=True)
                      .stdout.split("packets ")[1].split()[0])
    topo.ex(topo.server, "nft", "delete", "table", "ip", "hop")


def send_decoy(topo, a, hop, cport, snd, rcv, data):
    """`data` from the client at its next sequence number with TTL 2: read by the appliance,
    dropped past it."""
    before = a.queued()
    scapy_send(topo, topo.client, f"IP(src='{topo.client_ip}', dst='{topo.server_ip}', ttl=2) / "
                                  f"TCP(sport={cport}, dport=443, flags='PA', seq={snd}, ack={rcv}) / "
                                  f"Raw(bytes.fromhex('{data.hex()}'))")
    wait_for(lambda: hop() == 1 and a.queued() > before, timeout=5,
             what="the decoy read by the appliance and dropped past it")
    assert MARK_PASS not in conntrack_marks(topo, 443)         # passed, not final: unacknowledged


def test_a_decoy_that_dies_past_the_appliance_does_not_pass_the_request_at_its_place(topo, appliance, conn, hop):
    a = appliance(workers=1).start()
    try:
        server, client, cport, snd, rcv = conn(443)
        send_decoy(topo, a, hop, cport, snd, rcv, bytes.fromhex(GOOD_HELLO))
        client.say("send " + EVIL_HELLO)                       # the server reads this one
        client.expect("sent")
        client.say("send " + NEXT_FLIGHT)
        client.expect("sent")
        server.say("read 2")
        assert server.expect("got") == ["0"], "the blocked ClientHello reached the server"
    finally:
        a.stop()


def test_a_decoy_naming_nothing_does_not_offload_before_the_server_has_it(topo, appliance, conn, hop):
    """Against a blocklist: bytes that name nothing (a banner-like line) end the flow's reading;
    they were enough for a final pass, offloaded, and the blocked hello at their place went by
    in the kernel. The pass waits for the server's ACK of them; the hello is compared."""
    a = appliance(rules=BLOCKLIST, workers=1).start()
    try:
        server, client, cport, snd, rcv = conn(443)
        junk = (b"SSH-2.0-OpenSSH_9.6\r\n" + bytes(len(EVIL_HELLO) // 2))[:len(EVIL_HELLO) // 2]
        send_decoy(topo, a, hop, cport, snd, rcv, junk)
        client.say("send " + EVIL_HELLO)
        client.expect("sent")
        server.say("read 2")
        assert server.expect("got") == ["0"], "the blocked ClientHello reached the server"
    finally:
        a.stop()


def test_the_same_hello_reaching_the_server_is_offloaded_once_acknowledged(topo, appliance, conn, hop):
    """The control: the allowed hello reaches the server, whose ACK makes the pass final; the
    client's next flight then goes by in the kernel."""
    a = appliance(workers=1).start()
    try:
        server, client, cport, snd, rcv = conn(443)
        client.say("send " + GOOD_HELLO)
        client.expect("sent")
        client.say("send " + NEXT_FLIGHT)
        client.expect("sent")
        server.say("read 1")
        assert server.expect("got") == [str((len(GOOD_HELLO) + len(NEXT_FLIGHT)) // 2)]
        wait_for(lambda: MARK_PASS in conntrack_marks(topo, 443), timeout=5, what="the flow offloaded")
        assert hop() == 0
    finally:
        a.stop()
