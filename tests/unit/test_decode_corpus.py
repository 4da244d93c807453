"""decode + defrag over every real capture in the shared corpus (skipped when it is absent)."""

import collections
import gzip
from pathlib import Path

import dpkt
import pytest

from appliance.decode import decode_frame
from appliance.defrag import Defragmenter
from appliance.packet import Packet

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus absent")

CAPTURES = sorted(p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob("*")
                  if p.name.endswith((".pcap", ".pcapng", ".pcap.gz"))) if CORPUS.is_dir() else []


def frames(name):
    """(linktype, ts, frame) for each frame; a capture file cut short just ends early."""
    path = CORPUS / name
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        magic = f.read(4)
        f.seek(0)
        reader = dpkt.pcapng.Reader(f) if magic == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(f)
        linktype = reader.datalink()
        it = iter(reader)
        while True:
            try:
                ts, frame = next(it)
            except (StopIteration, dpkt.NeedData):  # truncated_dns_2.pcap ends mid-record header
                return
            yield linktype, ts, frame


def decoded(name):
    out = []
    for n, (linktype, ts, frame) in enumerate(frames(name), 1):
        pkt = decode_frame(frame, linktype, ts)
        pkt.pcap_cnt = n
        out.append(pkt)
    return out


def reassembled(name):
    d = Defragmenter()
    out = [d.feed(p) for p in decoded(name)]
    return [p for p in out if p is not None], d


@pytest.mark.parametrize("name", CAPTURES)
def test_every_frame_decodes_and_defrags(name):
    pkts = decoded(name)
    assert pkts and all(isinstance(p, Packet) for p in pkts)
    for p in pkts:
        assert p.ip_version in (0, 4, 6)
        assert (p.ip_version == 0) == (p.src == "")
    out, d = reassembled(name)
    assert all(isinstance(p, Packet) for p in out)
    # what comes out is whole packets plus any fragment refused for its size
    assert sum(p.frag is not None for p in out) == d.stats["too_large"]
    d.expire(float("inf"))
    assert d.held_datagrams == 0 and d.held_bytes == 0


def one(name):
    path = next((c for c in CAPTURES if c.endswith(name)), None)
    if path is None:
        pytest.skip(f"{name} not in corpus")
    return path


def test_truncated_ipv4_is_flagged():
    (pkt,) = decoded(one("ipv4-truncated/truncated.pcap"))
    assert "ipv4.trunc_pkt" in pkt.anomalies and pkt.proto == 17 and pkt.length > len(pkt.l3)


def test_bogus_header_length_is_flagged():
    (pkt,) = decoded(one("ip-bogus-header-len.pcap"))
    assert {"ipv4.hlen_too_small", "ipv4.iplen_smaller_than_hlen"} & set(pkt.anomalies)


def test_snaplen_capture_keeps_ports():
    pkts = decoded(one("tcp/truncated-header.pcap"))
    cut = [p for p in pkts if "ipv4.trunc_pkt" in p.anomalies]
    assert cut and all(25 in (p.sport, p.dport) for p in cut)


def test_mpls_is_unsupported_encapsulation_without_anomaly():
    pkts = decoded(one("mixed-vlan-mpls.pcap"))
    mpls = [p for p in pkts if p.encap == "mpls"]
    assert mpls and all(p.ip_version == 0 and p.anomalies == [] for p in mpls)
    assert any(p.ip_version == 4 and p.proto == 6 for p in pkts)


def test_pppoe_is_unsupported_encapsulation():
    assert collections.Counter(p.encap for p in decoded(one("nb6-http.pcap")))["pppoe"] > 0


@pytest.mark.parametrize("name, src, dst", [
    ("bug-5758/input.pcap", "10.84.1.13", "145.220.21.40"),
    ("iponly-ipv6-range-01/input.pcap", "2001:db8::10", "2001:db8::ffff"),
])
def test_linktype_raw_decodes_ip(name, src, dst):
    pkts = decoded(one(name))
    assert all(p.ip_version in (4, 6) and p.anomalies == [] for p in pkts)
    assert {src, dst} <= {a for p in pkts for a in (p.src, p.dst)}


def test_raw_ipv6_icmp_echo():
    (pkt,) = decoded(one("iponly-ipv6-range-01/input.pcap"))
    assert (pkt.proto, pkt.icmp_type) == (58, 128)


def test_sll_and_sll2_decode_the_same_traffic():
    def flows(name):
        pkts = decoded(one(name))
        assert all(p.ip_version == 4 and p.anomalies == [] for p in pkts)
        return [(p.src, p.dst, p.proto, p.sport, p.dport, p.icmp_type, p.payload) for p in pkts]
    sll, sll2 = flows("lab-http-any-sll.pcap"), flows("lab-http-any-sll2.pcap")
    assert sll == sll2
    assert {"10.10.1.10", "10.10.2.20"} <= {a for f in sll for a in f[:2]}
    assert {6, 17, 1} <= {f[2] for f in sll}


def test_vlan_stacks():
    pkts = decoded(one("detect-vlan-id/input.pcap"))
    assert pkts[0].vlan == (200, 300, 400) and pkts[1].vlan == ()
    assert {p.vlan for p in decoded(one("q-in-q.pcap"))} == {(13, 10)}


def test_ipv4_fragmented_syn_over_vlan_reassembles():
    out, d = reassembled(one("frag-eth-vlan-ip-tcp-syn.pcap"))
    (syn,) = out
    assert (syn.src, syn.dst, syn.dport, syn.tcp_flags & 0x02, syn.vlan) == ("1.1.1.1", "2.2.2.2", 8080, 2, (6,))
    assert syn.pcap_cnt == 3 and d.stats["fragments"] == 3


def test_ipv6_fragments_on_linktype_ipv6_reassemble():
    (seg,) = reassembled(one("bug-6887-defrag-ipv6-tcp/frag-ip-tcp.pcap"))[0]
    assert (seg.ip_version, seg.proto, seg.dport, len(seg.payload)) == (6, 6, 8080, 1000)


def test_ipv6_fragmented_dns_reassembles():
    out, d = reassembled(one("ipv6-fragmented-dns.pcap"))
    big = [p for p in out if p.ip_version == 6 and p.sport == 53 and len(p.payload) > 1280]
    assert big and d.stats["reassembled"] >= 1


def test_zeek_fragment_overlaps_are_flagged():
    # An overlap discards its datagram, as Linux does: the anomaly is on the fragment that
    # overlapped (a duplicate with other bytes puts it on the datagram, which is delivered).
    for name in ("ipv4/fragmented-1.pcap", "ipv4/fragmented-4.pcap"):
        pkts, d = decoded(one(name)), Defragmenter()
        out = [o for o in map(d.feed, pkts) if o is not None]
        assert any("ipv4.frag_overlap" in p.anomalies for p in pkts + out)


def test_dns_amplification_fragments_reassemble():
    pkts = decoded(one("amp.dns.RRSIG.fragmented.pcap"))
    datagrams = {(p.src, p.dst, p.proto, p.frag[0]) for p in pkts if p.frag}
    d = Defragmenter()
    fed = {id(p) for p in pkts}
    whole = [o for o in map(d.feed, pkts) if o is not None and id(o) not in fed]  # new, reassembled
    # every datagram whose pieces were all captured comes out whole, as DNS from port 53
    assert len(whole) == d.stats["reassembled"] > 300
    assert all(o.sport == 53 and o.proto == 17 and o.anomalies == [] and len(o.payload) == o.length - 28
               for o in whole)
    # the rest are still held, incomplete (the capture missed some of their pieces)
    assert d.held_datagrams == len(datagrams) - d.stats["reassembled"]


def test_pcapng_and_gzip_captures_decode():
    assert [p.dport for p in decoded(one("local/http-get.pcapng"))][:1] == [80]
    assert sum(p.proto == 6 for p in decoded(one("local/http.pcap.gz"))) > 30
