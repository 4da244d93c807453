"""A flow first seen from its responder (a SYN/ACK, an echo reply) arriving on an outside
interface was begun inside: outbound. The responder is told by the key's side, not by
comparing addresses: one host talking to itself on two ports (or an echo to itself) has the
same address at both ends, and the address comparison called such a flow inbound."""

from scapy.all import ICMP, IP, TCP, raw

from appliance.decode import decode_l3
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings


def inspector(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - {id: 1, action: pass, proto: tcp, dst_port: 80}\n")
    return Inspector(load_rules(path), Settings(outside_ifaces=("outside",), verify_checksums=False))


def first(insp, frame, iface):
    p = decode_l3(raw(frame), 1.0)
    p.in_iface = iface
    return insp.process(p).flow


def test_a_synack_first_from_outside_is_outbound_between_two_hosts(tmp_path):
    flow = first(inspector(tmp_path), IP(src="198.51.100.7", dst="10.0.0.5") / TCP(sport=80, dport=40000, flags="SA"), "outside")
    assert flow.direction == "outbound"


def test_a_synack_first_from_outside_is_outbound_on_one_host(tmp_path):
    flow = first(inspector(tmp_path), IP(src="10.0.0.5", dst="10.0.0.5") / TCP(sport=80, dport=40000, flags="SA"), "outside")
    assert (flow.sport, flow.dport) == (40000, 80)         # the flow is the client's
    assert flow.direction == "outbound"


def test_an_echo_reply_to_oneself_first_from_outside_is_outbound(tmp_path):
    flow = first(inspector(tmp_path), IP(src="10.0.0.5", dst="10.0.0.5") / ICMP(type=0, id=7), "outside")
    assert flow.direction == "outbound"


def test_a_syn_from_outside_is_inbound(tmp_path):
    flow = first(inspector(tmp_path), IP(src="10.0.0.5", dst="10.0.0.5") / TCP(sport=40000, dport=80, flags="S"), "outside")
    assert flow.direction == "inbound"
