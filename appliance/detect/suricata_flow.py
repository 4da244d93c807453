"""Suricata's flow-state options (flowbits, flowint, noalert, detection_filter, target,
bypass, prefilter) onto their YAML keys; suricata._Options hands them over."""
from .keywords import PACKET_KEYS, pcre_tokens

# flow: items that add no condition here: every rule already matches packets whatever the
# flow state (stateless).
NO_CONDITION = ("stateless",)
# flow:only_stream / no_stream: what content reads, the YAML `payload` key (detect/stream_payload.py);
# neither: Suricata's default, `both` (payload_default)
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


def payload_default(opts):
    """A TCP (or ip) rule with payload content and neither flow:only_stream nor no_stream:
    Suricata reads it on the reassembled stream, and on a packet whose bytes were not added
    to it (detect-parse.c SigValidate sets SIG_FLAG_REQUIRE_STREAM;
    DetectEngineInspectRulePayloadMatches): `payload: both`. Content placed on the packet
    (offset/depth/startswith/endswith, an absolute isdataat, a pcre anchored at ^ or $,
    dsize) Suricata reads on the packet and on the stream counted from its start; that
    stream reading is not reproduced here, so such a rule stays `payload: packet` and the
    loader says so (a note per rule): a match split across segments is not seen."""
    mp = opts.p.mapping
    if "payload" in mp:
        return
    proto = mp.get("proto", "ip")
    protos = proto if isinstance(proto, (list, tuple)) else (proto,)
    items = [it for it in mp.get("content", ()) if isinstance(it, dict) and "buffer" not in it]
    if not items or ("tcp" not in protos and "ip" not in protos):
        return
    anchored = [k for k in _ANCHORS if any(k in it for it in items)]
    if any("isdataat" in it and not it.get("relative") for it in items):
        anchored.append("absolute isdataat")
    if any("pcre" in it and _pcre_anchored(it["pcre"]) for it in items):
        anchored.append("a pcre anchored at ^ or $")
    if "dsize" in mp:
        anchored.append("dsize")
    if anchored:
        opts.p.notes.append(f"read on each packet only ({', '.join(anchored)}: placed on the packet; Suricata's "
                            "reading of such a rule on the reassembled stream is not reproduced here): content "
                            "split across TCP segments is not seen")
        return
    mp["payload"] = "both"
    if sum(1 for it in items if "hex" in it or "pcre" in it) > 1 or any("pcre" in it for it in items):
        # each packet is read with the stream's last (longest content - 1) bytes before it: a
        # rule whose parts lie further apart is matched only when those parts arrive in one
        # segment's reach (review s14b: `content:"USER"; content:"PASSX"; distance:0;`
        # split after the first line passed)
        # (a pcre's match has no length bound: review s15, a pcre-only rule missed a split silently)
        opts.p.notes.append("several contents/pcre, or a pcre, read on the stream with the bytes before each "
                            "segment that its longest content needs: a pcre's match or parts further apart, "
                            "split across TCP segments, are not seen together")


def _pcre_anchored(raw):
    """A ^ or $ anywhere outside a character class (in a group or an alternation too: review
    s14b, `/(^GET \\/evil)/`), or \\A, \\Z, \\z, \\G in a pcre: placed at its buffer's start or end
    (or a line's), which on the stream's moving window is not the packet's (nor Suricata's
    chunk's)."""
    body = raw[1:raw.rfind("/")] if raw.startswith("/") else raw
    return any(not inside and tok in ("^", "$", "\\A", "\\Z", "\\z", "\\G") for _, tok, inside in pcre_tokens(body))


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
