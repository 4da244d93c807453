"""What one tracked flow costs (issue 15: a compact flow table). Counted with tracemalloc
over FlowTable.lookup of distinct SYNs, so the figure is the table's own: the Flow, its
key, its strings and floats, the dict entry, the eviction queue's share. bench.memory
measures the same as RSS at 1M flows (docs/performance.md)."""
import gc
import struct
import sys
import tracemalloc

import pytest

from appliance.decode import decode_l3
from appliance.flow import Flow, FlowRare, FlowTable, flow_key

N = 20_000


def syn(i):
    src = struct.pack("!BBBB", 10, (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0x4000, 64, 6, 0, src, b"\xc6\x33\x64\x07")
    return ip + struct.pack("!HHIIBBHHH", 1024 + (i >> 24), 443, 0x10000000 + i, 0, 0x50, 0x02, 65535, 0, 0)


def bytes_per_flow():
    table = FlowTable(N + 10)
    packets = [decode_l3(syn(i), 1.0 + i * 1e-6) for i in range(N)]   # decoded first: not the table's
    for p in packets:     # nor the key's bounded text-to-bytes cache (a decoded packet carries
        flow_key(p)       # its raw addresses: no-op there; a hand-made one is keyed by its text)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for p in packets:
        table.lookup(p)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(table) == N
    return (after - before) / N


def test_a_flow_costs_no_queue_entry_and_no_rare_slots():
    # ~400 B here pure, ~350 compiled (Flow, packed key, ISN, dict entry); the key as a tuple
    # of address strings with src/dst/queue slots made it ~445, an OrderedDict queue entry
    # per flow (~90 B more) and the eight rarely set slots inline (64 B more) ~560
    assert bytes_per_flow() < 420


def test_a_flow_holds_no_address_text():
    """The addresses are in the packed key, raw: a flood's flow keeps no string of its
    sender's address (61 B for "10.x.y.z"); Flow.src makes it when read."""
    table = FlowTable()
    p = decode_l3(syn(70_001), 1.5)
    flow, _, _ = table.lookup(p)
    held = [x for x in gc.get_referents(flow) if type(x) is str]
    assert p.src not in held and p.dst not in held and flow.src == p.src and flow.dst == p.dst
    assert sys.getsizeof(flow.key) <= 48
    # nor port ints of its own (pure Python: flow._PORTS' shared ones; compiled: C fields)
    from appliance.flow import _PORTS
    ports = [x for x in gc.get_referents(flow) if type(x) is int and 256 < x < 65536]
    assert p.sport > 256 and all(x is _PORTS[x] for x in ports)


def test_rare_fields_read_their_defaults_without_an_object():
    table = FlowTable()
    flow, _, _ = table.lookup(decode_l3(syn(1), 1.0))
    for name, default in FlowRare.DEFAULTS.items():
        setattr(flow, name, default)              # what the Inspector writes on most flows
        assert getattr(flow, name) is default
    assert flow.rare is None
    flow.monitored = True
    assert flow.rare is not None and flow.monitored is True and flow.vars is None
    assert "monitored" not in Flow.__slots__ and "rare" in Flow.__slots__
    for name in ("vars", "midstream"):             # (review s16: compiled, NotImplementedError)
        with pytest.raises(AttributeError):
            delattr(flow, name)
    assert flow.monitored is True


@pytest.mark.skipif(Flow.__module__ != "appliance._c_flow", reason="compiled hot path not built")
def test_compiled_flow_holds_no_number_objects():
    """The compiled Flow keeps its times, counters, ISN, ports and flags in C fields: the
    objects it refers to (what the GC sees) include no int or float (an ISN int and the
    start float were 52 B a flow; docs/performance.md, the memory row)."""
    table = FlowTable()
    flow, _, _ = table.lookup(decode_l3(syn(70_000), 1.5))
    flow.pkts_ts += 1 << 33
    numbers = [type(x).__name__ for x in gc.get_referents(flow) if type(x) in (int, float)]
    assert numbers == [] and flow.isn == 0x10000000 + 70_000 and flow.start == 1.5
    # 13 object fields (one the rare long key), 9 of 8 B, 6 shorts, 10 bytes (state/verdict/
    # direction/reason, final/alerted, ...), the key's 8 address bytes, the headers: 240 B, a
    # pymalloc size class (was 272 with those four as pointers)
    assert sys.getsizeof(flow) <= 240
    assert [x for x in gc.get_referents(flow) if type(x) is bytes] == []   # the key: C fields


@pytest.mark.skipif(Flow.__module__ != "appliance._c_flow", reason="compiled hot path not built")
def test_compiled_flow_costs_what_its_closed_sets_and_key_left():
    """Compiled: ~270 B here (Flow 240, dict entry, the queue's share); ~317 with the key's
    48 B bytes object ("The flow is its own key"), 350 while state, verdict, direction and
    reason were pointers (docs/performance-passes.md, "Flow fields as bytes")."""
    assert bytes_per_flow() < 290
