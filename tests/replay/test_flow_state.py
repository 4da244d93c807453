"""Suricata's flow-state keywords and inspection semantics on crafted captures: flowbits
across packets, flowint counting, noalert, detection_filter, target, bypass, icmp = v4 and
v6, <> and per-packet headers of verdict rules, Suricata's depth and alert counts with
.rules (docs/rules.md "Flow state", docs/performance.md "Inspection depth")."""
from scapy.all import ICMP, ICMPv6EchoReply, ICMPv6EchoRequest, IP, IPv6

from replaykit import Capture, TcpConn, l2, schema_errors
from appliance.decode import decode_frame
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings


def feed(cap, rules, **settings):
    """Per-packet Verdicts (the offload decision of each packet is visible) and the Inspector."""
    insp = Inspector(load_rules(rules), Settings(**settings))
    out = [insp.process(decode_frame(buf, cap.linktype, ts)) for ts, buf in cap.frames]
    assert insp.counters.internal_errors == 0
    return out, insp


def ping(cap, n, src="10.0.0.1", dst="203.0.113.9", v6=False, ident=7):
    for i in range(n):
        if v6:
            cap.add(l2(IPv6(src=src, dst=dst) / ICMPv6EchoRequest(id=ident, seq=i)))
            cap.add(l2(IPv6(src=dst, dst=src) / ICMPv6EchoReply(id=ident, seq=i)))
        else:
            cap.add(l2(IP(src=src, dst=dst) / ICMP(type=8, id=ident, seq=i)))
            cap.add(l2(IP(src=dst, dst=src) / ICMP(type=0, id=ident, seq=i)))
    return cap


# ------------------------------------------------------------ alert counts, depth

def test_a_pings_75_echo_requests_alert_75_times_with_rules(run, rules_file):
    cap = ping(Capture(), 75)
    r = run(cap, rules_file('alert icmp any any -> any any (msg:"echo"; itype:8; sid:1;)\n', "a.rules"))
    assert len(r.alerts(1)) == 75


def test_the_same_rule_in_yaml_keeps_the_yaml_depth(run, rules_file):
    cap = ping(Capture(), 75)
    r = run(cap, rules_file("rules:\n  - {id: 1, action: alert, proto: icmp, icmp_type: 8}\n"))
    assert len(r.alerts(1)) == 8                  # 16 packets: 8 requests


def test_config_depth_overrides_the_suricata_default(run, rules_file):
    cap = ping(Capture(), 75)
    r = run(cap, rules_file('alert icmp any any -> any any (itype:8; sid:1;)\n', "a.rules"), depth_packets=10)
    assert len(r.alerts(1)) == 5


def test_header_only_rules_alert_once_per_direction_as_suricata_ip_only_rules(run, rules_file):
    cap = ping(Capture(), 20)
    r = run(cap, rules_file('alert icmp any any -> any any (msg:"icmp"; sid:2;)\n', "a.rules"))
    assert len(r.alerts(2)) == 2                  # Suricata's IP-only engine: first packet each way
    y = run(cap, rules_file("rules:\n  - {id: 2, action: alert, proto: icmp}\n"))
    assert len(y.alerts(2)) == 2                  # YAML: once per flow and direction
    e = run(cap, rules_file("rules:\n  - {id: 2, action: alert, proto: icmp, every_packet: true}\n"))
    assert len(e.alerts(2)) == 16                 # asked for: every packet within the YAML depth


def test_suricata_depth_is_one_mib_per_direction(rules_file):
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 40000, "198.51.100.7", 8000)
    c.handshake()
    for _ in range(80):                            # 80 x 1400 = 112 KB each way: inside 1 MiB
        c.send(b"x" * 1400)
        c.recv(b"y" * 1400)
    c.send(b"MARK")
    rules = rules_file('alert tcp any any -> any any (content:"MARK"; sid:3;)\n', "a.rules")
    v, _ = feed(cap, rules)
    assert [r.id for r in v[-1].alerts] == [3]
    assert not any(x.offload for x in v)          # a content rule could still match: inspected


def test_the_configured_byte_depth_counts_per_direction_with_rules(rules_file):
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 40000, "198.51.100.7", 8000)
    c.handshake()
    for _ in range(40):
        c.recv(b"y" * 1400)                        # 56 KB to the client: past its 50 KB
    c.send(b"MARK")                                # the client's direction is still within
    for _ in range(40):
        # (not letters: "MARKxxx..." reads as an HTTP method token still arriving, which the
        # app layer waits for past any depth, now that a server byte first ends no reading)
        c.send(b"\x00" * 1400)
    c.recv(b"", "A")                               # the server has it all: the flow may go final
    c.send(b"MARK")                                # now neither is
    rules = rules_file('alert tcp any any -> any any (content:"MARK"; sid:3;)\n', "a.rules")
    v, _ = feed(cap, rules, depth_bytes=50_000)
    assert [i for i, x in enumerate(v) if x.alerts] == [3 + 40]
    assert v[-1].offload and not any(x.offload for x in v[:3 + 40 + 30])


# ------------------------------------------------------------ icmp = ICMPv4 + ICMPv6

def test_suricata_icmp_is_v4_and_v6(run, rules_file):
    cap = ping(Capture(), 1)
    ping(cap, 1, src="fd00::1", dst="2001:db8::9", v6=True)
    r = run(cap, rules_file('alert icmp any any -> any any (msg:"icmp"; sid:4;)\n', "a.rules"))
    assert sorted(e["proto"] for e in r.alerts(4)) == ["ICMP", "ICMP", "IPv6-ICMP", "IPv6-ICMP"]
    y = run(cap, rules_file("rules:\n  - {id: 4, action: alert, proto: icmp}\n"))
    assert {e["proto"] for e in y.alerts(4)} == {"ICMP"}           # YAML icmp: ICMPv4, as ever
    y = run(cap, rules_file("rules:\n  - {id: 4, action: alert, proto: [icmp, icmpv6]}\n"))
    assert {e["proto"] for e in y.alerts(4)} == {"ICMP", "IPv6-ICMP"}


# ------------------------------------------------------------ flowbits

FLOWBITS = ('alert tcp any any -> any any (msg:"login"; flow:to_server; content:"USER admin"; '
            'flowbits:set,admin; flowbits:noalert; sid:10;)\n'
            'alert tcp any any -> any any (msg:"admin ok"; flow:to_client; content:"230 "; '
            'flowbits:isset,admin; sid:11;)\n')


def login(cap, port, user):
    c = TcpConn(cap, "10.0.0.1", port, "198.51.100.7", 21)
    c.handshake()
    c.recv(b"220 hi\r\n")
    c.send(b"USER " + user + b"\r\n")
    c.recv(b"230 logged in\r\n")
    return c


def test_flowbits_set_on_request_isset_on_response(run, rules_file):
    cap = Capture()
    login(cap, 40001, b"admin")
    login(cap, 40002, b"guest")
    r = run(cap, rules_file(FLOWBITS, "a.rules"))
    assert [e["src_port"] for e in r.alerts(11)] == [21]           # the response
    assert [e["dest_port"] for e in r.alerts(11)] == [40001]       # only where the bit was set
    assert r.alerts(10) == []                                      # noalert


def test_flowbits_yaml_keys_mean_the_same(run, rules_file):
    cap = Capture()
    login(cap, 40001, b"admin")
    login(cap, 40002, b"guest")
    y = run(cap, rules_file("rules:\n"
                            "  - {id: 10, action: alert, proto: tcp, flow: to_server, content: USER admin,\n"
                            "     flowbits: [{set: admin}], noalert: true}\n"
                            "  - {id: 11, action: alert, proto: tcp, flow: to_client, content: '230 ',\n"
                            "     flowbits: [{isset: admin}]}\n"))
    assert [e["dest_port"] for e in y.alerts(11)] == [40001] and y.alerts(10) == []


def test_flowbits_isnotset_unset_toggle_and_or(run, rules_file):
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 40003, "198.51.100.7", 9000)
    c.handshake()
    for msg in (b"A", b"B", b"C", b"D", b"E"):
        c.send(msg)
    r = run(cap, rules_file(
        'alert tcp any any -> any any (content:"A"; flowbits:set,a; flowbits:noalert; sid:20;)\n'
        'alert tcp any any -> any any (content:"B"; flowbits:isset,a; flowbits:unset,a; sid:21;)\n'
        'alert tcp any any -> any any (content:"C"; flowbits:isnotset,a; flowbits:toggle,b; sid:22;)\n'
        'alert tcp any any -> any any (content:"D"; flowbits:isset,a|b; sid:23;)\n'
        'alert tcp any any -> any any (content:"E"; flowbits:isset,a; sid:24;)\n', "a.rules"))
    assert sorted(set(r.sids())) == [21, 22, 23]


def test_a_setter_on_the_same_packet_is_seen_by_a_checker_written_before_it(run, rules_file):
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 40004, "198.51.100.7", 9000)
    c.handshake()
    c.send(b"both")
    r = run(cap, rules_file(
        'alert tcp any any -> any any (content:"both"; flowbits:isset,x; sid:31;)\n'
        'alert tcp any any -> any any (content:"both"; flowbits:set,x; flowbits:noalert; sid:30;)\n',
        "a.rules"))
    assert r.sids() == [31]


# ------------------------------------------------------------ a verdict rule that reads flowbits

VERDICT_BITS = ('alert tcp any any -> any any (flow:to_server; content:"STOR"; flowbits:set,upload; '
                'flowbits:noalert; sid:40;)\n'
                'drop tcp any any -> any any (msg:"exe uploaded"; flow:to_client; content:"226 "; '
                'flowbits:isset,upload; sid:41;)\n')


def upload(cap, port, command):
    c = TcpConn(cap, "10.0.0.1", port, "198.51.100.7", 21)
    c.handshake()
    c.recv(b"220 hi\r\n")
    c.send(command + b" x.exe\r\n")
    c.recv(b"150 ok\r\n")
    c.recv(b"226 done\r\n")
    c.send(b"QUIT\r\n")
    return c


def test_a_verdict_rule_reading_a_flowbit_is_pending_until_decided_never_offloaded_early(rules_file):
    cap = Capture()
    upload(cap, 40005, b"STOR")
    v, insp = feed(cap, rules_file(VERDICT_BITS, "a.rules"))
    # the handshake, banner, STOR, 150: the drop rule is pending -- passed, never offloaded
    assert [x.action for x in v[:6]] == ["pass"] * 6
    assert not any(x.offload for x in v[:6])
    assert v[6].action == "drop" and [r.id for r in v[6].alerts] == [41]   # 226 with the bit set
    assert v[7].action == "drop"


def test_without_the_bit_the_flow_passes_once_the_depth_says_the_rule_cannot_match(rules_file):
    cap = Capture()
    upload(cap, 40006, b"RETR")
    v, _ = feed(cap, rules_file(VERDICT_BITS, "a.rules"), depth_packets=8)
    assert all(x.action == "pass" for x in v)
    assert not any(x.offload for x in v[:7]) and v[7].offload     # decided on the depth's last packet


# ------------------------------------------------------------ flowint, detection_filter, target, bypass

def test_flowint_counts_and_compares(run, rules_file):
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 40007, "198.51.100.7", 25)
    c.handshake()
    for _ in range(6):
        c.send(b"RCPT TO:<a@b>\r\n")
    # Suricata's idiom: one rule counts (a change runs after its rule matched), one compares
    # (the counter runs first on each packet: it only changes state)
    r = run(cap, rules_file('alert tcp any any -> any 25 (msg:"many rcpt"; content:"RCPT TO"; '
                            'flowint:rcpt,>,4; sid:50;)\n'
                            'alert tcp any any -> any 25 (content:"RCPT TO"; flowint:rcpt,+,1; noalert; sid:49;)\n',
                            "a.rules"))
    assert len(r.alerts(50)) == 2                  # the 5th and 6th
    # in one rule, > reads rcpt before the rule's own +: unset, so it never matches and never counts
    r = run(cap, rules_file('alert tcp any any -> any 25 (msg:"many rcpt"; content:"RCPT TO"; '
                            'flowint:rcpt,+,1; flowint:rcpt,>,4; sid:50;)\n', "b.rules"))
    assert r.alerts(50) == []


def test_detection_filter_alerts_only_after_the_count_is_exceeded(run, rules_file, eve_validator):
    cap = Capture()
    for port in range(41000, 41006):
        TcpConn(cap, "203.0.113.50", port, "10.0.0.22", 22).handshake()
    r = run(cap, rules_file('alert tcp any any -> $HOME_NET 22 (msg:"ssh brute"; flags:S; '
                            'detection_filter:track by_src, count 3, seconds 60; target:dest_ip; sid:51;)\n',
                            "a.rules"))
    alerts = r.alerts(51)
    assert [e["src_port"] for e in alerts] == [41003, 41004, 41005]
    assert alerts[0]["alert"]["target"] == {"ip": "10.0.0.22", "port": 22}
    assert alerts[0]["alert"]["source"] == {"ip": "203.0.113.50", "port": 41003}
    assert schema_errors(eve_validator, r.events) == []


def test_detection_filter_on_a_drop_rule_gates_the_decision(run, rules_file):
    cap = Capture()
    for port in range(41000, 41004):
        TcpConn(cap, "203.0.113.50", port, "10.0.0.22", 22).handshake()
    r = run(cap, rules_file('drop tcp any any -> $HOME_NET 22 (flow:to_server; flags:S; '
                            'detection_filter:track by_src, count 2, seconds 60; sid:52;)\n', "a.rules"))
    assert [r.flow_action(src_port=p) for p in range(41000, 41004)] == ["pass", "pass", "drop", "drop"]


def test_bypass_offloads_a_passed_flow_at_the_match(rules_file):
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 40008, "198.51.100.7", 8080)
    c.handshake()
    c.send(b"BULK transfer\r\n")
    for _ in range(5):
        c.send(b"z" * 100)
    with_bypass = rules_file('alert tcp any any -> any any (content:"BULK"; bypass; noalert; sid:60;)\n'
                             'alert tcp any any -> any any (content:"zzz"; sid:61;)\n', "a.rules")
    v, _ = feed(cap, with_bypass)
    assert [x.offload for x in v[:4]] == [False, False, False, True]   # the BULK packet
    assert not any(x.alerts for x in v)
    v, _ = feed(cap, rules_file('alert tcp any any -> any any (content:"BULK"; noalert; sid:60;)\n'
                                'alert tcp any any -> any any (content:"zzz"; sid:61;)\n', "b.rules"))
    assert not v[3].offload and sum(len(x.alerts) for x in v) == 5


def test_a_pass_rule_with_bypass_ends_inspection_at_once(rules_file):
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 40008, "198.51.100.7", 443)
    c.handshake()
    c.send(b"zzz")
    alert = 'alert tcp any any -> any any (content:"zzz"; sid:61;)\n'
    v, _ = feed(cap, rules_file('pass tcp any any -> any 443 (msg:"trusted"; bypass; sid:64;)\n' + alert, "a.rules"))
    assert v[0].offload and not any(x.alerts for x in v)
    v, _ = feed(cap, rules_file('pass tcp any any -> any 443 (msg:"trusted"; sid:64;)\n' + alert, "b.rules"))
    assert not v[0].offload and [r.id for r in v[3].alerts] == [61]
    # a YAML pass rule on the header alone (decided without a per-packet look)
    v, _ = feed(cap, rules_file("rules:\n  - {id: 64, action: pass, proto: tcp, dst_port: 443, bypass: true}\n"
                                "  - {id: 61, action: alert, proto: tcp, content: zzz}\n"))
    assert v[0].offload and not any(x.alerts for x in v)


def test_a_deciding_rule_sets_its_flowbits(run, rules_file):
    cap = Capture()
    login(cap, 40030, b"admin")
    r = run(cap, rules_file('pass tcp any any -> any 21 (flow:to_server; content:"USER admin"; '
                            'flowbits:set,admin; sid:65;)\n'
                            'alert tcp any any -> any any (flow:to_client; content:"230 "; flowbits:isset,admin; '
                            'sid:66;)\n', "a.rules"))
    assert len(r.alerts(66)) == 1


def test_bypass_never_offloads_a_flow_whose_verdict_is_pending(rules_file):
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 40009, "198.51.100.7", 8080)
    c.handshake()
    c.send(b"BULK transfer\r\n")
    c.send(b"evil")
    v, _ = feed(cap, rules_file('drop tcp any any -> any any (flow:to_server; content:"evil"; sid:62;)\n'
                                'alert tcp any any -> any any (content:"BULK"; bypass; sid:63;)\n', "a.rules"))
    assert not any(x.offload for x in v[:4])
    assert v[4].action == "drop"


# ------------------------------------------------------------ headers: <> and per-packet verdict rules

def telnet(cap, client, cport, server, sport):
    c = TcpConn(cap, client, cport, server, sport)
    c.handshake()
    c.send(b"hello\r\n")
    return c


def test_bidirectional_rule_alerts_on_both_directions(run, rules_file):
    cap = Capture()
    c = telnet(cap, "10.0.0.1", 40010, "198.51.100.7", 23)
    c.recv(b"login: ")
    r = run(cap, rules_file('alert tcp $HOME_NET any <> $EXTERNAL_NET 23 (msg:"telnet"; content:"l"; sid:70;)\n',
                            "a.rules"))
    assert sorted(e["direction"] for e in r.alerts(70)) == ["to_client", "to_server"]
    r = run(cap, rules_file('alert tcp $HOME_NET any -> $EXTERNAL_NET 23 (content:"l"; sid:70;)\n', "b.rules"))
    assert [e["direction"] for e in r.alerts(70)] == ["to_server"]


def test_drop_rule_without_flow_direction_matches_each_packet_header(run, rules_file):
    """Suricata: `drop tcp any 23 -> $HOME_NET any` drops the packets from port 23 to home:
    here the server's replies of a connection home opened, and the flow with them."""
    cap = Capture()
    telnet(cap, "10.0.0.1", 40011, "198.51.100.7", 23)          # home is the client
    telnet(cap, "10.0.0.2", 40012, "198.51.100.7", 80)
    rules = rules_file('drop tcp any 23 -> $HOME_NET any (msg:"from telnet"; sid:71;)\n', "a.rules")
    v, _ = feed(cap, rules)
    first = v[0]
    assert first.action == "pass" and not first.offload           # the SYN: pending the reply
    assert v[1].action == "drop"                                   # the SYN/ACK from port 23
    r = run(cap, rules)
    assert r.flow_action(src_port=40011) == "drop"
    assert r.flow_action(src_port=40012) == "pass"


def test_bidirectional_drop_rule_on_both_directions(run, rules_file):
    cap = Capture()
    telnet(cap, "10.0.0.1", 40013, "198.51.100.7", 23)          # home client -> port 23
    telnet(cap, "198.51.100.8", 23, "10.0.0.3", 40014)          # outside from port 23 -> home
    telnet(cap, "10.0.0.4", 40015, "198.51.100.7", 22)
    r = run(cap, rules_file('drop tcp $HOME_NET any <> $EXTERNAL_NET 23 (sid:72;)\n', "a.rules"))
    assert r.flow_action(src_port=40013) == "drop"
    assert r.flow_action(dest_port=40014) == "drop"
    assert r.flow_action(src_port=40015) == "pass"


def test_a_reload_keeps_each_flows_bits_by_name(tmp_path):
    """The new rule set numbers its bit names anew: a bit set before the reload is still
    the same name after it."""
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 40020, "198.51.100.7", 21)
    c.handshake()
    c.send(b"USER admin\r\n")
    c.recv(b"230 ok\r\n")
    old = tmp_path / "old.rules"
    old.write_text('alert tcp any any -> any any (content:"zzz"; flowbits:set,other; sid:1;)\n' + FLOWBITS)
    new = tmp_path / "new.rules"
    new.write_text(FLOWBITS)                       # "admin" was bit 1, now bit 0
    insp = Inspector(load_rules(old), Settings())
    frames = [decode_frame(buf, cap.linktype, ts) for ts, buf in cap.frames]
    for pkt in frames[:-1]:
        insp.process(pkt)
    insp.reload(load_rules(new))
    assert [r.id for r in insp.process(frames[-1]).alerts] == [11]


def test_a_per_packet_header_rule_for_the_other_direction_holds_no_later_rule_back(run, rules_file):
    """Suricata judges each packet: the client's SYN does not fit `pass ... -> $HOME_NET any`
    (it goes out), so the drop rule after it drops it -- the pass rule waiting for the
    SYN/ACK must not let it through."""
    cap = Capture()
    telnet(cap, "10.0.0.1", 40016, "198.51.100.7", 23)
    rules = rules_file('pass ip any any -> $HOME_NET any (msg:"to home"; sid:73;)\n'
                       'drop tcp any any -> any 23 (msg:"telnet"; sid:74;)\n', "a.rules")
    v, _ = feed(cap, rules)
    assert v[0].action == "drop"
    r = run(cap, rules)
    assert r.flow_action(src_port=40016) == "drop"
