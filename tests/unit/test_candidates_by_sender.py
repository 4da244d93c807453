"""Header candidates are cached by the end that sent the packet (FlowTable.lookup sets
pkt.from_initiator), not by to_server: an ICMP echo packet is to_client by its type, so the
initiator's echo reply is to_client yet carries the initiator's header. No echo special
case in Detector.candidates: each packet's header candidates are those of its own header."""
from scapy.all import ICMP, IP, TCP, raw

from appliance.decode import decode_l3
from appliance.detect.loader import load_rules
from appliance.flow import FlowTable
from appliance.inspector import Inspector

RULES = """\
rules:
  - {id: 1, action: alert, proto: icmp, src: 10.0.0.1, dst: 10.0.0.2, content: "a"}
  - {id: 2, action: alert, proto: icmp, src: 10.0.0.2, dst: 10.0.0.1, content: "b"}
  - {id: 3, action: alert, proto: tcp, src: 10.0.0.1, dst: 10.0.0.2, dst_port: 80, content: "c"}
  - {id: 4, action: alert, proto: tcp, src: 10.0.0.2, src_port: 80, dst: 10.0.0.1, content: "d"}
  - {id: 5, action: pass, proto: ip}
"""


def _echo(src, dst, typ, ts):
    return decode_l3(raw(IP(src=src, dst=dst) / ICMP(type=typ, id=7, seq=1) / b"x"), ts=ts)


def _ids(insp, mask):
    return sorted(r.id for i, r in enumerate(insp.detector.rules) if mask >> i & 1)


def _insp(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return Inspector(load_rules(path))


def test_flow_lookup_says_which_end_sent_the_packet():
    table = FlowTable()
    cases = [(("10.0.0.1", "10.0.0.2", 8), True, True),      # request from the initiator
             (("10.0.0.2", "10.0.0.1", 0), False, False),    # the responder's reply
             (("10.0.0.1", "10.0.0.2", 0), False, True),     # the initiator's reply: to_client, its own header
             (("10.0.0.2", "10.0.0.1", 8), False, False)]    # the responder's request
    for (src, dst, typ), to_server, from_initiator in cases:
        pkt = _echo(src, dst, typ, 1.0)
        _, ts, _ = table.lookup(pkt)
        assert (ts, pkt.from_initiator) == (to_server, from_initiator), (src, typ)


def test_echo_packets_get_their_own_headers_candidates(tmp_path):
    insp = _insp(tmp_path)
    seen = []
    for src, dst, typ in (("10.0.0.1", "10.0.0.2", 0),    # the initiator's reply comes first on the to_client side
                          ("10.0.0.2", "10.0.0.1", 0),    # the responder's reply
                          ("10.0.0.1", "10.0.0.2", 8),    # the initiator's request
                          ("10.0.0.2", "10.0.0.1", 8)):   # the responder's request
        pkt = _echo(src, dst, typ, 1.0 + len(seen))
        flow, to_server, _ = insp.flows.lookup(pkt)
        seen.append(_ids(insp, insp.detector.candidates(pkt, flow, pkt.from_initiator)))
    # (a first-seen reply comes from the responder: the flow's initiator is 10.0.0.2) whatever
    # the packet's type and the flow's orientation, each packet's rules are its own addresses'
    assert seen == [[1, 5], [2, 5], [1, 5], [2, 5]]


def test_the_initiators_echo_reply_first_fills_only_its_own_slot_and_the_other_stays_right(tmp_path):
    insp = _insp(tmp_path)
    insp.process(_echo("10.0.0.1", "10.0.0.2", 8, 1.0))
    v = insp.process(_echo("10.0.0.1", "10.0.0.2", 0, 1.1))
    flow = v.flow
    assert _ids(insp, flow.cand_ts) == [1, 5]
    assert flow.cand_tc is None or _ids(insp, flow.cand_tc) == [2, 5]   # (more_to_inspect may fill it: the responder's)
    v = insp.process(_echo("10.0.0.2", "10.0.0.1", 0, 1.2))
    assert _ids(insp, v.flow.cand_tc) == [2, 5]


def test_tcp_candidates_by_sender_are_the_directions(tmp_path):
    insp = _insp(tmp_path)
    syn = decode_l3(raw(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=4000, dport=80, flags="S")), ts=1.0)
    synack = decode_l3(raw(IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=80, dport=4000, flags="SA")), ts=1.1)
    insp.process(syn)
    v = insp.process(synack)
    assert syn.from_initiator and not synack.from_initiator
    assert _ids(insp, v.flow.cand_ts) == [3, 5] and _ids(insp, v.flow.cand_tc) == [4, 5]


def _run(tmp_path, rules, packets):
    path = tmp_path / "r.yaml"
    path.write_text(rules)
    insp = Inspector(load_rules(path))
    out = [insp.process(decode_l3(raw(IP(src=s, dst=d) / ICMP(type=t, id=7, seq=1) / data), ts=1.0 + i)).action
           for i, (s, d, t, data) in enumerate(packets)]
    return out, insp


def test_the_initiators_own_echo_reply_does_not_hide_the_responders_from_a_drop_rule(tmp_path):
    """A pings B, then sends an echo reply itself (to_client by its type): B's reply is still
    read with B's header, and the `header: packet` drop rule for B -> A drops it (before the
    side-keyed cache, A's reply filled B's slot and B's reply passed: review rvhdr)."""
    rules = ("rules:\n  - {id: 1, action: drop, proto: icmp, src: 10.0.0.2, dst: 10.0.0.1, header: packet}\n"
             "  - {id: 2, action: pass, proto: tcp}\n")
    out, _ = _run(tmp_path, rules, [("10.0.0.1", "10.0.0.2", 8, b"x"), ("10.0.0.1", "10.0.0.2", 0, b"x"),
                                     ("10.0.0.2", "10.0.0.1", 0, b"x")])
    assert out == ["pass", "pass", "drop"]


def test_an_empty_slot_is_filled_when_more_is_asked(tmp_path):
    """more_to_inspect on a packet whose side has no candidates yet fills them itself."""
    rules = ("rules:\n  - {id: 1, action: alert, proto: icmp, src: 10.0.0.1, dst: 10.0.0.2, content: zz}\n"
             "  - {id: 2, action: pass, proto: icmp}\n")
    out, insp = _run(tmp_path, rules, [("10.0.0.1", "10.0.0.2", 8, b"x"), ("10.0.0.1", "10.0.0.2", 0, b"x"),
                                        ("10.0.0.2", "10.0.0.1", 0, b"zz")])
    assert out == ["pass", "pass", "pass"] and insp.counters.internal_errors == 0
