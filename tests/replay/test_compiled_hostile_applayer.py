"""rvcompiled: compiled twins == pure reference on hostile app-layer values (huge HTTP
lengths and chunk sizes, maximal TLS lengths, DNS pointer games, IPv6) and on rule sets
past 64/128/1000 rules with app-field rules."""
import os
import struct
import sys

import pytest
from scapy.all import UDP, Raw

from replaykit import Capture, TcpConn, client_hello, dns_query, ip_of, l2, tls_records

sys.path.insert(0, os.path.dirname(__file__))
from test_compiled_equivalence import built, replay_both, assert_identical  # noqa: E402,F401

HUGE = [2**31, 2**32 + 1, 2**63 - 1, 2**63, 2**64, 2**64 + 7, 10**30]


def _http(cap, i, client, server, reqs, resp=b""):
    c = TcpConn(cap, client, 40000 + i, server, 80)
    c.handshake()
    for r in reqs:
        c.send(r)
    if resp:
        c.recv(resp)
    c.close()


def hostile_capture(path):
    cap = Capture()
    i = 0
    for v4 in (True, False):
        cl, sv = ("10.0.0.5", "198.51.100.7") if v4 else ("fd00::5", "2001:db8::7")
        for n in HUGE:
            i += 1
            _http(cap, i, cl, sv, [b"POST /a HTTP/1.1\r\nHost: h%d.example\r\nContent-Length: %d\r\n\r\nxyz" % (i, n)],
                  b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\nabc" % n)
            i += 1
            _http(cap, i, cl, sv, [b"POST /c HTTP/1.1\r\nHost: c%d.example\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\nab" % (i, n)],
                  b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x;ext=1\r\nxy" % n)
            i += 1
            _http(cap, i, cl, sv, [b"GET /r HTTP/1.1\r\nHost: r%d.example\r\nRange: bytes=%d-%d\r\n\r\n" % (i, n, n * 2)],
                  b"HTTP/1.1 206 Partial\r\nContent-Range: bytes %d-%d/%d\r\nContent-Length: -%d\r\n\r\n" % (n, n, n, n))
        for n in (0xFFFF, 0xFFFFFF, 0x4000 + 2048, 0x4000 + 2049):
            i += 1
            c = TcpConn(cap, cl, 41000 + i, sv, 443)
            c.handshake()
            hello = client_hello(f"t{i}.example")
            # a record length and a handshake length at the field's maximum
            c.send(b"\x16\x03\x01" + struct.pack("!H", min(n, 0xFFFF)) + b"\x01" + struct.pack("!I", n)[1:] + hello[4:])
            c.send(tls_records(hello, 7))
            c.close()
        for q in (dns_query([f"d{j}.example" for j in range(3)]),
                  struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01",
                  struct.pack("!HHHHHH", 1, 0x8180, 1, 65535, 65535, 65535) + b"\x01a\x00\x00\x01\x00\x01" + b"\xc0\x0c" * 50,
                  struct.pack("!HHHHHH", 2, 0x0100, 65535, 0, 0, 0) + b"\x3f" + b"a" * 63 + b"\x00\x00\xff\x00\xff"):
            i += 1
            cap.add(l2(ip_of(cl, sv) / UDP(sport=20000 + i, dport=53) / Raw(q)))
    return cap.write(path)


def rules_past(n, path):
    """n rules: header-only, content, nocase content with big depth, tls_sni, http_host, dns_query."""
    out = ["default_action: pass", "rules:"]
    kinds = [
        "{{id: {i}, msg: m{i}, action: alert, proto: tcp, dst_port: {p}}}",
        "{{id: {i}, msg: m{i}, action: alert, content: {{value: 'h{k}.exa', nocase: true, depth: {d}}}}}",
        "{{id: {i}, msg: m{i}, action: alert, tls_sni: t{k}.example}}",
        "{{id: {i}, msg: m{i}, action: alert, http_host: c{k}.example}}",
        "{{id: {i}, msg: m{i}, action: alert, dns_query: d{k}.example}}",
        "{{id: {i}, msg: m{i}, action: drop, proto: udp, dst_port: {p}, content: {{value: aaaa, offset: {o}}}}}",
    ]
    for j in range(n):
        i = 10_000 + j
        out.append("  - " + kinds[j % len(kinds)].format(i=i, k=j % 40, p=(j * 7919) % 65536,
                                                          d=[2**63, 10**30, 64][j % 3], o=[0, 2**63, 10**20][j % 3]))
    path.write_text("\n".join(out) + "\n")
    return path


@pytest.mark.parametrize("nrules", [63, 64, 65, 128, 129, 1000])
def test_hostile_applayer_and_many_rules(tmp_path, nrules):
    cap = hostile_capture(tmp_path / "hostile.pcap")
    rules = rules_past(nrules, tmp_path / "r.yaml")
    pure, compiled = replay_both(tmp_path, [cap], "--rules", rules, "--max-flows", "50")
    assert pure[0] == 0, pure[3][-2000:]
    assert pure[1].count(b"\n") > 50
    assert_identical(pure, compiled)
