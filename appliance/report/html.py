"""The replay report as one self-contained HTML file: inline CSS and SVG, no script, no
fetch of anything (a report is read on machines without network access, and a file that
loads nothing cannot leak that it was opened). Sizes: see collect.py's bounds; the
--explain trace is cut at MAX_TRACE characters."""
import html
import os
import shlex
import time

from .collect import ACTIONS, TOP

MAX_TRACE = 256 * 1024
COLORS = {"pass": "#4c9a2a", "drop": "#c0392b", "reject": "#e67e22", "alerts": "#2c3e50"}

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:72em;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:left;
vertical-align:top}th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
code,pre{font:12px/1.35 ui-monospace,monospace}pre{background:#f7f7f7;padding:.6em;overflow-x:auto}
.figs span{display:inline-block;margin:0 1.5em .5em 0}.figs b{font-size:1.3em}
.blocked{color:#c0392b}.allowed{color:#4c9a2a}.note{color:#666;font-size:.9em}
.key i{display:inline-block;width:.8em;height:.8em;margin:0 .3em 0 1em}
"""


def esc(v):
    return html.escape("" if v is None else str(v), quote=True)


def write_report(path, summary, eve_path=None, pcaps=(), rules=None, trace=None):
    text = render(summary, eve_path, pcaps, rules, trace)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)          # a reader never sees half a report


def render(s, eve_path=None, pcaps=(), rules=None, trace=None):
    st = s.stats or {}
    dec, ips, det = st.get("decoder") or {}, st.get("ips") or {}, st.get("detect") or {}
    flows_total = (st.get("flow") or {}).get("total", sum(s.flows.values()))
    out = ["<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
           "<meta name=viewport content='width=device-width'>",
           "<title>appliance replay report</title><style>", CSS, "</style></head><body>",
           "<h1>Replay report</h1>",
           f"<p class=note>captures: {esc(', '.join(map(str, pcaps)))}<br>rules: {esc(rules)}<br>"
           f"EVE file: {esc(eve_path or '(none: run with --eve FILE to keep the events)')}<br>"
           f"written {esc(time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime()))}</p>",
           "<div class=figs>"]
    figs = (("packets", dec.get("pkts", 0)), ("flows", flows_total), ("alerts", det.get("alert", s.alerts_total)),
            ("passed packets", ips.get("accepted", 0)), ("dropped packets", ips.get("blocked", 0)),
            ("rejected packets", ips.get("rejected", 0)), ("anomalies", sum(s.anomalies.counts.values())))
    for name, n in figs:
        out.append(f"<span>{esc(name)}: <b id='fig-{esc(name.replace(' ', '-'))}'>{esc(n)}</b></span>")
    out.append("</div>")
    out.append("<h2>Verdicts over time</h2>")
    out.append(_chart(s))
    out.append("<h2>Flows by verdict</h2>" + _table(("verdict", "flows"), [(a, s.flows[a]) for a in ACTIONS]))
    out.append("<h2>Top talkers</h2><p class=note>by bytes sent and received in their flows (flow events)"
               + (", approximate below the top" if s.talkers.approximate else "") + "</p>")
    flows_of = s.talker_flows.counts
    out.append(_table(("source", "bytes", "flows"),
                      [(ip, n, flows_of.get(ip, "?")) for ip, n in s.talkers.top()]))
    out.append("<h2>Top servers</h2>" + _table(("destination", "flows"), s.servers.top()))
    out.append("<h2>Top rules</h2><p class=note>alerts per rule</p>")
    out.append(_table(("sid", "rule", "alerts", "action"),
                      [(sid, msg, n, s.rule_action.get(sid, "")) for (sid, msg), n in s.rules.top()],
                      row_id="rule"))
    if s.deciders.counts:
        out.append("<p class=note>flows decided per verdict rule (flow events' verdict_rule)</p>")
        out.append(_table(("rule id", "verdict", "flows"), [(k[0], k[1], n) for k, n in s.deciders.top()]))
    out.append(_alerts(s, eve_path))
    out.append("<h2>Anomalies</h2>")
    out.append(_table(("event", "count"), s.anomalies.top(50)))
    if s.anomaly_samples:
        out.append("<p class=note>first anomalies</p>" + _table(
            ("time", "event", "layer", "flow_id", "packet", "src", "dst"),
            [(a["timestamp"], a["event"], a["layer"], a["flow_id"], a["pcap_cnt"], _ep(a, "src"), _ep(a, "dest"))
             for a in s.anomaly_samples]))
    if trace is not None:
        cut = trace if len(trace) <= MAX_TRACE else trace[:MAX_TRACE] + "\n... trace cut at 256 KiB (stdout has it all)\n"
        out.append("<h2 id=explain>Why was this flow passed or dropped? (--explain)</h2><pre>" + esc(cut) + "</pre>")
    out.append(f"<p class=note>bounds: {len(s.verdicts_time.series())} time buckets (at most 120), top {TOP} "
               "talkers/servers/rules, the first 200 alerts and 50 anomalies listed; all are counted. "
               f"{s.events} events read.</p>")
    out.append("</body></html>\n")
    return "\n".join(out)


def _ep(row, side):
    ip, port = row.get(f"{side}_ip"), row.get(f"{side}_port")
    if ip is None:
        return ""
    ip = f"[{ip}]" if ":" in str(ip) else ip
    return f"{ip}:{port}" if port is not None else str(ip)


def _table(head, rows, row_id=None):
    if not rows:
        return "<p class=note>none</p>"
    out = ["<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>"]
    for r in rows:
        attr = f" id='{row_id}-{esc(r[0])}'" if row_id else ""
        out.append(f"<tr{attr}>" + "".join(
            f"<td class=n>{esc(v)}</td>" if isinstance(v, int) else f"<td>{esc(v)}</td>" for v in r) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _alerts(s, eve_path):
    eve = shlex.quote(eve_path) if eve_path else "eve.json"
    out = [f"<h2>Alerts</h2><p class=note>{s.alerts_total} alert events"
           + (f", the first {len(s.alerts)} listed" if s.alerts_total > len(s.alerts) else "")
           + f". To see an alert's flow in the EVE file: <code>jq -c 'select(.flow_id == FLOW_ID)' {esc(eve)}</code>"
           f" (or <code>grep -F '\"flow_id\":FLOW_ID,' {esc(eve)}</code>); <code>appliance replay ... --explain "
           "FLOW_ID</code> says why it was passed or dropped.</p>"]
    if not s.alerts:
        return out[0] + "<p class=note>none</p>"
    out.append("<table><tr><th>time</th><th>sid</th><th>signature</th><th>action</th><th>name</th>"
               "<th>src</th><th>dst</th><th>packet</th><th>flow_id / find it</th></tr>")
    for a in s.alerts:
        fid = a["flow_id"]
        find = (f"<code>{esc(fid)}</code><br><code>jq -c 'select(.flow_id == {esc(fid)})' {esc(eve)}</code>"
                if fid is not None else "(no flow)")
        name = f"{esc(a['name_kind'])}: {esc(a['name'])}" if a["name"] else ""
        out.append(f"<tr class=alert><td>{esc(a['timestamp'])}</td><td class=n>{esc(a['sid'])}</td>"
                   f"<td>{esc(a['signature'])}</td><td class={esc(a['action'])}>{esc(a['action'])}</td>"
                   f"<td>{name}</td><td>{esc(_ep(a, 'src'))}</td><td>{esc(_ep(a, 'dest'))}</td>"
                   f"<td class=n>{esc(a['pcap_cnt'])}</td><td>{find}</td></tr>")
    out.append("</table>")
    return "\n".join(out)


def _chart(s, w=900, h=220, pad=40):
    """Flows started per time bucket, stacked by verdict, and alerts as a line: inline SVG."""
    series = s.verdicts_time.series()
    if not series:
        return "<p class=note>no flow or alert events</p>"
    width = s.verdicts_time.width
    top = max(max(sum(c[:len(ACTIONS)]) for _, c in series), max(c[len(ACTIONS)] for _, c in series), 1)
    n = len(series)
    bw = (w - 2 * pad) / n
    y = lambda v: h - pad - (h - 2 * pad) * v / top   # noqa: E731
    out = [f"<svg id=verdict-chart width='{w}' height='{h}' "
           f"viewBox='0 0 {w} {h}' role=img aria-label='flows started per {_span(width)}, by verdict; alerts'>",
           f"<line x1='{pad}' y1='{h - pad}' x2='{w - pad}' y2='{h - pad}' stroke='#999'/>",
           f"<line x1='{pad}' y1='{pad}' x2='{pad}' y2='{h - pad}' stroke='#999'/>",
           f"<text x='{pad - 4}' y='{pad + 4}' text-anchor=end font-size=11>{top}</text>",
           f"<text x='{pad - 4}' y='{h - pad}' text-anchor=end font-size=11>0</text>"]
    points = []
    for k, (t, counts) in enumerate(series):
        x = pad + k * bw
        base = 0
        for a, action in enumerate(ACTIONS):
            v = counts[a]
            if v:
                out.append(f"<rect x='{x:.1f}' y='{y(base + v):.1f}' width='{max(bw - 1, 0.5):.1f}' "
                           f"height='{y(base) - y(base + v):.1f}' fill='{COLORS[action]}'>"
                           f"<title>{esc(time.strftime('%H:%M:%S', time.gmtime(t)))}: {v} {action}</title></rect>")
            base += v
        points.append(f"{x + bw / 2:.1f},{y(counts[len(ACTIONS)]):.1f}")
    if any(c[len(ACTIONS)] for _, c in series):
        out.append(f"<polyline points='{' '.join(points)}' fill=none stroke='{COLORS['alerts']}' stroke-width=1.5/>")
    t0, t1 = series[0][0], series[-1][0] + width
    out.append(f"<text x='{pad}' y='{h - pad + 16}' font-size=11>{esc(_clock(t0))}</text>")
    out.append(f"<text x='{w - pad}' y='{h - pad + 16}' text-anchor=end font-size=11>{esc(_clock(t1))}</text>")
    out.append("</svg>")
    key = "".join(f"<i style='background:{COLORS[a]}'></i>{a}" for a in ACTIONS)
    out.append(f"<p class='note key'>flows started per {_span(width)} by verdict:{key}"
               f"<i style='background:{COLORS['alerts']};height:2px'></i>alerts</p>")
    return "\n".join(out)


def _clock(t):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}"


def _span(width):
    return f"{width * 1000:.3g} ms" if width < 1 else f"{width:.4g} s"
