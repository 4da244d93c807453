"""Inline rows: the live datapath in network namespaces, against baselines measured in the same run.

    client ns (bench-c0 10.201.1.2..9) -- bench-out [router ns: kernel forwarding | raw consumer |
    appliance] bench-in -- bench-s0 (10.201.2.2) server ns

Baselines: plain kernel forwarding (no queue rule) and `bench.rawqueue` (accept-all
netfilterqueue consumer behind `iptables -A FORWARD -j NFQUEUE`). The appliance runs as
`python3 -m appliance.run --config CFG` in the router namespace with its own ruleset.
Needs root; everything lives in namespaces named bench-*-PID, deleted at the end (also on
Ctrl-C). Loads are bounded in time.
"""
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from .common import Row, log, median, percentile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_RULES = os.path.join(ROOT, "rules", "default.yaml")
CLIENT, SERVER = "10.201.1.2", "10.201.2.2"
SOURCES = [f"10.201.1.{i}" for i in range(2, 10)]      # 8 client addresses: queue-balance hashes addresses
UDP_PORT, TCP_PORT, IPERF_PORT = 9000, 8080, 5201


class Skip(Exception):
    pass


def sh(argv, check=True, timeout=60, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.strip()}")
    return r


class Lab:
    """Three namespaces and two veth pairs, created inside the namespaces only."""

    def __init__(self):
        tag = f"{os.getpid() % 100000}"
        self.c, self.r, self.s = f"bench-c-{tag}", f"bench-r-{tag}", f"bench-s-{tag}"
        self.procs = []
        self.made = []

    def ns(self, ns, *argv):
        return ["ip", "netns", "exec", ns, *argv]

    def run(self, ns, *argv, **kw):
        return sh(self.ns(ns, *argv), **kw)

    def up(self):
        for n in (self.c, self.r, self.s):
            sh(["ip", "netns", "add", n])
            self.made.append(n)
        sh(["ip", "link", "add", "bench-c0", "netns", self.c, "type", "veth", "peer", "name", "bench-out", "netns", self.r])
        sh(["ip", "link", "add", "bench-in", "netns", self.r, "type", "veth", "peer", "name", "bench-s0", "netns", self.s])
        for ns, dev, addrs in ((self.c, "bench-c0", [a + "/24" for a in SOURCES]),
                               (self.r, "bench-out", ["10.201.1.1/24"]),
                               (self.r, "bench-in", ["10.201.2.1/24"]),
                               (self.s, "bench-s0", [SERVER + "/24"])):
            for a in addrs:
                self.run(ns, "ip", "addr", "add", a, "dev", dev)
            self.run(ns, "ip", "link", "set", dev, "up")
        for ns in (self.c, self.r, self.s):
            self.run(ns, "ip", "link", "set", "lo", "up")
        self.run(self.c, "ip", "route", "add", "default", "via", "10.201.1.1")
        self.run(self.s, "ip", "route", "add", "default", "via", "10.201.2.1")
        self.run(self.r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        # the UDP flood ends here: counted at the interface, dropped before any ICMP reply
        self.run(self.s, "iptables", "-A", "INPUT", "-p", "udp", "--dport", f"{UDP_PORT}:{UDP_PORT + 3}", "-j", "DROP")
        self.spawn(self.s, [sys.executable, "-m", "bench.nsload", "serve", SERVER, str(TCP_PORT)], wait_for="ready")
        time.sleep(0.3)

    def spawn(self, ns, argv, wait_for="ready", timeout=30):
        p = subprocess.Popen(self.ns(ns, *argv), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
        self.procs.append(p)
        if wait_for:
            line = p.stdout.readline()
            if wait_for not in line:
                raise RuntimeError(f"{argv[:4]} did not start: {line!r} {p.stderr.read()[-500:] if p.poll() is not None else ''}")
        return p

    def stop(self, p, grace=10):
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        out = p.stdout.read() if p.stdout else ""
        err = p.stderr.read() if p.stderr else ""
        if p in self.procs:
            self.procs.remove(p)
        return out, err

    def down(self):
        for p in list(self.procs):
            try:
                self.stop(p, grace=3)
            except Exception:                    # noqa: BLE001 — cleanup goes on
                pass
        for n in reversed(self.made):
            subprocess.run(["ip", "netns", "del", n], capture_output=True)
        self.made.clear()

    def rx_packets(self):
        return int(self.run(self.s, "cat", "/sys/class/net/bench-s0/statistics/rx_packets").stdout)

    # -- datapath modes ---------------------------------------------------------

    def queue_rule(self, queues):
        spec = ["--queue-num", "0"] if queues == 1 else ["--queue-balance", f"0:{queues - 1}"]
        self.run(self.r, "iptables", "-A", "FORWARD", "-j", "NFQUEUE", *spec)

    def clear_rules(self):
        self.run(self.r, "iptables", "-F", "FORWARD")

    # -- loads --------------------------------------------------------------------

    def iperf(self, seconds):
        # a fresh one-off server per test: a stalled test must not leave the next one waiting
        srv = self.spawn(self.s, ["iperf3", "-s", "-1", "-B", SERVER, "-p", str(IPERF_PORT)], wait_for=None)
        time.sleep(0.3)
        try:
            r = self.run(self.c, "iperf3", "-c", SERVER, "-p", str(IPERF_PORT), "-t", str(seconds), "-J",
                         "--connect-timeout", "3000", timeout=seconds + 30, check=False)
        except subprocess.TimeoutExpired:
            raise RuntimeError("iperf3 client timed out") from None
        finally:
            self.stop(srv, grace=2)
        try:
            j = json.loads(r.stdout)
            return j["end"]["sum_received"]["bits_per_second"]
        except (ValueError, KeyError):
            raise RuntimeError(f"iperf3: {r.stdout[-300:]} {r.stderr[-300:]}") from None

    def udp_verdicts(self, seconds, sources=SOURCES):
        before = self.rx_packets()
        r = self.run(self.c, sys.executable, "-m", "bench.nsload", "udpflood", SERVER, str(UDP_PORT),
                     str(seconds), ",".join(sources), timeout=seconds + 30, cwd=ROOT)
        time.sleep(0.5)                          # let queued packets drain
        got = self.rx_packets() - before
        return got / json.loads(r.stdout)["seconds"]

    def conns(self, seconds, threads=4):
        r = self.run(self.c, sys.executable, "-m", "bench.nsload", "conns", SERVER, str(TCP_PORT), str(seconds),
                     str(threads), timeout=seconds + 60, cwd=ROOT)
        j = json.loads(r.stdout)
        self.last_conns = j["conns"]         # the count itself (a per-connection figure divides by it)
        return j["conns"] / j["seconds"]

    def ping_rtts(self, count):
        r = self.run(self.c, "ping", "-c", str(count), "-i", "0.01", "-W", "1", SERVER, timeout=count + 30, check=False)
        return [float(x) * 1000 for x in re.findall(r"time=([\d.]+) ms", r.stdout)]

    def tcp_rtts(self, count):
        r = self.run(self.c, sys.executable, "-m", "bench.nsload", "echo", SERVER, str(TCP_PORT), str(count),
                     timeout=count + 60, cwd=ROOT)
        return json.loads(r.stdout)["rtt_us"]

    # -- the datapaths under test ----------------------------------------------------

    def start_raw(self, queues=1):
        procs = [self.spawn(self.r, [sys.executable, "-m", "bench.rawqueue", str(q)]) for q in range(queues)]
        self.queue_rule(queues)
        return procs

    def stop_raw(self, procs):
        self.clear_rules()
        for p in procs:
            self.stop(p)

    def start_appliance(self, workdir, offload, workers, timeout=40):
        cfg = os.path.join(workdir, f"appliance-{int(offload)}-{workers}.yaml")
        with open(cfg, "w") as f:
            f.write(f"""interfaces:
  outside: bench-out
  inside: bench-in
rules: {DEFAULT_RULES}
eve: {os.path.join(workdir, 'eve.json')}
home_net: [10.201.2.0/24]
workers: {workers}
failure_mode: closed
offload: {'true' if offload else 'false'}
inspection:
  depth_packets: 16
  depth_bytes: 8192
  max_flows: 100000
""")
        p = self.spawn(self.r, [sys.executable, "-m", "appliance.run", "--config", cfg], wait_for=None)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if p.poll() is not None:
                out, err = self.stop(p)
                raise RuntimeError(f"appliance.run exited {p.returncode}: {err.strip()[-400:]}")
            if "NFQUEUE" in self.run(self.r, "iptables-save", check=False).stdout:
                time.sleep(1.0)                   # workers bind their queues
                return p
            time.sleep(0.3)
        self.stop(p)
        raise RuntimeError(f"appliance.run: no NFQUEUE rule after {timeout}s")

    def stop_appliance(self, p, cfg=None):
        self.stop(p, grace=15)
        # failure_mode closed keeps the appliance chains after exit (new flows dropped): the router
        # namespace is ours alone, so clear every table before the next datapath is measured
        for tool in ("iptables", "ip6tables"):
            for table in ("filter", "mangle", "raw", "nat"):
                self.run(self.r, tool, "-t", table, "-F", check=False)
                self.run(self.r, tool, "-t", table, "-X", check=False)
        self.run(self.r, "conntrack", "-F", check=False)


def _why_skip():
    if os.geteuid() != 0:
        return "needs root (network namespaces, iptables)"
    for tool in ("ip", "iptables", "iperf3", "ping"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    if importlib.util.find_spec("netfilterqueue") is None:
        return "netfilterqueue not installed"
    return None


def rows(quick=False, runs=None):
    runs = runs or 3
    T = 2 if quick else 5
    lat_n = 100 if quick else 300
    have_app = importlib.util.find_spec("appliance.run") is not None
    no_app = "appliance.run is not importable yet (appliance/run.py missing)"
    R = {
        "tput_off": Row("bulk TCP throughput, default rules, offload on", "kernel forwarding", "bit/s", ">= 0.90"),
        "udp": Row("small-packet UDP verdicts/s, offload off, default rules, 1 worker", "raw accept-all consumer", "pkt/s", ">= 0.70"),
        "tput_all": Row("TCP throughput, every packet inspected (offload off)", "raw accept-all consumer", "bit/s", ">= 0.70"),
        "conns": Row("new TCP connections/s (connect, request, close), default rules", "kernel forwarding", "conn/s", ">= 0.50"),
        "workers": Row("UDP verdicts/s, 2 workers, 8 sources over 2 queues", "1 worker", "pkt/s", ">= 1.5"),
        "ping50": Row("added latency, ping, inspected path (offload off): median", "kernel path", "us", "<= 100"),
        "ping99": Row("added latency, ping, inspected path: p99", "kernel path", "us", "<= 1000"),
        "tcp50": Row("added latency, TCP echo round trip, inspected path: median", "kernel path", "us", "<= 100"),
        "tcp99": Row("added latency, TCP echo round trip, inspected path: p99", "kernel path", "us", "<= 1000"),
        "raw2": Row("raw consumer, 2 queues (reference: the Python ceiling's scaling)", "raw consumer, 1 queue", "pkt/s", ">= 1.5"),
    }
    why = _why_skip()
    if why:
        for r in R.values():
            r.status, r.note = "SKIPPED", why
        return list(R.values())
    lab = Lab()
    prev = signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    work = tempfile.mkdtemp(prefix="bench-inline-")
    try:
        log("inline: building namespaces " + ", ".join((lab.c, lab.r, lab.s)))
        lab.up()
        for run in range(runs):
            log(f"inline run {run + 1}/{runs}: kernel forwarding")
            k_tput = lab.iperf(T)
            k_conns = lab.conns(T)
            k_ping = lab.ping_rtts(lat_n)
            k_tcp = lab.tcp_rtts(lat_n)
            log(f"  kernel: {k_tput / 1e9:.2f} Gbit/s, {k_conns:,.0f} conn/s, ping median {median(k_ping):.0f} us,"
                f" tcp rtt median {median(k_tcp):.0f} us")

            log("  raw accept-all consumer, 1 queue")
            procs = lab.start_raw(1)
            try:
                raw_udp = lab.udp_verdicts(T)
                raw_tput = lab.iperf(T)
            finally:
                lab.stop_raw(procs)
            procs = lab.start_raw(2)
            try:
                raw2_udp = lab.udp_verdicts(T)
            finally:
                lab.stop_raw(procs)
            R["raw2"].add(raw2_udp, raw_udp)
            log(f"  raw: {raw_udp:,.0f} verdicts/s (2 queues {raw2_udp:,.0f}), {raw_tput / 1e9:.2f} Gbit/s")

            if not have_app:
                continue
            try:
                p = lab.start_appliance(work, offload=True, workers=1)
                try:
                    a_tput = lab.iperf(T)
                    a_conns = lab.conns(T)
                finally:
                    lab.stop_appliance(p)
                R["tput_off"].add(a_tput, k_tput)
                R["conns"].add(a_conns, k_conns)
                p = lab.start_appliance(work, offload=False, workers=1)
                try:
                    a_udp1 = lab.udp_verdicts(T)
                    try:
                        a_tput_all = lab.iperf(T)
                    except RuntimeError as e:
                        log(f"  inspected TCP throughput: {e}")
                        a_tput_all = 0.0
                    a_ping = lab.ping_rtts(lat_n)
                    a_tcp = lab.tcp_rtts(lat_n)
                finally:
                    lab.stop_appliance(p)
                R["udp"].add(a_udp1, raw_udp)
                R["tput_all"].add(a_tput_all, raw_tput)
                for key, a, k, f in (("ping50", a_ping, k_ping, median), ("tcp50", a_tcp, k_tcp, median),
                                     ("ping99", a_ping, k_ping, lambda x: percentile(x, 99)),
                                     ("tcp99", a_tcp, k_tcp, lambda x: percentile(x, 99))):
                    R[key].add(f(a), f(k), ratio=f(a) - f(k))
                p = lab.start_appliance(work, offload=False, workers=2)
                try:
                    a_udp2 = lab.udp_verdicts(T)
                finally:
                    lab.stop_appliance(p)
                R["workers"].add(a_udp2, a_udp1)
                log(f"  appliance: offload {a_tput / 1e9:.2f} Gbit/s, {a_conns:,.0f} conn/s; inspected "
                    f"{a_udp1:,.0f} verdicts/s (2 workers {a_udp2:,.0f}), {a_tput_all / 1e9:.2f} Gbit/s, "
                    f"ping median {median(a_ping):.0f} us, tcp rtt median {median(a_tcp):.0f} us")
            except RuntimeError as e:
                log(f"  appliance failed: {e}")
                for k, r in R.items():
                    if k != "raw2" and not r.status:
                        r.status, r.note = "ERROR", str(e)[:120]
                have_app = False
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        raise
    finally:
        lab.down()
        shutil.rmtree(work, ignore_errors=True)
        signal.signal(signal.SIGTERM, prev)
    if importlib.util.find_spec("appliance.run") is None:
        for k, r in R.items():
            if k != "raw2":
                r.status, r.note = "SKIPPED", no_app
        log(f"inline appliance rows SKIPPED: {no_app} (the baselines above were measured)")
    out = [R[k] for k in ("tput_off", "udp", "tput_all", "conns", "workers", "ping50", "ping99", "tcp50", "tcp99", "raw2")]
    return out
