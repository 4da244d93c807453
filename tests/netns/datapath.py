"""The datapath test bench: a 3-namespace topology and `appliance run` inside it.

    client ns                 appliance ns                      server ns
    c0 10.1.0.2/24  ───  eth0 10.1.0.1 (outside)
       fd01::2/64            fd01::1
                             eth1 10.2.0.1 (inside)  ───  s0 10.2.0.2/24
                             fd02::1                        fd02::2/64

Veth pairs are created directly inside the namespaces (never in the root namespace),
the build stops at the first error, and every namespace is deleted at the end even when
a test fails. `Appliance` is one `python3 -m appliance.run` in the appliance namespace.
"""
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager

import pytest

from appliance.netfilter import parse_queue_counters

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(*cmd, check=True, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} -> exit {r.returncode}: {r.stderr.strip()}")
    return r


class Topology:
    def __init__(self, prefix="dp", mtu=1500, client_aliases=0):
        tag = secrets.token_hex(3)
        self.client, self.fw, self.server = f"{prefix}-c-{tag}", f"{prefix}-a-{tag}", f"{prefix}-s-{tag}"
        self.mtu = mtu
        self.client_aliases = client_aliases    # extra client addresses 10.1.0.3.. (queue-balance hashes addresses)
        self.client_ip, self.server_ip = "10.1.0.2", "10.2.0.2"
        self.client_ip6, self.server_ip6 = "fd01::2", "fd02::2"
        self.outside, self.inside = "eth0", "eth1"
        self.created = []

    def ex(self, ns, *cmd, check=False, **kw):
        return run("ip", "netns", "exec", ns, *cmd, check=check, **kw)

    def up(self):
        for ns in (self.client, self.fw, self.server):
            run("ip", "netns", "add", ns)
            self.created.append(ns)
        c, a, s = self.client, self.fw, self.server
        run("ip", "link", "add", "c0", "netns", c, "type", "veth", "peer", "name", "eth0", "netns", a)
        run("ip", "link", "add", "s0", "netns", s, "type", "veth", "peer", "name", "eth1", "netns", a)
        for ns, dev, v4, v6 in ((c, "c0", "10.1.0.2/24", "fd01::2/64"), (a, "eth0", "10.1.0.1/24", "fd01::1/64"),
                                (a, "eth1", "10.2.0.1/24", "fd02::1/64"), (s, "s0", "10.2.0.2/24", "fd02::2/64")):
            self.ex(ns, "ip", "addr", "add", v4, "dev", dev, check=True)
            self.ex(ns, "ip", "-6", "addr", "add", v6, "dev", dev, "nodad", check=True)
            self.ex(ns, "ip", "link", "set", dev, "mtu", str(self.mtu), "up", check=True)
            self.ex(ns, "ip", "link", "set", "lo", "up", check=True)
        for i in range(3, 3 + self.client_aliases):
            self.ex(c, "ip", "addr", "add", f"10.1.0.{i}/24", "dev", "c0", check=True)
        self.ex(c, "ip", "route", "add", "default", "via", "10.1.0.1", check=True)
        self.ex(c, "ip", "-6", "route", "add", "default", "via", "fd01::1", check=True)
        self.ex(s, "ip", "route", "add", "default", "via", "10.2.0.1", check=True)
        self.ex(s, "ip", "-6", "route", "add", "default", "via", "fd02::1", check=True)
        self.ex(a, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1", check=True)

    def down(self):
        for ns in self.created:
            # processes left in a namespace (servers) keep it busy: end ours first
            pids = run("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            run("ip", "netns", "del", ns, check=False)
        self.created = []


# Counts UDP datagrams arriving on :9998 for argv[1] seconds (a forced large receive buffer:
# what this socket loses is not the datapath's loss); prints "ready", then the count.
UDP_COUNT = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)     # SO_RCVBUFFORCE
s.bind(("0.0.0.0", 9998)); s.settimeout(0.5)
print("ready", flush=True)
n, end = 0, time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    try:
        s.recv(100); n += 1
    except socket.timeout:
        pass
print(n, flush=True)
"""


def topology_fixture(prefix, **kw):
    """A module-scoped `topo` fixture: a Topology of the test file's own (`prefix` names its
    namespaces), torn down after the file's last test."""
    @pytest.fixture(scope="module")
    def topo():
        yield from topology(prefix=prefix, **kw)
    return topo


def topology(**kw):
    """Build a Topology (skipping when this machine cannot), yield it, always tear it down."""
    if os.geteuid() != 0:
        pytest.skip("datapath tests need root (network namespaces, NFQUEUE)")
    if not shutil.which("ip") or run("ip", "netns", "list", check=False).returncode != 0:
        pytest.skip("`ip netns` is unavailable")
    for tool in ("iptables-nft-restore", "ip6tables-nft-save", "curl", "nc", "conntrack"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed")
    t = Topology(**kw)
    try:
        t.up()
    except Exception:
        t.down()
        raise
    try:
        yield t
    finally:
        t.down()


@contextmanager
def http_servers(t, root, ports, bind="0.0.0.0"):
    """Python's http.server on each of `ports` in the server namespace, serving `root` (a
    "hello" file written there), until the block ends."""
    (root / "hello").write_text("hello\n")
    procs = []
    try:
        for port in ports:
            procs.append(subprocess.Popen(["ip", "netns", "exec", t.server, sys.executable, "-m", "http.server",
                                           str(port), "--bind", bind, "--directory", str(root)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for(lambda: all(f":{p} " in t.ex(t.server, "ss", "-ltnH").stdout for p in ports),
                 what="http servers")
        yield procs
    finally:
        for p in procs:
            p.kill()
            p.wait()


@contextmanager
def veth_namespace(prefix, addrs=("10.9.0.1/24",)):
    """A namespace of its own with one veth pair d0/d1 up (and lo), `addrs` on d0: the
    `ip netns exec` prefix for commands in it; deleted at the end."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, nftables)")
    name = f"{prefix}{secrets.token_hex(3)}"
    run("ip", "netns", "add", name)
    try:
        ex = ["ip", "netns", "exec", name]
        run(*ex, "ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1")
        for addr in addrs:
            run(*ex, "ip", "addr", "add", addr, "dev", "d0")
        for dev in ("lo", "d0", "d1"):
            run(*ex, "ip", "link", "set", dev, "up")
        yield ex
    finally:
        run("ip", "netns", "del", name, check=False)


def wait_for(pred, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Appliance:
    def __init__(self, topo, tmp, rules, failure_mode="open", workers=2, offload=True, extra=""):
        self.topo, self.tmp = topo, tmp
        self.rules = tmp / "rules.yaml"
        self.rules.write_text(rules)
        self.eve = tmp / "eve.json"
        self.log = tmp / "appliance.log"
        self.config = tmp / "appliance.yaml"
        self.workers = workers
        self.config_text = textwrap.dedent(f"""\
            interfaces: {{outside: eth0, inside: eth1}}
            rules: rules.yaml
            eve: eve.json
            home_net: [10.2.0.0/16, "fd02::/64"]
            workers: {workers}
            failure_mode: {failure_mode}
            offload: {str(offload).lower()}
            """) + extra
        self.config.write_text(self.config_text)
        self.proc = None

    def without_protocol_logs(self):
        """eve.types without dns/tls/http: a passed HTTP keep-alive connection is then
        offloaded once the rules are done with it (with them on, it stays inspected while
        another request may come, README "EVE output")."""
        self.config_text = self.config_text.replace(
            "eve: eve.json", "eve: {path: eve.json, types: [alert, anomaly, flow, stats]}")
        self.config.write_text(self.config_text)
        return self

    def cmd(self, *extra):
        return ["ip", "netns", "exec", self.topo.fw, sys.executable, "-m", "appliance.run",
                "--config", str(self.config), *extra]

    def launch(self):
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(self.cmd(), cwd=REPO, stdout=logf, stderr=logf,
                                     env={**os.environ, "PYTHONPATH": REPO})
        return self

    def start(self):
        self.launch()
        wait_for(self.ready, what=f"appliance ready; log:\n{self.log_text()}")
        return self

    def log_text(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"appliance exited {self.proc.returncode}:\n{self.log_text()}")
        queues = self.topo.ex(self.topo.fw, "cat", "/proc/net/netfilter/nfnetlink_queue").stdout.splitlines()
        return len(queues) >= self.workers and "NFQUEUE" in self.iptables_save() and \
            "running:" in self.log_text() and self.log_text().count("bound (") >= self.workers

    def iptables_save(self, v6=False):
        return self.topo.ex(self.topo.fw, "ip6tables-nft-save" if v6 else "iptables-nft-save").stdout

    def queues(self):
        """queue number -> (packets queued so far: id_sequence, kernel drops: queue full + user
        dropped) from the appliance namespace's /proc/net/netfilter/nfnetlink_queue."""
        text = self.topo.ex(self.topo.fw, "cat", "/proc/net/netfilter/nfnetlink_queue").stdout
        return {q: (c["queued"], c["dropped"] + c["user_dropped"]) for q, c in parse_queue_counters(text).items()}

    def queued(self):
        """Packets the kernel has queued to us so far (sum of id_sequence over our queues)."""
        return sum(q for q, _ in self.queues().values())

    def signal(self, sig):
        self.proc.send_signal(sig)

    def worker_pids(self):
        """The workers: the supervisor's children that logged binding their queue. Its rule check
        runs iptables-nft children every 5 s, children too while they run (review rvall: under
        load a sample caught one, and a test saw a third "worker")."""
        bound = {int(p) for p in re.findall(r"worker (\d+) bound", self.log_text())}
        with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
            return sorted(p for p in map(int, f.read().split()) if p in bound)

    def events(self, event_type=None):
        if not self.eve.exists():
            return []
        out = [json.loads(line) for line in self.eve.read_text().splitlines() if line.strip()]
        return [e for e in out if event_type is None or e.get("event_type") == event_type]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def remove(self):
        # always with a valid config (a test may have broken the file on purpose)
        self.config.write_text(self.config_text)
        subprocess.run(self.cmd("--remove"), cwd=REPO, env={**os.environ, "PYTHONPATH": REPO}, capture_output=True)


def appliances(topo, tmp_path, rules):
    """Generator behind an `appliance` fixture: yields a factory; on teardown kills what
    is left, removes our kernel state and flushes conntrack."""
    made = []

    def make(**kw):
        kw.setdefault("rules", rules)
        a = Appliance(topo, tmp_path, **kw)
        made.append(a)
        return a
    yield make
    for a in made:
        if a.proc and a.proc.poll() is None:
            a.proc.kill()
            a.proc.wait()
        a.remove()
    topo.ex(topo.fw, "conntrack", "-F")


def curl(topo, url, max_time=4, v6=False):
    """HTTP GET from the client namespace; stdout is the status code ("000" when none)."""
    return topo.ex(topo.client, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time",
                   str(max_time), *(["-6"] if v6 else []), url)


# A UDP client that reports the reply or the errno an ICMP error turned into.
UDP_PROBE = """
import socket, sys
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3); s.connect((sys.argv[1], int(sys.argv[2])))
try:
    s.send(b'ping'); s.send(b'ping'); print('reply', s.recv(100))
except OSError as e:
    print('error', e.errno, e.strerror)
"""
