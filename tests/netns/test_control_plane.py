"""The control plane of `appliance run` on a real kernel: where the server listens, what
/readyz says when the kernel ruleset or a worker goes, counters that move with real traffic,
a real Prometheus scraping /metrics, and `appliance status` / `appliance flows`.

Own topology (namespaces prefixed "mgt-", veths created inside them), torn down at the end.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

from datapath import REPO, appliances, curl, http_servers, topology, wait_for

pytestmark = pytest.mark.netns

RULES = """\
default_action: pass
rules:
  - {id: 1001, msg: "block tcp 8081", action: drop, proto: tcp, dst_port: 8081}
  - {id: 1002, msg: "see tcp 8080", action: alert, proto: tcp, dst_port: 8080}
"""
PORT = 9900
CONTROL = f"control: {{listen: 127.0.0.1:{PORT}}}\n"
DASHBOARD = Path(REPO) / "docs" / "grafana-dashboard.json"


@pytest.fixture(scope="module")
def topo(tmp_path_factory):
    """HTTP servers on 8080 and 8081 in the server namespace; a management link in the
    appliance namespace (mgmt0 192.0.2.1, both veth ends inside it)."""
    bench = topology(prefix="mgt")
    t = next(bench)
    try:
        with http_servers(t, tmp_path_factory.mktemp("mgtwww"), (8080, 8081)):
            t.ex(t.fw, "ip", "link", "add", "mgmt0", "type", "veth", "peer", "name", "mgmt1", check=True)
            t.ex(t.fw, "ip", "addr", "add", "192.0.2.1/24", "dev", "mgmt0", check=True)
            t.ex(t.fw, "ip", "link", "set", "mgmt0", "up", check=True)
            t.ex(t.fw, "ip", "link", "set", "mgmt1", "up", check=True)
            yield t
    finally:
        bench.close()


@pytest.fixture
def appliance(topo, tmp_path):
    yield from appliances(topo, tmp_path, RULES)


def get(t, path, host="127.0.0.1", port=PORT, ns=None):
    """(status, body) of GET path from inside the appliance namespace (curl: a real client)."""
    r = t.ex(ns or t.fw, "curl", "-sS", "-m", "10", "-o", "-", "-w", "\n%{http_code}", f"http://{host}:{port}{path}")
    body, _, code = r.stdout.rpartition("\n")
    return int(code or 0), body


def get_json(t, path, **kw):
    code, body = get(t, path, **kw)
    return code, json.loads(body) if body.strip() else None


def metric(text, name, **labels):
    """The sample value of `name{labels}` in Prometheus text, or None."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
        if all(have.get(k) == str(v) for k, v in labels.items()):
            return float(m.group(4))
    return None


def ready(t):
    code, body = get_json(t, "/readyz")
    return code == 200 and body["ready"]


def test_listens_only_on_loopback_and_answers(topo, appliance):
    t = topo
    a = appliance(extra=CONTROL).start()
    wait_for(lambda: ready(t), what="/readyz 200")
    listening = t.ex(t.fw, "ss", "-ltnH").stdout.split("\n")
    local = {line.split()[3] for line in listening if line.strip()}
    assert local == {f"127.0.0.1:{PORT}"}, local                 # nothing on 0.0.0.0, eth0, eth1, mgmt0
    # from the client's side of the outside interface, nothing answers on the control port
    r = t.ex(t.client, "curl", "-sS", "-m", "3", f"http://10.1.0.1:{PORT}/metrics")
    assert r.returncode == 7, (r.returncode, r.stdout)            # connection refused
    code, health = get_json(t, "/healthz")
    assert code == 200 and health["status"] == "ok"
    code, body = get(t, "/metrics")
    assert code == 200 and "# TYPE appliance_verdicts_total counter" in body
    assert get(t, "/nothing")[0] == 404
    assert get(t, "/flows?top=abc")[0] == 400
    assert a.stop() == 0
    assert get(t, "/healthz")[0] == 0                             # gone with the supervisor


HOLDER = r"""
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]
for s in idle[: n // 2]:
    s.sendall(b"GET /healthz HTTP/1.1\r\n")           # a request that never ends
time.sleep(0.5)
closed = 0
for s in idle[:-1]:
    s.setblocking(False)
    try:
        closed += s.recv(10) == b""
    except BlockingIOError:
        pass
    s.setblocking(True)
print("closed", closed, flush=True)
t = time.monotonic()
with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
    s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
    print(s.recv(100).split(b"\r\n")[0].decode(), round(time.monotonic() - t, 2), flush=True)
t = time.monotonic()
print("cut", idle[-1].recv(10) == b"", round(time.monotonic() - t, 1), flush=True)
"""


def test_idle_and_trickling_connections_do_not_starve_the_api(topo, appliance):
    """A host that reaches the control port (the HA machine's /readyz, Prometheus) cannot
    hold it: connections past MAX_CLIENTS push the oldest out, and a request that does not
    arrive in CLIENT_TIMEOUT seconds is closed (review "fleet": 300 idle connections made
    /readyz time out and the HA pair fail over)."""
    from appliance.control import server
    t = topo
    a = appliance(extra=CONTROL).start()
    wait_for(lambda: ready(t), what="/readyz 200")
    r = t.ex(t.fw, sys.executable, "-c", HOLDER, str(PORT), str(4 * server.MAX_CLIENTS), timeout=60)
    closed, answer, cut = r.stdout.splitlines()
    assert int(closed.split()[1]) >= 3 * server.MAX_CLIENTS - 1, r.stdout      # the oldest, cut to make room
    assert answer.startswith("HTTP/1.0 200"), r.stdout + r.stderr
    assert cut.startswith("cut True"), r.stdout                 # the newest idle one, after the timeout
    assert a.stop() == 0


def test_management_address_is_accepted(topo, appliance):
    t = topo
    a = appliance(extra="control: {listen: 192.0.2.1:9900}\n")
    a.config_text = a.config_text.replace("interfaces: {outside: eth0, inside: eth1}",
                                          "interfaces: {outside: eth0, inside: eth1, management: mgmt0}")
    a.config.write_text(a.config_text)
    a.start()
    wait_for(lambda: get(t, "/healthz", host="192.0.2.1")[0] == 200, what="control on mgmt0")
    local = {line.split()[3] for line in t.ex(t.fw, "ss", "-ltnH").stdout.splitlines() if line.strip()}
    assert local == {"192.0.2.1:9900"}, local
    assert a.stop() == 0


@pytest.mark.parametrize("listen, why", [
    ("10.1.0.1:9900", "is an address of the outside (data) interface eth0"),
    ("10.2.0.1:9900", "is an address of the inside (data) interface eth1"),
    ("192.0.2.1:9900", "is not loopback nor an address of the management interface"),   # no management set
    ("0.0.0.0:9900", "listens on every interface"),
])
def test_data_or_foreign_address_is_refused(topo, appliance, listen, why):
    a = appliance(extra=f"control: {{listen: {listen}}}\n")
    a.launch()
    assert a.proc.wait(30) == 2
    line = a.config_text.splitlines().index(f"control: {{listen: {listen}}}") + 1
    assert re.search(rf"{re.escape(str(a.config))}:{line}: control\.listen: .*{re.escape(why)}", a.log_text()), \
        a.log_text()
    assert "NFQUEUE" not in a.iptables_save()                     # refused before anything was installed


def test_any_address_when_allowed_on_purpose(topo, appliance):
    t = topo
    a = appliance(extra="control: {listen: 0.0.0.0:9900, allow_any_address: true}\n").start()
    wait_for(lambda: get(t, "/healthz")[0] == 200, what="control on 0.0.0.0")
    assert "0.0.0.0:9900" in t.ex(t.fw, "ss", "-ltnH").stdout
    assert a.stop() == 0


def test_readyz_follows_our_kernel_chains_and_workers(topo, appliance):
    t = topo
    a = appliance(extra=CONTROL).start()
    wait_for(lambda: ready(t), what="/readyz 200")
    # someone deletes our inspect chain's rules: not ready until the watch puts them back
    for _ in range(5):
        t.ex(t.fw, "iptables-nft", "-F", "APPLIANCE-INSPECT", check=True)
        code, body = get_json(t, "/readyz")
        if code == 503:
            break                                  # else the watch repaired it in between: again
    assert code == 503 and body["failed"] == ["kernel"], body
    assert any("APPLIANCE-INSPECT was edited" in p for p in body["checks"]["kernel"]["problems"]), body
    wait_for(lambda: ready(t), timeout=15, what="/readyz 200 after the watch re-installed our chains")
    assert "re-installing them" in a.log_text()
    # a worker dies: the supervisor restarts it within a loop turn or two (too short a window to
    # catch a 503 reliably: the stopped worker of test_fail_open_passes_are_counted shows that);
    # readiness then stands for the new worker, which reported its own bind and snapshot
    victim = a.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: a.worker_pids() and victim not in a.worker_pids(), what="the restarted worker")
    wait_for(lambda: ready(t), timeout=20, what="/readyz 200 after the worker's restart")
    code, st = get_json(t, "/status")
    assert victim not in [w["pid"] for w in st["workers"]] and st["worker_restarts"] == 1
    m = get(t, "/metrics")[1]
    assert metric(m, "appliance_worker_restarts_total") == 1
    assert a.stop() == 0


def test_counters_move_with_traffic_status_and_flows(topo, appliance):
    t = topo
    a = appliance(extra=CONTROL, workers=1).start()
    wait_for(lambda: ready(t), what="/readyz 200")
    before = get(t, "/metrics")[1]
    assert metric(before, "appliance_verdicts_total", queue=0, action="drop") == 0
    for _ in range(3):
        assert curl(t, f"http://{t.server_ip}:8080/hello").stdout == "200"
    assert curl(t, f"http://{t.server_ip}:8081/hello", max_time=2).returncode == 28
    # keep one flow open in the table for `appliance flows`
    hold = subprocess.Popen(["ip", "netns", "exec", t.client, "nc", t.server_ip, "8081"], stdin=subprocess.PIPE)
    try:
        time.sleep(2.5)                            # the next snapshot (once a second)
        m = get(t, "/metrics")[1]
        assert metric(m, "appliance_verdicts_total", queue=0, action="drop") >= 2
        assert metric(m, "appliance_verdicts_total", queue=0, action="pass") >= 3
        assert metric(m, "appliance_packets_total", queue=0) >= 5
        assert metric(m, "appliance_rule_alerts_total", sid=1001) >= 1
        assert metric(m, "appliance_rule_alerts_total", sid=1002) >= 3
        assert metric(m, "appliance_offloaded_flows_total", queue=0) >= 1
        assert metric(m, "appliance_flows_total", queue=0) >= 4
        assert metric(m, "appliance_nfqueue_queued_total", queue=0) >= 5
        assert metric(m, "appliance_chain_packets_total", family="ipv4", chain="APPLIANCE-INSPECT",
                      rule="queued") >= 5
        assert metric(m, "appliance_fail_open_passes_total") == 0
        assert metric(m, "appliance_conntrack_entries") >= 1
        assert metric(m, "appliance_ruleset_rules") == 2
        assert metric(m, "appliance_worker_up", queue=0) == 1

        env = {**os.environ, "PYTHONPATH": REPO}
        st = subprocess.run(["ip", "netns", "exec", t.fw, sys.executable, "-m", "appliance", "status",
                             "--config", str(a.config)], capture_output=True, text=True, env=env, cwd=REPO)
        assert st.returncode == 0, st.stderr
        out = st.stdout
        assert "appliance: ready" in out
        assert "failure_mode open, offload on, 1 worker(s)" in out
        assert "2 rule(s) from" in out and "reload:    none since start" in out
        assert re.search(r"^1001\s+\d+\s+block tcp 8081$", out.replace("  ", " ").strip(), re.M) or \
            re.search(r"1001\s+\d+\s+block tcp 8081", out), out
        assert re.search(r"10\.1\.0\.2\s+\d+ B", out), out                     # the top talker
        fl = subprocess.run(["ip", "netns", "exec", t.fw, sys.executable, "-m", "appliance", "flows",
                             "--control", f"127.0.0.1:{PORT}", "--top", "5"], capture_output=True, text=True,
                            env=env, cwd=REPO)
        assert fl.returncode == 0, fl.stderr
        rows = [line.split() for line in fl.stdout.splitlines()[2:]]
        assert any(r[1] == "tcp" and r[3] == f"{t.server_ip}:8081" and r[5] == "drop" for r in rows), fl.stdout
        assert len(rows) <= 5
    finally:
        hold.kill()
        hold.wait()
    # a refused reload is the status's last reload
    a.rules.write_text("rules: [{id: x}]\n")
    a.signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in a.log_text(), what="the refused reload")
    code, st = get_json(t, "/status")
    assert st["last_reload"]["result"] == "refused" and "rules.yaml:1:" in st["last_reload"]["message"]
    assert metric(get(t, "/metrics")[1], "appliance_reloads_total", result="refused") == 1
    assert a.stop() == 0


def test_fail_open_passes_are_counted(topo, appliance):
    """A stopped worker (SIGSTOP) leaves its queue full: the kernel passes the rest
    uninspected (fail-open); /metrics counts them from the kernel's own counters."""
    t = topo
    a = appliance(extra=CONTROL, workers=1, offload=False).start()
    wait_for(lambda: ready(t), what="/readyz 200")
    worker = a.worker_pids()[0]
    os.kill(worker, signal.SIGSTOP)
    try:
        sender = ("import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                  f"for i in range(6000): s.sendto(b'x' * 20, ('{t.server_ip}', 9999))\n")
        t.ex(t.client, sys.executable, "-c", sender, check=True)
        m = get(t, "/metrics")[1]
        passed = metric(m, "appliance_fail_open_passes_total")
        waiting = metric(m, "appliance_nfqueue_queue_total", queue=0)
        assert waiting == 4096, m                                # QUEUE_MAXLEN: the queue is full
        assert passed >= 6000 - 4096 - 10, passed                # (a few packets of the test's own)
        # the stopped worker sends no snapshot: not ready once its last one is 3 s old
        body = wait_for(lambda: (lambda r: r[0] == 503 and r[1])(get_json(t, "/readyz")), timeout=10,
                        what="/readyz 503 for the stopped worker")
        assert body["failed"] == ["workers"] and "not answering" in body["checks"]["workers"]["problems"][0]
    finally:
        os.kill(worker, signal.SIGCONT)
    assert a.stop() == 0


@pytest.mark.skipif(not shutil.which("prometheus"), reason="Debian's prometheus package is not installed")
def test_a_real_prometheus_scrapes_the_verdicts(topo, appliance, tmp_path):
    t = topo
    a = appliance(extra=CONTROL, workers=1).start()
    wait_for(lambda: ready(t), what="/readyz 200")
    for _ in range(2):
        curl(t, f"http://{t.server_ip}:8081/hello", max_time=1)
    conf = tmp_path / "prometheus.yml"
    conf.write_text("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                    "scrape_configs:\n"
                    f"  - {{job_name: appliance, static_configs: [{{targets: ['127.0.0.1:{PORT}']}}]}}\n")
    prom = subprocess.Popen(["ip", "netns", "exec", t.fw, "prometheus", f"--config.file={conf}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}", "--web.listen-address=127.0.0.1:9091"],
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "wb"))
    try:
        def query(q):
            # until its storage is up, Prometheus answers 503 with a text body: not JSON yet
            code, text = get(t, "/api/v1/query?query=" + urllib.parse.quote(q), port=9091)
            body = json.loads(text) if code == 200 else None
            if body is None or body["status"] != "success" or not body["data"]["result"]:
                return None
            return body["data"]["result"]

        res = wait_for(lambda: query('appliance_verdicts_total{action="drop"} >= 2'), timeout=60,
                       what="Prometheus to have scraped the drop verdicts")
        assert res[0]["metric"]["queue"] == "0" and float(res[0]["value"][1]) >= 2
        up = query('up{job="appliance"}')
        assert up and up[0]["value"][1] == "1"
        have = {r["metric"]["__name__"] for r in query('count by (__name__) ({job="appliance"})')}
        assert {"appliance_fail_open_passes_total", "appliance_nfqueue_queue_dropped_total",
                "appliance_chain_packets_total", "appliance_rule_alerts_total"} <= have
    finally:
        prom.terminate()
        prom.wait(20)
    assert a.stop() == 0


def test_the_dashboard_queries_only_exported_metrics(topo, appliance):
    """Every metric the shipped Grafana dashboard names is one /metrics exports (its TYPE line)."""
    t = topo
    appliance(extra=CONTROL, workers=1).start()
    wait_for(lambda: ready(t), what="/readyz 200")
    exported = set(re.findall(r"^# TYPE (\S+) ", get(t, "/metrics")[1], re.M))
    for name in dashboard_metrics():
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in exported or base in exported, f"{DASHBOARD.name} queries {name}: not exported"


def dashboard_metrics() -> set:
    """Metric names in the dashboard's PromQL expressions (appliance_* words)."""
    text = DASHBOARD.read_text()
    exprs = [p["expr"] for panel in json.loads(text)["panels"] for p in panel.get("targets", [])]
    assert exprs, "the dashboard has no queries"
    return {n for e in exprs for n in re.findall(r"\b(appliance_[a-z0-9_]+)\b", e)}


def test_readyz_fails_while_a_data_link_is_down(topo, appliance):
    """A datapath whose outside or inside interface is down forwards nothing: /readyz says
    so (the `links` check, naming the interface and the kernel's operstate) and recovers with
    the link. Down on our side ("down") and on the far side of the veth ("no carrier")."""
    t = topo
    a = appliance(extra=CONTROL).start()
    wait_for(lambda: ready(t), what="/readyz 200")
    for ns, dev, want in ((t.fw, "eth1", "inside interface eth1: down"),
                          (t.client, "c0", "outside interface eth0: no carrier")):
        t.ex(ns, "ip", "link", "set", dev, "down", check=True)
        try:
            code, body = get_json(t, "/readyz")
            assert code == 503 and body["failed"] == ["links"], body
            assert body["checks"]["links"]["problems"] == [want], body
        finally:
            t.ex(ns, "ip", "link", "set", dev, "up", check=True)
        wait_for(lambda: ready(t), what="/readyz 200 with the link back")
    assert a.stop() == 0


def test_readyz_says_when_the_eve_disk_is_full(topo, appliance, tmp_path):
    """EVE on a 512 KiB tmpfs (mounted in the test's own directory, removed after): less than
    1 MiB free is not ready, and /readyz names the eve check and the directory."""
    t = topo
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "appliance-test", str(small)], check=True)
    try:
        a = appliance(extra=CONTROL, workers=1)
        a.config_text = a.config_text.replace("eve: eve.json", f"eve: {small}/eve.json")
        a.config.write_text(a.config_text)
        a.start()
        body = wait_for(lambda: (lambda r: r[0] == 503 and r[1])(get_json(t, "/readyz")), what="/readyz 503")
        assert body["failed"] == ["eve"], body
        assert body["checks"]["eve"]["problems"] == [f"{small}: less than 1 MiB free"], body
        assert a.stop() == 0
    finally:
        subprocess.run(["umount", str(small)], check=False)
