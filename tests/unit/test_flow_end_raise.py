"""Review (rvdec): a source's on_flow_end callback (GENEVE: FlowSets.ended -> nft) that raises while
process() ends a flow evicted for the packet must not make process() raise (its docstring:
"Never raises"), and the ended flow is counted and handed to the callback once."""
import socket
import struct

import pytest

from appliance.decode import decode_l3
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings
from appliance.output.eve import EveList

RULES = "rules:\n  - {id: 1, action: drop, proto: udp, dst_port: 9999}\n"


def udp(sport, dport=9999):
    body = struct.pack("!HHHH", sport, dport, 8 + 4, 0) + b"abcd"
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 1, 0x4000, 64, 17, 0,
                       socket.inet_aton("10.0.0.1"), socket.inet_aton("10.0.0.2")) + body


class NftGone:
    """An on_flow_end whose kernel side fails (e.g. nft's process gone): it raises each time."""

    def __init__(self):
        self.calls = 0

    def __call__(self, flow):
        self.calls += 1
        raise OSError("nft: broken pipe")


def test_on_flow_end_raising_for_an_evicted_flow_never_makes_process_raise(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    insp = Inspector(load_rules(path), Settings(max_flows=1, eve_types=("anomaly", "flow")), EveList())
    insp.on_flow_end = cb = NftGone()
    first = insp.process(decode_l3(udp(40000), 1.0))
    assert first.flow.final
    v = insp.process(decode_l3(udp(40001), 1.1))      # the table is full: the first flow is evicted
    assert v.action == "drop"
    assert cb.calls == 1                               # handed to the callback once, not again by the error path
    assert sum(insp.counters.flows_ended.values()) == 1
    assert insp.counters.internal_errors == 1


class FlowWriteFailsOnce:
    """An EVE sink whose first flow event fails (a bug on the way out)."""

    def __init__(self):
        self.events, self.failed = [], False

    def write(self, event):
        if event["event_type"] == "flow" and not self.failed:
            self.failed = True
            raise RuntimeError("sink failed")
        self.events.append(event)


def test_a_flow_whose_end_failed_midway_is_not_ended_again_by_the_error_path(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    insp = Inspector(load_rules(path), Settings(max_flows=1, eve_types=("anomaly", "flow")), FlowWriteFailsOnce())
    ended = []
    insp.on_flow_end = ended.append
    insp.process(decode_l3(udp(40000), 1.0))
    v = insp.process(decode_l3(udp(40001), 1.1))
    assert v.action == "drop" and insp.counters.internal_errors == 1
    assert len(ended) == 1 and sum(insp.counters.flows_ended.values()) == 1


@pytest.mark.parametrize("end", ["tick", "close"])
def test_one_flows_failing_end_does_not_lose_the_others(tmp_path, end):
    # tick(): FlowTable.expire has already taken every idle flow out of the table; close()
    # (the end of a capture, a worker's shutdown) drains it the same way. One flow whose end
    # fails (its flow event's write) must not leave the rest un-ended: no flow event, no
    # on_flow_end (GWLB: their kernel elements stay), their _kernel/pcap-ring entries kept
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    insp = Inspector(load_rules(path), Settings(eve_types=("anomaly", "flow")), sink := FlowWriteFailsOnce())
    ended = []
    insp.on_flow_end = ended.append
    for port in (40000, 40001, 40002):
        insp.process(decode_l3(udp(port), 1.0))
    insp.tick(1000.0) if end == "tick" else insp.close()
    assert len(insp.flows.flows) == 0
    assert len(ended) == 3 and sum(insp.counters.flows_ended.values()) == 3
    assert len([e for e in sink.events if e["event_type"] == "flow"]) == 2
    assert insp.counters.internal_errors == 1
