"""`appliance replay --report` (a self-contained, bounded HTML report built from the run's
EVE events) and `--explain FLOW` (the decision trace of one flow, from the real run)."""
import json
from html import unescape
import re
import shutil
import subprocess

import pytest
from scapy.all import IP, UDP, Raw

from appliance.output.eve import timestamp
from appliance.report.collect import KEEP, MAX_BUCKETS, Summary, parse_ts
from replaykit import CORPUS, Capture, TcpConn, cli, client_hello, l2, tls_next_flight, tls_records

RULES = """
default_action: drop
rules:
  - {id: 10, action: pass, msg: "allow good", tls_sni: good.example.com}
  - {id: 20, action: alert, msg: "evil sni", tls_sni: evil.example.net}
  - {id: 30, action: pass, msg: "dns", proto: udp, dst_port: 53}
"""


def two_tls_flows():
    """10.0.0.1 -> good.example.com (passed by rule 10), 10.0.0.2 -> evil.example.net (alert
    20, dropped by the default). Returns (capture, packet numbers)."""
    cap = Capture()
    good = TcpConn(cap, "10.0.0.1", 41000, "198.51.100.7", 443)
    good.handshake()
    hello = good.send(tls_records(client_hello("good.example.com")))
    nxt = tls_next_flight(good)
    good.close()
    evil = TcpConn(cap, "10.0.0.2", 41001, "198.51.100.8", 443)
    evil.handshake()
    evil_hello = evil.send(tls_records(client_hello("evil.example.net")))
    return cap, {"hello": hello, "next": nxt, "evil_hello": evil_hello}


def replay_cli(tmp_path, cap, rules, *extra, name="r"):
    pcap = cap.write(tmp_path / f"{name}.pcap")
    rf = tmp_path / f"{name}.yaml"
    rf.write_text(rules)
    eve = tmp_path / f"{name}-eve.json"
    p = cli("replay", pcap, "--rules", rf, "--eve", eve, "--quiet", *extra)
    events = [json.loads(x) for x in eve.read_text().splitlines()] if eve.exists() else []
    return p, events


# -- --report ---------------------------------------------------------------------

def test_report_shows_the_runs_figures_and_how_to_find_each_alerts_flow(tmp_path):
    cap, _ = two_tls_flows()
    report = tmp_path / "report.html"
    p, events = replay_cli(tmp_path, cap, RULES, "--report", report)
    assert p.returncode == 0, p.stderr
    html = report.read_text()
    alerts = [e for e in events if e["event_type"] == "alert"]
    assert len(alerts) == 1
    fid = alerts[0]["flow_id"]
    assert "id='fig-alerts'>1<" in html
    assert "id='fig-flows'>2<" in html
    assert re.search(r"<tr id='rule-20'><td class=n>20</td><td>evil sni</td><td class=n>1</td>", html)
    assert "sni: evil.example.net" in html                    # the alert's name
    eve = str(tmp_path / "r-eve.json")
    assert f"jq -c 'select(.flow_id == {fid})' {eve}" in unescape(html)
    # the line the report gives finds that flow's events in the EVE file
    found = [e for e in events if e.get("flow_id") == fid]
    assert {e["event_type"] for e in found} >= {"alert", "flow", "tls"}
    assert "<svg id=verdict-chart" in html and "<rect" in html


def test_report_loads_nothing_from_anywhere(tmp_path):
    cap, _ = two_tls_flows()
    report = tmp_path / "report.html"
    p, _ = replay_cli(tmp_path, cap, RULES, "--report", report, "--explain", "10.0.0.2")
    assert p.returncode == 0, p.stderr
    html = report.read_text()
    assert not re.search(r"""(src|href|xlink:href|action)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert not re.search(r"https?://", html)
    assert "<script" not in html.lower() and "@import" not in html and "url(" not in html
    assert "<link" not in html.lower()


def test_report_without_eve_file_and_with_eve_on_stdout(tmp_path):
    cap, _ = two_tls_flows()
    pcap = cap.write(tmp_path / "a.pcap")
    rf = tmp_path / "r.yaml"
    rf.write_text(RULES)
    for eve in ([], ["--eve", "-"]):
        report = tmp_path / f"rep{len(eve)}.html"
        p = cli("replay", pcap, "--rules", rf, "--quiet", "--report", report, *eve)
        assert p.returncode == 0, p.stderr
        html = report.read_text()
        assert "id='fig-alerts'>1<" in html
        if eve:                       # the EVE stream is untouched by the report
            assert sum(1 for line in p.stdout.splitlines() if '"event_type":"alert"' in line) == 1


def test_report_is_bounded_on_a_large_capture(tmp_path):
    """Thousands of flows from thousands of sources over hours, every one alerting: the
    report lists the top N, the first alerts, a fixed number of time buckets."""
    def capture(n):
        cap = Capture()
        for i in range(n):
            src = f"10.{(i >> 8) & 255}.{i & 255}.1"
            cap.add(l2(IP(src=src, dst="198.51.100.1") / UDP(sport=1024 + i % 60000, dport=9999) / Raw(b"x")),
                    dt=5.0)
        return cap
    rules = """
default_action: pass
rules:
  - {id: 7, action: alert, msg: "udp 9999", proto: udp, dst_port: 9999}
"""
    sizes = {}
    for n in (300, 3000):
        report = tmp_path / f"big{n}.html"
        p, events = replay_cli(tmp_path, capture(n), rules, "--report", report, name=f"big{n}")
        assert p.returncode == 0, p.stderr
        assert sum(e["event_type"] == "alert" for e in events) == n
        html = report.read_text()
        assert f"id='fig-alerts'>{n}<" in html                # all counted ...
        assert html.count("<tr class=alert>") == 200          # ... the first 200 listed
        assert html.count("<rect") <= MAX_BUCKETS
        sizes[n] = len(html)
    # ten times the flows: the same report size, give or take the digits of the figures
    assert sizes[3000] < sizes[300] * 1.1, sizes
    assert sizes[3000] < 200_000, sizes


def test_summary_memory_is_bounded():
    """A million-flow capture's events: the summary keeps at most 2*KEEP talkers, MAX_BUCKETS
    time buckets, the first alerts (all counted)."""
    s = Summary()
    n = 5 * KEEP
    for i in range(n):
        ts = f"2023-11-14T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}.000000+0000"
        s.add({"event_type": "flow", "timestamp": ts, "src_ip": f"10.0.{i >> 8 & 255}.{i & 255}",
               "dest_ip": f"192.0.2.{i % 250}", "dest_port": i % 65535, "proto": "UDP", "flow_id": i,
               "flow": {"action": "pass", "start": ts, "bytes_toserver": 1 + (i == 7) * 10**9}})
        s.add({"event_type": "alert", "timestamp": ts, "flow_id": i,
               "alert": {"signature_id": i, "signature": f"r{i}", "action": "allowed"}})
    assert len(s.talkers.counts) <= 2 * KEEP and len(s.rules.counts) <= 2 * KEEP
    assert len(s.servers.counts) <= 2 * KEEP
    assert s.talkers.top(1)[0][0] == "10.0.0.7"              # a heavy hitter survives pruning
    assert len(s.verdicts_time.buckets) <= MAX_BUCKETS
    assert sum(c[0] for _, c in s.verdicts_time.series()) == n   # merged buckets lose no flow
    assert len(s.alerts) == 200 and s.alerts_total == n


def test_report_reads_eve_timestamps_as_datetime_does():
    from datetime import datetime
    for t in (0, 1.5, 1_700_000_000.000001, 1_234_567_890.123456, 253_402_300_799.0):
        text = timestamp(t)
        assert abs(parse_ts(text) - datetime.fromisoformat(text).timestamp()) < 1e-6, text
    assert parse_ts("2023-11-14T22:13:20+01:00") == datetime.fromisoformat("2023-11-14T22:13:20+01:00").timestamp()
    assert parse_ts("garbage") is None and parse_ts(None) is None and parse_ts("") is None


# -- --explain --------------------------------------------------------------------

def test_explain_pending_name_deciding_rule_and_offload_point(tmp_path):
    cap, at = two_tls_flows()
    rules = RULES.replace('  - {id: 20, action: alert, msg: "evil sni", tls_sni: evil.example.net}\n', "")
    p, _ = replay_cli(tmp_path, cap, rules, "--explain", "10.0.0.1:41000-198.51.100.7:443/tcp")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert out.startswith("flow ") and "10.0.0.1:41000 -> 198.51.100.7:443" in out
    first = out.split("  pkt 2 ")[0]
    assert "pkt 1  -> S" in first
    assert "[10] pass 'allow good'" in first and "pending: tls_sni not yet seen" in first
    hello = out.split(f"  pkt {at['hello']} ")[1].split("  pkt ")[0]
    assert "MATCH: matched: tls_sni 'good.example.com'" in hello
    assert "DECIDED here by [10] pass 'allow good'" in hello
    assert "FINAL" not in hello                               # a second ClientHello may still come
    nxt = out.split(f"  pkt {at['next']} ")[1].split("  pkt ")[0]
    assert "FINAL: offloaded" in nxt
    assert (f"summary: pass by rule [10] 'allow good' at packet {at['hello']}; offloaded at packet "
            f"{at['next']}; 0 alert(s)") in out
    assert "fast path: pass" in out.split(f"  pkt {at['next']} ")[1]   # the FINs after it


def test_explain_default_action_alert_and_a_name_that_does_not_fit(tmp_path):
    cap, at = two_tls_flows()
    p, events = replay_cli(tmp_path, cap, RULES, "--explain=-198.51.100.8:443")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "no: tls_sni is 'evil.example.net': does not fit 'good.example.com'" in out
    assert "ALERT [20] alert 'evil sni'" in out
    assert (f"summary: drop by default_action at packet {at['evil_hello']}; offloaded at packet "
            f"{at['evil_hello']}; 1 alert(s): [20]@{at['evil_hello']}") in out
    # by flow_id, the same trace
    fid = next(e["flow_id"] for e in events if e["event_type"] == "alert")
    p2, _ = replay_cli(tmp_path, cap, RULES, "--explain", str(fid), name="byid")
    assert p2.stdout.split("\n", 1)[1].replace("byid.yaml", "r.yaml") == out.split("\n", 1)[1]
    assert p2.stdout.split("  (")[0] == out.split("  (")[0]           # flow id and 5-tuple


def test_explain_content_pending_within_depth_then_past_it(tmp_path):
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 42000, "203.0.113.5", 8080)
    c.handshake()
    c.send(b"hello")
    c.send(b"world")
    rules = """
default_action: pass
rules:
  - {id: 5, action: drop, msg: "needle", proto: tcp, content: "needle"}
  - {id: 6, action: pass, msg: "port 8080", proto: tcp, dst_port: 8080}
"""
    p, _ = replay_cli(tmp_path, cap, rules, "--explain", ":8080", "--depth-packets", "4")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    pk1 = out.split("  pkt 1 ")[1].split("  pkt 2 ")[0]
    assert "[5] drop 'needle'" in pk1 and "pending: packet conditions not met yet (content 'needle')" in pk1
    assert "[6] pass 'port 8080'" in pk1 and "not reached: [5] is pending" in pk1
    pk4 = out.split("  pkt 4 ")[1].split("  pkt 5 ")[0]   # the last packet within the depth of 4
    assert "no: packet conditions not met (content 'needle')" in pk4
    assert "[6] pass 'port 8080'" in pk4 and "MATCH" in pk4 and "DECIDED here by [6]" in pk4
    assert "summary: pass by rule [6] 'port 8080' at packet 4" in out


def test_explain_past_the_depth_while_a_name_is_pending(tmp_path):
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 42002, "203.0.113.5", 80)
    c.handshake()
    c.send(b"GET / HTTP/1.1\r\n")
    c.send(b"Host: www.example.org\r\n")
    done = c.send(b"\r\n")
    rules = """
default_action: drop
rules:
  - {id: 5, action: drop, msg: "needle", proto: tcp, content: "needle"}
  - {id: 6, action: pass, msg: "site", http_host: www.example.org}
"""
    p, _ = replay_cli(tmp_path, cap, rules, "--explain", ":80", "--depth-packets", "4")
    assert p.returncode == 0, p.stderr
    pk5 = p.stdout.split("  pkt 5 ")[1].split("  pkt 6 ")[0]
    assert "no: past the inspection depth: its packet conditions count as not met" in pk5
    assert "pending: http_host not yet seen" in pk5
    assert f"summary: pass by rule [6] 'site' at packet {done}" in p.stdout


def test_explain_flowbit_pending(tmp_path):
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 42001, "203.0.113.5", 8080)
    c.handshake()
    c.send(b"login ok")                  # sets the bit (alert rules run after the decision)
    c.send(b"ok")
    rules = """
default_action: pass
rules:
  - {id: 1, action: alert, msg: "logged in", proto: tcp, content: "login", flowbits: [{set: logged_in}], noalert: true}
  - {id: 2, action: drop, msg: "after login", proto: tcp, flowbits: [{isset: logged_in}], content: "ok"}
"""
    p, _ = replay_cli(tmp_path, cap, rules, "--explain", "10.0.0.1")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "pending: flow state not set yet (content 'ok', flowbits" in out.split("  pkt 2 ")[0]
    assert "decide: pending on rule [2]" in out.split("  pkt 4 ")[1].split("  pkt 5 ")[0]
    assert "flow state now: flowbits set: logged_in" in out.split("  pkt 4 ")[1].split("  pkt 5 ")[0]
    assert "summary: drop by rule [2] 'after login' at packet 5" in out


def test_explain_does_not_change_the_run(tmp_path):
    """The tracing classes give exactly the real decisions: the EVE file is byte-identical."""
    cap, _ = two_tls_flows()
    pcap = cap.write(tmp_path / "a.pcap")
    rf = tmp_path / "r.yaml"
    rf.write_text(RULES)
    plain, traced = tmp_path / "plain.json", tmp_path / "traced.json"
    assert cli("replay", pcap, "--rules", rf, "--eve", plain, "--quiet").returncode == 0
    p = cli("replay", pcap, "--rules", rf, "--eve", traced, "--quiet", "--explain", "10.0.0.2")
    assert p.returncode == 0 and "ALERT [20]" in p.stdout
    assert plain.read_bytes() == traced.read_bytes()


def test_explain_in_the_report_and_bad_filters(tmp_path):
    cap, _ = two_tls_flows()
    report = tmp_path / "rep.html"
    p, _ = replay_cli(tmp_path, cap, RULES, "--explain", "10.0.0.2", "--report", report)
    assert p.returncode == 0, p.stderr
    html = report.read_text()
    assert "Why was this flow passed or dropped?" in html
    assert "summary: drop by default_action at packet" in html
    p, _ = replay_cli(tmp_path, cap, RULES, "--explain", "10.0.0.99")
    assert p.returncode == 0 and "no flow of the capture matches" in p.stdout
    for bad in ("10.0.0.300", ":99999", "/gre", "[::1"):
        p, _ = replay_cli(tmp_path, cap, RULES, "--explain", bad, name="bad")
        assert p.returncode == 2 and "--explain" in p.stderr and "Traceback" not in p.stderr, (bad, p.stderr)


# -- a real capture ---------------------------------------------------------------

TLS_CAPTURE = CORPUS / "suricata-verify/tests/bug-2646-01/input.pcap"


@pytest.mark.skipif(not TLS_CAPTURE.is_file(), reason="shared corpus absent")
def test_corpus_tls_session_report_and_explain(tmp_path):
    rules = tmp_path / "r.yaml"
    rules.write_text("""
default_action: pass
rules:
  - {id: 100, action: alert, msg: "github raw", tls_sni: raw.githubusercontent.com}
  - {id: 101, action: drop, msg: "no github raw", tls_sni: "*.githubusercontent.com"}
""")
    eve, report = tmp_path / "eve.json", tmp_path / "rep.html"
    p = cli("replay", TLS_CAPTURE, "--rules", rules, "--eve", eve, "--report", report, "--quiet",
            "--explain", "/tcp")
    assert p.returncode == 0, p.stderr
    events = [json.loads(x) for x in eve.read_text().splitlines()]
    alerts = [e for e in events if e["event_type"] == "alert"]
    assert {a["alert"]["signature_id"] for a in alerts} == {100, 101}
    html = report.read_text()
    assert f"id='fig-alerts'>{len(alerts)}<" in html
    assert "<tr id='rule-100'>" in html and "sni: raw.githubusercontent.com" in html
    assert str(alerts[0]["flow_id"]) in html
    cnt = next(a["pcap_cnt"] for a in alerts if a["alert"]["signature_id"] == 101)
    assert "DECIDED here by [101] drop 'no github raw'" in p.stdout
    assert f"summary: drop by rule [101] 'no github raw' at packet {cnt}; offloaded at packet {cnt}" in p.stdout


# -- a real browser ---------------------------------------------------------------

CHROMIUM = shutil.which("chromium")


def chromium(url, *args):
    return subprocess.run([CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--enable-logging=stderr",
                           "--v=0", *args, url], capture_output=True, text=True, timeout=120)


def console_errors(stderr):
    return [line for line in stderr.splitlines() if "Uncaught" in line or re.search(r"ERROR:.*console", line, re.I)
            or ":CONSOLE" in line]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium absent (dev/setup.sh installs it)")
def test_report_renders_in_a_headless_browser(tmp_path):
    # the check sees a page's script error (so a silent run below means none)
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><script>undefined_function()</script></body></html>")
    assert any("Uncaught" in line for line in console_errors(chromium(broken.as_uri(), "--dump-dom").stderr))

    cap, _ = two_tls_flows()
    report = tmp_path / "report.html"
    p, events = replay_cli(tmp_path, cap, RULES, "--report", report, "--explain", "10.0.0.2")
    assert p.returncode == 0, p.stderr
    r = chromium(report.as_uri(), "--dump-dom")
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    fid = next(e["flow_id"] for e in events if e["event_type"] == "alert")
    assert re.search(r'id="fig-alerts">1<', dom) and re.search(r'id="fig-flows">2<', dom)
    assert "sni: evil.example.net" in dom and str(fid) in dom and "<rect" in dom
    assert "Why was this flow passed or dropped?" in dom
    assert console_errors(r.stderr) == []
    shot = tmp_path / "shot.png"
    r = chromium(report.as_uri(), f"--screenshot={shot}", "--window-size=1200,1600")
    assert r.returncode == 0 and shot.stat().st_size > 10_000    # a rendered page, not a blank one
    assert console_errors(r.stderr) == []


def test_explain_a_partial_filter_traces_at_most_ten_flows(tmp_path):
    cap = Capture()
    for i in range(13):
        cap.add(l2(IP(src="10.0.0.1", dst="10.0.0.53") / UDP(sport=5000 + i, dport=53) / Raw(b"x")))
    p, _ = replay_cli(tmp_path, cap, RULES, "--explain", ":53/udp")
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("\nflow ") + p.stdout.startswith("flow ") == 10
    assert "... 3 more flows match ':53/udp'" in p.stdout
    assert re.search(r"\[30\] pass 'dns' \(\S+:6\): MATCH", p.stdout)
    assert "[10] pass 'allow good'" in p.stdout and "the flow has no tls_sni (app layer: failed)" in p.stdout
