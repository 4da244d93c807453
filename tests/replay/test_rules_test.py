"""`appliance rules test`: the shipped tests pass; a failing case prints expected vs got; a
malformed test file is FILE:LINE; a pcap case runs as a described one does."""
from scapy.all import IP, UDP, Raw

import pathlib

from replaykit import REPO, Capture, TcpConn, cli, dns_query, l2

LAB_RULES = "rules/lab/lab.yaml"


def test_shipped_rule_tests_pass():
    r = cli("rules", "test", "rules/tests")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "lab.test.yaml" in r.stdout and "0 failed" in r.stderr
    # every example rule file and the lab's have a test
    tested = " ".join(p.read_text() for p in (REPO / "rules/tests").glob("*.yaml"))
    for f in [*(REPO / "rules/examples").glob("*.yaml"), pathlib.Path("lab/lab.yaml")]:
        assert f"../{f.parent.name}/{f.name}" in tested, f


def test_failing_case_prints_a_diff(tmp_path):
    t = tmp_path / "wrong.test.yaml"
    t.write_text(f"rules: {(REPO / LAB_RULES)}\n"
                 "packets:\n"
                 "  - dns: {src: 10.10.2.10, dst: 192.0.2.53, query: x.bad.example}\n"
                 "    verdict: pass\n"
                 "  - http: {src: 10.10.2.10, dst: 192.0.2.80, host: ok.example.net, user_agent: curl/8.0}\n"
                 "expect:\n"
                 "  alerts: {1000001: 1}\n"
                 "  flows:\n"
                 "    - {dest_port: 8443, action: drop}\n")
    r = cli("rules", "test", t)
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout
    assert f"FAIL  {t}" in out
    assert "alerts (sid: expected -> got):" in out
    assert "    1000001: 1 -> 0" in out
    assert "    1000003: 0 -> 1  (not expected)" in out
    assert "    1000010: 0 -> 1  (not expected)" in out
    assert (f"  {t}:3: flow src_ip=10.10.2.10 src_port=40001 dest_ip=192.0.2.53 dest_port=53 proto=UDP: "
            "expected pass, got drop") in out
    assert f"  {t}:9: flow dest_port=8443: expected drop, got no such flow" in out
    assert "0 passed, 1 failed" in r.stderr


def test_malformed_test_files_are_file_line(tmp_path):
    d = tmp_path / "cases"
    d.mkdir()
    (d / "a.test.yaml").write_text("rules: nowhere.yaml\n"
                                   "packets:\n"
                                   "  - dns: {src: 10.0.0.1, dst: not-an-ip}\n"
                                   "  - smtp: {dport: 25}\n"
                                   "  - tcp: {dport: 99999}\n"
                                   "    verdict: block\n"
                                   "expect:\n"
                                   "  alerts: {x: 1}\n"
                                   "  flow: []\n")
    (d / "b.test.yaml").write_text("rules: [\n")
    (d / "c.test.yaml").write_text(f"rules: {tmp_path / 'broken.yaml'}\npackets:\n  - dns: {{query: a.b}}\nexpect: {{}}\n")
    (tmp_path / "broken.yaml").write_text("rules:\n  - {id: 1, action: explode}\n")
    r = cli("rules", "test", d)
    assert r.returncode == 1
    a, out = d / "a.test.yaml", r.stdout
    for line, msg in ((3, "dns.dst: 'not-an-ip' is not an IP address"), (3, "dns needs query"),
                      (4, "a packets item is one of tcp, udp, dns, http, tls"),
                      (5, "tcp.dport must be a port from 1 to 65535, got number 99999"), (6, "verdict must be one of pass, drop, reject"),
                      (1, "rules: no such file or directory 'nowhere.yaml'"),
                      (8, "expect.alerts: 'x': 1 is not sid: count"),
                      (9, "unknown key 'expect.flow' (did you mean 'flows'?)")):
        assert f"  {a}:{line}: {msg}" in out, (line, msg, out)
    assert f"{d / 'b.test.yaml'}:" in out
    assert f"ERROR {d / 'c.test.yaml'}: the rules do not load" in out and f"{tmp_path / 'broken.yaml'}:2:" in out
    assert "0 passed, 3 failed" in r.stderr
    assert "Traceback" not in r.stderr


def test_pcap_case_and_monitor_mode(tmp_path):
    """A case directory: test.yaml beside its capture; the same traffic as a described case."""
    case = tmp_path / "dns-case"
    case.mkdir()
    cap = Capture()
    cap.add(l2(IP(src="10.10.2.10", dst="192.0.2.53") / UDP(sport=5353, dport=53) / Raw(dns_query(["a.bad.example"]))))
    TcpConn(cap, "192.0.2.7", 40023, "10.10.2.10", 23).handshake()
    cap.write(case / "capture.pcap")
    rules = REPO / LAB_RULES
    (case / "test.yaml").write_text(f"rules: {rules}\npcap: capture.pcap\nexpect:\n"
                                    "  alerts: {1000003: 1, 1000004: 1}\n"
                                    "  flows:\n    - {dest_port: 53, action: drop}\n"
                                    "    - {dest_port: 23, proto: tcp, action: reject}\n")
    r = cli("rules", "test", tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    (case / "test.yaml").write_text((case / "test.yaml").read_text().replace("pcap:", "mode: monitor\npcap:"))
    r = cli("rules", "test", case / "test.yaml")
    assert r.returncode == 1
    assert "dest_port=53: expected drop, got pass" in r.stdout and "dest_port=23 proto=TCP: expected reject, got pass" \
        in r.stdout, r.stdout


def test_a_dns_query_names_a_dot_inside_a_label(tmp_path):
    # the query's text as the rules and the log write a name: "good\.example" is the one
    # label good.example (a top-level name), which an allow rule for good.example or any name
    # under example does not pass (split at every '.', it was the labels "good\", "example")
    (tmp_path / "allow.yaml").write_text(
        "default_action: drop\nrules:\n  - {id: 1, action: pass, proto: udp, dns_query: [good.example, '*.example']}\n")
    t = tmp_path / "dot.test.yaml"
    t.write_text("rules: allow.yaml\n"
                 "packets:\n"
                 "  - dns: {query: good.example}\n"
                 "    verdict: pass\n"
                 "  - dns: {query: 'good\\.example'}\n"
                 "    verdict: drop\n"
                 "  - dns: {query: 'good\\x2eexample.'}\n"
                 "    verdict: drop\n"
                 "expect: {}\n")
    r = cli("rules", "test", t)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_rule_test_names_labels_as_the_log_writes_them():
    from appliance.applayer.dns import dns_label
    from appliance.ruletest.packets import dns_labels
    for text, labels in [("x.bad.example", [b"x", b"bad", b"example"]), ("example.", [b"example"]),
                         ("good\\.example", [b"good.example"]), ("a\\x5c.b", [b"a\\", b"b"]),
                         ("\\x00a.b", [b"\x00a", b"b"]), ("b\u00fccher.de", [b"xn--bcher-kva", b"de"])]:
        assert dns_labels(text) == labels, text
        if text.isascii():                     # and back: the log's text of those labels
            assert ".".join(dns_label(x) for x in labels) == text.rstrip("."), text


def test_a_dns_query_no_server_would_read_as_written_is_file_line(tmp_path):
    # an empty label, a label over 63 bytes, text IDNA cannot encode or turns into a dot:
    # FILE:LINE errors, not a traceback nor a packet other than the one written (review s7)
    (tmp_path / "r.yaml").write_text("rules:\n  - {id: 1, action: alert, proto: udp, dns_query: a.example}\n")
    t = tmp_path / "bad.test.yaml"
    long = "x" * 64
    t.write_text("rules: r.yaml\n"
                 "packets:\n"
                 "  - dns: {query: a..example}\n"
                 f"  - dns: {{query: {long}.example}}\n"
                 f"  - dns: {{query: {'y' * 256}}}\n"
                 "  - dns: {query: \"good\\u3002example\"}\n"
                 "  - dns: {query: \"\\x80.example\"}\n"
                 "expect: {}\n")
    r = cli("rules", "test", t)
    assert r.returncode == 1 and "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    out = r.stdout + r.stderr
    for line, what in [(3, "an empty label"), (4, "a label of 64 bytes"), (5, "a label of 256 bytes"),
                       (6, "IDNA separates labels at"), (7, "not IDNA-encodable")]:
        assert f"{t}:{line}: dns.query:" in out and what in out, (line, what, out)
