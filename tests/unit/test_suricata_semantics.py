"""What a Suricata rule means here is what it means in Suricata (review "rules" 2026-12-02):
each case loads real .rules text through the loader and runs real frames through the
Inspector, or shows the loader refusing, at FILE:LINE, what it cannot mean the same way."""
import subprocess
import sys
import textwrap
from ipaddress import IPv4Network

import pytest
from scapy.all import DNS, DNSQR, IP, TCP, UDP, raw

from appliance.decode import decode_l3
from appliance.detect.loader import check, load_rules
from appliance.inspector import Inspector

HOME_CLIENT, EXTERNAL_SERVER = "10.0.0.5", "93.184.216.34"


def write(tmp_path, text, name="x.rules"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).lstrip("\n"))
    return p


def udp(insp, payload, sport=20000, ts=1.0):
    wire = raw(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=sport, dport=9999) / payload)
    r = insp.process(decode_l3(wire, ts=ts))
    return r.action, sorted(a.id for a in r.alerts)


def http_exchange(insp, request, response):
    """A HOME client's HTTP exchange with an EXTERNAL server: (action, alert ids) per packet."""
    out, t = [], [1.0]
    cseq, sseq, cli, srv = 1000, 5000, (HOME_CLIENT, 40000), (EXTERNAL_SERVER, 80)

    def send(a, b, flags, seq, ack, pl=b""):
        t[0] += 0.01
        wire = raw(IP(src=a[0], dst=b[0]) / TCP(sport=a[1], dport=b[1], flags=flags, seq=seq, ack=ack) / pl)
        r = insp.process(decode_l3(wire, ts=t[0]))
        out.append((r.action, sorted(a.id for a in r.alerts)))
    send(cli, srv, "S", cseq, 0)
    send(srv, cli, "SA", sseq, cseq + 1)
    send(cli, srv, "A", cseq + 1, sseq + 1)
    send(cli, srv, "PA", cseq + 1, sseq + 1, request)
    send(srv, cli, "PA", sseq + 1, cseq + 1 + len(request), response)
    return out


GET = b"GET / HTTP/1.1\r\nHost: x.example\r\n\r\n"
EVIL_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nEVILBODY"


# ------------------------------------------------ 1. file_data verdict rules need a direction

@pytest.mark.parametrize("action", ["drop", "reject", "pass"])
def test_file_data_verdict_rule_without_direction_is_refused(tmp_path, action):
    p = write(tmp_path, f"""
        alert http any any -> any any (file_data; content:"A"; sid:1;)
        {action} http $EXTERNAL_NET any -> $HOME_NET any (file_data; content:"EVILBODY"; sid:3;)
    """)
    assert check(p) == [f"{p}:2: {action} rule on file_data with no flow direction: Suricata judges request "
                        "and response bodies, each against its own packet; add flow:to_server (uploads) "
                        "or flow:to_client (downloads), or write one rule of each"]


def test_rules_check_cli_names_the_refused_line(tmp_path):
    p = write(tmp_path, 'drop http $HOME_NET any -> $EXTERNAL_NET any (file_data; content:"X"; sid:3;)\n')
    r = subprocess.run([sys.executable, "-m", "appliance", "rules", "check", str(p)],
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert f"{p}:1: drop rule on file_data with no flow direction" in r.stdout + r.stderr


def test_file_data_download_drop_with_to_client_drops_the_response(tmp_path):
    # Suricata's header is the response packet's: EXTERNAL server -> HOME client
    rs = load_rules(write(tmp_path, """
        drop http $EXTERNAL_NET any -> $HOME_NET any (flow:to_client; file_data; content:"EVILBODY"; sid:3;)
    """))
    assert http_exchange(Inspector(rs), GET, EVIL_RESPONSE)[-1] == ("drop", [3])


def test_file_data_upload_drop_with_to_server_leaves_downloads(tmp_path):
    rs = load_rules(write(tmp_path, """
        drop http $HOME_NET any -> $EXTERNAL_NET any (flow:to_server; file_data; content:"EVILBODY"; sid:3;)
    """))
    assert [a for a, _ in http_exchange(Inspector(rs), GET, EVIL_RESPONSE)] == ["pass"] * 5


def test_file_data_with_a_request_buffer_is_a_request_rule(tmp_path):
    # http.uri only requests carry: Suricata gives the rule to_server, as here
    rs = load_rules(write(tmp_path, """
        drop http $HOME_NET any -> $EXTERNAL_NET any (http.uri; content:"/up"; file_data; content:"X"; sid:3;)
    """))
    assert IPv4Network("10.0.0.0/8") in rs.rules[0].src.networks        # not swapped


# ------------------------------------------------ 2. action order across .rules files

def test_pass_in_one_rules_file_wins_over_drop_in_another(tmp_path):
    write(tmp_path, 'drop udp any any -> any 9999 (content:"x"; sid:1;)\n', "emerging-policy.rules")
    write(tmp_path, "pass udp 10.0.0.1 any -> any 9999 (sid:2;)\n", "local.rules")
    rs = load_rules(tmp_path)
    assert [r.id for r in rs.rules] == [2, 1]
    assert udp(Inspector(rs), b"x") == ("pass", [])


def test_rules_files_form_one_block_at_the_first_rules_file(tmp_path):
    write(tmp_path, "rules:\n  - {id: 10, action: drop, proto: tcp}\n", "a.yaml")
    write(tmp_path, "alert tcp any any -> any any (sid:1;)\ndrop tcp any any -> any any (sid:2;)\n", "b.rules")
    write(tmp_path, "rules:\n  - {id: 11, action: drop, proto: tcp}\n", "c.yaml")
    write(tmp_path, "pass tcp any any -> any any (sid:3;)\nreject tcp any any -> any any (sid:4;)\n", "d.rules")
    write(tmp_path, "rules:\n  - {id: 12, action: pass, proto: tcp}\n", "e.yaml")
    assert [r.id for r in load_rules(tmp_path).rules] == [10, 3, 2, 4, 1, 11, 12]


# ------------------------------------------------ 3. flowint: comparisons before, changes after the match

def test_flowint_add_happens_only_when_the_rule_matched(tmp_path):
    rs = load_rules(write(tmp_path, """
        drop udp any any -> any 9999 (content:"PASS"; flowint:fails,+,1; flowint:fails,>,2; sid:1;)
    """))
    insp = Inspector(rs)
    # fails is never set: > fails, so + never runs (Suricata: the rule never matches)
    assert [udp(insp, b"PASS %d" % i, ts=1.0 + i) for i in range(5)] == [("pass", [])] * 5


def test_flowint_comparison_sees_the_value_before_the_rules_own_change(tmp_path):
    rs = load_rules(write(tmp_path, """
        alert udp any any -> any 9999 (content:"ONE"; flowint:r,=,1; noalert; sid:1;)
        alert udp any any -> any 9999 (content:"RST"; flowint:r,=,7; flowint:r,==,1; sid:2;)
    """))
    insp = Inspector(rs)
    assert udp(insp, b"RST", ts=1.0) == ("pass", [])        # r unset: == fails, = does not run
    assert udp(insp, b"ONE", ts=2.0) == ("pass", [])        # r = 1
    assert udp(insp, b"RST", ts=3.0) == ("pass", [2])       # r was 1: matches, then r = 7
    assert udp(insp, b"RST", ts=4.0) == ("pass", [])        # r is 7


def test_flowint_add_on_an_unset_variable_sets_it(tmp_path):
    # (review s14b: a mutation making + on an unset variable do nothing passed every test)
    rs = load_rules(write(tmp_path, """
        alert udp any any -> any 9999 (content:"HIT"; flowint:hits,+,1; noalert; sid:1;)
        alert udp any any -> any 9999 (content:"HIT"; flowint:hits,==,1; sid:2;)
    """))
    insp = Inspector(rs)
    assert udp(insp, b"HIT", ts=1.0) == ("pass", [2])      # unset + 1 = 1, then rule 2 sees 1
    assert udp(insp, b"HIT", ts=2.0) == ("pass", [])       # 2


def test_payload_reading_by_protocol_and_anchor(tmp_path):
    # (review s14b: mutations of the absolute-isdataat and ip-proto classification passed)
    rs = load_rules(write(tmp_path, """
        alert tcp any any -> any any (content:"EVIL"; isdataat:50; sid:1;)
        alert tcp any any -> any any (content:"EVIL"; isdataat:5,relative; sid:2;)
        alert ip any any -> any any (content:"EVILCMD"; sid:3;)
        alert udp any any -> any any (content:"EVILCMD"; sid:4;)
    """))
    assert {r.id: r.payload for r in rs.rules} == {1: "packet", 2: "both", 3: "both", 4: "packet"}


# ------------------------------------------------ 5, 6. pcre

PASSWD = r"/\.\.\/etc\/passwd/R"


def test_relative_pcre_without_an_earlier_match_in_its_buffer_is_refused(tmp_path):
    p = write(tmp_path, r"""
        drop http $HOME_NET any -> any any (flow:to_server; content:"/cgi-bin/"; http_uri; pcre:"/\.\.\/etc\/passwd/R"; sid:1;)
        drop http $HOME_NET any -> any any (flow:to_server; content:"/cgi-bin/"; http_uri; pcre:"/\.\.\/etc\/passwd/UR"; sid:2;)
    """)
    assert check(p) == [f"{p}:1: pcre {PASSWD!r}: /R (relative) needs a content or pcre before "
                        f"it in the same buffer (the payload)"]


def test_pcre_big_z_also_matches_before_a_final_newline(tmp_path):
    rs = load_rules(write(tmp_path, r"""
        alert udp any any -> any 9999 (pcre:"/^GET\Z/"; sid:1;)
        alert udp any any -> any 9999 (pcre:"/^GET\z/"; sid:2;)
    """))
    insp = Inspector(rs)
    assert udp(insp, b"GET\n", sport=1) == ("pass", [1])
    assert udp(insp, b"GET", sport=2) == ("pass", [1, 2])
    assert udp(insp, b"GET\nx", sport=3) == ("pass", [])


def test_pcre_big_z_inside_a_class_is_left_as_written():
    # (review s14b: a mutation that rewrote \Z inside [...] passed every test)
    from appliance.detect.keywords import pcre_syntax
    assert pcre_syntax(r"a\Z[\Z]b[]\Z]\z") == (r"a(?=\n?\Z)[\Z]b[]\Z]\Z", None)


def test_pcre_open_lower_bound_repeat_is_refused(tmp_path):
    p = write(tmp_path, 'alert udp any any -> any any (pcre:"/^ab{,2}c$/"; sid:2;)\n')
    assert check(p) == [f"{p}:1: unsupported keyword 'pcre' (pcre '/^ab{{,2}}c$/': '{{,n}}' is text in PCRE2 "
                        f"before 10.43 and {{0,n}} since: write {{0,n}} or \\{{,n\\}})"]


# ------------------------------------------------ 7. a repeated single-value keyword

@pytest.mark.parametrize("options, message", [
    ("flow:established; flow:to_server;", "flow given twice: Suricata refuses a rule with more than one flow"),
    ("dsize:>1000; dsize:<5;", "dsize given twice: Suricata refuses a rule with more than one dsize"),
    ('content:"a"; distance:0; distance:50;', "distance given twice for content b'a': Suricata refuses the rule"),
    ('content:"a"; depth:4; depth:9;', "depth given twice for content b'a': Suricata refuses the rule"),
    ("threshold:type limit, track by_src, count 1, seconds 60; threshold:type limit, track by_dst, count 1, "
     "seconds 60;", "threshold given twice: Suricata refuses a rule with more than one threshold"),
    ("ttl:64; ttl:<10;", "unsupported keyword 'ttl' (given twice: only one per rule here)"),
    # review s14b: detection_filter was not among them
    ('content:"a"; detection_filter:track by_src, count 2, seconds 5; detection_filter:track by_src, count 3, '
     "seconds 5;", "detection_filter given twice: Suricata refuses a rule with more than one detection_filter"),
    ('content:"a"; threshold:type limit, track by_src, count 1, seconds 5; detection_filter:track by_src, count 3, '
     "seconds 5;", "threshold and detection_filter in one rule: Suricata refuses it (one of them per rule)"),
    ('content:"a"; detection_filter:track by_src, count 3, seconds 5; threshold:type limit, track by_src, count 1, '
     "seconds 5;", "threshold and detection_filter in one rule: Suricata refuses it (one of them per rule)"),
])
def test_repeated_keyword_is_refused(tmp_path, options, message):
    p = write(tmp_path, f"alert tcp any any -> any any ({options} sid:1;)\n")
    assert check(p) == [f"{p}:1: {message}"]


def test_two_contents_each_with_its_own_depth_load(tmp_path):
    p = write(tmp_path, 'alert tcp any any -> any any (content:"a"; depth:4; content:"b"; depth:9; sid:1;)\n')
    assert check(p) == []


# ------------------------------------------------ 8. dns with ports

def test_dns_rule_with_ports_loads_on_tcp_and_udp(tmp_path):
    rs = load_rules(write(tmp_path, 'alert dns $HOME_NET any -> any 53 (dns.query; content:"evil"; sid:1;)\n'))
    assert set(rs.rules[0].protos) == {"tcp", "udp"}
    wire = raw(IP(src="10.0.0.1", dst="10.0.0.53") / UDP(sport=33000, dport=53)
               / DNS(rd=1, qd=DNSQR(qname="evil.example")))
    r = Inspector(rs).process(decode_l3(wire, ts=1.0))
    assert [a.id for a in r.alerts] == [1]
