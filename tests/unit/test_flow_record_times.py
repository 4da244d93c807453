"""A flow record's times: `end` is the flow's last packet, the event's own timestamp is that
same moment, `start` its first packet, `age` the whole seconds between (events.flow formats
the end once for both fields; review rvnames: no test read `flow.end`)."""
from appliance.flow import FlowTable
from appliance.output import events
from appliance.output.eve import timestamp
from appliance.packet import ACK, SYN, UDP

from test_flow import c2s, s2c


def test_a_flow_record_ends_at_its_last_packet():
    t = FlowTable()
    f, _, _ = t.lookup(c2s(SYN, ts=1258832829.25))
    t.lookup(s2c(SYN | ACK, ts=1258832830.5))
    t.lookup(c2s(ACK, ts=1258832832.75))
    ev = events.flow(f)
    assert ev["flow"]["start"] == timestamp(1258832829.25) == "2009-11-21T19:47:09.250000+0000"
    assert ev["flow"]["end"] == ev["timestamp"] == timestamp(1258832832.75) == "2009-11-21T19:47:12.750000+0000"
    assert ev["flow"]["age"] == 3


def test_a_one_packet_flow_starts_and_ends_at_once():
    t = FlowTable()
    f, _, _ = t.lookup(c2s(0, proto=UDP, ts=1258832829.5))
    ev = events.flow(f)
    assert ev["flow"]["start"] == ev["flow"]["end"] == ev["timestamp"] == timestamp(1258832829.5)
