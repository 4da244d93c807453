"""Monitor mode live: `kill -HUP` switches the running appliance between enforce and monitor
(the supervisor-checked reload path); a blocked connection works in monitor mode, its alert
says allowed + would_drop, and it is blocked again once switched back. /status and /metrics
show the mode.

Own topology (namespaces prefixed "i12mo", veths created inside them), torn down at the end.
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from datapath import REPO, appliances, curl, http_servers, topology, wait_for

pytestmark = pytest.mark.netns

RULES = """\
default_action: pass
rules:
  - {id: 1001, msg: "block tcp 8081", action: drop, proto: tcp, dst_port: 8081}
  - {id: 1002, msg: "block tcp 8083", action: drop, proto: tcp, dst_port: 8083}
  - {id: 1003, msg: "reject tcp 8084", action: reject, proto: tcp, dst_port: 8084}
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


ECHO_SERVER = """
import socket, sys, threading
srv = socket.create_server(("0.0.0.0", int(sys.argv[1])))
def serve(c):
    with c:
        try:
            while (b := c.recv(64)):
                c.sendall(b)
        except OSError as e:                 # how it ended, when not by the client's close
            print(type(e).__name__, flush=True)
while True:
    threading.Thread(target=serve, args=(srv.accept()[0],), daemon=True).start()
"""
# one byte out, its echo back, every 0.1 s; prints each echo, and how it ended
ECHO_CLIENT = """
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.settimeout(1.5)
try:
    while True:
        s.sendall(b"x")
        assert s.recv(1) == b"x"
        print("echo", flush=True)
        time.sleep(0.1)
except Exception as e:
    print(type(e).__name__, flush=True)
"""


def test_enforcing_cuts_the_connections_monitor_mode_passed(topo, appliance):
    """Connections monitor mode passed are stopped when the switch back to enforce is
    reloaded, not only new ones: their rule's drop applies from their next packet, their
    rule's reject answers it (monitor mode sent no RST: the sender of the connection's next
    packet gets one) and drops the rest. Monitor mode never offloads them, so the worker still
    sees them: no pass connmark is left behind in the kernel."""
    t = topo
    a = appliance().start()
    switch(a, "monitor", 1)
    servers = [subprocess.Popen(["ip", "netns", "exec", t.server, sys.executable, "-c", ECHO_SERVER, str(port)],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for port in (8083, 8084)]
    clients = []
    try:
        wait_for(lambda: all(f":{p} " in t.ex(t.server, "ss", "-ltnH").stdout for p in (8083, 8084)),
                 what="echo servers")
        clients = [subprocess.Popen(["ip", "netns", "exec", t.client, sys.executable, "-c", ECHO_CLIENT,
                                     t.server_ip, str(port)], stdout=subprocess.PIPE, text=True)
                   for port in (8083, 8084)]
        time.sleep(1.5)                                  # monitor mode: both pass
        entries = [x for x in t.ex(t.fw, "conntrack", "-L", "-p", "tcp").stdout.splitlines() if "dport=808" in x]
        assert all(c.poll() is None for c in clients) and len(entries) == 2, entries
        assert all(" mark=0 " in x for x in entries), entries        # not offloaded
        switch(a, "enforce", 2)
        ends = [c.communicate(timeout=20)[0].split() for c in clients]
    finally:
        for p in servers + clients:
            p.kill()
        said = [p.communicate()[0].split() for p in servers]
    assert ends[0][0] == "echo" and ends[0][-1] == "TimeoutError", ends[0]              # dropped
    # rejected: the next packet's sender was reset by the worker (the client's byte, most
    # likely; the server's echo if that came first); that verdict offloads the flow with the
    # reject mark, so the kernel resets whatever the other side sends next (review s7)
    assert ends[1][0] == "echo", ends[1]
    assert "ConnectionResetError" in (ends[1][-1], *said[1]), (ends[1], said[1])
    assert ends[1][-1] in ("ConnectionResetError", "TimeoutError"), ends[1]
    assert said[0] == [], said[0]
    enforced = sum(int(line.split("enforces ")[1].split()[0]) for line in a.log_text().splitlines()
                   if "the reload enforces" in line)      # per worker that held some
    assert enforced == 2, a.log_text()
    assert a.stop() == 0
