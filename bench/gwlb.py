"""GENEVE (fleet mode) figures against the inline NFQUEUE datapath, all in one run.
`python3 -m bench.gwlb [--seconds T] [--senders N]` (root).

GENEVE lab: two namespaces joined by a jumbo veth. "gwlb" (10.9.0.1) plays the load
balancer: sender processes wrap inner UDP datagrams (64-byte payload) in GENEVE with AWS's
options and send them to the appliance; a receiver counts what comes back on UDP 6081.
"appliance" (10.9.0.2) runs `python3 -m appliance.source.gwlb` with rules/default.yaml:

    python       --no-offload: every datagram through parse, decode, Inspector.process, send
    fast path    offload on (appliance.gwlb_offload): the flow's first datagram in Python,
                 the rest returned by the nftables netdev program without waking the worker
    kernel only  the same nftables program with the flow's elements and no worker: what
                 the kernel alone returns for the same sender (the fast path's ceiling here)

Inline lab (bench.inline.Lab): `appliance.run` with rules/default.yaml, offload off, one
worker; the same sender's inner datagrams forwarded client -> server and counted there.

Loads: "one flow" (the same datagram again and again: a decided flow's steady state) and
"new flows" (every datagram a new inner 5-tuple: first packets, i.e. new flows/s). With the
default rules a one-datagram flow is not final (alert rules may still look), so no new flow
is offloaded; the new-flow fast path row uses a pass-all rule set, where the first packet
decides and every new flow costs the worker an add to the kernel's sets. The
offered rate is what the senders managed (printed: on this 2-core machine the senders share
the CPUs with what they measure, so the kernel rows are bounded by them); "loss starts" is
the first offered rate of a sweep at which less than 99 % came back.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

from .common import log

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULES = os.path.join(ROOT, "rules", "default.yaml")
ENI = 0x0E11000000ABCDEF
SWEEP = (10000, 20000, 40000, 80000)          # offered datagrams/s, for where loss starts
# argv: how (geneve|raw) load (one|new) seconds rate(0: as fast as it can) dst src[,src...] port
SENDER = """
import socket, struct, sys, time
from appliance import geneve
how, load, seconds, rate, dst, srcs, port = sys.argv[1:8]
seconds, rate, port = float(seconds), int(rate), int(port)
srcs = srcs.split(",")
def inner(src, sport):
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + 8 + 64, 0, 0, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton("10.2.0.2" if how == "geneve" else dst))
    return ip + struct.pack("!HHHH", sport, port, 8 + 64, 0) + b"x" * 64     # UDP checksum 0: none
# new: every (source, port) once before any repeats (2 sources x 64000 ports); one: one flow
n = 2 * 64000 if load == "new" else 1
pkts = [inner(srcs[i % len(srcs)], 1024 + i // len(srcs) if load == "new" else 40000) for i in range(n)]
if how == "geneve":
    pkts = [geneve.encapsulate(ENI, 1, 2, p) for p in pkts]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); target = (dst, 6081)
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW); target = (dst, 0)
send, k, n = s.sendto, len(pkts), 0
t0 = time.monotonic(); end = t0 + seconds
while True:
    for _ in range(64):
        try:
            send(pkts[n % k], target); n += 1
        except OSError:
            pass
    now = time.monotonic()
    if now >= end:
        break
    if rate and n / rate > now - t0:
        time.sleep(n / rate - (now - t0))
print(n, time.monotonic() - t0)
""".replace("ENI", str(ENI))
# Drains what an earlier load left queued, then counts until 0.5 s of silence after the
# senders ended (argv[1]: when they end, at the latest): every datagram that comes back.
RECEIVER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)
s.bind(("10.9.0.1", 6081)); s.settimeout(0.5)
while True:
    try:
        s.recv(2048)
    except socket.timeout:
        break
print("ready", flush=True)
n, first, last, end = 0, None, None, time.monotonic() + float(sys.argv[1])
while True:
    try:
        s.recv(2048); n += 1
        last = time.monotonic(); first = first or last
    except socket.timeout:
        if time.monotonic() > end:
            break
print(n, (last - first) if n > 1 else 1.0)
"""


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


class GeneveLab:
    def __init__(self):
        tag = os.urandom(3).hex()
        self.g, self.a = f"i14gw-bg-{tag}", f"i14gw-ba-{tag}"
        self.env = dict(os.environ, PYTHONPATH=ROOT)
        self.worker = None

    def up(self):
        sh("ip", "netns", "add", self.g)
        sh("ip", "netns", "add", self.a)
        sh("ip", "link", "add", "ga", "netns", self.g, "type", "veth", "peer", "name", "a0", "netns", self.a)
        sh("ip", "-n", self.g, "addr", "add", "10.9.0.1/24", "dev", "ga")
        sh("ip", "-n", self.a, "addr", "add", "10.9.0.2/24", "dev", "a0")
        for ns, dev in ((self.g, "ga"), (self.a, "a0")):
            sh("ip", "-n", ns, "link", "set", dev, "up", "mtu", "9000")
            sh("ip", "-n", ns, "link", "set", "lo", "up")

    def down(self):
        self.stop_worker()
        for ns in (self.g, self.a):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def start_worker(self, offload, tmp, rules=RULES):
        ready = os.path.join(tmp, f"ready-{offload}-{os.path.basename(rules)}")
        argv = ["ip", "netns", "exec", self.a, sys.executable, "-m", "appliance.source.gwlb", "--rules", rules,
                "--gwlb", "10.9.0.1/32", "--listen", "10.9.0.2", "--ready", ready]
        self.worker = subprocess.Popen(argv + ([] if offload else ["--no-offload"]), cwd=ROOT, env=self.env,
                                       stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not os.path.exists(ready) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)

    def stop_worker(self):
        if self.worker is not None and self.worker.poll() is None:
            self.worker.terminate()
            self.worker.wait(20)
        self.worker = None
        subprocess.run(["ip", "netns", "exec", self.a, "nft", "delete", "table", "netdev", "appliance_gwlb"],
                       capture_output=True)

    def kernel_only(self):
        """The fast path's table with the one-flow load's elements, no worker."""
        code = ("from appliance import gwlb_offload as g\nfrom appliance.decode import decode_l3\n"
                "from appliance.flow import Flow, flow_key\nimport socket, struct\n"
                "g.install(*g.device_of('10.9.0.2'), '10.9.0.2', ['10.9.0.1/32'])\n"
                "sets = g.FlowSets()\n"
                "for i in range(8):     # each sender's one flow\n"
                "    ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 92, 0, 0, 64, 17, 0, socket.inet_aton(f'10.1.{i}.2'),"
                " socket.inet_aton('10.2.0.2'))\n"
                "    p = decode_l3(ip + struct.pack('!HHHH', 40000, 9000, 72, 0) + b'x' * 64); p.tunnel = %d\n"
                "    assert sets.add(Flow(flow_key(p), p), 'pass')\n"
                "sets.flush()\n" % ENI)
        sh("ip", "netns", "exec", self.a, sys.executable, "-c", code, cwd=ROOT, env=self.env)

    def measure(self, load, seconds, rate=0, senders=1):
        """(offered/s, returned/s, returned/offered): returned/s over the time datagrams came back."""
        recv = subprocess.Popen(["ip", "netns", "exec", self.g, sys.executable, "-c", RECEIVER, str(seconds + 30)],
                                stdout=subprocess.PIPE, text=True, env=self.env)
        assert recv.stdout.readline().strip() == "ready"
        procs = [subprocess.Popen(["ip", "netns", "exec", self.g, sys.executable, "-c", SENDER, "geneve", load,
                                   str(seconds), str(rate // senders), "10.9.0.2", f"10.1.{i}.2,10.1.{i}.3", "9000"],
                                  stdout=subprocess.PIPE, text=True, cwd=ROOT, env=self.env) for i in range(senders)]
        offered = sent = 0.0
        for p in procs:
            n, t = p.communicate()[0].split()
            offered += int(n) / float(t)
            sent += int(n)
        got, span = recv.communicate()[0].split()
        return offered, int(got) / max(float(span), seconds / 10), int(got) / sent


def inline_rows(seconds, tmp):
    """(pps one flow, new flows/s) of the inline appliance (offload off, one worker), with
    the offered rates."""
    from .inline import SERVER, SOURCES, UDP_PORT, Lab
    lab = Lab()
    try:
        lab.up()
        p = lab.start_appliance(tmp, offload=False, workers=1)
        try:
            out = []
            for load in ("one", "new"):
                before = lab.rx_packets()
                r = lab.run(lab.c, sys.executable, "-c", SENDER, "raw", load, str(seconds), "0", SERVER,
                            ",".join(SOURCES[:2]), str(UDP_PORT), cwd=ROOT, timeout=seconds + 60)
                time.sleep(0.5)
                n, t = r.stdout.split()
                got = lab.rx_packets() - before
                out.append((int(n) / float(t), got / float(t), got / int(n)))
            return out
        finally:
            lab.stop_appliance(p)
    finally:
        lab.down()


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m bench.gwlb")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--senders", type=int, default=2, help="sender processes for the max-rate rows")
    ap.add_argument("--no-inline", action="store_true", help="skip the inline datapath rows")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("bench.gwlb needs root (network namespaces)")
    T, S = a.seconds, a.senders
    rows = []
    tmp = tempfile.mkdtemp(prefix="bench-gwlb-")
    lab = GeneveLab()
    with open("/proc/loadavg") as f:
        log(f"load average at start: {f.read().split()[0]}")
    try:
        lab.up()
        log("GENEVE: python worker, no fast path ...")
        lab.start_worker(False, tmp)
        py_one = lab.measure("one", T, senders=S)
        py_new = lab.measure("new", T, senders=S)      # default rules: nothing final at the first packet
        py_sweep = [lab.measure("one", T, rate=r, senders=S) for r in SWEEP]
        lab.stop_worker()
        log("GENEVE: python worker with the fast path ...")
        lab.start_worker(True, tmp)
        fp_one = lab.measure("one", T, senders=S)
        fp_sweep = [lab.measure("one", T, rate=r, senders=S) for r in SWEEP]
        fp_one1 = lab.measure("one", T, senders=1)
        lab.stop_worker()
        # a rule set that decides at the first packet (no alert rule left to look): every
        # new flow is added to the kernel's sets, the fast path's price per new flow
        pass_all = os.path.join(tmp, "pass-all.yaml")
        with open(pass_all, "w") as f:
            f.write("default_action: pass\nrules: []\n")
        log("GENEVE: new flows decided at their first packet, without and with the fast path ...")
        lab.start_worker(False, tmp, pass_all)
        py_new1 = lab.measure("new", T, senders=S)
        lab.stop_worker()
        lab.start_worker(True, tmp, pass_all)
        fp_new1 = lab.measure("new", T, senders=S)
        lab.stop_worker()
        log("GENEVE: kernel only ...")
        lab.kernel_only()
        k_one = lab.measure("one", T, senders=S)
        k_one1 = lab.measure("one", T, senders=1)
        lab.stop_worker()
    finally:
        lab.down()
    inline = None
    if not a.no_inline:
        log("inline: appliance.run, offload off, 1 worker ...")
        try:
            inline = inline_rows(T, tmp)
        except Exception as e:                    # noqa: BLE001 -- the GENEVE rows stand alone
            log(f"inline rows failed: {e}")
    shutil.rmtree(tmp, ignore_errors=True)

    def loss_start(sweep):
        for offered, _, share in sweep:
            if share < 0.99:
                return f"{offered:,.0f}/s offered"
        return f"none up to {sweep[-1][0]:,.0f}/s offered"

    rows.append(("one flow, returned/s: fast path vs python", fp_one, py_one))
    rows.append(("one flow, returned/s: kernel only vs python", k_one, py_one))
    rows.append(("new flows/s, decided at 1st packet: fast path vs python", fp_new1, py_new1))
    if inline:
        rows.append(("one flow pps: GENEVE python vs inline NFQUEUE", py_one, inline[0]))
        rows.append(("new flows/s: GENEVE python vs inline NFQUEUE", py_new, inline[1]))
        rows.append(("one flow: GENEVE fast path vs inline NFQUEUE", fp_one, inline[0]))
    print(f"{'row':<58} {'offered/s':>10} {'value/s':>10} {'base/s':>10} {'ratio':>6}")
    for name, (off, v, _), (_, base, _) in rows:
        print(f"{name:<58} {off:>10,.0f} {v:>10,.0f} {base:>10,.0f} {v / max(base, 1):>6.2f}")
    print(f"sender ceiling (kernel only): 1 process offered {k_one1[0]:,.0f}/s ({k_one1[2]:.1%} returned), "
          f"{S} processes {k_one[0]:,.0f}/s ({k_one[2]:.1%} returned)")
    print(f"fast path, 1 sender process: offered {fp_one1[0]:,.0f}/s, {fp_one1[2]:.1%} returned")
    for name, sweep in (("python", py_sweep), ("fast path", fp_sweep)):
        print(f"loss sweep {name:<10} " + "  ".join(f"{o:,.0f}:{share:.1%}" for o, _, share in sweep)
              + f"   loss starts: {loss_start(sweep)}")
    with open("/proc/loadavg") as f:
        print(f"load average at end: {f.read().split()[0]} (2 cores shared with other jobs)")


if __name__ == "__main__":
    main()
