"""The connection-state lab: two appliances, each a real `appliance run` (offload on) beside a
real `appliance ha` (conntrackd from `ha.sync`, or none), a client and a server whose routes the
lab points at one appliance, then at the other once the moto route table says so (it plays the
VPC; the decision logic is tests/aws/test_ha_netns.py's). Used by tests/aws/test_ha_sync_netns.py
and `python3 -m bench.ha_sync`.

    client ns (10.1.0.2 on lo)                                  server ns (10.2.0.2 on lo)
      c1 10.10.1.2 --- eth0 10.10.1.1 [a1] eth1 10.20.1.1 --- s1 10.20.1.2
      c2 10.10.2.2 --- eth0 10.10.2.1 [a2] eth1 10.20.2.1 --- s2 10.20.2.2
                       a1 mgmt 10.30.0.1 === a2 mgmt 10.30.0.2   heartbeats + conntrackd sync
                       a1 chk  10.31.0.1 === a2 chk  10.31.0.2   the independent check

Namespaces are named hsy-<role>-<tag>; veth pairs are created inside them; everything (processes,
namespaces, moto) is removed by close(), also after a failure.
"""
import json
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "netns"))
sys.path.insert(0, REPO)
from datapath import Appliance  # noqa: E402
from awsfakes import LoopbackBridge, MotoServer  # noqa: E402

CLIENT, SERVER = "10.1.0.2", "10.2.0.2"
CONTROL_PORT = 9911
SINK_PORT, HTTP_PORT = 5001, 8080
SECRET = secrets.token_hex(32)

# A name rule makes the rule set depend on what a flow's first bytes say (an SNI, a Host): the
# case where a midstream pickup cannot know. A raw stream on 5001 is no TLS/HTTP: once its
# bytes show that, it is passed for good and offloaded (letters with no space could be a long
# HTTP method until 1 MiB + 4 KiB, the longest Go reads: ~5 s at 200 KB/s, docs/rules.md).
RULES = """\
default_action: pass
rules:
  - {id: 1, action: drop, proto: tcp, tls_sni: evil.example}
  - {id: 2, action: drop, proto: tcp, http_host: evil.example}
"""

# Server side: accept on SINK_PORT, count bytes per connection; every 50 ms one JSON line
# {"t": monotonic, "bytes": {client_port: n}}. Also answers HTTP on HTTP_PORT.
SINK = r"""
import json, socket, sys, threading, time
counts, lock = {}, threading.Lock()
def handle(c, port):
    while True:
        try:
            d = c.recv(65536)
        except OSError:
            break
        if not d:
            break
        with lock:
            counts[port] = counts.get(port, 0) + len(d)
def http(c):
    c.settimeout(30)
    try:
        if c.recv(4096):
            c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
    except OSError:
        pass
    c.close()
def listen(port, fn):
    ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((sys.argv[1], port)); ls.listen(64)
    while True:
        c, a = ls.accept()
        threading.Thread(target=fn, args=(c, a[1]) if fn is handle else (c,), daemon=True).start()
threading.Thread(target=listen, args=(int(sys.argv[2]), handle), daemon=True).start()
threading.Thread(target=listen, args=(int(sys.argv[3]), http), daemon=True).start()
print(json.dumps({"ready": True}), flush=True)
while True:
    time.sleep(0.05)
    with lock:
        print(json.dumps({"t": time.monotonic(), "bytes": dict(counts)}), flush=True)
"""

# Client side: N connections each sending RATE bytes/s for SECONDS (in 4 KB writes), and one
# HTTP connection opened at once whose request waits for a line on stdin ("go HOST").
# Prints {"ports": [...]} when connected, then at the end {"sent": {port: n}, "errors": {port: e},
# "http": "..."}.
SENDER = r"""
import json, socket, sys, threading, time
dst, port, n, rate, seconds, http_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
socks = [socket.create_connection((dst, port), timeout=5) for _ in range(n)]
web = socket.create_connection((dst, http_port), timeout=5)
sent, errors, http = {}, {}, [None]
print(json.dumps({"ports": [s.getsockname()[1] for s in socks], "http_port": web.getsockname()[1]}), flush=True)
def pump(s):
    p, chunk, t0 = s.getsockname()[1], b"x" * 4096, time.monotonic()
    sent[p] = 0
    s.settimeout(2)
    while time.monotonic() - t0 < seconds:
        if sent[p] > rate * (time.monotonic() - t0):
            time.sleep(0.005); continue
        try:
            sent[p] += s.send(chunk)
        except socket.timeout:
            continue
        except OSError as e:
            errors[p] = str(e); return
def ask():
    line = sys.stdin.readline().split()
    try:
        web.settimeout(float(line[2]))
        web.sendall(f"GET / HTTP/1.1\r\nHost: {line[1]}\r\n\r\n".encode())
        r = web.recv(4096)
        http[0] = r.split(b"\r\n")[0].decode() if r else "closed"
    except OSError as e:
        http[0] = f"error: {e}"
ts = [threading.Thread(target=pump, args=(s,)) for s in socks] + [threading.Thread(target=ask)]
for t in ts: t.start()
for t in ts: t.join()
print(json.dumps({"sent": sent, "errors": errors, "http": http[0]}), flush=True)
"""


def sh(*cmd, check=True, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} -> exit {r.returncode}: {r.stderr.strip()}")
    return r


def wait_for(pred, timeout, what, seen=None, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f"; now: {seen()}" if seen else ""))


class Side:
    """One appliance namespace, shaped as datapath.Appliance expects its topology."""

    def __init__(self, ns):
        self.fw = ns

    def ex(self, ns, *cmd, check=False, **kw):
        return sh("ip", "netns", "exec", ns, *cmd, check=check, **kw)


class SyncLab:
    def __init__(self, tmp, sync=True, rules=RULES):
        self.tmp, self.sync, self.rules = tmp, sync, rules
        tag = secrets.token_hex(3)
        self.c, self.s = f"hsy-c-{tag}", f"hsy-s-{tag}"
        self.a = [f"hsy-a1-{tag}", f"hsy-a2-{tag}"]
        self.made, self.procs, self.bridges, self.apps, self.restarted = [], [], [], [], []
        self.moto = None
        self.ha_logs, self.status = [], []

    # -- build ------------------------------------------------------------------------------
    def up(self):
        for ns in (self.c, self.s, *self.a):
            sh("ip", "netns", "add", ns)
            self.made.append(ns)
            self.ex(ns, "ip", "link", "set", "lo", "up")
            self.ex(ns, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0")
        self.ex(self.c, "ip", "addr", "add", f"{CLIENT}/32", "dev", "lo")
        self.ex(self.s, "ip", "addr", "add", f"{SERVER}/32", "dev", "lo")
        for i, a in enumerate(self.a, 1):
            sh("ip", "link", "add", f"c{i}", "netns", self.c, "type", "veth", "peer", "name", "eth0", "netns", a)
            sh("ip", "link", "add", f"s{i}", "netns", self.s, "type", "veth", "peer", "name", "eth1", "netns", a)
            for ns, dev, addr in ((self.c, f"c{i}", f"10.10.{i}.2/24"), (a, "eth0", f"10.10.{i}.1/24"),
                                  (a, "eth1", f"10.20.{i}.1/24"), (self.s, f"s{i}", f"10.20.{i}.2/24")):
                self.ex(ns, "ip", "addr", "add", addr, "dev", dev)
                self.ex(ns, "ip", "link", "set", dev, "up")
            self.ex(a, "ip", "route", "add", "10.1.0.0/24", "via", f"10.10.{i}.2")
            self.ex(a, "ip", "route", "add", "10.2.0.0/24", "via", f"10.20.{i}.2")
            self.ex(a, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for link, prefix in (("mgmt", "10.30.0"), ("chk", "10.31.0")):
            sh("ip", "-n", self.a[0], "link", "add", link, "type", "veth", "peer", "name", link, "netns", self.a[1])
            for i, a in enumerate(self.a, 1):
                self.ex(a, "ip", "addr", "add", f"{prefix}.{i}/24", "dev", link)
                self.ex(a, "ip", "link", "set", link, "up")
        self.point_at(0)
        self.cloud()
        for i in range(2):
            self.start_appliance(i)
        for i in range(2):
            self.start_ha(i)
        wait_for(lambda: self.state(0) == "primary" and self.state(1) == "standby"
                 and (self.read_status(1).get("last_decision") or {}).get("code") == "peer_healthy",
                 60, "a1 primary, a2 standby", lambda: [
                     (self.state(i), self.read_status(i).get("last_decision"), self.read_status(i).get("ready_problems"))
                     for i in range(2)])
        if self.sync:
            wait_for(lambda: all((self.read_status(i).get("sync") or {}).get("running") for i in range(2)), 10,
                     "conntrackd running on both")
        return self

    def ex(self, ns, *cmd, check=True):
        return sh("ip", "netns", "exec", ns, *cmd, check=check)

    def point_at(self, i):
        """The VPC's part: the client's and the server's routes through appliance i."""
        n = i + 1
        self.ex(self.c, "ip", "route", "replace", "10.2.0.0/24", "via", f"10.10.{n}.1", "src", CLIENT)
        self.ex(self.s, "ip", "route", "replace", "10.1.0.0/24", "via", f"10.20.{n}.1", "src", SERVER)

    def cloud(self):
        self.moto = MotoServer(no_auth_calls=9)         # the setup calls below, before IAM checks start
        ec2 = self.moto.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        sub = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        self.enis = [ec2.create_network_interface(SubnetId=sub)["NetworkInterface"]["NetworkInterfaceId"]
                     for _ in range(2)]
        self.rtb = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
        ec2.create_route(RouteTableId=self.rtb, DestinationCidrBlock="0.0.0.0/0", NetworkInterfaceId=self.enis[0])
        policy = json.load(open(os.path.join(REPO, "deploy/ha-iam-policy.json")))
        for st in policy["Statement"]:
            st["Resource"] = "*"                          # moto matches actions only
        iam = self.moto.client("iam")
        iam.create_user(UserName="ha")
        iam.put_user_policy(UserName="ha", PolicyName="ha", PolicyDocument=json.dumps(policy))
        k = iam.create_access_key(UserName="ha")["AccessKey"]
        self.keys = (k["AccessKeyId"], k["SecretAccessKey"])
        self.ec2 = self.moto.client("ec2", self.keys)

    def route_target(self):
        routes = self.ec2.describe_route_tables(RouteTableIds=[self.rtb])["RouteTables"][0]["Routes"]
        return next(r.get("NetworkInterfaceId") for r in routes if r.get("DestinationCidrBlock") == "0.0.0.0/0")

    def config_extra(self, i):
        me, peer = i + 1, 2 - i
        d = self.tmp / f"a{me}"
        sync = f"  sync: {{interface: mgmt, run_dir: {d / 'conntrackd'}}}\n" if self.sync else ""
        return textwrap.dedent(f"""\
            control: {{listen: 127.0.0.1:{CONTROL_PORT}}}
            ha:
              listen: 10.30.0.{me}:7400
              peer: 10.30.0.{peer}:7400
              check_listen: 10.31.0.{me}:7401
              check_peer: 10.31.0.{peer}:7401
              secret: {SECRET}
              dead_after: 3              # /readyz gets 1 s (dead_after / 3): on a loaded 2-core host a
              hold_down: 2               # slow answer must not flap the primary into fault during setup
              route_tables: [{self.rtb}]
              eni: {self.enis[i]}
              peer_eni: {self.enis[1 - i]}
              status_file: {d / 'ha.json'}
            """) + sync

    def start_appliance(self, i, again=False):
        """`appliance run` in appliance i; `again`: a new one after fail_primary (its own
        directory for rules, EVE and log; the same ha: section)."""
        d = self.tmp / (f"a{i + 1}-again" if again else f"a{i + 1}")
        d.mkdir(exist_ok=True)
        app = Appliance(Side(self.a[i]), d, self.rules, workers=1, extra=self.config_extra(i)).start()
        if again:
            self.restarted.append(app)
        else:
            self.apps.append(app)

    def start_ha(self, i):
        bridge = LoopbackBridge(self.a[i], self.moto.port)
        self.bridges.append(bridge)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID=self.keys[0], AWS_SECRET_ACCESS_KEY=self.keys[1], AWS_REGION="us-east-1",
                   AWS_ENDPOINT_URL_EC2=f"http://127.0.0.1:{bridge.port}", PYTHONPATH=REPO)
        log = self.tmp / f"a{i + 1}" / "ha.log"
        self.ha_logs.append(log)
        self.status.append(self.tmp / f"a{i + 1}" / "ha.json")
        with open(log, "ab") as out:
            self.procs.append(subprocess.Popen(
                ["ip", "netns", "exec", self.a[i], sys.executable, "-m", "appliance", "ha", "--config",
                 str(self.apps[i].config)], env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT))

    # -- reading ----------------------------------------------------------------------------
    def read_status(self, i):
        try:
            return json.loads(self.status[i].read_text())
        except (OSError, ValueError):
            return {}

    def state(self, i):
        return self.read_status(i).get("state")

    def ha_events(self, i, kind=None):
        out = [json.loads(ln)["ha"] for ln in self.ha_logs[i].read_text().splitlines() if ln.startswith("{")]
        return [e for e in out if kind is None or e["event"] == kind]

    def timeouts(self, i, port):
        """{client port: seconds left} of the TCP entries with server port `port` in appliance i."""
        out = {}
        for line in self.ex(self.a[i], "conntrack", "-L", "-p", "tcp", check=False).stdout.splitlines():
            f = line.split()
            if f"dport={port}" in f and len(f) > 2 and f[2].isdigit():
                out[int(next(x for x in f if x.startswith("sport="))[6:])] = int(f[2])
        return out

    def conntrack(self, i, port):
        """{client port: mark} of the TCP entries with server port `port` in appliance i's kernel,
        whichever way round the entry was made (a midstream pickup may begin with the server's
        segment: then the server is the entry's original source)."""
        out = {}
        for line in self.ex(self.a[i], "conntrack", "-L", "-p", "tcp", check=False).stdout.splitlines():
            f = {}
            for kv in line.split():                   # the first of each key is the original direction's
                k, eq, v = kv.partition("=")
                if eq:
                    f.setdefault(k, v)
            if f.get("dport") == str(port):
                out[int(f["sport"])] = int(f.get("mark", "0"))
            elif f.get("sport") == str(port):
                out[int(f["dport"])] = int(f.get("mark", "0"))
        return out

    def metrics(self, i):
        return self.ex(self.a[i], "curl", "-sS", "--max-time", "5",
                       f"http://127.0.0.1:{CONTROL_PORT}/metrics", check=False).stdout

    # -- traffic ----------------------------------------------------------------------------
    def start_sink(self):
        p = subprocess.Popen(["ip", "netns", "exec", self.s, sys.executable, "-u", "-c", SINK, SERVER,
                              str(SINK_PORT), str(HTTP_PORT)], stdout=subprocess.PIPE, text=True)
        self.procs.append(p)
        assert json.loads(p.stdout.readline()).get("ready")
        self.sink = p
        self.timeline = []
        import threading

        def read():
            for line in p.stdout:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                self.timeline.append((rec["t"], {int(k): v for k, v in rec["bytes"].items()}))
        threading.Thread(target=read, daemon=True).start()

    def start_senders(self, n, rate, seconds):
        p = subprocess.Popen(["ip", "netns", "exec", self.c, sys.executable, "-u", "-c", SENDER, SERVER,
                              str(SINK_PORT), str(n), str(rate), str(seconds), str(HTTP_PORT)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.procs.append(p)
        hello = json.loads(p.stdout.readline())
        return p, hello["ports"], hello["http_port"]

    def received(self, port, at=None):
        """Bytes the server had from client port `port` at monotonic time `at` (None: latest)."""
        got = 0
        for t, counts in self.timeline:
            if at is not None and t > at:
                break
            got = counts.get(port, got)
        return got

    def longest_pause(self, port, start, end):
        """The longest time between two arrivals of `port`'s bytes at the server in [start, end]."""
        last, n, worst = start, self.received(port, start), 0.0
        for t, counts in self.timeline:
            if start < t <= end and counts.get(port, 0) > n:
                worst, last, n = max(worst, t - last), t, counts[port]
        return max(worst, end - last)

    def fail_primary(self):
        """The failure: a1's `appliance run` killed (-9) with its workers: its /readyz is gone,
        so a1's `appliance ha` goes to fault and says so; a2 takes the routes. a1's kernel keeps
        passing what it passed (queue-bypass, offloaded marks): only the route move matters."""
        app = self.apps[0]
        pids = [app.proc.pid] + app.worker_pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        app.proc.wait()

    # -- teardown ---------------------------------------------------------------------------
    def close(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for app in self.apps + self.restarted:
            if app.proc and app.proc.poll() is None:
                app.proc.kill()
                app.proc.wait()
        for ns in self.made:
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        for b in self.bridges:
            b.close()
        if self.moto:
            self.moto.close()
        for ns in self.made:
            sh("ip", "netns", "del", ns, check=False)
        self.made = []


def takeover_run(lab, conns=4, rate=200_000, seconds=10.0, settle=3.0):
    """One takeover under load: `conns` offloaded transfers (rate bytes/s each) and one HTTP
    connection still under inspection (handshake done, request not sent). Returns the figures."""
    from appliance import netfilter
    from appliance.config import DEFAULT_MARK_MASK
    passed = netfilter.offload_marks(DEFAULT_MARK_MASK)["pass"]
    lab.start_sink()
    sender, ports, http_port = lab.start_senders(conns, rate, seconds)
    offloaded = wait_for(lambda: (lambda m: m if all(m.get(p) == passed for p in ports) else None)(
        lab.conntrack(0, SINK_PORT)), 10, "the transfers offloaded on a1 (PASS connmark)")
    undecided = lab.conntrack(0, HTTP_PORT).get(http_port)
    time.sleep(settle / 3)
    t_fail = time.monotonic()
    lab.fail_primary()
    wait_for(lambda: lab.route_target() == lab.enis[1], 20, "the route at a2's ENI (moto)")
    t_route = time.monotonic()
    a2_committed = lab.conntrack(1, SINK_PORT)
    lab.point_at(1)                                   # the VPC follows its route table
    t_switch = time.monotonic()
    a2_marks = lab.conntrack(1, SINK_PORT)
    time.sleep(1.0)
    a2_later = lab.conntrack(1, SINK_PORT)            # while the transfers still run
    sender.stdin.write("go good.example 5\n")
    sender.stdin.flush()
    out = json.loads(sender.stdout.readline())
    t_end = time.monotonic()
    time.sleep(1.0)                                   # what is in flight arrives; the sink's last lines
    flows = {}
    for p in ports:
        late, end = lab.received(p, t_switch + 1.0), lab.received(p)
        sent = out["sent"].get(str(p), 0)
        # kept: still moving a second after the switch, and everything written arrived
        kept = end > late and end == sent and not out["errors"].get(str(p))
        flows[p] = {"sent": sent, "received": end, "after_switch": end - lab.received(p, t_switch),
                    "kept": kept, "pause": lab.longest_pause(p, t_fail - 0.5, t_end) if kept else None,
                    "error": out["errors"].get(str(p))}
    kept = [p for p, f in flows.items() if f["kept"]]
    return {"ports": ports, "passed_mark": passed, "a1_marks": {p: offloaded[p] for p in ports},
            "a2_marks_at_switch": {p: a2_marks.get(p) for p in ports},
            "a2_marks_committed": {p: a2_committed.get(p) for p in ports},
            "a2_marks_later": {p: a2_later.get(p) for p in ports}, "http_port": http_port,
            "http_mark_a1": undecided, "http": out["http"], "flows": flows, "kept": len(kept),
            "fail_to_route_s": t_route - t_fail, "switch_at": t_switch,
            "longest_pause": max((f["pause"] for f in flows.values() if f["kept"]), default=None),
            "bytes_stalled": sum(f["sent"] - f["received"] for f in flows.values())}
