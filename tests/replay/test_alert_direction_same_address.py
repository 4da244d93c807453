"""An alert's direction when both ends have the same address (hairpin NAT, a host talking
to itself through the appliance): the ports tell the ends apart, as the flow key does.
events.alert compares the packet's address text and port with the flow's initiator; both
texts come from the same raw bytes through one function (flow.address_text), so IPv6 forms
cannot differ either."""
import pytest

from replaykit import Capture, TcpConn

RULE = 'alert tcp any any <> any any (msg:"l"; content:"l"; sid:70;)\n'


@pytest.mark.parametrize("addr", ["10.0.0.1", "2001:db8::1"])
def test_same_address_different_ports(run, rules_file, addr):
    cap = Capture()
    c = TcpConn(cap, addr, 40010, addr, 23)
    c.handshake()
    c.send(b"hello\r\n")
    c.recv(b"login: ")
    r = run(cap, rules_file(RULE, "a.rules"))
    assert [(e["src_port"], e["direction"]) for e in r.alerts(70)] == [(40010, "to_server"), (23, "to_client")]
