"""Fleet mode as an operator runs it: `appliance run` with a `gwlb:` section, behind the GWLB
simulator (tests/netns/gwlb_sim.py, the namespaces of test_gwlb.py), real clients and servers.

The health endpoint (what the target group asks) flips with a worker's death (kill -9: 503
until the supervisor has restarted it) and with SIGTERM (503 at once); during the drain the
flows keep being served; the process exits when the drain is over.
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from appliance.lab.services import make_certificate
from tests.netns.datapath import REPO, wait_for
from tests.netns.test_gwlb import BULK, ENI, FETCH, RULES, SERVERS, Bench

pytestmark = pytest.mark.netns

HEALTH = "http://10.9.0.2:8080/"
# no interface says which side is outside behind a GWLB: home_net does (the server's side)
FLEET_RULES = RULES.replace("rules:\n", "rules:\n  - {id: 20, action: drop, proto: tcp, dst_port: 443, "
                                          "direction: inbound, msg: inbound tls}\n", 1)


def config(tmp, drain=4, workers=2):
    p = tmp / "appliance.yaml"
    p.write_text(f"""\
rules: rules.yaml
eve: {tmp / 'eve.json'}
home_net: [10.2.0.0/24, "fd02::/64"]
gwlb:
  listen: 10.9.0.2
  senders: [10.9.0.1/32]
  workers: {workers}
  health: 10.9.0.2:8080
  drain: {drain}
""")
    return p


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, NFQUEUE)")
    for tool in ("iptables-nft", "curl", "openssl"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            pytest.skip(f"{tool} is not installed")
    tmp = tmp_path_factory.mktemp("fleet")
    b = Bench(tmp)
    try:
        b.up()
        # 10.1.0.2 <-> 10.2.0.2 (and fd01::2 <-> fd02::2) steer to worker 1 of 2, 10.1.0.5 to worker 0
        b.ex(b.c, "ip", "addr", "add", "10.1.0.5/24", "dev", "c0")
        (tmp / "rules.yaml").write_text(FLEET_RULES)
        cert, key = make_certificate(tmp)
        b.spawn(b.s, [sys.executable, "-m", "appliance.lab.services", "serve", "--cert", str(cert),
                      "--key", str(key)], tmp / "services.log")
        b.spawn(b.g, [sys.executable, os.path.join(REPO, "tests", "netns", "gwlb_sim.py"), "--appliance", "10.9.0.2",
                      "--local", "10.9.0.1", "--eni", hex(ENI), "--stats", str(tmp / "sim.json")], tmp / "sim.log")
        wait_for(lambda: (tmp / "sim.json").exists(), what="simulator")
        wait_for(lambda: b.ex(b.s, "ss", "-Hltn", "sport = :80").stdout.strip(), what="server listening")
        b.spawn(b.s, [sys.executable, "-c", SERVERS], tmp / "bulk.log")           # TCP 9000: a bulk transfer
        wait_for(lambda: b.ex(b.s, "ss", "-Hltn", "sport = :9000").stdout.strip(), what="bulk server listening")
        yield b
    finally:
        b.down()


class Fleet:
    def __init__(self, b, drain=4):
        self.b = b
        self.log = b.tmp / "fleet.log"
        self.proc = b.spawn(b.a, [sys.executable, "-m", "appliance", "run", "--config", str(config(b.tmp, drain))],
                            self.log)

    def health(self):
        """(status, body) as the target group's health check sees it, from the GWLB's side."""
        r = self.b.ex(self.b.g, "curl", "-sS", "-m", "3", "-w", "\n%{http_code}", HEALTH, check=False)
        body, _, code = r.stdout.rpartition("\n")
        return int(code or 0), (json.loads(body) if body.strip() else None)

    def get(self, url="http://10.2.0.2/", timeout=10, source=None):
        b = self.b
        return b.ex(b.c, "curl", "-sS", "-m", str(timeout), *(["--interface", source] if source else []),
                    "-o", "/dev/null", "-w", "%{http_code}", url, check=False).stdout

    def workers(self):
        """{index: pid} from the workers' stats lines (SIGUSR1)."""
        before = self.log.read_text().count('"gwlb_worker"')
        self.proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: self.log.read_text().count('"gwlb_worker"') >= before + 2, what="worker stats")
        lines = [json.loads(ln) for ln in self.log.read_text().splitlines() if ln.startswith('{"gwlb_worker"')]
        return {ln["gwlb_worker"]: ln["pid"] for ln in lines[-2:]}, lines[-2:]


@pytest.fixture
def fleet(sim):
    f = Fleet(sim)
    try:
        wait_for(lambda: f.health()[0] == 200, timeout=30, what="healthy")
        yield f
    finally:
        if f.proc.poll() is None:
            f.proc.send_signal(signal.SIGINT)
            f.proc.send_signal(signal.SIGINT)          # the second one: no drain
            try:
                f.proc.wait(20)
            except subprocess.TimeoutExpired:
                f.proc.kill()


def test_fleet_serves_both_workers_and_both_inner_families(fleet):
    assert fleet.get() == "200"
    assert fleet.get("http://[fd02::2]/") == "200"
    assert fleet.get(source="10.1.0.5") == "200"
    pids, lines = fleet.workers()
    assert len(pids) == 2 and len(set(pids.values())) == 2
    assert all(ln["gwlb"]["returned"] >= 5 and ln["gwlb"]["dropped"] == 0 for ln in lines), lines
    assert fleet.b.sim_stats()["mismatched"] == []
    code, body = fleet.health()
    assert code == 200 and body == {"ready": True, "problems": []}


def kernel_counters(b):
    """The fast path's per-set counters in the appliance's namespace ({} without the table)."""
    r = b.ex(b.a, sys.executable, "-c", "import json; from appliance import gwlb_offload as g; "
             "print(json.dumps(g.counters()))", check=False)
    return json.loads(r.stdout or "{}")


def test_the_supervisor_installs_the_fast_path_and_workers_offload_into_it(fleet):
    b = fleet.b
    before = sum(p for name, (p, _) in kernel_counters(b).items() if name.startswith("pass"))
    for server in ("10.2.0.2", "fd02::2"):
        r = b.ex(b.c, sys.executable, "-c", FETCH, server, check=False)
        assert r.stdout.strip() == str(BULK), r.stderr
    _, lines = fleet.workers()
    assert sum(ln["gwlb"]["offloaded"] for ln in lines) >= 2, lines      # each flow once its verdict is final
    returned = sum(p for name, (p, _) in kernel_counters(b).items() if name.startswith("pass"))
    assert returned - before > 100                 # datagrams the kernel answered without a worker
    assert b.sim_stats()["mismatched"] == []       # byte for byte as sent, kernel or worker


def test_direction_comes_from_home_net(fleet):
    """The client (10.1.0.0/24) is outside home_net, the server inside: its TLS is inbound."""
    b = fleet.b
    r = b.ex(b.c, "curl", "-sSk", "-m", "4", "-o", "/dev/null", "-w", "%{http_code}",
             "--resolve", "good.example:443:10.2.0.2", "https://good.example/", check=False)
    assert r.stdout == "000"
    eve = [json.loads(ln) for ln in (b.tmp / "eve.json").read_text().splitlines()]
    assert any(e.get("alert", {}).get("signature_id") == 20 for e in eve)
    assert fleet.get() == "200"                                 # the rest of the rules as before


def test_health_fails_while_a_killed_worker_is_restarted(fleet):
    pids, _ = fleet.workers()
    os.kill(pids[1], signal.SIGKILL)
    code, body = wait_for(lambda: (lambda h: h if h[0] == 503 else None)(fleet.health()), timeout=5,
                          what="health 503 after kill -9")
    assert any(p.startswith("worker 1:") for p in body["problems"]), body
    wait_for(lambda: fleet.health()[0] == 200, timeout=15, what="healthy again after the restart")
    new, _ = fleet.workers()
    assert new[1] != pids[1] and new[0] == pids[0]
    assert "worker 1: pid" in fleet.log.read_text() and "died (exit -9); restarting" in fleet.log.read_text()
    assert fleet.get() == "200" and fleet.get("http://[fd02::2]/") == "200"


def test_health_fails_while_a_worker_hangs(fleet):
    """Alive but not serving (stopped here; a packet that never ends would look the same):
    its flows go nowhere, so the target must not say healthy."""
    pids, _ = fleet.workers()
    os.kill(pids[0], signal.SIGSTOP)
    try:
        code, body = wait_for(lambda: (lambda h: h if h[0] == 503 else None)(fleet.health()), timeout=10,
                              what="health 503 for a hung worker")
        assert any(p.startswith(f"worker 0: pid {pids[0]} not answering") for p in body["problems"]), body
    finally:
        os.kill(pids[0], signal.SIGCONT)
    wait_for(lambda: fleet.health()[0] == 200, timeout=10, what="healthy once it answers again")


def test_sighup_reloads_the_rules_in_every_worker(fleet):
    assert fleet.get() == "200"
    rules = fleet.b.tmp / "rules.yaml"
    try:
        rules.write_text(FLEET_RULES.replace("- {id: 1, action: pass, proto: tcp, dst_port: 80}",
                                       "- {id: 1, action: drop, proto: tcp, dst_port: 80}"))
        fleet.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: fleet.log.read_text().count("config and rules reloaded") >= 2, what="both workers reloaded")
        assert fleet.get(timeout=3) == "000"                               # both workers' flows
        assert fleet.get(timeout=3, source="10.1.0.5") == "000"
        assert fleet.get("http://[fd02::2]/", timeout=3) == "000"
        assert fleet.health()[0] == 200
    finally:
        rules.write_text(FLEET_RULES)


def test_an_allowed_packet_too_big_to_go_back_whole(fleet):
    """The data interface's MTU below what arrived (it came in outer fragments): the packet is
    not returned; a sender that said "do not fragment" hears the MTU that fits, through the
    tunnel (1400 - 28 outer - 40 GENEVE = 1332); one that did not is dropped; both counted."""
    b = fleet.b
    mtu = lambda m: [b.ex(ns, "ip", "link", "set", dev, "mtu", str(m)) for ns, dev in ((b.g, "ga"), (b.a, "a0"))]
    try:
        mtu(1400)
        ping = lambda *a: b.ex(b.c, "ping", "-c1", "-W2", *a, check=False).stdout
        wait_for(lambda: "mtu = 1332" in ping("-M", "do", "-s", "1400", "10.2.0.2"), timeout=10,
                 what="fragmentation needed, mtu 1332")
        assert "Packet too big: mtu=1332" in ping("-6", "-M", "do", "-s", "1400", "fd02::2")
        _, before = fleet.workers()
        assert " 0% packet loss" not in ping("-M", "dont", "-s", "1400", "-I", "10.1.0.5", "10.2.0.2")
        _, after = fleet.workers()
        assert sum(w["gwlb"]["too_big"] for w in after) == sum(w["gwlb"]["too_big"] for w in before) + 1
        assert sum(w["gwlb"]["too_big_sent"] for w in after) >= 2
        assert " 0% packet loss" in ping("-s", "1000", "10.2.0.2")           # what fits still goes
        eve = [json.loads(ln) for ln in (b.tmp / "eve.json").read_text().splitlines()]
        assert any(e.get("anomaly", {}).get("event") == "gwlb.too_big" for e in eve)
        assert fleet.b.sim_stats()["mismatched"] == []
    finally:
        mtu(9001)
        b.ex(b.c, "ip", "route", "flush", "cache", check=False)
        b.ex(b.c, "ip", "-6", "route", "flush", "cache", check=False)


def test_sigterm_fails_health_first_serves_the_drain_then_exits(fleet):
    pids, _ = fleet.workers()
    t0 = time.monotonic()
    fleet.proc.send_signal(signal.SIGTERM)
    for pid in pids.values():                  # as systemd stops a unit: every process of it at once
        os.kill(pid, signal.SIGTERM)
    code, body = wait_for(lambda: (lambda h: h if h[0] == 503 else None)(fleet.health()), timeout=2,
                          what="health 503 on SIGTERM")
    assert body["problems"][0].startswith("draining"), body
    assert fleet.get() == "200" and fleet.get("http://[fd02::2]/") == "200"   # still served
    assert fleet.proc.poll() is None and time.monotonic() - t0 < 4
    assert fleet.workers()[0] == pids                                         # the same workers, still serving
    fleet.proc.wait(15)
    assert fleet.proc.returncode == 0 and time.monotonic() - t0 >= 4          # not before the drain's end
    assert fleet.get(timeout=3) == "000"                                       # nobody serves now
    assert kernel_counters(fleet.b) == {}                                     # the fast path left with it


def test_enforcing_stops_a_flow_monitor_mode_passed(fleet):
    """A rule file in monitor mode passes a connection its drop rule matches; the flow is not
    put in the kernel's pass set (the worker keeps it), so the reload that enforces the file
    stops the connection itself, not only new ones."""
    from tests.netns.test_monitor import ECHO_CLIENT, ECHO_SERVER
    b, rules = fleet.b, fleet.b.tmp / "rules.yaml"
    monitored = FLEET_RULES.replace("rules:\n", "rules:\n  - {id: 31, action: drop, proto: tcp, dst_port: 9100}\n", 1)
    server = b.spawn(b.s, [sys.executable, "-c", ECHO_SERVER, "9100"], b.tmp / "echo.log")
    client = None
    try:
        rules.write_text("mode: monitor\n" + monitored)
        fleet.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: fleet.log.read_text().count("config and rules reloaded") >= 2, what="monitor mode")
        wait_for(lambda: b.ex(b.s, "ss", "-Hltn", "sport = :9100").stdout.strip(), what="echo server")
        client = subprocess.Popen(["ip", "netns", "exec", b.c, sys.executable, "-c", ECHO_CLIENT, "10.2.0.2", "9100"],
                                  stdout=subprocess.PIPE, text=True)
        time.sleep(1.5)
        _, lines = fleet.workers()
        assert client.poll() is None and sum(ln["gwlb"]["offloaded"] for ln in lines) == 0, lines
        rules.write_text(monitored)
        fleet.proc.send_signal(signal.SIGHUP)
        ends = client.communicate(timeout=30)[0].split()
    finally:
        rules.write_text(FLEET_RULES)
        for p in (server, client):
            if p is not None:
                p.kill()
                p.wait()
    assert ends[0] == "echo" and ends[-1] == "TimeoutError", ends
    assert "the reload enforces 1 monitored flows" in fleet.log.read_text()
