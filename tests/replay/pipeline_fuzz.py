"""Differential fuzzer (review s16): hostile TCP conversations (sequence numbers at the
32-bit edges, retransmissions with other bytes, overlaps, discarded segments, ACKs of
unsent data, RST/FIN/SYN mixes, port reuse) carrying rule literals split across segment
edges, through the whole Inspector, with > 64 rules of every kind; per packet the verdict,
offload, alerts, discard, flow state and receiver numbers, and every EVE event.

    PYTHONPATH=. python3 tests/replay/pipeline_fuzz.py SEED N KIND MODE RELOAD   -> JSON on stdout
Run pure (APPLIANCE_PURE_PYTHON=1) and compiled by tests/replay/test_pipeline_twins.py."""
import json
import os
import random
import struct
import sys
import tempfile
from pathlib import Path

from appliance import compiled
from appliance.decode import LINKTYPE_ETHERNET, decode_frame
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings
from appliance.output.eve import EveList

M = 2 ** 32
EDGES = (0, 1, 2, M - 1, M - 2, M - 3, 2 ** 31 - 1, 2 ** 31, 2 ** 31 + 1)
WORDS = [b"EVIL", b"evil", b"EvIl", b"GET ", b"ab", b"x.example", b"HTTP/1.1", b"zz", b"\x00\xff", b"BODY",
         b"SET", b"USE", b"200", b"attack", b"ATTACK"]
RULE_WORDS = ["EVIL", "evil", "ab", "x.example", "HTTP/1.1", "zz", "|00 ff|", "BODY", "SET", "USE", "200",
              "attack", "GET"]
HOSTS = ["x.example", "example", "evil", "sni.test"]

SURICATA_POOL = [
    'alert tcp any any -> any any (msg:"hdr"; sid:%(sid)s;)',
    'alert ip any any -> any any (msg:"ip hdr"; sid:%(sid)s;)',
    'alert tcp any any -> any 80 (content:"%(c)s"; sid:%(sid)s;)',
    'alert tcp any any -> any any (content:"%(c)s"; nocase; sid:%(sid)s;)',
    'alert tcp any any -> any any (content:"%(c)s"; content:"%(d)s"; sid:%(sid)s;)',
    'alert tcp any any -> any any (content:"%(c)s"; nocase; content:"%(d)s"; nocase; sid:%(sid)s;)',
    'alert tcp any any -> any any (content:"%(c)s"; fast_pattern; content:"%(d)s"; distance:0; sid:%(sid)s;)',
    'alert tcp any any -> any any (content:"%(c)s"; offset:1; depth:12; sid:%(sid)s;)',
    'alert tcp any any -> any any (content:!"%(c)s"; sid:%(sid)s;)',
    'alert tcp any any -> any any (dsize:>10; content:"%(c)s"; sid:%(sid)s;)',
    'alert tcp any any -> any any (flags:S; sid:%(sid)s;)',
    'alert tcp any any -> any any (flags:R; sid:%(sid)s;)',
    'alert tcp any any <> any any (content:"%(c)s"; sid:%(sid)s;)',
    'alert tcp any any -> any any (flow:established,to_server; content:"%(c)s"; sid:%(sid)s;)',
    'alert tcp any any -> any any (flow:to_client; content:"%(c)s"; sid:%(sid)s;)',
    'alert tcp any any -> any any (content:"%(c)s"; flowbits:set,fb%(b)s; flowbits:noalert; sid:%(sid)s;)',
    'alert tcp any any -> any any (flowbits:isset,fb%(b)s; content:"%(d)s"; sid:%(sid)s;)',
    'alert tcp any any -> any any (flow:only_stream; content:"%(c)s"; sid:%(sid)s;)',
    'alert tcp any any -> any any (flow:no_stream; content:"%(c)s"; nocase; sid:%(sid)s;)',
    'alert http any any -> any any (http.host; content:"%(h)s"; sid:%(sid)s;)',
    'alert http any any -> any any (http.uri; content:"%(c)s"; nocase; sid:%(sid)s;)',
    'alert http any any -> any any (http.stat_code; content:"200"; sid:%(sid)s;)',
    'alert http any any -> any any (file_data; content:"%(c)s"; sid:%(sid)s;)',
    'drop tcp any any -> any 8080 (content:"%(c)s"; sid:%(sid)s;)',
    'drop tcp any any -> any any (content:"%(c)s"; nocase; content:"%(d)s"; sid:%(sid)s;)',
    'reject tcp any any -> any 81 (content:"%(c)s"; sid:%(sid)s;)',
    'pass tcp any any -> any 443 (sid:%(sid)s;)',
    'pass tcp any any -> any 81 (content:"%(d)s"; sid:%(sid)s;)',
    'drop http any any -> any any (http.stat_code; content:"404"; sid:%(sid)s;)',
    'alert tcp any any -> any any (content:"%(c)s"; threshold:type limit, track by_src, count 1, seconds 60; sid:%(sid)s;)',
]

YAML_POOL = [
    "  - {id: %(sid)s, action: alert, proto: tcp}",
    "  - {id: %(sid)s, action: alert, proto: tcp, every_packet: true}",
    "  - {id: %(sid)s, action: alert, proto: tcp, content: \"%(c)s\"}",
    "  - {id: %(sid)s, action: alert, proto: tcp, content: {value: \"%(c)s\", nocase: true}}",
    "  - {id: %(sid)s, action: alert, proto: tcp, content: [\"%(c)s\", \"%(d)s\"]}",
    "  - {id: %(sid)s, action: alert, proto: tcp, payload: stream, content: \"%(c)s\"}",
    "  - {id: %(sid)s, action: alert, proto: tcp, payload: both, content: {value: \"%(c)s\", nocase: true}}",
    "  - {id: %(sid)s, action: alert, proto: tcp, flow: to_client, content: \"%(c)s\"}",
    "  - {id: %(sid)s, action: alert, proto: tcp, content: \"%(c)s\", flowbits: [{set: b%(b)s}], noalert: true}",
    "  - {id: %(sid)s, action: alert, proto: tcp, flowbits: [{isset: b%(b)s}], content: \"%(d)s\"}",
    "  - {id: %(sid)s, action: alert, proto: tcp, http_host: \"%(h)s\"}",
    "  - {id: %(sid)s, action: alert, proto: tcp, tcp_flags: \"R+\"}",
    "  - {id: %(sid)s, action: drop, proto: tcp, dst_port: 8080, content: \"%(c)s\"}",
    "  - {id: %(sid)s, action: drop, proto: tcp, dst_port: 8080, content: \"%(c)s\", hold: false}",
    "  - {id: %(sid)s, action: reject, proto: tcp, dst_port: 81, content: {value: \"%(c)s\", nocase: true}}",
    "  - {id: %(sid)s, action: pass, proto: tcp, dst_port: 443}",
    "  - {id: %(sid)s, action: pass, proto: tcp, dst_port: 81, content: \"%(d)s\"}",
    "  - {id: %(sid)s, action: drop, proto: tcp, http_host: \"%(h)s\"}",
    "  - {id: %(sid)s, action: drop, proto: tcp, header: packet, dst_port: 80, content: \"%(c)s\"}",
    "  - {id: %(sid)s, action: pass, proto: tcp, dst_port: 80, http_host: \"%(h)s\", log: true}",
]


def _csum(data):
    if len(data) & 1:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _frame(rng, src, dst, sp, dp, flags, seq, ack, payload, opts=b"", good=True, window=None):
    seg = struct.pack("!HHIIBBHHH", sp, dp, seq % M, ack % M, (5 + len(opts) // 4) << 4, flags,
                      window if window is not None else rng.choice((0, 1, 512, 65535)), 0, 0) + opts + payload
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(seg))
    s = _csum(pseudo + seg) if good else (_csum(pseudo + seg) + 1) & 0xFFFF
    seg = seg[:16] + struct.pack("!H", s) + seg[18:]
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(seg), rng.getrandbits(16), 0, 64, 6, 0, src, dst)
    ip = hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:] + seg
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip


def _opts(rng, tsval):
    o = b""
    if rng.random() < 0.3:
        o += b"\x01\x03\x03" + bytes([rng.choice((0, 7, 14, 15))])
    if rng.random() < 0.3:
        o += b"\x01\x01\x08\x0a" + struct.pack("!II", tsval % M, rng.choice(EDGES))
    return o + b"\x00" * (-len(o) % 4)


def _text(rng):
    return b"".join(rng.choice(WORDS) + rng.choice((b"", b" ", b"\r\n")) for _ in range(rng.randint(1, 6)))


def _request(rng):
    return (b"GET /" + rng.choice(WORDS).replace(b"\x00", b"") + b" HTTP/1.1\r\nHost: "
            + rng.choice([b"x.example", b"evil.example", b"evil", b"sni.test"]) + b"\r\n\r\n")


def _response(rng):
    body = _text(rng)
    return b"HTTP/1.1 " + rng.choice((b"200", b"404")) + b" OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body


def frames(seed, n):
    """Hostile conversations between a few client/server pairs (ports 80, 81, 443, 8080)."""
    rng = random.Random(seed)
    convs = []
    for i in range(rng.randint(4, 12)):
        a = bytes([10, 0, i // 250, 2 + i % 250])
        b = bytes([93, 184, 216, 2 + i % 5])
        convs.append({"a": a, "b": b, "ports": (40000 + i, rng.choice((80, 81, 443, 8080))),
                      "nxt": [rng.choice(EDGES), rng.choice(EDGES)], "ts": [rng.choice(EDGES), rng.choice(EDGES)],
                      "sent": [b"", b""], "stage": 0, "banner": rng.random() < 0.4})
    out = []
    while len(out) < n:
        c = rng.choice(convs)
        cp, sp = c["ports"]
        a, b = c["a"], c["b"]
        if c["stage"] == 0 and rng.random() < 0.85:                  # the handshake (mostly)
            cisn, sisn = c["nxt"]
            o = _opts(rng, c["ts"][0])
            if rng.random() < 0.7:                     # (else behind a SYN proxy: no SYN seen)
                out.append(_frame(rng, a, b, cp, sp, 0x02, cisn, 0, b"", o))
            if rng.random() < 0.9:
                out.append(_frame(rng, b, a, sp, cp, 0x12, sisn, cisn + 1, b"", _opts(rng, c["ts"][1])))
            out.append(_frame(rng, a, b, cp, sp, 0x10, cisn + 1 + rng.choice((0, 0, 0, 77777)),
                              sisn + 1 + rng.choice((0, 0, 0, 12345, -66000)), b""))
            c["nxt"] = [(cisn + 1) % M, (sisn + 1) % M]
            c["stage"] = 1
            if c["banner"]:                            # the server speaks first
                ban = b"220 " + _text(rng) + b"\r\n"
                out.append(_frame(rng, b, a, sp, cp, 0x18, c["nxt"][1], c["nxt"][0], ban))
                c["nxt"][1] = (c["nxt"][1] + len(ban)) % M
            continue
        c["stage"] = 1
        r = rng.random()
        end = 1 if rng.random() < 0.4 else 0
        src, dst, s_p, d_p = (b, a, sp, cp) if end else (a, b, cp, sp)
        seq, ack = c["nxt"][end], c["nxt"][1 - end]
        flags = 0x18
        if end:
            pl = _response(rng) if rng.random() < 0.5 else _text(rng)
        else:
            pl = _request(rng) if sp in (80, 8080) and rng.random() < 0.5 else _text(rng)
        if r < 0.45:                                   # in order, cut anywhere into two segments
            cut = rng.randint(0, len(pl))
            for part in (pl[:cut], pl[cut:]):
                if part:
                    out.append(_frame(rng, src, dst, s_p, d_p, flags, seq, ack, part,
                                      _opts(rng, c["ts"][end]) if rng.random() < 0.3 else b""))
                    seq += len(part)
            c["nxt"][end] = seq % M
            c["sent"][end] = (c["sent"][end] + pl)[-200:]
            c["ts"][end] += rng.choice((1, 5, 0, -3, 2 ** 31))
        elif r < 0.55:                                 # a retransmission overlapping, other bytes
            back = rng.randint(0, min(len(c["sent"][end]), 30))
            alt = bytes(rng.choice(b"EVILevilzab\x00") for _ in range(back + rng.randint(0, 10)))
            out.append(_frame(rng, src, dst, s_p, d_p, flags, seq - back, ack, alt))
            c["nxt"][end] = (seq - back + len(alt)) % M if rng.random() < 0.5 else seq
        elif r < 0.62:                                 # no ACK flag (discarded by the server)
            out.append(_frame(rng, src, dst, s_p, d_p, rng.choice((0x08, 0x00, 0x01)), seq, ack, pl))
        elif r < 0.68:                                 # ACK of unsent data / very old ACK
            bad = ack + rng.choice((1, 1000, 2 ** 31 - 1, 2 ** 31, 2 ** 31 + 1, -70000, -(2 ** 31)))
            out.append(_frame(rng, src, dst, s_p, d_p, flags, seq, bad, pl))
        elif r < 0.72:                                 # far sequence numbers
            out.append(_frame(rng, src, dst, s_p, d_p, flags, seq + rng.choice((2 ** 31, -1, 70000, M - 1)), ack, pl))
        elif r < 0.76:                                 # RST variants
            out.append(_frame(rng, src, dst, s_p, d_p, rng.choice((0x04, 0x14, 0x06, 0x1C)),
                              seq + rng.choice((0, 0, 1, -1, 2 ** 31)), ack, b"" if rng.random() < 0.7 else pl))
            if rng.random() < 0.5:
                c["stage"] = 0
                c["nxt"] = [rng.choice(EDGES), rng.choice(EDGES)]
        elif r < 0.82:                                 # FIN (with data maybe), then its ACK
            out.append(_frame(rng, src, dst, s_p, d_p, 0x11 | (0x08 if pl else 0), seq, ack, pl[:5]))
            c["nxt"][end] = (seq + len(pl[:5]) + 1) % M
            out.append(_frame(rng, dst, src, d_p, s_p, 0x10, ack, c["nxt"][end], b""))
            if rng.random() < 0.3:
                c["stage"] = 0
                c["nxt"] = [rng.choice(EDGES), rng.choice(EDGES)]
        elif r < 0.86:                                 # SYN on established / SYN+data / odd mixes
            out.append(_frame(rng, a, b, cp, sp, rng.choice((0x02, 0x03, 0x06, 0x12, 0x3F, 0x2A)),
                              rng.choice((seq, rng.choice(EDGES))), ack, pl if rng.random() < 0.3 else b""))
        elif r < 0.9:                                  # bad checksum
            out.append(_frame(rng, src, dst, s_p, d_p, flags, seq, ack, pl, good=False))
        elif r < 0.95:                                 # pure ACKs, window edges
            out.append(_frame(rng, src, dst, s_p, d_p, 0x10, seq, ack, b"", _opts(rng, c["ts"][end]),
                              window=rng.choice((0, 65535))))
        else:                                          # a literal cut over 3 tiny segments
            word = rng.choice(WORDS)
            for k in range(len(word)):
                out.append(_frame(rng, src, dst, s_p, d_p, flags, seq + k, ack, word[k:k + 1]))
            c["nxt"][end] = (seq + len(word)) % M
    return out[:n]


SF_POOL = [line for line in YAML_POOL if "http_host" in line or line.endswith("proto: tcp}")]


def _pick(rng, pool, kind):
    if kind == "yaml-sf":                        # few rules, names only: server-first flows held
        return rng.choice(SF_POOL)
    if kind.endswith("-alert"):                  # mostly alert rules: flows stay inspected
        while True:
            line = rng.choice(pool)
            if "alert" in line.split("(")[0] or "action: alert" in line or rng.random() < 0.05:
                return line
    return rng.choice(pool)


def rules_file(rng, tmp, kind, n, tag):
    lines = []
    for sid in range(1, n + 1):
        vals = {"sid": sid, "c": rng.choice(RULE_WORDS), "d": rng.choice(RULE_WORDS), "b": rng.randint(0, 2),
                "h": rng.choice(HOSTS)}
        if kind.startswith("yaml"):
            vals["c"] = vals["c"].replace("|00 ff|", "zz")
            vals["d"] = vals["d"].replace("|00 ff|", "zz")
            lines.append(_pick(rng, YAML_POOL, kind) % vals)
        else:
            lines.append(_pick(rng, SURICATA_POOL, kind) % vals)
    if kind.startswith("yaml"):
        path = Path(tmp) / f"r-{tag}.yaml"
        path.write_text("default_action: %s\nrules:\n" % rng.choice(("pass", "drop")) + "\n".join(lines) + "\n")
    else:
        path = Path(tmp) / f"r-{tag}.rules"
        path.write_text("\n".join(lines) + "\n")
    return path


def _flow_row(flow):
    if flow is None:
        return None
    t = flow.tcp
    rcv = None if t is None else [t.s_nxt, t.s_una, t.s_acked0, t.s_rcv, t.s_wup, t.c_nxt, t.max_window,
                                  t.wscale, t.ts_recent, t.syn_ignored, t.ack_offset]
    return [flow.state, flow.tcp_seen, flow.isn, flow.verdict, bool(flow.final), repr(flow.offloaded),
            flow.monitored, flow.midstream, flow.unoriented, flow.client_awaited,
            sorted(map(list, flow.alerted_rules)) if flow.alerted_rules else None,
            flow.pkts_ts, flow.pkts_tc, flow.bytes_ts, flow.bytes_tc, flow.inspected_bytes, flow.inspected_tc, rcv,
            getattr(flow.verdict_rule, "id", None)]


def run(seed, n, kind, mode, reload, nrules=None, max_flows=None):
    nrules = nrules or int(os.environ.get("FUZZ_RULES", "90"))
    max_flows = max_flows or (6 if seed % 3 == 0 else 64)
    rng = random.Random(seed * 7 + 1)
    # the rules' directory: the same for both builds (EVE names each rule's file and line)
    tmp = Path(os.environ.get("FUZZ_DIR") or tempfile.mkdtemp(prefix="pipeline-fuzz-"))
    tmp.mkdir(parents=True, exist_ok=True)
    path = rules_file(rng, tmp, kind, nrules, "a")
    eve = EveList()
    insp = Inspector(load_rules(path), Settings(max_flows=max_flows, mode=mode, synproxy_ports=frozenset({80, 443, 8080}) if seed % 2 else frozenset(),
                                   **({'verify_checksums': False, 'offload': False, 'depth_packets': 4}
                                      if os.environ.get('FUZZ_LIVE') else {})), eve=eve)
    out = []
    fr = frames(seed, n)
    for i, f in enumerate(fr):
        if reload and i == len(fr) // 2:
            rng2 = random.Random(seed * 7 + 2)
            insp.reload(load_rules(rules_file(rng2, tmp, kind, nrules + rng2.randint(-20, 20), "b")))
        p = decode_frame(f, LINKTYPE_ETHERNET, 1764683000.0 + i * 0.01)
        p.pcap_cnt = i + 1
        v = insp.process(p)
        out.append([i, str(v.action), bool(v.offload), v.would, sorted(int(r.id) for r in v.alerts), p.discard,
                    list(p.anomalies), _flow_row(v.flow)])
    insp.tick(1764683000.0 + n * 0.01 + 10000)
    ev = []
    for e in eve.events:
        try:
            ev.append(json.dumps(e, sort_keys=True, default=repr))
        except Exception as x:
            ev.append(repr(x))
    c = insp.counters
    return {"describe": compiled.describe().split(":")[0], "rows": out, "eve": ev,
            "counters": [c.internal_errors, dict(c.verdicts), dict(c.would_block), c.alerts, c.fast_path]}


if __name__ == "__main__":
    seed, n, kind, mode, reload = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5] == "1"
    print(json.dumps(run(seed, n, kind, mode, reload), default=repr))
