"""The YAML keys of Suricata's payload/buffer keywords: bad values are FILE:LINE problems,
and through the real Inspector each key changes what matches (the prefilter never
requires a negated content; the fast_pattern content is the one it looks for)."""
import textwrap

import pytest
from scapy.all import IP, UDP, raw

from appliance.decode import decode_l3
from appliance.detect.loader import check, load_rules
from appliance.inspector import Inspector


def rule_problem(tmp_path, body):
    p = tmp_path / "r.yaml"
    p.write_text("rules:\n  - id: 1\n    action: alert\n" + textwrap.indent(body, "    "))
    return [x.replace(f"{p}:", "") for x in check(p)]


@pytest.mark.parametrize("body,problem", [
    ("content: {value: a, not: 1}\n", "4: not must be true or false, got number 1"),
    ("content: {value: a, distance: x}\n", "4: distance must be an integer, got 'x'"),
    ("content: {value: ab, within: 1}\n", "4: within 1 is shorter than the content (2 bytes): it can never match"),
    ("content: {value: a, offset: 1, within: 3}\n",
     "4: content offset (from the buffer's start) cannot be combined with within (from the previous "
     "match), as in Suricata"),
    ("content: {value: a, startswith: true, offset: 2}\n", "4: startswith cannot be combined with offset"),
    ("content: {value: a, relative: true}\n", "4: content key 'relative' does not apply to value"),
    ("content: {value: a, pcre: /a/}\n", "4: content needs exactly one of value, hex, pcre or isdataat"),
    ("content: {pcre: a}\n", "4: pcre must be \"/regex/flags\", got 'a'"),
    ("content: {pcre: /(/}\n",
     "4: pcre '/(/': Python's re cannot compile it: missing ), unterminated subpattern at position 0"),
    ("content: {pcre: /a/U, buffer: http.method}\n", "4: pcre's flag names buffer http.uri, the item says http.method"),
    ("content: {isdataat: -1}\n", "4: isdataat must be an integer >= 0, got number -1"),
    ("content: {value: a, buffer: http.cookie}\n",
     "4: buffer must be one of http.uri, http.uri.raw, http.method, http.user_agent, http.host, "
     "http.stat_code, dns.query, tls.sni, file_data, got 'http.cookie' (did you mean 'http.stat_code'?)"),
    ("proto: udp\ncontent: {value: a, buffer: tls.sni}\n", "5: buffer tls.sni needs proto ip or tcp (proto is udp)"),
    ("flow: [to_server]\ncontent: {value: '200', buffer: http.stat_code}\n",
     "5: buffer http.stat_code is read from the server's answer: with flow to_server it can never match"),
    ("dns_query: a.example\ncontent: {value: a, buffer: tls.sni}\n",
     "5: buffer tls.sni is tls; this rule also looks at dns (a flow carries one protocol)"),
    ("dsize: '<x'\n", "4: dsize must be n, <n, >n, <=n, >=n, !n or lo<>hi, got '<x'"),
    ("dsize: 70000\n", "4: dsize '70000': 70000 is more than 65535"),
    ("ttl: 3<>4\n", "4: ttl '3<>4': lo<>hi excludes both ends, so hi must exceed lo by 2 or more"),
    ("ttl: '>255'\n", "4: ttl '>255' can never match"),
    ("ip_proto: [6]\n", "4: ip_proto must be a number or a string like '<10', '>10' or '5<>20', got a list"),
    ("bsize: 5\n", "4: bsize must be a mapping of sticky buffer: size (like {http.uri: '<100'}), got number 5"),
    ("bsize: {payload: 5}\n",
     "4: bsize buffer must be one of http.uri, http.uri.raw, http.method, http.user_agent, http.host, "
     "http.stat_code, dns.query, tls.sni, file_data, got 'payload'"),
    ("bsize: {dns.query: '<'}\n", "4: bsize dns.query must be n, <n, >n, <=n, >=n, !n or lo<>hi, got '<'"),
    ("urilen: 5,both\n", "4: urilen '5,both': after the comma comes norm (the default) or raw"),
    ("proto: udp\nurilen: 5\n", "5: urilen needs proto ip or tcp (proto is udp)"),
])
def test_bad_values_are_problems_at_their_line(tmp_path, body, problem):
    assert rule_problem(tmp_path, body) == [problem]


RULES = """\
rules:
  - {id: 1, action: alert, proto: udp, content: [{value: q}, {value: zzzzzzzz, not: true}]}
  - {id: 2, action: alert, proto: udp, content: [{value: k}, {value: kx, fast_pattern: true, distance: 0}]}
  - {id: 3, action: alert, proto: udp, content: [{pcre: '/^[0-9]{3}$/'}]}
  - {id: 4, action: alert, proto: udp, dsize: '>=6', ttl: 64, ip_proto: udp}
"""


def alerts_for(tmp_path, payloads, ttl=64):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    insp = Inspector(load_rules(path))
    out = {}
    for i, payload in enumerate(payloads):
        wire = raw(IP(src="10.0.0.1", dst="10.0.0.2", ttl=ttl) / UDP(sport=20000 + i, dport=9999) / payload)
        out[payload] = {r.id for r in insp.process(decode_l3(wire, ts=1.0 + i)).alerts}
    return out


def test_negated_content_is_never_the_prefilter_literal(tmp_path):
    # rule 1's longest content is negated: were it the prefilter literal, "q" alone would never alert
    assert alerts_for(tmp_path, [b"q", b"q zzzzzzzz"]) == {b"q": {1}, b"q zzzzzzzz": {4}}   # 4: dsize only


def test_fast_pattern_content_and_relative_match(tmp_path):
    assert alerts_for(tmp_path, [b"k kx", b"kx", b"xk"]) == {b"k kx": {2}, b"kx": set(), b"xk": set()}


def test_pcre_without_a_literal_is_inspected(tmp_path):
    assert alerts_for(tmp_path, [b"123", b"1234"]) == {b"123": {3}, b"1234": set()}


def test_dsize_ttl_ip_proto_keys(tmp_path):
    assert alerts_for(tmp_path, [b"abcdef", b"abcde"]) == {b"abcdef": {4}, b"abcde": set()}
    assert alerts_for(tmp_path, [b"abcdef"], ttl=63) == {b"abcdef": set()}


def test_ip_proto_names_and_numbers_give_the_same_rule(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("rules:\n  - {id: 1, action: alert, ip_proto: gre}\n  - {id: 2, action: alert, ip_proto: 47}\n"
                 "  - {id: 3, action: alert, ip_proto: '!udp'}\n")
    a, b, c = load_rules(p).rules
    assert a.ip_proto.matches(47) and b.ip_proto.matches(47) and not a.ip_proto.matches(6)
    assert c.ip_proto.matches(6) and not c.ip_proto.matches(17)
