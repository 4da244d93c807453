"""Red-team review (tls): names a server acts on that the rules did not see.

- Empty change_cipher_spec records before the ClientHello: OpenSSL 3 skips up to 32 of
  them (counted with empty handshake records) and serves the hello's SNI (checked against
  `openssl s_server -servername`); the appliance read "not TLS" and a tls_sni blocklist
  passed, offloaded.
- A converted Suricata rule whose content is '*.good.example' (a literal: contents have no
  wildcards) became a YAML wildcard name, so a pass rule passed every subdomain.
- DNS over TCP on 5353/5355 after a junk first frame (a DNS server reads on) was not read.
"""
import struct

import pytest

from replaykit import Capture, TcpConn, client_hello, dns_query, tls_records
from test_http_name_evasion import _feed, feed   # noqa: F401  (feed: a fixture)

C, S = "10.0.0.1", "10.0.0.80"
BLOCK = "rules:\n  - {id: 1, action: drop, proto: tcp, tls_sni: evil.example}\n"
CCS0 = b"\x14\x03\x03\x00\x00"                   # a change_cipher_spec record with no body


def hello_after(prefix, sni="evil.example", port=443, sport=40000, split=None):
    cap = Capture()
    c = TcpConn(cap, C, sport, S, port)
    c.handshake()
    data = prefix + tls_records(client_hello(sni))
    if split:
        c.send(data[:split])
        data = data[split:]
    c.send(data)
    c.recv(b"\x16\x03\x03\x00\x04\x02\x00\x00\x00")
    c.send(b"\x17\x03\x03\x00\x05hello")
    return cap


@pytest.mark.parametrize("count", [1, 5, 32])
def test_empty_change_cipher_spec_records_before_the_hello_do_not_hide_the_sni(count, feed):
    verdicts, _ = feed(hello_after(CCS0 * count), BLOCK)
    assert verdicts[3].action == "drop", verdicts
    assert not any(v.offload and v.action == "pass" for v in verdicts)


def test_more_empty_records_than_openssl_takes_is_a_cap(feed):
    verdicts, found = feed(hello_after(CCS0 * 33), BLOCK)
    assert "exception.cap" in found, (verdicts, found)
    assert not any(v.offload and v.action == "pass" for v in verdicts)


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_an_empty_change_cipher_spec_inside_the_handshake_header_is_skipped(cut, feed):
    # OpenSSL 3 skips it there too and acts on the SNI (review s10: with exception_policy
    # ignore, the cap it was read as passed the flow)
    hello = tls_records(client_hello("evil.example"))
    verdicts, found = feed(_cut_record(hello, cut), BLOCK)
    assert "exception.cap" not in found, found
    assert any(v.action == "drop" for v in verdicts), verdicts


def _cut_record(hello, cut):
    """The hello's one record split in two records after `cut` bytes of the handshake
    header, with an empty change_cipher_spec record between them."""
    msg = hello[5:]
    two = (b"\x16\x03\x01" + struct.pack("!H", cut) + msg[:cut] + CCS0
           + b"\x16\x03\x01" + struct.pack("!H", len(msg) - cut) + msg[cut:])
    cap = Capture()
    c = TcpConn(cap, C, 40000, S, 443)
    c.handshake()
    c.send(two)
    return cap


@pytest.mark.parametrize("sport", [53, 5353, 5355])
def test_a_client_port_of_dns_does_not_make_tls_dns(sport, feed):
    # a client picks its own port (review s10): 2 bytes first, the rest later
    verdicts, _ = feed(hello_after(b"", sport=sport, split=2), BLOCK)
    assert any(v.action == "drop" for v in verdicts), verdicts
    assert not any(v.offload and v.action == "pass" for v in verdicts)


def test_a_change_cipher_spec_with_a_body_first_is_no_tls(feed):
    # OpenSSL refuses it: the stream is not TLS, and a blocklist has nothing to say
    verdicts, found = feed(hello_after(b"\x14\x03\x03\x00\x01\x01"), BLOCK)
    assert all(v.action == "pass" for v in verdicts)


def test_the_hello_without_a_prefix_is_dropped_as_before(feed):
    verdicts, _ = feed(hello_after(b""), BLOCK)
    assert verdicts[3].action == "drop"


def converted(tmp_path, content):
    """A Suricata pass rule with this tls.sni content, and a drop rule for every other TLS flow."""
    rules = tmp_path / "x.rules"
    rules.write_text(
        f'pass tls any any -> any any (tls.sni; content:"{content}"; nocase; startswith; endswith; '
        'flow:to_server; sid:1;)\n'
        'drop tls any any -> any any (flow:to_server; sid:2;)\n')
    return str(rules)


def test_a_literal_star_in_a_suricata_name_content_is_no_wildcard(tmp_path):
    rules = converted(tmp_path, "*.good.example")
    sub, _ = _feed(hello_after(b"", sni="a.good.example"), rules)
    literal, _ = _feed(hello_after(b"", sni="*.good.example"), rules)
    assert sub[3].action == "drop", sub                       # Suricata drops it: sid 2
    assert literal[3].action == "pass", literal               # the literal name the content means


def test_a_name_content_with_spaces_around_it_is_no_name(tmp_path):
    verdicts, _ = _feed(hello_after(b"", sni="good.example"), converted(tmp_path, " good.example"))
    assert verdicts[3].action == "drop", verdicts             # Suricata's content keeps its space


def test_a_name_content_that_is_no_valid_name_stays_a_program(tmp_path):
    rules = tmp_path / "x.rules"
    rules.write_text('drop tls any any -> any any (tls.sni; content:"evil example"; nocase; startswith; endswith; '
                     'sid:1;)\n')
    verdicts, _ = _feed(hello_after(b"", sni="evil example"), str(rules))   # loads; matches the literal
    assert verdicts[3].action == "drop"


@pytest.mark.parametrize("port", [53, 5353, 5355])
def test_dns_over_tcp_on_a_dns_port_is_read_after_a_junk_frame(port, feed):
    cap = Capture()
    c = TcpConn(cap, C, 40000, S, port)
    c.handshake()
    junk = b"\x00\x03abc"
    query = dns_query(["evil.example"])
    c.send(junk + struct.pack("!H", len(query)) + query)
    verdicts, _ = feed(cap, "rules:\n  - {id: 1, action: drop, proto: tcp, dns_query: evil.example}\n")
    assert verdicts[-1].action == "drop", verdicts


def test_tls_to_a_dns_port_is_not_dns_from_its_first_two_bytes(feed):
    # a server of the attacker's on port 53 speaking TLS: "16 03" fits nothing yet
    verdicts, _ = feed(hello_after(b"", port=53, split=2), BLOCK)
    assert any(v.action == "drop" for v in verdicts), verdicts
