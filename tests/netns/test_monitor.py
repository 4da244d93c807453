"""Monitor mode live: `kill -HUP` switches the running appliance between enforce and monitor
(the supervisor-checked reload path); a blocked connection works in monitor mode, its alert
says allowed + would_drop, and it is blocked again once switched back. /status and /metrics
show the mode.

Own topology (namespaces prefixed "i12mo", veths created inside them), torn down at the end.
"""
import json
import os
import signal
import sys

import pytest

from datapath import REPO, appliances, curl, http_servers, topology, wait_for

pytestmark = pytest.mark.netns

RULES = """\
default_action: pass
rules:
  - {id: 1001, msg: "block tcp 8081", action: drop, proto: tcp, dst_port: 8081}
"""
PORT = 9900
CONTROL = f"control: {{listen: 127.0.0.1:{PORT}}}\n"


@pytest.fixture(scope="module")
def topo(tmp_path_factory):
    bench = topology(prefix="i12mo")
    t = next(bench)
    try:
        with http_servers(t, tmp_path_factory.mktemp("i12mowww"), (8081,)):
            yield t
    finally:
        bench.close()


@pytest.fixture
def appliance(topo, tmp_path):
    yield from appliances(topo, tmp_path, RULES)


def get(t, path):
    r = t.ex(t.fw, "curl", "-sS", "-m", "10", f"http://127.0.0.1:{PORT}{path}")
    return r.stdout


def metric_line(text, prefix):
    return [line for line in text.splitlines() if line.startswith(prefix)]


def switch(a, mode, reloads):
    """Write `mode` into the config, SIGHUP, wait until every worker swapped."""
    a.config_text = a.config_text.replace("mode: monitor\n", "").replace("mode: enforce\n", "") + f"mode: {mode}\n"
    a.config.write_text(a.config_text)
    a.signal(signal.SIGHUP)
    wait_for(lambda: a.log_text().count("config and rules reloaded") >= reloads * a.workers,
             timeout=30, what=f"the workers to reload into {mode} mode:\n{a.log_text()}")


def test_hup_switches_between_enforce_and_monitor(topo, appliance):
    t = topo
    a = appliance(extra=CONTROL).start()
    url = f"http://{t.server_ip}:8081/hello"
    assert curl(t, url, max_time=2).returncode == 28                  # enforce: dropped
    assert json.loads(get(t, "/status"))["mode"]["mode"] == "enforce"
    assert 'appliance_mode{mode="enforce"} 1.0' in get(t, "/metrics")

    switch(a, "monitor", 1)
    r = curl(t, url)
    assert r.stdout == "200", (r.returncode, r.stdout, r.stderr)      # monitor: passed
    status = json.loads(get(t, "/status"))
    assert status["mode"]["mode"] == "monitor"
    m = get(t, "/metrics")
    assert 'appliance_mode{mode="monitor"} 1.0' in m and 'appliance_mode{mode="enforce"} 0.0' in m
    wait_for(lambda: any(float(line.split()[-1]) > 0 for line in
                         metric_line(get(t, "/metrics"), "appliance_monitor_would_block_total{")),
             what="the workers' would_block counters in /metrics")
    alerts = [e for e in a.events("alert") if e["alert"]["signature_id"] == 1001]
    assert [e["alert"]["action"] for e in alerts][:1] == ["blocked"]  # the enforce-mode attempt
    monitored = [e for e in alerts if e["alert"]["action"] == "allowed"]
    assert monitored and all(e["alert"]["metadata"]["monitor"] == ["would_drop"] for e in monitored)
    flows = json.loads(get(t, "/flows?top=50"))["flows"]
    assert any(f["dport"] == 8081 and f["verdict"] == "would_drop" for f in flows), flows
    st = t.ex(t.fw, sys.executable, "-m", "appliance", "status", "--control", f"127.0.0.1:{PORT}",
              cwd=REPO, env={**os.environ, "PYTHONPATH": REPO})
    assert "mode:      monitor -- MONITOR" in st.stdout, st.stdout + st.stderr

    switch(a, "enforce", 2)
    assert curl(t, url, max_time=2).returncode == 28                  # blocked again: a new connection
    assert json.loads(get(t, "/status"))["mode"]["mode"] == "enforce"
    last = [e for e in a.events("alert") if e["alert"]["signature_id"] == 1001][-1]
    assert last["alert"]["action"] == "blocked" and "monitor" not in last["alert"]["metadata"]
    assert a.stop() == 0
