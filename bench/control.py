"""The control plane's cost to the datapath: `python3 -m bench.control [--runs N] [--seconds T]` (root).

In the bench namespaces (bench.inline.Lab), `appliance run` (one worker, fail-closed, offload
off: every packet gets a verdict from the worker) carries the small-packet UDP flood of the
inline rows twice per run, in alternating order:

    off      no `control:` section (no server, no worker snapshots)
    scraped  `control: {listen: 127.0.0.1:9900}` and a client in the router namespace that
             GETs /metrics and /readyz every second (a Prometheus and a load balancer's
             health check), for the whole load

Rows: verdicts/s scraped / verdicts/s off (target >= 0.98), and the worker's CPU time per
verdict scraped / off (target <= 1.02: what the snapshots cost the datapath, nearly free of the
noise other load on the machine puts on throughput); per run the supervisor's CPU share (its
threads and the iptables processes it ran) is printed. The scrapes that succeeded are
printed, so a run where the server did not answer cannot pass for a cheap one.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

from .common import Row, format_rows, header, log, median
from .inline import DEFAULT_RULES, Lab, _why_skip

PORT = 9900
SCRAPER = """
import sys, time, urllib.request
url, seconds, paths = sys.argv[1], float(sys.argv[2]), sys.argv[3].split(",")
print("ready", flush=True)
ok = failed = 0
end = time.monotonic() + seconds
while time.monotonic() < end:
    t = time.monotonic()
    for path in paths:
        try:
            urllib.request.urlopen(url + path, timeout=5).read()
            ok += 1
        except Exception:
            failed += 1
    time.sleep(max(0.0, 1.0 - (time.monotonic() - t)))
print(ok, failed, flush=True)
"""


def start(lab, work, control):
    cfg = os.path.join(work, f"appliance-{'control' if control else 'off'}.yaml")
    with open(cfg, "w") as f:
        f.write(f"""interfaces: {{outside: bench-out, inside: bench-in}}
rules: {DEFAULT_RULES}
eve: {os.path.join(work, 'eve.json')}
home_net: [10.201.2.0/24]
workers: 1
failure_mode: closed
offload: false
""" + (f"control: {{listen: 127.0.0.1:{PORT}}}\n" if control else ""))
    p = lab.spawn(lab.r, [sys.executable, "-m", "appliance.run", "--config", cfg], wait_for=None)
    deadline = time.time() + 40
    while time.time() < deadline:
        if p.poll() is not None:
            _, err = lab.stop(p)
            raise RuntimeError(f"appliance.run exited {p.returncode}: {err.strip()[-400:]}")
        if "NFQUEUE" in lab.run(lab.r, "iptables-save", check=False).stdout:
            time.sleep(1.0)
            return p
        time.sleep(0.3)
    lab.stop(p)
    raise RuntimeError("appliance.run: no NFQUEUE rule after 40s")


def cpu_seconds(pid):
    """CPU time of one process (the supervisor, where the control server runs) and of the
    children it waited for (iptables-nft-save, ip: the kernel reads of a scrape)."""
    with open(f"/proc/{pid}/stat") as f:
        v = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in v[11:15]) / os.sysconf("SC_CLK_TCK")


def measure(lab, work, control, seconds, paths=("/metrics", "/readyz")):
    p = start(lab, work, control)
    scraper = None
    try:
        with open(f"/proc/{p.pid}/task/{p.pid}/children") as f:
            worker = int(f.read().split()[0])
        cpu0, t0, wcpu0, rx0 = cpu_seconds(p.pid), time.monotonic(), cpu_seconds(worker), lab.rx_packets()
        if control and paths:
            scraper = lab.spawn(lab.r, [sys.executable, "-c", SCRAPER, f"http://127.0.0.1:{PORT}", str(seconds + 1),
                                        ",".join(paths)])
        rate = lab.udp_verdicts(seconds)
        supervisor = (cpu_seconds(p.pid) - cpu0) / (time.monotonic() - t0)
        per_verdict = (cpu_seconds(worker) - wcpu0) / max(1, lab.rx_packets() - rx0) * 1e6   # us
        scrapes = None
        if scraper is not None:
            out = scraper.stdout.readline().split()
            scraper.wait(30)
            scrapes = (int(out[0]), int(out[1])) if len(out) == 2 else (0, -1)
        return rate, scrapes or (0, 0), supervisor, per_verdict
    finally:
        lab.stop_appliance(p)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m bench.control", description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5.0, help="load per measure")
    ap.add_argument("--paths", default="/metrics,/readyz",
                    help="what the scraper GETs each second (empty: the server runs, nobody asks: "
                         "the workers' snapshots alone)")
    o = ap.parse_args(argv)
    print(header("python3 -m bench.control " + " ".join(argv if argv is not None else sys.argv[1:])), flush=True)
    row = Row(f"UDP verdicts/s, control server, every second: {o.paths or 'nothing asked'}, 1 worker",
              "no control server", "pkt/s", ">= 0.98")
    # CPU time per verdict barely depends on what else the machine runs: the row that
    # resolves a few percent where throughput on a shared 2-core machine swings by +-20 %
    per_verdict = Row("worker CPU per verdict, same load and server", "no control server", "us", "<= 1.02")
    why = _why_skip()
    if why:
        row.status, row.note = per_verdict.status, per_verdict.note = "SKIPPED", why
        print(format_rows([row, per_verdict]))
        return 0
    lab, work = Lab(), tempfile.mkdtemp(prefix="bench-control-")
    cpu = []                   # the supervisor's CPU share, scraped minus off, per run
    try:
        lab.up()
        for run in range(o.runs):
            order = (False, True) if run % 2 == 0 else (True, False)     # drift hits both sides alike
            got = {}
            for control in order:
                got[control] = measure(lab, work, control, o.seconds, [p for p in o.paths.split(",") if p])
            (on, scrapes, sup_on, us_on), (off, _, sup_off, us_off) = got[True], got[False]
            cpu.append(sup_on - sup_off)
            per_verdict.add(us_on, us_off)
            log(f"run {run + 1}/{o.runs}: off {off:,.0f} pkt/s, scraped {on:,.0f} pkt/s "
                f"(ratio {on / off:.3f}); scrapes ok {scrapes[0]}, failed {scrapes[1]}; supervisor CPU "
                f"{sup_off:.1%} off, {sup_on:.1%} scraped; worker CPU per verdict {us_off:.2f} us off, "
                f"{us_on:.2f} us scraped")
            if o.paths and (scrapes[0] < len(o.paths.split(",")) * (o.seconds - 1) or scrapes[1]):
                row.status, row.note = "ERROR", f"the scraper got {scrapes[0]} answers, {scrapes[1]} failures"
            row.add(on, off)
    finally:
        lab.down()
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(format_rows([row, per_verdict]))
    print(json.dumps({"ratio_median": round(median(row.ratios), 3), "ratios": [round(r, 3) for r in row.ratios],
                      "supervisor_cpu_added_median": round(median(cpu), 4),
                      "worker_cpu_per_verdict_ratios": [round(r, 3) for r in per_verdict.ratios]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
