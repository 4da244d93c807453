"""The server's answers in the protocol logs: DNS answers over TCP, the TLS ServerHello
(ja3s, the selected version), HTTP responses (status, length, content type), each logged
with its transaction; and JA4 against FoxIO's published example."""
import hashlib
import struct

from scapy.all import IP, TCP, Raw

from replaykit import Capture, TcpConn, client_hello, dns_query, l2, schema_errors, tls_records
from test_protocol_logs import C, S, EMPTY, dns_response

from appliance.applayer import tls


def http_conn(cap, port=40001):
    h = TcpConn(cap, C, port, S, 80)
    h.handshake()
    return h


def req(path, host="h.example", method=b"GET"):
    return b"%s /%s HTTP/1.1\r\nHost: %s\r\n\r\n" % (method, path.encode(), host.encode())


def test_http_responses_keepalive_and_pipelined(run, rules_file, eve_validator):
    cap = Capture()
    h = http_conn(cap)
    h.send(req("a"))
    h.recv(b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 5\r\n\r\nhello")
    # pipelined: three requests, then their answers in order (a HEAD whose Content-Length
    # frames no body, an interim 100 that answers nothing, a chunked body)
    h.send(req("b", method=b"HEAD") + req("c") + req("d"))
    h.recv(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    h.recv(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 3\r\n\r\nno!")
    h.recv(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
           b"4\r\nabcd\r\n")
    h.recv(b"2;x=y\r\nef\r\n0\r\n\r\n")
    h.close()
    r = run(cap, rules_file(EMPTY))
    assert schema_errors(eve_validator, r.events) == []
    got = [(e["http"]["url"], e["http"].get("status"), e["http"].get("length"),
            e["http"].get("http_content_type")) for e in r.of("http")]
    assert got == [("/a", 200, 5, "text/html"), ("/b", 200, 0, None), ("/c", 302, 3, None),
                   ("/d", 200, 23, "application/json")]
    # /d: chunked, counted as libhtp's response_message_len: size lines and the CRLF after each
    # chunk's data with the data ("4\r\n" abcd "\r\n" "2;x=y\r\n" ef "\r\n" "0\r\n" = 23), not the
    # trailer section's empty line
    # the content type up to its ';' and the Location as Suricata writes them
    assert [e["http"].get("redirect") for e in r.of("http")] == [None, None, "/elsewhere", None]
    # logged client -> server (Suricata's flow direction), on the packet that ended the answer
    assert {(e["src_ip"], e["dest_port"]) for e in r.of("http")} == {(C, 80)}


def test_http_body_until_close_and_unanswered_request(run, rules_file, eve_validator):
    cap = Capture()
    h = http_conn(cap)
    h.send(req("x"))
    h.recv(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nsome ")
    h.recv(b"bytes")
    h.close()                             # the server's FIN ends the body
    g = http_conn(cap, 40002)
    g.send(req("never"))                  # no answer before the capture ends
    r = run(cap, rules_file(EMPTY))
    assert schema_errors(eve_validator, r.events) == []
    by_url = {e["http"]["url"]: e["http"] for e in r.of("http")}
    assert by_url["/x"]["status"] == 200 and by_url["/x"]["length"] == 10
    assert "status" not in by_url["/never"]            # logged as the flow ends, with what is known


def test_http_status_on_the_transaction_for_rules():
    """`status` is on the HttpRequest (a later http.stat_code keyword reads it there)."""
    from appliance.applayer import http
    reader = http.ResponseReader()
    waiting = [http.HttpRequest("GET", "/", "HTTP/1.1", "h", None)]
    used, done, status = reader.feed(b"HTTP/1.1 302 Found\r\nLocation: /y\r\nContent-Length: 0\r\n\r\n",
                                     False, waiting)
    assert status is None and done[0].status == 302 and waiting == []


def test_http_response_reader_stops_on_garbage():
    from appliance.applayer import http
    waiting = [http.HttpRequest("GET", "/", "HTTP/1.1", "h", None)]
    used, done, status = http.ResponseReader().feed(b"SSH-2.0-x\r\n", False, waiting)
    assert status == "done" and done == []


def server_hello(version=b"\x03\x03", cipher=0x1301, exts=((43, b"\x03\x04"), (51, b"\x00" * 4)),
                 random=b"\x22" * 32):
    ext = b"".join(struct.pack("!HH", t, len(d)) + d for t, d in exts)
    body = version + random + b"\x00" + struct.pack("!H", cipher) + b"\x00" + struct.pack("!H", len(ext)) + ext
    return b"\x02" + struct.pack("!I", len(body))[1:] + body


def test_tls_server_hello_gives_ja3s_and_the_selected_version(run, rules_file, eve_validator):
    cap = Capture()
    t = TcpConn(cap, C, 40000, S, 443)
    t.handshake()
    t.send(tls_records(client_hello("tls.example")))
    t.recv(tls_records(server_hello(), record_size=20))    # the ServerHello over several records
    r = run(cap, rules_file(EMPTY))
    assert schema_errors(eve_validator, r.events) == []
    [e] = r.of("tls")
    tl = e["tls"]
    assert tl["sni"] == "tls.example" and tl["version"] == "TLS 1.3"     # supported_versions: 0x0304
    assert tl["ja3s"] == {"string": "771,4865,43-51", "hash": hashlib.md5(b"771,4865,43-51").hexdigest()}
    assert e["src_ip"] == C and e["dest_port"] == 443


def test_tls_without_server_hello_logged_at_flow_end(run, rules_file, eve_validator):
    cap = Capture()
    t = TcpConn(cap, C, 40000, S, 443)
    t.handshake()
    t.send(tls_records(client_hello("quiet.example")))
    r = run(cap, rules_file(EMPTY))
    [e] = r.of("tls")
    assert e["tls"]["sni"] == "quiet.example" and "ja3s" not in e["tls"] and e["tls"]["version"] == "TLS 1.2"
    assert schema_errors(eve_validator, r.events) == []


def test_dns_answers_over_tcp(run, rules_file, eve_validator):
    cap = Capture()
    d = TcpConn(cap, C, 40053, "10.0.0.53", 53)
    d.handshake()
    q1, q2 = dns_query(["one.example"], qid=7), dns_query(["two.example"], qid=8)
    d.send(struct.pack("!H", len(q1)) + q1 + struct.pack("!H", len(q2)) + q2)
    a1 = dns_response(q1, [(1, bytes((192, 0, 2, 1)))])
    a2 = dns_response(q2, [(28, bytes(15) + b"\x01")])
    framed = struct.pack("!H", len(a1)) + a1 + struct.pack("!H", len(a2)) + a2
    d.recv(framed[:7])                    # a length prefix and a message cut across segments
    d.recv(framed[7:])
    d.close()
    r = run(cap, rules_file(EMPTY))
    assert schema_errors(eve_validator, r.events) == []
    got = [(e["dns"]["type"], e["dns"]["id"], [a.get("rdata") for a in e["dns"].get("answers", [])])
           for e in r.of("dns")]
    assert got == [("request", 7, []), ("request", 8, []),
                   ("response", 7, ["192.0.2.1"]), ("response", 8, ["::1"])]
    assert r.of("dns")[2]["src_port"] == 53             # a response: its packet's direction
    resp = r.of("dns")[2]["dns"]                        # flags 8180: qr, rd, ra (Suricata writes the set ones)
    assert (resp["flags"], resp["qr"], resp["rd"], resp["ra"], resp["opcode"]) == ("8180", True, True, True, 0)
    assert "aa" not in resp and "tc" not in resp


def test_eve_types_off_still_offloads_answered_flows(run, rules_file):
    """Protocol logs off: no server side is read, the passed flow is offloaded as before."""
    cap = Capture()
    t = TcpConn(cap, C, 40000, S, 443)
    t.handshake()
    t.send(tls_records(client_hello("tls.example")))
    for _ in range(20):
        t.recv(b"\x17\x03\x03\x00\x01x")
    r = run(cap, rules_file(EMPTY), eve_types=("alert", "flow"))
    assert r.insp.counters.fast_path > 0


def test_ja4_matches_foxio_published_example():
    """JA4.md's example: its cipher list (any order, GREASE in), its extensions and
    signature algorithms give the published t13d1516h2_8daaf6152771_e5627efa2ab1."""
    ciphers = [0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014,
               0x009c, 0x009d, 0x002f, 0x0035]
    exts = [0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012,
            0x002b, 0xff01, 0x000b, 0x000a, 0x0015]
    sigs = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]
    h = tls.ClientHello("x.example", "TLS 1.3", legacy_version=0x0303, ciphers=[0x2a2a] + ciphers,
                        extensions=[0x0a0a] + exts, sig_algs=sigs, alpn_first=b"h2", offered_max=0x0304)
    assert h.ja4() == "t13d1516h2_8daaf6152771_e5627efa2ab1"
    h.sig_algs = []                       # no signature algorithms: no underscore (published 6d807ffa2a79)
    assert h.ja4() == "t13d1516h2_8daaf6152771_6d807ffa2a79"


def test_ja4_edges():
    h = tls.ClientHello(None, "TLS 1.2", legacy_version=0x0303, ciphers=[], extensions=[])
    assert h.ja4() == "t12i000000_000000000000_000000000000"
    for raw, want in ((b"http/1.1", "h1"), (b"\xab", "ab"), (b"\xab\xcd", "ad"), (b"0\xab", "3b"),
                      (b"01\xab\xcd", "3d"), (b"0\xab\xcd1", "01"), (b"x", "xx"), (b"", "00")):
        h.alpn_first = raw
        assert h.ja4().split("_")[0][-2:] == want, raw


def test_ja4_from_a_parsed_hello(run, rules_file, eve_validator):
    """The parser keeps what JA4 needs: signature algorithms, the first ALPN value as sent,
    the highest supported version."""
    name = b"j.example"
    exts = struct.pack("!HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    exts += struct.pack("!HHH", 16, 5, 3) + b"\x02h2"
    exts += struct.pack("!HHB", 43, 5, 4) + b"\x0a\x0a\x03\x04"
    exts += struct.pack("!HHH", 13, 6, 4) + b"\x04\x03\x08\x04"
    body = (b"\x03\x03" + b"\x11" * 32 + b"\x00" + struct.pack("!HHH", 4, 0x1301, 0x0a0a)
            + b"\x01\x00" + struct.pack("!H", len(exts)) + exts)
    msg = b"\x01" + struct.pack("!I", len(body))[1:] + body
    hello = tls.parse_client_hello(tls_records(msg))
    want_c = hashlib.sha256(b"000d,002b_0403,0804").hexdigest()[:12]
    assert hello.ja4() == "t13d0104h2_%s_%s" % (hashlib.sha256(b"1301").hexdigest()[:12], want_c)


def test_a_datagram_that_only_parses_as_dns_is_not_logged(run, rules_file, eve_validator):
    """A DHCP or NTP datagram may parse as a DNS query (a zero qtype, names of zero bytes):
    rules read it (against the attacker), the dns log does not take it (tshark decodes DHCP
    there; the corpus' Sofacy capture logged 32 empty "queries")."""
    from scapy.all import UDP as U
    cap = Capture()
    junk = struct.pack("!6H", 0x0101, 0x0600, 3, 0, 0, 0) + b"\x00\x00\x00\x00\x00" * 3
    cap.add(l2(IP(src="0.0.0.0", dst="255.255.255.255") / U(sport=68, dport=67) / Raw(junk)))
    real = dns_query(["ok.example"], qid=3)
    cap.add(l2(IP(src=C, dst=S) / U(sport=5000, dport=53) / Raw(real)))
    r = run(cap, rules_file(EMPTY))
    assert [e["dns"]["queries"][0]["rrname"] for e in r.of("dns")] == ["ok.example"]


def test_tls_hello_retry_then_the_real_server_hello(run, rules_file, eve_validator):
    """ClientHello, HelloRetryRequest, second ClientHello (it ends the client's reading),
    ServerHello: each hello is logged with its own answer; the second one waited for its
    ServerHello (it was logged without one before the fix)."""
    cap = Capture()
    t = TcpConn(cap, C, 40000, S, 443)
    t.handshake()
    t.send(tls_records(client_hello("retry.example")))
    t.recv(tls_records(server_hello(random=tls.HRR_RANDOM)) + b"\x14\x03\x03\x00\x01\x01")
    t.send(b"\x14\x03\x03\x00\x01\x01" + tls_records(client_hello("retry.example")))
    t.recv(tls_records(server_hello(exts=((43, b"\x03\x04"),))))
    t.send(b"\x17\x03\x03\x00\x05hello")
    r = run(cap, rules_file(EMPTY))
    assert schema_errors(eve_validator, r.events) == []
    assert [e["tls"]["ja3s"]["string"] for e in r.of("tls")] == ["771,4865,43-51", "771,4865,43"]


def test_http_bounds_depth_and_waiting(run, rules_file, eve_validator):
    """A body read to the close stops being followed at SERVER_DEPTH (1 MiB, Suricata's stream
    depth): logged there with the bytes counted; past MAX_WAITING unanswered requests the
    oldest are logged as they are (on the packet that made them too many); a CONNECT's 200
    is logged (the TLS in the tunnel ends the reading)."""
    from appliance.applayer.server import MAX_WAITING, SERVER_DEPTH
    cap = Capture()
    h = http_conn(cap)
    h.send(b"GET /big HTTP/1.0\r\nHost: h.example\r\n\r\n")
    head = b"HTTP/1.0 200 OK\r\n\r\n"
    h.recv(head)
    for _ in range(SERVER_DEPTH // 8000 + 2):
        h.recv(b"b" * 8000)
    g = http_conn(cap, 40002)
    many = g.send(b"".join(req("p%d" % i) for i in range(MAX_WAITING + 3)))
    g.close()                             # (the rest are logged as the flow ends, on later packets)
    k = http_conn(cap, 40003)
    k.send(b"CONNECT h.example:443 HTTP/1.1\r\nHost: h.example:443\r\n\r\n")
    k.recv(b"HTTP/1.1 200 Connection established\r\n\r\n" + b"\x16\x03\x03\x00\x01\x02")
    r = run(cap, rules_file(EMPTY))
    assert schema_errors(eve_validator, r.events) == []
    by_url = {e["http"]["url"]: e for e in r.of("http")}
    big = by_url["/big"]["http"]
    assert big["status"] == 200 and big["length"] == SERVER_DEPTH - len(head)
    # logged on the segment that reached the depth (handshake, request, head, then 8000-byte
    # segments), not at the flow's end
    assert by_url["/big"]["pcap_cnt"] == 5 + -(-(SERVER_DEPTH - len(head)) // 8000)
    assert len([u for u in by_url if u.startswith("/p")]) == MAX_WAITING + 3
    assert [by_url["/p%d" % i]["pcap_cnt"] == many for i in range(4)] == [True, True, True, False]
    assert by_url["h.example:443"]["http"]["status"] == 200


def _openssl_cert(tmp_path, subj):
    import subprocess
    key, pem, der = tmp_path / "k.pem", tmp_path / "c.pem", tmp_path / "c.der"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(pem), "-days", "1", "-subj", subj], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-in", str(pem), "-outform", "DER", "-out", str(der)], check=True)
    names = subprocess.run(["openssl", "x509", "-in", str(pem), "-noout", "-subject", "-issuer", "-nameopt",
                            "sep_comma_plus_space,sname,utf8"], check=True, capture_output=True, text=True).stdout
    got = dict(line.split("=", 1) for line in names.splitlines())
    return der.read_bytes(), got["subject"], got["issuer"]


def test_tls12_certificate_subject_and_issuer(run, rules_file, eve_validator, tmp_path):
    """TLS 1.2 sends the certificate in the clear: the first one's subject and issuer, as
    openssl prints them, go on the tls event; a resumed session (ChangeCipherSpec right after
    the ServerHello) has none and is logged at it."""
    der, subject, issuer = _openssl_cert(tmp_path, "/C=NL/O=Example B.V./OU=Ops/CN=cert.example")
    chain = struct.pack("!I", len(der))[1:] + der
    certs = struct.pack("!I", len(chain))[1:] + chain
    cert_msg = b"\x0b" + struct.pack("!I", len(certs))[1:] + certs
    cap = Capture()
    t = TcpConn(cap, C, 40000, S, 443)
    t.handshake()
    t.send(tls_records(client_hello("cert.example")))
    t.recv(tls_records(server_hello(exts=((0xff01, b"\x00"),)) + cert_msg, record_size=700))
    u = TcpConn(cap, C, 40001, S, 443)
    u.handshake()
    u.send(tls_records(client_hello("resumed.example")))
    ccs = u.recv(tls_records(server_hello(exts=())) + b"\x14\x03\x03\x00\x01\x01")
    u.close()
    r = run(cap, rules_file(EMPTY))
    assert schema_errors(eve_validator, r.events) == []
    by_sni = {e["tls"]["sni"]: e for e in r.of("tls")}
    tl = by_sni["cert.example"]["tls"]
    assert (tl["version"], tl["subject"], tl["issuerdn"]) == ("TLS 1.2", subject, issuer)
    assert subject == "C=NL, O=Example B.V., OU=Ops, CN=cert.example"
    resumed = by_sni["resumed.example"]
    assert "subject" not in resumed["tls"] and resumed["tls"]["ja3s"]["string"] == "771,4865,"
    assert resumed["pcap_cnt"] == ccs                          # at the ChangeCipherSpec, not the flow's end


def test_tls12_certificate_in_the_corpus(run, rules_file):
    from test_protocol_logs import CORPUS
    path = CORPUS / "suricata-verify/tests/bug-2646-01/input.pcap"
    if not path.is_file():
        import pytest
        pytest.skip(f"{path} absent")
    [e] = run(path, rules_file(EMPTY)).of("tls")
    # as `openssl x509 -nameopt sep_comma_plus_space,sname` prints the capture's certificate
    assert e["tls"]["subject"] == "C=US, ST=California, L=San Francisco, O=GitHub, Inc., CN=www.github.com"
    assert e["tls"]["issuerdn"] == "C=US, O=DigiCert Inc, OU=www.digicert.com, CN=DigiCert SHA2 High Assurance Server CA"


def test_certificate_name_oids():
    """X.690: the first byte holds two arcs, 40 * X + Y, and X is 2 for anything >= 80; an OID
    without a short name is written dotted."""
    assert tls._oid(bytes([0x55, 0x04, 0x03])) == "2.5.4.3"
    assert tls._oid(bytes([127, 1])) == "2.47.1"
    assert tls._oid(bytes([0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01])) == "1.2.840.113549.1.9.1"
