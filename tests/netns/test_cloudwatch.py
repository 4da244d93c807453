"""control.cloudwatch: the /metrics figures published with PutMetricData to a moto server,
read back with list_metrics and get_metric_statistics. The appliance runs in its own
namespace and reaches moto and a local IMDSv2 (instance id, region) over loopback bridges,
through the standard overrides (AWS_ENDPOINT_URL_CLOUDWATCH, AWS_EC2_METADATA_SERVICE_ENDPOINT)."""
import datetime
import os
import re
import sys

import pytest

from datapath import appliances, curl, http_servers, topology, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "aws"))
from awsfakes import FakeImds, LoopbackBridge, MotoServer  # noqa: E402

pytestmark = pytest.mark.netns

RULES = """\
default_action: pass
rules:
  - {id: 1001, msg: "block tcp 8081", action: drop, proto: tcp, dst_port: 8081}
"""
PORT = 9911
NS = "ApplianceTest"


@pytest.fixture(scope="module")
def topo(tmp_path_factory):
    bench = topology(prefix="i12c")
    t = next(bench)
    try:
        with http_servers(t, tmp_path_factory.mktemp("i12cwww"), (8080, 8081)):
            yield t
    finally:
        bench.close()


@pytest.fixture
def aws(topo, monkeypatch):
    moto = MotoServer(no_auth_calls=10 ** 9)
    imds = FakeImds([])
    bridges = []
    try:
        bridges = [LoopbackBridge(topo.fw, moto.port), LoopbackBridge(topo.fw, imds.port)]
        for k in [k for k in os.environ if k.startswith("AWS_")]:
            monkeypatch.delenv(k)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH", f"http://127.0.0.1:{bridges[0].port}")
        monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", f"http://127.0.0.1:{bridges[1].port}/")
        yield moto.client("cloudwatch"), imds
    finally:
        for b in bridges:
            b.close()
        imds.close()
        moto.close()


@pytest.fixture
def appliance(topo, tmp_path):
    yield from appliances(topo, tmp_path, RULES)


def scrape(t):
    return t.ex(t.fw, "curl", "-sS", "-m", "10", f"http://127.0.0.1:{PORT}/metrics").stdout


def metric_sum(text, name, **labels):
    total = 0.0
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        if all(have.get(k) == str(v) for k, v in labels.items()):
            total += float(m.group(4))
    return total


def cw_sum(cw, name, instance):
    now = datetime.datetime.now(datetime.timezone.utc)
    r = cw.get_metric_statistics(Namespace=NS, MetricName=name, Dimensions=[{"Name": "InstanceId", "Value": instance}],
                                 StartTime=now - datetime.timedelta(hours=1), EndTime=now + datetime.timedelta(hours=1),
                                 Period=3600, Statistics=["Sum", "Maximum"])
    return sum(p["Sum"] for p in r["Datapoints"]), max([p["Maximum"] for p in r["Datapoints"]] or [None])


def test_figures_published_and_read_back(topo, appliance, aws):
    cw, imds = aws
    t = topo
    a = appliance(workers=1, extra=f"control: {{listen: 127.0.0.1:{PORT}, cloudwatch: "
                                   f"{{namespace: {NS}, interval: 1}}}}\n").start()
    for _ in range(2):
        assert curl(t, f"http://{t.server_ip}:8080/hello").stdout == "200"
    assert curl(t, f"http://{t.server_ip}:8081/hello", max_time=2).returncode == 28
    wait_for(lambda: "cloudwatch: publishing" in a.log_text(), what=f"the publisher; log:\n{a.log_text()}")

    names = wait_for(lambda: {m["MetricName"] for m in cw.list_metrics(Namespace=NS)["Metrics"]} >= {
        "ReceivedPackets", "PassedPackets", "DroppedPackets", "PacketsDropCount", "ActiveConnectionCount"} and
        cw.list_metrics(Namespace=NS)["Metrics"], timeout=20, what="metrics in moto")
    assert {d["Name"]: d["Value"] for m in names for d in m["Dimensions"]} == {"InstanceId": imds.instance_id}

    def agrees():
        m = scrape(t)
        dropped = (metric_sum(m, "appliance_verdicts_total", action="drop")
                   + metric_sum(m, "appliance_chain_packets_total", rule="offloaded_drop")
                   + metric_sum(m, "appliance_chain_packets_total", rule="invalid_drop"))
        passed = (metric_sum(m, "appliance_verdicts_total", action="pass")
                  + metric_sum(m, "appliance_chain_packets_total", rule="offloaded_pass")
                  + metric_sum(m, "appliance_fail_open_passes_total"))
        got = (cw_sum(cw, "DroppedPackets", imds.instance_id)[0], cw_sum(cw, "PassedPackets", imds.instance_id)[0])
        return dropped >= 2 and passed >= 4 and got == (dropped, passed) and got
    dropped, passed = wait_for(agrees, timeout=20, what="CloudWatch sums equal to /metrics")
    assert cw_sum(cw, "PacketsDropCount", imds.instance_id)[0] == dropped      # no rejects here
    assert cw_sum(cw, "ReceivedPackets", imds.instance_id)[0] >= dropped + passed
    assert cw_sum(cw, "WorkersUp", imds.instance_id)[1] == 1
    assert a.stop() == 0
    assert "PutMetricData" not in a.log_text(), a.log_text()                    # no failed publish


def test_unreachable_endpoint_is_logged_and_the_datapath_goes_on(topo, appliance, aws, monkeypatch):
    t = topo
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH", "http://127.0.0.1:9")     # nothing listens
    a = appliance(workers=1, extra=f"control: {{listen: 127.0.0.1:{PORT}, cloudwatch: {{interval: 1}}}}\n").start()
    wait_for(lambda: "cloudwatch: PutMetricData to Appliance failed" in a.log_text(), timeout=60,
             what="the failed publish in the log")
    assert curl(t, f"http://{t.server_ip}:8080/hello").stdout == "200"
    assert a.stop() == 0
