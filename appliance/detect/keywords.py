"""The rule keywords: each defined once, here.

A Keyword says how its value parses into a Rule field, its JSON Schema fragment
(`appliance rules schema`), which protos allow it, and what the engine makes of it
(an app-layer name, a per-packet condition). The YAML loader, schema.py and the
engine derive from KEYWORDS; a reader of another rule syntax can reuse it by handing
`read_rule` a mapping of keyword -> value.

Parsers take plain values (str, int, bool, list, dict) and a `Where` to report at;
they return the field's value, or INVALID after reporting why.
"""
import dataclasses
import re
from dataclasses import dataclass
from typing import Callable

from ..problems import choice, did_you_mean, got, is_int
from .rule import (ACTIONS, DECISIONS, DIRECTIONS, FLOW_KEYWORDS, TCP_FLAG_LETTERS,
                   Content, IsDataAt, NamePattern, Pcre, Range, Rule, TcpFlags, Threshold)
from .bounded_regex import Regex
from .inspect_buffer import BUFFERS, RESPONSE_BUFFERS
from . import flowkeys as fk
INVALID = fk.INVALID                     # a parser's "reported, no value"
CONTENT_KINDS = ("value", "hex", "pcre", "isdataat")
_LITERAL_KEYS = ("value", "hex", "not", "nocase", "offset", "depth", "distance", "within",
                 "startswith", "endswith", "fast_pattern", "buffer")
CONTENT_KEYS = ("value", "hex", "pcre", "isdataat", "not", "nocase", "offset", "depth", "distance",
                "within", "startswith", "endswith", "relative", "fast_pattern", "buffer")
PCRE_FLAGS = {"i": re.I, "s": re.S, "m": re.M, "x": re.X}
# pcre's buffer flags (Suricata) -> the buffer here; H (all request headers), C (cookie),
# P (body), Y (response status message) name buffers this appliance does not read.
PCRE_BUFFER = {"U": "http.uri", "I": "http.uri.raw", "M": "http.method", "V": "http.user_agent",
               "W": "http.host", "S": "http.stat_code"}
THRESHOLD_KEYS = ("type", "track", "count", "seconds")
THRESHOLD_TYPES = ("limit", "threshold", "both")
THRESHOLD_TRACKS = ("by_src", "by_dst", "by_flow", "by_rule")
IP_PROTO_NAMES = {"hopopt": 0, "icmp": 1, "igmp": 2, "ipip": 4, "tcp": 6, "egp": 8, "udp": 17,
                  "ipv6": 41, "rsvp": 46, "gre": 47, "esp": 50, "ah": 51, "icmpv6": 58,
                  "eigrp": 88, "ospf": 89, "pim": 103, "vrrp": 112, "l2tp": 115,
                  "sctp": 132}
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")


@dataclass(frozen=True)
class Keyword:
    name: str                            # the rule key, and the Rule field it fills
    parse: Callable                      # (value, where, draft) -> field value | INVALID
    schema: dict                         # JSON Schema fragment of its value
    protos: tuple = ()                   # only with these protos; () = any
    app: str | None = None               # the app-layer field whose names it matches
    packet: bool = False                 # a per-packet condition (checked within the inspection depth)
    missing: str | None = None           # a required key: the problem when a rule lacks it
    before: Callable | None = None       # check across keys before its parse: draft -> (key, msg) | None
    after: Callable | None = None        # ... after its turn, written or not


class Draft:
    """A rule being read: the keys written, the fields parsed so far, what it can refer to."""

    def __init__(self, keys, variables, ids):
        self.keys = tuple(keys)
        self.variables = variables       # variables.Variables, for $VAR in addresses/ports
        self.ids = ids                   # id -> where first used, shared by every rule of a set
        self.fields = {"msg": ""}

    @property
    def proto(self):
        """The proto the rule is for: "ip" when not written, None when written wrong."""
        return self.fields.get("proto") if "proto" in self.keys else "ip"


def read_rule(mapping, where, draft):
    """The Rule fields of one rule (keyword -> value), or None after reporting every problem.
    Keywords are read in KEYWORDS order, which is the order of problems on one line."""
    ok = True
    for key in mapping:
        if key not in RULE_KEYS:
            where.of(mapping, key).report(f"unknown key '{key}'{did_you_mean(key, RULE_KEYS)}")
            ok = False
    fields = draft.fields
    for kw in KEYWORDS:
        if kw.name not in mapping:
            if kw.missing:
                where.report(kw.missing)
                ok = False
        else:
            if kw.before and (found := kw.before(draft)):
                where.of(mapping, found[0]).report(found[1])
                ok = False
            at = where.of(mapping, kw.name)
            if msg := _proto_problem(draft, kw):
                at.report(msg)             # its value is not read: it could not apply anyway
                ok = False
            else:
                value = kw.parse(mapping[kw.name], at, draft)
                if value is INVALID:
                    ok = False
                else:
                    fields[kw.name] = value
        if kw.after and (found := kw.after(draft)):
            where.of(mapping, found[0]).report(found[1])
            ok = False
    return fields if ok else None


def _proto_problem(draft, kw):
    proto = draft.proto
    protos = proto if isinstance(proto, tuple) else (proto,)
    if kw.protos and proto is not None and any(p not in kw.protos for p in protos):
        said = (f"proto is {'/'.join(protos)}" if "proto" in draft.keys else "proto defaults to ip")
        return f"{kw.name} needs proto {' or '.join(kw.protos)} ({said})"
    return None


# ---------------------------------------------------------------- parsers

def _one_of(name, options):
    def parse(v, where, draft):
        msg = choice(name, v, options)
        if msg:
            where.report(msg)
            return INVALID
        return v
    return parse


def _id(v, where, draft):
    if not is_int(v) or v <= 0:
        where.report(f"id must be a positive integer, got {got(v)}")
        return INVALID
    if v in draft.ids:
        where.report(f"duplicate id {v} (first used at {draft.ids[v]})")
        return INVALID
    draft.ids[v] = str(where)
    return v


def _msg(v, where, draft):
    if not isinstance(v, str):
        where.report(f"msg must be a string, got {got(v)}")
        return INVALID
    return v


def _addresses(name):
    def parse(v, where, draft):
        val, ok = draft.variables.addr_set(v, where, name)
        return val if ok else INVALID
    return parse


def _ports(name):
    def parse(v, where, draft):
        val, ok = draft.variables.port_set(v, where, name)
        return val if ok else INVALID
    return parse


def _flow(v, where, draft):
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list) or not items:
        where.report(f"flow must be one of {', '.join(FLOW_KEYWORDS)} or a list of them, got {got(v)}")
        return INVALID
    seen = set()
    for i, item in enumerate(items):
        if msg := choice("flow", item, FLOW_KEYWORDS):
            where.of(items, i).report(msg)
            return INVALID
        seen.add(item)
    for a, b in (("established", "not_established"), ("to_server", "to_client")):
        if {a, b} <= seen:
            where.report(f"flow cannot be both {a} and {b}")
            return INVALID
    return frozenset(seen)


def _tcp_flags(v, where, draft):
    flags, msg = parse_tcp_flags(v)
    if msg:
        where.report(msg)
        return INVALID
    return flags


def _icmp(name):
    def parse(v, where, draft):
        if not is_int(v) or not 0 <= v <= 255:
            where.report(f"{name} must be an integer 0-255, got {got(v)}")
            return INVALID
        return v
    return parse


def _content(v, where, draft):
    """The payload's program -> Rule.content; steps naming a sticky buffer -> Rule.buffers
    (one program per buffer, in the order written)."""
    items = v if isinstance(v, list) else [v]
    if not items:
        where.report("content is an empty list")
        return INVALID
    out = [_content_item(item, where.of(items, i), draft) for i, item in enumerate(items)]
    if None in out:
        return INVALID
    payload = tuple(step for buf, step in out if buf is None)
    per_buffer = {}
    for buf, step in out:
        if buf is not None:
            per_buffer.setdefault(buf, []).append(step)
    apps = {}
    for buf in per_buffer:
        apps.setdefault(BUFFERS[buf], buf)
    if len(apps) > 1:
        (a1, b1), (a2, b2) = list(apps.items())[:2]
        where.report(f"buffer {b2} is {a2}; this rule also looks at {a1} (a flow carries one protocol)")
        return INVALID
    if per_buffer:
        draft.fields["buffers"] = tuple((b, tuple(steps)) for b, steps in per_buffer.items())
    return payload


def _content_item(item, where, draft):
    """One (buffer or None, Content | Pcre | IsDataAt), or None after reporting."""
    if isinstance(item, str):
        if not item:
            where.report("content is empty")
            return None
        return None, Content(item.encode("utf-8"))
    if not isinstance(item, dict):
        where.report(f"content must be a string or a mapping (value, hex, pcre or isdataat, "
                     f"and options), got {got(item)}")
        return None
    ok = True
    for key in item:
        if key not in CONTENT_KEYS:
            where.of(item, key).report(f"unknown content key '{key}'{did_you_mean(key, CONTENT_KEYS)}")
            ok = False
    kinds = [k for k in CONTENT_KINDS if k in item]
    if len(kinds) != 1:
        if ok:                             # else a misspelt value/hex was just reported
            where.report("content needs exactly one of value, hex, pcre or isdataat")
        return None
    kind = kinds[0]
    allowed = {"value": _LITERAL_KEYS, "hex": _LITERAL_KEYS, "pcre": ("pcre", "not", "buffer"),
               "isdataat": ("isdataat", "not", "relative", "buffer")}[kind]
    for key in item:
        if key in CONTENT_KEYS and key not in allowed:
            where.of(item, key).report(f"content key '{key}' does not apply to {kind}")
            ok = False
    flags = {}
    for key in ("not", "nocase", "startswith", "endswith", "relative", "fast_pattern"):
        if key in item:
            if isinstance(item[key], bool):
                flags[key] = item[key]
            else:
                where.of(item, key).report(f"{key} must be true or false, got {got(item[key])}")
                ok = False
    buffer = None
    if "buffer" in item:
        buffer = item["buffer"]
        if msg := choice("buffer", buffer, tuple(BUFFERS)):
            where.of(item, "buffer").report(msg)
            return None
    if kind == "pcre":
        step, pbuf, msg = parse_pcre(item["pcre"])
        if msg:
            where.of(item, "pcre").report(msg)
            return None
        if pbuf is not None and buffer is not None and pbuf != buffer:
            where.of(item, "pcre").report(f"pcre's flag names buffer {pbuf}, the item says {buffer}")
            return None
        buffer = buffer or pbuf
        step = dataclasses.replace(step, negated=flags.get("not", False))
    elif kind == "isdataat":
        n = item["isdataat"]
        if not is_int(n) or n < 0:
            where.of(item, "isdataat").report(f"isdataat must be an integer >= 0, got {got(n)}")
            return None
        step = IsDataAt(n, flags.get("relative", False), flags.get("not", False))
    else:
        step = _literal(item, kind, flags, where)
    if step is None or not ok:
        return None
    if buffer is not None and not _buffer_fits(buffer, where, draft):
        return None
    return buffer, step


def _literal(item, kind, flags, where):
    """A value/hex item as a Content, or None after reporting."""
    ok = True
    value = None
    if kind == "value":
        v = item["value"]
        if not isinstance(v, str) or not v:
            where.of(item, "value").report(f"content value must be a non-empty string, got {got(v)}")
        else:
            value = v.encode("utf-8")
    else:
        value, msg = parse_hex(item["hex"])
        if msg:
            where.of(item, "hex").report(msg)
    kw = {"negated": flags.get("not", False), "nocase": flags.get("nocase", False),
          "startswith": flags.get("startswith", False), "endswith": flags.get("endswith", False),
          "fast_pattern": flags.get("fast_pattern", False)}
    for key, low, what in (("offset", 0, ">= 0"), ("depth", 1, "> 0"), ("distance", None, ""),
                           ("within", 1, "> 0")):
        if key not in item:
            continue
        x = item[key]
        if not is_int(x) or (low is not None and x < low):
            where.of(item, key).report(f"{key} must be an integer{' ' + what if what else ''}, got {got(x)}")
            ok = False
        elif key in ("depth", "within") and value is not None and x < len(value):
            where.of(item, key).report(f"{key} {x} is shorter than the content ({len(value)} bytes): "
                                       f"it can never match")
            ok = False
        else:
            kw[key] = x
    absolute = [k for k in ("offset", "depth") if k in item]
    relative = [k for k in ("distance", "within") if k in item]
    if absolute and relative:
        where.report(f"content {absolute[0]} (from the buffer's start) cannot be combined with "
                     f"{relative[0]} (from the previous match), as in Suricata")
        ok = False
    if kw["startswith"] and (absolute or relative):
        where.report(f"startswith cannot be combined with {(absolute + relative)[0]}")
        ok = False
    if kw["negated"] and kw["fast_pattern"]:
        where.of(item, "fast_pattern").report("fast_pattern cannot be a negated content "
                                              "(the prefilter looks for bytes that are there)")
        ok = False
    if value is None or not ok:
        return None
    return Content(value, **kw)


def _other_protocols(draft, app):
    """The app protocols other than `app` the rule's buffers and name keys look at (a flow
    carries one: a rule naming two can never match)."""
    others = {BUFFERS[b] for b, _ in draft.fields.get("buffers", ())} - {app}
    return others | ({APP_OF_KEY[k] for k in APP_KEYS if k in draft.keys} - {app})


def _buffer_fits(buffer, where, draft):
    """A sticky buffer needs a proto its protocol runs on, and a rule names one app protocol."""
    app = BUFFERS[buffer]
    protos = ("ip", "tcp", "udp") if app == "dns" else ("ip", "tcp")
    said = draft.proto if isinstance(draft.proto, tuple) else (draft.proto,)   # a list: each one
    if draft.proto is not None and any(p not in protos for p in said):
        where.report(f"buffer {buffer} needs proto {' or '.join(protos)} (proto is {'/'.join(said)})")
        return False
    if buffer in RESPONSE_BUFFERS and "to_server" in (draft.fields.get("flow") or ()):
        where.report(f"buffer {buffer} is read from the server's answer: with flow to_server it can never match")
        return False
    others = _other_protocols(draft, app)
    if others:
        where.report(f"buffer {buffer} is {app}; this rule also looks at {', '.join(sorted(others))} "
                     f"(a flow carries one protocol)")
        return False
    return True


def _regex(v, where, draft):
    if not isinstance(v, str) or not v:
        where.report(f"regex must be a non-empty string, got {got(v)}")
        return INVALID
    try:
        return Regex(v, 0)
    except (re.error, OverflowError, RecursionError, ValueError) as e:   # "a{99999999999}" overflows
        where.report(f"bad regex {v!r}: {e}")
        return INVALID


def _payload(v, where, draft):
    """payload: packet | stream | both. A stream rule's content positions are relative to the
    bytes inspected (stream_payload.py), which do not begin where a packet or the stream begins:
    absolute anchors would match other bytes, so they are refused, not guessed. `both` is
    Suricata's default for TCP: the stream where the flow's segments are reassembled, each
    packet's own payload elsewhere (engine.packet_match)."""
    msg = choice("payload", v, ("packet", "stream", "both"))
    if msg:
        where.report(msg)
        return INVALID
    if v == "stream" and draft.proto is not None and draft.proto != "tcp":
        # (packet and both read any protocol's packets; only TCP has a stream)
        protos = draft.proto if isinstance(draft.proto, tuple) else (draft.proto,)
        said = f"proto is {'/'.join(protos)}" if "proto" in draft.keys else "proto defaults to ip"
        where.report(f"payload needs proto tcp ({said})")
        return INVALID
    if v != "packet":
        steps = draft.fields.get("content", ())
        if not steps and draft.fields.get("regex") is None and not ("content" in draft.keys or "regex" in draft.keys):
            where.report(f"payload: {v} needs content or regex (it says what they read)")
            return INVALID
        if any(stream_unanchored(s) for s in steps):
            where.report(f"payload: {v}: content with offset, depth, startswith, endswith or an absolute "
                         "isdataat counts from a packet's start; the stream has none here (use distance/within)")
            return INVALID
    return v


def stream_unanchored(step):
    """A step placed absolutely in its buffer (not meaningful on the stream's moving window)."""
    if type(step) is Content:
        return bool(step.offset or step.depth is not None or step.startswith or step.endswith)
    return type(step) is IsDataAt and not step.relative


def _range_kw(name, top):
    def parse(v, where, draft):
        rng, msg = parse_range(v, name, top)
        if msg:
            where.report(msg)
            return INVALID
        return rng
    return parse


def _ip_proto(v, where, draft):
    if isinstance(v, str) and v.strip().lstrip("!").strip().isalpha():
        neg = v.strip().startswith("!")
        word = v.strip().lstrip("!").strip().lower()
        if word not in IP_PROTO_NAMES:
            where.report(f"ip_proto '{v}': unknown protocol name; use a number 0-255 or one of "
                         f"{', '.join(IP_PROTO_NAMES)}")
            return INVALID
        return Range("!=" if neg else "=", IP_PROTO_NAMES[word], 0, v.strip())
    return _range_kw("ip_proto", 255)(v, where, draft)


def _bsize(v, where, draft):
    if not isinstance(v, dict) or not v:
        where.report(f"bsize must be a mapping of sticky buffer: size (like {{http.uri: '<100'}}), got {got(v)}")
        return INVALID
    out, ok = [], True
    for buf, size in v.items():
        at = where.of(v, buf)
        if msg := choice("bsize buffer", buf, tuple(BUFFERS)):
            at.report(msg)
            ok = False
            continue
        rng, msg = parse_range(size, f"bsize {buf}", 1 << 32)
        if msg:
            at.report(msg)
            ok = False
        elif _buffer_fits(buf, at, draft):
            out.append((buf, rng))
        else:
            ok = False
    return tuple(out) if ok else INVALID


def _urilen(v, where, draft):
    text = str(v) if is_int(v) else v
    if not isinstance(text, str):
        where.report(f"urilen must be a size like 10, '<10' or '5<>20', optionally ',raw', got {got(v)}")
        return INVALID
    size, _, kind = text.partition(",")
    kind = kind.strip() or "norm"
    if kind not in ("norm", "raw"):
        where.report(f"urilen '{v}': after the comma comes norm (the default) or raw")
        return INVALID
    rng, msg = parse_range(size, "urilen", 65535)
    if msg:
        where.report(msg)
        return INVALID
    buf = "http.uri" if kind == "norm" else "http.uri.raw"
    if not _buffer_fits(buf, where, draft):
        return INVALID
    return buf, rng


def _names(name):
    def parse(v, where, draft):
        items = [v] if isinstance(v, str) else v
        if not isinstance(items, list) or not items:
            where.report(f"{name} must be a name or a list of names, got {got(v)}")
            return INVALID
        out, ok = [], True
        for i, item in enumerate(items):
            pat, msg = parse_name(item)
            if msg:
                where.of(items, i).report(f"{name}: {msg}")
                ok = False
            else:
                out.append(pat)
        return tuple(out) if ok else INVALID
    return parse


def _one_app_field(name):
    """A flow carries one app protocol: a second app keyword can never match with the first.
    Checked at the first one's turn (before any of them is read), reported at the second."""
    def check(draft):
        used = [k for k in APP_KEYS if k in draft.keys]
        if len(used) > 1 and used[0] == name:
            return used[1], (f"a rule can use only one of {', '.join(APP_KEYS)} (a flow carries one "
                          f"protocol); this one has {', '.join(used)}")
        return None
    return check


def _app_proto(v, where, draft):
    """dns | tls | http; with a name key or sticky buffer it must be their protocol."""
    if msg := choice("app_proto", v, ("dns", "tls", "http")):
        where.report(msg)
        return INVALID
    if v != "dns" and draft.proto == "udp":
        where.report(f"app_proto {v} needs proto tcp or ip (proto is udp)")
        return INVALID
    others = _other_protocols(draft, v)
    if others:
        where.report(f"app_proto is {v}; this rule also looks at {', '.join(sorted(others))} "
                     f"(a flow carries one protocol)")
        return INVALID
    return v


def _threshold(t, where, draft):
    if not isinstance(t, dict):
        where.report(f"threshold must be a mapping (type, track, count, seconds), got {got(t)}")
        return INVALID
    ok = True
    for key in t:
        if key not in THRESHOLD_KEYS:
            where.of(t, key).report(f"unknown threshold key '{key}'{did_you_mean(key, THRESHOLD_KEYS)}")
            ok = False
    missing = [k for k in THRESHOLD_KEYS if k not in t]
    if missing:
        where.report(f"threshold needs {', '.join(missing)}")
        ok = False
    for key, options in (("type", THRESHOLD_TYPES), ("track", THRESHOLD_TRACKS)):
        if key in t and (msg := choice(f"threshold {key}", t[key], options)):
            where.of(t, key).report(msg)
            ok = False
    for key in ("count", "seconds"):
        if key in t and (not is_int(t[key]) or t[key] < 1):
            where.of(t, key).report(f"threshold {key} must be a positive integer, got {got(t[key])}")
            ok = False
    return Threshold(t["type"], t["track"], t["count"], t["seconds"]) if ok else INVALID


def _log(v, where, draft):
    if not isinstance(v, bool):
        where.report(f"log must be true or false, got {got(v)}")
        return INVALID
    if draft.fields.get("action") == "alert":
        where.report("log applies to pass/drop/reject rules (alert rules always emit alerts)")
        return INVALID
    return v


def _threshold_needs_log(draft):
    """A threshold limits alerts: a pass rule emits them only with log: true, drop/reject
    unless log: false."""
    action = draft.fields.get("action")
    log = draft.fields.get("log")
    logs = log if log is not None else action != "pass"
    if "threshold" in draft.keys and action in DECISIONS and not logs:
        return "threshold", (f"threshold limits alerts: a {action} rule with log: false emits none"
                             if log is False else
                             f"threshold limits alerts: a {action} rule needs log: true for it to apply")
    return None


def _severity(v, where, draft):
    if not is_int(v) or not 1 <= v <= 4:
        where.report(f"severity must be an integer 1 (high) to 4 (low), got {got(v)}")
        return INVALID
    return v


def _classtype(v, where, draft):
    if not isinstance(v, str) or not v.strip():
        where.report(f"classtype must be a non-empty string, got {got(v)}")
        return INVALID
    return v


def _metadata(md, where, draft):
    if not isinstance(md, dict):
        where.report(f"metadata must be a mapping of name: [strings], got {got(md)}")
        return INVALID
    out, ok = {}, True
    for k, v in md.items():
        if not isinstance(k, str):
            where.of(md, k).report(f"metadata key must be a string, got {got(k)}")
            ok = False
        elif not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            where.of(md, k).report(f"metadata {k} must be a list of strings (quote numbers and yes/no), "
                                   f"got {got(v)}")
            ok = False
        else:
            out[k] = list(v)
    return out if ok else INVALID


def _rev_gid(name, least):
    def parse(v, where, draft):
        if not is_int(v) or v < least:
            where.report(f"{name} must be an integer >= {least}, got {got(v)}")
            return INVALID
        return v
    return parse


def _references(v, where, draft):
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list) or not items or not all(isinstance(x, str) and x for x in items):
        where.report(f"references must be a string or a list of strings (\"url,example.org/x\"), got {got(v)}")
        return INVALID
    return tuple(items)


# ---------------------------------------------------------------- values with a syntax of their own

def parse_tcp_flags(v):
    """Suricata-style "S", "SA", "S+", "S,CE", "0" -> (TcpFlags, None) or (None, message)."""
    if not isinstance(v, str):
        return None, f"tcp_flags must be a string like \"S\" or \"SA+\", got {got(v)}"
    main, _, ignore = v.replace(" ", "").upper().partition(",")
    plus = main.endswith("+")
    main = main.rstrip("+")
    if main[:1] in ("*", "!") or main.endswith(("*", "!")):
        return None, f"tcp_flags '{v}': only exact (\"SA\") and at-least (\"SA+\") are supported"

    def bits(letters, what):
        b = 0
        for ch in letters:
            i = TCP_FLAG_LETTERS.find(ch)
            if i < 0:
                return None, f"tcp_flags '{v}': '{ch}' is not a flag; use letters from {TCP_FLAG_LETTERS}"
            if b & (1 << i):
                return None, f"tcp_flags '{v}': {what} repeats '{ch}'"
            b |= 1 << i
        return b, None

    if main == "0":
        required, msg = 0, None
    elif not main:
        return None, f"tcp_flags '{v}' names no flags"
    else:
        required, msg = bits(main, "flags")
    if msg:
        return None, msg
    ignored, msg = bits(ignore, "ignore list")
    if msg:
        return None, msg
    if required & ignored:
        return None, f"tcp_flags '{v}': a flag cannot be both required and ignored"
    return TcpFlags(required=required, exact=not plus, mask=0xFF & ~ignored), None


def parse_hex(v):
    """"41 42|43", "|41 42|", "414243" -> (bytes, None) or (None, message)."""
    if not isinstance(v, str):
        return None, f"hex must be a quoted string of hex digits, got {got(v)} (unquoted digits are read as a number)"
    digits = re.sub(r"[\s|]", "", v)
    if not digits:
        return None, "hex content is empty"
    if not re.fullmatch(r"[0-9A-Fa-f]+", digits):
        return None, f"hex {v!r} has characters other than hex digits, spaces and |"
    if len(digits) % 2:
        return None, f"hex {v!r} has an odd number of digits"
    return bytes.fromhex(digits), None


_RANGE = re.compile(r"\s*(!?)\s*(\d+)\s*(?:<>|-)\s*(\d+)\s*\Z")
_COMPARE = re.compile(r"\s*(<=|>=|!=|<|>|=|!)?\s*(\d+)\s*\Z")


def parse_range(v, name, top):
    """Suricata's integer forms: "n", "<n", ">n", "<=n", ">=n", "!n", "lo<>hi" (exclusive,
    as Suricata's), "!lo<>hi" -> (Range, None) or (None, message)."""
    if is_int(v):
        v = str(v)
    if not isinstance(v, str):
        return None, f"{name} must be a number or a string like '<10', '>10' or '5<>20', got {got(v)}"
    text = v.strip()
    m = _RANGE.match(v)
    if m:
        neg, lo, hi = m.group(1), int(m.group(2)), int(m.group(3))
        if hi > top:
            return None, f"{name} '{text}': {hi} is more than {top}"
        if hi - lo <= 1:
            return None, f"{name} '{text}': lo<>hi excludes both ends, so hi must exceed lo by 2 or more"
        return Range("!<>" if neg else "<>", lo, hi, text), None
    m = _COMPARE.match(v)
    if not m:
        return None, f"{name} must be n, <n, >n, <=n, >=n, !n or lo<>hi, got {v!r}"
    op, n = m.group(1) or "=", int(m.group(2))
    op = "!=" if op == "!" else op
    if n > top:
        return None, f"{name} '{text}': {n} is more than {top}"
    if (op == "<" and n == 0) or (op == ">" and n == top):
        return None, f"{name} '{text}' can never match"
    return Range(op, n, 0, text), None


def parse_pcre(v):
    """"/regex/flags" -> (Pcre, the buffer a flag names or None, None) or (None, None, message).
    Flags: i s m x as PCRE's; R relative to the previous match; U I M V W S name the http.uri,
    http.uri.raw, http.method, http.user_agent, http.host, http.stat_code buffers."""
    if not isinstance(v, str):
        return None, None, f"pcre must be a string \"/regex/flags\", got {got(v)}"
    m = re.fullmatch(r"/(.*)/([A-Za-z]*)", v, re.S)
    if not m:
        return None, None, f"pcre must be \"/regex/flags\", got {v!r}"
    body, letters = m.groups()
    flags, relative, buffer = 0, False, None
    for ch in letters:
        if ch in PCRE_FLAGS:
            flags |= PCRE_FLAGS[ch]
        elif ch == "R":
            relative = True
        elif ch in PCRE_BUFFER and buffer in (None, PCRE_BUFFER[ch]):
            buffer = PCRE_BUFFER[ch]
        elif ch in PCRE_BUFFER:
            return None, None, f"pcre {v!r}: flags name two buffers ({buffer}, {PCRE_BUFFER[ch]})"
        elif ch in "HDCPQYZ":
            return None, None, (f"pcre {v!r}: flag '{ch}' names an HTTP buffer this appliance does not read "
                                f"(H: all request headers; here only http.host, http.user_agent, http.method, "
                                f"http.uri[.raw], http.stat_code are, flags W V M U I S)")
        else:
            return None, None, (f"pcre {v!r}: flag '{ch}' is not supported (i s m x R, and U I M V W S for "
                                f"http.uri, http.uri.raw, http.method, http.user_agent, http.host, http.stat_code)")
    body, msg = pcre_syntax(body)
    if msg:
        return None, None, f"pcre {v!r}: {msg}"
    try:
        rx = Regex(body, flags)          # RE2 or time-bounded: traffic cannot stall it
    except (re.error, OverflowError, RecursionError, ValueError) as e:
        return None, None, f"pcre {v!r}: Python's re cannot compile it: {e}"
    return Pcre(rx, relative, False, v), buffer, None


def pcre_tokens(body):
    """(position, token, in a class) for each escape pair or character of a PCRE body; a
    `]` first in a class (after `[` or `[^`) is one of its characters, not its end."""
    i, klass = 0, -1                   # klass: where the current [...] started, -1 outside
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            yield i, body[i:i + 2], klass >= 0
            i += 2
            continue
        inside = klass >= 0
        if inside:
            first = i == klass + 1 or (i == klass + 2 and body[klass + 1] == "^")
            if ch == "]" and not first:
                klass = -1
        elif ch == "[":
            klass = i
        yield i, ch, inside
        i += 1


def pcre_syntax(body):
    """A PCRE body in Python's `re` spelling where the two differ: PCRE's \\Z also matches
    before a final newline (Python's \\Z is PCRE's \\z), so \\Z -> (?=\\n?\\Z), \\z -> \\Z.
    `{,n}` is refused: PCRE2 reads it as text before 10.43, as {0,n} since, `re` as {0,n}.
    -> (body, None) or (None, message)."""
    out = []
    for i, tok, inside in pcre_tokens(body):
        if not inside and tok == "\\Z":
            tok = "(?=\\n?\\Z)"
        elif not inside and tok == "\\z":
            tok = "\\Z"
        elif not inside and tok == "{" and re.match(r"\{,\d+\}", body[i:]):
            return None, "'{,n}' is text in PCRE2 before 10.43 and {0,n} since: write {0,n} or \\{,n\\}"
        out.append(tok)
    return "".join(out), None


def parse_name(v):
    """A DNS/TLS/HTTP name or "*.suffix" -> (NamePattern, None) or (None, message)."""
    if not isinstance(v, str):
        return None, f"expected a name, got {got(v)}"
    name = v.strip().lower()
    wildcard = name.startswith("*.")
    if wildcard:
        name = name[2:]
    name = name.rstrip(".")                # a trailing root dot is the same name
    if not name:
        return None, f"'{v}' is empty"
    if any(c.isspace() for c in name):
        return None, f"'{v}' contains whitespace"
    if "*" in name:
        return None, f"'{v}': a wildcard is only allowed as a leading \"*.\""
    labels = name.split(".")
    if "" in labels:
        return None, f"'{v}' has an empty label"
    if len(name) > 253:
        return None, f"'{v}' is longer than 253 characters"
    for label in labels:
        if not _LABEL.match(label):
            return None, f"'{v}': label '{label}' is not a valid name label (letters, digits, - and _; 1-63 long)"
    return NamePattern(name, wildcard), None


# ---------------------------------------------------------------- schema fragments

def _set_of(desc, scalar):
    """A scalar, or a list of scalars."""
    return {"description": desc, "anyOf": [scalar, {"type": "array", "minItems": 1, "items": scalar}]}


_ADDR = {"type": "string", "minLength": 1,
         "description": "IP address, CIDR (host bits are cleared), any, $VAR, or \"!\" before any of "
                        "these; a quoted \"[a, !b]\" list is also accepted"}
_PORT = {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 65535},
                   {"type": "string", "minLength": 1}],
         "description": "port 0-65535, \"a-b\" range, any, $VAR, or \"!\" before any of these"}
_NAME = {"type": "string", "minLength": 1, "pattern": r"^\S+$",
         "description": "exact name (case-insensitive, trailing dot ignored) or \"*.suffix\" for any subdomain"}
_BUFFER = {"enum": list(BUFFERS), "description": "the sticky buffer inspected (default: the packet payload)"}
_CONTENT_MAP = {
    "type": "object", "additionalProperties": False,
    "description": "one step of a buffer's inspection (Suricata's content/pcre/isdataat): exactly one "
                   "of value, hex, pcre or isdataat, with options; steps on one buffer hold together "
                   "in order (distance/within/R/relative count from the previous match)",
    "properties": {
        "value": {"type": "string", "minLength": 1, "description": "literal text (UTF-8), taken as is"},
        "hex": {"type": "string", "minLength": 1,
                "description": "bytes as hex digits; spaces and | are ignored: \"0d 0a\", \"|de ad|\""},
        "pcre": {"type": "string", "pattern": "^/.*/[ismxRUIMVWS]*$",
                 "description": "\"/regex/flags\": i s m x, R relative to the previous match, U I M V W S "
                                "for http.uri, http.uri.raw, http.method, http.user_agent, http.host, "
                                "http.stat_code"},
        "isdataat": {"type": "integer", "minimum": 0,
                     "description": "the buffer has a byte at this offset (relative: this many bytes "
                                    "past the previous match)"},
        "not": {"type": "boolean", "description": "negated: holds when the bytes/regex/data are NOT there"},
        "nocase": {"type": "boolean", "description": "match ASCII letters case-insensitively"},
        "offset": {"type": "integer", "minimum": 0,
                   "description": "the match starts at or after this buffer offset"},
        "depth": {"type": "integer", "minimum": 1,
                  "description": "the match ends within offset+depth bytes of the buffer"},
        "distance": {"type": "integer",
                     "description": "relative: the match starts this many bytes after the previous "
                                    "match's end (may be negative)"},
        "within": {"type": "integer", "minimum": 1,
                   "description": "relative: the match ends within this many bytes of the previous "
                                  "match's end (plus distance)"},
        "startswith": {"type": "boolean", "description": "the match is at the buffer's start"},
        "endswith": {"type": "boolean", "description": "the match ends at the buffer's end"},
        "relative": {"type": "boolean", "description": "isdataat: counted from the previous match's end"},
        "fast_pattern": {"type": "boolean",
                         "description": "use this content as the rule's prefilter literal (speed only)"},
        "buffer": _BUFFER,
    },
    "oneOf": [{"required": ["value"]}, {"required": ["hex"]}, {"required": ["pcre"]},
              {"required": ["isdataat"]}],
}
_RANGE_SCHEMA = {"anyOf": [{"type": "integer", "minimum": 0},
                           {"type": "string", "pattern": r"^\s*(!?\s*\d+\s*(<>|-)\s*\d+|(<=|>=|!=|<|>|=|!)?\s*\d+)\s*$"}],
                 "description": "n, <n, >n, <=n, >=n, !n, or lo<>hi (lo < x < hi, as Suricata's)"}
_CONTENT_ITEM = {"anyOf": [{"type": "string", "minLength": 1, "description": "literal text (UTF-8)"},
                           _CONTENT_MAP]}


def _names_schema(what):
    return {"description": f"{what}: the rule matches when any of these names matches",
            "anyOf": [_NAME, {"type": "array", "minItems": 1, "items": _NAME}]}


# ---------------------------------------------------------------- the table

_TCP_UDP = ("tcp", "udp")
_ICMP = ("icmp", "icmpv6")

# In reading order: problems on one line come in this order, and later keys see earlier
# ones (proto, action, log) in the draft.
KEYWORDS = (
    Keyword("id", _id, {"type": "integer", "minimum": 1,
                        "description": "unique positive integer across all rule files; alert.signature_id"},
            missing="rule has no id (a unique positive integer)"),
    Keyword("action", _one_of("action", ACTIONS),
            {"enum": list(ACTIONS),
             "description": "pass/drop/reject: the first matching one decides the flow's verdict; "
                            "alert: emit an alert, never decides"},
            missing=f"rule has no action ({', '.join(ACTIONS)})"),
    Keyword("msg", _msg, {"type": "string", "description": "what the rule means; alert.signature (recommended)"}),
    Keyword("proto", fk.proto, fk.PROTO_SCHEMA),
    Keyword("src", _addresses("src"), {**_set_of("source addresses", _ADDR), "default": "any"}),
    Keyword("dst", _addresses("dst"), {**_set_of("destination addresses", _ADDR), "default": "any"}),
    Keyword("src_port", _ports("src_port"),
            {**_set_of("source ports (proto tcp or udp only)", _PORT), "default": "any"}, protos=_TCP_UDP),
    Keyword("dst_port", _ports("dst_port"),
            {**_set_of("destination ports (proto tcp or udp only)", _PORT), "default": "any"}, protos=_TCP_UDP),
    Keyword("direction", _one_of("direction", DIRECTIONS),
            {"enum": list(DIRECTIONS), "default": "any",
             "description": "inbound: flow initiated from outside HOME_NET (replay) or arriving on "
                            "the outside interface (live); outbound: the reverse"}),
    Keyword("flow", _flow,
            {"description": "flow state/direction conditions; all listed must hold",
             "anyOf": [{"enum": list(FLOW_KEYWORDS)},
                       {"type": "array", "minItems": 1, "uniqueItems": True,
                        "items": {"enum": list(FLOW_KEYWORDS)}}]},
            packet=True),
    Keyword("tcp_flags", _tcp_flags,
            {"type": "string", "pattern": r"^\s*(0|[FSRPAUECfsrpauec]+)\+?\s*(,\s*[FSRPAUECfsrpauec]+)?\s*$",
             "description": "Suricata-style flags over FSRPAUEC: \"S\" exactly SYN, \"S+\" SYN "
                            "and maybe others, \"0\" none; \",CE\" flags to ignore (proto tcp)"},
            protos=("tcp",), packet=True),
    Keyword("icmp_type", _icmp("icmp_type"),
            {"type": "integer", "minimum": 0, "maximum": 255, "description": "ICMP/ICMPv6 type (proto icmp or icmpv6)"},
            protos=_ICMP, packet=True),
    Keyword("icmp_code", _icmp("icmp_code"),
            {"type": "integer", "minimum": 0, "maximum": 255, "description": "ICMP/ICMPv6 code (proto icmp or icmpv6)"},
            protos=_ICMP, packet=True),
    Keyword("dsize", _range_kw("dsize", 65535), {**_RANGE_SCHEMA, "description": "the packet's payload "
                                                 "length: " + _RANGE_SCHEMA["description"]}, packet=True),
    Keyword("ttl", _range_kw("ttl", 255), {**_RANGE_SCHEMA, "description": "IPv4 TTL / IPv6 hop limit: "
                                           + _RANGE_SCHEMA["description"]}, packet=True),
    Keyword("ip_proto", _ip_proto,
            {"anyOf": [_RANGE_SCHEMA, {"type": "string", "pattern": r"^!?[A-Za-z]+$"}],
             "description": "the IP protocol number (or name, e.g. gre, esp; \"!\" negates): "
                            + _RANGE_SCHEMA["description"]}, packet=True),
    Keyword("content", _content,
            {"description": "bytes the payload must contain; a list: all must match",
             "anyOf": [_CONTENT_ITEM, {"type": "array", "minItems": 1, "items": _CONTENT_ITEM}]},
            packet=True),
    Keyword("regex", _regex,
            {"type": "string", "minLength": 1,
             "description": "Python regular expression searched in the payload bytes; inline flags "
                            "like (?i) allowed"},
            packet=True),
    Keyword("payload", _payload,
            {"enum": ["packet", "stream", "both"], "default": "packet",
             "description": "what content and regex read: each packet's payload, or (tcp) the reassembled "
                            "stream of the packet's direction, so a match split across segments is seen "
                            "(Suricata's flow:only_stream; packet is flow:no_stream), or both: the stream on "
                            "a TCP flow, each packet's payload otherwise (Suricata's default)"}),
    Keyword("bsize", _bsize, {"type": "object", "minProperties": 1,
                              "propertyNames": _BUFFER,
                              "additionalProperties": _RANGE_SCHEMA,
                              "description": "sticky buffer: its length in bytes (Suricata's bsize)"}),
    Keyword("urilen", _urilen,
            {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "minLength": 1}],
             "description": "length of the normalised http.uri (\",raw\": of http.uri.raw): "
                            + _RANGE_SCHEMA["description"]}, protos=("ip", "tcp")),
    Keyword("dns_query", _names("dns_query"), _names_schema("DNS query name"),
            protos=("ip", "tcp", "udp"), app="dns", before=_one_app_field("dns_query")),
    Keyword("tls_sni", _names("tls_sni"), _names_schema("TLS ClientHello server name (proto tcp or ip)"),
            protos=("ip", "tcp"), app="tls", before=_one_app_field("tls_sni")),
    Keyword("http_host", _names("http_host"), _names_schema("HTTP Host header (proto tcp or ip)"),
            protos=("ip", "tcp"), app="http", before=_one_app_field("http_host")),
    Keyword("app_proto", _app_proto, {"enum": ["dns", "tls", "http"],
            "description": "the protocol the app layer reads on the flow (Suricata's `alert tls ...` "
                           "with no sticky buffer): pending until it is known, like a name"},
            protos=("ip", "tcp", "udp")),
    Keyword("threshold", _threshold, {
        "type": "object", "additionalProperties": False, "required": list(THRESHOLD_KEYS),
        "description": "limit how often the rule alerts",
        "properties": {
            "type": {"enum": list(THRESHOLD_TYPES),
                     "description": "limit: first count per period; threshold: every count-th; "
                                    "both: once per period after count matches"},
            "track": {"enum": list(THRESHOLD_TRACKS), "description": "what the counters are kept per"},
            "count": {"type": "integer", "minimum": 1, "description": "matches counted"},
            "seconds": {"type": "integer", "minimum": 1, "description": "the period"},
        },
    }),
    Keyword("flowbits", fk.flowbits, fk.FLOWBITS_SCHEMA, packet=True),
    Keyword("flowint", fk.flowint, fk.FLOWINT_SCHEMA, packet=True),
    Keyword("noalert", fk.flag("noalert", fk.alert_only("noalert")),
            {"type": "boolean", "description": "alert rules: match (and change flowbits/flowint) without an alert"}),
    Keyword("detection_filter", fk.detection_filter, fk.DETECTION_FILTER_SCHEMA, packet=True),
    Keyword("target", fk.target, {"enum": ["src_ip", "dest_ip"],
                                  "description": "which side of the alerting packet is the target: "
                                                 "EVE alert.source and alert.target"}),
    Keyword("bypass", fk.flag("bypass"),
            {"type": "boolean", "description": "a match ends inspection of the flow once its verdict is "
                                               "pass: it is offloaded, later alerts and logs see nothing "
                                               "(a verdict rule that may judge a later transaction keeps it)"}),
    Keyword("header", fk.verdict_only("header", ("connection", "packet")),
            {"enum": ["connection", "packet"], "default": "connection",
             "description": "pass/drop/reject: src/dst/ports describe the connection (src = its initiator, "
                            "every packet) or each packet (its own sender, as Suricata's header)"},
            packet=True),
    Keyword("bidirectional", fk.flag("bidirectional"),
            {"type": "boolean", "description": "the header also matches with src and dst (and ports) "
                                               "swapped (Suricata's <>)"}),
    Keyword("hold", fk.hold, fk.HOLD_SCHEMA),
    Keyword("every_packet", fk.flag("every_packet", fk.alert_only("every_packet")),
            {"type": "boolean", "description": "a header-only alert rule alerts on every packet it fits "
                                               "(Suricata's count), not once per flow and direction"}),
    Keyword("log", _log, {"type": "boolean",
                          "description": "pass/drop/reject rules: also emit an alert event when the rule decides "
                                         "(default: drop/reject true, pass false)"},
            after=_threshold_needs_log),
    Keyword("severity", _severity, {"type": "integer", "minimum": 1, "maximum": 4, "default": 3,
                                    "description": "1 (high) to 4 (low); alert.severity"}),
    Keyword("classtype", _classtype, {"type": "string", "minLength": 1, "description": "alert.category"}),
    Keyword("metadata", _metadata, {"type": "object", "description": "free-form; alert.metadata",
                                    "additionalProperties": {"type": "array", "items": {"type": "string"}}}),
    # Suricata's rev, gid and reference: carried (alert.rev, alert.gid), never matched; a key here
    # so that `rules convert` gives a .rules rule as YAML without losing them.
    Keyword("rev", _rev_gid("rev", 0), {"type": "integer", "minimum": 0, "default": 0,
                                       "description": "the rule's revision; alert.rev (0: Suricata's default 1)"}),
    Keyword("gid", _rev_gid("gid", 0), {"type": "integer", "minimum": 0, "default": 1,
                                       "description": "generator id; alert.gid"}),
    Keyword("references", _references,
            {**_set_of("Suricata reference:, \"type,id\" (\"url,example.org/x\", \"cve,2026-0001\"); kept "
                       "on the rule", {"type": "string", "minLength": 1})}),
)

RULE_KEYS = tuple(k.name for k in KEYWORDS)
APP_KEYS = tuple(k.name for k in KEYWORDS if k.app)          # dns_query, tls_sni, http_host
APP_FIELDS = tuple(k.app for k in KEYWORDS if k.app)         # dns, tls, http: what the app parsers fill
RULE_FIELD = {k.app: k.name for k in KEYWORDS if k.app}      # dns -> dns_query
PACKET_KEYS = tuple(k.name for k in KEYWORDS if k.packet)
_UNSET = {f.name: f.default for f in dataclasses.fields(Rule)}


APP_OF_KEY = {k: f for f, k in RULE_FIELD.items()}            # dns_query -> dns


def app_fields(rule):
    """The app-layer fields a rule needs names or buffers from: a subset of APP_FIELDS."""
    used = {BUFFERS[b] for b, _ in rule.buffers} | {BUFFERS[b] for b, _ in rule.bsize}
    if rule.urilen is not None:
        used.add("http")
    if rule.app_proto is not None:
        used.add(rule.app_proto)
    return tuple(f for f, key in RULE_FIELD.items() if getattr(rule, key) is not None or f in used)


def app_program(rule):
    """Does the rule ask more of a transaction than a whole name (programs on sticky
    buffers, bsize, urilen)?"""
    return bool(rule.buffers or rule.bsize or rule.urilen is not None)


def per_packet(rule):
    """True when the rule looks at more than the flow's addresses/ports/proto/direction."""
    return any(getattr(rule, key) != _UNSET[key] for key in PACKET_KEYS)
