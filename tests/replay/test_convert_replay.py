"""A policy converted by `appliance rules convert` acts on traffic as its source does: the
AWS Network Firewall domain denylist gives the verdicts AWS documents for it, and a converted
.rules file gives the same events as the .rules file itself."""
import json

from scapy.all import IP, UDP

from replaykit import REPO, Capture, TcpConn, cli, client_hello, dns_query, l2, tls_records

DENYLIST = REPO / "tests/data/aws_nfw/domain-denylist.json"     # .denied-corp.example, evil.example; HOME_NET 10.0.0.0/16


def tls(cap, client, port, sni):
    c = TcpConn(cap, client, port, "203.0.113.5", 443)
    c.handshake()
    c.send(tls_records(client_hello(sni)))
    c.recv(b"\x16\x03\x03\x00\x04\x02\x00\x00\x00")
    c.send(b"\x14\x03\x03\x00\x01\x01" + b"\x17\x03\x03\x00\x05hello")


def http(cap, client, port, host):
    c = TcpConn(cap, client, port, "203.0.113.6", 80)
    c.handshake()
    c.send(f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: t\r\n\r\n".encode())
    c.recv(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


# (kind, client, client port, name, AWS's verdict). AWS: ".denied-corp.example" is the domain
# and every subdomain, "evil.example" only itself; TLS by SNI, HTTP by Host; only traffic from
# HOME_NET (RuleVariables) is inspected; a domain list does not look at DNS.
CASES = [
    ("tls", "10.0.0.1", 41001, "evil.example", "drop"),
    ("tls", "10.0.0.1", 41002, "www.evil.example", "pass"),
    ("tls", "10.0.0.1", 41003, "denied-corp.example", "drop"),
    ("tls", "10.0.0.1", 41004, "a.b.DENIED-CORP.example", "drop"),
    ("tls", "10.0.0.1", 41005, "notdenied-corp.example", "pass"),
    ("tls", "10.0.0.1", 41006, "good.example", "pass"),
    ("tls", "10.9.0.1", 41007, "evil.example", "pass"),            # outside HOME_NET 10.0.0.0/16
    ("http", "10.0.0.2", 42001, "evil.example", "drop"),
    ("http", "10.0.0.2", 42002, "x.denied-corp.example", "drop"),
    ("http", "10.0.0.2", 42003, "good.example", "pass"),
    ("http", "10.0.0.2", 42004, "denied-corp.example.good.example", "pass"),
]


def test_aws_domain_denylist_gives_the_documented_verdicts(tmp_path, run):
    out = tmp_path / "denylist.yaml"
    p = cli("rules", "convert", "--from", "aws-nfw", DENYLIST, "-o", out)
    assert p.returncode == 0, p.stderr
    cap = Capture()
    for kind, client, port, name, _ in CASES:
        (tls if kind == "tls" else http)(cap, client, port, name)
    cap.add(l2(IP(src="10.0.0.3", dst="198.51.100.53") / UDP(sport=43001, dport=53) / dns_query(["evil.example"])))
    res = run(cap, str(out))
    for kind, client, port, name, verdict in CASES:
        assert (name, res.flow_action(src_port=port)) == (name, verdict)
    assert res.flow_action(src_port=43001) == "pass"
    blocked = {e["src_port"] for e in res.alerts() if e["alert"]["action"] == "blocked"}
    assert blocked == {port for _, _, port, _, v in CASES if v == "drop"}      # "why was I blocked?"


ALLOWLIST = REPO / "tests/data/aws_nfw/domain-allowlist.json"   # .allowed-corp.example, good.example; HOME_NET 10.0.0.0/16
ALLOW_CASES = [
    ("tls", "10.0.0.1", 41101, "good.example", "pass"),
    ("tls", "10.0.0.1", 41102, "www.good.example", "drop"),            # good.example is that name only
    ("tls", "10.0.0.1", 41103, "allowed-corp.example", "pass"),
    ("tls", "10.0.0.1", 41104, "x.Allowed-Corp.example", "pass"),
    ("tls", "10.0.0.1", 41105, "other.example", "drop"),
    ("tls", "10.9.0.1", 41106, "other.example", "pass"),               # outside HOME_NET
    ("http", "10.0.0.2", 42101, "good.example", "pass"),
    ("http", "10.0.0.2", 42102, "other.example", "drop"),
    ("http", "10.0.0.2", 42103, "a.allowed-corp.example", "pass"),
]


def test_aws_domain_allowlist_gives_the_documented_verdicts(tmp_path, run):
    """AWS: an allowlist passes TLS/HTTP requests to the listed names and drops every other
    TLS/HTTP request from HOME_NET; other protocols (here SSH, DNS) are not its business."""
    out = tmp_path / "allowlist.yaml"
    p = cli("rules", "convert", "--from", "aws-nfw", ALLOWLIST, "-o", out)
    assert p.returncode == 0, p.stderr
    cap = Capture()
    for kind, client, port, name, _ in ALLOW_CASES:
        (tls if kind == "tls" else http)(cap, client, port, name)
    ssh = TcpConn(cap, "10.0.0.4", 44001, "203.0.113.9", 22)
    ssh.handshake()
    ssh.send(b"SSH-2.0-OpenSSH_9.2\r\n")
    ssh.recv(b"SSH-2.0-OpenSSH_9.2\r\n")
    cap.add(l2(IP(src="10.0.0.3", dst="198.51.100.53") / UDP(sport=43001, dport=53) / dns_query(["other.example"])))
    res = run(cap, str(out))
    for kind, client, port, name, verdict in ALLOW_CASES:
        assert (name, res.flow_action(src_port=port)) == (name, verdict)
    assert res.flow_action(src_port=44001) == "pass" and res.flow_action(src_port=43001) == "pass"


def test_converted_rules_file_gives_the_same_events(tmp_path, run):
    src = tmp_path / "policy.rules"
    src.write_text(
        'alert dns $HOME_NET any -> any any (msg:"lookup"; dns.query; content:"evil.example"; nocase; startswith; '
        'endswith; classtype:bad-unknown; sid:1; rev:4; reference:url,example.org/evil;)\n'
        'drop tls $HOME_NET any -> $EXTERNAL_NET 443 (msg:"sni"; flow:established,to_server; tls.sni; dotprefix; '
        'content:".evil.example"; nocase; endswith; sid:2; rev:2; gid:3;)\n'
        'pass tls $HOME_NET any -> $EXTERNAL_NET 443 (msg:"ok"; flow:established,to_server; tls.sni; '
        'content:".evil.example"; nocase; endswith; sid:3;)\n'
        'alert http $HOME_NET any -> $EXTERNAL_NET $HTTP_PORTS (msg:"host"; flow:established,to_server; '
        'http.host; content:"evil.example"; startswith; endswith; sid:4;)\n')
    out = tmp_path / "policy.yaml"
    p = cli("rules", "convert", src, "-o", out)
    assert p.returncode == 0, p.stderr
    cap = Capture()
    tls(cap, "10.0.0.1", 41001, "evil.example")
    tls(cap, "10.0.0.1", 41002, "www.evil.example")     # pass (sid 3) comes before drop (sid 2): action order
    http(cap, "10.0.0.2", 42001, "evil.example")
    cap.add(l2(IP(src="10.0.0.3", dst="198.51.100.53") / UDP(sport=43001, dport=53) / dns_query(["evil.example"])))
    a, b = run(cap, str(src)), run(cap, str(out))
    assert a.flow_action(src_port=41001) == "drop" and a.flow_action(src_port=41002) == "pass"

    def strip(events):
        return [json.dumps({k: v for k, v in e.items() if k != "pcap_filename"} | (
            {"alert": {**e["alert"], "metadata": {k: v for k, v in e["alert"]["metadata"].items() if k != "rule_source"}}}
            if "alert" in e else {}), sort_keys=True) for e in events if e["event_type"] != "stats"]
    assert strip(a.events) == strip(b.events)
    assert sorted(a.sids()) == [1, 2, 4]
    assert {e["alert"]["signature_id"]: (e["alert"]["rev"], e["alert"]["gid"]) for e in b.alerts()} == \
        {1: (4, 1), 2: (2, 3), 4: (1, 1)}
