"""Handshake copies lost (inspection.handshake_copies; Inspector.copies_lost): the kernel passed
a SYN or SYN/ACK the engine never saw, and which flow it belonged to is unknown. Every TCP
flow still in its handshake is forgotten, so its next packet starts it mid-stream: the
midstream exception judges it (exception_policy), never a guess. Live: tests/netns/test_handshake_copies.py."""
import json

from scapy.all import IP, TCP, Raw

from appliance.decode import decode_l3
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings
from appliance.output.eve import EveWriter

RULES = """default_action: drop
rules:
  - {id: 1, msg: web, action: pass, proto: tcp, dst_port: 8080, http_host: a.example}
"""
C, S = "10.1.0.2", "10.2.0.2"
T0 = 1_700_000_000.0


def seg(sport, flags, seq, ack, data=b"", to_server=True):
    ip = IP(src=C, dst=S) / TCP(sport=sport, dport=8080, flags=flags, seq=seq, ack=ack) if to_server else \
        IP(src=S, dst=C) / TCP(sport=8080, dport=sport, flags=flags, seq=seq, ack=ack)
    return bytes(ip / Raw(data)) if data else bytes(ip)


def conversation(sport, request):
    """SYN, SYN/ACK (the copies), then the ACK and the request (queued)."""
    return ([seg(sport, "S", 1000, 0), seg(sport, "SA", 5000, 1001, to_server=False)],
            [seg(sport, "A", 1001, 5001), seg(sport, "PA", 1001, 5001, request)])


def inspector(tmp_path, policy="drop", rules=RULES):
    p = tmp_path / "rules.yaml"
    p.write_text(rules)
    eve_path = tmp_path / "eve.json"
    return Inspector(load_rules(str(p)), Settings(exception_policy=policy), EveWriter(str(eve_path))), eve_path


def feed(insp, frames, t):
    return [insp.process(decode_l3(f, t + i * 0.001)).action for i, f in enumerate(frames)]


GOOD = b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n"


def test_a_lost_copy_forgets_the_flows_in_their_handshake(tmp_path):
    insp, eve_path = inspector(tmp_path)
    done_copies, done_queued = conversation(40001, GOOD)
    open_copies, open_queued = conversation(40002, GOOD)
    feed(insp, done_copies + done_queued[:1], T0)          # handshake done before the loss
    feed(insp, open_copies[:1], T0 + 1)                     # its SYN/ACK's copy is lost
    assert insp.copies_lost(T0 + 2) == 1
    assert feed(insp, done_queued[1:], T0 + 3) == ["pass"]              # unaffected
    # the allowed Host, but the engine cannot know the handshake: picked up mid-stream, the
    # allow list's name is unknown and the default drops it (as any midstream flow)
    assert feed(insp, open_queued, T0 + 4) == ["drop", "drop"]
    insp.close()
    events = [json.loads(line) for line in eve_path.read_text().splitlines()]
    anomalies = [e["anomaly"]["event"] for e in events if e["event_type"] == "anomaly"]
    assert anomalies == ["copy.lost"]
    forgotten = [e for e in events if e["event_type"] == "flow" and e["flow"]["reason"] == "copy_lost"]
    assert [e["src_port"] for e in forgotten] == [40002]


BLOCK = """default_action: pass
rules:
  - {id: 1, msg: bad, action: drop, proto: tcp, http_host: evil.example}
"""


def test_the_exception_policy_decides_a_forgotten_flow(tmp_path):
    for policy, want in (("drop", ["drop", "drop"]), ("ignore", ["pass", "pass"])):
        insp, _ = inspector(tmp_path, policy, BLOCK)
        copies, queued = conversation(40003, GOOD)
        feed(insp, copies, T0)
        assert insp.copies_lost(T0 + 1) == 1
        # drop: a block list's names read mid-stream may not be the server's; ignore: they are used
        assert feed(insp, queued, T0 + 2) == want, policy
        insp.close()
