"""`appliance ha` for real: two daemons in two network namespaces, heartbeats over a veth pair
(the management link), probes over a second veth pair (the independent check, as the inside
network would carry them), a moto route table reached through the EC2 endpoint override with
the IAM policy of deploy/ha-iam-policy.json.

- cut only the heartbeat link: the standby sees heartbeats missing, the check answers: no
  takeover (the route still targets the primary's ENI, read back through the EC2 API);
- kill -9 the primary: the standby replaces the route; the time from the kill to the route
  change (read back through the EC2 API) is printed.

moto checks a policy's actions, not its resource ARNs (it matches every request against
"*"), so the policy's ReplaceRoute resource is widened to "*" here; the actions are exactly
the documented ones (anything else is denied).
"""
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time

import pytest

from awsfakes import LoopbackBridge, MotoServer, sh

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECRET = secrets.token_hex(32)
INTERVAL, DEAD_AFTER, HOLD_DOWN = 0.2, 1.0, 2.0     # the defaults, but a short hold-down
NET = {"hb": "10.213.0", "chk": "10.213.1"}


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Node:
    """One HA instance: its namespace, EC2 bridged onto its loopback, a /readyz served from a
    directory (the file present: ready), its appliance.yaml, and the `appliance ha` process."""

    def __init__(self, name, ns, idx, eni, peer_eni, rtb, moto_port, keys, tmp):
        self.name, self.ns, self.tmp = name, ns, tmp
        self.bridge = LoopbackBridge(ns, moto_port)
        www = tmp / f"www-{name}"
        www.mkdir()
        (www / "readyz").write_text('{"ready": true}')
        self.readyz_port = 18000 + idx
        self.www = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "http.server",
                                     str(self.readyz_port), "--bind", "127.0.0.1", "--directory", str(www)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        me, peer = idx, 3 - idx
        self.status = tmp / f"ha-{name}.json"
        self.config = tmp / f"appliance-{name}.yaml"
        self.config.write_text(f"""\
interfaces: {{outside: eth0, inside: eth1}}
ha:
  listen: {NET['hb']}.{me}:7400
  peer: {NET['hb']}.{peer}:7400
  check_listen: {NET['chk']}.{me}:7401
  check_peer: {NET['chk']}.{peer}:7401
  secret: {SECRET}
  interval: {INTERVAL}
  dead_after: {DEAD_AFTER}
  hold_down: {HOLD_DOWN}
  route_tables: [{rtb}]
  eni: {eni}
  peer_eni: {peer_eni}
  readyz: http://127.0.0.1:{self.readyz_port}/readyz
  status_file: {self.status}
""")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.env.update(AWS_ACCESS_KEY_ID=keys[0], AWS_SECRET_ACCESS_KEY=keys[1], AWS_REGION="us-east-1",
                        AWS_ENDPOINT_URL_EC2=f"http://127.0.0.1:{self.bridge.port}", PYTHONPATH=REPO)
        self.log = tmp / f"ha-{name}.log"
        self.proc = None

    def start(self):
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, sys.executable, "-m", "appliance", "ha",
                                          "--config", str(self.config)], env=self.env, cwd=REPO,
                                         stdout=out, stderr=subprocess.STDOUT)

    def read_status(self):
        try:
            return json.loads(self.status.read_text())
        except (OSError, ValueError):
            return {}

    def events(self):
        return [json.loads(l) for l in self.log.read_text().splitlines() if l.startswith("{")]

    def close(self):
        for p in (self.proc, self.www):
            if p and p.poll() is None:
                p.kill()
                p.wait()
        self.bridge.close()


@pytest.fixture
def pair(tmp_path):
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("needs root and iproute2 for network namespaces")
    tag = secrets.token_hex(3)
    nss = [f"i13ha-{tag}-a", f"i13ha-{tag}-b"]
    made, nodes, moto = [], [], None
    try:
        for ns in nss:
            sh("ip", "netns", "add", ns)
            made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        for link, prefix in NET.items():       # created inside the first namespace, peer end moved to the second
            sh("ip", "-n", nss[0], "link", "add", link, "type", "veth", "peer", "name", link, "netns", nss[1])
            for i, ns in enumerate(nss, 1):
                sh("ip", "-n", ns, "addr", "add", f"{prefix}.{i}/24", "dev", link)
                sh("ip", "-n", ns, "link", "set", link, "up")
        # setup calls made before moto checks signatures: count them exactly (MotoServer docs)
        moto = MotoServer(no_auth_calls=9)
        ec2 = moto.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        sub = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        enis = [ec2.create_network_interface(SubnetId=sub)["NetworkInterface"]["NetworkInterfaceId"] for _ in nss]
        rtb = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
        ec2.create_route(RouteTableId=rtb, DestinationCidrBlock="0.0.0.0/0", NetworkInterfaceId=enis[0])
        policy = json.load(open(os.path.join(REPO, "deploy/ha-iam-policy.json")))
        for st in policy["Statement"]:
            st["Resource"] = "*"               # moto matches actions only (module docstring)
        iam = moto.client("iam")
        iam.create_user(UserName="ha")
        iam.put_user_policy(UserName="ha", PolicyName="ha", PolicyDocument=json.dumps(policy))
        k = iam.create_access_key(UserName="ha")["AccessKey"]
        keys = (k["AccessKeyId"], k["SecretAccessKey"])
        for i, (ns, name) in enumerate(zip(nss, "ab"), 1):
            nodes.append(Node(name, ns, i, enis[i - 1], enis[2 - i], rtb, moto.port, keys, tmp_path))
        yield nodes, moto.client("ec2", keys), rtb, enis
    finally:
        for n in nodes:
            n.close()
        if moto:
            moto.close()
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def target(ec2, rtb):
    routes = ec2.describe_route_tables(RouteTableIds=[rtb])["RouteTables"][0]["Routes"]
    return next(r.get("NetworkInterfaceId") for r in routes if r.get("DestinationCidrBlock") == "0.0.0.0/0")


def test_link_cut_is_no_takeover_and_kill_is(pair):
    (a, b), ec2, rtb, enis = pair
    a.start()
    b.start()
    wait_for(lambda: a.read_status().get("state") == "primary" and b.read_status().get("state") == "standby"
             and (b.read_status().get("last_decision") or {}).get("code") == "peer_healthy", 20, "a primary, b standby")

    # 1. only the heartbeat link cut: b hears no heartbeat, its probes over the other link answer
    sh("ip", "-n", a.ns, "link", "set", "hb", "down")
    wait_for(lambda: (b.read_status().get("last_decision") or {}).get("code") == "link_cut", 10, "b sees the cut")
    time.sleep(4 * DEAD_AFTER + HOLD_DOWN)
    assert target(ec2, rtb) == enis[0]
    st = b.read_status()
    assert st["state"] == "standby" and st["takeovers"] == 0 and st["last_decision"]["code"] == "link_cut"
    assert not [e for e in b.events() if e["ha"]["event"] == "takeover"]
    out = subprocess.run([sys.executable, "-m", "appliance", "ha", "status", "--config", str(b.config)],
                         capture_output=True, text=True, cwd=REPO, env=b.env)
    assert out.returncode == 0 and "link_cut" in out.stdout and "state        standby" in out.stdout, out
    sh("ip", "-n", a.ns, "link", "set", "hb", "up")
    wait_for(lambda: (b.read_status().get("last_decision") or {}).get("code") == "peer_healthy", 10, "link back")

    # 2. kill -9 the primary: b takes the route
    t0 = time.monotonic()
    os.kill(a.proc.pid, signal.SIGKILL)
    wait_for(lambda: target(ec2, rtb) == enis[1], 30, "the route at b's ENI")
    took = time.monotonic() - t0
    ev = [e["ha"] for e in b.events() if e["ha"]["event"] == "takeover"]
    assert len(ev) == 1 and ev[0]["code"] == "peer_dead" and ev[0]["routes"] == [f"{rtb} 0.0.0.0/0"], ev
    assert "independent check failing" in ev[0]["reason"]
    wait_for(lambda: b.read_status().get("state") == "primary", 5, "b primary")
    print(f"\nHA kill -9 -> route at the standby's ENI (read back via EC2): {took * 1000:.0f} ms "
          f"(interval {INTERVAL}s, dead_after {DEAD_AFTER}s; poll granularity 50 ms)")
    assert b.read_status()["packets"]["accepted"] > 0


def test_peer_not_ready_and_frozen_peer(pair):
    """The primary's /readyz fails -> its heartbeats say so -> the standby takes over at once
    (no dead_after wait). Then the new primary is frozen (SIGSTOP): silent on both paths -> the
    first takes the routes back once the hold-down since the last move has passed."""
    (a, b), ec2, rtb, enis = pair
    a.start()
    b.start()
    wait_for(lambda: (b.read_status().get("last_decision") or {}).get("code") == "peer_healthy", 20, "b standby")

    t0 = time.monotonic()
    (a.tmp / "www-a" / "readyz").unlink()                      # a's datapath is not ready
    wait_for(lambda: target(ec2, rtb) == enis[1], 30, "the route at b's ENI")
    fault_s = time.monotonic() - t0
    ev = [e["ha"] for e in b.events() if e["ha"]["event"] == "takeover"]
    assert len(ev) == 1 and ev[0]["code"] == "peer_fault", ev
    wait_for(lambda: a.read_status().get("state") == "fault", 5, "a in fault")
    assert "HTTP 404" in " ".join(a.read_status()["ready_problems"])

    (a.tmp / "www-a" / "readyz").write_text("{}")              # a recovers: standby, no preemption
    wait_for(lambda: a.read_status().get("state") == "standby", 5, "a standby")
    t0 = time.monotonic()
    os.kill(b.proc.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: target(ec2, rtb) == enis[0], 30, "the route back at a's ENI")
        stop_s = time.monotonic() - t0
    finally:
        os.kill(b.proc.pid, signal.SIGCONT)
    ev = [e["ha"] for e in a.events() if e["ha"]["event"] == "takeover"]
    assert len(ev) == 1 and ev[0]["code"] == "peer_dead", ev
    wait_for(lambda: b.read_status().get("state") == "standby", 10, "b, thawed, sees the routes at a")
    assert target(ec2, rtb) == enis[0]
    print(f"\nHA primary /readyz failing -> route moved: {fault_s * 1000:.0f} ms; "
          f"SIGSTOP of the primary -> route moved: {stop_s * 1000:.0f} ms "
          f"(includes what is left of hold_down {HOLD_DOWN}s since the previous move)")
