"""The YAML rule language: parsing into Rule values and FILE:LINE problems."""
import re
import textwrap

import pytest

from appliance.detect.loader import check, load_rules
from appliance.detect.rule import (DEFAULT_HOME_NET, AddrSet, Content, NamePattern, PortSet, RuleError, TcpFlags,
                                   Threshold)


def write(tmp_path, text, name="rules.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).lstrip("\n"))
    return p


def problems(tmp_path, text, name="rules.yaml"):
    p = write(tmp_path, text, name)
    return check(p), str(p)


def one_problem(tmp_path, text):
    """The single problem of a file, split into (line, message)."""
    found, path = problems(tmp_path, text)
    assert len(found) == 1, found
    m = re.fullmatch(re.escape(path) + r":(\d+): (.*)", found[0])
    assert m, found[0]
    return int(m.group(1)), m.group(2)


FULL = """
vars:
  HOME_NET: [10.0.0.0/8, "2001:db8::/32"]
  WEB_PORTS: [80, 443, "8000-8099"]
default_action: drop
rules:
  - id: 1001
    msg: "allow web to servers"
    action: pass
    proto: tcp
    src: any
    src_port: "!22"
    dst: $HOME_NET
    dst_port: $WEB_PORTS
    direction: inbound
    flow: [established, to_server]
    tcp_flags: "SA+"
    content: ["uid=0(root)", {hex: "|41 42|43", nocase: yes, offset: 2, depth: 10}]
    regex: "(?i)^GET /admin"
    http_host: ["Example.com.", "*.example.org"]
    threshold: {type: both, track: by_dst, count: 5, seconds: 60}
    log: yes
    severity: 2
    classtype: "policy-violation"
    metadata: {policy: [x, y]}
  - id: 7
    action: alert
    proto: icmp
    icmp_type: 8
    icmp_code: 0
"""


def test_every_key_parsed_into_rule_values(tmp_path):
    rs = load_rules(write(tmp_path, FULL))
    assert rs.default_action == "drop"
    r, icmp = rs.rules
    assert (r.id, r.msg, r.action, r.proto, r.direction) == (1001, "allow web to servers", "pass", "tcp", "inbound")
    assert r.src is None
    assert r.src_port == PortSet(((22, 22),), negated=True)
    assert r.dst == AddrSet((__import__("ipaddress").ip_network("10.0.0.0/8"),
                             __import__("ipaddress").ip_network("2001:db8::/32")))
    assert r.dst_port == PortSet(((80, 80), (443, 443), (8000, 8099)))
    assert r.flow == frozenset({"established", "to_server"})
    assert r.tcp_flags == TcpFlags(required=0x12, exact=False)
    assert r.content == (Content(b"uid=0(root)"), Content(b"ABC", nocase=True, offset=2, depth=10))
    assert r.regex.pattern == b"(?i)^GET /admin" and r.regex.search(b"get /admin/x")
    assert r.http_host == (NamePattern("example.com"), NamePattern("example.org", wildcard=True))
    assert r.threshold == Threshold("both", "by_dst", 5, 60)
    assert (r.log, r.severity, r.classtype, r.metadata) == (True, 2, "policy-violation", {"policy": ["x", "y"]})
    assert (r.line, r.order) == (6, 0) and r.file.endswith("rules.yaml")
    assert (icmp.icmp_type, icmp.icmp_code, icmp.msg, icmp.severity, icmp.order) == (8, 0, "", 3, 1)
    assert rs.vars["WEB_PORTS"] == ["80", "443", "8000-8099"]


def test_defaults_home_net_and_external_net(tmp_path):
    p = write(tmp_path, """
        rules:
          - {id: 1, action: alert, src: $EXTERNAL_NET, dst: $HOME_NET}
    """)
    rs = load_rules(p)
    r = rs.rules[0]
    assert rs.default_action == "pass"
    assert rs.vars["HOME_NET"] == list(DEFAULT_HOME_NET)
    for inside in ("10.1.2.3", "172.31.0.1", "192.168.9.9", "fd00::1"):
        assert r.dst.contains(inside) and not r.src.contains(inside)
    for outside in ("8.8.8.8", "172.32.0.1", "2001:db8::1"):
        assert r.src.contains(outside) and not r.dst.contains(outside)
    # the caller's home_net wins over the default and over the files
    r = load_rules(p, home_net=["198.51.100.0/24"]).rules[0]
    assert r.dst.contains("198.51.100.7") and not r.dst.contains("10.0.0.1")
    assert r.src.contains("10.0.0.1")


def test_home_net_argument_overrides_file(tmp_path):
    p = write(tmp_path, """
        vars: {HOME_NET: [10.0.0.0/8]}
        rules: [{id: 1, action: alert, dst: $HOME_NET}]
    """)
    r = load_rules(p, home_net=["192.0.2.0/24"]).rules[0]
    assert r.dst.contains("192.0.2.1") and not r.dst.contains("10.0.0.1")
    assert check(p, home_net=["192.0.2.300"]) == ["<home_net>:1: variable HOME_NET: '192.0.2.300' "
                                                  "is not an address, CIDR or port"]


def test_home_net_resolved_once_for_the_rule_set(tmp_path):
    import ipaddress
    net = ipaddress.ip_network
    p = write(tmp_path, """
        vars:
          HOME_NET: ["$CORP", 10.0.0.0/8, "!10.0.0.0/9"]
          CORP: [192.0.2.0/24]
        rules: [{id: 1, action: alert}]
    """)
    rs = load_rules(p)
    # a $VAR inside HOME_NET counts (it used to be skipped: a SYN from CORP had direction any)
    assert rs.home_net == AddrSet((net("10.128.0.0/9"), net("192.0.2.0/24")))
    assert rs.home_net.contains("192.0.2.5") and rs.home_net.contains("10.200.0.1")
    assert not rs.home_net.contains("10.1.0.1") and not rs.home_net.contains("8.8.8.8")
    # the caller's home_net wins over the files' HOME_NET, and may name their variables
    assert load_rules(p, home_net=["198.51.100.0/24"]).home_net == AddrSet((net("198.51.100.0/24"),))
    assert load_rules(p, home_net=["$CORP"]).home_net == AddrSet((net("192.0.2.0/24"),))
    # a negated HOME_NET stays negated: inside is everything but CORP
    write(tmp_path, 'vars: {HOME_NET: "!$CORP", CORP: [192.0.2.0/24]}\n')
    home = load_rules(p).home_net
    assert home == AddrSet((net("192.0.2.0/24"),), negated=True)
    assert home.contains("8.8.8.8") and not home.contains("192.0.2.5")
    # no HOME_NET anywhere: private address space, as $HOME_NET in rules
    write(tmp_path, "rules: []\n")
    home = load_rules(p).home_net
    assert home == AddrSet(tuple(net(n) for n in DEFAULT_HOME_NET))
    assert home.contains("172.16.0.1") and home.contains("fd00::1") and not home.contains("8.8.8.8")


def test_negation_semantics(tmp_path):
    rs = load_rules(write(tmp_path, """
        vars:
          INNER: [10.0.0.0/8, "!10.1.0.0/16"]
          NOT_INNER: "!$INNER"
        rules:
          - {id: 1, action: alert, src: [10.0.0.0/8, "!10.1.0.0/16"], dst: $NOT_INNER}
          - {id: 2, action: alert, src: ["!10.0.0.0/8", "!192.168.0.0/16"], dst: "![10.0.0.0/8, 192.0.2.1]"}
          - {id: 3, action: alert, proto: tcp, src_port: ["1000-2000", "!1500"], dst_port: ["!80", "!443"]}
          - {id: 4, action: alert, proto: udp, src_port: "![53, 123]", src: 10.1.2.3/8}
    """))
    r1, r2, r3, r4 = rs.rules
    assert r1.src.contains("10.2.0.1") and not r1.src.contains("10.1.0.1") and not r1.src.contains("11.0.0.1")
    assert r1.dst.contains("10.1.0.1") and r1.dst.contains("11.0.0.1") and not r1.dst.contains("10.2.0.1")
    assert r2.src.contains("8.8.8.8") and not r2.src.contains("10.0.0.1") and not r2.src.contains("192.168.1.1")
    assert r2.dst.contains("192.0.2.2") and not r2.dst.contains("192.0.2.1") and not r2.dst.contains("10.9.9.9")
    assert r3.src_port.contains(1000) and r3.src_port.contains(2000)
    assert not r3.src_port.contains(1500) and not r3.src_port.contains(999)
    assert r3.dst_port.contains(8080) and not r3.dst_port.contains(80) and not r3.dst_port.contains(443)
    assert not r4.src_port.contains(53) and r4.src_port.contains(54)
    # host bits are cleared (strict=False): 10.1.2.3/8 means 10.0.0.0/8
    assert r4.src.networks == (__import__("ipaddress").ip_network("10.0.0.0/8"),)


def test_any_and_whole_range_collapse_to_none(tmp_path):
    rs = load_rules(write(tmp_path, """
        rules:
          - {id: 1, action: alert, proto: tcp, src: [0.0.0.0/0, "::/0"], dst_port: "0-65535", src_port: [any]}
    """))
    r = rs.rules[0]
    assert (r.src, r.dst_port, r.src_port) == (None, None, None)


def test_content_hex_forms(tmp_path):
    rs = load_rules(write(tmp_path, """
        rules:
          - id: 1
            action: alert
            content:
              - {hex: "|de ad BE ef|"}
              - {hex: "41 42|43"}
              - {hex: "0d0a"}
              - {value: "a|b"}
    """))
    assert [c.value for c in rs.rules[0].content] == [b"\xde\xad\xbe\xef", b"ABC", b"\r\n", b"a|b"]


def test_yes_no_booleans(tmp_path):
    rs = load_rules(write(tmp_path, """
        rules:
          - {id: 1, action: drop, log: yes, content: {value: x, nocase: on}}
          - {id: 2, action: drop, log: no, content: {value: y, nocase: off}}
    """))
    assert [(r.log, r.content[0].nocase) for r in rs.rules] == [(True, True), (False, False)]
    # a name written as yes/no is not a name
    line, msg = one_problem(tmp_path, """
        rules:
          - id: 1
            action: alert
            dns_query: [example.com, no]
    """)
    assert line == 4 and msg.startswith("dns_query: expected a name, got boolean false (YAML reads unquoted yes/no")


def test_tcp_flags_forms(tmp_path):
    rs = load_rules(write(tmp_path, """
        rules:
          - {id: 1, action: alert, proto: tcp, tcp_flags: "S"}
          - {id: 2, action: alert, proto: tcp, tcp_flags: "S,CE"}
          - {id: 3, action: alert, proto: tcp, tcp_flags: "0"}
    """))
    syn, syn_ecn, null = (r.tcp_flags for r in rs.rules)
    assert syn.matches(0x02) and not syn.matches(0x12) and not syn.matches(0x42)
    assert syn_ecn.matches(0x02) and syn_ecn.matches(0x02 | 0x40 | 0x80) and not syn_ecn.matches(0x12)
    assert null.matches(0) and not null.matches(0x01)


def test_directory_loads_in_lexical_order_and_shares_ids(tmp_path):
    write(tmp_path, "rules: [{id: 20, action: drop}]\n", "b.yaml")
    write(tmp_path, "rules: [{id: 10, action: pass}, {id: 11, action: alert}]\n", "a.yml")
    write(tmp_path, "rules: [{id: 99, action: drop}]\n", "ignored.txt")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "rules: [{id: 98, action: drop}]\n", "c.yaml")
    rs = load_rules(tmp_path)
    assert [(r.id, r.order) for r in rs.rules] == [(10, 0), (11, 1), (20, 2)]
    assert [p.rsplit("/", 1)[1] for p in rs.sources] == ["a.yml", "b.yaml"]
    write(tmp_path, "rules: [{id: 11, action: drop}]\n", "c.yaml")
    assert check(tmp_path) == [f"{tmp_path}/c.yaml:1: duplicate id 11 (first used at {tmp_path}/a.yml:1)"]


def test_vars_merge_and_conflicts(tmp_path):
    a = write(tmp_path, "vars: {DNS: [10.0.0.2], SAME: [80]}\ndefault_action: drop\n", "a.yaml")
    b = write(tmp_path, "vars:\n  SAME: [80]\n  DNS: [10.0.0.3]\ndefault_action: pass\n"
                        "rules: [{id: 1, action: alert, dst: $DNS}]\n", "b.yaml")
    assert check([a, b]) == [
        f"{b}:3: variable DNS redefined with a different value (first defined at {a}:1)",
        f"{b}:4: default_action 'pass' conflicts with 'drop' set at {a}:2",
    ]
    b.write_text("vars: {SAME: [80]}\ndefault_action: drop\nrules: [{id: 1, action: alert, dst: $DNS}]\n")
    rs = load_rules([a, b])
    assert rs.default_action == "drop" and rs.rules[0].dst.contains("10.0.0.2")


def test_many_problems_reported_together_in_line_order(tmp_path):
    found, path = problems(tmp_path, """
        vars:
          A: $B
          B: [$A]
        rules:
          - id: abc
            action: drp
            dst_prot: 80
          - id: 2
            action: alert
            proto: icmp
            dst_port: 80
            src: 10.0.0.300
            dst: $HOM_NET
            regex: "(unclosed"
            tcp_flags: S
          - id: 3
            action: alert
            proto: tcp
            src_port: 70000
            dst_port: "90-80"
            icmp_type: 8
            direction: inbund
            flow: [established, nope]
            content: ""
            tls_sni: ["bad name.com", "a..b"]
            threshold: {type: limit, track: by_source, count: 0}
            severity: 5
            metadata: {x: 1}
          - just a string
        severity: 1
    """)
    want = [
        (2, "variable cycle: $A -> $B -> $A"),
        (5, "id must be a positive integer, got 'abc'"),
        (6, "action must be one of pass, drop, reject, alert, got 'drp' (did you mean 'drop'?)"),
        (7, "unknown key 'dst_prot' (did you mean 'dst_port'?)"),
        (11, "dst_port needs proto tcp or udp (proto is icmp)"),
        (12, "src: '10.0.0.300' is not an IP address or CIDR"),
        (13, "dst: unknown variable $HOM_NET (did you mean $HOME_NET?)"),
        (14, "bad regex '(unclosed': missing ), unterminated subpattern at position 0"),
        (15, "tcp_flags needs proto tcp (proto is icmp)"),
        (19, "src_port: port 70000 is out of range 0-65535"),
        (20, "dst_port: port range '90-80' is reversed (low > high)"),
        (21, "icmp_type needs proto icmp or icmpv6 (proto is tcp)"),
        (22, "direction must be one of any, inbound, outbound, got 'inbund' (did you mean 'inbound'?)"),
        (23, "flow must be one of established, not_established, to_server, to_client, got 'nope'"),
        (24, "content is empty"),
        (25, "tls_sni: 'bad name.com' contains whitespace"),
        (25, "tls_sni: 'a..b' has an empty label"),
        (26, "threshold needs seconds"),
        (26, "threshold track must be one of by_src, by_dst, by_flow, by_rule, got 'by_source' "
             "(did you mean 'by_src'?)"),
        (26, "threshold count must be a positive integer, got number 0"),
        (27, "severity must be an integer 1 (high) to 4 (low), got number 5"),
        (28, "metadata x must be a list of strings (quote numbers and yes/no), got number 1"),
        (29, "a rule must be a mapping (id: ..., action: ...), got 'just a string'"),
        (30, "unknown key 'severity'"),
    ]
    assert found == [f"{path}:{line}: {msg}" for line, msg in want]
    with pytest.raises(RuleError) as e:
        load_rules(path)
    assert e.value.problems == found


def test_problems_on_one_line_come_in_keyword_order(tmp_path):
    # flow-style rules put every key on one line: the order of reading is all that orders them
    found, path = problems(tmp_path, """
        rules:
          - {id: 1, msg: 5, action: drp, proto: udp, dns_query: "a b", tls_sni: y.com, severity: 9}
          - {id: 2, action: drop, threshold: {type: limit, track: by_src, count: 0, seconds: 1}, log: 3, severity: 9}
    """)
    want = [
        (2, "action must be one of pass, drop, reject, alert, got 'drp' (did you mean 'drop'?)"),
        (2, "msg must be a string, got number 5"),
        (2, "a rule can use only one of dns_query, tls_sni, http_host (a flow carries one protocol); "
            "this one has dns_query, tls_sni"),
        (2, "dns_query: 'a b' contains whitespace"),
        (2, "tls_sni needs proto ip or tcp (proto is udp)"),
        (2, "severity must be an integer 1 (high) to 4 (low), got number 9"),
        (3, "threshold count must be a positive integer, got number 0"),
        (3, "log must be true or false, got number 3"),
        (3, "severity must be an integer 1 (high) to 4 (low), got number 9"),
    ]
    assert found == [f"{path}:{line}: {msg}" for line, msg in want]


@pytest.mark.parametrize("text, line, msg", [
    ("rules:\n  - id: 1\n    msg: x\n", 2, "rule has no action (pass, drop, reject, alert)"),
    ("rules:\n  - action: drop\n", 2, "rule has no id (a unique positive integer)"),
    ("rules:\n  - {id: 1, action: alert, content: {hex: 4142}}\n", 2,
     "hex must be a quoted string of hex digits, got number 4142 (unquoted digits are read as a number)"),
    ("rules:\n  - id: 1\n    action: alert\n    content: {hex: 'zz'}\n", 4,
     "hex 'zz' has characters other than hex digits, spaces and |"),
    ("rules:\n  - id: 1\n    action: alert\n    content: {hex: '414'}\n", 4, "hex '414' has an odd number of digits"),
    ("rules:\n  - id: 1\n    action: alert\n    content:\n      value: abc\n      depth: 2\n", 6,
     "depth 2 is shorter than the content (3 bytes): it can never match"),
    ("rules:\n  - id: 1\n    action: alert\n    content:\n      value: abc\n      depth: 0\n", 6,
     "depth must be an integer > 0, got number 0"),
    ("rules:\n  - id: 1\n    action: alert\n    content: {value: a, hex: '41'}\n", 4,
     "content needs exactly one of value, hex, pcre or isdataat"),
    ("rules:\n  - id: 1\n    action: alert\n    content: {valu: a}\n", 4, "unknown content key 'valu' (did you mean 'value'?)"),
    ("rules:\n  - id: 1\n    action: alert\n    proto: tcp\n    dst_port: [80, 1:2]\n", 5,
     "dst_port: '1:2' is read by YAML as the base-60 number 62; write a port range as \"1-2\""),
    ("rules:\n  - id: 1\n    action: alert\n    proto: tcp\n    dst_port: '80:90'\n", 5,
     "dst_port: '80:90' is not a port; write a range as \"a-b\""),
    ("rules:\n  - id: 1\n    action: alert\n    dst: 2001\n", 4,
     "dst: expected an address, CIDR, list or $VAR, got number 2001 (quote IPv6 addresses)"),
    ("rules:\n  - id: 1\n    action: alert\n    dst: '!any'\n", 4, "dst matches no address"),
    ("rules:\n  - id: 1\n    action: alert\n    src:\n      - 10.0.0.0/8\n      - '!10.0.0.300'\n", 6,
     "src: '10.0.0.300' is not an IP address or CIDR"),
    ("rules:\n  - id: 1\n    action: alert\n    src: 'fe80::1%eth0'\n", 4,
     "src: 'fe80::1%eth0': an address with a scope (%zone) never appears in a packet; leave the scope out"),
    ("rules:\n  - id: 1\n    action: alert\n    dst_port: 80\n", 4,
     "dst_port needs proto tcp or udp (proto defaults to ip)"),
    ("rules:\n  - id: 1\n    action: alert\n    proto: tpc\n", 4,
     "proto must be one of ip, tcp, udp, icmp, icmpv6, got 'tpc' (did you mean 'tcp'?)"),
    ("rules:\n  - id: 1\n    action: alert\n    proto: tcp\n    tcp_flags: 'SX'\n", 5,
     "tcp_flags 'SX': 'X' is not a flag; use letters from FSRPAUEC"),
    ("rules:\n  - id: 1\n    action: alert\n    proto: tcp\n    tcp_flags: 'S*'\n", 5,
     "tcp_flags 'S*': only exact (\"SA\") and at-least (\"SA+\") are supported"),
    ("rules:\n  - id: 1\n    action: alert\n    flow: [to_server, to_client]\n", 4,
     "flow cannot be both to_server and to_client"),
    ("rules:\n  - id: 1\n    action: alert\n    dns_query: x.com\n    tls_sni: y.com\n", 5,
     "a rule can use only one of dns_query, tls_sni, http_host (a flow carries one protocol); "
     "this one has dns_query, tls_sni"),
    ("rules:\n  - id: 1\n    action: alert\n    proto: udp\n    tls_sni: y.com\n", 5,
     "tls_sni needs proto ip or tcp (proto is udp)"),
    ("rules:\n  - id: 1\n    action: alert\n    http_host: ['*.']\n", 4, "http_host: '*.' is empty"),
    ("rules:\n  - id: 1\n    action: alert\n    http_host: ['a.*.com']\n", 4,
     "http_host: 'a.*.com': a wildcard is only allowed as a leading \"*.\""),
    ("rules:\n  - id: 1\n    action: pass\n    threshold: {type: limit, track: by_src, count: 1, seconds: 9}\n", 4,
     "threshold limits alerts: a pass rule needs log: true for it to apply"),
    ("rules:\n  - id: 1\n    action: drop\n    log: false\n    threshold: {type: limit, track: by_src, count: 1, seconds: 9}\n",
     5, "threshold limits alerts: a drop rule with log: false emits none"),
    ("rules:\n  - id: 1\n    action: alert\n    log: true\n", 4,
     "log applies to pass/drop/reject rules (alert rules always emit alerts)"),
    ("rules:\n  - id: 1\n    action: no\n", 3,
     "action must be one of pass, drop, reject, alert, got boolean false (YAML reads unquoted "
     "yes/no/on/off/true/false as booleans: quote it)"),
    ("rules:\n  - id: true\n    action: drop\n", 2, "id must be a positive integer, got boolean true "
     "(YAML reads unquoted yes/no/on/off/true/false as booleans: quote it)"),
    ("rules:\n  - id: 1\n    action: alert\n    msg: 5\n", 4, "msg must be a string, got number 5"),
    ("rules:\n  - id: 1\n    action: alert\n    regex: ''\n", 4, "regex must be a non-empty string, got ''"),
    ("default_action: alert\n", 1,
     "default_action must be one of pass, drop, reject, got 'alert'"),
    ("vars:\n  WEB: [80]\nrules:\n  - id: 1\n    action: alert\n    dst: $WEB\n", 6,
     "dst: $WEB holds ports (defined at {path}:2), expected addresses"),
    ("vars:\n  X: [10.0.0.0/8, 80]\n", 2, "variable X mixes addresses and ports"),
    ("vars:\n  X: [10.0.0.0/8,\n     nonsense]\n", 3, "variable X: 'nonsense' is not an address, CIDR or port"),
    ("vars:\n  X: [$NOPE]\n", 2, "unknown variable $NOPE"),
    ("vars:\n  HOME_NET: [80]\n", 2, "variable HOME_NET must hold addresses, not ports"),
    # HOME_NET is resolved for directions even when no rule names it
    ("vars:\n  HOME_NET: [[]]\n", 2, "$HOME_NET: empty list"),
    ("rules:\n  - id: 1\n    action: alert\n    src: '[10.0.0.0/8'\n", 4, "src: unbalanced brackets in '[10.0.0.0/8'"),
    ("rules: {id: 1}\n", 1, "rules must be a list, got a mapping"),
    ("- id: 1\n", 1, "a rule file must be a mapping with vars/default_action/rules, got a list"),
    ("rules:\n  - id: 1\n   action: drop\n", 3, "expected <block end>, but found '<block mapping start>'"),
])
def test_each_problem_has_its_line(tmp_path, text, line, msg):
    p = write(tmp_path, text)
    assert check(p) == [f"{p}:{line}: {msg.format(path=p)}"]


def test_check_never_raises_on_bad_paths(tmp_path):
    missing = tmp_path / "nope.yaml"
    assert check(missing) == [f"{missing}:1: no such file or directory"]
    (tmp_path / "empty").mkdir()
    assert check(tmp_path / "empty") == [f"{tmp_path}/empty:1: no rule files (*.yaml, *.yml, *.rules) in this directory"]
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00rules")
    [msg] = check(binary)
    assert msg.startswith(f"{binary}:1: cannot read:")
    empty = write(tmp_path, "", "e.yaml")
    assert check(empty) == [] and load_rules(empty).rules == []


# ---- properties: list semantics against a brute-force reading, and check() never raising

from hypothesis import given, settings, strategies as st  # noqa: E402

port_item = st.tuples(st.booleans(), st.integers(0, 300), st.integers(0, 40))
addr_item = st.tuples(st.booleans(), st.integers(0, 255), st.integers(24, 32))


def _expected(items, member):
    pos = [x for neg, x in items if not neg]
    neg = [x for neg, x in items if neg]
    return (not pos or any(member(x) for x in pos)) and not any(member(x) for x in neg)


@settings(max_examples=60, deadline=None)
@given(st.lists(port_item, min_size=1, max_size=5), st.booleans())
def test_port_list_semantics(tmp_path_factory, items, negate_all):
    specs = [(neg, (lo, lo + width)) for neg, lo, width in items]
    yaml_items = ", ".join(f'"{"!" if neg else ""}{lo}-{hi}"' for neg, (lo, hi) in specs)
    text = f"vars: {{P: [{yaml_items}]}}\nrules: [{{id: 1, action: alert, proto: tcp, " \
           f"dst_port: \"{'!' if negate_all else ''}$P\"}}]\n"
    p = tmp_path_factory.mktemp("p") / "r.yaml"
    p.write_text(text)
    found = check(p)
    ps = None if found else load_rules(p).rules[0].dst_port
    for port in range(0, 345):
        want = _expected(specs, lambda r: r[0] <= port <= r[1]) != negate_all
        if found:                          # only "matches no port" is a legitimate refusal
            assert found == [f"{p}:2: dst_port matches no port"] and not want
            continue
        assert (True if ps is None else ps.contains(port)) == want, (text, port)


@settings(max_examples=60, deadline=None)
@given(st.lists(addr_item, min_size=1, max_size=5))
def test_address_list_semantics(tmp_path_factory, items):
    import ipaddress
    nets = [(neg, ipaddress.ip_network(f"10.0.0.{host}/{plen}", strict=False)) for neg, host, plen in items]
    yaml_items = ", ".join(f'"{"!" if neg else ""}{n}"' for neg, n in nets)
    p = tmp_path_factory.mktemp("a") / "r.yaml"
    p.write_text(f"rules: [{{id: 1, action: alert, src: [{yaml_items}]}}]\n")
    found = check(p)
    s = None if found else load_rules(p).rules[0].src
    for host in list(range(256)) + ["10.0.1.1"]:
        ip = f"10.0.0.{host}" if isinstance(host, int) else host
        want = _expected(nets, lambda n: ipaddress.ip_address(ip) in n)
        if found:
            assert found == [f"{p}:1: src matches no address"] and not want
            continue
        assert (True if s is None else s.contains(ip)) == want


yaml_leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.text(max_size=12),
                      st.sampled_from(["any", "!any", "$HOME_NET", "$NOPE", "[1,", "1-2", "S+", "*.", "10.0.0.0/8"]))
yaml_value = st.recursive(yaml_leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(
    st.sampled_from(["value", "hex", "type", "track", "count", "seconds", "x"]), c, max_size=3), max_leaves=6)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from((
    "id", "action", "proto", "src", "dst", "src_port", "dst_port", "flow", "tcp_flags", "icmp_type",
    "content", "regex", "dns_query", "threshold", "log", "metadata", "bogus")), yaml_value, max_size=8),
    yaml_value)
def test_check_never_raises(tmp_path_factory, rule, var):
    import yaml
    p = tmp_path_factory.mktemp("f") / "r.yaml"
    p.write_text(yaml.safe_dump({"vars": {"V": var}, "default_action": "pass", "rules": [rule]}))
    found = check(p)
    assert all(line.startswith(f"{p}:") for line in found)
    if found:
        with pytest.raises(RuleError):
            load_rules(p)


def test_yaml_alias_bomb_in_vars_is_refused_by_rules_check(tmp_path):
    """Nine aliases of nine aliases, nine deep: ~600 bytes that a tree walk sees as 9^9
    values. `rules check` must refuse it at a line instead of expanding it (it ran > 60 s)."""
    import subprocess
    import sys
    lines = ["vars:", "  A0: &a0 [" + ", ".join(f'"10.0.0.{i}"' for i in range(1, 10)) + "]"]
    lines += [f"  A{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    lines += ["default_action: pass", "rules: []"]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    out = subprocess.run([sys.executable, "-m", "appliance", "rules", "check", str(bomb)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 1, out
    assert re.fullmatch(re.escape(str(bomb)) + r":\d+: aliases expand to more than [\d,]+ values \(an alias bomb\?\)\n",
                        out.stdout), out


def test_a_few_aliases_still_load(tmp_path):
    found, _ = problems(tmp_path, """
        vars:
          WEB: &web [80, 443]
          MORE: [*web, 8080]
        default_action: pass
        rules:
          - {id: 1, action: pass, proto: tcp, dst_port: $MORE}
        """)
    assert found == []
