"""`appliance status` and `appliance flows`: read the running appliance's control server
(address from --control, else control.listen in --config) and print a summary."""
import argparse
import json
import sys
import time
import urllib.error
import urllib.request

DEFAULT_CONFIG = "/etc/appliance/appliance.yaml"
PROTO = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6"}


def _address(a) -> str:
    """host:port of the control server, from --control or the config file."""
    if a.control:
        from appliance.config import parse_listen
        hp = parse_listen(a.control)
        if hp is None:
            raise SystemExit(f"--control: {a.control!r} is not ADDRESS:PORT")
        host, port = hp
    else:
        from appliance.config import ConfigError, load_config
        try:
            cfg = load_config(a.config)
        except ConfigError as e:
            raise SystemExit("\n".join(e.problems))
        if cfg.control is None:
            raise SystemExit(f"{a.config}: no control section: the control server is off "
                             "(add `control: {listen: 127.0.0.1:9900}`), or pass --control ADDRESS:PORT")
        host, port = cfg.control.host, cfg.control.port
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def fetch(address, path, timeout=10):
    try:
        with urllib.request.urlopen(f"http://{address}{path}", timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read() or b"{}")
    except (urllib.error.URLError, OSError) as e:
        raise SystemExit(f"appliance: the control server at {address} does not answer ({e}); "
                         "is `appliance run` running with a control section?")


def _parser(prog, flows=False):
    ap = argparse.ArgumentParser(prog=prog)
    ap.add_argument("--config", default=DEFAULT_CONFIG, help=f"appliance.yaml (control.listen); default {DEFAULT_CONFIG}")
    ap.add_argument("--control", help="the control server's ADDRESS:PORT (instead of the config's)")
    ap.add_argument("--top", type=int, default=20 if flows else 5, help="rows per table")
    ap.add_argument("--json", action="store_true", help="print the server's JSON as it is")
    return ap


def _rate(n):
    for unit in ("", "k", "M", "G"):
        if abs(n) < 1000:
            return f"{n:.1f}{unit}" if unit else f"{n:.0f}"
        n /= 1000
    return f"{n:.1f}T"


def _duration(s):
    s = int(s)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{d}d " if d else "") + f"{h:02d}:{m:02d}:{s:02d}"


def main_status(args) -> int:
    a = _parser("appliance status").parse_args(args)
    if not 1 <= a.top <= 1000:
        raise SystemExit("--top must be from 1 to 1000")
    address = _address(a)
    st = fetch(address, f"/status?top={a.top}")
    ready = fetch(address, "/readyz")
    if a.json:
        print(json.dumps({"status": st, "ready": ready}, indent=1))
        return 0 if ready.get("ready") else 1
    print_status(st, ready)
    return 0 if ready.get("ready") else 1


def print_status(st, ready, out=sys.stdout):
    m, r = st["mode"], st["rules"]
    p = lambda *x: print(*x, file=out)      # noqa: E731
    state = "ready" if ready.get("ready") else "NOT READY (" + ", ".join(ready.get("failed", [])) + ")"
    p(f"appliance: {state}; up {_duration(st['uptime'])}")
    p(f"mode:      {m.get('mode', 'enforce')}"
      + (f" (monitor: {', '.join(g for g, v in m['rules_mode'].items() if v == 'monitor')})"
         if m.get("rules_mode") else "")
      + (" -- MONITOR: drop/reject rules only alert (would_drop/would_reject)" if m.get("mode") == "monitor" else ""))
    p(f"           inline, failure_mode {m['failure_mode']}, offload {'on' if m['offload'] else 'off'}, "
      f"{m['workers']} worker(s) on queue(s) {m['queues'][0]}-{m['queues'][-1]}, {m['outside']} <-> {m['inside']}")
    p(f"rules:     {r['rules']} rule(s) from {r['path']} (version {r['hash']}, default {r['default_action']}, "
      f"loaded {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(r['loaded']))})")
    lr = st.get("last_reload")
    if lr:
        p(f"reload:    last {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(lr['time']))}: {lr['result']}"
          f" ({lr['message'].splitlines()[0] if lr['message'] else ''}); "
          f"{st['reloads']['ok']} ok, {st['reloads']['refused']} refused")
    else:
        p("reload:    none since start")
    for name, check in ready.get("checks", {}).items():
        if not check["ok"]:
            p(f"  not ready: {name}: {'; '.join(check['problems'])}")
    p(f"\n{'QUEUE':<6}{'PID':<8}{'PKT/S':>8}{'BIT/S':>9}{'PACKETS':>10}{'PASS':>9}{'DROP':>8}{'REJECT':>8}"
      f"{'OFFLOAD':>9}{'FLOWS':>7}{'KDROP':>7}{'ERR':>5}")
    for w in st["workers"]:
        v = w.get("verdicts", {})
        if "packets" not in w:
            p(f"{w['queue']:<6}{w['pid'] or '-':<8}  {'alive, no report yet' if w['alive'] else 'DEAD'}")
            continue
        p(f"{w['queue']:<6}{w['pid']:<8}{_rate(w['packets_per_second']):>8}{_rate(w['bytes_per_second'] * 8):>9}"
          f"{w['packets']:>10}{v.get('pass', 0):>9}{v.get('drop', 0):>8}{v.get('reject', 0):>8}{w['offloaded']:>9}"
          f"{w['flows_active']:>7}{w['kernel_dropped'] + w['kernel_user_dropped']:>7}"
          f"{w['errors'] + w['internal_errors']:>5}")
    d = st["drops"]
    p(f"\ndrops:     {d['verdict_drop']} by verdict, {d['verdict_reject']} rejected, kernel queue "
      f"{d['kernel_queue_dropped']} full + {d['kernel_user_dropped']} unread; restarts {st['worker_restarts']}")
    p(f"flows:     {st['flows_active']} active")
    if st["top_talkers"]:
        p("top talkers (bytes in the flow table):")
        for t in st["top_talkers"]:
            p(f"  {t['src']:<40}{t['bytes']:>12} B{t['pkts']:>9} pkts{t['flows']:>7} flows")
    if st["top_rules"]:
        p("top rules (alerts):")
        for r in st["top_rules"]:
            p(f"  {r['sid']:<10}{r['alerts']:>9}  {r['msg']}")


def main_flows(args) -> int:
    a = _parser("appliance flows", flows=True).parse_args(args)
    if not 1 <= a.top <= 1000:
        raise SystemExit("--top must be from 1 to 1000")
    fl = fetch(_address(a), f"/flows?top={a.top}")
    if a.json:
        print(json.dumps(fl, indent=1))
        return 0
    print_flows(fl)
    return 0


def print_flows(fl, out=sys.stdout):
    p = lambda *x: print(*x, file=out)      # noqa: E731
    missing = sorted(set(fl["queues"]) - set(fl["answered"]))
    p(f"{fl['active']} flow(s) in the table" + (f"; queue(s) {missing} did not answer" if missing else "")
      + f"; the {len(fl['flows'])} largest by bytes:")
    p(f"{'Q':<3}{'PROTO':<7}{'SOURCE':<42}{'DESTINATION':<42}{'STATE':<12}{'VERDICT':<13}{'OFFLOAD':<8}"
      f"{'APP':<6}{'PKTS':>7}{'BYTES':>10}{'AGE':>7}")
    for f in fl["flows"]:
        src = f"[{f['src']}]:{f['sport']}" if ":" in f["src"] else f"{f['src']}:{f['sport']}"
        dst = f"[{f['dst']}]:{f['dport']}" if ":" in f["dst"] else f"{f['dst']}:{f['dport']}"
        p(f"{f['queue']:<3}{PROTO.get(f['proto'], str(f['proto'])):<7}{src:<42}{dst:<42}{f['state']:<12}"
          f"{f['verdict']:<13}{'yes' if f['offloaded'] else 'no':<8}{f['app_proto'] or '-':<6}{f['pkts']:>7}"
          f"{f['bytes']:>10}{f['age']:>7.0f}")
