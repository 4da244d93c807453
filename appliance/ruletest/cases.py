"""Test files -> Cases. A case is `NAME.test.yaml` (or `test.yaml` in a directory of its
own, beside its capture); every problem is "FILE:LINE: message".

    rules: ../lab/lab.yaml          # file(s) or directory, relative to the test file
    mode: monitor                   # optional (enforce)
    home_net: [10.10.2.0/24]        # optional (the rule files' HOME_NET)
    pcap: capture.pcap              # a capture, or:
    packets:                        # conversations built for the test (packets.py)
      - http: {src: 10.10.2.10, dst: 192.0.2.80, host: blocked.example.net}
        verdict: drop               # this conversation's flow verdict (optional)
    expect:
      alerts: {1000001: 1}          # sid: alert events; a sid not listed must not alert
      flows:                        # flows picked by EVE fields: all of them have the action
        - {dest_port: 23, action: reject}
"""
from dataclasses import dataclass, field
import ipaddress
import os
from pathlib import Path

from ..problems import did_you_mean, got, is_int
from ..yamlsource import LineDict, LineList, YamlError, load
from . import packets as pk

TOP_KEYS = ("description", "rules", "mode", "home_net", "pcap", "packets", "expect")
EXPECT_KEYS = ("alerts", "flows")
FLOW_KEYS = ("src_ip", "src_port", "dest_ip", "dest_port", "proto", "app_proto")
ACTIONS = ("pass", "drop", "reject")
MODES = ("enforce", "monitor")


@dataclass
class FlowExpect:
    where: str                     # FILE:LINE of the expectation
    match: dict                    # EVE flow event fields
    action: str


@dataclass
class Case:
    path: str
    rules: list = field(default_factory=list)
    mode: str = "enforce"
    home_net: list | None = None
    pcap: str | None = None
    frames: list = field(default_factory=list)   # built from `packets`
    alerts: dict = field(default_factory=dict)   # sid -> count
    flows: list = field(default_factory=list)    # FlowExpect


def find(paths):
    """The test files under `paths` (files as given, directories searched), sorted."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and
                          (f.name.endswith((".test.yaml", ".test.yml")) or f.name in ("test.yaml", "test.yml")))
        else:
            out.append(p)
    return [str(f) for f in out]


def read(path):
    """(Case or None, problems)."""
    problems = []

    def bad(line, msg):
        problems.append(f"{path}:{line}: {msg}")
    try:
        doc = load(path)
    except YamlError as e:
        return None, [str(e)]
    if not isinstance(doc, LineDict):
        return None, [f"{path}:{getattr(doc, 'line', 1) or 1}: a test must be a mapping with rules, "
                      f"pcap or packets, and expect; got {got(doc)}"]
    case = Case(path)
    base = os.path.dirname(os.path.abspath(path))
    for key in doc:
        if key not in TOP_KEYS:
            bad(doc.line_of(key), f"unknown key '{key}'{did_you_mean(key, TOP_KEYS)}")
    rules = doc.get("rules")
    items = rules if isinstance(rules, LineList) else [rules]
    if rules is None or not items or not all(isinstance(r, str) and r.strip() for r in items):
        bad(doc.line_of("rules"), f"rules must be a rule file or directory (or a list of them), got {got(rules)}")
    else:
        case.rules = [os.path.normpath(os.path.join(base, r)) for r in items]
        for i, r in enumerate(case.rules):
            if not os.path.exists(r):
                bad(rules.line_of(i) if isinstance(rules, LineList) else doc.line_of("rules"),
                    f"rules: no such file or directory {items[i]!r}")
    if "mode" in doc:
        if doc["mode"] in MODES:
            case.mode = doc["mode"]
        else:
            bad(doc.line_of("mode"), f"mode must be enforce or monitor, got {got(doc['mode'])}")
    if "home_net" in doc:
        nets = doc["home_net"] if isinstance(doc["home_net"], list) else [doc["home_net"]]
        try:
            case.home_net = [str(ipaddress.ip_network(str(n), strict=False)) for n in nets]
        except ValueError as e:
            bad(doc.line_of("home_net"), f"home_net: {e}")
    if ("pcap" in doc) == ("packets" in doc):
        bad(doc.line, "a test needs exactly one of pcap (a capture file) and packets (a description)")
    elif "pcap" in doc:
        v = doc["pcap"]
        if not isinstance(v, str) or not os.path.isfile(os.path.join(base, v)):
            bad(doc.line_of("pcap"), f"pcap: no such capture file {v!r}")
        else:
            case.pcap = os.path.join(base, v)
    else:
        _packets(doc, case, bad)
    expect = doc.get("expect")
    if not isinstance(expect, LineDict):
        bad(doc.line_of("expect"), f"expect must be a mapping with alerts and/or flows, got {got(expect)}")
    else:
        _expect(expect, case, path, bad)
    problems.sort(key=lambda p: int(p[len(path) + 1:].split(":", 1)[0]))
    return (None if problems else case), problems


def _packets(doc, case, bad):
    items = doc["packets"]
    if not isinstance(items, LineList) or not items:
        bad(doc.line_of("packets"), f"packets must be a list of conversations, got {got(items)}")
        return
    sport = 40000
    for i, item in enumerate(items):
        line = items.line_of(i)
        kinds = [k for k in item if k in pk.KINDS] if isinstance(item, LineDict) else []
        if len(kinds) != 1:
            bad(line, f"a packets item is one of {', '.join(pk.KINDS)} (and an optional verdict), got {got(item)}")
            continue
        kind = kinds[0]
        for k in item:
            if k not in (kind, "verdict"):
                bad(item.line_of(k), f"unknown key '{k}' in a packets item (known: {kind}, verdict)")
        spec = item[kind]
        if spec is None:
            spec = LineDict()
        verdict = item.get("verdict")
        verdict_ok = verdict is None or verdict in ACTIONS
        if not verdict_ok:
            bad(item.line_of("verdict"), f"verdict must be one of {', '.join(ACTIONS)}, got {got(verdict)}")
        if not isinstance(spec, LineDict):
            bad(item.line_of(kind), f"{kind} must be a mapping of its fields, got {got(spec)}")
            continue
        if not _spec_ok(kind, spec, bad, item.line_of(kind)) or not verdict_ok:
            continue
        for _ in range(spec.get("count", 1)):
            sport += 1
            key, frames = pk.conversation(kind, spec, sport)
            case.frames += frames
            if verdict is not None:
                src, sp, dst, dp, proto = key
                case.flows.append(FlowExpect(f"{case.path}:{line}", {"src_ip": src, "src_port": sp, "dest_ip": dst,
                                                                      "dest_port": dp, "proto": proto.upper()},
                                             verdict))


def _spec_ok(kind, spec, bad, line):
    ok = True
    known = pk.COMMON + pk.KINDS[kind][2]
    for k, v in spec.items():
        at = spec.line_of(k)
        if k not in known:
            bad(at, f"{kind}: unknown key '{k}'{did_you_mean(k, known)}")
            ok = False
        elif k in ("src", "dst"):
            try:
                ipaddress.ip_address(v)
            except ValueError:
                bad(at, f"{kind}.{k}: {v!r} is not an IP address")
                ok = False
        elif k in ("sport", "dport"):
            if not is_int(v) or not 1 <= v <= 65535:
                bad(at, f"{kind}.{k} must be a port from 1 to 65535, got {got(v)}")
                ok = False
        elif k == "count":
            if not is_int(v) or not 1 <= v <= 1000:
                bad(at, f"{kind}.count must be from 1 to 1000, got {got(v)}")
                ok = False
        elif k == "handshake_only":
            if not isinstance(v, bool):
                bad(at, f"{kind}.handshake_only must be true or false, got {got(v)}")
                ok = False
        elif k == "qtype":
            if v not in pk.QTYPES:
                bad(at, f"{kind}.qtype must be one of {', '.join(pk.QTYPES)}, got {got(v)}")
                ok = False
        elif not isinstance(v, str):
            bad(at, f"{kind}.{k} must be a string, got {got(v)}")
            ok = False
        elif kind == "dns" and k == "query":
            try:
                pk.dns_labels(v)
            except ValueError as e:
                bad(at, f"dns.query: {e}")
                ok = False
    src, dst = spec.get("src", pk.DEFAULT_SRC), spec.get("dst", pk.DEFAULT_DST)
    if ok and ipaddress.ip_address(src).version != ipaddress.ip_address(dst).version:
        bad(line, f"{kind}: src and dst must both be IPv4 or both IPv6")
        ok = False
    needs = {"dns": "query", "http": "host"}.get(kind)
    if needs and needs not in spec:
        bad(line, f"{kind} needs {needs}")
        ok = False
    if kind in ("tcp", "udp") and "dport" not in spec:
        bad(line, f"{kind} needs dport")
        ok = False
    return ok


def _expect(expect, case, path, bad):
    for k in expect:
        if k not in EXPECT_KEYS:
            bad(expect.line_of(k), f"unknown key 'expect.{k}'{did_you_mean(k, EXPECT_KEYS)}")
    alerts = expect.get("alerts")
    if alerts is not None:
        if not isinstance(alerts, LineDict):
            bad(expect.line_of("alerts"), f"expect.alerts must be a mapping of sid: count, got {got(alerts)}")
        else:
            for sid, n in alerts.items():
                if not is_int(sid) or not is_int(n) or n < 0:
                    bad(alerts.line_of(sid), f"expect.alerts: {sid!r}: {n!r} is not sid: count (integers)")
                else:
                    case.alerts[sid] = n
    flows = expect.get("flows")
    if flows is None:
        return
    if not isinstance(flows, LineList):
        bad(expect.line_of("flows"), f"expect.flows must be a list of {{FIELD: value, action: ...}}, got {got(flows)}")
        return
    for i, f in enumerate(flows):
        line = flows.line_of(i)
        if not isinstance(f, LineDict) or f.get("action") not in ACTIONS:
            bad(line, f"expect.flows: each item needs action ({', '.join(ACTIONS)}) and EVE flow fields "
                      f"({', '.join(FLOW_KEYS)}), got {got(f)}")
            continue
        unknown = [k for k in f if k not in FLOW_KEYS and k != "action"]
        for k in unknown:
            bad(f.line_of(k), f"expect.flows: unknown field '{k}'{did_you_mean(k, FLOW_KEYS)}")
        if not unknown:
            match = {k: (v.upper() if k == "proto" and isinstance(v, str) else v) for k, v in f.items()
                     if k != "action"}
            case.flows.append(FlowExpect(f"{path}:{line}", match, f["action"]))
