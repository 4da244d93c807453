"""Work the inspected path no longer does (docs/performance-passes.md, "What an inspected packet
costs"): each test watches the work itself, in the build that runs (or, where only the
interpreter can watch calls, in pure Python in a child process), and fails when it comes back."""
import json
import os
import random
import subprocess
import sys

from scapy.all import IP, IPv6, TCP, UDP, raw

from appliance.checksum import transport_ok
from appliance.decode import decode_l3
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

RULES = """\
rules:
  - {id: 1, action: alert, proto: tcp, dst_port: 80, content: "evil"}
  - {id: 2, action: alert, proto: tcp, src_port: 80, content: "worse"}
  - {id: 3, action: pass, proto: tcp, dst_port: 80}
"""


def test_a_first_packet_does_not_build_the_reverse_candidates_it_does_not_need(tmp_path):
    # A SYN (every packet of a SYN flood) passed by a header rule: a content alert rule still
    # looks at this direction, so the flow stays inspected whatever the other direction's
    # rules are; the reverse view and its four index lookups are left for a packet that goes
    # that way.
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    insp = Inspector(load_rules(path))
    syn = decode_l3(raw(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40000, dport=80, flags="S", seq=1)), ts=1.0)
    v = insp.process(syn)
    flow = v.flow
    assert flow.cand_ts is not None and flow.cand_ts & 1           # rule 1 looks at it
    assert flow.cand_tc is None                                     # not looked up for nothing
    assert flow.verdict == "pass" and not flow.final
    # the answer's own candidates are looked up when it comes, and find rule 2
    synack = decode_l3(raw(IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=80, dport=40000, flags="SA",
                                                                     seq=9, ack=2)), ts=1.1)
    assert insp.process(synack).flow is flow
    assert flow.cand_tc is not None and flow.cand_tc & 2


EVENT_CALLS = r"""
import json, sys
from scapy.all import DNS, DNSQR, IP, UDP, raw
from appliance import compiled
from appliance.decode import decode_l3
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector
from appliance.output import events
from appliance.output.eve import EveWriter
assert not compiled.active, compiled.active          # only the interpreter reports these calls
built = {"protocol": 0, "alert": 0}
watched = {events.protocol.__code__: "protocol", events.alert.__code__: "alert"}
def watch(frame, event, arg):
    if event == "call" and frame.f_code in watched:
        built[watched[frame.f_code]] += 1
insp = Inspector(load_rules(sys.argv[1]), eve=EveWriter(sys.argv[2]) if len(sys.argv) > 2 else None)
query = raw(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5353, dport=53) / DNS(rd=1, qd=DNSQR(qname="example.com")))
sys.setprofile(watch)
alerts = [r.id for r in insp.process(decode_l3(query, ts=1.0)).alerts]
sys.setprofile(None)
print(json.dumps({"built": built, "alerts": alerts}))
"""


def _event_calls(rules, *eve):
    env = dict(os.environ, APPLIANCE_PURE_PYTHON="1")
    out = subprocess.run([sys.executable, "-c", EVENT_CALLS, str(rules), *map(str, eve)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_no_event_is_built_when_no_eve_is_written(tmp_path):
    # A DNS query that is logged (dns) and alerts: with an EVE writer both events are built
    # and written; without one (a replay without --eve) neither is built, and the alert still counts.
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {id: 7, action: alert, proto: udp, dst_port: 53}\n")
    eve = tmp_path / "eve.json"
    written = _event_calls(rules, eve)
    assert written == {"built": {"protocol": 1, "alert": 1}, "alerts": [7]}
    assert sorted(json.loads(line)["event_type"] for line in eve.read_text().splitlines()) == ["alert", "dns"]
    assert _event_calls(rules) == {"built": {"protocol": 0, "alert": 0}, "alerts": [7]}


def _rfc1071(words_bytes):
    """The Internet checksum's sum as RFC 1071 writes it: 16-bit words, end-around carry."""
    if len(words_bytes) & 1:
        words_bytes += b"\0"
    s = 0
    for i in range(0, len(words_bytes), 2):
        s += words_bytes[i] << 8 | words_bytes[i + 1]
        s = (s & 0xFFFF) + (s >> 16)
    return s


def test_transport_checksum_agrees_with_the_word_sum():
    # transport_ok sums the pseudo-header as numbers (addresses, protocol, length), not as
    # built bytes: it must still say exactly what the RFC 1071 sum says, odd lengths (the
    # zero pad) and IPv6's 32-bit length included, for good and damaged segments.
    rng = random.Random(15)
    for i in range(400):
        size = rng.randrange(0, 1400)
        data = bytes(rng.getrandbits(8) for _ in range(size))
        v6 = i % 2
        ip = IPv6(src="2001:db8::1", dst="2001:db8::2") if v6 else IP(src="10.0.0.1", dst="10.0.0.2")
        l4 = TCP(sport=1000 + i, dport=80, flags="PA", seq=i) if i % 3 else UDP(sport=1000 + i, dport=53)
        wire = bytearray(raw(ip / l4 / data))
        if i % 4 == 0:
            wire[-1 if size else -3] ^= 1 << rng.randrange(8)          # damaged
        pkt = decode_l3(bytes(wire), ts=1.0)
        off, end = pkt.l4_off, pkt.length
        seg = bytes(wire[off:end])
        n = len(seg)
        if v6:
            pseudo = bytes(wire[8:40]) + n.to_bytes(4, "big") + bytes((0, 0, 0, pkt.proto))
        else:
            pseudo = bytes(wire[12:20]) + bytes((0, pkt.proto)) + n.to_bytes(2, "big")
        want = _rfc1071(pseudo + seg) in (0xFFFF, 0)
        if not v6 and pkt.proto == 17 and seg[6:8] == b"\0\0":
            want = None
        assert transport_ok(pkt) is want, (i, size, v6)


def test_compiled_inspector_holds_its_fields_as_struct_members(tmp_path):
    # _c_inspector.pxd, detect/_c_engine.pxd and output/_c_events.pxd make Inspector,
    # Verdict, Detector and Counters extension types; a field __init__ sets that the .pxd does not declare would silently go
    # back to the instance dict (and to the dict lookups per packet it was declared to save)
    from appliance import compiled
    import appliance.inspector as inspector
    if "appliance.inspector" not in compiled.active:
        import pytest
        pytest.skip("inspector runs as pure Python here (" + compiled.describe() + ")")
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    insp = inspector.Inspector(load_rules(path))
    assert vars(insp) == {}
    assert vars(insp.detector) == {}
    assert vars(insp.counters) == {}
    v = insp.process(decode_l3(raw(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2)), ts=1.0))
    assert not hasattr(v, "__dict__")
