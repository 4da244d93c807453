"""A SYN flood through the lab appliance (bench/flood.py, bounded in count and time) while
a legitimate client keeps connecting: no worker dies, memory stays within the flow table's
bound, the EVE file does not grow with the flood. The figures are printed (pytest -s) and
kept in docs/performance.md; nothing here is timed."""
import os

import pytest

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates network namespaces")]

MAX_FLOWS = 5000
PER_FLOW_BOUND = 2048            # bytes of RSS per flow-table entry, with room (docs/performance.md)


def test_syn_flood_is_bounded_and_survived():
    from bench.lab_flood import run
    r = run(syns=60_000, rate=30_000, max_flows=MAX_FLOWS, workers=2, legit_seconds=3)
    assert r["syns_sent"] == 60_000
    assert r["worker_restarts"] == 0 and r["new_pids"] == 0 and r["shutdown"] == "exit 0"
    # 12 flow tables' worth of new flows went through: memory follows the table, not the flood
    growth = (r["rss_peak_mib"] - r["rss_base_mib"]) * 1024 * 1024
    assert growth <= r["workers"] * MAX_FLOWS * PER_FLOW_BOUND + 8 * 1024 * 1024, r
    # flow/anomaly events are aggregated under a flood: far less than one event per SYN
    assert r["eve_bytes_per_syn"] < 5, r
    assert r["eve_flows_flushed_at_stop"] <= r["workers"] * MAX_FLOWS, r
    assert r["legit_conns_during"] > 0, r
