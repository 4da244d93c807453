"""docs/limits.md in practice: QUIC goes around a tls_sni blocklist, and the shipped
rules/examples/00-block-quic.yaml closes that door (browsers fall back to TCP, where the
SNI is read) without touching TCP 443 or other UDP."""
from pathlib import Path

from scapy.all import UDP, Raw

from replaykit import Capture, TcpConn, client_hello, ip_of, l2, tls_records

BLOCK_QUIC = Path(__file__).resolve().parents[2] / "rules" / "examples" / "00-block-quic.yaml"
BLOCKLIST = """\
default_action: pass
rules:
  - {id: 9001, msg: "blocked name", action: drop, proto: tcp, tls_sni: "evil.example"}
"""
# A QUIC v1 Initial as a browser sends it (long header, type Initial); its ClientHello is
# encrypted with keys derived from the connection ID: the appliance does not parse QUIC.
QUIC_INITIAL = bytes([0xC3]) + b"\x00\x00\x00\x01" + b"\x08" + b"\x11" * 8 + b"\x00" + b"\x00" + b"\x44\xd0" \
    + b"\x00" * 1200


def traffic():
    cap = Capture()
    for sport in (50001, 50002):                      # a QUIC attempt to the blocked name
        cap.add(l2(ip_of("10.0.0.5", "203.0.113.7") / UDP(sport=sport, dport=443) / Raw(QUIC_INITIAL)))
    cap.add(l2(ip_of("10.0.0.5", "203.0.113.8") / UDP(sport=50003, dport=4433) / Raw(b"other udp")))
    for port, name in ((40001, "evil.example"), (40002, "good.example")):   # the TCP fallback
        c = TcpConn(cap, "10.0.0.5", port, "203.0.113.7", 443)
        c.handshake()
        c.send(tls_records(client_hello(name)))
        c.recv(b"\x16\x03\x03\x00\x04\x02\x00\x00\x00")
        c.close()
    return cap


def actions(result):
    return {(f["proto"], f["dest_port"], f["src_port"]): f["flow"]["action"] for f in result.of("flow")}


def test_quic_bypasses_a_name_blocklist_and_the_shipped_file_blocks_it(run, rules_file, tmp_path):
    policy = rules_file(BLOCKLIST, name="policy.yaml")
    alone = actions(run(traffic(), policy, home_net="10.0.0.0/8"))
    assert alone[("UDP", 443, 50001)] == "pass"       # no name seen: the blocklist cannot hold
    assert alone[("TCP", 443, 40001)] == "drop"

    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "policy.yaml").write_text(BLOCKLIST)
    (rules_dir / BLOCK_QUIC.name).write_text(BLOCK_QUIC.read_text())
    r = run(traffic(), str(rules_dir), home_net="10.0.0.0/8")
    got = actions(r)
    assert got[("UDP", 443, 50001)] == got[("UDP", 443, 50002)] == "reject"
    assert got[("UDP", 4433, 50003)] == "pass"         # other UDP untouched
    assert got[("TCP", 443, 40001)] == "drop" and got[("TCP", 443, 40002)] == "pass"
    [quic] = [f for f in r.of("flow") if f["src_port"] == 50001]
    assert "verdict_rule:2201" in quic["metadata"]["flowbits"]      # decided by the shipped rule
