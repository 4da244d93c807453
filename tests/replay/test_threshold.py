"""Thresholds (limit / threshold / both; by_src / by_dst / by_flow / by_rule) on the pcap clock."""
import pytest
from scapy.all import IP, UDP, Raw

from replaykit import Capture, T0, l2


def hit(cap, t, src="10.0.0.1", dst="10.0.0.2", sport=1000, dport=7000):
    return cap.add(l2(IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / Raw(b"HIT")), ts=T0 + t)


def rules(kind, track, count=3, seconds=10):
    return f"""
rules:
  - id: 1
    action: alert
    content: HIT
    threshold: {{type: {kind}, track: {track}, count: {count}, seconds: {seconds}}}
"""


def alert_cnts(r):
    return [e["pcap_cnt"] for e in r.alerts(1)]


@pytest.mark.parametrize("kind,expected", [
    # 7 matches in the first window (t=0..6), 4 in a second window (t=20..23)
    ("limit", [1, 2, 3, 8, 9, 10]),           # at most 3 per window
    ("threshold", [3, 6, 10]),                 # every 3rd match in a window
    ("both", [3, 10]),                         # once per window, at the 3rd match
])
def test_type_with_windows(run, rules_file, kind, expected):
    cap = Capture()
    for t in range(7):
        hit(cap, t)
    for t in range(20, 24):
        hit(cap, t)
    r = run(cap, rules_file(rules(kind, "by_src")))
    assert alert_cnts(r) == expected
    assert r.insp.counters.alerts == len(expected)
    assert r.insp.counters.alerts_suppressed == 11 - len(expected)
    assert r.of("stats")[-1]["stats"]["detect"] == {"alert": len(expected), "alerts_suppressed": 11 - len(expected)}


def test_window_restarts_only_after_seconds(run, rules_file):
    cap = Capture()
    for t in (0, 9.5, 10.0, 10.5):
        hit(cap, t)
    r = run(cap, rules_file(rules("limit", "by_rule", count=1, seconds=10)))
    assert alert_cnts(r) == [1, 3]


@pytest.mark.parametrize("track,expected", [
    ("by_src", [1, 3]),       # 10.0.0.1 and 10.0.0.3 each get their first alert
    ("by_dst", [1, 2]),       # 10.0.0.2 and 10.0.0.9
    ("by_flow", [1, 2, 3, 4]),  # every packet is its own flow (distinct ports)
    ("by_rule", [1]),         # one counter for everything
])
def test_track(run, rules_file, track, expected):
    cap = Capture()
    hit(cap, 0, src="10.0.0.1", dst="10.0.0.2", sport=1)
    hit(cap, 1, src="10.0.0.1", dst="10.0.0.9", sport=2)
    hit(cap, 2, src="10.0.0.3", dst="10.0.0.2", sport=3)
    hit(cap, 3, src="10.0.0.3", dst="10.0.0.9", sport=4)
    r = run(cap, rules_file(rules("limit", track, count=1, seconds=60)))
    assert alert_cnts(r) == expected


def test_by_flow_same_flow_counts_together(run, rules_file):
    cap = Capture()
    for t in range(4):
        hit(cap, t, sport=5)
    hit(cap, 5, sport=6)
    r = run(cap, rules_file(rules("limit", "by_flow", count=2, seconds=60)))
    assert alert_cnts(r) == [1, 2, 5]


def test_threshold_on_logged_drop_limits_events_not_verdicts(run, rules_file):
    cap = Capture()
    for i in range(5):
        hit(cap, i, sport=100 + i, dport=3389)
    r = run(cap, rules_file("""
rules:
  - id: 5010
    action: drop
    proto: udp
    dst_port: 3389
    log: true
    threshold: {type: limit, track: by_src, count: 1, seconds: 60}
"""))
    assert [e["pcap_cnt"] for e in r.alerts()] == [1]
    assert r.res.verdicts == {"drop": 5}
    assert {f["flow"]["action"] for f in r.of("flow")} == {"drop"}
