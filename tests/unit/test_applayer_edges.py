"""Parser and rule-set edges that one-line mutations showed untested (python3 -m bench.mutate)."""
import struct

from appliance.applayer import detect, dns, tls
from appliance.detect.loader import load_rules
from appliance.packet import UDP

GREASE = [0x0A0A + 0x1010 * i for i in range(16)]          # RFC 8701: 0x0A0A, 0x1A1A .. 0xFAFA


def test_grease_is_exactly_the_sixteen_values():
    assert all(tls.is_grease(v) for v in GREASE)
    # same low nibbles, different bytes: real code points, not GREASE
    for v in (0x0A1A, 0x1A0A, 0x2AFA, 0x0A0B, 0x0B0A, 0x0303, 0x0304):
        assert not tls.is_grease(v), hex(v)


def test_mdns_question_with_the_unicast_response_bit():
    # mDNS (RFC 6762 5.4) sets the top bit of qclass to ask for a unicast answer: QU, class IN.
    name = b"\x07printer\x05local\x00"
    query = struct.pack("!6H", 0, 0, 1, 0, 0, 0) + name + struct.pack("!HH", 12, 0x8001)
    assert dns.plausible(query)
    assert detect(query, UDP, 5353, 5353) == "dns"
    assert [q.rrname for q in dns.parse_message(query).queries] == ["printer.local"]
    assert not dns.plausible(query[:-2] + struct.pack("!H", 0x8002))   # class 2 (CSNET) is not one


def test_a_list_of_two_negated_variables_is_their_union(tmp_path):
    # [$NOT_A, $NOT_B] = (not A) or (not B) = not (A and B): here everything outside 10.1/16.
    path = tmp_path / "r.yaml"
    path.write_text("vars:\n  NOT_A: '!10.0.0.0/8'\n  NOT_B: '!10.1.0.0/16'\n"
                    "rules:\n  - {id: 1, action: alert, src: [$NOT_A, $NOT_B]}\n")
    src = load_rules(path).rules[0].src
    assert src.contains("10.2.3.4") and src.contains("192.0.2.1")
    assert not src.contains("10.1.2.3")
