"""The pcap log holds a flow's packets only while a rule can still write it (Detector.may_log).

Each case replays one capture twice: with the detector asked ("muted": what the appliance
does) and with every undecided flow held (the log before may_log). The packets written must
be the same, in the same order: a flow that alerts or is dropped has in the file whatever
its ring held before. What changes is what is held: a TLS or nameless TCP flow under a rule
set whose only alert rule needs an HTTP Host is not ringed once its protocol is known.
"""
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings
from appliance.output.pcap_log import PcapLog, PcapLogConfig
from appliance.source.pcap import PcapSource

from replaykit import Capture, TcpConn, client_hello, tls_next_flight, tls_records

HOST_ONLY = """
default_action: pass
rules:
  - {id: 1, action: alert, msg: host, proto: tcp, http_host: "*.example.net"}
  - {id: 2, action: alert, msg: evil, proto: tcp, dst_port: 8443, content: EVIL}
"""


class Recorded(PcapLog):
    """A pcap log that keeps what it writes, and the most flows it held at once."""

    def __init__(self, tmp_path, name, hold_all):
        super().__init__(PcapLogConfig(dir=str(tmp_path / name)), name)
        self.hold_all, self.out, self.most_rings = hold_all, [], 0

    def packet(self, pkt, verdict, detector=None):
        super().packet(pkt, verdict, None if self.hold_all else detector)
        self.most_rings = max(self.most_rings, len(self.rings))

    def _write(self, ts, data, flow, iface):
        self.out.append((flow.sport, ts, bytes(data)))        # (each flow here has its own client port)


def tls(cap, port, sni, later=(b"\x17\x03\x03\x00\x05hello",) * 3, dport=443):
    c = TcpConn(cap, "10.0.0.1", port, "10.0.0.9", dport)
    c.handshake()
    c.send(tls_records(client_hello(sni)))
    c.recv(b"\x16\x03\x03\x00\x04\x02\x00\x00\x00")
    for data in later:
        c.send(data)
    return c


def capture():
    cap = Capture()
    h = TcpConn(cap, "10.0.0.1", 40001, "10.0.0.80", 80)           # alerts on its request
    h.handshake()
    h.send(b"GET / HTTP/1.1\r\nHost: a.example.net\r\n\r\n")
    h.recv(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    h.close()
    k = TcpConn(cap, "10.0.0.1", 40002, "10.0.0.80", 80)           # a name learned later: its 2nd request
    k.handshake()
    k.send(b"GET / HTTP/1.1\r\nHost: ok.test\r\n\r\n")
    k.recv(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    k.send(b"GET / HTTP/1.1\r\nHost: b.example.net\r\n\r\n")
    tls(cap, 40003, "quiet.example.org")                           # can never alert once TLS
    tls(cap, 40004, "late.example.org", later=(b"\x17\x03\x03\x00\x04EVIL",), dport=8443)   # content, late
    s = TcpConn(cap, "10.0.0.1", 40005, "10.0.0.22", 22)           # names nothing (FAILED)
    s.handshake()
    s.send(b"SSH-2.0-OpenSSH_9.2 " + b"x" * 80 + b"\r\n")
    s.recv(b"SSH-2.0-OpenSSH_9.2\r\n")
    s.send(b"\x00\x00\x01\x00" + b"k" * 60)
    s.send(b"\x00\x00\x01\x00" + b"k" * 60)
    return cap


def replay(tmp_path, cap, rules, hold_all, reload_at=None, reload_rules=None, **settings):
    (tmp_path / "r.yaml").write_text(rules)
    log = Recorded(tmp_path, "hold" if hold_all else "muted", hold_all)
    insp = Inspector(load_rules(str(tmp_path / "r.yaml")), Settings(eve_types=("alert",), **settings), None, log)
    for n, pkt in enumerate(PcapSource([cap.write(tmp_path / "in.pcap")])):
        if n == reload_at:
            (tmp_path / "r2.yaml").write_text(reload_rules)
            insp.reload(load_rules(str(tmp_path / "r2.yaml")))
        insp.process(pkt)
    assert insp.counters.internal_errors == 0
    return log, insp


def both(tmp_path, cap, rules, **kw):
    held, _ = replay(tmp_path, cap, rules, True, **kw)
    muted, insp = replay(tmp_path, cap, rules, False, **kw)
    return held, muted, insp


def ports(log):
    return sorted({p for p, _, _ in log.out})


def test_alerted_flows_written_the_same_and_the_others_not_held(tmp_path):
    held, muted, insp = both(tmp_path, capture(), HOST_ONLY)
    assert muted.out == held.out
    assert ports(muted) == [40001, 40002, 40004]
    assert len([p for p in muted.out if p[0] == 40002]) == 6      # its 5 packets before the alert, the alert's
    still = {f.sport for f in insp.flows.flows.values() if not f.final}
    assert {40003, 40005} <= still                                 # inspected (within the depth) ...
    assert {f.sport for f in muted.mute} == {40003, 40005}         # ... and not held
    assert {f.sport for f in held.rings} >= {40003, 40005}
    assert muted.rings == {} or {f.sport for f in muted.rings}.isdisjoint({40003, 40005})


def test_a_drop_rule_that_may_still_match_keeps_every_flow_held(tmp_path):
    rules = HOST_ONLY + "  - {id: 3, action: drop, msg: bad sni, tls_sni: bad.example.org}\n"
    cap = capture()
    tls(cap, 40006, "bad.example.org")
    held, muted, _ = both(tmp_path, cap, rules)
    assert muted.out == held.out
    assert 40006 in ports(muted)
    assert [p for p, _, _ in muted.out].count(40006) == 8          # all 8: its start held, then dropped
    # none muted: even the SSH flow's names may become UNKNOWN (a stream read two ways),
    # which a drop rule matches under exception_policy drop
    assert muted.mute == {}


def test_a_flowbit_set_on_the_tls_flow_keeps_it_held_for_the_rule_that_reads_it(tmp_path):
    rules = HOST_ONLY + (
        '  - {id: 4, action: alert, msg: set, proto: tcp, tls_sni: "*.example.org", flowbits: [{set: seen}], '
        'noalert: true}\n'
        "  - {id: 5, action: alert, msg: after, proto: tcp, dst_port: 443, flowbits: [{isset: seen}], "
        "content: LATE}\n")
    cap = capture()
    tls(cap, 40007, "x.example.org", later=(b"\x17\x03\x03\x00\x05hello", b"\x17\x03\x03\x00\x04LATE"))
    held, muted, _ = both(tmp_path, cap, rules)
    assert muted.out == held.out
    assert [p for p, _, _ in muted.out].count(40007) == 7          # all 7: the ring held its start
    assert 40007 not in {f.sport for f in muted.mute}


def test_a_threshold_writes_the_same(tmp_path):
    limited = HOST_ONLY.replace('http_host: "*.example.net"}', 'http_host: "*.example.net", '
                                'threshold: {type: limit, track: by_src, count: 1, seconds: 60}}')
    held, muted, _ = both(tmp_path, capture(), limited)
    assert muted.out == held.out and 40001 in ports(muted) and 40002 not in ports(muted)


def test_an_allow_list_keeps_a_passed_flow_held_for_its_next_request(tmp_path):
    """default_action drop: a passed HTTP flow's next request may get the default (no alert
    rule at all here, yet the flow must stay held)."""
    allow = ("default_action: drop\nrules:\n"
             "  - {id: 7, action: pass, msg: ok, proto: tcp, dst_port: 80, http_host: ok.test}\n")
    held, muted, _ = both(tmp_path, capture(), allow)
    assert muted.out == held.out
    assert [p for p, _, _ in muted.out].count(40002) == 6          # passed 5 packets, dropped on the 6th


def test_a_reload_asks_again_from_its_first_packet(tmp_path):
    """A flow not held under the old rules is held again under new ones that may alert on
    it; its packets before the reload were not kept (the old rules could not write them)."""
    cap = capture()
    c = tls(cap, 40008, "y.example.org")
    start = len(cap.frames)
    c.send(b"\x17\x03\x03\x00\x05after")
    c.send(b"\x17\x03\x03\x00\x04EVIL")
    new = HOST_ONLY + "  - {id: 6, action: alert, msg: evil 443, proto: tcp, dst_port: 443, content: EVIL}\n"
    held, muted, insp = both(tmp_path, cap, HOST_ONLY, reload_at=start, reload_rules=new)
    assert insp.counters.alerts >= 3
    got = [ts for p, ts, _ in muted.out if p == 40008]
    assert len(got) == 2                                           # since the reload: held again, then written
    assert [ts for p, ts, _ in held.out if p == 40008][-2:] == got
    assert [p for p, _, _ in held.out].count(40008) == 3 + 1 + 1 + 3 + 2   # holding all: its start too


def test_a_flow_decided_for_good_after_its_alert_is_still_written(tmp_path):
    """The Inspector skips the log only for a passed final flow that never alerted: an
    alerted one's later packets (its TLS hello read, the flow final) are still written."""
    rules = "default_action: pass\nrules:\n  - {id: 8, action: alert, msg: sni, tls_sni: alert.example.org}\n"
    cap = capture()
    c = tls(cap, 40009, "alert.example.org", later=())
    tls_next_flight(c)
    c.send(b"\x17\x03\x03\x00\x05after")
    c.send(b"\x17\x03\x03\x00\x05after")
    held, muted, insp = both(tmp_path, cap, rules, depth_packets=4)   # (alerts look at 4 packets)
    assert muted.out == held.out
    assert [p for p, _, _ in muted.out] == [40009] * 9
    assert [f.final for f in insp.flows.flows.values() if f.sport == 40009] == [True]


def test_a_server_first_flow_held_for_its_client_keeps_its_packets(tmp_path):
    """Passed while only its client's first bytes can change that (the Inspector's cheap
    path for it, not final): its packets are held, and written when the request drops it."""
    rules = "default_action: pass\nrules:\n  - {id: 9, action: drop, msg: evil, http_host: evil.test}\n"
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 40010, "10.0.0.80", 80)
    c.handshake()
    c.recv(b"220 banner\r\n")
    c.recv(b"220 more\r\n")
    c.send(b"GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n")
    held, muted, insp = both(tmp_path, cap, rules)
    assert muted.out == held.out
    assert [p for p, _, _ in muted.out] == [40010] * 6
    assert insp.counters.verdicts["drop"] == 1


def test_mode_all_writes_a_decided_flow_s_every_packet(tmp_path):
    (tmp_path / "r.yaml").write_text("default_action: pass\nrules: []\n")
    cap = Capture()
    c = tls(cap, 40011, "any.example.org", later=())
    tls_next_flight(c)
    c.send(b"\x17\x03\x03\x00\x05after")
    log = PcapLog(PcapLogConfig(dir=str(tmp_path / "all"), mode="all"), "t")
    insp = Inspector(load_rules(str(tmp_path / "r.yaml")), Settings(eve_types=("alert",)), None, log)
    for pkt in PcapSource([cap.write(tmp_path / "in.pcap")]):
        insp.process(pkt)
    assert [f.final for f in insp.flows.flows.values()] == [True]
    log.close()                                                    # (the writer's waiting blocks written)
    assert log.writer.packets == len(cap.frames) == 8


def test_a_flow_dropped_after_two_syns_keeps_its_earlier_packets(tmp_path):
    """Review s17: before its handshake is seen, a bare SYN from the responder's side (anyone
    can spoof one) makes a TCP flow unoriented, and its verdict candidates then take in the
    other orientation's drop rules (here one for inbound TLS). Asked before that SYN, may_log
    must not have let the flow go: its earlier packets are in the file with its drop."""
    rules = """
default_action: pass
rules:
  - {id: 1, action: alert, msg: host, proto: tcp, http_host: "*.example.net"}
  - {id: 10, action: drop, msg: no inbound tls, direction: inbound, proto: tcp, tls_sni: "*.evil.example"}
"""
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 40020, "93.184.216.34", 443)   # inside client, outside server
    c._seg(True, "S")                                        # the client's SYN (no SYN/ACK seen)
    c.cseq = 1001
    c.send(tls_records(client_hello("fine.example.org")))   # TLS, named, passed
    c.send(b"\x17\x03\x03\x00\x05hello")
    c._seg(False, "S")                                       # a bare SYN "from the server"
    c.send(b"\x17\x03\x03\x00\x05hello")
    held, muted, insp = both(tmp_path, cap, rules)
    assert insp.counters.verdicts["drop"] >= 1               # the flow was dropped
    assert 40020 in ports(held)
    assert muted.out == held.out, (len(muted.out), len(held.out))
