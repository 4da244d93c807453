"""The flow lookup's typed pieces (docs/performance-passes.md, "The flow lookup typed"): the table an
extension type in the compiled twin, the idle timeout read from a table derived from TIMEOUTS,
and a new flow's HOME_NET direction read from its first packet's own addresses."""
import pytest
from scapy.all import ICMP, IP, TCP, UDP, raw

from appliance import compiled
from appliance.decode import decode_l3
from appliance.detect.loader import load_rules
from appliance.flow import DEFAULT_TIMEOUTS, STATES, TIMEOUTS, FlowTable, timeout
from appliance.inspector import Inspector, Settings


def test_the_timeout_of_every_protocol_and_state_is_timeouts_own():
    table = FlowTable()
    frames = {6: IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1000, dport=80, flags="S"),
              17: IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1000, dport=53),
              1: IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=8, id=1),
              47: IP(src="10.0.0.1", dst="10.0.0.2", proto=47) / b"\0\0\x08\0"}     # GRE: no entry of its own
    for proto, frame in frames.items():
        flow, _, _ = table.lookup(decode_l3(raw(frame), 1.0))
        assert flow.proto == proto
        for state in STATES:
            flow.state = state
            assert timeout(flow) == TIMEOUTS.get(proto, DEFAULT_TIMEOUTS).get(state, 30), (proto, state)


def test_a_flow_is_filed_by_its_timeout():
    # the queue a flow sits in is its (class, timeout): expiry reads the timeout off the queue
    table = FlowTable()
    flow, _, _ = table.lookup(decode_l3(raw(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1000, dport=80,
                                                                                    flags="S")), 1.0))
    assert [(cls, t) for cls, queues in enumerate(table.queues) for t, q in queues.items() if q] == \
        [(1, TIMEOUTS[6]["new"])]
    assert table.expire(1.0 + TIMEOUTS[6]["new"] - 0.5) == []
    assert table.expire(1.0 + TIMEOUTS[6]["new"]) == [flow]


@pytest.mark.parametrize("first, direction", [
    # the initiator (the SYN's sender, the SYN/ACK's receiver) outside HOME_NET, the responder in it
    (IP(src="198.51.100.7", dst="10.0.0.5") / TCP(sport=40000, dport=80, flags="S"), "inbound"),
    (IP(src="10.0.0.5", dst="198.51.100.7") / TCP(sport=80, dport=40000, flags="SA"), "inbound"),
    (IP(src="10.0.0.5", dst="198.51.100.7") / ICMP(type=0, id=9), "inbound"),
    (IP(src="10.0.0.5", dst="198.51.100.7") / TCP(sport=40000, dport=80, flags="S"), "outbound"),
    (IP(src="198.51.100.7", dst="10.0.0.5") / TCP(sport=80, dport=40000, flags="SA"), "outbound"),
    (IP(src="10.0.0.5", dst="10.0.0.6") / TCP(sport=40000, dport=80, flags="SA"), "any"),
])
def test_home_net_direction_is_the_initiators_whichever_end_is_seen_first(tmp_path, first, direction):
    path = tmp_path / "rules.yaml"
    path.write_text("vars: {HOME_NET: [10.0.0.0/8]}\nrules:\n  - {id: 1, action: pass, proto: tcp, dst_port: 80}\n")
    insp = Inspector(load_rules(path), Settings(verify_checksums=False))
    flow = insp.process(decode_l3(raw(first), 1.0)).flow
    assert flow.direction == direction


def test_the_compiled_table_holds_its_fields_as_struct_members():
    # _c_flow.pxd makes FlowTable an extension type: a field __init__ sets that the .pxd does
    # not declare would fail there (no instance dict to fall back to)
    import appliance.flow as flow
    if "appliance.flow" not in compiled.active:
        pytest.skip("flow runs as pure Python here (" + compiled.describe() + ")")
    table = flow.FlowTable(10, True, frozenset({80}))
    assert not hasattr(table, "__dict__")
    assert (table.max_flows, table.verify_checksums, table.proxied_ports) == (10, True, frozenset({80}))
    flow_, _, _ = table.lookup(decode_l3(raw(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2)), 1.0))
    assert (len(table), table.total, table.by_proto, list(table.flows.values())) == (1, 1, {17: 1}, [flow_])
