"""Coverage-guided fuzzing (atheris / libFuzzer) of every stage that reads hostile bytes.

    python3 -m bench.fuzz                          # every target, 60 s each
    python3 -m bench.fuzz --seconds 300 --targets decode,inspector
    python3 -m bench.fuzz --runs 200000            # a number of executions per target instead
    python3 -m bench.fuzz --repro tls crash-1a2b   # one input through one target, with its traceback

Targets (each in its own child process, instrumented with `atheris.instrument_imports`):
  decode     decode_frame over every supported link type (first byte picks it)
  defrag     a sequence of L3 packets -> decode_l3 -> Defragmenter (small limits, so eviction runs)
  stream     a TCP conversation -> decode_l3 -> ClientStream.open/feed, as the Inspector calls them
  dns tls http  the app-layer parsers and the protocol guess (`applayer.detect`)
  inspector  a sequence of frames -> decode_frame -> Inspector.process with each shipped rule file,
             EVE written (to /dev/null); `internal_errors` > 0 is a finding: the per-packet path
             must have no escape at all, even one it swallows
  rules      YAML text -> load_rules; RuleError (file:line problems) is the documented answer,
             any other exception is a finding, and so is a problem line not in FILE:LINE form

Seeds come from ../shared/corpus (pcaps split into frames, conversations and payloads) and
rules/**/*.yaml; a target with no corpus still runs from a few built-in seeds. A crash is
written under --artifacts with the target's name; the run prints executions, seconds and
the result per target, and exits 1 if anything escaped. atheris is a dev dependency
(dev/setup.sh); without it the run says so and exits 0 with every target SKIPPED.
"""
import argparse
import os
import re
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
TARGETS = ("decode", "defrag", "stream", "dns", "tls", "http", "inspector", "rules")
MAX_LEN = {"rules": 4096, "inspector": 8192, "defrag": 8192, "stream": 8192}
SEEDS_PER_FILE = 64            # the SYN flood alone has 37,841 frames; a few show its shape

# Input framing for the multi-packet targets: records of [u16 length][bytes].
_u16 = struct.Struct("!H")


def records(data):
    out, off, n = [], 0, len(data)
    while off + 2 <= n:
        size = _u16.unpack_from(data, off)[0]
        out.append(data[off + 2:off + 2 + size])
        off += 2 + size
    return out


def frame_records(chunks):
    return b"".join(_u16.pack(len(c)) + c for c in chunks)


# ------------------------------------------------------------------ seeds

def _pcaps():
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix in (".pcap", ".pcapng", ".gz"))


def _frames(path, limit=4096):
    """(linktype, frame) of the first `limit` frames of one capture; a corrupt file ends its walk."""
    from appliance.source.pcap import packets
    out = []
    try:
        for _, frame, linktype, _ in packets(path):
            out.append((linktype, bytes(frame)))
            if len(out) >= limit:
                break
    except Exception:              # the corpus holds broken files on purpose
        pass
    return out


def _decoded(path):
    from appliance.decode import decode_frame
    return [decode_frame(f, lt) for lt, f in _frames(path)]


def seeds(target):
    """The seed inputs of one target (bytes each)."""
    from appliance.decode import SUPPORTED_LINKTYPES
    linktypes = sorted(SUPPORTED_LINKTYPES)
    out = []
    if target == "rules":
        return [p.read_bytes() for p in sorted(REPO.glob("rules/**/*.yaml"))]
    for path in _pcaps():
        if target == "decode":
            for lt, f in _frames(path)[:SEEDS_PER_FILE]:
                out.append(bytes([linktypes.index(lt) if lt in linktypes else 255]) + f)
        elif target == "inspector":
            frames = _frames(path)
            if frames:
                lt = frames[0][0]
                idx = linktypes.index(lt) if lt in linktypes else 255
                chunks = [f for _, f in frames[:SEEDS_PER_FILE]]
                out.append(bytes([idx, 0]) + frame_records(chunks))
        elif target == "defrag":
            frags = [p.l3 for p in _decoded(path) if p.frag is not None]
            if frags:
                out.append(frame_records(frags[:SEEDS_PER_FILE]))
        else:
            pkts = _decoded(path)
            if target == "stream":
                for conv in _conversations(pkts).values():
                    out.append(frame_records([p.l3 for p in conv[:32]]))
            else:
                out.extend(_payloads(target, pkts))
    return [s for s in dict.fromkeys(out) if s][:2000]


def _conversations(pkts):
    convs = {}
    for p in pkts:
        if p.proto == 6 and p.src:
            key = tuple(sorted(((p.src, p.sport), (p.dst, p.dport))))
            convs.setdefault(key, []).append(p)
    return convs


def _payloads(target, pkts):
    """Application bytes for a parser: DNS datagrams, and the client streams of TCP
    conversations (concatenated in capture order) for TLS, HTTP and DNS over TCP."""
    out = []
    if target == "dns":
        out += [bytes(p.payload) for p in pkts if p.proto == 17 and 53 in (p.sport, p.dport) and p.payload]
    for conv in _conversations(pkts).values():
        first = conv[0]
        client = b"".join(bytes(p.payload) for p in conv if (p.src, p.sport) == (first.src, first.sport))
        if not client:
            continue
        ports = (first.sport, first.dport)
        if (target == "tls" and client[:1] == b"\x16") or (target == "http" and client[:1].isalpha()) \
                or (target == "dns" and 53 in ports):
            out.append(client[:16384])
    return out


BUILTIN = {   # so each target runs even without ../shared/corpus
    "dns": [bytes.fromhex("123401000001000000000000076578616d706c6503636f6d0000010001")],
    "tls": [bytes.fromhex("16030100310100002d0303") + b"\0" * 32 + bytes.fromhex(
        "000002130101000002000000")],
    "http": [b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n"],
    "decode": [bytes([1]) + bytes.fromhex("45000028000100004006f97c0a0000010a000002")
               + bytes.fromhex("04d20050000000010000000050022000a2ce0000")],
}


# ------------------------------------------------------------------ targets (run in the child)

class Finding(Exception):
    """Something escaped that must not: raised by a target so libFuzzer records the input."""


MERGED_RULES = ("""\
drop tcp any any -> any any (flow:to_server; content:"NEVER"; sid:1;)
pass http any any -> any any (flow:established,to_client; file_data; content:"benign"; sid:2;)
drop http any any -> any any (http.stat_code; content:"403"; sid:3;)
pass http any any -> any any (http.host; content:"a"; http.stat_code; content:"200"; sid:4;)
drop http any any -> any any (file_data; content:"EICAR"; sid:5;)
alert http any any -> any any (file_data; content:"x"; sid:6;)
alert http any any -> any any (http.stat_code; content:"5"; sid:7;)
""", ".rules"), ("""\
rules:
  - {id: 1, action: drop, proto: tcp, flow: [to_server], content: [{value: NEVER}]}
  - {id: 2, action: pass, proto: tcp, flow: [established, to_client], content: [{value: benign, buffer: file_data}]}
  - {id: 3, action: drop, proto: tcp, hold: false, content: [{value: zz}]}
  - {id: 4, action: drop, proto: tcp, content: {value: '403', buffer: http.stat_code}}
  - {id: 5, action: drop, proto: tcp, content: [{value: EICAR, buffer: file_data}]}
  - {id: 6, action: alert, proto: tcp, content: [{value: x, buffer: file_data}]}
""", ".yaml")


def _merged_rules(load_rules):
    """Rule sets on the paths decide() merged by hand: remembered matches, hold: false,
    response-status and file_data rules (the shipped sets have none of these)."""
    out = []
    for text, ext in MERGED_RULES:
        with tempfile.NamedTemporaryFile("w", suffix=ext, delete=False) as f:
            f.write(text)
        try:
            out.append(load_rules(f.name))
        finally:
            os.unlink(f.name)
    return out


def make_target(name):
    """The one-input function of a target; appliance is imported here (instrumented)."""
    if name == "decode":
        from appliance.decode import SUPPORTED_LINKTYPES, decode_frame
        lts = sorted(SUPPORTED_LINKTYPES) + [2, 147]

        def one(data):
            if data:
                decode_frame(data[1:], lts[data[0] % len(lts)])
        return one

    if name == "defrag":
        from appliance.decode import decode_l3
        from appliance.defrag import Defragmenter

        def one(data):
            d = Defragmenter(max_bytes=4096, timeout=2.0, max_datagrams=4)
            for i, l3 in enumerate(records(data)):
                d.feed(decode_l3(l3, ts=i * 0.5))
                if d.held_bytes < 0 or d.held_bytes > d.max_bytes or d.held_datagrams > d.max_datagrams:
                    raise Finding(f"defrag bounds broken: {d.held_bytes} bytes, {d.held_datagrams} datagrams")
            d.expire(1e9)
            if d.held_datagrams or d.held_bytes:
                raise Finding("defrag holds state after expiring everything")
        return one

    if name == "stream":
        from appliance.decode import decode_l3
        from appliance.packet import SYN, ACK, TCP
        from appliance.stream import ClientStream
        limit = 512

        def one(data):
            client, st, isn, found = None, None, None, []
            for l3 in records(data):
                pkt = decode_l3(l3)
                if pkt.proto != TCP or not pkt.src or pkt.l4_off == 0:
                    continue
                if client is None:
                    client = (pkt.src, pkt.sport)
                to_server = (pkt.src, pkt.sport) == client
                if to_server and pkt.tcp_flags & (SYN | ACK) == SYN:
                    isn = pkt.seq              # the flow table's `isn`: the client's latest SYN
                if st is None:
                    st = ClientStream.open(pkt, to_server, isn)
                if st is not None:
                    st.feed(pkt, to_server, limit, found)
                    if len(st.data) > limit:
                        raise Finding(f"stream kept {len(st.data)} bytes over its limit {limit}")
        return one

    if name in ("dns", "tls", "http"):
        from appliance.applayer import body, detect, dns, http, tls
        from appliance.packet import TCP, UDP

        def one(data):
            if name == "dns":
                dns.parse_message(data)
                dns.parse_tcp(data)
                dns.plausible(data)
                dns.sane_header(data)
                detect(data, UDP, 1234, 53)
            elif name == "tls":
                tls.parse_client_hello(data)
                tls.ServerHelloReader().feed(data)          # the server's side, for the tls log
                tls.certificate_names(data)
                detect(data, TCP, 1234, 443)
            else:
                waiting = [http.HttpRequest("GET", "/", "HTTP/1.1", "h", None) for _ in range(2)]
                http.ResponseReader().feed(data, len(data) > 256, waiting)   # responses, for the http log
                waiting = [http.HttpRequest("GET", "/", "HTTP/1.1", "h", None) for _ in range(2)]
                limits = body.Limits(inspect=4096, total=64 << 10)
                reader = http.ResponseReader((limits, body.FlowBudget(limits, body.Pool(limits))))
                reader.feed(data, len(data) > 256, waiting)                  # bodies, for file_data
                if reader.req is not None and reader.req.body is not None:
                    reader.body_end(reader.req)
                http.parse_requests(data)
                detect(data, TCP, 1234, 80)
        return one

    if name == "inspector":
        from appliance.decode import SUPPORTED_LINKTYPES, decode_frame
        from appliance.detect.loader import load_rules
        from appliance.inspector import Inspector, Settings
        from appliance.output.eve import EveWriter
        lts = sorted(SUPPORTED_LINKTYPES)
        rulesets = [load_rules(p) for p in sorted(REPO.glob("rules/**/*.yaml")) if not p.name.endswith(".test.yaml")]
        rulesets += _merged_rules(load_rules)
        eve = EveWriter(os.devnull)

        SETTINGS = Settings(depth_packets=8, depth_bytes=2048, max_flows=16)

        def _unswallowed(rs, frames, lt):
            """The same frames again through the stages process() calls, without its catch-all,
            for the traceback of what it swallowed."""
            insp = Inspector(rs, SETTINGS)
            try:
                for i, frame in enumerate(frames):
                    pkt = decode_frame(frame, lt, ts=1_700_000_000.0 + i * 0.25)
                    insp.tick(pkt.ts)
                    if pkt.frag is not None:
                        pkt = insp.defrag.feed(pkt)
                        if pkt is None:
                            continue
                    insp._process(pkt)
            except Exception:
                return traceback.format_exc()
            return "(not reproduced outside process())"

        def one(data):
            if len(data) < 2:
                return
            rs = rulesets[data[1] % len(rulesets)]
            insp = Inspector(rs, SETTINGS, eve)
            frames = records(data[2:])
            for i, frame in enumerate(frames):
                insp.process(decode_frame(frame, lts[data[0] % len(lts)], ts=1_700_000_000.0 + i * 0.25))
                if insp.counters.internal_errors:
                    raise Finding(f"Inspector.process swallowed an internal error on frame {i}:\n"
                                  + _unswallowed(rs, frames[:i + 1], lts[data[0] % len(lts)]))
            insp.tick(1_700_000_000.0 + 10_000)
            insp.stats_event()
            insp.close()
        return one

    if name == "rules":
        from appliance.detect.loader import load_rules
        from appliance.detect.rule import RuleError
        path = Path(tempfile.gettempdir()) / f"fuzz-rules-{os.getpid()}.yaml"
        problem = re.compile(re.escape(str(path)) + r":[1-9][0-9]*: .")

        def one(data):
            path.write_bytes(data)
            try:
                load_rules(path)
            except RuleError as e:
                bad = [p for p in e.problems if not problem.match(p)]
                if bad:
                    raise Finding(f"problem not in FILE:LINE form: {bad[0]!r}")
        return one

    raise ValueError(name)


def child(name, fuzzer_args):
    import atheris
    with atheris.instrument_imports(include=["appliance"]):
        one = make_target(name)
    atheris.Setup([sys.argv[0]] + fuzzer_args, one)
    atheris.Fuzz()


# ------------------------------------------------------------------ the parent

def run_target(name, seconds, runs, artifacts, timeout):
    work = Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-"))
    corpus, seed_dir = work / "corpus", work / "seeds"
    corpus.mkdir()
    seed_dir.mkdir()
    found = seeds(name) or BUILTIN.get(name, [b""])
    for i, s in enumerate(found):
        (seed_dir / f"seed-{i:05d}").write_bytes(s)
    artifacts.mkdir(parents=True, exist_ok=True)
    args = [str(corpus), str(seed_dir), f"-max_total_time={seconds}", f"-timeout={timeout}",
            f"-max_len={MAX_LEN.get(name, 4096)}", "-print_final_stats=1", "-rss_limit_mb=4096",
            f"-artifact_prefix={artifacts}/{name}-"]
    if runs:
        args.append(f"-runs={runs}")
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "bench.fuzz", "--child", name, "--", *args],
                       cwd=REPO, capture_output=True, text=True, errors="replace")
    elapsed = time.monotonic() - t0
    log = p.stderr + p.stdout
    (work / "fuzz.log").write_text(log)
    execs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", log)
    if not execs:
        execs = re.findall(r"^#(\d+)\s", log, re.M)
    art = re.findall(r"Test unit written to (\S+)", log)
    if p.returncode == 0:
        result = "ok"
    elif "Timeout" in log or "timeout" in log.lower() and art:
        result = "TIMEOUT"
    elif "out-of-memory" in log:
        result = "OOM"
    else:
        result = "CRASH"
    tb = ""
    if result != "ok":
        m = re.search(r"=== Uncaught Python exception: ===\n(.*?)(?:\n==|\Z)", log, re.S)
        tb = m.group(1).strip() if m else "\n".join(log.strip().splitlines()[-15:])
    return {"target": name, "seeds": len(found), "execs": int(execs[-1]) if execs else 0,
            "seconds": elapsed, "result": result, "artifact": art[-1] if art else "",
            "traceback": tb, "log": str(work / "fuzz.log")}


def repro(name, path):
    one = make_target(name)
    try:
        one(Path(path).read_bytes())
    except Exception:
        traceback.print_exc()
        return 1
    print(f"{name}: {path}: no exception")
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        rest = argv[3:] if len(argv) > 2 and argv[2] == "--" else argv[2:]
        return child(argv[1], rest)
    ap = argparse.ArgumentParser(prog="python3 -m bench.fuzz", description=__doc__.split("\n")[0])
    ap.add_argument("--targets", default=",".join(TARGETS), help=f"comma list of {', '.join(TARGETS)}")
    ap.add_argument("--seconds", type=int, default=60, help="time per target (default 60)")
    ap.add_argument("--runs", type=int, default=0, help="executions per target (stops earlier than --seconds)")
    ap.add_argument("--timeout", type=int, default=10, help="seconds one input may take before it is a finding")
    ap.add_argument("--artifacts", default=str(REPO / "bench" / ".cache" / "fuzz"),
                    help="where crashing inputs are written")
    ap.add_argument("--repro", nargs=2, metavar=("TARGET", "FILE"), help="run one input, print its traceback")
    o = ap.parse_args(argv)
    if o.repro:
        return repro(*o.repro)
    targets = [t.strip() for t in o.targets.split(",") if t.strip()]
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        ap.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    command = "python3 -m bench.fuzz " + " ".join(argv)
    print(f"# {command.strip()}")
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("SKIPPED: atheris is not installed (pip install atheris; dev/setup.sh installs it)")
        for t in targets:
            print(f"{t:10s} SKIPPED")
        return 0
    print(f"# corpus: {CORPUS if CORPUS.is_dir() else 'absent (built-in seeds only)'}")
    print(f"{'target':10s} {'seeds':>6s} {'executions':>11s} {'seconds':>8s} {'exec/s':>7s}  result")
    escaped = []
    total = 0
    for t in targets:
        r = run_target(t, o.seconds, o.runs, Path(o.artifacts), o.timeout)
        total += r["execs"]
        rate = r["execs"] / r["seconds"] if r["seconds"] else 0
        print(f"{t:10s} {r['seeds']:6d} {r['execs']:11,d} {r['seconds']:8.0f} {rate:7.0f}  {r['result']}"
              + (f"  {r['artifact']}" if r["artifact"] else ""), flush=True)
        if r["result"] != "ok":
            escaped.append(r)
    print(f"total executions {total:,d}; " + ("nothing escaped" if not escaped else
                                              f"{len(escaped)} target(s) with findings"))
    for r in escaped:
        print(f"\n--- {r['target']}: {r['result']} (log {r['log']}; "
              f"reproduce: python3 -m bench.fuzz --repro {r['target']} {r['artifact']})")
        print(r["traceback"])
    return 1 if escaped else 0


if __name__ == "__main__":
    sys.exit(main())
