"""Adversarial review of the flow-state change (rev1): flows held, offloaded or alerted in
ways an attacker can steer. Each test is one finding's regression test."""
import json

from scapy.all import ICMP, IP, TCP, Raw

from replaykit import Capture, TcpConn, l2
from appliance.decode import decode_frame
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings
from appliance.output.eve import EveWriter


def feed(cap, rules, **settings):
    insp = Inspector(load_rules(rules), Settings(**settings))
    out = [insp.process(decode_frame(buf, cap.linktype, ts)) for ts, buf in cap.frames]
    assert insp.counters.internal_errors == 0
    return out, insp


def ping(cap, n, src="10.0.0.1", dst="203.0.113.9", ident=7):
    for i in range(n):
        cap.add(l2(IP(src=src, dst=dst) / ICMP(type=8, id=ident, seq=i)))
        cap.add(l2(IP(src=dst, dst=src) / ICMP(type=0, id=ident, seq=i)))
    return cap


# ------------------------------------------------------------ header-only .rules alerts

def test_header_only_rules_alert_once_per_flow_direction_as_suricata_ip_only(rules_file):
    """Suricata matches a rule with nothing but a header (and msg/sid/...) in its IP-only
    engine, on the first packet of each direction of a flow (detect.c
    DetectRunInspectIPOnly; ports are checked there too). Alerting on every packet made one
    `alert ip $EXTERNAL_NET any -> $HOME_NET any` an alert event per packet of every flow it
    fits (disk), and held those flows in Python up to 1 MiB each way (CPU)."""
    cap = ping(Capture(), 20)
    v, _ = feed(cap, rules_file('alert icmp any any -> any any (msg:"icmp"; sid:2;)\n', "a.rules"))
    assert sum(len(x.alerts) for x in v) == 2                 # request and reply, once each
    assert v[1].offload                                       # both fired: nothing left to look at
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 40100, "198.51.100.7", 445)
    c.handshake()
    for _ in range(10):
        c.send(b"x" * 100)
    v, _ = feed(cap, rules_file('alert tcp any any -> any 445 (msg:"smb"; sid:3;)\n', "b.rules"))
    assert sum(len(x.alerts) for x in v) == 1


# ------------------------------------------------------------ bypass vs a verdict still open

def test_bypass_never_ends_the_judging_of_a_later_request(rules_file):
    """A passed HTTP keep-alive flow is judged again on each request a drop `http_host`
    rule may still match. An alert rule with `bypass` that the client's first request
    triggers must not offload the flow: the second request (Host: evil) is still dropped."""
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 40101, "198.51.100.7", 80)
    c.handshake()
    c.send(b"GET /a HTTP/1.1\r\nHost: good.example\r\n\r\n")
    c.recv(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    c.send(b"GET /b HTTP/1.1\r\nHost: evil.example\r\n\r\n")
    rules = rules_file("rules:\n"
                       "  - {id: 1, action: drop, http_host: evil.example}\n"
                       "  - {id: 2, action: alert, proto: tcp, content: 'GET ', bypass: true, noalert: true}\n"
                       "  - {id: 3, action: alert, proto: tcp, content: 'GET /b'}\n")
    v, _ = feed(cap, rules)
    assert not any(x.offload for x in v[:5])
    assert v[-1].action == "drop"
    assert [r.id for r in v[-1].alerts] == [1]    # the drop's own; bypass ended the alert rules' look
# ------------------------------------------------------------ per-direction depth

def test_a_flow_is_not_held_for_rules_of_a_direction_past_its_depth(rules_file):
    """With .rules each direction has its own byte budget. A download: the server's
    direction passes its depth while the client's (ACKs, no payload) never does. The only
    content rule looks at the server's direction, so past its depth nothing is left to
    inspect: the flow is offloaded instead of every later packet going through Python."""
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 40102, "198.51.100.7", 80)
    c.handshake()
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    for _ in range(60):
        c.recv(b"y" * 1400)                        # 84 KB: past a 50 KB depth
        c.send(b"", flags="A")
    rules = rules_file('alert tcp any 80 -> any any (msg:"from web"; content:"MARK"; sid:5;)\n', "a.rules")
    only_alerts = dict(depth_bytes=50_000, eve_types=("alert",))   # no HTTP log holding the flow
    v, _ = feed(cap, rules, **only_alerts)
    assert any(x.offload for x in v)
    # while the client's direction is within and a rule looks at it, the flow stays
    both = rules_file('alert tcp any any -> any any (msg:"any"; content:"MARK"; sid:5;)\n', "b.rules")
    v, _ = feed(cap, both, **only_alerts)
    assert not any(x.offload for x in v)


def test_a_download_past_its_depth_does_not_decide_the_uploads_rules(rules_file):
    """Each direction has its own budget with .rules: the server's 50 KB past its depth must
    not decide the flow by default (and offload it) while the client's direction is still
    inspected -- the client's "evil" after the download is still dropped."""
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 40103, "198.51.100.7", 80)
    c.handshake()
    c.send(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    for _ in range(40):
        c.recv(b"y" * 1400)                        # 56 KB to the client: past a 50 KB depth
    c.send(b"evil")
    rules = rules_file('drop tcp any any -> any 80 (msg:"evil"; flow:to_server; content:"evil"; sid:9;)\n',
                       "a.rules")
    v, _ = feed(cap, rules, depth_bytes=50_000)
    assert v[-1].action == "drop"
    assert not any(x.offload for x in v[:-1])


# ------------------------------------------------------------ detection_filter's bounded table

def test_a_flood_of_new_sources_does_not_flush_a_drop_rules_count(rules_file, tmp_path):
    """`drop ... flags:S; detection_filter: track by_src, count 2` drops a source's third
    SYN. The count table is bounded; a flood of spoofed sources used to evict the oldest
    count -- the attacker's -- so its next SYN started from 1 again and passed. Now an open
    window is never evicted: a value that finds the table full cannot be counted, says so
    (anomaly) and is read against the attacker (a drop rule's filter is exceeded)."""
    cap = Capture()
    for port in (41000, 41001):
        cap.add(l2(IP(src="203.0.113.50", dst="10.0.0.22") / TCP(sport=port, dport=22, flags="S")))
    for i in range(70):                            # spoofed sources, one SYN each
        cap.add(l2(IP(src=f"198.18.{i // 250}.{i % 250 + 1}", dst="10.0.0.22") / TCP(sport=5000, dport=22, flags="S")))
    cap.add(l2(IP(src="203.0.113.50", dst="10.0.0.22") / TCP(sport=41002, dport=22, flags="S")))
    cap.add(l2(IP(src="198.18.9.9", dst="10.0.0.22") / TCP(sport=5000, dport=22, flags="S")), dt=61)
    insp = Inspector(load_rules(rules_file(
        'drop tcp any any -> $HOME_NET 22 (msg:"syn rate"; flow:to_server; flags:S; '
        'detection_filter:track by_src, count 2, seconds 60; sid:52;)\n', "a.rules")), Settings())
    insp.detector.filters.max_trackers = 64       # the bound, small: the flood fills it
    insp.eve = EveWriter(str(tmp_path / "eve.json"))
    v = [insp.process(decode_frame(buf, cap.linktype, ts)) for ts, buf in cap.frames]
    insp.eve.close()
    events = [json.loads(line) for line in (tmp_path / "eve.json").read_text().splitlines()]
    anomalies = [e for e in events if e["event_type"] == "anomaly"]
    assert [x.action for x in v[:2]] == ["pass", "pass"]
    assert v[-2].action == "drop"                  # the attacker's third SYN within the minute
    assert any(a["anomaly"].get("event") == "detect.filter_untracked" for a in anomalies)
    assert all(x.action == "drop" for x in v[2 + 63:-2])   # the flood past the table: uncounted, dropped
    assert v[-1].action == "pass"                  # a minute later the ended windows make room


def test_a_rule_for_a_direction_past_its_depth_does_not_hold_the_flow(rules_file):
    """The other side of per-direction pending: a drop rule that only looks at packets to
    the client (flow:to_client) can no longer match once that direction is past its depth,
    however long the client's own budget lasts (ACKs carry no payload): the flow is
    decided and offloaded, not held undecided in Python for the rest of the download."""
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 40104, "198.51.100.7", 80)
    c.handshake()
    c.send(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    for _ in range(60):
        c.recv(b"y" * 1400)                        # 84 KB to the client: past a 50 KB depth
        c.send(b"", flags="A")
    rules = rules_file('drop tcp any 80 -> any any (msg:"evil reply"; flow:to_client; content:"EVIL"; sid:8;)\n',
                       "a.rules")
    v, _ = feed(cap, rules, depth_bytes=50_000, eve_types=("alert",))
    assert all(x.action == "pass" for x in v)
    assert any(x.offload for x in v)


# ------------------------------------------------------------ segments the server discards

def decoy(cap, c, data):
    """A client segment with a bad TCP checksum: the server's stack discards it."""
    cap.add(l2(IP(src=c.c, dst=c.s) / TCP(sport=c.cp, dport=c.sp, flags="PA", seq=c.cseq, ack=c.sseq,
                                         chksum=0x1234) / Raw(data)))


def test_a_segment_the_server_discards_changes_no_flowbit(rules_file):
    """flowbits mirror what the server saw: a bad-checksum "QUIT" (discarded by the server,
    whose session goes on) must not unset the bit a drop rule reads, or the "DELE" after it
    passes."""
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 40105, "198.51.100.7", 21)
    c.handshake()
    c.send(b"USER root\r\n")
    decoy(cap, c, b"QUIT\r\n")
    c.send(b"DELE /etc/passwd\r\n")
    rules = rules_file(
        'alert tcp any any -> any 21 (flow:to_server; content:"USER root"; flowbits:set,root; noalert; sid:1;)\n'
        'alert tcp any any -> any 21 (flow:to_server; content:"QUIT"; flowbits:unset,root; noalert; sid:2;)\n'
        'drop tcp any any -> any 21 (msg:"root deletes"; flow:to_server; content:"DELE"; flowbits:isset,root; '
        'sid:3;)\n', "a.rules")
    v, _ = feed(cap, rules)
    assert v[-1].action == "drop"


def test_a_segment_the_server_discards_satisfies_no_pass_rule(rules_file):
    """The same decoy carrying what a content pass rule wants must not pass (and offload)
    the flow: the server never read it, and the request it does read is another."""
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 40106, "198.51.100.7", 80)
    c.handshake()
    decoy(cap, c, b"GET /public HTTP/1.1\r\n\r\n")
    c.send(b"GET /admin! HTTP/1.1\r\n\r\n")
    c.recv(b"HTTP/1.1 200 OK\r\n\r\n")
    rules = rules_file("default_action: drop\n"
                       "rules:\n  - {id: 1, action: pass, proto: tcp, dst_port: 80, content: 'GET /public'}\n")
    v, _ = feed(cap, rules, depth_packets=6, eve_types=("alert",))
    assert not any(x.offload and x.action == "pass" for x in v)
    assert v[-1].action == "drop"                  # the depth ends with the pass rule unmatched


def test_a_drop_rule_still_judges_a_segment_the_server_discards(rules_file):
    """The other half: what the sender does is still its own -- a NULL-flags probe (Linux
    discards a segment without ACK) is dropped by a drop rule on it."""
    cap = Capture()
    cap.add(l2(IP(src="203.0.113.5", dst="10.0.0.9") / TCP(sport=5555, dport=80, flags="")))
    v, _ = feed(cap, rules_file('drop tcp any any -> $HOME_NET any (msg:"null scan"; flags:0; sid:7;)\n', "a.rules"))
    assert v[0].action == "drop" and [r.id for r in v[0].alerts] == [7]


# ------------------------------------------------------------ flow state that cannot be known

SET_ROOT = 'alert tcp any any -> any 21 (flow:to_server; content:"USER root"; flowbits:set,root; noalert; sid:1;)\n'
DROP_ROOT = 'drop tcp any any -> any 21 (msg:"root deletes"; flow:to_server; content:"DELE"; flowbits:isset,root; sid:3;)\n'
PASS_GUEST = 'pass tcp any any -> any 21 (msg:"guest"; flow:to_server; content:"LIST"; flowbits:isnotset,root; sid:4;)\n'


def midstream_ftp(cap, port, command, handshake=False):
    """A connection picked up after its start (the appliance restarted, or the flow was
    evicted by a flood and comes back): its USER line, and the bit it set, are behind us."""
    c = TcpConn(cap, "10.0.0.1", port, "198.51.100.7", 21)
    if handshake:
        c.handshake()
    c.send(command)
    return c


def test_a_flow_picked_up_midstream_has_unknown_flow_state(rules_file, tmp_path):
    """The bits earlier packets set are unknown on a flow picked up mid-stream: as a name
    that cannot be known, the exception policy reads them -- under "drop" a drop rule's
    flowbit condition holds and a pass rule's does not (an attacker who gets its own
    connection evicted from the table must not come back with the bit cleared) -- and the
    anomaly says so. Under "ignore" the rules that need the state do not match."""
    dele = midstream_ftp(Capture(), 40107, b"DELE /etc/passwd\r\n").cap
    drop_rules = rules_file(SET_ROOT + DROP_ROOT, "a.rules")
    insp = Inspector(load_rules(drop_rules), Settings(eve_types=("alert", "anomaly")))
    insp.eve = EveWriter(str(tmp_path / "eve.json"))
    v = [insp.process(decode_frame(buf, dele.linktype, ts)) for ts, buf in dele.frames]
    insp.eve.close()
    assert v[0].action == "drop"
    events = [json.loads(line) for line in (tmp_path / "eve.json").read_text().splitlines()]
    assert any(e.get("anomaly", {}).get("event") == "exception.midstream" for e in events)
    v, _ = feed(dele, drop_rules, exception_policy="ignore")
    assert v[0].action == "pass"
    listing = midstream_ftp(Capture(), 40108, b"LIST\r\n").cap
    v, _ = feed(listing, rules_file(SET_ROOT + PASS_GUEST, "b.rules"), depth_packets=1)
    assert v[0].flow.verdict_rule is None          # the pass rule did not match: the default decided


def test_a_flow_with_its_start_seen_keeps_known_state(rules_file):
    """The guard's other side: with the handshake seen nothing is unknown; DELE without the
    bit is not dropped, LIST without it is passed by the pass rule."""
    dele = midstream_ftp(Capture(), 40109, b"DELE x\r\n", handshake=True).cap
    v, _ = feed(dele, rules_file(SET_ROOT + DROP_ROOT, "a.rules"), depth_packets=4)
    assert v[-1].action == "pass"
    listing = midstream_ftp(Capture(), 40110, b"LIST\r\n", handshake=True).cap
    v, _ = feed(listing, rules_file(SET_ROOT + PASS_GUEST, "b.rules"), depth_packets=4)
    assert v[-1].flow.verdict_rule is not None and v[-1].flow.verdict_rule.id == 4


# ------------------------------------------------------------ each packet judged on its own (.rules)

def ftp_session(port, *commands):
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", port, "198.51.100.7", 21)
    c.handshake()
    for cmd in commands:
        c.send(cmd)
    return cap


PASS_LIST_DROP_DELE = ('pass tcp any any -> any 21 (msg:"list"; flow:to_server; content:"LIST"; sid:4;)\n'
                       'drop tcp any any -> any 21 (msg:"dele"; flow:to_server; content:"DELE"; sid:3;)\n')


def test_a_pass_rule_not_met_on_this_packet_holds_no_drop_back_with_rules(rules_file):
    """Suricata judges each packet on its own: a pass rule whose content is not in this
    packet does not keep the drop rule after it (pass rules come first in a .rules file)
    from dropping it. Held back here, "DELE" went through while the pass rule waited for
    a "LIST" -- any drop rule after a content pass rule could be walked past by sending
    the dropped bytes first."""
    v, _ = feed(ftp_session(40111, b"DELE /etc/passwd\r\n", b"LIST\r\n"), rules_file(PASS_LIST_DROP_DELE, "a.rules"))
    assert v[3].action == "drop" and v[4].action == "drop"
    v, _ = feed(ftp_session(40112, b"NOOP\r\n", b"LIST\r\n", b"DELE x\r\n"), rules_file(PASS_LIST_DROP_DELE, "b.rules"))
    assert [x.action for x in v[3:]] == ["pass", "pass", "pass"]   # LIST passed the flow first
    assert v[3].offload is False                   # NOOP: the pass rule may still match, no default yet


def test_yaml_keeps_first_match_holding_unless_told(rules_file):
    """YAML's documented first match: a pending pass rule holds later rules back
    (`hold: true`, the default); `hold: false` is the Suricata reading, and what `rules
    convert` writes for a .rules verdict rule with packet conditions."""
    yaml = ("rules:\n"
            "  - {id: 4, action: pass, proto: tcp, dst_port: 21, flow: to_server, content: LIST%s}\n"
            "  - {id: 3, action: drop, proto: tcp, dst_port: 21, flow: to_server, content: DELE}\n")
    cap = ftp_session(40113, b"DELE /etc/passwd\r\n", b"LIST\r\n")
    v, _ = feed(cap, rules_file(yaml % ""))
    assert v[3].action == "pass"
    v, _ = feed(cap, rules_file(yaml % ", hold: false"))
    assert v[3].action == "drop"
