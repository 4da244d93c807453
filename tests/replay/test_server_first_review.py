"""Review s15 of the server-first change: a Fast Open SYN's data settled by a SYN/ACK the held
flow's short path would have skipped (F1), a SYN spoofed from the server's side that made
the client's request read as server bytes (F3), and a reload reaching a held flow."""
import pytest
from scapy.all import IP, Raw, TCP as STCP

from replaykit import Capture, TcpConn, l2
from appliance.decode import decode_frame
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings

C, S = "10.0.0.1", "93.184.216.34"
EVIL = b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n"
HTTP_DROP = "rules:\n  - {id: 1, action: drop, proto: tcp, http_host: evil.example}\n"


def run(cap, rules_text, tmp_path, name="r.yaml", **settings):
    p = tmp_path / name
    p.write_text(rules_text)
    insp = Inspector(load_rules(str(p)), Settings(**settings))
    out = []
    for ts, buf in cap.frames:
        v = insp.process(decode_frame(buf, cap.linktype, ts))
        out.append((v.action, v.offload, [n for n, _ in insp._found]))
    assert insp.counters.internal_errors == 0
    return out


def cs(cap, seq, flags, data=b"", ack=0, sport=40090, dport=80):
    p = IP(src=C, dst=S) / STCP(sport=sport, dport=dport, flags=flags, seq=seq & 0xFFFFFFFF, ack=ack)
    cap.add(l2(p / Raw(data) if data else p))


def sc(cap, seq, flags, ack, data=b"", sport=40090, dport=80):
    p = IP(src=S, dst=C) / STCP(sport=dport, dport=sport, flags=flags, seq=seq, ack=ack & 0xFFFFFFFF)
    cap.add(l2(p / Raw(data) if data else p))


def test_a_spoofed_server_byte_before_the_synack_leaves_the_fast_open_data_to_the_synack(tmp_path):
    """The request rides in the SYN (Fast Open, the server takes it); a spoofed server byte
    before the SYN/ACK holds the flow as server-first. The SYN/ACK must still settle the SYN's
    data (it says the server took it), or the client's next segment at ISN+1 -- old data the
    server discards -- would 'tell' the data was refused and be read instead (names nothing:
    offloaded while the server served evil.example)."""
    a, sv = 1000, 5000
    cap = Capture()
    cs(cap, a, "S", EVIL)
    sc(cap, sv + 1, "PA", a + 1 + len(EVIL), b"x")          # spoofed from outside
    sc(cap, sv, "SA", a + 1 + len(EVIL))                    # the server took the SYN's data
    cs(cap, a + 1 + len(EVIL), "A", ack=sv + 1)
    cs(cap, a + 1, "PA", b"\x00" * 80, ack=sv + 1)          # old data to the server: discarded
    out = run(cap, HTTP_DROP, tmp_path)
    assert any(action == "drop" for action, _, _ in out), out
    assert not any(off for action, off, _ in out if action == "pass"), out


@pytest.mark.parametrize("variant", ["syn", "syn_then_data", "synack_first"])
def test_a_syn_from_the_server_side_leaves_who_is_client_unknown(tmp_path, variant):
    """A SYN (or SYN/ACK) spoofed from S:80 to the client's port before the client's own SYN:
    taken as the initiator, S made the client's request read as server bytes (never named).
    The client's bare SYN then says both ends opened: the names cannot be known, and a name
    rule reads that against the attacker (exception.midstream, dropped)."""
    a, sv = 1000, 5000
    cap = Capture()
    if variant == "synack_first":
        sc(cap, 9000, "SA", 777)
    else:
        sc(cap, 9000, "S", 0)
        if variant == "syn_then_data":
            sc(cap, 9001, "PA", 0, b"x")
    cs(cap, a, "S")
    sc(cap, sv, "SA", a + 1)
    cs(cap, a + 1, "A", ack=sv + 1)
    cs(cap, a + 1, "PA", EVIL, ack=sv + 1)
    out = run(cap, HTTP_DROP, tmp_path)
    if variant == "synack_first":
        # (a SYN/ACK alone orients the flow toward its receiver: the client's SYN goes to the server)
        assert out[-1][0] == "drop", out
    else:
        first_syn = 2 if variant == "syn_then_data" else 1
        assert out[first_syn][0] == "drop" and "exception.midstream" in out[first_syn][2], out
    assert not any(off for action, off, _ in out if action == "pass"), out


def test_the_client_retrying_its_syn_after_two_syns_is_inspected_from_it(tmp_path):
    """The flow the two SYNs dropped is decided; the client's SYN again (its retransmission)
    starts a new connection inspected from its SYN, oriented by it: a clean request passes,
    a blocked one is dropped by name."""
    a, sv = 1000, 5000
    for request, want in ((b"GET / HTTP/1.1\r\nHost: good.example\r\n\r\n", "pass"), (EVIL, "drop")):
        cap = Capture()
        sc(cap, 9000, "S", 0)                                # spoofed
        cs(cap, a, "S")
        cs(cap, a, "S")                                      # the client's retransmission
        sc(cap, sv, "SA", a + 1)
        cs(cap, a + 1, "A", ack=sv + 1)
        cs(cap, a + 1, "PA", request, ack=sv + 1)
        out = run(cap, HTTP_DROP, tmp_path)
        assert out[1][0] == "drop" and out[2][0] == "pass", out
        assert out[-1][0] == want and "exception.midstream" not in out[-1][2], out


def test_a_reload_reaches_a_held_server_first_flow(tmp_path):
    """A held flow (SSH banner, silent client) gets an alert rule on the server's bytes by a
    reload: its next server packet is inspected (the alert fires), not passed on the short path."""
    cap = Capture()
    c = TcpConn(cap, C, 40000, S, 22)
    c.handshake()
    c.recv(b"SSH-2.0-OpenSSH_9.6\r\n")
    c.recv(b"y" * 100)
    before = len(cap.frames)
    c.recv(b"z" * 100)
    drop = 'drop http any any -> any any (msg:"h"; http.host; content:"evil.example"; sid:1;)\n'
    r1 = tmp_path / "a.rules"
    r1.write_text(drop)
    r2 = tmp_path / "b.rules"
    r2.write_text(drop + 'alert tcp any 22 -> any any (msg:"z"; content:"zzzz"; sid:2;)\n')
    insp = Inspector(load_rules(str(r1)), Settings())
    out = []
    for i, (ts, buf) in enumerate(cap.frames):
        if i == before:
            insp.reload(load_rules(str(r2)))
        v = insp.process(decode_frame(buf, cap.linktype, ts))
        out.append((v.action, [r.id for r in v.alerts]))
    assert out[before][1] == [2], out


INBOUND_PASS = ('pass tcp 93.184.216.0/24 any -> 10.0.0.0/8 any (msg:"inbound"; sid:2;)\n'
                'drop http any any -> any any (msg:"evil"; http.host; content:"evil.example"; sid:1;)\n')
OUTBOUND_NAME = 'drop http 10.0.0.0/8 any -> any any (msg:"evil"; http.host; content:"evil.example"; sid:1;)\n'
OUTBOUND_NAME_YAML = "rules:\n  - {id: 1, action: drop, proto: tcp, src: 10.0.0.0/8, http_host: evil.example}\n"


@pytest.mark.parametrize("rules,name,kw", [(INBOUND_PASS, "r.rules", {}), (OUTBOUND_NAME, "r.rules", {}),
                                           (OUTBOUND_NAME_YAML, "r.yaml", {}),
                                           (OUTBOUND_NAME, "r.rules", {"kernel_decisions": True})])
def test_a_flow_passed_at_the_spoofed_syn_is_judged_again_at_the_clients(tmp_path, rules, name, kw):
    """(review s15b) The spoofed SYN from S is passed at once (a header pass that fits S -> C, or
    no rule reads S -> C): the client's SYN makes its names unknown, and the passed flow must
    be judged again on that packet, not left passed."""
    a, sv = 1000, 5000
    cap = Capture()
    sc(cap, 9000, "S", 0)
    cs(cap, a, "S")
    sc(cap, sv, "SA", a + 1)
    cs(cap, a + 1, "A", ack=sv + 1)
    cs(cap, a + 1, "PA", EVIL, ack=sv + 1)
    out = run(cap, rules, tmp_path, name, **kw)
    assert out[-1][0] == "drop", out
