"""Review (rvmem), older than the packed key: a GWLB ICMP error that arrives in fragments loses
its endpoint. The source sets `p.quote.tunnel` on the datagram it decoded (gwlb.py), but a
fragment has no quote; the Defragmenter re-decodes the whole datagram and copies
`out.tunnel`, not `out.quote.tunnel`. Every GWLB flow's key carries the endpoint, so the
reassembled error's quote keys to no flow (icmp_error.quoted_flow: None) and is judged by
the ICMP rules alone instead of with the connection it quotes (a dropped flow's errors pass)."""
import struct
from socket import AF_INET, inet_pton

from appliance.decode import decode_l3
from appliance.defrag import Defragmenter
from appliance.flow import FlowTable, flow_key
from appliance.icmp_error import quoted_flow

A, B = inet_pton(AF_INET, "10.1.0.2"), inet_pton(AF_INET, "10.2.0.2")
ENI = 0x0A00000100000007


def ipv4(src, dst, proto, body, ident=0, frag=0x4000):
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), ident, frag, 64, proto, 0, src, dst) + body


def test_reassembled_icmp_error_keeps_the_endpoint_of_its_quote():
    table = FlowTable()
    syn = decode_l3(ipv4(A, B, 6, struct.pack("!HHIIBBHHH", 40000, 23, 1, 0, 0x50, 0x02, 65535, 0, 0)), 1.0)
    syn.tunnel = ENI
    flow, _, _ = table.lookup(syn)
    # B's router answers with an ICMP unreachable quoting the SYN, padded past one fragment
    quote = ipv4(A, B, 6, struct.pack("!HHI", 40000, 23, 1))[:28]
    icmp = struct.pack("!BBHI", 3, 1, 0, 0) + quote + bytes(64)
    whole = icmp
    one = ipv4(B, A, 1, whole[:48], ident=77, frag=0x2000)          # MF, offset 0
    two = ipv4(B, A, 1, whole[48:], ident=77, frag=48 // 8)          # last piece
    d = Defragmenter()
    out = None
    for raw in (one, two):
        p = decode_l3(raw, 2.0)
        p.tunnel = ENI                                                # as GwlbSource sets it
        if p.quote is not None:
            p.quote.tunnel = ENI
        out = d.feed(p)
    assert out is not None and out.frag is None and out.quote is not None and out.tunnel == ENI
    assert out.quote.tunnel == ENI
    assert quoted_flow(table, out) is flow and flow_key(out.quote) == flow.key
