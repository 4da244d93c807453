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
     "{id: 5, action: alert, proto: tcp, content: x, threshold: {type: limit, track: by_src, count: 2, seconds: 60}}"),
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
    ('alert tcp any any -> any any (content:"x"; fast_pattern; sid:5;)', "{id: 5, action: alert, proto: tcp, content: x}"),
    # a deciding rule describes the connection: to_server as written, to_client swapped
    ("drop tcp $HOME_NET any -> 192.0.2.0/24 25 (flow:to_server; sid:5;)",
     "{id: 5, action: drop, log: true, proto: tcp, src: $HOME_NET, dst: 192.0.2.0/24, dst_port: 25, flow: to_server, hold: false}"),
    ('drop tcp $EXTERNAL_NET 80 -> $HOME_NET any (flow:established,from_server; content:"MZ"; sid:5;)',
     "{id: 5, action: drop, log: true, proto: tcp, src: $HOME_NET, dst: $EXTERNAL_NET, dst_port: 80, "
     "flow: [established, to_client], content: MZ, hold: false}"),
    ("alert tcp $EXTERNAL_NET 80 -> $HOME_NET any (flow:from_server; sid:5;)",     # alerts: per packet
     "{id: 5, action: alert, proto: tcp, src: $EXTERNAL_NET, src_port: 80, dst: $HOME_NET, flow: to_client}"),
    ("pass ip any any -> any any (sid:5;)", "{id: 5, action: pass}"),
    # flow state (docs/rules.md "Flow state")
    ('alert tcp any any -> any any (content:"a"; flowbits:set,x; flowbits:isset,y|z; flowbits:noalert; sid:5;)',
     "{id: 5, action: alert, proto: tcp, content: a, flowbits: [{set: x}, {isset: 'y|z'}], noalert: true}"),
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
     "{id: 5, action: alert, proto: tcp, content: a, bypass: true}"),
    ("drop tcp any any -> any 23 (flow:to_server; noalert; sid:5;)",        # a silent drop
     "{id: 5, action: drop, log: false, proto: tcp, dst_port: 23, flow: to_server, hold: false}"),
    ("alert tcp any any -> any any (flow:stateless; sid:5;)", "{id: 5, action: alert, proto: tcp}"),
    ('alert tcp any any -> any any (flow:no_stream,to_server; content:"a"; sid:5;)',
     "{id: 5, action: alert, proto: tcp, flow: to_server, content: a}"),
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
    ('alert tcp any any -> any any (content:"a"; distance:0; sid:1;)', "unsupported keyword 'distance'"),
    ('alert tcp any any -> any any (content:!"a"; sid:1;)',
     "unsupported keyword 'content:!' (a negated content has no YAML equivalent yet)"),
    ('alert dns any any -> any any (dns.query; content:"evil"; nocase; sid:1;)',
     "unsupported keyword 'dns.query' (content 'evil' is a substring match; only a whole name (startswith; "
     "endswith; or bsize) or \".suffix\" with endswith maps onto the YAML name keys)"),
    ('alert tls any any -> any any (tls.sni; content:"a.example"; startswith; endswith; sid:1;)',
     "unsupported keyword 'tls.sni' (a case-sensitive content: names here compare case-insensitively; add nocase)"),
    ('alert dns any any -> any any (sid:1;)',
     "unsupported keyword 'dns' (an app-layer protocol without a name condition (dns.query, tls.sni, "
     "http.host) has no YAML equivalent yet)"),
    ("alert tcp any any -> any any (flow:only_stream; sid:1;)",
     "unsupported keyword 'flow:only_stream' (content on the reassembled stream only: content here is "
     "matched on each packet (a match split across segments is not seen), so the rule would match other bytes)"),
    ("alert tcp any any -> any any (flowbits:sett,x; sid:1;)",
     "flowbits 'sett,x': expected noalert or one of set, unset, toggle, isset, isnotset and a name"),
    ("alert tcp any any -> any any (flowbits:set,a|b; sid:1;)",
     "flowbits set 'a|b': | (any of) applies to isset/isnotset"),
    ("alert tcp any any -> any any (flowint:n,*,2; sid:1;)",
     "flowint 'n,*,2': expected name, op (=, +, -, ==, !=, <, <=, >, >=), value or name, isset|notset"),
    ("alert tcp any any -> any any (detection_filter:track by_both, count 1, seconds 1; sid:1;)",
     "detection_filter track must be one of by_src, by_dst, by_flow, by_rule, got 'by_both' (did you mean 'by_dst'?)"),
    ("alert tcp any any -> any any (target:both; sid:1;)", "target must be one of src_ip, dest_ip, got 'both'"),
    ("alert tcp any any -> any any (content:\"a\"; startswith; sid:1;)",
     "unsupported keyword 'startswith' (on the packet payload)"),
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
        alert tcp any any -> any any (content:"a"; distance:0; within:4; sid:1;)
        drop tcp any any -> any 23 (flow:to_server; sid:2;)
        alert tcp any any -> any any (content:"b"; distance:1; sid:3;)
    """, skip_unsupported=True)
    assert [r.id for r in rs.rules] == [2]
    p = tmp_path / "x.rules"
    assert skip_report(rs) == [
        f"{p}:1: skipped sid 1: unsupported keyword 'distance'; unsupported keyword 'within'",
        f"{p}:3: skipped sid 3: unsupported keyword 'distance'",
        "1 rules loaded, 2 skipped; unsupported keywords: distance (2), within (1)",
    ]


def test_skip_unsupported_still_fails_on_errors(tmp_path):
    p = tmp_path / "x.rules"
    p.write_text("alert tcp any any -> any any (content:\"a; sid:1;)\n")
    assert check(p, skip_unsupported=True) == [f"{p}:1: unterminated quoted string in the options"]


def test_fixture_loaded_and_skipped():
    assert len(check(FIXTURE)) == 15                      # problems by default
    rs = load_rules(FIXTURE, skip_unsupported=True)
    assert (len(rs.rules), len(rs.skipped)) == (32, 12)


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
