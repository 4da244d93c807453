"""`app_proto` (Suricata's `alert tls ...` with no sticky buffer): a rule on the protocol the
app layer reads, whatever the names. What an AWS Network Firewall domain allowlist needs:
pass the listed names, drop every other TLS/HTTP request -- a ClientHello without SNI, an
HTTP request to another host, TLS on a port that is not 443 -- and nothing else."""
import struct

from replaykit import Capture, TcpConn, client_hello, tls_records
from test_suricata_replay import same_events

SRV = "198.51.100.7"


def conn(cap, port, sport, payload):
    c = TcpConn(cap, "10.0.0.1", sport, SRV, port)
    c.handshake()
    c.send(payload)
    c.recv(b"x")
    return c


def hello_without_sni():
    body = b"\x03\x03" + b"\x11" * 32 + b"\x00" + struct.pack("!H", 2) + b"\x13\x01" + b"\x01\x00" \
        + struct.pack("!H", 0)
    return b"\x01" + struct.pack("!I", len(body))[1:] + body


def capture():
    cap = Capture()
    conn(cap, 443, 40001, tls_records(client_hello("good.example")))      # listed: pass
    conn(cap, 443, 40002, tls_records(client_hello("bad.example")))       # TLS, not listed: drop
    conn(cap, 443, 40003, tls_records(hello_without_sni()))               # TLS, no SNI: drop
    conn(cap, 8443, 40004, tls_records(client_hello("other.example")))    # TLS on another port: drop
    conn(cap, 443, 40005, b"GET / HTTP/1.1\r\nHost: bad.example\r\n\r\n")  # HTTP on 443: not TLS
    conn(cap, 22, 40006, b"SSH-2.0-OpenSSH_9.2\r\n")                       # neither
    return cap


RULES = ('pass tls $HOME_NET any -> $EXTERNAL_NET any (tls.sni; content:"good.example"; nocase; '
         'startswith; endswith; flow:to_server; sid:1;)\n'
         'drop tls $HOME_NET any -> $EXTERNAL_NET any (msg:"not allowlisted"; flow:to_server; sid:2;)\n')
YAML = """rules:
  - {id: 1, action: pass, proto: tcp, src: $HOME_NET, dst: $EXTERNAL_NET, flow: to_server, tls_sni: good.example}
  - {id: 2, action: drop, msg: not allowlisted, proto: tcp, src: $HOME_NET, dst: $EXTERNAL_NET, flow: to_server, app_proto: tls}
"""


def actions(r):
    return {e["src_port"]: e["flow"]["action"] for e in r.of("flow")}


def test_tls_allowlist_drops_every_other_tls_flow_and_nothing_else(run, rules_file):
    r = run(capture(), rules_file(RULES, "a.rules"))
    assert actions(r) == {40001: "pass", 40002: "drop", 40003: "drop", 40004: "drop",
                          40005: "pass", 40006: "pass"}
    assert sorted(e["src_port"] for e in r.alerts(2)) == [40002, 40003, 40004]   # blocked alerts
    same_events(r, run(capture(), rules_file(YAML)))                             # one engine


def test_alert_on_the_protocol_fires_once_per_transaction(run, rules_file):
    cap = Capture()
    conn(cap, 80, 40010, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: y\r\n\r\n")
    conn(cap, 443, 40011, tls_records(client_hello("z.example")))
    r = run(cap, rules_file('alert http any any -> any any (msg:"http"; sid:5;)\n', "b.rules"))
    assert [e["src_port"] for e in r.alerts(5)] == [40010]
    assert sorted(e["http"]["url"] for e in r.alerts(5) if "http" in e) in (["/a"], ["/a", "/b"], ["/b"])


def test_unknown_protocol_is_read_against_the_attacker(run, rules_file):
    # A stream that reads two ways (a queued decoy the in-order copy overlaps with other
    # bytes): the appliance cannot know what the server read, so under exception_policy drop
    # the TLS drop rule matches whatever the allowlisted SNI said; under ignore, Linux's
    # reading (the listed name) decides.
    from test_receiver_evasion import A, B, handshake, seg

    def cap():
        cap = Capture()
        handshake(cap, sport=40020)
        good = tls_records(client_hello("good.example"))
        seg(cap, True, "PA", A + 1 + 16, B + 1, b"\xff" * 14, sport=40020)   # decoy, out of order
        seg(cap, True, "PA", A + 1, B + 1, good, sport=40020)                # in-order copy covers it
        return cap
    drop = run(cap(), rules_file(RULES, "c.rules"), home_net=["10.0.0.1/32"])  # (server 10.0.0.80)
    assert actions(drop) == {40020: "drop"} and [e["src_port"] for e in drop.alerts(2)] == [40020]
    ignore = run(cap(), rules_file(RULES, "d.rules"), home_net=["10.0.0.1/32"], exception_policy="ignore")
    assert actions(ignore) == {40020: "pass"} and ignore.alerts(2) == []


def test_app_proto_problems_at_their_line(rules_file):
    from appliance.detect.loader import check
    p = rules_file("rules:\n  - {id: 1, action: drop, app_proto: tls, http_host: a.example}\n"
                   "  - {id: 2, action: drop, proto: udp, app_proto: http}\n"
                   "  - {id: 3, action: drop, app_proto: smtp}\n")
    out = check([p])
    assert out[0] == f"{p}:2: app_proto is tls; this rule also looks at http (a flow carries one protocol)"
    assert out[1] == f"{p}:3: app_proto http needs proto tcp or ip (proto is udp)"
    assert out[2].startswith(f"{p}:4: app_proto must be one of dns, tls, http")
