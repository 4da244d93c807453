"""/metrics: the Prometheus text format, written by prometheus_client from the workers'
latest snapshots and what the kernel says at scrape time (nothing is kept per scrape).

Label cardinality is bounded: queue (workers), action (3), sid (control.top + "other"),
event (anomaly names: a fixed set in the code), family/chain/rule (our chains' rules).
"""
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import CollectorRegistry
from prometheus_client.exposition import generate_latest, CONTENT_TYPE_LATEST

from . import kernel

__all__ = ["registry", "CONTENT_TYPE_LATEST", "generate_latest"]


def _per_worker(snaps, name, doc, key, kind=CounterMetricFamily):
    m = kind(name, doc, labels=["queue"])
    for q, s in sorted(snaps.items()):
        m.add_metric([str(q)], s[key])
    return m


def worker_metrics(board):
    snaps, _ = board.snapshots()
    yield _per_worker(snaps, "appliance_packets", "Packets the worker received from its NFQUEUE queue", "packets")
    yield _per_worker(snaps, "appliance_bytes", "Bytes of the packets inspected", "bytes")
    v = CounterMetricFamily("appliance_verdicts", "Verdicts given, by action", labels=["queue", "action"])
    for q, s in sorted(snaps.items()):
        for action, n in sorted(s["verdicts"].items()):
            v.add_metric([str(q), action], n)
    yield v
    w = CounterMetricFamily("appliance_monitor_would_block",
                            "Packets monitor mode passed that enforce mode would have dropped/rejected",
                            labels=["queue", "action"])
    for q, s in sorted(snaps.items()):
        for action, n in sorted(s.get("would_block", {}).items()):
            w.add_metric([str(q), action], n)
    yield w
    yield _per_worker(snaps, "appliance_offloaded_flows",
                      "Flows handed to the kernel fast path (connmark) once decided", "offloaded")
    yield _per_worker(snaps, "appliance_alerts", "Alert events", "alerts")
    errors = CounterMetricFamily("appliance_inspection_errors",
                                 "Packets whose inspection failed (verdict by failure policy), by where",
                                 labels=["queue", "where"])
    for q, s in sorted(snaps.items()):
        errors.add_metric([str(q), "worker"], s["errors"])
        errors.add_metric([str(q), "inspector"], s["internal_errors"])
    yield errors
    yield _per_worker(snaps, "appliance_reject_sent", "Reject answers sent (TCP RST, ICMP unreachable)",
                      "reject_sent")
    yield _per_worker(snaps, "appliance_flows_active", "Flows in the worker's table", "flows_active",
                      GaugeMetricFamily)
    yield _per_worker(snaps, "appliance_flows", "Flows created", "flows_total")
    yield _per_worker(snaps, "appliance_flows_evicted", "Flows evicted because the table was full",
                      "flows_evicted")
    ended = CounterMetricFamily("appliance_flows_ended", "Flows ended, by reason", labels=["queue", "reason"])
    for q, s in sorted(snaps.items()):
        for reason, n in sorted(s["flows_ended"].items()):
            ended.add_metric([str(q), reason or "unknown"], n)
    yield ended
    yield _per_worker(snaps, "appliance_eve_lost", "EVE events not written (disk full, I/O error)", "eve_lost")

    anomalies = {}
    rules, total_alerts = {}, 0
    for s in snaps.values():
        for name, n in s["anomalies"].items():
            anomalies[name] = anomalies.get(name, 0) + n
        for sid, _msg, n in s["rules_top"]:
            rules[sid] = rules.get(sid, 0) + n
        total_alerts += s["alerts"]
    a = CounterMetricFamily("appliance_anomalies", "Anomalies seen, by event (written or not)", labels=["event"])
    for name, n in sorted(anomalies.items()):
        a.add_metric([name], n)
    yield a
    top = sorted(rules.items(), key=lambda kv: (-kv[1], str(kv[0])))[:board.cfg.control.top]
    r = CounterMetricFamily("appliance_rule_alerts",
                            f"Alerts by rule: the top {board.cfg.control.top} sids, the rest as sid=\"other\"",
                            labels=["sid"])
    for sid, n in top:
        r.add_metric([str(sid)], n)
    r.add_metric(["other"], max(0, total_alerts - sum(n for _, n in top)))
    yield r

    up = GaugeMetricFamily("appliance_worker_up", "1 when the queue's worker answers (a snapshot within 3 s)",
                           labels=["queue"])
    for q in board.cfg.queues:
        up.add_metric([str(q)], 1.0 if board.fresh(q) else 0.0)
    yield up


def appliance_metrics(board):
    # the configured mode (the workers take it with the reload: appliance_worker_mode)
    mode = GaugeMetricFamily("appliance_mode", "1 for the mode the appliance runs in (enforce, monitor)",
                             labels=["mode"])
    for m in ("enforce", "monitor"):
        mode.add_metric([m], 1.0 if board.cfg.mode == m else 0.0)
    yield mode
    yield CounterMetricFamily("appliance_worker_restarts", "Workers restarted after they died",
                              value=board.restarts)
    rel = CounterMetricFamily("appliance_reloads", "SIGHUP reloads, by result", labels=["result"])
    for result, n in sorted(board.reloads.items()):
        rel.add_metric([result], n)
    yield rel
    rules = board.rules
    yield InfoMetricFamily("appliance_ruleset", "The running rule set's version",
                           value={"hash": rules["hash"], "default_action": rules["default_action"]})
    yield GaugeMetricFamily("appliance_ruleset_rules", "Rules in the running rule set", value=rules["rules"])
    yield GaugeMetricFamily("appliance_ruleset_loaded_timestamp_seconds", "When the running rule set was loaded",
                            value=rules["loaded"])
    yield GaugeMetricFamily("appliance_start_timestamp_seconds", "When `appliance run` started",
                            value=board.started)


def kernel_metrics(board):
    queues = kernel.queues()
    ours = {q: v for q, v in queues.items() if q in board.cfg.bound_queues}
    for name, key, doc, kind in (
            ("appliance_nfqueue_queue_total", "waiting", "Packets waiting in the NFQUEUE queue now", GaugeMetricFamily),
            ("appliance_nfqueue_queue_dropped", "dropped", "Packets the kernel dropped: the queue was full "
             "(failure_mode closed)", CounterMetricFamily),
            ("appliance_nfqueue_user_dropped", "user_dropped", "Packets the kernel could not hand to the "
             "worker's socket (receive buffer full)", CounterMetricFamily),
            ("appliance_nfqueue_queued", "queued", "Packets queued to the worker (id_sequence)", CounterMetricFamily)):
        m = kind(name, doc, labels=["queue"])
        for q, v in sorted(ours.items()):
            m.add_metric([str(q)], v[key])
        yield m
    chains = kernel.chain_counters()
    pk = CounterMetricFamily("appliance_chain_packets", "Packets through each rule of our netfilter chains",
                             labels=["family", "chain", "rule"])
    by = CounterMetricFamily("appliance_chain_bytes", "Bytes through each rule of our netfilter chains",
                             labels=["family", "chain", "rule"])
    sent = 0
    for family, chain, role, p, b in chains:
        pk.add_metric([f"ipv{family}", chain, role], p)
        by.add_metric([f"ipv{family}", chain, role], b)
        if role in ("queued", "queued_new"):
            sent += p
    yield pk
    yield by
    unqueued = max(0, sent - board.queued_since_install(ours))
    if board.cfg.fail_open:
        yield CounterMetricFamily("appliance_fail_open_passes",
                                  "Packets our NFQUEUE rule sent that no worker took (queue full, no worker) "
                                  "and the kernel passed uninspected (failure_mode open); since the chains "
                                  "were last installed", value=unqueued)
    else:
        yield CounterMetricFamily("appliance_fail_closed_drops",
                                  "Packets our NFQUEUE rule sent that no worker took and the kernel dropped "
                                  "(failure_mode closed, no worker); since the chains were last installed",
                                  value=unqueued)
    ct = kernel.conntrack()
    if "count" in ct:
        yield GaugeMetricFamily("appliance_conntrack_entries", "Connections conntrack tracks", value=ct["count"])
    if "max" in ct:
        yield GaugeMetricFamily("appliance_conntrack_max", "nf_conntrack_max: the table's limit", value=ct["max"])


class _Collector:
    def __init__(self, board):
        self.board = board

    def collect(self):
        yield from worker_metrics(self.board)
        yield from appliance_metrics(self.board)
        yield from kernel_metrics(self.board)
        if getattr(self.board.cfg, "ha", None) is not None:      # `appliance ha` beside us: its state
            from .ha_metrics import ha_metrics
            yield from ha_metrics(self.board.cfg.ha)


def registry(board) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Collector(board))
    return reg
