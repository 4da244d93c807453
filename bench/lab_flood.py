"""A SYN flood through the lab appliance while a legitimate client keeps connecting.

    python3 -m bench.lab_flood [--syns 200000] [--rate 50000] [--max-flows 20000] [--workers 2]

The lab (appliance/lab: client, appliance and server namespaces) runs `appliance run` with
name rules loaded, so every SYN is a flow whose verdict is pending (the worst case: no
header rule can decide it). From the client namespace, bare SYNs from 231 spoofed sources
and random ports (every one a new flow) at --rate, --syns in all; meanwhile a client
connects to the server's HTTP port over and over. Printed: the legitimate success rate
before and during the flood, the appliance's RSS (all its processes) before and at most,
EVE bytes per flood packet (the flood's events, without the legitimate client's flows and
without the one event per flow still in the table at stop), worker restarts and the kernel queue's drop counters.
Needs root; the lab is named flood-PID and removed at the end.

    python3 -m bench.lab_flood --overload [--per-source 100] [--seconds 5] [--workers 1]

The overload row (issue 15): one worker's capacity is measured first (hping3 --flood, every
SYN a new flow from one source, no limit: the SYNs the kernel managed to queue per second
while the queue overflowed), then the appliance runs with `overload: {new_flows_per_source}`
and hping3 floods again, as fast as it can, while the client connects: the flood's rate
over that capacity, the client's success rate during the flood, RSS before and at most, and
worker restarts.

    python3 -m bench.lab_flood --overload --spoofed [--synproxy] [--seconds 5] [--workers 1]

The same with hping3 --rand-source: every SYN from its own random address, which no
per-source limit can tell from a real client. --synproxy: the appliance runs with
`overload: {synproxy: {ports: [80]}}` instead of the per-source limit (the kernel answers
the SYNs with cookies; docs/performance.md "SYN proxy"); also printed then: the packets the
SYNPROXY rule took and conntrack's entries at the end of the flood.

    python3 -m bench.lab_flood --overload --spoofed --udp --established-first [--seconds 5]

Priority for established flows (`overload.established_first`): failure_mode closed, one
worker, rules that keep a TCP connection inspected (a content rule it never matches, a large
depth). The connection (bench.echo_exchange) makes one 64-byte exchange every 50 ms while
hping3 --udp --rand-source --flood sends new flows from random sources; the same run twice,
the switch on then off. Printed for each: exchanges answered and failed, retransmissions
(client and server sockets: the connection's segments lost), the connection's packets the
worker inspected (its EVE flow record), the flood's rate and what each queue took and dropped.
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from appliance.lab import Lab, up, down
from appliance.lab.demo import start_appliance, stop_appliance
from appliance.lab.topology import CLIENT_V4, SERVER_V4, HOME_NET, ns_exec
from appliance.netfilter import parse_queue_counters

ROOT = Path(__file__).resolve().parents[1]
RULES = """\
default_action: pass
rules:
  - {id: 1, action: drop, proto: tcp, http_host: blocked.example}
  - {id: 2, action: drop, proto: tcp, tls_sni: blocked.example}
"""


def rss_kib(ns):
    """Resident memory of every process in the namespace, in KiB."""
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def queue_counters(ns):
    """(queue_dropped, user_dropped) summed over the namespace's NFQUEUE queues."""
    text = subprocess.run(ns_exec(ns, "cat", "/proc/net/netfilter/nfnetlink_queue"),
                          capture_output=True, text=True).stdout
    qd = ud = 0
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 7:
            qd, ud = qd + int(f[5]), ud + int(f[6])
    return qd, ud


def legit(lab, seconds, threads=2):
    out = subprocess.run(ns_exec(lab.client, sys.executable, "-m", "bench.nsload", "conns",
                                 SERVER_V4, "80", str(seconds), str(threads)),
                         cwd=ROOT, capture_output=True, text=True, timeout=seconds + 60)
    r = json.loads(out.stdout)
    r["success"] = r["conns"] / max(1, r["conns"] + r["errors"])
    return r


def run(syns=200_000, rate=50_000, max_flows=20_000, workers=2, legit_seconds=5, log=print):
    lab = Lab(f"flood-{os.getpid() % 100000}")
    up(lab)
    proc = None
    try:
        work = lab.workdir
        rules, config, eve = work / "flood.yaml", work / "appliance.yaml", work / "eve.json"
        rules.write_text(RULES)
        config.write_text(
            "interfaces: {outside: eth0, inside: eth1, management: null}\n"
            f"rules: {json.dumps(str(rules))}\neve: {json.dumps(str(eve))}\n"
            f"home_net: [{', '.join(HOME_NET)}]\nworkers: {workers}\nfailure_mode: open\n"
            f"inspection: {{max_flows: {max_flows}}}\n")
        # half-open connections must not pile up in conntrack for two minutes
        subprocess.run(ns_exec(lab.fw, "sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_timeout_syn_sent=5"),
                       check=False)
        proc = start_appliance(lab, config)
        time.sleep(1)
        base_rss = rss_kib(lab.fw)
        before = legit(lab, legit_seconds)
        worker_pids = set(subprocess.run(["ip", "netns", "pids", lab.fw], capture_output=True,
                                         text=True).stdout.split())
        peak = [base_rss]
        done = threading.Event()

        def sample():
            while not done.wait(0.5):
                peak[0] = max(peak[0], rss_kib(lab.fw))
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        flood = subprocess.Popen(ns_exec(lab.client, sys.executable, "-m", "bench.nsload", "synflood",
                                         SERVER_V4, "80", str(syns), str(rate), "10.10.1", "20", "250"),
                                 cwd=ROOT, stdout=subprocess.PIPE, text=True)
        during = legit(lab, max(legit_seconds, syns / rate))
        sent = json.loads(flood.communicate(timeout=syns / rate * 4 + 120)[0])
        time.sleep(1)
        done.set()
        sampler.join()
        pids_after = set(subprocess.run(["ip", "netns", "pids", lab.fw], capture_output=True,
                                        text=True).stdout.split())
        qd, ud = queue_counters(lab.fw)
        shutdown = stop_appliance(lab, proc)
        proc = None
        # the flood's own events: not the legitimate client's flows, not the table's flush at
        # shutdown (one event per flow still in the table: bounded by max_flows, not the flood)
        kinds, flood_bytes, flushed = {}, 0, 0
        for p in work.glob("eve.json*"):
            for line in p.read_text(errors="replace").splitlines():
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if CLIENT_V4 in (ev.get("src_ip"), ev.get("dest_ip")):
                    continue
                k = ev.get("event_type", "?")
                if k == "flow":
                    k += "/" + ev.get("flow", {}).get("reason", "?")
                elif k == "anomaly":
                    k += "/" + ev.get("anomaly", {}).get("event", "?")
                kinds[k] = kinds.get(k, 0) + 1
                if k == "flow/shutdown":
                    flushed += 1
                else:
                    flood_bytes += len(line) + 1
        restarts = (work / "appliance.log").read_text(errors="replace").count("restarting")
        result = {
            "syns_sent": sent["sent"], "flood_seconds": round(sent["seconds"], 2),
            "flood_rate": round(sent["sent"] / max(sent["seconds"], 1e-9)),
            "legit_success_before": round(before["success"], 3), "legit_conns_before": before["conns"],
            "legit_success_during": round(during["success"], 3), "legit_conns_during": during["conns"],
            "rss_base_mib": round(base_rss / 1024, 1), "rss_peak_mib": round(peak[0] / 1024, 1),
            "rss_growth_per_flow_b": round((peak[0] - base_rss) * 1024 / (max_flows * workers)),
            "eve_flood_events": dict(sorted(kinds.items(), key=lambda kv: -kv[1])[:6]),
            "eve_bytes_per_syn": round(flood_bytes / max(1, sent["sent"]), 2),
            "eve_flows_flushed_at_stop": flushed,
            "worker_restarts": restarts, "new_pids": len(pids_after - worker_pids),
            "queue_dropped": qd, "user_dropped": ud, "max_flows": max_flows, "workers": workers,
            "shutdown": shutdown,
        }
        for k, v in result.items():
            log(f"  {k:<24} {v}")
        return result
    finally:
        if proc is not None:
            stop_appliance(lab, proc)
        down(lab)


FLOOD_SOURCE = "10.10.1.20"        # on the client's subnet, owned by no one: SYN/ACKs go nowhere


def _tx_packets(lab):
    out = subprocess.run(ns_exec(lab.client, "cat", "/sys/class/net/eth0/statistics/tx_packets"),
                         capture_output=True, text=True).stdout
    return int(out or 0)


def _queued(lab):
    text = subprocess.run(ns_exec(lab.fw, "cat", "/proc/net/netfilter/nfnetlink_queue"),
                          capture_output=True, text=True).stdout
    return sum(int(line.split()[7]) for line in text.splitlines() if len(line.split()) >= 8)


def _hping_flood(lab, seconds, spoofed=False, senders=1):
    """hping3 --flood from FLOOD_SOURCE (`spoofed`: from a random address each; `senders`
    processes) for `seconds`: (SYNs sent, seconds). Its source port goes up by one per SYN,
    so every SYN is a new flow."""
    before, t0 = _tx_packets(lab), time.monotonic()
    source = ["--rand-source"] if spoofed else ["-a", FLOOD_SOURCE]
    ps = [subprocess.Popen(ns_exec(lab.client, "hping3", "-q", "-S", "-p", "80", "--flood", *source,
                                   SERVER_V4), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
          for _ in range(senders)]
    return ps, before, t0


def _hping_stop(lab, flood):
    ps, before, t0 = flood
    for p in ps:
        p.terminate()
    for p in ps:
        p.wait(10)
    return _tx_packets(lab) - before, time.monotonic() - t0


def _config(lab, workers, max_flows, extra=""):
    work = lab.workdir
    rules, config, eve = work / "flood.yaml", work / "appliance.yaml", work / "eve.json"
    rules.write_text(RULES)
    config.write_text(
        "interfaces: {outside: eth0, inside: eth1, management: null}\n"
        f"rules: {json.dumps(str(rules))}\neve: {json.dumps(str(eve))}\n"
        f"home_net: [{', '.join(HOME_NET)}]\nworkers: {workers}\nfailure_mode: open\n"
        f"inspection: {{max_flows: {max_flows}}}\n" + extra)
    return config


def overload(per_source=100, seconds=5, workers=1, max_flows=20_000, log=print, spoofed=False, synproxy=False,
             senders=1):
    """The overload row: one worker's SYN capacity, then a flood past it with the per-source
    limit (or `synproxy`: the SYN proxy) on and a client connecting throughout (module docstring)."""
    lab = Lab(f"ovl-{os.getpid() % 100000}")
    up(lab)
    proc = None
    try:
        subprocess.run(ns_exec(lab.fw, "sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_timeout_syn_sent=5"),
                       check=False)
        # 1. capacity: no limit, the flood fills the queue; what the worker took per second
        proc = start_appliance(lab, _config(lab, workers, max_flows))
        time.sleep(1)
        q0 = _queued(lab)
        flood = _hping_flood(lab, 3, spoofed)
        time.sleep(3)
        q1 = _queued(lab)
        sent0, secs0 = _hping_stop(lab, flood)
        capacity = (q1 - q0) / secs0
        stop_appliance(lab, proc)
        proc = None
        # the capacity flood's half-open entries (SYN_RECV: 60 s) would be counted as the next one's
        subprocess.run(ns_exec(lab.fw, "conntrack", "-F"), capture_output=True, check=False)
        log(f"  capacity: {capacity:,.0f} SYN/s queued to {workers} worker(s) while {sent0 / secs0:,.0f} SYN/s "
            f"were offered")
        # 2. the limit (or the proxy) on: the flood again, and the client
        protection = ("overload: {synproxy: {ports: [80]}}\n" if synproxy
                      else f"overload: {{new_flows_per_source: {per_source}}}\n")
        proc = start_appliance(lab, _config(lab, workers, max_flows, protection))
        time.sleep(1)
        before = legit(lab, 3)
        base_rss = rss_kib(lab.fw)
        pids = set(subprocess.run(["ip", "netns", "pids", lab.fw], capture_output=True, text=True).stdout.split())
        peak = [base_rss]
        done = threading.Event()

        def sample():
            while not done.wait(0.5):
                peak[0] = max(peak[0], rss_kib(lab.fw))
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        q0 = _queued(lab)
        flood = _hping_flood(lab, seconds, spoofed, senders)
        during = legit(lab, seconds)
        entries = subprocess.run(ns_exec(lab.fw, "cat", "/proc/sys/net/netfilter/nf_conntrack_count"),
                                 capture_output=True, text=True).stdout.strip()
        sent, secs = _hping_stop(lab, flood)
        queued = _queued(lab) - q0
        saved = subprocess.run(ns_exec(lab.fw, "iptables-save", "-c"), capture_output=True, text=True).stdout

        def counted(word):
            return sum(int(line[1:].split(":")[0]) for line in saved.splitlines()
                       if line.startswith("[") and word in line)
        limited, proxied = counted("-m hashlimit"), counted("-j SYNPROXY")
        done.set()
        sampler.join()
        after = set(subprocess.run(["ip", "netns", "pids", lab.fw], capture_output=True, text=True).stdout.split())
        restarts = (lab.workdir / "appliance.log").read_text(errors="replace").count("restarting")
        stop_appliance(lab, proc)
        proc = None
        result = {
            "capacity_syn_per_s": round(capacity), "flood_syn_per_s": round(sent / secs),
            "flood_over_capacity": round(sent / secs / max(capacity, 1), 1),
            "spoofed": spoofed, "protection": "synproxy" if synproxy else f"per_source_limit {per_source}",
            "senders": senders, "queued_during_flood": queued, "source_limited": limited, "synproxied": proxied,
            "conntrack_entries_at_flood_end": int(entries or 0),
            "legit_success_before": round(before["success"], 3), "legit_success_during": round(during["success"], 3),
            "legit_conns_before": before["conns"], "legit_conns_during": during["conns"],
            "rss_base_mib": round(base_rss / 1024, 1), "rss_peak_mib": round(peak[0] / 1024, 1),
            "worker_restarts": restarts, "new_pids": len(after - pids), "workers": workers,
        }
        for k, v in result.items():
            log(f"  {k:<24} {v}")
        return result
    finally:
        if proc is not None:
            stop_appliance(lab, proc)
        down(lab)


PRIO_PORT = 9100                  # the inspected connection's server port (the lab's own servers are elsewhere)
PRIO_RULES = f"""\
default_action: pass
rules:
  - {{id: 1, action: drop, proto: tcp, dst_port: {PRIO_PORT}, content: "NEVER-SENT-ON-THIS-CONNECTION"}}
  - {{id: 2, action: drop, proto: udp, dst_port: 9}}
"""
PRIO_INTERVAL = 0.05


def _queue_table(ns):
    """queue number -> (queued, kernel drops) from the namespace's nfnetlink_queue."""
    text = subprocess.run(ns_exec(ns, "cat", "/proc/net/netfilter/nfnetlink_queue"),
                          capture_output=True, text=True).stdout
    return {q: (c["queued"], c["dropped"] + c["user_dropped"]) for q, c in parse_queue_counters(text).items()}


def _prio_run(lab, seconds, first):
    """One run of the established_first case (module docstring); `first`: the switch."""
    work = lab.workdir
    rules, config, eve = work / "prio.yaml", work / "prio-appliance.yaml", work / "prio-eve.json"
    rules.write_text(PRIO_RULES)
    eve.unlink(missing_ok=True)
    config.write_text(
        "interfaces: {outside: eth0, inside: eth1, management: null}\n"
        f"rules: {json.dumps(str(rules))}\neve: {json.dumps(str(eve))}\n"
        f"home_net: [{', '.join(HOME_NET)}]\nworkers: 1\nfailure_mode: closed\noffload: false\n"
        "inspection: {depth_packets: 1000000, depth_bytes: 100000000}\n"
        + ("overload: {established_first: true}\n" if first else ""))
    proc = start_appliance(lab, config)
    server = subprocess.Popen(ns_exec(lab.server, sys.executable, "-m", "bench.echo_exchange", "server",
                                      str(PRIO_PORT)), cwd=ROOT, stdout=subprocess.PIPE, text=True)
    client = flood = None
    try:
        server.stdout.readline()
        exchanges = int(seconds / PRIO_INTERVAL)
        client = subprocess.Popen(ns_exec(lab.client, sys.executable, "-m", "bench.echo_exchange", "client",
                                          SERVER_V4, str(PRIO_PORT), str(exchanges), str(PRIO_INTERVAL)),
                                  cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        client.stdout.readline()                      # "ready": connected, one exchange made
        before, sent0, t0 = _queue_table(lab.fw), _tx_packets(lab), time.monotonic()
        flood = subprocess.Popen(ns_exec(lab.client, "hping3", "-q", "--udp", "-p", "9", "--rand-source",
                                         "--flood", SERVER_V4), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)                               # the flood under way first
        client.stdin.write("go\n")
        client.stdin.flush()
        got = json.loads(client.stdout.readline())
        after, sent, secs = _queue_table(lab.fw), _tx_packets(lab) - sent0, time.monotonic() - t0
    finally:
        if flood is not None:
            flood.kill()
            flood.wait()
        if client is not None:
            client.kill()
            client.wait()
    line = server.stdout.readline()
    server.kill()
    server.wait()
    stop_appliance(lab, proc)
    served = json.loads(line) if line.strip() else {}
    flows = [json.loads(x) for x in eve.read_text().splitlines() if f'"dest_port":{PRIO_PORT}' in x.replace(" ", "")]
    seen = sum(e["flow"]["pkts_toserver"] + e["flow"]["pkts_toclient"] for e in flows if e.get("event_type") == "flow")
    delta = {q: (after[q][0] - before.get(q, (0, 0))[0], after[q][1] - before.get(q, (0, 0))[1]) for q in after}
    return {"established_first": first, "exchanges": exchanges, "answered": got.get("answered", 0),
            "failed": got.get("failed", 0), "client_retransmissions": got.get("retransmissions"),
            "server_retransmissions": served.get("server_retransmissions"), "flow_packets_inspected": seen,
            "flood_seconds": round(secs, 1), "flood_pkt_per_s": round(sent / secs),
            "worker_took_pkt_per_s": round(sum(q for q, _ in delta.values()) / secs),
            "queued_dropped_by_queue": delta}


def established_first(seconds=5, log=print):
    """The established_first case: the same flood and connection with the switch on, then off."""
    lab = Lab(f"prio-{os.getpid() % 100000}")
    up(lab)
    try:
        out = []
        for first in (True, False):
            r = _prio_run(lab, seconds, first)
            subprocess.run(ns_exec(lab.fw, "conntrack", "-F"), capture_output=True, check=False)
            for k, v in r.items():
                log(f"  {k:<24} {v}")
            out.append(r)
        return out
    finally:
        down(lab)


def rows(quick=False, runs=None):
    """The overload rows of `python3 -m bench`: one source against the per-source limit, random
    sources against the SYN proxy, a UDP flood from random sources with established_first
    (skipped without root or hping3)."""
    import shutil
    from .common import Row
    rate = Row("SYN flood rate (hping3 --flood, one source, every SYN a new flow)", "one worker's capacity, "
               "same run (SYNs queued/s, no limit)", "SYN/s", ">= 10")
    ok = Row("legitimate connections succeeded during that flood, overload.new_flows_per_source 100",
             "before the flood (ratio: the success fraction during)", "%", ">= 0.95")
    spoofed = Row("SYN flood rate (hping3 --flood --rand-source, every SYN its own source) with overload.synproxy",
                  "one worker's capacity, same run (SYNs queued/s, no proxy)", "SYN/s", ">= 10")
    spoofed_ok = Row("legitimate connections succeeded during that flood, overload.synproxy on port 80",
                     "before the flood (ratio: the success fraction during)", "%", ">= 0.95")
    udp = Row("UDP flood rate (hping3 --udp --flood --rand-source) with overload.established_first",
              "what the worker took, same run (pkt/s queued to it)", "pkt/s", ">= 10")
    udp_ok = Row("an inspected connection's exchanges answered during that flood, overload.established_first",
                 "the same with the switch off (ratio: the fraction answered with it on)", "%", ">= 0.95")
    rows = [rate, ok, spoofed, spoofed_ok, udp, udp_ok]
    if os.geteuid() != 0 or shutil.which("hping3") is None:
        for row in rows:
            row.status, row.note = "SKIPPED", "needs root and hping3"
        return rows
    for _ in range(runs or (1 if quick else 3)):
        r = overload(seconds=3 if quick else 5, log=lambda m: print(m, file=sys.stderr))
        rate.add(r["flood_syn_per_s"], r["capacity_syn_per_s"])
        ok.add(100 * r["legit_success_during"], 100 * r["legit_success_before"], ratio=r["legit_success_during"])
        r = overload(seconds=3 if quick else 5, log=lambda m: print(m, file=sys.stderr), spoofed=True, synproxy=True)
        spoofed.add(r["flood_syn_per_s"], r["capacity_syn_per_s"])
        spoofed_ok.add(100 * r["legit_success_during"], 100 * r["legit_success_before"],
                       ratio=r["legit_success_during"])
        on, off = established_first(seconds=3 if quick else 5, log=lambda m: print(m, file=sys.stderr))
        udp.add(on["flood_pkt_per_s"], on["worker_took_pkt_per_s"])
        udp_ok.add(100 * _answered(on), 100 * _answered(off), ratio=_answered(on))
    return rows


def _answered(run):
    """The fraction of the connection's exchanges answered in one established_first run."""
    return run["answered"] / max(run["exchanges"], 1)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m bench.lab_flood", description=__doc__.splitlines()[0])
    ap.add_argument("--syns", type=int, default=200_000)
    ap.add_argument("--rate", type=int, default=50_000)
    ap.add_argument("--max-flows", type=int, default=20_000)
    ap.add_argument("--workers", type=int, default=None, help="default 2 (1 with --overload)")
    ap.add_argument("--overload", action="store_true", help="the overload row (hping3; see above)")
    ap.add_argument("--per-source", type=int, default=100, help="overload.new_flows_per_source (--overload)")
    ap.add_argument("--seconds", type=int, default=5, help="flood length (--overload)")
    ap.add_argument("--spoofed", action="store_true", help="hping3 --rand-source (--overload)")
    ap.add_argument("--synproxy", action="store_true", help="overload.synproxy instead of the limit (--overload)")
    ap.add_argument("--senders", type=int, default=1, help="hping3 processes in the protected flood (--overload)")
    ap.add_argument("--udp", action="store_true", help="a UDP flood (--overload --spoofed --established-first)")
    ap.add_argument("--established-first", action="store_true",
                    help="overload.established_first on vs off in one run (--overload --spoofed --udp)")
    o = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.flood needs root (network namespaces)", file=sys.stderr)
        return 2
    if o.overload and o.established_first:
        if not (o.spoofed and o.udp):
            ap.error("--established-first is measured with --spoofed --udp (a UDP flood from random sources)")
        print(f"established_first: hping3 --udp --rand-source --flood, {o.seconds} s, an inspected TCP connection "
              "exchanging every 50 ms, failure_mode closed; the switch on, then off")
        established_first(o.seconds)
        return 0
    if o.overload:
        print(f"overload: hping3 --flood from {'random sources' if o.spoofed else 'one source'}, "
              f"{'synproxy on port 80' if o.synproxy else f'new_flows_per_source {o.per_source}'}, {o.seconds} s")
        overload(o.per_source, o.seconds, o.workers or 1, o.max_flows, spoofed=o.spoofed, synproxy=o.synproxy,
                 senders=o.senders)
        return 0
    o.workers = o.workers or 2
    print(f"SYN flood: {o.syns} SYNs at {o.rate}/s, max_flows {o.max_flows}, {o.workers} workers")
    run(o.syns, o.rate, o.max_flows, o.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
