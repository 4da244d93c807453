"""App-layer transaction edges that one-line mutations of applayer/state.py showed untested
(python3 -m bench.mutate): every pipelined request is named, a DNS response is no query, a
DNS-over-TCP message is read once, and a server speaking after its client has begun does not
end the naming."""
import struct

from scapy.all import IP, UDP, Raw

from replaykit import Capture, TcpConn, client_hello, dns_query, l2, tls_records


def test_second_pipelined_request_is_named(run, rules_file):
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 40001, "10.0.0.2", 80)
    c.handshake()
    c.send(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\nGET / HTTP/1.1\r\nHost: evil.example\r\n\r\n")
    r = run(cap, rules_file("rules:\n  - {id: 1, action: drop, http_host: evil.example}\n"))
    assert r.flow_action(src_port=40001) == "drop"


def test_dns_response_is_not_a_query(run, rules_file):
    cap = Capture()
    response = bytearray(dns_query(["evil.example"], qid=7))
    response[2] |= 0x80                                     # QR: a response carrying the question
    cap.add(l2(IP(src="10.0.0.2", dst="10.0.0.1") / UDP(sport=53, dport=5300) / Raw(bytes(response))))
    query = cap.add(l2(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5301, dport=53)
                       / Raw(dns_query(["evil.example"], qid=8))))
    r = run(cap, rules_file("rules:\n  - {id: 1, action: alert, dns_query: evil.example}\n"))
    assert [e["pcap_cnt"] for e in r.alerts(1)] == [query]


def test_dns_over_tcp_message_is_read_once(run, rules_file):
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 40002, "10.0.0.2", 53)
    c.handshake()
    for i, name in enumerate(("evil.example", "good.example", "other.example")):
        m = dns_query([name], qid=i)
        c.send(struct.pack("!H", len(m)) + m)
    r = run(cap, rules_file("rules:\n  - {id: 1, action: alert, dns_query: evil.example}\n"))
    assert len(r.alerts(1)) == 1


def test_server_speaking_after_the_client_began_keeps_the_name_pending(run, rules_file):
    # The client's first 4 bytes are too few to tell TLS; the server then speaks (any bytes);
    # the rest of the ClientHello still names the flow.
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 40003, "10.0.0.2", 443)
    c.handshake()
    hello = tls_records(client_hello("evil.example"))
    c.send(hello[:4])
    c.recv(b"hello from the server\r\n")
    c.send(hello[4:])
    r = run(cap, rules_file("rules:\n  - {id: 1, action: drop, tls_sni: evil.example}\n"))
    assert r.flow_action(src_port=40003) == "drop"
