"""CloudWatch: the figures /metrics exports, published with PutMetricData (control.cloudwatch).

A thread of the supervisor, beside the control server: every `interval` seconds it collects
the same prometheus_client registry /metrics is written from, so CloudWatch and Prometheus
never disagree on a figure. Counters are sent as the increase since the last successful
publish (CloudWatch sums them per period, as it does NAT Gateway's and Network Firewall's
counts); a counter that went down (a restarted worker starts at 0) counts its new value.
Gauges are sent as read. One dimension, InstanceId (IMDS; the host name when IMDS does not
answer, said in the log). A failed PutMetricData is logged and its increase goes out with
the next one.

The names mirror AWS's where one exists: NAT Gateway's PacketsDropCount and
ActiveConnectionCount, Network Firewall's ReceivedPackets, PassedPackets, DroppedPackets,
RejectedPackets, InvalidDroppedPackets. docs/operations.md has the table.
The endpoint is boto3's: AWS_ENDPOINT_URL_CLOUDWATCH (or AWS_ENDPOINT_URL) overrides it.
"""
import logging
import socket
import threading

log = logging.getLogger("appliance.cloudwatch")

BATCH = 20                     # metrics per PutMetricData (the long-standing API limit; 1000 since 2023)

# CloudWatch name -> (unit, [(prometheus sample name, {label: value} it must have)]); summed
COUNTERS = {
    "ReceivedPackets": [("appliance_chain_packets_total", {"chain": "APPLIANCE-FWD"})],
    "InspectedPackets": [("appliance_packets_total", {})],
    "PassedPackets": [("appliance_verdicts_total", {"action": "pass"}),
                      ("appliance_chain_packets_total", {"rule": "offloaded_pass"}),
                      ("appliance_fail_open_passes_total", {})],
    "DroppedPackets": [("appliance_verdicts_total", {"action": "drop"}),
                       ("appliance_chain_packets_total", {"rule": "offloaded_drop"}),
                       ("appliance_chain_packets_total", {"rule": "invalid_drop"}),
                       ("appliance_fail_closed_drops_total", {})],
    "RejectedPackets": [("appliance_verdicts_total", {"action": "reject"}),
                        ("appliance_chain_packets_total", {"rule": "offloaded_reject"})],
    "InvalidDroppedPackets": [("appliance_chain_packets_total", {"rule": "invalid_drop"})],
    "FailOpenPackets": [("appliance_fail_open_passes_total", {})],
    "QueueDroppedPackets": [("appliance_nfqueue_queue_dropped_total", {}),
                            ("appliance_nfqueue_user_dropped_total", {})],
    "OffloadedFlows": [("appliance_offloaded_flows_total", {})],
    "NewFlows": [("appliance_flows_total", {})],
    "EvictedFlows": [("appliance_flows_evicted_total", {})],
    "Alerts": [("appliance_alerts_total", {})],
    "InspectionErrors": [("appliance_inspection_errors_total", {})],
    "EveEventsLost": [("appliance_eve_lost_total", {})],
}
COUNTERS["PacketsDropCount"] = COUNTERS["DroppedPackets"] + COUNTERS["RejectedPackets"]   # NAT Gateway's
GAUGES = {
    "ActiveConnectionCount": [("appliance_conntrack_entries", {})],
    "ConntrackMax": [("appliance_conntrack_max", {})],
    "ActiveFlows": [("appliance_flows_active", {})],
    "WorkersUp": [("appliance_worker_up", {})],
    "QueuedPacketsWaiting": [("appliance_nfqueue_queue_total", {})],
}


def samples(registry):
    """{(sample name, sorted labels): value} of everything the registry collects now."""
    out = {}
    for family in registry.collect():
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _sum(now, wanted, value_of):
    total, seen = 0.0, False
    for key in now:
        name, labels = key
        for want, need in wanted:
            if name == want and all(dict(labels).get(k) == v for k, v in need.items()):
                total += value_of(key)
                seen = True
    return total if seen else None


def figures(now, before):
    """{CloudWatch name: value}: counters as the increase from `before`, gauges as they are.
    A figure /metrics does not export now (no kernel counters yet) is left out, not sent as 0."""
    def increase(key):
        v, was = now[key], before.get(key, 0.0)
        return v - was if v >= was else v
    out = {}
    for name, wanted in COUNTERS.items():
        v = _sum(now, wanted, increase)
        if v is not None:
            out[name] = v
    for name, wanted in GAUGES.items():
        v = _sum(now, wanted, lambda k: now[k])
        if v is not None:
            out[name] = v
    return out


def instance_id():
    from appliance.aws import imds
    try:
        return imds.Imds(timeout=1.0, attempts=2).instance_id()
    except imds.ImdsError as e:
        host = socket.gethostname()
        log.warning("cloudwatch: no instance id from IMDS (%s); publishing with InstanceId=%s", e, host)
        return host


def region():
    import os
    from appliance.aws import imds
    if os.environ.get("AWS_DEFAULT_REGION"):
        return os.environ["AWS_DEFAULT_REGION"]
    try:
        return imds.check_region(imds.Imds(timeout=1.0, attempts=2).region(), "IMDS placement/region")
    except imds.ImdsError as e:
        log.error("cloudwatch: no region (AWS_DEFAULT_REGION unset, IMDS: %s): not publishing", e)
        return None


class Publisher:
    def __init__(self, settings, registry):
        self.settings, self.registry = settings, registry
        self.before = {}
        self.stopping = threading.Event()
        self.thread = None
        self.api = None
        self.dimensions = None
        self.published = 0                 # successful PutMetricData calls (the log says how many)

    def _connect(self):
        import boto3
        from botocore.config import Config
        where = region()
        if where is None:
            return False
        self.api = boto3.client("cloudwatch", region_name=where,
                                config=Config(retries={"max_attempts": 3, "mode": "standard"},
                                              connect_timeout=5, read_timeout=15))
        self.dimensions = [{"Name": "InstanceId", "Value": instance_id()}]
        return True

    def publish(self):
        """One round: collect, send the figures in batches. True when every batch went out."""
        from botocore.exceptions import BotoCoreError, ClientError
        now = samples(self.registry)
        figs = figures(now, self.before)
        resolution = 1 if self.settings.interval < 60 else 60
        data = [{"MetricName": name, "Dimensions": self.dimensions, "Value": float(v), "Unit": "Count",
                 "StorageResolution": resolution} for name, v in sorted(figs.items())]
        try:
            for i in range(0, len(data), BATCH):
                self.api.put_metric_data(Namespace=self.settings.namespace, MetricData=data[i:i + BATCH])
        except (BotoCoreError, ClientError) as e:
            log.error("cloudwatch: PutMetricData to %s failed (%s); the increase goes out with the next one",
                      self.settings.namespace, e)
            return False
        self.before = now
        self.published += 1
        return True

    def _loop(self):
        try:
            if not self._connect():
                return
        except Exception as e:               # a bad endpoint URL, no boto3: said, the datapath goes on
            log.error("cloudwatch: cannot publish: %s", e)
            return
        log.info("cloudwatch: publishing %d figures to namespace %s every %ss (InstanceId %s)",
                 len(COUNTERS) + len(GAUGES), self.settings.namespace, self.settings.interval,
                 self.dimensions[0]["Value"])
        while not self.stopping.wait(self.settings.interval):
            try:
                self.publish()
            except Exception as e:           # never take the supervisor down for a metric
                log.error("cloudwatch: publish failed: %r", e)
        try:
            self.publish()                   # what the last period counted
        except Exception as e:
            log.error("cloudwatch: last publish failed: %r", e)

    def start(self):
        self.thread = threading.Thread(target=self._loop, name="cloudwatch", daemon=True)
        self.thread.start()

    def stop(self, timeout=10.0):
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout)
