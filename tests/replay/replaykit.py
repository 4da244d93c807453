"""Replay test helpers: build captures with scapy, write them as pcap/pcapng/gzip,
write rule files, and replay them through the real Inspector (API) or CLI (subprocess)."""
import gzip
import json
import struct
import subprocess
import sys
from pathlib import Path

import dpkt
import pytest
from scapy.all import Ether, IP, IPv6, TCP, UDP, Raw, raw  # noqa: F401

from appliance.decode import decode_frame
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings
from appliance.output.eve import EveWriter
from appliance.replay import replay

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
SCHEMA_PATH = SHARED / "specs" / "suricata-eve-schema.json"
CORPUS = SHARED / "corpus"
T0 = 1_700_000_000.0

LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_SLL, LINKTYPE_SLL2 = 1, 101, 113, 276


class Capture:
    """Frames with timestamps; `add` takes scapy packets or bytes."""

    def __init__(self, t0=T0, linktype=LINKTYPE_ETHERNET):
        self.frames = []
        self.t = t0
        self.linktype = linktype

    def add(self, pkt, ts=None, dt=0.001):
        if ts is None:
            self.t += dt
            ts = self.t
        else:
            self.t = ts
        self.frames.append((ts, pkt if isinstance(pkt, bytes) else raw(pkt)))
        return len(self.frames)          # 1-based pcap_cnt of this frame

    def write(self, path, fmt="pcap"):
        path = Path(path)
        if fmt == "pcapng":
            with open(path, "wb") as f:
                w = dpkt.pcapng.Writer(f, linktype=self.linktype)
                for ts, buf in self.frames:
                    w.writepkt(buf, ts)
        else:
            opener = gzip.open if fmt == "gz" else open
            with opener(path, "wb") as f:       # written by hand: exact microseconds, as pcapng does
                f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, self.linktype))
                for ts, buf in self.frames:
                    usec = round(ts * 1_000_000)
                    f.write(struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000, len(buf), len(buf)) + buf)
        return str(path)


def inspect_frames(cap, rules, **settings):
    """Each packet of `cap` through one Inspector under `rules` (a path): (verdicts, the names
    of the anomalies found), with no internal error."""
    insp = Inspector(load_rules(rules), Settings(**settings))
    verdicts, found = [], []
    for ts, buf in cap.frames:
        verdicts.append(insp.process(decode_frame(buf, cap.linktype, ts)))
        found.extend(name for name, _ in insp._found)
    assert insp.counters.internal_errors == 0
    return verdicts, found


class Sink:
    """An EVE destination that keeps the events."""
    def __init__(self):
        self.events = []

    def write(self, ev):
        self.events.append(ev)


def feed(cap, rules, **settings):
    """Each packet of `cap` through one Inspector with an EVE sink: [(packet number, verdict
    action, [alerting sids])], the EVE events."""
    sink = Sink()
    insp = Inspector(load_rules(rules), Settings(**settings), eve=sink)
    out = []
    for n, (ts, buf) in enumerate(cap.frames, 1):
        v = insp.process(decode_frame(buf, cap.linktype, ts))
        out.append((n, v.action, sorted(r.id for r in v.alerts)))
    insp.close()
    return out, sink.events


def alerted(out, sid):
    """The packet numbers on which `sid` alerted (of feed's list)."""
    return [n for n, _, sids in out if sid in sids]


def l2(ip_pkt):
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / ip_pkt


def ip_of(src, dst, **kw):
    return (IPv6(src=src, dst=dst, **kw) if ":" in src else IP(src=src, dst=dst, **kw))


class TcpConn:
    """A TCP conversation with correct sequence numbers, appended to a Capture."""

    def __init__(self, cap, client, cport, server, sport, wrap=l2, cseq=1000, sseq=5000):
        self.cap, self.wrap = cap, wrap
        self.c, self.cp, self.s, self.sp = client, cport, server, sport
        self.cseq, self.sseq = cseq, sseq

    def _seg(self, to_server, flags, data=b"", **kw):
        if to_server:
            p = ip_of(self.c, self.s) / TCP(sport=self.cp, dport=self.sp, flags=flags, seq=self.cseq, ack=self.sseq)
        else:
            p = ip_of(self.s, self.c) / TCP(sport=self.sp, dport=self.cp, flags=flags, seq=self.sseq, ack=self.cseq)
        if data:
            p = p / Raw(data)
        n = self.cap.add(self.wrap(p), **kw)
        step = len(data) + (1 if ("S" in flags or "F" in flags) else 0)
        if to_server:
            self.cseq += step
        else:
            self.sseq += step
        return n

    def handshake(self):
        self._seg(True, "S")
        self._seg(False, "SA")
        return self._seg(True, "A")

    def send(self, data, flags="PA", **kw):
        return self._seg(True, flags, data, **kw)

    def recv(self, data, flags="PA", **kw):
        return self._seg(False, flags, data, **kw)

    def close(self):
        self._seg(True, "FA")
        self._seg(False, "FA")
        return self._seg(True, "A")


def handshaken(client, server, port, cport=40000):
    """A new Capture holding a TCP handshake: (capture, its TcpConn) for more segments."""
    cap = Capture()
    c = TcpConn(cap, client, cport, server, port)
    c.handshake()
    return cap, c


def write(tmp_path, name, text):
    """A file under tmp_path holding `text`: its path as str."""
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def client_hello(sni, version=b"\x03\x03"):
    """A minimal TLS 1.2 ClientHello handshake message body (type 1) with an SNI extension."""
    name = sni.encode()
    sni_ext = struct.pack("!HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    exts = sni_ext
    body = (version + b"\x11" * 32 + b"\x00" + struct.pack("!H", 2) + b"\x13\x01" + b"\x01\x00"
            + struct.pack("!H", len(exts)) + exts)
    return b"\x01" + struct.pack("!I", len(body))[1:] + body


def tls_next_flight(conn):
    """The server's flight and the client's next one (ChangeCipherSpec + an encrypted
    record, TLS 1.3's Finished): after it no
    second ClientHello can come (that follows only a HelloRetryRequest), so a TLS flow
    whose SNI passed is final. Returns the client packet's number."""
    conn.recv(b"\x16\x03\x03\x00\x04\x02\x00\x00\x00")
    return conn.send(b"\x14\x03\x03\x00\x01\x01" + b"\x17\x03\x03\x00\x05hello")


def tls_records(handshake_msg, record_size=None):
    """Wrap a handshake message in TLS records (split into record_size pieces)."""
    size = record_size or len(handshake_msg)
    out = b""
    for i in range(0, len(handshake_msg), size):
        piece = handshake_msg[i:i + size]
        out += b"\x16\x03\x01" + struct.pack("!H", len(piece)) + piece
    return out


def dns_query(names, qid=0x1234, qtype=1):
    q = struct.pack("!HHHHHH", qid, 0x0100, len(names), 0, 0, 0)
    for n in names:
        for label in n.rstrip(".").split("."):
            q += bytes([len(label)]) + label.encode()
        q += b"\x00" + struct.pack("!HH", qtype, 1)
    return q


class Result:
    def __init__(self, events, res, insp):
        self.events, self.res, self.insp = events, res, insp

    def of(self, event_type):
        return [e for e in self.events if e["event_type"] == event_type]

    def alerts(self, sid=None):
        return [e for e in self.of("alert") if sid is None or e["alert"]["signature_id"] == sid]

    def sids(self):
        return [e["alert"]["signature_id"] for e in self.of("alert")]

    def flows(self, **match):
        return [e for e in self.of("flow") if all(e.get(k) == v for k, v in match.items())]

    def flow_action(self, **match):
        fl = self.flows(**match)
        assert len(fl) == 1, (match, self.of("flow"))
        return fl[0]["flow"]["action"]


@pytest.fixture
def rules_file(tmp_path):
    n = [0]

    def make(text, name=None):
        n[0] += 1
        p = tmp_path / (name or f"rules{n[0]}.yaml")
        p.write_text(text)
        return str(p)
    return make


@pytest.fixture
def run(tmp_path):
    """run(captures_or_paths, rules_path, home_net=None, **settings) -> Result (API replay, EVE file)."""
    n = [0]

    def go(caps, rules, home_net=None, fmt="pcap", **kw):
        n[0] += 1
        paths = []
        if not isinstance(caps, (list, tuple)):
            caps = [caps]
        for i, c in enumerate(caps):
            if isinstance(c, Capture):
                suffix = {"pcap": ".pcap", "pcapng": ".pcapng", "gz": ".pcap.gz"}[fmt]
                paths.append(c.write(tmp_path / f"run{n[0]}-{i}{suffix}", fmt))
            else:
                paths.append(str(c))
        rs = load_rules(rules, home_net=home_net)
        eve_path = tmp_path / f"eve{n[0]}.json"
        eve = EveWriter(str(eve_path))
        insp = Inspector(rs, Settings(**kw), eve)
        res = replay(paths, insp)
        insp.stats_event()
        eve.close()
        events = [json.loads(line) for line in eve_path.read_text().splitlines()]
        return Result(events, res, insp)
    return go


def cli(*args, timeout=300):
    """python3 -m appliance ARGS... -> CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", "appliance", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def eve_validator():
    if not SCHEMA_PATH.is_file():
        pytest.skip("shared/specs/suricata-eve-schema.json absent")
    import jsonschema
    schema = json.loads(SCHEMA_PATH.read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def schema_errors(validator, events):
    """Suricata-schema errors, with the one documented extension (stats.appliance, see
    README "EVE output") checked for its own shape and then left out."""
    out = []
    for e in events:
        if e.get("event_type") == "stats" and "appliance" in e.get("stats", {}):
            e = {**e, "stats": {k: v for k, v in e["stats"].items() if k != "appliance"}}
        for err in validator.iter_errors(e):
            out.append(f"{e['event_type']}: {list(err.absolute_path)}: {err.message}")
    return out
