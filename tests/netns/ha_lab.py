"""The HA lab: a VPC played by namespaces, two real appliances, a moto route table as the truth.

                                   +-- o1 -- eth0  a1  eth1 -- n1 --+
    client c0 -- rc  VPC router r  |     appliance run + appliance ha |  rs -- s0 server
    10.1.0.2     10.1.0.1          +-- o2 -- eth0  a2  eth1 -- n2 --+  10.2.0.1   10.2.0.2
                                          m0 <-- management --> m0   (heartbeats)

- a{i}: eth0 (outside) 10.10.i.2, eth1 (inside) 10.20.i.2, m0 10.30.0.i; the router's ends
  .1. Each runs a real `appliance run` (NFQUEUE, connmark offload, control plane on
  127.0.0.1:9900) and `appliance ha` whose health is that control plane's /readyz;
  heartbeats over m0, the independent check (probes) through the inside network (eth1, the
  router, the peer's eth1). EC2 is a moto server bridged onto each namespace's loopback.
- The VPC: two moto route tables, the client side's (10.2.0.0/24 -> an appliance ENI) and the
  server side's (10.1.0.0/24 -> an appliance ENI). `Vpc`, a thread, reads them every 20 ms
  and points the router's policy routes at the appliance owning the target ENI: packets in
  from the client (iif rc, table 100) go to that appliance's outside, packets in from the
  server (iif rs, table 200) to its inside. What comes back out of an appliance is routed by
  the main table (connected subnets). Each change is recorded with its time.
- `Instance.extra`: commands started in the instance's namespace with the datapath (and
  killed, frozen and restarted with it) -- the hook for conntrackd (tests of helper ha-sync).

Failures act on the whole instance, as an instance fails: `kill9` kills every process in its
namespace and turns IP forwarding off there (a dead instance's kernel forwards nothing either;
with fail-open queues, a kernel left forwarding would hide the outage), `freeze`/`thaw`
SIGSTOP/SIGCONT every process (the kernel keeps forwarding what is offloaded: a hung
userspace), `link_down` takes its inside link down (its /readyz fails: `links`), `cut_heartbeats`
takes only the management link down. `restart` is a reboot: forwarding on, conntrack empty,
the datapath, the extras and `appliance ha` started again.

Namespaces are `hal-<hex>-{c,r,s,a1,a2}`; veths are created inside them; `Lab.down` deletes
them (and everything running in them) even after a failed test.
"""
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [REPO, os.path.join(REPO, "tests", "aws")]
from awsfakes import LoopbackBridge, MotoServer  # noqa: E402

CLIENT, SERVER = "10.1.0.2", "10.2.0.2"
CONTROL_PORT = 9900
RULES = """\
default_action: pass
rules:
  - {id: 1, msg: "blocked port", action: drop, proto: tcp, dst_port: 2222}
"""
SYNC_EVERY = 0.02          # seconds between the VPC's reads of the route tables


def sh(*cmd, check=True, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
    return r


def wait_for(pred, timeout=20.0, what="condition", every=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def can_run():
    """None, or why this machine cannot run the lab."""
    if os.geteuid() != 0:
        return "the HA lab needs root (network namespaces, NFQUEUE)"
    for tool in ("ip", "iptables-nft-restore", "conntrack", "ping", "curl"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    for mod in ("moto", "boto3", "pyroute2", "netfilterqueue"):
        try:
            __import__(mod)
        except ImportError:
            return f"python module {mod} is missing"
    return None


class Ec2Bridge(LoopbackBridge):
    """awsfakes.LoopbackBridge (EC2 on the namespace's loopback) that keeps going whatever its
    clients do (instances are killed mid-request here): each connection is relayed by threads
    of its own (the connect to moto too, with a timeout); accept errors are counted, not fatal.
    `delay` seconds are added to every answer from EC2 (a slow or throttled API); `delayed`
    counts the answers held back."""

    def __init__(self, netns_name, target_port):
        self.delay, self.delayed, self.errors = 0.0, 0, []
        self.closed = False
        super().__init__(netns_name, target_port)

    def _accept(self):
        while not self.closed:
            try:
                a, _ = self.sock.accept()
            except OSError as e:
                if self.closed:
                    return
                self.errors.append(f"accept: {e}")
                continue
            threading.Thread(target=self._relay, args=(a,), daemon=True).start()

    def _relay(self, a):
        try:
            b = socket.create_connection(("127.0.0.1", self.target), timeout=10)
            b.settimeout(None)
        except OSError as e:
            self.errors.append(f"connect: {e}")
            a.close()
            return
        threading.Thread(target=self._pump, args=(a, b, False), daemon=True).start()
        self._pump(b, a, True)

    def _pump(self, src, dst, from_ec2):
        try:
            while data := src.recv(65536):
                if from_ec2 and self.delay:
                    time.sleep(self.delay)
                    self.delayed += 1
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self):
        self.closed = True
        super().close()


class Instance:
    """One appliance: namespace, addresses, appliance.yaml, its processes."""

    def __init__(self, lab, i):
        self.lab, self.i = lab, i
        self.name = f"a{i}"
        self.ns = f"{lab.prefix}-{self.name}"
        self.outside, self.inside, self.mgmt = f"10.10.{i}.2", f"10.20.{i}.2", f"10.30.0.{i}"
        self.dir = os.path.join(lab.tmp, self.name)
        os.makedirs(self.dir, exist_ok=True)
        self.config = os.path.join(self.dir, "appliance.yaml")
        self.status_file = os.path.join(self.dir, "ha.json")
        self.ha_log = os.path.join(self.dir, "ha.log")
        self.run_log = os.path.join(self.dir, "run.log")
        self.eni = None
        self.extra = []            # argv lists started with the datapath (conntrackd: helper ha-sync)
        self.procs = {}
        self.bridge = None

    def ex(self, *cmd, check=False, **kw):
        return sh("ip", "netns", "exec", self.ns, *cmd, check=check, **kw)

    def write_config(self):
        lab, peer = self.lab, self.lab.peer_of(self)
        with open(os.path.join(self.dir, "rules.yaml"), "w") as f:
            f.write(lab.rules)
        with open(self.config, "w") as f:
            f.write(textwrap.dedent(f"""\
                interfaces: {{outside: eth0, inside: eth1}}
                rules: rules.yaml
                eve: {{path: eve.json, types: [alert, anomaly, flow, stats]}}
                home_net: [10.2.0.0/24]
                workers: {lab.workers}
                failure_mode: open
                offload: true
                control: {{listen: "127.0.0.1:{CONTROL_PORT}"}}
                ha:
                  listen: {self.mgmt}:7400
                  peer: {peer.mgmt}:7400
                  check_listen: {self.inside}:7401
                  check_peer: {peer.inside}:7401
                  secret: {lab.secret}
                  interval: {lab.interval}
                  dead_after: {lab.dead_after}
                  hold_down: {lab.hold_down}
                  preempt: false
                  route_tables: [{', '.join(lab.rtbs)}]
                  eni: {self.eni}
                  peer_eni: {peer.eni}
                  status_file: {self.status_file}
                """))

    def env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID=self.lab.keys[0], AWS_SECRET_ACCESS_KEY=self.lab.keys[1],
                   AWS_REGION="us-east-1", AWS_ENDPOINT_URL_EC2=f"http://127.0.0.1:{self.bridge.port}",
                   PYTHONPATH=REPO)
        return env

    def _spawn(self, key, argv, log):
        out = open(log, "ab")
        self.procs[key] = subprocess.Popen(["ip", "netns", "exec", self.ns, *argv], cwd=REPO, env=self.env(),
                                           stdout=out, stderr=subprocess.STDOUT)
        out.close()
        return self.procs[key]

    # -- the instance's services --------------------------------------------------------------
    def start_datapath(self):
        p = self._spawn("run", [sys.executable, "-m", "appliance.run", "--config", self.config], self.run_log)
        wait_for(lambda: p.poll() is not None or self.readyz()[0] == 200, 60,
                 f"{self.name}: appliance run ready ({self.run_log})", every=0.2)
        if p.poll() is not None:
            raise RuntimeError(f"{self.name}: appliance run exited {p.returncode}: {self.tail(self.run_log)}")
        for n, argv in enumerate(self.extra):
            self._spawn(f"extra{n}", argv, os.path.join(self.dir, f"extra{n}.log"))

    def start_ha(self):
        self._spawn("ha", [sys.executable, "-m", "appliance", "ha", "--config", self.config], self.ha_log)

    def start(self):
        self.start_datapath()
        self.start_ha()

    def readyz(self):
        """(HTTP status, body) of this instance's /readyz, asked from inside its namespace."""
        r = self.ex("curl", "-s", "-m", "3", "-o", "-", "-w", "\n%{http_code}",
                    f"http://127.0.0.1:{CONTROL_PORT}/readyz")
        body, _, code = r.stdout.rpartition("\n")
        try:
            return int(code or 0), json.loads(body) if body.strip() else None
        except ValueError:
            return int(code or 0), None

    def pids(self):
        return [int(p) for p in self.ex("ip", "netns", "pids", self.ns).stdout.split()]

    # -- failures -------------------------------------------------------------------------------
    def kill9(self):
        """The instance dies: every process at once, and its kernel stops forwarding."""
        self.ex("sysctl", "-qw", "net.ipv4.ip_forward=0")
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in self.procs.values():
            p.wait()
        self.procs = {}

    def _signal_all(self, sig):
        for pid in self.pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def freeze(self):
        self._signal_all(signal.SIGSTOP)

    def thaw(self):
        self._signal_all(signal.SIGCONT)

    def link_down(self):
        self.ex("ip", "link", "set", "eth1", "down", check=True)

    def link_up(self):
        self.ex("ip", "link", "set", "eth1", "up", check=True)
        self.routes()              # the kernel dropped those via eth1 with the link

    def routes(self):
        i = self.i
        sh("ip", "-n", self.ns, "route", "replace", "10.1.0.0/24", "via", f"10.10.{i}.1")
        sh("ip", "-n", self.ns, "route", "replace", "10.2.0.0/24", "via", f"10.20.{i}.1")
        # the peer's inside address (the independent check) through the router
        sh("ip", "-n", self.ns, "route", "replace", "10.20.0.0/16", "via", f"10.20.{i}.1")

    def cut_heartbeats(self):
        self.ex("ip", "link", "set", "m0", "down", check=True)

    def mend_heartbeats(self):
        self.ex("ip", "link", "set", "m0", "up", check=True)

    def restart(self):
        """A reboot after kill9: forwarding on, conntrack empty, every service started again."""
        self.kill9()
        self.ex("sysctl", "-qw", "net.ipv4.ip_forward=1", check=True)
        self.ex("conntrack", "-F")
        self.start()

    def stop_ha(self):
        p = self.procs.pop("ha", None)
        if p and p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    # -- what it says ---------------------------------------------------------------------------
    def status(self):
        try:
            with open(self.status_file) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def decision(self):
        return (self.status().get("last_decision") or {}).get("code")

    def events(self, kind=None):
        try:
            with open(self.ha_log) as f:
                lines = [json.loads(line) for line in f if line.startswith("{")]
        except OSError:
            return []
        return [e["ha"] for e in lines if kind is None or e["ha"]["event"] == kind]

    @staticmethod
    def tail(path, n=3000):
        try:
            with open(path, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""


class Vpc(threading.Thread):
    """The VPC's routing, played from the moto route tables (module docstring)."""

    def __init__(self, lab):
        super().__init__(daemon=True, name="vpc")
        self.lab = lab
        self.ec2 = lab.moto.client("ec2", lab.keys)
        self.targets = {}          # rtb -> eni as last applied
        self.changes = []          # (monotonic time, rtb, eni)
        self.errors = 0
        self.slowest = 0.0         # seconds: the slowest read of the tables (moto under load)
        self.stopping = threading.Event()
        self.applied = threading.Event()

    def read(self):
        out = {}
        for t in self.ec2.describe_route_tables(RouteTableIds=list(self.lab.rtbs))["RouteTables"]:
            for r in t["Routes"]:
                if r.get("DestinationCidrBlock") == self.lab.route_of[t["RouteTableId"]][0]:
                    out[t["RouteTableId"]] = r.get("NetworkInterfaceId")
        return out

    def apply(self, rtb, eni):
        dest, table, side = self.lab.route_of[rtb]
        inst = self.lab.by_eni.get(eni)
        if inst is None:
            sh("ip", "-n", self.lab.router, "route", "replace", "blackhole", dest, "table", str(table))
        else:
            via = inst.outside if side == "outside" else inst.inside
            sh("ip", "-n", self.lab.router, "route", "replace", dest, "via", via, "table", str(table))

    def run(self):
        while not self.stopping.is_set():
            t0 = time.monotonic()
            try:
                now = self.read()
            except Exception:          # moto busy or restarting: the VPC keeps its last routes
                self.errors += 1
                now = {}
            t = time.monotonic()
            self.slowest = max(self.slowest, t - t0)
            for rtb, eni in now.items():
                if self.targets.get(rtb) != eni:
                    self.apply(rtb, eni)
                    self.targets[rtb] = eni
                    self.changes.append((t, rtb, eni))
            if now:
                self.applied.set()
            self.stopping.wait(SYNC_EVERY)

    def owner(self):
        """The instance both tables point at, or None (split or unknown)."""
        enis = set(self.targets.values())
        if len(self.targets) == len(self.lab.rtbs) and len(enis) == 1:
            return self.lab.by_eni.get(enis.pop())
        return None

    def moved_to(self, inst, since):
        """Time (monotonic) at which both tables pointed at `inst` after `since`, or None."""
        last = {}
        for t, rtb, eni in self.changes:
            if t >= since:
                last[rtb] = (t, eni)
        if len(last) == len(self.lab.rtbs) and all(e == inst.eni for _, e in last.values()):
            return max(t for t, _ in last.values())
        return None

    def owner_changes(self, since):
        """How many times the owner (both tables at one ENI) changed after `since`; the first
        owner seen is no change."""
        n, state, owner = 0, {}, None
        for t, rtb, eni in self.changes:
            state[rtb] = eni
            whole = eni if len(state) == len(self.lab.rtbs) and len(set(state.values())) == 1 else None
            if whole and whole != owner:
                n += owner is not None and t >= since
                owner = whole
        return n


class Lab:
    def __init__(self, tmp, hold_down=2.0, interval=0.2, dead_after=1.0, workers=1, rules=RULES):
        self.tmp = str(tmp)
        self.prefix = f"hal-{secrets.token_hex(3)}"
        self.router, self.client, self.server = (f"{self.prefix}-{x}" for x in ("r", "c", "s"))
        self.hold_down, self.interval, self.dead_after, self.workers, self.rules = \
            hold_down, interval, dead_after, workers, rules
        self.secret = secrets.token_hex(32)
        self.instances = [Instance(self, 1), Instance(self, 2)]
        self.made, self.moto, self.vpc, self.keys = [], None, None, None
        self.rtbs, self.route_of, self.by_eni = (), {}, {}

    def peer_of(self, inst):
        return self.instances[2 - inst.i]

    @property
    def a1(self):
        return self.instances[0]

    @property
    def a2(self):
        return self.instances[1]

    # -- building -------------------------------------------------------------------------------
    def _ns(self, ns):
        sh("ip", "netns", "add", ns)
        self.made.append(ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")

    def _veth(self, ns_a, dev_a, addr_a, ns_b, dev_b, addr_b):
        sh("ip", "link", "add", dev_a, "netns", ns_a, "type", "veth", "peer", "name", dev_b, "netns", ns_b)
        for ns, dev, addr in ((ns_a, dev_a, addr_a), (ns_b, dev_b, addr_b)):
            sh("ip", "-n", ns, "addr", "add", addr, "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")

    def _network(self):
        r, c, s = self.router, self.client, self.server
        for ns in (r, c, s, *(i.ns for i in self.instances)):
            self._ns(ns)
        self._veth(c, "c0", "10.1.0.2/24", r, "rc", "10.1.0.1/24")
        self._veth(s, "s0", "10.2.0.2/24", r, "rs", "10.2.0.1/24")
        for i in self.instances:
            self._veth(i.ns, "eth0", f"{i.outside}/24", r, f"o{i.i}", f"10.10.{i.i}.1/24")
            self._veth(i.ns, "eth1", f"{i.inside}/24", r, f"n{i.i}", f"10.20.{i.i}.1/24")
            i.routes()
            sh("ip", "netns", "exec", i.ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self._veth(self.a1.ns, "m0", f"{self.a1.mgmt}/24", self.a2.ns, "m0", f"{self.a2.mgmt}/24")
        sh("ip", "-n", c, "route", "add", "default", "via", "10.1.0.1")
        sh("ip", "-n", s, "route", "add", "default", "via", "10.2.0.1")
        # The router hands packets back and forth through an appliance: strict reverse-path
        # filtering would drop the client's packets coming back in from an appliance's inside.
        sh("ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0",
           "net.ipv4.conf.default.rp_filter=0")
        for dev in ("rc", "rs", "o1", "o2", "n1", "n2"):
            sh("ip", "netns", "exec", r, "sysctl", "-qw", f"net.ipv4.conf.{dev}.rp_filter=0")
        sh("ip", "-n", r, "rule", "add", "iif", "rc", "table", "100", "priority", "100")
        sh("ip", "-n", r, "rule", "add", "iif", "rs", "table", "200", "priority", "200")

    def _cloud(self):
        # setup calls made before moto checks signatures, counted exactly (MotoServer)
        self.moto = MotoServer(no_auth_calls=11)
        # MotoServer keeps moto's stderr on a pipe (for its start-up errors) and moto logs every
        # request there: at the VPC's 50 reads a second the pipe fills in seconds and moto stops
        # answering anyone. Drain it, keeping the tail for explain().
        self.moto_log = []
        threading.Thread(target=self._drain_moto, args=(self.moto.proc.stderr,), daemon=True).start()
        ec2 = self.moto.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        sub = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        for i in self.instances:
            i.eni = ec2.create_network_interface(SubnetId=sub)["NetworkInterface"]["NetworkInterfaceId"]
            self.by_eni[i.eni] = i
        rtbs = []
        for dest, table, side in (("10.2.0.0/24", 100, "outside"), ("10.1.0.0/24", 200, "inside")):
            rtb = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
            ec2.create_route(RouteTableId=rtb, DestinationCidrBlock=dest, NetworkInterfaceId=self.a1.eni)
            self.route_of[rtb] = (dest, table, side)
            rtbs.append(rtb)
        self.rtbs = tuple(rtbs)
        policy = json.load(open(os.path.join(REPO, "deploy/ha-iam-policy.json")))
        for st in policy["Statement"]:
            st["Resource"] = "*"       # moto matches actions, not resource ARNs (tests/aws/test_ha_netns.py)
        iam = self.moto.client("iam")
        iam.create_user(UserName="ha")
        iam.put_user_policy(UserName="ha", PolicyName="ha", PolicyDocument=json.dumps(policy))
        k = iam.create_access_key(UserName="ha")["AccessKey"]
        self.keys = (k["AccessKeyId"], k["SecretAccessKey"])
        for i in self.instances:
            i.bridge = Ec2Bridge(i.ns, self.moto.port)

    def _drain_moto(self, pipe):
        for line in iter(pipe.readline, b""):
            self.moto_log = (self.moto_log + [line.decode(errors="replace").rstrip()])[-20:]

    def up(self, start=True):
        """Build everything; with `start`, a1 primary and a2 standby, both healthy, traffic via a1."""
        try:
            self._network()
            self._cloud()
            for i in self.instances:
                i.write_config()
            self.vpc = Vpc(self)
            self.vpc.start()
            if not self.vpc.applied.wait(30):
                raise RuntimeError("the VPC thread could not read the route tables")
            if start:
                self.start()
        except BaseException:
            self.down()
            raise
        return self

    def start(self):
        for i in self.instances:
            i.start_datapath()
        for i in self.instances:
            i.start_ha()
        self.wait_settled(self.a1)

    def wait_settled(self, primary, timeout=30):
        """`primary` holds the routes and says so; its peer is standby and finds it healthy."""
        standby = self.peer_of(primary)
        try:
            wait_for(lambda: self.vpc.owner() is primary and primary.status().get("state") == "primary"
                     and standby.status().get("state") == "standby" and standby.decision() == "peer_healthy",
                     timeout, f"{primary.name} primary, {standby.name} standby and healthy")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.explain()}") from None

    def explain(self):
        """What the lab knows, for a failed wait: the VPC's view, each instance's status and log."""
        out = [f"VPC: owner {getattr(self.vpc.owner(), 'name', None)}, targets {self.vpc.targets}, "
               f"read errors {self.vpc.errors}, slowest read {self.vpc.slowest:.2f}s"]
        for i in self.instances:
            st = i.status()
            out.append(f"{i.name} ({i.eni}): state {st.get('state')}, decision {st.get('last_decision')}, "
                       f"written {st.get('written')}, ready problems {st.get('ready_problems')}, "
                       f"EC2 bridge errors {i.bridge.errors[-3:] if i.bridge else None}")
            out += ["  " + line[:300] for line in i.tail(i.ha_log, 1500).splitlines()[-5:]]
        return "\n".join(out)

    def set_ha(self, **kw):
        """Change ha: settings (hold_down, ...) and restart both `appliance ha` daemons."""
        for k, v in kw.items():
            setattr(self, k, v)
        for i in self.instances:
            i.stop_ha()
            i.write_config()
        for i in self.instances:
            i.start_ha()

    def down(self):
        if self.vpc:
            self.vpc.stopping.set()
            self.vpc.join(5)
        for i in self.instances:
            try:
                i.thaw()
            except Exception:
                pass
            if i.bridge:
                i.bridge.close()
        for ns in reversed(self.made):
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        for i in self.instances:
            for p in i.procs.values():
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        for ns in reversed(self.made):
            sh("ip", "netns", "del", ns, check=False)
        self.made = []
        if self.moto:
            self.moto.close()
            self.moto = None

    # -- traffic ------------------------------------------------------------------------------------
    def ping(self):
        return Ping(self)

    def transfer(self, port=5001):
        return Transfer(self, port)

    def reaches_server(self):
        r = sh("ip", "netns", "exec", self.client, "ping", "-c", "1", "-W", "1", SERVER, check=False)
        return r.returncode == 0


class Ping:
    """`ping -i 0.01` from the client to the server through the router, with each reply's
    time (-D): `stop()` gives what was sent, received, and the longest time without a reply."""

    def __init__(self, lab):
        self.proc = subprocess.Popen(["ip", "netns", "exec", lab.client, "ping", "-D", "-n", "-i", "0.01", SERVER],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def stop(self):
        """(transmitted, received, longest gap between replies in ms). SIGINT makes ping print
        its summary (a reply still in flight then counts as lost: at most one)."""
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=10)
        m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        if not m:
            raise RuntimeError(f"ping said: {out[-500:]}")
        replies = [float(t) for t in re.findall(r"^\[(\d+\.\d+)\] \d+ bytes from", out, re.M)]
        gap = max((b - a for a, b in zip(replies, replies[1:])), default=float("nan"))
        return int(m.group(1)), int(m.group(2)), gap * 1000


# A receiver that prints its byte count every 0.1 s; a sender that writes 16 KB every 5 ms
# (about 3 MB/s: a long transfer, not a bandwidth test, so that the 2 cores stay free).
RECEIVER = """
import socket, sys, time
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("0.0.0.0", int(sys.argv[1]))); ls.listen(1)
print("listening", flush=True)
c, _ = ls.accept(); c.settimeout(0.1)
n, last = 0, 0.0
while True:
    try:
        d = c.recv(65536)
        if not d:
            break
        n += len(d)
    except socket.timeout:
        pass
    except OSError as e:
        print("error", e, flush=True)
        break
    if time.monotonic() - last >= 0.1:
        print(n, flush=True); last = time.monotonic()
print(n, flush=True)
print("closed", flush=True)
"""
SENDER = """
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.settimeout(None)
chunk = b"x" * 16384
try:
    while True:
        s.sendall(chunk)
        time.sleep(0.005)
except OSError as e:
    print("error", e, flush=True)
"""


class Transfer:
    """One long TCP connection client -> server; `received()` is the receiver's byte count."""

    def __init__(self, lab, port):
        self.lab, self.port = lab, port
        self.rx = subprocess.Popen(["ip", "netns", "exec", lab.server, sys.executable, "-c", RECEIVER, str(port)],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        assert self.rx.stdout.readline().strip() == "listening"
        threading.Thread(target=self._read, daemon=True).start()
        self.tx = subprocess.Popen(["ip", "netns", "exec", lab.client, sys.executable, "-c", SENDER, SERVER,
                                    str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def _read(self):
        for line in self.rx.stdout:
            self.lines.append(line.strip())

    def received(self):
        for line in reversed(self.lines):
            if line.isdigit():
                return int(line)
        return 0

    def closed(self):
        return any(line == "closed" or line.startswith("error") for line in self.lines)

    def offloaded_at(self, inst):
        """Whether `inst`'s conntrack entry for this connection carries the pass mark (the
        kernel forwards it without the queue)."""
        from appliance import netfilter
        from appliance.config import DEFAULT_MARK_MASK
        want = netfilter.offload_marks(DEFAULT_MARK_MASK)["pass"]
        out = inst.ex("conntrack", "-L", "-p", "tcp", "--dport", str(self.port)).stdout
        marks = [int(m, 0) for m in re.findall(r"mark=(\d+)", out)]
        return any(m & DEFAULT_MARK_MASK == want for m in marks)

    def grows(self, by, timeout):
        """Whether the receiver's count grows by `by` bytes within `timeout` seconds."""
        start = self.received()
        try:
            wait_for(lambda: self.received() >= start + by or self.closed(), timeout, "transfer", every=0.1)
        except AssertionError:
            return False
        return self.received() >= start + by

    def stop(self):
        for p in (self.tx, self.rx):
            if p.poll() is None:
                p.kill()
            p.wait()
