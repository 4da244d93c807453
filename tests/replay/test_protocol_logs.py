"""EVE protocol logs (dns, tls, http): one event per transaction, whatever the rules,
valid against Suricata's EVE schema; `eve_types` chooses the event types."""
import hashlib
import struct
from pathlib import Path

import pytest
from scapy.all import IP, UDP, Raw

from replaykit import (Capture, TcpConn, cli, client_hello, dns_query, l2, schema_errors,
                       tls_records)

C, S, R = "10.0.0.1", "93.184.216.34", "10.0.0.53"
EMPTY = "default_action: pass\nrules: []\n"
NO_PROTOCOL_LOGS = ("alert", "anomaly", "flow", "stats")
CORPUS = Path("/work/shared/corpus")


def dns_response(query, answers):
    """`query` answered: each answer (rrtype, rdata bytes) names the question (pointer 0x0c)."""
    hdr = bytearray(query[:12])
    hdr[2:4] = struct.pack("!H", 0x8180)
    hdr[6:8] = struct.pack("!H", len(answers))
    out = bytes(hdr) + query[12:]
    for rtype, rdata in answers:
        out += b"\xc0\x0c" + struct.pack("!HHIH", rtype, 1, 300, len(rdata)) + rdata
    return out


def traffic():
    """Two DNS queries (one answered) on one UDP flow, a TLS handshake, and an HTTP
    keep-alive connection whose third request comes past the inspection depth."""
    cap = Capture()
    q1, q2 = dns_query(["www.example.com"], qid=1), dns_query(["late.example"], qid=2, qtype=28)
    cap.add(l2(IP(src=C, dst=R) / UDP(sport=5000, dport=53) / Raw(q1)))
    cap.add(l2(IP(src=R, dst=C) / UDP(sport=53, dport=5000) /
               Raw(dns_response(q1, [(5, b"\xc0\x0c"), (1, bytes((93, 184, 216, 34)))]))))
    cap.add(l2(IP(src=C, dst=R) / UDP(sport=5000, dport=53) / Raw(q2)))
    t = TcpConn(cap, C, 40000, S, 443)
    t.handshake()
    t.send(tls_records(client_hello("tls.example")))
    h = TcpConn(cap, C, 40001, S, 80)
    h.handshake()
    for i, host in enumerate(("a.example", "b.example")):
        h.send(b"GET /%d HTTP/1.1\r\nHost: %s\r\nUser-Agent: t/1\r\n\r\n" % (i, host.encode()))
        h.recv(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    for _ in range(10):                   # past the 16-packet depth
        h.recv(b"x")
    h.send(b"POST /late HTTP/1.1\r\nHost: c.example\r\nContent-Length: 0\r\n\r\n")
    h.close()
    return cap


def test_empty_rule_set_still_logs_every_transaction(run, rules_file, eve_validator):
    r = run(traffic(), rules_file(EMPTY))
    assert schema_errors(eve_validator, r.events) == []
    dns = [e["dns"] for e in r.of("dns")]
    assert [(d["type"], d["id"], [q["rrname"] for q in d["queries"]]) for d in dns] == [
        ("request", 1, ["www.example.com"]), ("response", 1, ["www.example.com"]),
        ("request", 2, ["late.example"])]
    assert dns[2]["queries"][0]["rrtype"] == "AAAA"
    assert dns[1]["rcode"] == "NOERROR" and dns[1]["answers"] == [
        {"rrname": "www.example.com", "rrtype": "CNAME", "ttl": 300, "rdata": "www.example.com"},
        {"rrname": "www.example.com", "rrtype": "A", "ttl": 300, "rdata": "93.184.216.34"}]
    [tls] = r.of("tls")
    assert tls["tls"]["sni"] == "tls.example" and tls["tls"]["version"] == "TLS 1.2"
    assert tls["dest_port"] == 443 and tls["app_proto"] == "tls"
    http = [e["http"] for e in r.of("http")]
    assert [(h["hostname"], h["url"], h["http_method"], h["protocol"]) for h in http] == [
        ("a.example", "/0", "GET", "HTTP/1.1"), ("b.example", "/1", "GET", "HTTP/1.1"),
        ("c.example", "/late", "POST", "HTTP/1.1")]
    assert http[0]["http_user_agent"] == "t/1" and "http_user_agent" not in http[2]
    assert r.of("alert") == []


def test_eve_types_choose_the_events_and_off_lets_flows_go(run, rules_file):
    r = run(traffic(), rules_file(EMPTY), eve_types=NO_PROTOCOL_LOGS)
    assert {e["event_type"] for e in r.events} == {"flow", "stats"}
    # without protocol logs nothing keeps the passed HTTP flow inspected: its late request is not read
    assert r.insp.counters.fast_path > 0
    r = run(traffic(), rules_file(EMPTY), eve_types=("http",))
    assert {e["event_type"] for e in r.events} == {"http"}
    assert len(r.of("http")) == 3


def ja3_hello():
    """A ClientHello with GREASE in every JA3 list: version 0x0303, ciphers GREASE,0x1301,
    0xc02b; extensions GREASE, server_name, supported_groups (GREASE, x25519, secp256r1),
    ec_point_formats (uncompressed)."""
    name = b"ja3.example"
    exts = struct.pack("!HH", 0x0a0a, 0)
    exts += struct.pack("!HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    exts += struct.pack("!HHH", 10, 8, 6) + struct.pack("!HHH", 0x1a1a, 29, 23)
    exts += struct.pack("!HHBB", 11, 2, 1, 0)
    body = (b"\x03\x03" + b"\x11" * 32 + b"\x00" + struct.pack("!HHHH", 6, 0x2a2a, 0x1301, 0xc02b)
            + b"\x01\x00" + struct.pack("!H", len(exts)) + exts)
    return b"\x01" + struct.pack("!I", len(body))[1:] + body


def test_tls_event_carries_ja3(run, rules_file, eve_validator):
    cap = Capture()
    t = TcpConn(cap, C, 40000, S, 443)
    t.handshake()
    t.send(tls_records(ja3_hello(), record_size=40))      # split over records: the parser still sees it all
    r = run(cap, rules_file(EMPTY))
    assert schema_errors(eve_validator, r.events) == []
    [tls] = r.of("tls")
    want = "771,4865-49195,0-10-11,29-23,0"                 # GREASE values left out, as JA3 says
    assert tls["tls"]["ja3"] == {"string": want, "hash": hashlib.md5(want.encode()).hexdigest()}


def test_replay_cli_eve_types(tmp_path, rules_file):
    pcap = traffic().write(tmp_path / "t.pcap")
    rules = rules_file(EMPTY)
    eve = tmp_path / "eve.json"
    p = cli("replay", pcap, "--rules", rules, "--eve", eve, "--eve-types", "dns,tls", "--quiet")
    assert p.returncode == 0, p.stderr
    import json
    types = [json.loads(line)["event_type"] for line in eve.read_text().splitlines()]
    assert sorted(set(types)) == ["dns", "tls"] and types.count("dns") == 3
    p = cli("replay", pcap, "--rules", rules, "--eve-types", "dns,htp")
    assert p.returncode == 2 and "unknown event type(s) htp" in p.stderr


CORPUS_CAPTURES = [
    "suricata-verify/tests/issues/issue-4759.1/tcpdns.pcap",
    "zeek/testing/btest/Traces/dns53.pcap",
    "zeek/testing/btest/Traces/http/get.pcap",
    "zeek/testing/btest/Traces/tls/chrome-34-google.pcap",
    "dpkt/examples/data/http.pcap",
    "local/http-get.pcapng",
]


@pytest.mark.parametrize("name", CORPUS_CAPTURES)
def test_corpus_protocol_logs_are_valid(run, rules_file, eve_validator, name):
    path = CORPUS / name
    if not path.is_file():
        pytest.skip(f"{path} absent")
    r = run(path, rules_file(EMPTY))
    logs = r.of("dns") + r.of("tls") + r.of("http")
    assert logs, "every one of these captures carries DNS, TLS or HTTP"
    assert schema_errors(eve_validator, r.events) == []
    assert r.insp.counters.internal_errors == 0
