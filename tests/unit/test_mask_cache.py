"""The Detector's interned candidate masks are bounded (engine.MASK_CACHE_BYTES).

Flows share one int per distinct header mask (Detector._header). A spoofed scan against
rules on many source ranges and many ports makes one mask per (source range x port): the
cache grew with the traffic until the next reload (250,000 masks, ~200 MB, in review). It
only interns, so clearing it when full changes no result.
"""
import struct
import sys

from appliance.decode import decode_l3
from appliance.detect import engine
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings

FILLER, N = 3000, 100      # filler rules first, so the masks of the src/port rules are wide ints


def scan_rules(path):
    out = ["rules:"]
    rid = 1
    for k in range(FILLER):
        out.append(f"  - {{id: {rid}, action: alert, proto: udp, dst_port: {1 + k}}}")
        rid += 1
    for i in range(N):
        out.append(f"  - {{id: {rid}, action: alert, proto: tcp, src: 10.0.{i}.0/24, tcp_flags: F}}")
        rid += 1
    for j in range(N):
        out.append(f"  - {{id: {rid}, action: alert, proto: tcp, dst_port: {2000 + j}, tcp_flags: F}}")
        rid += 1
    path.write_text("\n".join(out) + "\n")
    return str(path)


def syn(i, j):
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0x4000, 64, 6, 0, bytes([10, 0, i, j]), b"\xc6\x33\x64\x07")
    return ip + struct.pack("!HHIIBBHHH", 40000, 2000 + j, 1, 0, 0x50, 0x02, 65535, 0, 0)


def test_scan_does_not_grow_the_mask_cache(tmp_path):
    insp = Inspector(load_rules([scan_rules(tmp_path / "r.yaml")]), Settings(max_flows=1000))
    det = insp.detector
    assert det._masks_max < N * N          # the scan makes more distinct masks than the cache holds
    seen, most, n = set(), 0, 0
    for i in range(N):
        for j in range(N):
            v = insp.process(decode_l3(syn(i, j), 1.0 + n * 1e-4))
            n += 1
            seen.add(v.flow.cand_ts)
            most = max(most, len(det._masks))
    assert len(seen) == N * N
    assert 0 < most <= det._masks_max
    # what it holds, really: the table and the ints
    held = sys.getsizeof(det._masks) + sum(sys.getsizeof(m) for m in det._masks)
    assert held <= engine.MASK_CACHE_BYTES
    # a mask seen again is the interned one (flows still share it)
    again = insp.process(decode_l3(syn(N - 1, N - 1), 2.0)).flow.cand_ts
    assert again is det._masks[again]
