"""HA takeover in the lab (tests/netns/ha_lab.py): `python3 -m bench.ha [--runs 10]` (root).

For each failure of the primary, `--runs` times (whoever is primary then):

    kill9      the instance dies: every process killed, its forwarding off (then rebooted)
    sigstop    every process of the instance frozen (then thawed)
    link_down  its inside data link down: /readyz fails `links` (then up again)

measured in the same run:

- route moved: failure -> both route tables at the standby's ENI, as the lab's VPC reads them
  back from the EC2 API (moto on loopback, polled every 20 ms: the real API adds its latency);
- ping lost: packets a continuous `ping -i 0.01` client -> server lost across the takeover,
  against the baseline: the same ping over the same length of time without a failure;
- TCP kept: a long transfer (16 KB every 5 ms) through a flow offloaded (connmark) at the
  primary goes on at the new primary (256 KB more within 10 s, connection not reset).
  Without conntrackd here: the new primary's conntrack picks the flow up mid-stream
  (nf_conntrack_tcp_loose) and its worker judges it by its rules (docs/ha.md).

Settings: the lab's (interval 0.2 s, dead_after 1 s, hold_down 2 s); `--hold-down` changes it.
Each failure comes at least hold_down + ROUTE_POLL after the last route move (a failure within
the hold-down waits for the rest of it: that is the hold-down's figure, not the takeover's).
"""
import argparse
import os
import sys
import tempfile
import time

from appliance.ha.service import ROUTE_POLL

from .common import header, median, percentile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "netns"))
from ha_lab import Lab, can_run, wait_for  # noqa: E402

KINDS = ("kill9", "sigstop", "link_down")
AFTER = 1.0            # seconds of ping after the route change (the new path's first replies)


def fail(kind, inst):
    {"kill9": inst.kill9, "sigstop": inst.freeze, "link_down": inst.link_down}[kind]()


def recover(kind, inst):
    {"kill9": inst.restart, "sigstop": inst.thaw, "link_down": inst.link_up}[kind]()


def settled(lab):
    wait_for(lambda: lab.vpc.owner() is not None, 60, "an owner")
    p = lab.vpc.owner()
    lab.wait_settled(p, timeout=60)
    return p, lab.peer_of(p)


def one(lab, kind, port):
    p, s = settled(lab)
    # A failure within hold_down of the last move waits for the rest of it (by design, and
    # the standby sees a move up to ROUTE_POLL late): measure takeovers, not hold-downs.
    while time.monotonic() - lab.vpc.changes[-1][0] < lab.hold_down + ROUTE_POLL + 0.5:
        time.sleep(0.1)
    tr = lab.transfer(port)
    try:
        if not tr.grows(256 << 10, 10):
            raise RuntimeError("the transfer does not flow before the failure")
        offloaded = wait_for(lambda: tr.offloaded_at(p), 10, "the transfer offloaded at the primary")
        ping = lab.ping()
        wait_for(lambda: lab.reaches_server(), 5, "ping path")
        t0 = time.monotonic()
        fail(kind, p)
        try:
            moved = wait_for(lambda: lab.vpc.moved_to(s, t0), 60, f"the routes at {s.name}", every=0.01)
            time.sleep(AFTER)
            tx, rx, gap = ping.stop()
            kept = tr.grows(256 << 10, 10) and not tr.closed()
            picked_up = tr.offloaded_at(s)
        finally:
            recover(kind, p)
        return {"route_ms": (moved - t0) * 1000, "lost": tx - rx, "sent": tx, "kept": kept,
                "offloaded_before": bool(offloaded), "offloaded_after": picked_up,
                "window_s": moved - t0 + AFTER,
                "outage_ms": gap}
    finally:
        tr.stop()


def baseline(lab, seconds):
    """Ping loss over `seconds` with no failure (the path, the machine's load)."""
    settled(lab)
    ping = lab.ping()
    wait_for(lambda: lab.reaches_server(), 5, "ping path")
    time.sleep(seconds)
    tx, rx, gap = ping.stop()
    return tx - rx, tx, gap


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m bench.ha", description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--hold-down", type=float, default=2.0)
    a = ap.parse_args(argv)
    why = can_run()
    if why:
        sys.exit(f"bench.ha: {why}")
    kinds = [k for k in a.kinds.split(",") if k]
    for k in kinds:
        if k not in KINDS:
            sys.exit(f"bench.ha: unknown failure {k!r} (one of {', '.join(KINDS)})")
    print(header(f"python3 -m bench.ha --runs {a.runs} --kinds {','.join(kinds)} --hold-down {a.hold_down:g}"))
    print(f"load before: {os.getloadavg()[0]:.2f} (1-min load average, 2 cores shared)")
    lab = Lab(tempfile.mkdtemp(prefix="bench-ha-"), hold_down=a.hold_down).up()
    results, port = {}, 6000
    try:
        for kind in kinds:
            rows = results.setdefault(kind, [])
            for i in range(a.runs):
                port += 1
                r = one(lab, kind, port)
                rows.append(r)
                print(f"  {kind:9} run {i + 1:2}: route moved {r['route_ms']:6.0f} ms, ping lost {r['lost']:4} "
                      f"of {r['sent']}, TCP kept {'yes' if r['kept'] else 'NO'}"
                      f"{'' if r['offloaded_before'] else ' (not offloaded before!)'}", flush=True)
        window = median([r["window_s"] for rows in results.values() for r in rows])
        base = [baseline(lab, window) for _ in range(3)]
        slowest = lab.vpc.slowest
    finally:
        lab.down()
    print(f"load after: {os.getloadavg()[0]:.2f}; slowest route-table read by the lab's VPC: {slowest * 1000:.0f} ms")
    print()
    print(f"{'failure':10} {'runs':>4}  {'route moved ms: median':>22} {'p95':>6} {'max':>6}  "
          f"{'ping lost: median':>17} {'p95':>5} {'max':>5}  {'outage ms: median':>17} {'p95':>5}  "
          f"{'TCP kept':>8}  {'re-offloaded':>12}")
    for kind, rows in results.items():
        ms = [r["route_ms"] for r in rows]
        lost = [r["lost"] for r in rows]
        out = [r["outage_ms"] for r in rows]
        print(f"{kind:10} {len(rows):>4}  {median(ms):>22.0f} {percentile(ms, 95):>6.0f} {max(ms):>6.0f}  "
              f"{median(lost):>17.0f} {percentile(lost, 95):>5.0f} {max(lost):>5}  "
              f"{median(out):>17.0f} {percentile(out, 95):>5.0f}  "
              f"{sum(r['kept'] for r in rows):>4}/{len(rows):<3}  {sum(r['offloaded_after'] for r in rows):>8}/{len(rows)}")
    print(f"{'baseline':10} {len(base):>4}  {'(no failure, same ' + format(window, '.1f') + ' s window)':>36}  "
          f"{median([b[0] for b in base]):>17.0f} {'':>5} {max(b[0] for b in base):>5}  "
          f"{median([b[2] for b in base]):>17.0f} {max(b[2] for b in base):>5.0f}")
    print("ping lost: of a `ping -i 0.01` (on a loaded machine it sends less often than every 10 ms);\n"
          "outage ms: the longest time between two ping replies (ping -D), baseline: the same without failure;\n"
          "TCP kept: 256 KB more within 10 s on the same connection, without conntrackd (mid-stream pickup);\n"
          "re-offloaded: the connection carries the pass connmark at the new primary afterwards")


if __name__ == "__main__":
    main()
