"""An urgent pointer past the end of its segment (found by `python3 -m bench.fuzz`, target
stream and inspector): it names a byte still to come, which leaves the stream when it
arrives, as in Linux (TCP_URG_NOTYET). It raised a TypeError in ClientStream._out_of_band,
and the segment was passed and never added to the stream."""
from scapy.all import IP, IPv6, TCP, raw

from appliance.decode import decode_l3
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector
from appliance.stream import ClientStream


def seg(flags, seq, data=b"", urgptr=0, ack=901):
    return decode_l3(raw(IP(src="10.0.0.1", dst="10.0.0.2")
                         / TCP(sport=40000, dport=80, flags=flags, seq=seq, ack=ack, urgptr=urgptr) / data), 1.0)


def test_pointer_into_the_next_segment_takes_that_byte_out():
    st = ClientStream()
    found = []
    st.feed(seg("S", 100, ack=0), True, 8192, found)
    assert st.feed(seg("PAU", 101, b"Host: ev", urgptr=9), True, 8192, found) is True
    assert st.data == b"Host: ev"
    assert st.feed(seg("PA", 109, b"Xil.example"), True, 8192, found) is True
    assert st.data == b"Host: evil.example" and found == []


def test_pointer_far_past_the_segment_keeps_the_segment():
    st = ClientStream()
    found = []
    st.feed(seg("S", 100, ack=0), True, 8192, found)
    assert st.feed(seg("PAU", 101, b"GET / HTTP/1.1\r\n", urgptr=0xFFFF), True, 8192, found) is True
    assert st.data == b"GET / HTTP/1.1\r\n"


RULES = "rules:\n  - {id: 1, action: drop, http_host: evil.example}\n"


def test_inspector_reads_the_name_after_a_far_urgent_pointer(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(RULES)
    insp = Inspector(load_rules(path))
    for i, pkt in enumerate([seg("S", 100, ack=0), seg("PAU", 101, b"GET / HTTP/1.1\r\nHost: ev", urgptr=200),
                             seg("PA", 125, b"il.example\r\n\r\n")]):
        pkt.ts = 1.0 + i
        v = insp.process(pkt)
    assert insp.counters.internal_errors == 0
    assert v.action == "drop"


# The fuzzer's own input (target stream): one IPv6 record, URG with pointer 0x0405 on 4 bytes.
FUZZ_CRASH = bytes.fromhex(
    "f64060000000001806ef000c00000000000000032a0104f64060000000001806ef000c00000000000000032a0104"
    "f802000000032ada5ab4e220fbd3e4d5f7100012020405b4f802000000032ada5ab4e220fbd3e4d5f7100012020405b4")


def test_fuzz_crash_input_through_the_inspector(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(RULES)
    insp = Inspector(load_rules(path))
    pkt = decode_l3(FUZZ_CRASH[2:], 1.0)
    assert pkt.tcp_flags & 0x20 and pkt.urg_ptr > len(pkt.payload) > 0
    insp.process(pkt)
    assert insp.counters.internal_errors == 0
    flow = next(iter(insp.flows.flows.values()))
    # its flags carry RST too (0xb4): Linux never delivers a RST's payload, so nothing is kept
    assert pkt.tcp_flags & 0x04 and flow.stream is None


def test_ipv6_pointer_past_the_end():
    wire = raw(IPv6(src="fd00::1", dst="fd00::2") / TCP(sport=1, dport=2, flags="PAU", seq=5, urgptr=300) / b"abcd")
    st = ClientStream()
    assert st.feed(decode_l3(wire), True, 8192, []) is True
    assert st.data == b"abcd"
