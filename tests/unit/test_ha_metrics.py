"""The HA figures of /metrics, from `appliance ha`'s status file, in the Prometheus text format
prometheus_client writes (the live endpoint: tests/aws/test_ha_sync_netns.py)."""
import json
import os

from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

from appliance.control.ha_metrics import ha_metrics
from appliance.ha.settings import Ha


def scrape(path, now):
    class Collector:
        def collect(self):
            yield from ha_metrics(Ha(status_file=str(path)), now=lambda: now)
    reg = CollectorRegistry(auto_describe=False)
    reg.register(Collector())
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in generate_latest(reg).decode().splitlines() if line and not line.startswith("#")}


STATUS = {"state": "primary", "route_owner": "self", "takeovers": 1, "transitions": 2,
          "peer_heartbeat_epoch": 1000.0, "packets": {"accepted": 40, "forged": 1},
          "sync": {"running": True, "restarts": 0, "actions": {"commit": {"ok": 1, "failed": 0}},
                   "counters": {"internal_entries": 7, "external_entries": 3, "sync_lost_messages": 0}}}


def test_status_to_metrics(tmp_path):
    p = tmp_path / "ha.json"
    p.write_text(json.dumps(STATUS))
    os.utime(p, (1000.0, 1000.0))
    m = scrape(p, now=1002.5)
    assert m["appliance_ha_status_readable"] == 1 and m["appliance_ha_status_age_seconds"] == 2.5
    assert m['appliance_ha_state{state="primary"}'] == 1 and m['appliance_ha_state{state="standby"}'] == 0
    assert m['appliance_ha_route_owner{owner="self"}'] == 1
    assert m["appliance_ha_transitions_total"] == 2 and m["appliance_ha_takeovers_total"] == 1
    assert m["appliance_ha_last_heartbeat_age_seconds"] == 2.5
    assert m['appliance_ha_packets_total{outcome="forged"}'] == 1
    assert m["appliance_ha_sync_up"] == 1
    assert m['appliance_ha_sync_actions_total{action="commit",result="ok"}'] == 1
    assert m['appliance_ha_sync_entries{cache="internal"}'] == 7
    assert m["appliance_ha_sync_lost_messages_total"] == 0


def test_no_heartbeat_no_sync_and_unreadable(tmp_path):
    p = tmp_path / "ha.json"
    p.write_text(json.dumps({**STATUS, "peer_heartbeat_epoch": None, "sync": None}))
    m = scrape(p, now=2e9)
    assert "appliance_ha_last_heartbeat_age_seconds" not in m and "appliance_ha_sync_up" not in m
    assert m['appliance_ha_state{state="primary"}'] == 1
    for text in ("", "{trunc", "[1, 2]"):
        p.write_text(text)
        assert scrape(p, now=0) == {"appliance_ha_status_readable": 0}
    assert scrape(tmp_path / "missing.json", now=0) == {"appliance_ha_status_readable": 0}
