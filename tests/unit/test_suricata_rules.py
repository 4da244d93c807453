"""Suricata `.rules` syntax: each keyword gives the Rule its YAML equivalent gives, and
what cannot be expressed is a FILE:LINE unsupported-keyword problem (or a skipped rule)."""
import dataclasses
import textwrap

import pytest

from appliance.config import ConfigError, load_config
from appliance.detect.loader import check, load_rules, skip_report

FIXTURE = "tests/data/suricata/et-style.rules"


def suri(tmp_path, text, **kw):
    p = tmp_path / "x.rules"
    p.write_text(textwrap.dedent(text).lstrip("\n"))
    return load_rules(p, **kw)


def one_suri(tmp_path, line):
    rs = suri(tmp_path, line)
    assert len(rs.rules) == 1
    return rs.rules[0]


def one_yaml(tmp_path, text):
    p = tmp_path / "x.yaml"
    p.write_text(textwrap.dedent(text).lstrip("\n"))
    rs = load_rules(p)
    assert len(rs.rules) == 1
    return rs.rules[0]


def same(r):
    """A rule without where it was written and what only .rules carry (rev, gid)."""
    return dataclasses.replace(r, file="", line=0, order=0, rev=0, gid=1)


PAIRS = [
    # a header-only alert rule alerts on every packet it fits, as Suricata counts
    ("alert tcp any any -> any any (sid:5;)", "{id: 5, action: alert, proto: tcp}"),
    ("drop udp any any -> any any (sid:5;)", "{id: 5, action: drop, proto: udp, log: true}"),
    ("rejectsrc tcp any any -> any any (sid:5;)", "{id: 5, action: reject, proto: tcp, log: true}"),
    ("rejectboth tcp any any -> any any (sid:5;)", "{id: 5, action: reject, proto: tcp, log: true}"),
    ("pass ip any any -> any any (sid:5;)", "{id: 5, action: pass}"),
    ("alert icmpv4 any any -> any any (sid:5; itype:8; icode:0;)",
     "{id: 5, action: alert, proto: icmp, icmp_type: 8, icmp_code: 0}"),
    ("alert icmpv6 any any -> any any (sid:5; itype:128;)",
     "{id: 5, action: alert, proto: icmpv6, icmp_type: 128}"),
    ("alert tcp [10.0.0.0/8,!10.1.0.0/16] any -> $EXTERNAL_NET !80 (sid:5;)",
     "{id: 5, action: alert, proto: tcp, src: '[10.0.0.0/8,!10.1.0.0/16]', dst: $EXTERNAL_NET, dst_port: '!80'}"),
    ("alert tcp $HOME_NET 1024: -> any [6667:6669,7000,:20] (sid:5;)",
     "{id: 5, action: alert, proto: tcp, src: $HOME_NET, src_port: 1024-65535, "
     "dst_port: [6667-6669, 7000, 0-20]}"),
    ("alert tcp 10.0.0.0/8 any <> 10.0.0.0/8 any (sid:5;)",
     "{id: 5, action: alert, proto: tcp, src: 10.0.0.0/8, dst: 10.0.0.0/8}"),
    ('alert tcp any any -> any any (msg:"a \\"quoted\\"; msg"; classtype:trojan-activity; priority:1; '
     'metadata:former_category MALWARE, created_at 2026_01_01; sid:5;)',
     "{id: 5, action: alert, proto: tcp, msg: 'a \"quoted\"; msg', classtype: trojan-activity, severity: 1, "
     "metadata: {former_category: [MALWARE], created_at: ['2026_01_01']}}"),
    ("alert tcp any any -> any any (classtype:misc-attack; sid:5;)",       # classification.config's priority
     "{id: 5, action: alert, proto: tcp, classtype: misc-attack, severity: 2}"),
    ("alert tcp any any -> any any (classtype:trojan-activity; priority:3; sid:5;)",   # priority wins
     "{id: 5, action: alert, proto: tcp, classtype: trojan-activity, severity: 3}"),
    ("alert tcp any any -> any any (classtype:my-own-class; sid:5;)",      # not in the default table
     "{id: 5, action: alert, proto: tcp, classtype: my-own-class}"),
    ('alert tcp any any -> any any (content:"GET |2f 61|"; nocase; offset:2; depth:10; content:"x"; sid:5;)',
     "{id: 5, action: alert, proto: tcp, content: [{hex: '474554202f61', nocase: true, offset: 2, depth: 10}, x]}"),
    ("alert tcp any any -> any any (flow:established,from_server; sid:5;)",
     "{id: 5, action: alert, proto: tcp, flow: [established, to_client]}"),
    ("alert tcp any any -> any any (flow:from_client,not_established; sid:5;)",
     "{id: 5, action: alert, proto: tcp, flow: [to_server, not_established]}"),
    ("alert tcp any any -> any any (flags:S,CE; sid:5;)", "{id: 5, action: alert, proto: tcp, tcp_flags: 'S,CE'}"),
    ("alert tcp any any -> any any (content:\"x\"; threshold:type limit, track by_src, count 2, seconds 60; sid:5;)",
     "{id: 5, action: alert, proto: tcp, content: x, threshold: {type: limit, track: by_src, count: 2, seconds: 60}, payload: both}"),
    ("alert dns any any -> any any (sid:5;)", "{id: 5, action: alert, app_proto: dns}"),
    ("alert tls any any -> any any (sid:5;)", "{id: 5, action: alert, proto: tcp, app_proto: tls}"),
    ('alert http any any -> any 80 (content:"x"; sid:5;)',
     "{id: 5, action: alert, proto: tcp, dst_port: 80, content: x, payload: both, app_proto: http}"),
    ('alert dns any any -> any any (dns.query; content:"Evil.example"; nocase; startswith; endswith; sid:5;)',
     "{id: 5, action: alert, dns_query: evil.example}"),
    ('alert dns any any -> any any (dns.query; content:"evil.example"; nocase; bsize:12; sid:5;)',
     "{id: 5, action: alert, dns_query: evil.example}"),
    ('alert dns any any -> any any (dns.query; content:".evil.example"; nocase; endswith; sid:5;)',
     "{id: 5, action: alert, dns_query: '*.evil.example'}"),
    ('alert dns any any -> any any (dns.query; dotprefix; content:".evil.example"; nocase; endswith; sid:5;)',
     "{id: 5, action: alert, dns_query: [evil.example, '*.evil.example']}"),
    ('drop tls any any -> any 443 (tls.sni; content:"evil.example"; nocase; startswith; endswith; sid:5;)',
     "{id: 5, action: drop, log: true, proto: tcp, dst_port: 443, tls_sni: evil.example}"),
    ('alert http any any -> any any (http.host; content:"evil.example"; startswith; endswith; sid:5;)',
     "{id: 5, action: alert, proto: tcp, http_host: evil.example}"),
    ('alert http any any -> any any (content:".evil.example"; http_host; endswith; sid:5;)',
     "{id: 5, action: alert, proto: tcp, http_host: '*.evil.example'}"),
    ('alert tcp any any -> any any (content:"x"; fast_pattern; sid:5;)',
     "{id: 5, action: alert, proto: tcp, content: {value: x, fast_pattern: true}, payload: both}"),
    # Suricata's buffer inspection: negation, relative steps, pcre, isdataat
    ('alert tcp any any -> any any (content:"a"; content:!"b"; distance:0; within:4; pcre:"/x+/iR"; '
     'isdataat:!2,relative; content:"c"; distance:-3; sid:5;)',
     "{id: 5, action: alert, proto: tcp, content: [a, {value: b, not: true, distance: 0, within: 4}, "
     "{pcre: /x+/iR}, {isdataat: 2, relative: true, not: true}, {value: c, distance: -3}], payload: both}"),
    ('alert tcp any any -> any any (content:"a"; pcre:"/b/R"; nocase; sid:5;)',    # nocase: on the content
     "{id: 5, action: alert, proto: tcp, content: [{value: a, nocase: true}, {pcre: /b/R}], payload: both}"),
    ('alert tcp any any -> any any (pcre:!"/^GET/"; content:"x"; startswith; endswith; sid:5;)',
     "{id: 5, action: alert, proto: tcp, content: [{pcre: /^GET/, not: true}, {value: x, startswith: true, "
     "endswith: true}]}"),
    ('alert http any any -> any any (http.uri; content:"/a"; pkt_data; content:"GET"; depth:3; sid:5;)',
     "{id: 5, action: alert, proto: tcp, content: [{value: /a, buffer: http.uri}, {value: GET, depth: 3}]}"),
    ("alert udp any any -> any any (dsize:>100; ttl:<5; ip_proto:!tcp; sid:5;)",
     "{id: 5, action: alert, proto: udp, dsize: '>100', ttl: '<5', ip_proto: '!tcp'}"),
    ("alert ip any any -> any any (dsize:10<>20; ttl:64; ip_proto:47; sid:5;)",
     "{id: 5, action: alert, dsize: 10<>20, ttl: 64, ip_proto: 47}"),
    # sticky buffers: substrings and programs (a lone whole name stays a name key, below)
    ('alert dns any any -> any any (dns.query; content:"evil"; nocase; sid:5;)',
     "{id: 5, action: alert, content: {value: evil, nocase: true, buffer: dns.query}}"),
    ('alert tls any any -> any any (tls.sni; content:"a.example"; startswith; endswith; sid:5;)',
     "{id: 5, action: alert, proto: tcp, content: {value: a.example, startswith: true, endswith: true, "
     "buffer: tls.sni}}"),
    ('alert http any any -> any any (http.uri; content:"/admin"; startswith; http.method; content:"POST"; '
     'bsize:4; sid:5;)',
     "{id: 5, action: alert, proto: tcp, content: [{value: /admin, startswith: true, buffer: http.uri}, "
     "{value: POST, buffer: http.method}], bsize: {http.method: 4}}"),
    ('alert http any any -> any any (content:"/x"; http_uri; content:"curl"; http_user_agent; '
     'pcre:"/a/U"; urilen:<10; sid:5;)',
     "{id: 5, action: alert, proto: tcp, content: [{value: /x, buffer: http.uri}, "
     "{value: curl, buffer: http.user_agent}, {pcre: /a/U}], urilen: '<10'}"),
    ('alert tcp any any -> any any (uricontent:"/x"; content:"y"; http_raw_uri; urilen:3<>9,raw; sid:5;)',
     "{id: 5, action: alert, proto: tcp, content: [{value: /x, buffer: http.uri}, "
     "{value: y, buffer: http.uri.raw}], urilen: '3<>9,raw'}"),
    ('alert http any any -> any any (http.host; content:"a.example"; startswith; endswith; http.uri; '
     'content:"/x"; sid:5;)',
     "{id: 5, action: alert, proto: tcp, http_host: a.example, content: {value: /x, buffer: http.uri}}"),
    ('alert http any any -> any any (http.host; content:"evil"; http.user_agent; content:"x"; '
     'isdataat:2,relative; sid:5;)',
     "{id: 5, action: alert, proto: tcp, content: [{value: evil, buffer: http.host}, "
     "{value: x, buffer: http.user_agent}, {isdataat: 2, relative: true, buffer: http.user_agent}]}"),
    # a deciding rule describes the connection: to_server as written, to_client swapped
    ("drop tcp $HOME_NET any -> 192.0.2.0/24 25 (flow:to_server; sid:5;)",
     "{id: 5, action: drop, log: true, proto: tcp, src: $HOME_NET, dst: 192.0.2.0/24, dst_port: 25, flow: to_server, hold: false}"),
    ('drop tcp $EXTERNAL_NET 80 -> $HOME_NET any (flow:established,from_server; content:"MZ"; sid:5;)',
     "{id: 5, action: drop, log: true, proto: tcp, src: $HOME_NET, dst: $EXTERNAL_NET, dst_port: 80, "
     "flow: [established, to_client], content: MZ, payload: both, hold: false}"),
    ("alert tcp $EXTERNAL_NET 80 -> $HOME_NET any (flow:from_server; sid:5;)",     # alerts: per packet
     "{id: 5, action: alert, proto: tcp, src: $EXTERNAL_NET, src_port: 80, dst: $HOME_NET, flow: to_client}"),
    ("pass ip any any -> any any (sid:5;)", "{id: 5, action: pass}"),
    # flow state (docs/rules.md "Flow state")
    ('alert tcp any any -> any any (content:"a"; flowbits:set,x; flowbits:isset,y|z; flowbits:noalert; sid:5;)',
     "{id: 5, action: alert, proto: tcp, content: a, flowbits: [{set: x}, {isset: 'y|z'}], noalert: true, payload: both}"),
    ("alert tcp any any -> any any (flowbits:unset,a&b; flowbits:toggle,c; flowbits:isnotset,d; sid:5;)",
     "{id: 5, action: alert, proto: tcp, flowbits: [{unset: 'a&b'}, {toggle: c}, {isnotset: d}]}"),
    ("alert tcp any any -> any any (flowint:n,+,1; flowint:n,>=,m; flowint:m,notset; sid:5;)",
     "{id: 5, action: alert, proto: tcp, flowint: [{name: n, op: '+', value: 1}, {name: n, op: '>=', value: m}, "
     "{name: m, op: notset}]}"),
    ("alert tcp any any -> any 22 (flags:S; detection_filter:track by_dst, count 5, seconds 60; "
     "target:dest_ip; sid:5;)",
     "{id: 5, action: alert, proto: tcp, dst_port: 22, tcp_flags: S, "
     "detection_filter: {track: by_dst, count: 5, seconds: 60}, target: dest_ip}"),
    ('alert tcp any any -> any any (content:"a"; bypass; prefilter; sid:5;)',
     "{id: 5, action: alert, proto: tcp, content: a, bypass: true, payload: both}"),
    ("drop tcp any any -> any 23 (flow:to_server; noalert; sid:5;)",        # a silent drop
     "{id: 5, action: drop, log: false, proto: tcp, dst_port: 23, flow: to_server, hold: false}"),
    ("alert tcp any any -> any any (flow:stateless; sid:5;)", "{id: 5, action: alert, proto: tcp}"),
    ('alert tcp any any -> any any (flow:no_stream,to_server; content:"a"; sid:5;)',
     "{id: 5, action: alert, proto: tcp, flow: to_server, content: a}"),
    ('alert tcp any any -> any any (flow:only_stream,to_server; content:"a"; content:"b"; distance:0; sid:5;)',
     "{id: 5, action: alert, proto: tcp, flow: to_server, payload: stream, "
     "content: [a, {value: b, distance: 0}]}"),
    ('alert ip any any -> any any (flow:only_stream; content:"a"; sid:5;)',     # only TCP has a stream
     "{id: 5, action: alert, proto: tcp, payload: stream, content: a}"),
    # Suricata's icmp is ICMPv4 and ICMPv6
    ("alert icmp any any -> any any (itype:8; sid:5;)", "{id: 5, action: alert, proto: [icmp, icmpv6], icmp_type: 8}"),
    # <> with different sides, and a verdict rule whose header describes each packet
    ("alert tcp 10.0.0.1 any <> any 23 (sid:5;)",
     "{id: 5, action: alert, proto: tcp, src: 10.0.0.1, dst_port: 23, bidirectional: true}"),
    ("drop ip 192.0.2.0/24 any -> $HOME_NET any (sid:5;)",
     "{id: 5, action: drop, log: true, src: 192.0.2.0/24, dst: $HOME_NET, header: packet}"),
    ("drop tcp $HOME_NET any <> $EXTERNAL_NET 23 (sid:5;)",
     "{id: 5, action: drop, log: true, proto: tcp, src: $HOME_NET, dst: $EXTERNAL_NET, dst_port: 23, "
     "bidirectional: true, header: packet}"),
]


@pytest.mark.parametrize("line,yaml", PAIRS, ids=[p[0][:60] for p in PAIRS])
def test_keyword_gives_the_yaml_rule(tmp_path, line, yaml):
    r = one_suri(tmp_path, line)
    y = one_yaml(tmp_path, f"rules:\n  - {yaml}\n")
    assert same(r) == same(y)
    assert r.metadata == y.metadata


def test_rev_gid_reference_are_kept(tmp_path):
    r = one_suri(tmp_path, "alert tcp any any -> any any (sid:5; rev:7; gid:3; reference:url,example.org/a; "
                           "reference:cve,2026-0001;)")
    assert (r.rev, r.gid, r.references) == (7, 3, ("url,example.org/a", "cve,2026-0001"))


def test_suricata_default_vars_and_yaml_overrides(tmp_path):
    (tmp_path / "a.rules").write_text("alert tcp any any -> $HTTP_SERVERS $HTTP_PORTS (sid:1;)\n")
    assert load_rules(tmp_path).rules[0].dst_port.ranges == ((80, 80),)
    (tmp_path / "0vars.yaml").write_text("vars:\n  HTTP_PORTS: [8080, 8081]\n")
    assert load_rules(tmp_path).rules[0].dst_port.ranges == ((8080, 8081),)


def test_home_net_argument_applies_to_rules(tmp_path):
    (tmp_path / "a.rules").write_text("alert tcp $HOME_NET any -> any any (sid:1;)\n")
    r = load_rules(tmp_path, home_net=["192.0.2.0/24"]).rules[0]
    assert [str(n) for n in r.src.networks] == ["192.0.2.0/24"]


def test_action_order_within_a_rules_file(tmp_path):
    rs = suri(tmp_path, """
        alert tcp any any -> any any (sid:1;)
        drop tcp any any -> any any (sid:2;)
        reject tcp any any -> any any (sid:3;)
        pass tcp any any -> any any (sid:4;)
        drop tcp any any -> any any (sid:5;)
    """)
    assert [r.id for r in rs.rules] == [4, 2, 5, 3, 1]
    assert [r.line for r in rs.rules] == [4, 2, 5, 3, 1]


def test_mixed_directory_files_in_lexical_order(tmp_path):
    (tmp_path / "b.rules").write_text("pass tcp any any -> any any (sid:2;)\n")
    (tmp_path / "a.yaml").write_text("rules:\n  - {id: 1, action: drop, proto: tcp}\n")
    (tmp_path / "c.yml").write_text("rules:\n  - {id: 3, action: drop, proto: tcp}\n")
    assert [r.id for r in load_rules(tmp_path).rules] == [1, 2, 3]


def test_continuation_lines_and_comments(tmp_path):
    rs = suri(tmp_path, """
        # a comment
        alert tcp any any -> any any \\
          (msg:"two lines"; sid:1;)

        #alert tcp any any -> any any (sid:2;)
    """)
    assert [(r.id, r.line, r.msg) for r in rs.rules] == [(1, 2, "two lines")]


@pytest.mark.parametrize("line,message", [
    ('alert tcp any any -> any any (content:"a"; distance:x; sid:1;)',
     "unsupported keyword 'distance' ('x': only a number is supported (not a byte_extract variable))"),
    ('alert tcp any any -> any any (content:"a"; offset:1; distance:0; sid:1;)',
     "content offset (from the buffer's start) cannot be combined with distance (from the previous match), "
     "as in Suricata"),
    ('alert tcp any any -> any any (content:"abc"; within:2; sid:1;)',
     "within 2 is shorter than the content (3 bytes): it can never match"),
    ('alert tcp any any -> any any (content:!"a"; fast_pattern; sid:1;)',
     "fast_pattern cannot be a negated content (the prefilter looks for bytes that are there)"),
    ('alert tcp any any -> any any (content:"a"; bsize:3; sid:1;)',
     "unsupported keyword 'bsize' (on the packet payload (Suricata's bsize needs a sticky buffer; dsize is "
     "the payload's))"),
    ('alert tcp any any -> any any (pcre:"/x/H"; sid:1;)',
     "unsupported keyword 'pcre' (pcre '/x/H': flag 'H' names an HTTP buffer this appliance does not read "
     "(H: all request headers; here only http.host, http.user_agent, http.method, http.uri[.raw], http.stat_code are, "
     "flags W V M U I S))"),
    ('alert tcp any any -> any any (pcre:"/x/Q"; sid:1;)',
     "unsupported keyword 'pcre' (pcre '/x/Q': flag 'Q' names an HTTP buffer this appliance does not read "
     "(H: all request headers; here only http.host, http.user_agent, http.method, http.uri[.raw], http.stat_code are, "
     "flags W V M U I S))"),
    ('alert tcp any any -> any any (pcre:"/x/G"; sid:1;)',
     "unsupported keyword 'pcre' (pcre '/x/G': flag 'G' is not supported (i s m x R, and U I M V W S for "
     "http.uri, http.uri.raw, http.method, http.user_agent, http.host, http.stat_code))"),
    ('alert tcp any any -> any any (pcre:"x"; sid:1;)',
     "pcre must be a quoted \"/regex/flags\", got 'x'"),
    ('alert udp any any -> any any (http.stat_code; content:"200"; sid:1;)',
     "buffer http.stat_code needs proto ip or tcp (proto is udp)"),
    ('alert http any any -> any any (flow:established,to_server; http.stat_code; content:"200"; sid:1;)',
     "buffer http.stat_code is read from the server's answer: with flow to_server it can never match"),
    ("alert tcp any any -> any any (dsize:5<>3; sid:1;)",
     "dsize '5<>3': lo<>hi excludes both ends, so hi must exceed lo by 2 or more"),
    ("alert tcp any any -> any any (ttl:300; sid:1;)", "ttl '300': 300 is more than 255"),
    ("alert tcp any any -> any any (dsize:<0; sid:1;)", "dsize '<0' can never match"),
    ("alert tcp any any -> any any (ip_proto:foo; sid:1;)",
     "ip_proto 'foo': unknown protocol name; use a number 0-255 or one of hopopt, icmp, igmp, ipip, tcp, "
     "egp, udp, ipv6, rsvp, gre, esp, ah, icmpv6, eigrp, ospf, pim, vrrp, l2tp, sctp"),
    ("alert tcp any any -> any any (urilen:5,both; sid:1;)",
     "urilen '5,both': after the comma comes norm (the default) or raw"),
    ('alert udp any any -> any any (http.uri; content:"x"; sid:1;)',
     "buffer http.uri needs proto ip or tcp (proto is udp)"),
    ('alert tcp any any -> any any (tls.sni; content:"x"; http.uri; content:"y"; sid:1;)',
     "buffer http.uri is http; this rule also looks at tls (a flow carries one protocol)"),
    ("alert tcp any any -> any any (flow:only_stream; sid:1;)",
     "unsupported keyword 'flow:only_stream' (without payload content: the stream is what content reads)"),
    ('alert udp any any -> any any (flow:only_stream; content:"a"; sid:1;)',
     "unsupported keyword 'flow:only_stream' (on udp: only TCP has a stream here)"),
    ('alert tcp any any -> any any (flow:only_stream; content:"a"; depth:4; sid:1;)',
     "unsupported keyword 'flow:only_stream' (with offset, depth, startswith, endswith or absolute isdataat: "
     "positions on the stream window are not the stream's)"),
    ("alert tcp any any -> any any (flowbits:sett,x; sid:1;)",
     "flowbits 'sett,x': expected noalert or one of set, unset, toggle, isset, isnotset and a name"),
    ("alert tcp any any -> any any (flowbits:set,a|b; sid:1;)",
     "flowbits set 'a|b': | (any of) applies to isset/isnotset"),
    ("alert tcp any any -> any any (flowint:n,*,2; sid:1;)",
     "flowint 'n,*,2': expected name, op (=, +, -, ==, !=, <, <=, >, >=), value or name, isset|notset"),
    ("alert tcp any any -> any any (detection_filter:track by_both, count 1, seconds 1; sid:1;)",
     "detection_filter track must be one of by_src, by_dst, by_flow, by_rule, got 'by_both' (did you mean 'by_dst'?)"),
    ("alert tcp any any -> any any (target:both; sid:1;)", "target must be one of src_ip, dest_ip, got 'both'"),
    ("alert tcp any any -> any any (priority:7; sid:1;)", "unsupported keyword 'priority' (7: severities here are 1-4)"),
    ("alert tcp any any -> any any (threshold:type limit, track by_both, count 1, seconds 1; sid:1;)",
     "unsupported keyword 'threshold' (track 'by_both')"),
    ("alert sctp any any -> any any (sid:1;)", "unsupported keyword 'sctp' (protocol)"),
    ("alert tcp any any -> any any (msg:\"x\" sid:1;)", "msg: text after the closing quote in '\"x\" sid:1' (a missing ';'?)"),
    ("alert tcp any any -> any any (sid:1; nocase)", "option 'nocase' is not ended by ';'"),
    ("alert tcp any any -> any any (msg:\"x; sid:1;)", "unterminated quoted string in the options"),
    ("alert tcp any any any -> any any (sid:1;)",
     "not a Suricata rule: expected 'action proto src sport -> dst dport (options;)'"),
    ("log tcp any any -> any any (sid:1;)",
     "unknown action 'log' (alert, pass, drop, reject, rejectsrc, rejectdst, rejectboth)"),
    ("alert tcp any any -> any any (msg:\"no sid\";)", "rule has no sid"),
    ('alert http any any -> any any (http.host; content:"Evil.example"; startswith; endswith; sid:1;)',
     "http.host is lowercase: content 'Evil.example' can never match (add nocase)"),
    ("alert tcp any any -> any any (sid:1; flags:SX;)",
     "tcp_flags 'SX': 'X' is not a flag; use letters from FSRPAUEC"),
    ("alert tcp any any -> $NOPE any (sid:1;)", "dst: unknown variable $NOPE"),
])
def test_problem_at_its_line(tmp_path, line, message):
    p = tmp_path / "x.rules"
    p.write_text(f"# header\n\n{line}\n")
    assert check(p) == [f"{p}:3: {message}"]


def test_sid_shared_with_a_yaml_rule_is_a_duplicate(tmp_path):
    (tmp_path / "a.yaml").write_text("rules:\n  - {id: 9, action: alert}\n")
    (tmp_path / "b.rules").write_text("alert tcp any any -> any any (sid:9;)\n")
    assert check(tmp_path) == [f"{tmp_path}/b.rules:1: duplicate id 9 (first used at {tmp_path}/a.yaml:2)"]


def test_skip_unsupported_loads_the_rest(tmp_path):
    rs = suri(tmp_path, """
        alert tcp any any -> any any (content:"a"; byte_test:1,>,5,0; byte_jump:1,0; sid:1;)
        drop tcp any any -> any 23 (flow:to_server; sid:2;)
        alert tcp any any -> any any (content:"b"; byte_test:1,>,5,0; sid:3;)
    """, skip_unsupported=True)
    assert [r.id for r in rs.rules] == [2]
    p = tmp_path / "x.rules"
    assert skip_report(rs) == [
        f"{p}:1: skipped sid 1: unsupported keyword 'byte_test'; unsupported keyword 'byte_jump'",
        f"{p}:3: skipped sid 3: unsupported keyword 'byte_test'",
        "1 rules loaded, 2 skipped; unsupported keywords: byte_test (2), byte_jump (1)",
    ]


def test_skip_unsupported_still_fails_on_errors(tmp_path):
    p = tmp_path / "x.rules"
    p.write_text("alert tcp any any -> any any (content:\"a; sid:1;)\n")
    assert check(p, skip_unsupported=True) == [f"{p}:1: unterminated quoted string in the options"]


def test_fixture_loaded_and_skipped():
    assert len(check(FIXTURE)) == 3                       # problems by default
    rs = load_rules(FIXTURE, skip_unsupported=True)
    assert (len(rs.rules), len(rs.skipped)) == (51, 3)


def test_config_key_rules_skip_unsupported(tmp_path):
    base = "interfaces: {outside: eth0, inside: eth1}\nrules: r\n"
    p = tmp_path / "c.yaml"
    p.write_text(base + "rules_skip_unsupported: true\n")
    assert load_config(p).rules_skip_unsupported is True
    p.write_text(base + "rules_skip_unsupported: maybe\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert e.value.problems == [f"{p}:3: rules_skip_unsupported must be true or false, got 'maybe'"]


def test_mangled_rules_never_crash(tmp_path):
    """Malformed .rules lines are problems, never exceptions (the loader's own run, not check's guard)."""
    import random
    from appliance.detect.loader import _Loader
    lines = [ln.rstrip("\n") for ln in open(FIXTURE) if ln[:1].isalpha()]
    rnd, p = random.Random(7), tmp_path / "x.rules"
    for _ in range(400):
        chars = list(rnd.choice(lines))
        for _ in range(rnd.randint(1, 4)):
            pos = rnd.randrange(len(chars))
            if rnd.random() < 0.5:
                del chars[pos]
            else:
                chars.insert(pos, rnd.choice('";:|!\\()[],-> $a0'))
        p.write_text("".join(chars) + "\n")
        for skip in (False, True):
            _Loader(None, skip).run([p])
