"""Decode paths through replay: IPv6 extension headers, fragments, VLAN/QinQ, SLL/SLL2,
truncated frames and overlapping fragments end up as alerts/anomalies, never crashes."""
import struct

from scapy.all import (IP, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop,
                       UDP, Raw, Dot1Q, Dot1AD, Ether, fragment, fragment6, raw)

from replaykit import Capture, LINKTYPE_RAW, LINKTYPE_SLL, LINKTYPE_SLL2, l2

SECRET_RULES = """
rules:
  - {id: 1, action: alert, content: "SECRET-PAYLOAD"}
  - {id: 2, action: drop, proto: udp, dst_port: 4444, log: true}
"""


def test_ipv6_extension_headers(run, rules_file):
    cap = Capture()
    p = (IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
         / UDP(sport=1, dport=4444) / Raw(b"xx SECRET-PAYLOAD xx"))
    cap.add(l2(p))
    r = run(cap, rules_file(SECRET_RULES))
    assert sorted(r.sids()) == [1, 2]
    assert all(e["src_ip"] == "2001:db8::1" and e["proto"] == "UDP" for e in r.alerts())
    assert r.flow_action(dest_port=4444) == "drop"


def test_ipv4_fragments_reassembled_before_detection(run, rules_file):
    data = b"A" * 20 + b"SECRET-PAYLOAD" + b"B" * 40      # the content straddles fragments
    pkt = IP(src="10.0.0.1", dst="10.0.0.2", id=77) / UDP(sport=1, dport=4444) / Raw(data)
    frags = fragment(pkt, fragsize=32)
    assert len(frags) >= 3
    assert all(b"SECRET-PAYLOAD" not in raw(f) for f in frags)
    cap = Capture()
    for f in reversed(frags):                               # out of order, too
        cap.add(l2(f))
    r = run(cap, rules_file(SECRET_RULES))
    assert sorted(r.sids()) == [1, 2]
    assert r.flows(dest_port=4444)[0]["flow"]["pkts_toserver"] == 1   # one datagram
    assert r.res.verdicts == {"drop": 1}


def test_ipv6_fragments_reassembled_before_detection(run, rules_file):
    data = b"A" * 36 + b"SECRET-PAYLOAD" + b"B" * 60
    pkt = (IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(id=9)
           / UDP(sport=1, dport=4444) / Raw(data))
    frags = fragment6(pkt, 100)
    assert len(frags) >= 2
    assert all(b"SECRET-PAYLOAD" not in raw(f) for f in frags)
    cap = Capture()
    for f in frags:
        cap.add(l2(f))
    r = run(cap, rules_file(SECRET_RULES))
    assert sorted(r.sids()) == [1, 2]


def test_vlan_and_qinq(run, rules_file):
    cap = Capture()
    inner = IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=4444) / Raw(b"SECRET-PAYLOAD")
    cap.add(Ether() / Dot1Q(vlan=6) / inner)
    inner2 = IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=2, dport=4444) / Raw(b"SECRET-PAYLOAD")
    cap.add(Ether() / Dot1AD(vlan=13) / Dot1Q(vlan=10) / inner2)
    r = run(cap, rules_file(SECRET_RULES))
    vlans = {e["src_port"]: e.get("vlan") for e in r.alerts(1)}
    assert vlans == {1: [6], 2: [13, 10]}
    assert r.of("stats")[-1]["stats"]["decoder"]["vlan"] == 2


def sll(ip_bytes, proto=0x0800):
    return struct.pack("!HHH8sH", 0, 1, 6, b"\x02\x00\x00\x00\x00\x01\x00\x00", proto) + ip_bytes


def sll2(ip_bytes, proto=0x0800):
    return struct.pack("!HHIHBB8s", proto, 0, 3, 1, 0, 6, b"\x02\x00\x00\x00\x00\x01\x00\x00") + ip_bytes


def test_sll_sll2_and_raw_link_types(run, rules_file):
    rules = rules_file(SECRET_RULES)
    ip4 = raw(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=4444) / Raw(b"SECRET-PAYLOAD"))
    ip6 = raw(IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=2, dport=4444) / Raw(b"SECRET-PAYLOAD"))
    for linktype, wrap in ((LINKTYPE_SLL, sll), (LINKTYPE_SLL2, sll2), (LINKTYPE_RAW, lambda b, proto=0: b)):
        cap = Capture(linktype=linktype)
        cap.add(wrap(ip4))
        cap.add(wrap(ip6, 0x86DD) if linktype != LINKTYPE_RAW else ip6)
        r = run(cap, rules)
        assert sorted((e["src_ip"], e["alert"]["signature_id"]) for e in r.alerts()) == [
            ("10.0.0.1", 1), ("10.0.0.1", 2), ("fd00::1", 1), ("fd00::1", 2)], linktype


def test_truncated_frame_is_an_anomaly_not_a_crash(run, rules_file):
    cap = Capture()
    good = raw(l2(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=4444) / Raw(b"SECRET-PAYLOAD")))
    cap.add(good[:14 + 12])                  # Ethernet + 12 bytes of IPv4 header
    cap.add(good[:10])                       # not even an Ethernet header
    cap.add(good)
    r = run(cap, rules_file(SECRET_RULES))
    an = r.of("anomaly")
    assert [a["pcap_cnt"] for a in an] == [1, 2]
    assert all(a["anomaly"]["type"] == "decode" for a in an)
    assert an[0]["anomaly"]["event"].startswith("ipv4.") and an[1]["anomaly"]["event"].startswith("ethernet.")
    assert sorted(r.sids()) == [1, 2]        # the good packet after them is still inspected
    assert r.of("stats")[-1]["stats"]["decoder"]["invalid"] == 2


def test_overlapping_fragments_anomaly(run, rules_file):
    payload = UDP(sport=1, dport=4444, len=8 + 32) / Raw(b"C" * 32)
    body = raw(payload)
    f1 = IP(src="10.0.0.1", dst="10.0.0.2", id=5, flags="MF", frag=0, proto=17) / Raw(body[:24])
    f2 = IP(src="10.0.0.1", dst="10.0.0.2", id=5, frag=2, proto=17) / Raw(b"X" * 24)  # overlaps f1 at 16..24
    cap = Capture()
    cap.add(l2(f1))
    cap.add(l2(f2))
    r = run(cap, rules_file(SECRET_RULES))
    events = [a["anomaly"]["event"] for a in r.of("anomaly")]
    assert events == ["ipv4.frag_overlap"]
    assert r.of("anomaly")[0]["pcap_cnt"] == 2            # on the fragment that overlapped
    # the kernel discards the datagram: no flow, no verdict, no alert from it
    assert r.of("flow") == [] and r.sids() == []


def test_overlapping_fragments_give_no_name_and_no_verdict(run, rules_file):
    """Two overlapping readings of one DNS query: first-copy-wins made replay see
    good.example and pass it (while a later-copy host would read evil.example); Linux
    delivers neither, so replay reports the overlap and decides nothing."""
    from replaykit import dns_query
    good, evil = dns_query(["good.example"]), dns_query(["evil.example"])
    udp_good = raw(UDP(sport=5000, dport=53, len=8 + len(good)) / Raw(good))
    udp_evil = raw(UDP(sport=5000, dport=53, len=8 + len(evil)) / Raw(evil))
    base = dict(src="10.0.0.1", dst="10.0.0.53", id=9, proto=17)
    cap = Capture()
    cap.add(l2(IP(**base, flags="MF") / Raw(udp_good[:24])))            # [0, 24)
    cap.add(l2(IP(**base, frag=2) / Raw(udp_evil[16:])))                 # [16, end): overlaps 16..24
    rules = rules_file("default_action: drop\nrules:\n"
                       "  - {id: 1, action: pass, dns_query: good.example, log: true}\n"
                       "  - {id: 2, action: drop, dns_query: evil.example, log: true}\n")
    r = run(cap, rules)
    assert [a["anomaly"]["event"] for a in r.of("anomaly")] == ["ipv4.frag_overlap"]
    assert r.of("flow") == [] and r.sids() == [] and "dns" not in str(r.events)
    assert r.insp.counters.verdicts["pass"] == 0 and r.insp.counters.verdicts["drop"] == 0


def test_stats_count_every_frame_including_fragments(run, rules_file):
    """stats.decoder.pkts counts every frame read, as Suricata's does: fragments included,
    also those of a datagram that never completes."""
    pkt = IP(src="10.0.0.1", dst="10.0.0.2", id=78) / UDP(sport=1, dport=4444) / Raw(b"Z" * 80)
    frags = fragment(pkt, fragsize=32)
    cap = Capture()
    for f in frags:
        cap.add(l2(f))
    # a lone first fragment of a datagram that never completes
    cap.add(l2(IP(src="10.0.0.1", dst="10.0.0.2", id=79, flags="MF", proto=17) / Raw(b"\x00" * 16)))
    r = run(cap, rules_file(SECRET_RULES))
    assert r.res.packets == len(frags) + 1
    assert r.of("stats")[-1]["stats"]["decoder"]["pkts"] == len(frags) + 1
