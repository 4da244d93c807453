"""The verdict gap of a SIGHUP: `python3 -m bench.reload [--rules N] [--rate PPS] [--runs R]` (root).

In the bench namespaces (bench.inline.Lab), `appliance run` (one worker, fail-closed,
offload off: every packet gets a verdict from the worker) carries a paced UDP stream while
N generated rules (bench.rulegen) are reloaded. The server namespace timestamps every
arrival; in fail-closed mode a stalled worker shows up as a gap in arrivals (its queue
overflows and the kernel drops the rest). Printed per run and as medians:

    steady gap   longest gap between arrivals in the seconds before the SIGHUP (the baseline)
    reload gap   longest gap from the SIGHUP until a second after the worker swapped the rules
    ratio        reload gap / steady gap
    lost         packets sent but not received; queue_dropped: the kernel's NFQUEUE drop counters

Run it from another checkout to compare versions (the numbers in docs/performance.md).
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

from .common import header, log, median
from .inline import SERVER, Lab, _why_skip
from .rulegen import rules_yaml

PORT = 9100
RECEIVER = """
import json, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.settimeout(0.5)
print("ready", flush=True)
arrivals, end = [], time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    try:
        s.recv(64); arrivals.append(time.monotonic())
    except socket.timeout:
        pass
print(json.dumps(arrivals), flush=True)
"""
SENDER = """
import socket, sys, time
rate, seconds = int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
n, t0 = 0, time.monotonic()
while time.monotonic() - t0 < seconds:
    while n < (time.monotonic() - t0) * rate:
        s.sendto(b"x" * 32, (sys.argv[1], int(sys.argv[2]))); n += 1
    time.sleep(0.0005)
print(n, flush=True)
"""


def longest_gap(times, lo, hi):
    inside = [t for t in times if lo <= t <= hi]
    return max((b - a for a, b in zip(inside, inside[1:])), default=float("nan"))


def queue_dropped(lab):
    lines = lab.run(lab.r, "cat", "/proc/net/netfilter/nfnetlink_queue", check=False).stdout.splitlines()
    return sum(int(v.split()[5]) + int(v.split()[6]) for v in lines)


def one_run(lab, workdir, n_rules, rate):
    rules = os.path.join(workdir, "rules.yaml")
    with open(rules, "w") as f:
        f.write(rules_yaml(n_rules))
    cfg = os.path.join(workdir, "appliance.yaml")
    with open(cfg, "w") as f:
        f.write(f"interfaces: {{outside: bench-out, inside: bench-in}}\nrules: {rules}\neve: null\n"
                f"home_net: [10.201.2.0/24]\nworkers: 1\nfailure_mode: closed\noffload: false\n")
    logpath = os.path.join(workdir, "appliance.log")
    with open(logpath, "wb") as logf:
        app = subprocess.Popen(lab.ns(lab.r, sys.executable, "-m", "appliance.run", "--config", cfg), cwd=os.getcwd(),
                               stdout=logf, stderr=logf, start_new_session=True)

    def log_text():
        with open(logpath, errors="replace") as f:
            return f.read()

    def wait(pred, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if app.poll() is not None:
                raise RuntimeError(f"appliance.run exited {app.returncode}: {log_text()[-400:]}")
            if pred():
                return
            time.sleep(0.05)
        raise RuntimeError(f"timed out waiting for {what}: {log_text()[-400:]}")
    try:
        wait(lambda: "running:" in log_text(), 120, "the appliance to start")
        seconds = 25.0
        recv = subprocess.Popen(lab.ns(lab.s, sys.executable, "-c", RECEIVER, str(PORT), str(seconds + 3)),
                                stdout=subprocess.PIPE, text=True)
        assert recv.stdout.readline().strip() == "ready"
        dropped0 = queue_dropped(lab)
        send = subprocess.Popen(lab.ns(lab.c, sys.executable, "-c", SENDER, SERVER, str(PORT), str(rate), str(seconds)),
                                stdout=subprocess.PIPE, text=True)
        time.sleep(4.0)
        hup = time.monotonic()
        os.kill(app.pid, signal.SIGHUP)
        wait(lambda: "config and rules reloaded" in log_text(), seconds, "the worker to reload")
        swapped = time.monotonic()
        sent = int(send.stdout.readline())
        send.wait()
        arrivals = json.loads(recv.stdout.readline())
        recv.wait()
        if swapped + 1.0 > arrivals[-1]:
            raise RuntimeError("the reload outlasted the traffic; use more --seconds or fewer rules")
        return {"steady": longest_gap(arrivals, hup - 3.0, hup), "reload": longest_gap(arrivals, hup, swapped + 1.0),
                "swap_after": swapped - hup, "lost": sent - len(arrivals), "sent": sent,
                "queue_dropped": queue_dropped(lab) - dropped0}
    finally:
        os.killpg(app.pid, signal.SIGTERM)
        try:
            app.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(app.pid, signal.SIGKILL)
            app.wait()
        for tool in ("iptables", "ip6tables"):     # fail-closed leaves its chains: clear for the next run
            lab.run(lab.r, tool, "-F", check=False)
            lab.run(lab.r, tool, "-X", check=False)
        lab.run(lab.r, "conntrack", "-F", check=False)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m bench.reload", description=__doc__.split("\n")[0])
    ap.add_argument("--rules", type=int, default=10001)
    ap.add_argument("--rate", type=int, default=2000, help="UDP packets/s through the worker")
    ap.add_argument("--runs", type=int, default=3)
    o = ap.parse_args(argv)
    print(header("python3 -m bench.reload " + " ".join(argv if argv is not None else sys.argv[1:])), flush=True)
    why = _why_skip()
    if why:
        print(f"SKIPPED: {why}")
        return 0
    lab = Lab()
    results = []
    try:
        lab.up()
        with tempfile.TemporaryDirectory(prefix="bench-reload-") as workdir:
            for i in range(o.runs):
                r = one_run(lab, workdir, o.rules, o.rate)
                results.append(r)
                print(f"run {i + 1}: steady gap {r['steady'] * 1000:.1f} ms, reload gap {r['reload'] * 1000:.1f} ms "
                      f"(ratio {r['reload'] / r['steady']:.1f}), swapped {r['swap_after']:.2f} s after SIGHUP, "
                      f"lost {r['lost']}/{r['sent']}, queue_dropped {r['queue_dropped']}", flush=True)
    finally:
        lab.down()
    steady, gap = median([r["steady"] for r in results]), median([r["reload"] for r in results])
    print(f"\nreload of {o.rules} rules at {o.rate} pkt/s, fail-closed, median of {len(results)}: "
          f"steady gap {steady * 1000:.1f} ms, reload gap {gap * 1000:.1f} ms, ratio {gap / steady:.1f}, "
          f"lost {median([r['lost'] for r in results]):.0f}, queue_dropped {median([r['queue_dropped'] for r in results]):.0f}")
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
