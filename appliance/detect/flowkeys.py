"""Parsers and schema fragments of the flow-state keywords (Suricata's flowbits, flowint,
noalert, detection_filter, target, bypass) and of the header keys (proto lists, header,
bidirectional, every_packet). keywords.KEYWORDS lists them; this module only reads values.

Flow state is bounded by construction: a flow can only hold the bits and integers some
loaded rule names (the detector numbers them), never a name taken from traffic.
"""
import re

from ..problems import choice, did_you_mean, got, is_int
from .rule import (FLOWBIT_OPS, FLOWINT_CHANGES, FLOWINT_OPS, PROTOS, TARGETS,
                   DetectionFilter, FlowBit, FlowInt)

INVALID = object()                       # keywords.INVALID is this object (one "reported" marker)
DETECTION_FILTER_KEYS = ("track", "count", "seconds")
TRACKS = ("by_src", "by_dst", "by_flow", "by_rule")
FLOWINT_KEYS = ("name", "op", "value")
_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}\Z")


def proto(v, where, draft):
    """One proto name, or a list of them (the rule is for any of them: Suricata's icmp is
    [icmp, icmpv6])."""
    if isinstance(v, list):
        if not v:
            where.report("proto is an empty list")
            return INVALID
        for i, item in enumerate(v):
            if item == "ip":
                where.of(v, i).report("proto ip is every protocol: write it alone, not in a list")
                return INVALID
            if msg := choice("proto", item, tuple(p for p in PROTOS if p != "ip")):
                where.of(v, i).report(msg)
                return INVALID
            if item in v[:i]:
                where.of(v, i).report(f"proto repeats {item}")
                return INVALID
        return v[0] if len(v) == 1 else tuple(v)
    if msg := choice("proto", v, tuple(PROTOS)):
        where.report(msg)
        return INVALID
    return v


def _names(text, where, op):
    """"a", "a|b" (any), "a&b" (all) -> (names, any) or None after reporting."""
    if not isinstance(text, str) or not text.strip():
        where.report(f"flowbits {op} needs a bit name, got {got(text)}")
        return None
    if "|" in text and "&" in text:
        where.report(f"flowbits {op} '{text}': use either | (any) or & (all), not both")
        return None
    anyof = "|" in text
    names = tuple(n.strip() for n in re.split(r"[|&]", text))
    for n in names:
        if not _VAR.match(n):
            where.report(f"flowbits {op} '{text}': '{n}' is not a bit name (letters, digits, _ . -)")
            return None
    if anyof and op not in ("isset", "isnotset"):
        where.report(f"flowbits {op} '{text}': | (any of) applies to isset/isnotset")
        return None
    return names, anyof


def flowbits(v, where, draft):
    """[{set: a}, {isset: "b|c"}, ...]: conditions hold together; changes happen when the
    whole rule matches."""
    items = v if isinstance(v, list) else [v]
    if not items:
        where.report("flowbits is an empty list")
        return INVALID
    out = []
    for i, item in enumerate(items):
        at = where.of(items, i) if isinstance(v, list) else where
        if not isinstance(item, dict) or len(item) != 1:
            at.report(f"a flowbits item is one mapping of {'/'.join(FLOWBIT_OPS)}: name, got {got(item)}")
            return INVALID
        [(op, text)] = item.items()
        if op not in FLOWBIT_OPS:
            at.of(item, op).report(f"unknown flowbits operation '{op}'{did_you_mean(op, FLOWBIT_OPS)}")
            return INVALID
        read = _names(text, at.of(item, op), op)
        if read is None:
            return INVALID
        out.append(FlowBit(op, *read))
    return tuple(out)


def flowint(v, where, draft):
    """[{name: n, op: "+", value: 1}, {name: n, op: ">", value: 3}, {name: n, op: isset}]."""
    items = v if isinstance(v, list) else [v]
    if not items:
        where.report("flowint is an empty list")
        return INVALID
    out = []
    for i, item in enumerate(items):
        at = where.of(items, i) if isinstance(v, list) else where
        if not isinstance(item, dict):
            at.report(f"a flowint item is a mapping (name, op, value), got {got(item)}")
            return INVALID
        for key in item:
            if key not in FLOWINT_KEYS:
                at.of(item, key).report(f"unknown flowint key '{key}'{did_you_mean(key, FLOWINT_KEYS)}")
                return INVALID
        name, op = item.get("name"), item.get("op")
        if not isinstance(name, str) or not _VAR.match(name):
            at.report(f"flowint name must be a variable name (letters, digits, _ . -), got {got(name)}")
            return INVALID
        if msg := choice("flowint op", op, FLOWINT_OPS):
            at.report(msg)
            return INVALID
        value = item.get("value")
        if op in ("isset", "notset"):
            if "value" in item:
                at.of(item, "value").report(f"flowint {op} takes no value")
                return INVALID
        elif not ((is_int(value) and 0 <= value < 1 << 32) or (isinstance(value, str) and _VAR.match(value))):
            at.report(f"flowint {op} needs a value: an integer 0-4294967295 or another flowint's name, "
                      f"got {got(value)}")
            return INVALID
        out.append(FlowInt(name, op, value))
    return tuple(out)


def flag(name, why=None):
    """A boolean key; `why(draft)` -> message when it cannot apply to this rule."""
    def parse(v, where, draft):
        if not isinstance(v, bool):
            where.report(f"{name} must be true or false, got {got(v)}")
            return INVALID
        if v and why and (msg := why(draft)):
            where.report(msg)
            return INVALID
        return v
    return parse


def alert_only(name):
    def why(draft):
        action = draft.fields.get("action")
        if action is not None and action != "alert":
            return f"{name} applies to alert rules (a {action} rule decides the flow)"
        return None
    return why


def verdict_only(name, what):
    def parse(v, where, draft):
        if msg := choice(name, v, what):
            where.report(msg)
            return INVALID
        action = draft.fields.get("action")
        if action == "alert" and v != what[0]:
            where.report(f"{name} applies to pass/drop/reject rules (an alert rule matches each packet's header)")
            return INVALID
        return v
    return parse


def hold(v, where, draft):
    """`hold: false` (Suricata's per-packet judging) on a pass/drop/reject rule."""
    if not isinstance(v, bool):
        where.report(f"hold must be true or false, got {got(v)}")
        return INVALID
    action = draft.fields.get("action")
    if not v and action is not None and action not in ("pass", "drop", "reject"):
        where.report(f"hold applies to pass/drop/reject rules (an {action} rule decides nothing)")
        return INVALID
    return v


HOLD_SCHEMA = {
    "type": "boolean", "default": True,
    "description": "pass/drop/reject with packet conditions: true (first match): while a condition is "
                   "unmet the rule holds later rules back; false (Suricata's): each packet is judged on "
                   "its own -- a later rule may decide this packet, and the rule may still match a later "
                   "one (the default action waits meanwhile)"}


def detection_filter(t, where, draft):
    if not isinstance(t, dict):
        where.report(f"detection_filter must be a mapping (track, count, seconds), got {got(t)}")
        return INVALID
    ok = True
    for key in t:
        if key not in DETECTION_FILTER_KEYS:
            where.of(t, key).report(f"unknown detection_filter key '{key}'"
                                    f"{did_you_mean(key, DETECTION_FILTER_KEYS)}")
            ok = False
    missing = [k for k in DETECTION_FILTER_KEYS if k not in t]
    if missing:
        where.report(f"detection_filter needs {', '.join(missing)}")
        ok = False
    if "track" in t and (msg := choice("detection_filter track", t["track"], TRACKS)):
        where.of(t, "track").report(msg)
        ok = False
    for key in ("count", "seconds"):
        if key in t and (not is_int(t[key]) or t[key] < 1):
            where.of(t, key).report(f"detection_filter {key} must be a positive integer, got {got(t[key])}")
            ok = False
    return DetectionFilter(t["track"], t["count"], t["seconds"]) if ok else INVALID


def target(v, where, draft):
    if msg := choice("target", v, TARGETS):
        where.report(msg)
        return INVALID
    return v


# ---------------------------------------------------------------- schema fragments

_BITNAME = {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_.\-]*([|&][A-Za-z_][A-Za-z0-9_.\-]*)*$"}
FLOWBITS_SCHEMA = {
    "description": "per-flow bits: isset/isnotset are conditions (\"a|b\": any of them, \"a&b\": all); "
                   "set/unset/toggle change the flow's bits when the whole rule matches",
    "type": "array", "minItems": 1,
    "items": {"type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": False,
              "properties": {op: _BITNAME for op in FLOWBIT_OPS}},
}
FLOWINT_SCHEMA = {
    "description": "per-flow integers: =, +, - change one when the whole rule matches; ==, !=, <, <=, "
                   ">, >=, isset, notset are conditions",
    "type": "array", "minItems": 1,
    "items": {"type": "object", "additionalProperties": False, "required": ["name", "op"],
              "properties": {"name": {"type": "string"}, "op": {"enum": list(FLOWINT_OPS)},
                             "value": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 4294967295},
                                                 {"type": "string"}]}}},
}
DETECTION_FILTER_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": list(DETECTION_FILTER_KEYS),
    "description": "the rule matches only after more than count matches within seconds (Suricata's "
                   "detection_filter); on a pass/drop/reject rule it gates the decision too",
    "properties": {"track": {"enum": list(TRACKS)}, "count": {"type": "integer", "minimum": 1},
                   "seconds": {"type": "integer", "minimum": 1}},
}
PROTO_SCHEMA = {
    "description": "IP protocol; ip = any; a list: any of them (Suricata's icmp = [icmp, icmpv6])",
    "default": "ip",
    "anyOf": [{"enum": list(PROTOS)},
              {"type": "array", "minItems": 1, "uniqueItems": True,
               "items": {"enum": [p for p in PROTOS if p != "ip"]}}],
}
CHANGES = FLOWINT_CHANGES
