"""The compiled Flow (appliance/_c_flow.pxd) holds numbers and flags in C fields: each
field must read back what the pure Flow would (None vs 0, bool vs int, 64-bit counters,
a string where one is stored), in whichever build runs here (the fast suite runs the
compiled one when built; tests/replay/test_compiled_equivalence.py compares whole runs)."""
import struct

from appliance.decode import decode_l3
from appliance.flow import FlowTable


def syn(i, seq=0x10000000):
    src = struct.pack("!BBBB", 10, (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0x4000, 64, 6, 0, src, b"\xc6\x33\x64\x07")
    return ip + struct.pack("!HHIIBBHHH", 1024, 443, seq, 0, 0x50, 0x02, 65535, 0, 0)


def new_flow(ts=1.0, seq=0x10000000):
    flow, _, _ = FlowTable().lookup(decode_l3(syn(1, seq), ts))
    return flow


def test_isn_none_zero_and_the_largest_read_back():
    flow = new_flow(seq=0)
    assert flow.isn == 0 and flow.isn is not None          # an ISN of 0 is an ISN
    flow.isn = None
    assert flow.isn is None
    flow.isn = 0xFFFFFFFF
    assert flow.isn == 0xFFFFFFFF
    udp = new_flow()
    udp.isn = None
    assert udp.isn is None


def test_counters_pass_4_gib():
    flow = new_flow()
    flow.bytes_ts += 5 << 32
    flow.inspected_bytes = 1 << 40
    assert flow.bytes_ts == (5 << 32) + 40 and flow.inspected_bytes == 1 << 40
    assert type(flow.bytes_ts) is int


def test_flags_stay_bools_and_offloaded_keeps_its_name():
    flow = new_flow()
    assert flow.final is False and flow.alerted is False and flow.offloaded is False
    flow.final, flow.alerted = True, True
    assert flow.final is True and flow.alerted is True
    flow.offloaded = "kernel_policy"                     # detect.kernel_policy.KERNEL_DECIDED
    assert flow.offloaded == "kernel_policy"


def test_times_are_floats_and_the_flow_id_does_not_depend_on_int_or_float():
    # a C double reads back 5.0 for a flow started at 5: the flow_id hashes float(start),
    # so both builds give the same id for the same packets
    a, b = new_flow(ts=5), new_flow(ts=5.0)
    assert a.start == 5.0 and type(b.start) is float and type(b.last) is float
    assert a.id == b.id
    assert 0 <= a.id < 1 << 53
