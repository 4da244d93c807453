"""payload: both (Suricata's default for a TCP content rule without flow:only_stream or
no_stream): content read on the reassembled stream of the packet's direction where the flow
is reassembled, on the packet's own payload elsewhere. The review's evasion: a converted
drop rule's content split over TCP segments passed (review "rules" finding 4)."""
import subprocess
import sys
from pathlib import Path

import pytest
from replaykit import Capture, TcpConn, alerted, feed, handshaken, write, ip_of, l2
from scapy.layers.inet import UDP
from scapy.packet import Raw

from appliance.detect.convert import Source, convert
from appliance.detect.loader import load_rules, skip_report

C, S = "10.0.0.5", "93.184.216.34"
REPO = Path(__file__).resolve().parents[2]
# the reviewer's rule, as written
SPLIT = 'drop tcp $HOME_NET any -> any 8080 (msg:"cmd"; flow:established,to_server; content:"EVILCMD"; sid:1;)\n'


def conn(port=8080):
    return handshaken(C, S, port)


def actions(out):
    return [a for _, a, _ in out]


def alert_events(events):
    return [e["alert"]["signature_id"] for e in events if e["event_type"] == "alert"]


def test_the_converted_rule_reads_both():
    rs = load_rules_text(SPLIT)
    assert rs.rules[0].payload == "both" and rs.notes == []


def load_rules_text(text, suffix=".rules"):
    import tempfile
    d = Path(tempfile.mkdtemp())
    p = d / ("x" + suffix)
    p.write_text(text)
    return load_rules(str(p))


def test_the_reviewers_split_is_dropped_on_the_completing_segment(tmp_path):
    cap, c = conn()
    a = c.send(b"xxEVI")
    b = c.send(b"LCMDyy")
    out, events = feed(cap, write(tmp_path, "r.rules", SPLIT))
    assert out[a - 1][1] == "pass" and out[b - 1][1] == "drop"
    assert alert_events(events) == [1]


def test_three_segments_and_one_byte_a_segment(tmp_path):
    rules = write(tmp_path, "r.rules", SPLIT)
    cap, c = conn()
    c.send(b"xEV")
    c.send(b"ILC")
    last = c.send(b"MDx")
    out, _ = feed(cap, rules)
    assert [n for n, a, _ in out if a == "drop"] == [last]
    cap, c = conn()
    sent = [c.send(bytes([ch])) for ch in b"EVILCMD"]
    out, events = feed(cap, rules)
    assert [n for n, a, _ in out if a == "drop"] == [sent[-1]] and alert_events(events) == [1]


def test_out_of_order_segments_match_once_when_the_hole_fills(tmp_path):
    alert = write(tmp_path, "a.rules", SPLIT.replace("drop", "alert"))
    cap, c = conn()
    first = c.cseq
    c.cseq = first + 4
    c.send(b"LCMD")                           # the second half first: held, nothing readable
    c.send(b" and EVILCMD whole")             # a whole occurrence, still behind the hole
    c.cseq = first
    fill = c.send(b"xEVI")
    out, events = feed(cap, alert)
    # read on the stream only (Suricata skips the packet of a segment added to the stream):
    # both occurrences on the packet that makes them readable, one alert for that packet
    assert alerted(out, 1) == [fill] and alert_events(events) == [1]


def test_a_retransmission_with_other_bytes_is_read_against_the_attacker(tmp_path):
    rules = write(tmp_path, "r.rules", SPLIT)
    cap, c = conn()
    first = c.cseq
    c.send(b"harmless")
    c.cseq = first
    conflict = c.send(b"harmLESS")            # the same sequence numbers, other bytes: no EVILCMD
    out, events = feed(cap, rules)
    # what the server reads is not known: the drop rule matches (exception_policy drop)
    assert out[conflict - 1][1] == "drop"
    assert any(e["event_type"] == "anomaly" and e["anomaly"].get("event") == "exception.stream_ambiguous"
               for e in events)


def test_an_identical_retransmission_matches_once(tmp_path):
    alert = write(tmp_path, "a.rules", SPLIT.replace("drop", "alert"))
    cap, c = conn()
    first = c.cseq
    once = c.send(b"xxEVILCMDyy")
    c.cseq = first
    c.send(b"xxEVILCMDyy")
    out, events = feed(cap, alert)
    assert alerted(out, 1) == [once] and alert_events(events) == [1]


def test_a_match_in_one_packet_is_found_once(tmp_path):
    cap, c = conn()
    c.send(b"hello")
    one = c.send(b"xxEVILCMDyy")
    c.send(b"more")
    out, events = feed(cap, write(tmp_path, "a.rules", SPLIT.replace("drop", "alert")))
    assert alerted(out, 1) == [one] and alert_events(events) == [1]


def test_both_directions(tmp_path):
    rules = ('alert tcp any any -> any any (msg:"up"; flow:to_server; content:"EVILCMD"; sid:1;)\n'
             'alert tcp any any -> any any (msg:"down"; flow:to_client; content:"EVILCMD"; sid:2;)\n')
    cap, c = conn()
    c.recv(b"xxEVIL")
    down = c.recv(b"CMDyy")
    c.send(b"EV")
    up = c.send(b"ILCMD")
    out, _ = feed(cap, write(tmp_path, "r.rules", rules))
    assert alerted(out, 1) == [up] and alerted(out, 2) == [down]


YAML_BOTH = """rules:
  - {id: 1, action: drop, proto: [tcp, udp], content: EVILCMD, payload: both}
"""


def test_a_yaml_rule_with_payload_both(tmp_path):
    rules = write(tmp_path, "r.yaml", YAML_BOTH)
    cap, c = conn()
    c.send(b"xxEVI")
    b = c.send(b"LCMDyy")
    out, _ = feed(cap, rules)
    assert [n for n, a, _ in out if a == "drop"] == [b]
    # no stream on UDP: the datagram's own payload
    cap = Capture()
    cap.add(l2(ip_of(C, S) / UDP(sport=5000, dport=9000) / Raw(b"xEVILCMDx")))
    out, _ = feed(cap, rules)
    assert actions(out) == ["drop"]


def test_packet_anchored_content_stays_per_packet_with_a_note(tmp_path):
    text = ('alert tcp any any -> any any (msg:"d"; content:"EVILCMD"; depth:10; sid:1;)\n'
            'alert tcp any any -> any any (msg:"z"; dsize:>3; content:"EVILCMD"; sid:2;)\n'
            'alert tcp any any -> any any (msg:"p"; pcre:"/^EVILCMD/"; sid:3;)\n'
            'alert tcp any any -> any any (msg:"n"; flow:no_stream; content:"EVILCMD"; sid:4;)\n'
            'alert tcp any any -> any any (msg:"s"; content:"EVIL"; content:"CMD"; distance:0; sid:5;)\n')
    rs = load_rules_text(text)
    assert {r.id: r.payload for r in rs.rules} == {1: "packet", 2: "packet", 3: "packet", 4: "packet", 5: "both"}
    notes = skip_report(rs)
    assert [n.split(": ")[2] for n in notes] == ["sid 1", "sid 2", "sid 3", "sid 5"]
    assert all("split across TCP segments is not seen" in n for n in notes[:3])
    assert "depth" in notes[0] and "dsize" in notes[1] and "pcre" in notes[2]
    # several contents: read on the stream, but only with the longest content's overlap (review s14b)
    assert "several contents/pcre" in notes[3] and "not seen together" in notes[3]


def test_a_pcre_anchored_inside_a_group_or_alternation_stays_per_packet():
    # review s14b: /(^GET \/evil)/ read "both" with no note and missed a second keep-alive request
    text = "".join(f'alert tcp any any -> any any (msg:"p"; pcre:"{p}"; sid:{i};)\n' for i, p in enumerate(
        ("/(^GET \\/evil)/", "/x|^GET/", "/evil$|x/", "/x[^y]z/", "/[$^]evil/", "/a\\$b/"), 1))
    rs = load_rules_text(text)
    assert {r.id: r.payload for r in rs.rules} == {1: "packet", 2: "packet", 3: "packet", 4: "both", 5: "both",
                                                   6: "both"}
    # a pcre read on the stream keeps no bytes for its match before a segment: said (review s15)
    notes = skip_report(rs)
    assert [n.split(": ")[2] for n in notes] == [f"sid {i}" for i in range(1, 7)]
    assert all("a pcre's match" in n for n in notes[3:])


# -- review s14b: a direction whose bytes went unseen, SYN data, packets without payload

LOST = 'drop tcp any 8080 -> any any (msg:"down"; flow:established,to_client; content:"EVILPAYLOAD"; sid:3;)\n'


def test_a_direction_that_lost_bytes_is_read_packet_by_packet(tmp_path):
    # a server segment lost before the appliance, 14 KiB after it: the reassembly lets bytes
    # go (past its room); the flow was dropped on a content it never carried
    cap, c = conn()
    c.send(b"GET / HTTP/1.0\r\n\r\n")
    c.sseq += 1000                            # lost upstream
    quiet = [c.recv(b"y" * 1000) for _ in range(14)]
    whole = c.recv(b"xxEVILPAYLOADyy")
    out, _ = feed(cap, write(tmp_path, "r.rules", LOST))
    assert [out[n - 1][1] for n in quiet] == ["pass"] * 14
    assert out[whole - 1][1] == "drop"        # read on its own packet, as Suricata reads it


@pytest.mark.parametrize("far", [100_000, 9_000])
def test_a_far_segment_neither_drops_the_flow_nor_turns_the_stream_off(tmp_path, far):
    # review s14b: a segment past the reassembly's room (blind: the server discards it at
    # +100000; inside a 64 KiB window at +9000) dropped the flow; review s15: read per packet
    # from then on, a split after it passed. The stream's in-order bytes are still read.
    cap, c = conn()
    c.send(b"hello")
    c.cseq += far
    c.send(b"zzz")
    c.cseq -= far + 3
    later = c.send(b"more xxEVI")
    split = c.send(b"LCMDyy")
    out, _ = feed(cap, write(tmp_path, "r.rules", SPLIT))
    assert actions(out)[:later] == ["pass"] * later and out[split - 1][1] == "drop"


def test_a_spoofed_ack_past_the_data_neither_drops_the_flow_nor_turns_the_stream_off(tmp_path):
    cap, c = conn()
    c.send(b"hello")
    c.cseq += 50_000
    c.recv(b"", flags="A")                    # the server "acknowledges" 50,000 bytes never sent
    c.cseq -= 50_000
    later = c.send(b"more xxEVI")
    split = c.send(b"LCMDyy")
    out, _ = feed(cap, write(tmp_path, "r.rules", SPLIT))
    assert actions(out)[:later] == ["pass"] * later and out[split - 1][1] == "drop"


def test_syn_data_is_read_on_the_syn(tmp_path):
    # TCP Fast Open: a server hands the SYN's data to its application before the next segment
    cap = Capture()
    c = TcpConn(cap, C, 40000, S, 8080)
    syn = c._seg(True, "S", b"xxEVILCMDyy")
    out, _ = feed(cap, write(tmp_path, "r.rules", 'drop tcp any any -> any 8080 (content:"EVILCMD"; sid:2;)\n'))
    assert out[syn - 1][1] == "drop"


def test_negated_content_never_matches_a_packet_without_payload(tmp_path):
    # review s14b: content:!"|16 03|" matched the handshake's last ACK, so every flow to 443 was
    # dropped; Suricata runs no payload rule on a packet without payload
    rule = 'drop tcp any any -> any 443 (msg:"not tls"; flow:established,to_server; content:!"|16 03|"; depth:2; sid:4;)\n'
    cap, c = conn(443)
    hello = c.send(b"\x16\x03\x01\x00\x05hello")
    c.recv(b"\x16\x03\x03\x00\x01x")
    ack = c.send(b"", flags="A")
    plain = c.send(b"GET / HTTP/1.0\r\n\r\n")
    out, _ = feed(cap, write(tmp_path, "r.rules", rule))
    assert actions(out)[:plain - 1] == ["pass"] * (plain - 1) and out[plain - 1][1] == "drop"
    assert hello < ack < plain


def test_convert_prints_payload_both_and_the_notes(tmp_path):
    text = SPLIT + 'alert tcp any any -> any any (msg:"d"; content:"X"; offset:2; sid:2;)\n'
    res = convert(Source("x.rules", text))
    assert res.problems == []
    assert "payload: both" in res.yaml
    assert res.skipped == [f"x.rules:2: note: sid 2: {load_rules_text(text).notes[0].split(': ', 3)[3]}"]
    src = tmp_path / "x.rules"
    src.write_text(text)
    run = subprocess.run([sys.executable, "-m", "appliance", "rules", "convert", str(src)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "payload: both" in run.stdout
    assert f"{src}:2: note: sid 2: read on each packet only (offset" in run.stderr
    run = subprocess.run([sys.executable, "-m", "appliance", "rules", "check", str(src)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and f"{src}:2: note: sid 2:" in run.stdout
