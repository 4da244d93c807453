"""Review: one crafted packet must not get a connection offloaded (or passed) uninspected.

An offload mark lands on the packet's *conntrack entry*. Where the appliance keys a packet
to another flow than conntrack does, the mark lands on a connection whose verdict is not
final: an ICMP error (conntrack relates it to the connection it quotes), an IPv6 packet
with more extension headers than the decoder followed (conntrack follows them all). And a
TCP flow picked up mid-stream has no known initiator: whoever spoke first was taken for the
client. Each test here reproduced a finding of issue 9 (all fixed) through the Inspector;
tests/netns/test_live_offload.py proves the same live.
"""
from pathlib import Path

import pytest
from scapy.all import (ICMP, IP, IPv6, ICMPv6DestUnreach, ICMPv6EchoRequest, ICMPv6PacketTooBig,
                       IPv6ExtHdrDestOpt, Raw, TCP, UDP, raw)

from replaykit import tls_next_flight, Capture, TcpConn, client_hello, l2, ip_of, tls_records
from appliance.decode import MAX_IPV6_EXTHDRS, decode_l3, decode_frame
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings

REPO = Path(__file__).resolve().parents[2]
SNI_ALLOWLIST = str(REPO / "rules" / "examples" / "sni-allowlist.yaml")
# HOME_NET addresses: the example's allow rule is `direction: outbound`
C, S = "10.0.0.1", "93.184.216.34"
C6, S6 = "fd00::1", "2001:db8::80"
TLS_BLOCK = "rules:\n  - {id: 1, action: drop, proto: tcp, tls_sni: evil.example}\n"


def run(cap, rules, **settings):
    insp = Inspector(load_rules(rules), Settings(**settings))
    out = []
    for ts, buf in cap.frames:
        v = insp.process(decode_frame(buf, cap.linktype, ts))
        out.append((v, [name for name, _ in insp._found]))
    assert insp.counters.internal_errors == 0
    return out, insp


def hello(sni):
    return tls_records(client_hello(sni))


def pending_443(cap, client, server):
    """A :443 connection with its handshake done and no ClientHello yet."""
    c = TcpConn(cap, client, 40000, server, 443)
    c.handshake()
    return c


def port_unreachable(client, server):
    """From the server's side, an ICMP port unreachable quoting the client's segment."""
    quoted = raw(IP(src=client, dst=server) / TCP(sport=40000, dport=443, flags="A"))[:28]
    return l2(IP(src=server, dst=client) / ICMP(type=3, code=3) / Raw(quoted))


def packet_too_big(client, server, to_client=False):
    """An ICMPv6 Packet Too Big quoting a segment of the connection (either way)."""
    if to_client:
        q = IPv6(src=server, dst=client) / TCP(sport=443, dport=40000, flags="A")
        return l2(IPv6(src=client, dst=server) / ICMPv6PacketTooBig(mtu=1280) / Raw(raw(q)))
    q = IPv6(src=client, dst=server) / TCP(sport=40000, dport=443, flags="A")
    return l2(IPv6(src=server, dst=client) / ICMPv6PacketTooBig(mtu=1280) / Raw(raw(q)))


# --- ICMP errors: judged with the connection they quote ---------------------------------

@pytest.mark.parametrize("v6", [False, True], ids=["icmp-unreachable", "icmpv6-packet-too-big"])
def test_icmp_error_quoting_a_pending_connection_does_not_offload_it(v6):
    cap = Capture()
    client, server = (C6, S6) if v6 else (C, S)
    c = pending_443(cap, client, server)
    n_err = cap.add(packet_too_big(client, server) if v6 else port_unreachable(client, server))
    n_hello = c.send(hello("evil.example"))
    out, insp = run(cap, SNI_ALLOWLIST)
    err, _ = out[n_err - 1]
    # was: the ICMP "flow" passed by the example's ICMP rule and was offloaded, which runs
    # CONNMARK --save-mark on the quoted :443 connection before its ClientHello
    assert (err.action, err.offload) == ("pass", False)   # PMTU discovery keeps working
    assert err.flow is not None and err.flow.proto == 6   # judged with the TCP connection
    v, _ = out[n_hello - 1]
    assert v.action == "drop"
    assert not any(v.offload and v.action == "pass" for v, _ in out)
    assert not any(f.proto in (1, 58) for f in insp.flows.flows.values())   # no ICMP flow of its own


def test_icmpv6_packet_too_big_toward_the_server_does_not_offload_either():
    cap = Capture()
    c = pending_443(cap, C6, S6)
    n_err = cap.add(packet_too_big(C6, S6, to_client=True))
    c.send(hello("evil.example"))
    out, _ = run(cap, SNI_ALLOWLIST)
    assert out[n_err - 1][0].offload is False
    assert out[-1][0].action == "drop"


def test_icmp_error_follows_its_connections_final_verdict(rules_file):
    rules = rules_file("""
default_action: pass
rules:
  - {id: 1, action: drop, proto: tcp, dst_port: 22}
  - {id: 2, action: pass, proto: icmp}
""")
    cap = Capture()
    TcpConn(cap, C, 40000, S, 22).handshake()            # dropped for good on its SYN
    quoted = raw(IP(src=C, dst=S) / TCP(sport=40000, dport=22, flags="S"))[:28]
    n_err = cap.add(l2(IP(src=S, dst=C) / ICMP(type=3, code=3) / Raw(quoted)))
    ok = TcpConn(cap, C, 40001, S, 80)
    ok.handshake()
    quoted = raw(IP(src=C, dst=S) / TCP(sport=40001, dport=80, flags="A"))[:28]
    n_ok = cap.add(l2(IP(src=S, dst=C) / ICMP(type=3, code=4) / Raw(quoted)))
    # protocol logs off: with them on, the port-80 flow waits for its request (not offloaded)
    out, _ = run(cap, rules, eve_types=("alert", "anomaly", "flow", "stats"))
    # the connection's verdict, not the ICMP pass rule's; a drop is never offloaded by an error
    # that the kernel would relate to it anyway only if the connection itself was offloaded
    err = out[n_err - 1][0]
    assert err.action == "drop" and err.flow.dport == 22
    assert err.offload == err.flow.offloaded
    passed = out[n_ok - 1][0]
    assert passed.action == "pass" and passed.offload and passed.flow.offloaded and passed.flow.dport == 80


def test_icmp_error_of_a_final_connection_not_offloaded_is_not_offloaded(rules_file):
    # a connection decided while offload was off carries no mark; after a reload that turns
    # offload on, an error quoting it must not be the packet that saves one on it
    rules = load_rules(rules_file("rules:\n  - {id: 1, action: drop, proto: tcp, dst_port: 22}\n"))
    cap = Capture()
    TcpConn(cap, C, 40000, S, 22).handshake()
    quoted = raw(IP(src=C, dst=S) / TCP(sport=40000, dport=22, flags="S"))[:28]
    cap.add(l2(IP(src=S, dst=C) / ICMP(type=3, code=3) / Raw(quoted)))
    insp = Inspector(rules, Settings(offload=False))
    frames = [decode_frame(buf, cap.linktype, ts) for ts, buf in cap.frames]
    first = insp.process(frames[0])
    assert first.action == "drop" and first.flow.final and not first.flow.offloaded
    insp.reload(rules, Settings(offload=True))
    err = insp.process(frames[-1])
    assert err.action == "drop" and err.flow is first.flow
    assert err.offload is False


def test_icmp_error_quoting_no_known_flow_is_judged_by_icmp_rules_and_never_offloaded():
    cap = Capture()
    quoted = raw(IP(src=C, dst=S) / TCP(sport=41000, dport=443, flags="A"))[:28]
    for _ in range(3):                                     # the ICMP flow becomes final: fast path too
        cap.add(l2(IP(src=S, dst=C) / ICMP(type=3, code=3) / Raw(quoted)))
    echo = cap.add(l2(IP(src=C, dst=S) / ICMP(type=8, id=7)))
    out, _ = run(cap, SNI_ALLOWLIST)
    assert [v.action for v, _ in out[:3]] == ["pass"] * 3   # rule 2004 (ICMP) decides
    assert not any(v.offload for v, _ in out[:3])
    assert out[echo - 1][0].offload                         # not an error: its own conntrack entry


@pytest.mark.parametrize("quote,event", [
    (b"", "icmpv4.ipv4_trunc_pkt"),
    (b"\x60" + b"\0" * 27, "icmpv4.ipv4_unknown_ver"),
    (raw(IP(src=C, dst=S) / TCP(sport=40000, dport=443))[:22], "icmpv4.ipv4_trunc_pkt"),
    (raw(IP(src=C, dst=S, ihl=15) / TCP(sport=40000, dport=443))[:28], "icmpv4.ipv4_trunc_pkt"),
])
def test_malformed_icmp_quote_is_an_anomaly_never_an_exception(quote, event):
    pkt = decode_l3(raw(IP(src=S, dst=C) / ICMP(type=3, code=3) / Raw(quote)))
    assert pkt.quote is None and event in pkt.anomalies


def test_quoted_ipv6_header_is_read_through_its_extension_headers():
    q = IPv6(src=C6, dst=S6) / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / TCP(sport=40000, dport=443)
    pkt = decode_l3(raw(IPv6(src=S6, dst=C6) / ICMPv6DestUnreach(code=4) / Raw(raw(q))))
    assert pkt.anomalies == [] and pkt.quote is not None
    assert (pkt.quote.proto, pkt.quote.src, pkt.quote.sport, pkt.quote.dport) == (6, C6, 40000, 443)
    cut = decode_l3(raw(IPv6(src=S6, dst=C6) / ICMPv6DestUnreach(code=4) / Raw(raw(q)[:44])))
    assert cut.quote is None and "icmpv6.ipv6_trunc_pkt" in cut.anomalies
    echo = IPv6(src=C6, dst=S6) / ICMPv6EchoRequest(id=9)
    pkt = decode_l3(raw(IPv6(src=S6, dst=C6) / ICMPv6DestUnreach() / Raw(raw(echo))))
    assert (pkt.quote.proto, pkt.quote.icmp_type, pkt.quote.icmp_id) == (58, 128, 9)


# --- IPv6 extension headers past what the decoder follows -------------------------------

def chained_hello(client, server, n_headers, c):
    """The connection's ClientHello behind `n_headers` destination-options headers."""
    chain = IPv6(src=client, dst=server)
    for _ in range(n_headers):
        chain = chain / IPv6ExtHdrDestOpt()
    seg = TCP(sport=40000, dport=443, flags="PA", seq=c.cseq, ack=c.sseq)
    return l2(chain / seg / Raw(hello("evil.example")))


def test_client_hello_behind_too_many_extension_headers_is_not_offloaded(rules_file):
    cap = Capture()
    c = pending_443(cap, C6, S6)
    n = cap.add(chained_hello(C6, S6, MAX_IPV6_EXTHDRS + 1, c))
    out, insp = run(cap, rules_file(TLS_BLOCK))
    v, found = out[n - 1]
    # was: a protocol-60 "flow" without ports, passed by default and offloaded -- onto the real
    # connection's conntrack entry (Linux follows the whole chain)
    assert (v.action, v.offload) == ("drop", False)
    assert "exception.unread" in found and "decoder.ipv6.too_many_exthdrs" in v_anoms(cap, n)
    assert not any(f.proto == 60 for f in insp.flows.flows.values())


def v_anoms(cap, n):
    ts, buf = cap.frames[n - 1]
    return decode_frame(buf, cap.linktype, ts).anomalies


def test_unread_packet_under_ignore_policy_passes_but_is_never_offloaded(rules_file):
    cap = Capture()
    c = pending_443(cap, C6, S6)
    n = cap.add(chained_hello(C6, S6, MAX_IPV6_EXTHDRS + 1, c))
    out, _ = run(cap, rules_file(TLS_BLOCK), exception_policy="ignore")
    v, found = out[n - 1]
    assert (v.action, v.offload) == ("pass", False) and "exception.unread" in found


def test_unread_packet_is_decided_by_address_rules_without_the_policy(rules_file):
    rules = rules_file(f"""
rules:
  - {{id: 1, action: pass, src: "{C6}"}}
  - {{id: 2, action: drop, proto: tcp, tls_sni: evil.example}}
""")
    cap = Capture()
    c = pending_443(cap, C6, S6)
    n = cap.add(chained_hello(C6, S6, MAX_IPV6_EXTHDRS + 1, c))
    out, _ = run(cap, rules)
    v, found = out[n - 1]
    assert (v.action, v.offload) == ("pass", False) and "exception.unread" not in found


def test_long_chain_within_the_bound_reaches_the_real_connection(rules_file):
    cap = Capture()
    c = pending_443(cap, C6, S6)
    n = cap.add(chained_hello(C6, S6, 40, c))              # was: past the old bound of 16
    out, _ = run(cap, rules_file(TLS_BLOCK))
    v, _ = out[n - 1]
    assert v.action == "drop" and v.flow.proto == 6 and v.flow.dport == 443


# --- mid-stream pickup: who began the connection is not known ----------------------------

def server_first(cap, sport, cport=40000, client=C, server=S):
    """A connection made before the appliance saw it: the server's segment comes first."""
    c = TcpConn(cap, client, cport, server, sport)
    n = c.recv(b"SSH-2.0-OpenSSH_9.6\r\n")
    c.send(b"SSH-2.0-client\r\n")
    return n


@pytest.mark.parametrize("rule", [
    "{id: 1, action: drop, proto: tcp, dst_port: 22}",
    f"{{id: 1, action: drop, proto: tcp, dst: \"{S}\", dst_port: 22}}",
    "{id: 1, action: drop, proto: tcp, direction: outbound, dst_port: 22}",
    "{id: 1, action: reject, proto: tcp, dst_port: 22}",
])
def test_server_speaking_first_midstream_does_not_dodge_a_drop_rule(rules_file, rule):
    cap = Capture()
    n = server_first(cap, 22)
    out, _ = run(cap, rules_file(f"default_action: pass\nrules:\n  - {rule}\n"))
    # was: the server was taken for the initiator, dst_port was the client's 40000, passed
    assert out[n - 1][0].action in ("drop", "reject")
    assert all(v.action != "pass" for v, _ in out)


def test_midstream_pass_rule_needs_the_orientation_the_ports_justify(rules_file):
    allow = rules_file("default_action: drop\nrules:\n  - {id: 1, action: pass, proto: tcp, dst_port: 22}\n")
    cap = Capture()
    server_first(cap, 22)                                  # :22 is the server: justified
    out, _ = run(cap, allow)
    assert [v.action for v, _ in out] == ["pass", "pass"]
    # both ends >= 1024: neither orientation is justified, a pass rule must fit both
    allow_hi = rules_file("default_action: drop\nrules:\n  - {id: 1, action: pass, proto: tcp, dst_port: 8022}\n")
    cap = Capture()
    server_first(cap, 8022)
    out, _ = run(cap, allow_hi)
    assert out[0][0].action == "drop"


def test_midstream_pass_rule_for_the_other_orientation_does_not_pass(rules_file):
    # the client speaks first to :22: the ports justify that orientation, so a pass rule that
    # fits only the other one (the :22 end as the initiator) is no candidate
    allow = rules_file("default_action: drop\nrules:\n  - {id: 1, action: pass, proto: tcp, src_port: 22}\n")
    cap = Capture()
    c = TcpConn(cap, C, 40000, S, 22)
    c.send(b"SSH-2.0-client\r\n")
    c.recv(b"SSH-2.0-OpenSSH_9.6\r\n")
    out, _ = run(cap, allow)
    assert [v.action for v, _ in out] == ["drop", "drop"]
    same = rules_file("default_action: drop\nrules:\n  - {id: 1, action: pass, proto: tcp, dst_port: 22}\n")
    out, _ = run(cap, same)
    assert [v.action for v, _ in out] == ["pass", "pass"]


def test_midstream_flow_with_to_server_content_rule_reads_the_other_orientation(rules_file):
    rules = rules_file("""
default_action: pass
rules:
  - {id: 1, action: drop, proto: tcp, dst_port: 22, flow: [to_server], content: "SSH-2.0-client"}
""")
    cap = Capture()
    server_first(cap, 22)
    out, _ = run(cap, rules)
    assert out[-1][0].action == "drop"


# --- found in the follow-up review: the same ports, the same ISN, a new connection -------

def test_new_connection_reusing_an_offloaded_flows_ports_and_isn_is_inspected():
    """Live, an offloaded connection's FIN and RST never reach the appliance: its flow stays
    ESTABLISHED for the idle timeout. After conntrack forgot the connection (TIME_WAIT),
    a SYN on the same ports is queued as a new connection; with the old ISN (a client can
    choose it) it joined the old, final, passed flow and went through uninspected."""
    cap = Capture()
    old = TcpConn(cap, C, 40000, S, 443, cseq=1000)
    old.handshake()
    old.send(hello("example.com"))                         # allowed: passed,
    n_final = tls_next_flight(old)                         # offloaded after the client's next flight
    # ... the rest, FIN included, stays in the kernel; 130 s later conntrack has forgotten it
    cap.t += 130
    new = TcpConn(cap, C, 40000, S, 443, cseq=1000, sseq=90000)
    n_syn = new.handshake() - 2
    n_hello = new.send(hello("evil.example"))
    out, insp = run(cap, SNI_ALLOWLIST)
    assert out[n_final - 1][0].action == "pass" and out[n_final - 1][0].offload
    syn, synack = out[n_syn - 1][0], out[n_syn][0]
    # the SYN is passed unoffloaded (the old connection, if open, would ignore it); the
    # server's SYN/ACK to it starts the new flow
    assert syn.action == "pass" and not syn.offload
    assert synack.flow is not out[n_final - 1][0].flow, "the new connection joined the old connection's verdict"
    assert out[n_hello - 1][0].action == "drop"
    assert insp.counters.flows_ended.get("reused", 0) == 1


# --- found in review rst: every bare SYN on an offloaded connection is queued live ------------

def test_syn_on_an_offloaded_open_connection_keeps_it_and_its_verdict():
    """Live, a bare SYN on an offloaded connection reaches a worker (netfilter.py clears the
    mark): a duplicate or spoofed one on an open connection draws a challenge ACK, and the
    connection goes on, offloaded again -- not judged anew as a flow without its hello."""
    cap = Capture()
    old = TcpConn(cap, C, 40000, S, 443, cseq=1000)
    old.handshake()
    old.send(hello("example.com"))
    n_final = tls_next_flight(old)
    n_syn = cap.add(l2(IP(src=C, dst=S) / TCP(sport=40000, dport=443, flags="S", seq=777777)))
    n_ack = old.recv(b"", flags="A")                       # the challenge ACK
    n_data = old.send(b"\x17\x03\x03\x00\x05world")
    out, insp = run(cap, SNI_ALLOWLIST)
    flow = out[n_final - 1][0].flow
    assert out[n_syn - 1][0].action == "pass" and not out[n_syn - 1][0].offload
    for n in (n_ack, n_data):
        assert out[n - 1][0].flow is flow and out[n - 1][0].action == "pass" and out[n - 1][0].offload
    assert insp.counters.flows_ended.get("reused", 0) == 0


@pytest.mark.parametrize("rules", [SNI_ALLOWLIST, "rules:\n  - {id: 1, action: drop, proto: tcp, content: BAD}\n"])
def test_syn_with_data_on_a_decided_connection_is_dropped(tmp_path, rules):
    """TFO: a server that forgot the connection would read the SYN's data as a new
    connection's, unjudged; the client sends its SYN again without data."""
    cap = Capture()
    old = TcpConn(cap, C, 40000, S, 443, cseq=1000)
    old.handshake()
    if rules == SNI_ALLOWLIST:
        old.send(hello("example.com"))
        tls_next_flight(old)                               # passed
    else:
        old.send(b"BAD")                                   # dropped
    n_syn = cap.add(l2(IP(src=C, dst=S) / TCP(sport=40000, dport=443, flags="S", seq=777777) / Raw(hello("evil.example"))))
    if rules != SNI_ALLOWLIST:
        (tmp_path / "rules.yaml").write_text(rules)
        rules = str(tmp_path / "rules.yaml")
    out, _ = run(cap, rules)
    assert out[n_syn - 2][0].flow.final
    assert out[n_syn - 1][0].action == "drop" and not out[n_syn - 1][0].offload
