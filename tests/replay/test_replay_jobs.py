"""`appliance replay --jobs N`: files replayed on their own over N processes, the EVE output
byte-identical to replaying them one after the other (events in file order), whatever N
and whichever file finishes first."""
import json

from replaykit import Capture, TcpConn, cli, dns_query, ip_of, l2, UDP, Raw

RULES = """\
default_action: pass
rules:
  - {id: 1, action: alert, proto: tcp, http_host: watched.example, msg: watched}
  - {id: 2, action: drop, proto: tcp, dst_port: 2323}
  - {id: 3, action: alert, proto: udp, dns_query: "*.watched.example", msg: watched dns}
"""


def _capture(i, flows):
    """`flows` HTTP connections (every other one to the watched host), a blocked port, DNS."""
    cap = Capture(t0=1_700_000_000.0 + i * 1000)
    for k in range(flows):
        c = TcpConn(cap, f"10.{i}.{k // 250}.{k % 250 + 1}", 40000 + k, "192.0.2.80", 80)
        c.handshake()
        host = b"watched.example" if k % 2 else b"other.example"
        c.send(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
        c.recv(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        c.close()
    TcpConn(cap, f"10.{i}.9.9", 1234, "192.0.2.23", 2323).handshake()
    cap.add(l2(ip_of(f"10.{i}.9.8", "192.0.2.53") / UDP(sport=5353, dport=53) /
               Raw(dns_query([f"h{i}.watched.example"]))))
    return cap


def _files(tmp_path):
    # the first file is the largest: with several jobs, later files finish before it
    sizes = [300, 5, 40, 1, 120, 7]
    return [_capture(i, n).write(tmp_path / f"c{i}.pcap") for i, n in enumerate(sizes)]


def test_jobs_output_is_the_sequential_runs_concatenated_whatever_n(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    files = _files(tmp_path)
    sequential = b""
    for k, f in enumerate(files):
        r = cli("replay", f, "--rules", rules, "--eve", tmp_path / f"one{k}.json", "--quiet")
        assert r.returncode == 0, r.stderr
        sequential += (tmp_path / f"one{k}.json").read_bytes()
    kinds = {json.loads(line)["event_type"] for line in sequential.splitlines()}
    assert {"alert", "flow", "dns", "http", "stats"} <= kinds, kinds   # something to compare
    for n in (1, 3, 8):
        out = tmp_path / f"jobs{n}.json"
        r = cli("replay", *files, "--rules", rules, "--eve", out, "--jobs", n)
        assert r.returncode == 0, r.stderr
        assert out.read_bytes() == sequential, n
    stdout = cli("replay", *files, "--rules", rules, "--eve", "-", "--jobs", 2, "--quiet")
    assert stdout.stdout.encode() == sequential


def test_jobs_summary_sums_the_files_and_a_bad_file_is_an_error_in_its_place(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    files = _files(tmp_path)[:3]
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a capture at all")
    whole = cli("replay", *files, "--rules", rules)
    jobs = cli("replay", files[0], bad, *files[1:], "--rules", rules, "--jobs", 2, "--eve", tmp_path / "e.json")
    assert jobs.returncode == 2 and "bad.pcap" in jobs.stderr, jobs.stderr
    # one stream or one run per file: the same packets, and here the same verdicts (no flow crosses files)
    for key in ("packets:", "verdicts:"):
        line = next(x for x in whole.stderr.splitlines() if x.startswith(key))
        assert line in jobs.stderr.splitlines(), (line, jobs.stderr)
    stats = [json.loads(x) for x in (tmp_path / "e.json").read_text().splitlines()
             if json.loads(x)["event_type"] == "stats"]
    assert len(stats) == 4                     # one per file run, the unreadable one included


def test_jobs_refuses_what_describes_one_run(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    f = _files(tmp_path)[1]
    for extra, words in ((["--jobs", "0"], "--jobs must be at least 1"),
                         (["--jobs", "2", "--report", tmp_path / "r.html"], "--jobs cannot be combined with --report"),
                         (["--jobs", "2", "--explain", "10.0.0.1"], "--jobs cannot be combined with --explain"),
                         (["--jobs", "2", "--pcap-log", tmp_path], "--jobs cannot be combined with --pcap-log")):
        r = cli("replay", f, "--rules", rules, *extra)
        assert r.returncode == 2 and words in r.stderr, r.stderr
