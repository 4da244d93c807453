"""Suricata's flow-state options (flowbits, flowint, noalert, detection_filter, target,
bypass, prefilter) onto their YAML keys; suricata._Options hands them over."""
from .keywords import PACKET_KEYS

# flow: items that add no condition here: every rule already matches packets whatever the
# flow state (stateless).
NO_CONDITION = ("stateless",)
# flow:only_stream / no_stream: what content reads, the YAML `payload` key (detect/stream_payload.py)
PAYLOAD_OF = {"only_stream": "stream", "no_stream": "packet"}
_ANCHORS = ("offset", "depth", "startswith", "endswith")
_BIT_OPS = ("set", "unset", "toggle", "isset", "isnotset")
_INT_OPS = ("=", "+", "-", "==", "!=", "<", "<=", ">", ">=")


def option(opts, name, v, raw):
    mp = opts.p.mapping
    if name == "prefilter":
        return                             # a prefilter hint (like fast_pattern): never what matches
    if name in ("noalert", "bypass"):
        if v is not None:
            opts.error(f"{name} takes no value, got {raw!r}")
        else:
            mp[name] = True
        return
    if name == "flowbits":
        parts = [x.strip() for x in (v or "").split(",")]
        if parts == ["noalert"]:
            mp["noalert"] = True
        elif len(parts) == 2 and parts[0] in _BIT_OPS and parts[1]:
            mp.setdefault("flowbits", []).append({parts[0]: parts[1]})
        else:
            opts.error(f"flowbits '{v}': expected noalert or one of {', '.join(_BIT_OPS)} and a name")
    elif name == "flowint":
        parts = [x.strip() for x in (v or "").split(",")]
        if len(parts) == 2 and parts[1] in ("isset", "notset", "isnotset"):
            mp.setdefault("flowint", []).append({"name": parts[0], "op": "isset" if parts[1] == "isset"
                                                 else "notset"})
        elif len(parts) == 3 and parts[1] in _INT_OPS and parts[2]:
            value = int(parts[2]) if parts[2].isdigit() else parts[2]
            mp.setdefault("flowint", []).append({"name": parts[0], "op": parts[1], "value": value})
        else:
            opts.error(f"flowint '{v}': expected name, op (=, +, -, ==, !=, <, <=, >, >=), value "
                       "or name, isset|notset")
    elif name == "detection_filter":
        parts = {}
        for item in (v or "").split(","):
            k, _, val = item.strip().partition(" ")
            parts[k] = val.strip()
        unknown = [k for k in parts if k not in ("track", "count", "seconds")]
        if unknown:
            opts.unsupported("detection_filter", f"{', '.join(unknown)}: only track, count, seconds")
            return
        try:
            mp["detection_filter"] = {"track": parts.get("track"), "count": int(parts.get("count", "")),
                                      "seconds": int(parts.get("seconds", ""))}
        except ValueError:
            opts.error(f"detection_filter '{v}': count and seconds must be integers")
    elif name == "target":
        mp["target"] = v


def stream_check(opts):
    """flow:only_stream reads the payload's content on the reassembled stream: a rule with
    none there has nothing it changes, and content placed absolutely (offset, depth,
    startswith, endswith, isdataat without relative) counts from a start the moving stream
    window does not have here: both unsupported, never read as something else."""
    mp = opts.p.mapping
    if mp.get("payload") != "stream":
        return
    proto = mp.get("proto", "ip")
    protos = proto if isinstance(proto, (list, tuple)) else (proto,)
    if "tcp" not in protos and "ip" not in protos:
        opts.unsupported("flow:only_stream", f"on {'/'.join(protos)}: only TCP has a stream here")
        return
    mp["proto"] = "tcp"                    # `ip`: Suricata's stream is TCP's; nothing else can match
    items = [it for it in mp.get("content", ()) if isinstance(it, dict) and "buffer" not in it]
    if not items:
        opts.unsupported("flow:only_stream", "without payload content: the stream is what content reads")
    elif any(any(k in it for k in _ANCHORS) or ("isdataat" in it and not it.get("relative")) for it in items):
        opts.unsupported("flow:only_stream", "with offset, depth, startswith, endswith or absolute isdataat: "
                                            "positions on the stream window are not the stream's")


def finish(p):
    """noalert on a pass/drop/reject rule silences its alert (log: false). A header-only
    alert rule keeps the default count, once per flow and direction: Suricata runs such a
    rule in its IP-only engine, on the first packet each way (detect.c DetectRunInspectIPOnly),
    so it is not `every_packet` (that would be an alert event per packet of every flow it
    fits, each such flow held in Python up to its depth)."""
    mp = p.mapping
    action = mp.get("action")
    if mp.get("noalert") and action in ("pass", "drop", "reject"):
        del mp["noalert"]
        mp["log"] = False
    if action in ("pass", "drop", "reject") and any(k in mp for k in PACKET_KEYS):
        # Suricata judges each packet on its own: a condition not met on this packet
        # holds no later rule back on it (YAML's first match would)
        mp["hold"] = False
