"""/metrics for the HA pair: what `appliance ha` last wrote to its status file (ha.status_file),
read at scrape time. The two are separate processes (the HA service must outlive a datapath
restart), so the file is their interface; its age says whether the HA service still writes it
(it does every ha.interval), and an unreadable file is a 0 in appliance_ha_status_readable,
not figures from an older read.
"""
import json
import os
import time

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

STATES = ("primary", "standby", "fault")


def read_status(path):
    """(status dict, mtime) or (None, None) when it cannot be read."""
    try:
        with open(path) as f:
            st = json.load(f)
        mtime = os.stat(path).st_mtime
        return (st, mtime) if isinstance(st, dict) else (None, None)
    except (OSError, ValueError):
        return None, None


def ha_metrics(ha, now=time.time):
    st, mtime = read_status(ha.status_file)
    yield GaugeMetricFamily("appliance_ha_status_readable",
                            f"1 when `appliance ha`'s status file ({ha.status_file}) could be read", value=1 if st else 0)
    if not st:
        return
    t = now()
    yield GaugeMetricFamily("appliance_ha_status_age_seconds", "Seconds since `appliance ha` last wrote its status "
                            "(it writes every ha.interval: a growing age is a stopped HA service)", value=t - mtime)
    state = GaugeMetricFamily("appliance_ha_state", "1 for this node's HA state", labels=["state"])
    for s in STATES:
        state.add_metric([s], 1.0 if st.get("state") == s else 0.0)
    yield state
    owner = GaugeMetricFamily("appliance_ha_route_owner", "1 for who the VPC routes point at, as last read from EC2",
                              labels=["owner"])
    for o in ("self", "peer", "unknown"):
        owner.add_metric([o], 1.0 if st.get("route_owner") == o else 0.0)
    yield owner
    yield CounterMetricFamily("appliance_ha_transitions", "HA state changes since `appliance ha` started",
                              value=st.get("transitions", 0))
    yield CounterMetricFamily("appliance_ha_takeovers", "Takeovers (routes moved to this node) since `appliance ha` "
                              "started", value=st.get("takeovers", 0))
    hb = st.get("peer_heartbeat_epoch")
    if isinstance(hb, (int, float)):
        yield GaugeMetricFamily("appliance_ha_last_heartbeat_age_seconds", "Seconds since the peer's last accepted "
                                "heartbeat (absent: none yet)", value=max(0.0, t - hb))
    packets = CounterMetricFamily("appliance_ha_packets", "HA datagrams received, by outcome", labels=["outcome"])
    for outcome, n in sorted((st.get("packets") or {}).items()):
        packets.add_metric([outcome], n)
    yield packets
    sync = st.get("sync")
    if not isinstance(sync, dict):
        return
    yield GaugeMetricFamily("appliance_ha_sync_up", "1 when the conntrackd `appliance ha` runs is alive",
                            value=1 if sync.get("running") else 0)
    yield CounterMetricFamily("appliance_ha_sync_restarts", "conntrackd restarts after it exited",
                              value=sync.get("restarts", 0))
    acts = CounterMetricFamily("appliance_ha_sync_actions", "conntrackd actions on transitions (commit, flush, "
                               "resync_kernel, bulk_send, request_resync, purge_timers), by result",
                               labels=["action", "result"])
    for action, n in sorted((sync.get("actions") or {}).items()):
        for result in ("ok", "failed"):
            acts.add_metric([action, result], n.get(result, 0))
    yield acts
    c = sync.get("counters") or {}
    entries = GaugeMetricFamily("appliance_ha_sync_entries", "conntrackd cache entries: internal (ours, sent to "
                                "the peer), external (the peer's, committed on takeover)", labels=["cache"])
    for cache in ("internal", "external"):
        if f"{cache}_entries" in c:
            entries.add_metric([cache], c[f"{cache}_entries"])
    yield entries
    for key, doc in (("sync_bytes_sent", "Bytes conntrackd sent to the peer"),
                     ("sync_bytes_received", "Bytes conntrackd received from the peer"),
                     ("sync_lost_messages", "Sync messages conntrackd found lost (sequence gaps)"),
                     ("sync_malformed_messages", "Malformed sync messages received")):
        if key in c:
            yield CounterMetricFamily(f"appliance_ha_{key}", doc, value=c[key])
