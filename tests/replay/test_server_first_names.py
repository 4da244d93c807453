"""Review s14b: a server byte before the client's first must not let the client's request go
unseen. Such a byte may be a spoof from outside that the client's TCP never takes; the flow
names nothing *for now* (header rules decide at once, as for any nameless flow), but a pass
is provisional: it is not final nor offloaded until the client's first bytes are read as
any client's (applayer/state.py SERVER_FIRST, Detector.more_to_inspect)."""
import pytest

from replaykit import Capture, TcpConn, client_hello, tls_records
from appliance.decode import decode_frame
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings

C, S = "10.0.0.1", "93.184.216.34"
REQUEST = b"GET / HTTP/1.1\r\nHost: evil.example\r\nUser-Agent: t\r\n\r\n"
BLOCK = {
    "http": "rules:\n  - {id: 1, action: drop, proto: tcp, http_host: evil.example}\n",
    "tls": "rules:\n  - {id: 1, action: drop, proto: tcp, tls_sni: evil.example}\n",
}
SURICATA = {
    "http": 'drop http any any -> any any (msg:"h"; http.host; content:"evil.example"; sid:1;)\n',
    "tls": 'drop tls any any -> any any (msg:"t"; tls.sni; content:"evil.example"; sid:1;)\n',
}
SSH_KEXINIT = b"\x00\x00\x05\xdc\x06\x14" + bytes(range(256))[:120]


def run(cap, rules, **settings):
    """(verdict, anomaly names, whether it took a decided-like path) per packet."""
    insp = Inspector(load_rules(rules), Settings(**settings))
    out = []
    for ts, buf in cap.frames:
        v = insp.process(decode_frame(buf, cap.linktype, ts))
        out.append((v, [name for name, _ in insp._found], v is insp._decided))
    assert insp.counters.internal_errors == 0
    return out


def spoofed(first_client_bytes):
    """SYN, SYN/ACK, ACK, one server byte (the spoof: the client's TCP need not take it),
    then the client's first bytes. Returns the capture and the client's packet number."""
    cap = Capture()
    c = TcpConn(cap, C, 40000, S, 443)
    c.handshake()
    c.recv(b"x")
    c.sseq -= 1                        # the client never took it: its ACKs stay where they were
    return cap, c.send(first_client_bytes)


def client_bytes(proto):
    return REQUEST if proto == "http" else tls_records(client_hello("evil.example"))


@pytest.mark.parametrize("proto", ["http", "tls"])
@pytest.mark.parametrize("fmt", ["yaml", "rules"])
def test_a_spoofed_server_byte_does_not_hide_a_blocked_name(tmp_path, proto, fmt):
    rules = tmp_path / ("r.yaml" if fmt == "yaml" else "r.rules")
    rules.write_text(BLOCK[proto] if fmt == "yaml" else SURICATA[proto])
    cap, n = spoofed(client_bytes(proto))
    out = run(cap, str(rules))
    # was: the server byte made the flow nameless for good, final and offloaded there
    assert [(v.action, v.offload) for v, _, _ in out[:n - 1]] == [("pass", False)] * (n - 1)
    assert out[n - 1][0].action == "drop"
    assert "applayer.server_spoke_first" in out[n - 1][1]


def test_an_allow_list_still_drops_a_server_first_flow_and_its_request(rules_file):
    allow = rules_file("default_action: drop\nrules:\n"
                       "  - {id: 1, action: pass, proto: tcp, http_host: good.example}\n")
    cap, n = spoofed(REQUEST.replace(b"evil", b"good"))
    out = run(cap, allow)
    # the server byte names nothing: the default drops at once, final (as before)
    assert out[3][0].action == "drop"
    assert all(v.action == "drop" for v, _, _ in out[3:])
    # ... and a port pass rule passes it, held for the client's request: a blocked name drops
    ported = rules_file("default_action: drop\nrules:\n"
                        "  - {id: 1, action: drop, proto: tcp, http_host: evil.example}\n"
                        "  - {id: 2, action: pass, proto: tcp, dst_port: 443}\n")
    cap, n = spoofed(REQUEST)
    out = run(cap, ported)
    assert [(v.action, v.offload) for v, _, _ in out[:n - 1]] == [("pass", False)] * (n - 1)
    assert out[n - 1][0].action == "drop"


def banner_then(cap_port, client_segments, silent_packets=0, server_ack=False):
    cap = Capture()
    c = TcpConn(cap, C, 40000, S, cap_port)
    c.handshake()
    first = c.recv(b"SSH-2.0-OpenSSH_9.6\r\n")
    for i in range(silent_packets):
        c.recv(bytes([i & 0xFF]) * 1000)
        if i % 4 == 3:
            c.send(b"", flags="A")     # the client ACKs, silent otherwise
    sent = [c.send(seg) for seg in client_segments]
    return cap, first, sent + ([c.recv(b"", "A")] if server_ack else [])


def test_a_nameless_client_after_a_server_banner_is_offloaded_then(rules_file):
    blocklist = rules_file(BLOCK["http"])
    cap, banner, (hello, kex, ack) = banner_then(22, [b"SSH-2.0-client\r\n", SSH_KEXINIT], server_ack=True)
    out = run(cap, blocklist)
    assert all(v.action == "pass" for v, _, _ in out)
    # held from the server's banner until the client's bytes say it names nothing (its
    # first 64 bytes, as any client's), and those reached the server (its ACK): offloaded then
    assert [v.offload for v, _, _ in out[:ack - 1]] == [False] * (ack - 1)
    assert out[ack - 1][0].offload
    assert not any("applayer.server_spoke_first" in f for _, f, _ in out)


def test_a_client_that_never_speaks_is_passed_cheaply_never_offloaded(rules_file):
    blocklist = rules_file(BLOCK["tls"])
    cap, banner, _ = banner_then(21, [], silent_packets=40)
    out = run(cap, blocklist)
    assert all(v.action == "pass" and not v.offload for v, _, _ in out)
    # from the packet after the banner: the decided-like path (no app layer, no detection)
    assert all(cheap for _, _, cheap in out[banner:])
    assert not any(cheap for _, _, cheap in out[:banner])


def test_a_header_reject_still_rejects_at_the_first_server_byte(rules_file):
    rules = rules_file("rules:\n  - {id: 1, action: drop, proto: tcp, tls_sni: evil.example}\n"
                       "  - {id: 2, action: reject, proto: tcp, dst_port: 23}\n")
    cap, banner, _ = banner_then(23, [], silent_packets=3)
    out = run(cap, rules)
    assert [v.action for v, _, _ in out[:banner - 1]] == ["pass"] * (banner - 1)
    assert out[banner - 1][0].action == "reject"
    assert all(v.action == "drop" for v, _, _ in out[banner:])


def test_an_smtp_session_is_let_go_at_the_clients_64th_byte(rules_file):
    cap = Capture()
    c = TcpConn(cap, C, 40000, S, 25)
    c.handshake()
    c.recv(b"220 mx.example ESMTP\r\n")
    c.send(b"EHLO client.example.org\r\n")                 # 25 bytes: too few to tell, as any client's
    c.recv(b"250-mx.example\r\n250 8BITMIME\r\n")
    c.send(b"MAIL FROM:<alice@example.org>\r\n")           # 56
    c.recv(b"250 2.1.0 Ok\r\n")
    last = c.send(b"RCPT TO:<bob@example.net>\r\n")          # past 64: names nothing
    ack = c.recv(b"250 2.1.5 Ok\r\n")                      # ... and the server has it
    out = run(cap, rules_file(BLOCK["http"]))
    assert all(v.action == "pass" for v, _, _ in out)
    assert out[last - 1][0].flow.app.proto == "failed"
    assert [v.offload for v, _, _ in out[:ack - 1]] == [False] * (ack - 1)
    assert out[ack - 1][0].offload
