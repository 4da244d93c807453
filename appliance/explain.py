"""`appliance replay --explain FLOW`: why a flow was passed or dropped.

The trace comes from the real run, not a re-run: a re-run of one flow's packets would
miss what other flows did to it (thresholds, detection filters, the flow table), so the
replay itself uses a TracingDetector/TracingInspector (subclasses, only when --explain is
given) that record, for the chosen flows only, what the Detector's decision walk saw:
the verdict candidates in evaluation order, which matched, which were pending and on
what, which rule decided at which packet, when the flow became final (offloaded) and
which alerts fired. Every other flow costs one filter check per packet; a replay without
--explain runs the plain classes.
"""
import ipaddress

from .detect.engine import Detector, MATCH, PENDING, DEFAULT, _Reverse
from .detect.keywords import RULE_FIELD
from .applayer.state import Unknown
from .inspector import Inspector
from .packet import PROTO_NAMES, TCP

MAX_FLOWS = 10          # flows a partial filter traces (the rest are counted)
MAX_STEPS = 200         # packets a trace details; later ones are counted
MAX_ROWS = 40           # candidate rules listed per decision; the rest are counted

_PROTOS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "sctp": 132}


class FilterError(ValueError):
    pass


class FlowFilter:
    """A flow_id, or a 5-tuple filter `[SRC][:SPORT][-DST[:DPORT]][/PROTO]` where any part
    may be left out (`10.0.0.1:41000-198.51.100.7:443/tcp`, `-198.51.100.7:443`, `:53/udp`).
    IPv6 addresses go in brackets: `[2001:db8::1]:443`. Either orientation of a flow matches."""

    def __init__(self, text):
        self.text = text = text.strip()
        self.flow_id = None
        self.proto = None
        if text.isdigit():
            self.flow_id = int(text)
            return
        if "/" in text:
            text, proto = text.rsplit("/", 1)
            if proto.lower() not in _PROTOS:
                raise FilterError(f"--explain {self.text!r}: unknown protocol {proto!r} "
                                  f"(known: {', '.join(_PROTOS)})")
            self.proto = _PROTOS[proto.lower()]
        a, _, b = _split_ends(text)
        self.a = _endpoint(a, self.text)
        self.b = _endpoint(b, self.text)
        if self.a == (None, None) and self.b == (None, None) and self.proto is None:
            raise FilterError(f"--explain {self.text!r}: give a flow_id or at least one of "
                              "address, port, protocol (e.g. 10.0.0.1:41000-198.51.100.7:443/tcp)")

    def matches(self, flow):
        if self.flow_id is not None:
            return flow.id == self.flow_id
        if self.proto is not None and flow.proto != self.proto:
            return False
        one = (flow.src, flow.sport)
        two = (flow.dst, flow.dport)
        return (_fits(self.a, one) and _fits(self.b, two)) or (_fits(self.a, two) and _fits(self.b, one))


def _split_ends(text):
    """'A-B' on the dash that is not inside brackets (IPv6 addresses have none, but be safe)."""
    depth = 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "-" and depth == 0:
            return text[:i], "-", text[i + 1:]
    return text, "", ""


def _endpoint(text, whole):
    """'ADDR', 'ADDR:PORT', ':PORT', '[V6]:PORT', '' -> (addr or None, port or None)."""
    text = text.strip()
    if not text:
        return (None, None)
    addr, port = text, None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise FilterError(f"--explain {whole!r}: unclosed '[' in {text!r}")
        addr, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise FilterError(f"--explain {whole!r}: expected ':PORT' after ']' in {text!r}")
            port = rest[1:]
    elif text.count(":") == 1:
        addr, port = text.split(":")
    try:
        addr = str(ipaddress.ip_address(addr)) if addr else None
    except ValueError:
        raise FilterError(f"--explain {whole!r}: {addr!r} is not an IP address") from None
    if port is not None:
        if not port.isdigit() or int(port) > 65535:
            raise FilterError(f"--explain {whole!r}: {port!r} is not a port")
        port = int(port)
    return (addr, port)


def _fits(want, have):
    addr, port = want
    return (addr is None or addr == have[0]) and (port is None or port == have[1])


class Step:
    """One packet of a traced flow."""
    __slots__ = ("cnt", "ts", "to_server", "flags", "size", "decision", "action", "offload",
                 "final", "fired", "emitted", "fast", "names", "open_why", "state")

    def __init__(self):
        self.decision = None
        self.fired = ()
        self.state = None


class FlowTrace:
    def __init__(self, flow):
        self.flow = flow
        self.flow_id = flow.id
        self.steps = []
        self.more_steps = 0          # packets past MAX_STEPS
        self.fast_after = 0          # of those and the listed ones: fast-path packets
        self.decided = None          # (rule or None, pcap_cnt, action)
        self.final_at = None         # pcap_cnt of the packet that made it final
        self.offloaded_at = None
        self.alerts = []             # (pcap_cnt, rule, action)
        self.candidates = None       # verdict and alert candidates seen for the flow's header
        self.pending_fired = ()      # alert rules the Detector returned for the current packet
        self.state = (0, None)       # flowbits, flowints after the last packet


class TracingDetector(Detector):
    """The Detector, recording its decision walk for the flows a FlowFilter picks."""

    flow_filter = None               # set by TracingInspector before construction

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.traces = {}             # flow object -> FlowTrace (identity: a reopened flow is a new one)
        self.order = []
        self.unlisted = 0            # further matching flows, not traced (MAX_FLOWS)
        self.rec = None              # the decision being walked (traced flow only)
        self.last_rec = self.last_rec_flow = None   # the packet's finished decision record

    def traced(self, flow):
        tr = self.traces.get(flow)
        if tr is not None or self.flow_filter is None or len(self.traces) >= MAX_FLOWS:
            return tr
        if not self.flow_filter.matches(flow):
            return None
        tr = self.traces[flow] = FlowTrace(flow)
        self.order.append(tr)
        return tr

    def decide(self, pkt, flow, to_server, cand, inspect, more, scan, flipped=0, *extra):
        if self.traced(flow) is None:
            return super().decide(pkt, flow, to_server, cand, inspect, more, scan, flipped, *extra)
        rec = self.rec = {"inspect": inspect, "more": more, "app": None, "pm": {}}
        status, rule = super().decide(pkt, flow, to_server, cand, inspect, more, scan, flipped, *extra)
        self.rec = None
        rec["status"], rec["rule"] = status, rule
        rec["rows"], rec["count"] = self._rows(pkt, flow, to_server, cand, rec)
        self.last_rec, self.last_rec_flow = rec, flow
        return status, rule

    def _drop_unmatched_app(self, c, flow):
        out = super()._drop_unmatched_app(c, flow)
        if self.rec is not None:
            self.rec["app"] = (c, out)
        return out

    def packet_match(self, r, pkt, flow, to_server, scan):
        ok = super().packet_match(r, pkt, flow, to_server, scan)
        if self.rec is not None:
            self.rec["pm"][r.id] = ok
        return ok

    def alerts(self, pkt, flow, to_server, cand, new_fields, scan, *extra):
        out = super().alerts(pkt, flow, to_server, cand, new_fields, scan, *extra)
        tr = self.traces.get(flow)
        if tr is not None:
            tr.pending_fired = list(out)
        return out

    def _rows(self, pkt, flow, to_server, cand, rec):
        """The verdict candidates of this decision in evaluation order, each with what the
        walk made of it (recomputing only the pure parts: masks, cached candidates)."""
        c = cand & self.decision
        here = 0
        pkth = self.pkt_header
        if pkth:
            side = pkt.from_initiator      # the header it carries (Detector.candidates)
            here = self.candidates(pkt, flow, side)
            there = self.candidates(_Reverse(flow, not side), flow, not side)
            c = (c & ~pkth) | ((here | there) & pkth & self.decision)
        app_in, app_out = rec["app"] if rec["app"] is not None else (c, c)
        status, decider = rec["status"], rec["rule"]
        rows, reached = [], True
        total = bin(c).count("1")
        while c:
            low = c & -c
            i = low.bit_length() - 1
            c ^= low
            r = self.rules[i]
            if len(rows) >= MAX_ROWS:
                break
            if not reached:
                held = "decides first" if status == MATCH else "is pending"
                rows.append((r, "not reached", f"[{decider.id}] {held}"))
                continue
            if low & app_in and not low & app_out:
                rows.append((r, "no", self._name_misfit(r, i, flow)))
                continue
            if not rec["inspect"] and low & self.perpkt:
                rows.append((r, "no", "past the inspection depth: its packet conditions count as not met"))
                continue
            if low & pkth and not low & here:
                rows.append((r, "waits", "its header fits the other direction: a later packet may match"))
                continue
            if r is decider and status == MATCH:
                rows.append((r, "MATCH", self._what_matched(r, i, flow)))
                reached = False
                continue
            if r is decider and status == PENDING:
                rows.append((r, "pending", self._pending_on(r, i, flow, rec)))
                reached = False
                continue
            if rec["pm"].get(r.id) is False:
                rows.append((r, "no", "packet conditions not met (" + _conditions(r) + ")"))
                continue
            rows.append((r, "no", "did not match"))
        return rows, total

    def _name_misfit(self, r, i, flow):
        app = flow.app
        parts = []
        for f in self.app_of[i]:
            names = app.names[f] if app is not None else None
            key = RULE_FIELD[f]
            if type(names) is Unknown:
                parts.append(f"{key} cannot be known ({app.unknown or 'unknown'}); exception_policy "
                             f"{self.exception_policy}: " + ("only drop/reject rules match"
                                                             if self.exception_policy == "drop" else
                                                             "only the names read count"))
            elif names is not None and not names:
                parts.append(f"the flow has no {key} (app layer: {app.proto if app is not None else 'none'})")
            elif names is not None:
                shown = ", ".join(repr(n) for n in list(names)[:3])
                parts.append(f"{key} is {shown}: does not fit {_patterns(getattr(r, key))}")
        return "; ".join(parts) or "its app-layer condition does not fit"

    def _what_matched(self, r, i, flow):
        parts = []
        app = flow.app
        for f in self.app_of[i]:
            names = app.names[f] if app is not None else None
            key = RULE_FIELD[f]
            if getattr(r, key) is not None and names:
                parts.append(f"{key} {', '.join(repr(n) for n in list(names)[:3])}"
                             + (" (unknown: read against the attacker)" if type(names) is Unknown else ""))
            elif names is not None:
                parts.append(f"app_proto {app.proto}")
        if r.content or r.regex is not None or r.flowbits or r.flowint or r.flow or r.tcp_flags is not None:
            parts.append(_conditions(r))
        return "matched: " + ("; ".join(parts) if parts else "header (addresses, ports, protocol, direction)")

    def _pending_on(self, r, i, flow, rec):
        app = flow.app
        waiting = [RULE_FIELD[f] for f in self.app_of[i] if app is None or app.names[f] is None]
        if waiting:
            return ", ".join(f"{k} not yet seen" for k in waiting) + \
                " (holds back every later rule; the packet passes meanwhile)"
        if r.flowbits or r.flowint:
            if not self.state.holds(r, flow):
                return ("flow state not set yet (" + _conditions(r) +
                        "); looked at while the flow is within its inspection depth")
        return ("packet conditions not met yet (" + _conditions(r) +
                "), looked for while the flow is within its inspection depth")


def _patterns(pats):
    if not pats:
        return "(no name)"
    return ", ".join(repr(getattr(p, "text", None) or getattr(p, "name", None) or str(p)) for p in pats[:3])


def _conditions(r):
    out = []
    for c in r.content[:3]:
        v = getattr(c, "value", None)
        if v is not None:
            out.append(("!" if getattr(c, "negated", False) else "") + "content " + repr(bytes(v))[1:])
        else:
            out.append(type(c).__name__.lower())
    if r.regex is not None:
        out.append("pcre")
    for fb in r.flowbits:
        names = getattr(fb, "names", None) or getattr(fb, "name", "")
        if isinstance(names, (tuple, list)):
            names = "|".join(map(str, names))
        out.append(f"flowbits {getattr(fb, 'op', '')} {names}".replace("  ", " ").strip())
    if r.flowint:
        out.append("flowint")
    if r.flow:
        out.append("flow " + ",".join(sorted(r.flow)))
    if r.tcp_flags is not None:
        out.append("tcp_flags")
    if r.dsize is not None:
        out.append("dsize")
    return ", ".join(out) or "packet conditions"


class TracingInspector(Inspector):
    """The Inspector with a TracingDetector; records each packet of the traced flows."""

    def __init__(self, ruleset, settings=None, eve=None, flow_filter=None, pcap_log=None):
        # the class attribute carries the filter to the Detector the Inspector builds
        # (and rebuilds on reload): one per replay, so a per-instance subclass
        self.detector_class = type("TracingDetector", (TracingDetector,), {"flow_filter": flow_filter})
        super().__init__(ruleset, settings, eve, pcap_log)

    def process(self, pkt):
        det = self.detector
        v = super().process(pkt)
        flow = v.flow
        if flow is None:
            return v
        tr = det.traced(flow)
        if tr is not None:
            self._record(tr, pkt, v, flow)
        elif (len(det.traces) >= MAX_FLOWS and flow.pkts_ts + flow.pkts_tc == 1
              and det.flow_filter.matches(flow)):
            det.unlisted += 1              # a further matching flow, on its first packet
        return v

    def _record(self, tr, pkt, v, flow):
        det = self.detector
        fired, tr.pending_fired = tr.pending_fired, ()
        cnt = pkt.pcap_cnt
        for rule in v.alerts:
            tr.alerts.append((cnt, rule, v.action))
        if tr.candidates is None and flow.cand_ts is not None:
            tr.candidates = flow.cand_ts
        # the deciding moment: flow.verdict_rule set on this packet, or the default
        step = Step()
        step.cnt, step.ts = cnt, pkt.ts
        step.to_server = pkt.src == flow.src and pkt.sport == flow.sport
        step.flags = pkt.tcp_flags if pkt.proto == TCP else None
        step.size = len(pkt.payload)
        step.action, step.offload, step.final = v.action, v.offload, flow.final
        step.emitted = list(v.alerts)
        step.fired = fired
        step.names = _names(flow)
        fv = flow.vars
        state = (fv.bits, dict(fv.ints) if fv.ints else None) if fv is not None else (0, None)
        if state != tr.state:              # set by a rule on this packet (a noalert one too)
            tr.state = state
            bits = [n for n, b in det.state.bit_no.items() if state[0] >> b & 1]
            step.state = ("flowbits set: " + (", ".join(bits) or "none")
                          + (f"; flowint: {state[1]}" if state[1] else ""))
        step.open_why = self._open_why(flow, step.to_server) if not flow.final else ""

        step.decision = det.last_rec if det.last_rec_flow is flow else None
        det.last_rec_flow = det.last_rec = None
        step.fast = step.decision is None and tr.final_at is not None
        if tr.decided is None and flow.verdict is not None:
            tr.decided = (flow.verdict_rule, cnt, flow.verdict)
        if tr.final_at is None and flow.final:
            tr.final_at = cnt
        if tr.offloaded_at is None and v.offload:
            tr.offloaded_at = cnt
        if len(tr.steps) < MAX_STEPS:
            tr.steps.append(step)
        else:
            tr.more_steps += 1


    def _open_why(self, flow, to_server):
        """Why a flow stays inspected after this packet (the Inspector's finality test, read
        back through the same pure predicates)."""
        det = self.detector
        if flow.verdict is None:
            return "no verdict yet"
        if flow.verdict != "pass":
            return "still inspected"
        cand = (flow.cand_ts or 0) | (flow.cand_tc or 0)
        if cand & det.deep_alert:
            return "alert rules that look past the header may still fire within the depth"
        if self._logs_more(flow):
            return "a protocol log may log more of it"
        if det.more_to_inspect(flow, to_server, True):
            return "a later transaction or packet may still change the verdict"
        return "still inspected"


def _names(flow):
    app = flow.app
    if app is None or not app.known:
        return ""
    out = []
    for f, names in app.names.items():
        if names:
            out.append(f"{RULE_FIELD.get(f, f)}={','.join(str(n) for n in list(names)[:3])}")
    return f"app {app.proto}" + (": " + " ".join(out) if out else "")


# -- text -----------------------------------------------------------------------

_FLAG_LETTERS = ((0x02, "S"), (0x10, "A"), (0x08, "P"), (0x01, "F"), (0x04, "R"))


def _flags(f):
    return "".join(ch for bit, ch in _FLAG_LETTERS if f & bit) if f is not None else ""


def _rule(r):
    where = f" ({r.file}:{r.line})" if r.file else ""
    return f"[{r.id}] {r.action} {r.msg!r}{where}"


def explain_text(inspector, flow_filter):
    """The traces of a replay as text (stdout; the report embeds the same)."""
    det = inspector.detector
    out = []
    if not det.order:
        return f"explain {flow_filter.text}: no flow of the capture matches\n"
    rules = det.rules
    for tr in det.order:
        out.extend(_flow_text(tr, rules, det, inspector))
    if det.unlisted:
        out.append(f"... {det.unlisted} more flows match {flow_filter.text!r} (traced: the first {MAX_FLOWS}; "
                   "give a flow_id or a full 5-tuple)")
    return "\n".join(out) + "\n"


def _flow_text(tr, rules, det, inspector):
    f = tr.flow
    proto = PROTO_NAMES.get(f.proto, str(f.proto))
    w = [f"flow {tr.flow_id}  {proto} {f.src}:{f.sport} -> {f.dst}:{f.dport}  "
         f"(direction {f.direction}; first packet {tr.steps[0].cnt if tr.steps else '?'} of {f.pcap_file or 'the capture'})"]
    dp, db, _ = inspector.depth
    verdict_rules = sum(1 for r in rules if r.decides)
    cand = tr.candidates or 0
    w.append(f"  rules: {len(rules)} loaded ({verdict_rules} verdict rules, walked in file order; the first "
             f"match decides; default_action {det.default_action}); {bin(cand & det.decision).count('1')} "
             f"verdict and {bin(cand & det.alert).count('1')} alert rules fit the flow's header to_server")
    w.append(f"  inspection depth: {dp if dp < 1 << 40 else 'unbounded'} packets / {db} bytes "
             "(packet conditions and alerts look only within it; names are read past it)")
    last_rows, last_cnt = None, None
    for s in tr.steps:
        arrow = "->" if s.to_server else "<-"
        head = f"  pkt {s.cnt}  {arrow} {_flags(s.flags) or '-'} {s.size}B"
        if s.names:
            head += f"  [{s.names}]"
        if s.fast:
            w.append(head + f"  fast path: {s.action} (final: live, the kernel handles it)")
            continue
        w.append(head)
        d = s.decision
        if d is not None:
            rows = [(r.id, st, why) for r, st, why in d["rows"]]
            status = d["status"]
            summary = {MATCH: f"rule [{d['rule'].id}] matches" if d["rule"] else "",
                       PENDING: f"pending on rule [{d['rule'].id}]" if d["rule"] else "pending",
                       DEFAULT: f"no verdict rule matches: default_action {det.default_action}"}[status]
            w.append(f"    decide: {summary}")
            if rows == last_rows:
                w.append(f"      (candidates as at packet {last_cnt})")
            else:
                for n, (r, st, why) in enumerate(d["rows"], 1):
                    w.append(f"      {n:2d}. {_rule(r)}: {st}" + (f": {why}" if why else ""))
                if d["count"] > len(d["rows"]):
                    w.append(f"      ... {d['count'] - len(d['rows'])} more candidates")
                if not d["rows"]:
                    w.append("      (no verdict rule fits this flow's header)")
                last_rows, last_cnt = rows, s.cnt
        elif tr.decided is not None and tr.decided[1] != s.cnt:
            w.append(f"    verdict kept ({tr.decided[2]}): no new transaction for a name rule to read")
        if s.state:
            w.append(f"    flow state now: {s.state}")
        for r in s.fired:
            if r not in s.emitted:
                w.append(f"    alert {_rule(r)}: matched, suppressed by its threshold")
        for r in s.emitted:
            w.append(f"    ALERT {_rule(r)} ({'blocked' if s.action != 'pass' else 'allowed'})")
        tail = f"    verdict: {s.action}"
        if tr.decided is not None and tr.decided[1] == s.cnt:
            rule = tr.decided[0]
            tail += f"  DECIDED here by {_rule(rule)}" if rule is not None else \
                f"  DECIDED here by default_action {det.default_action}"
        if s.final and tr.final_at == s.cnt:
            tail += ("  FINAL: offloaded (connmark; the kernel takes the rest)" if s.offload else
                     "  FINAL: no further inspection (offload off)")
        elif not s.final:
            tail += f"  (not final: {s.open_why})"
        w.append(tail)
    if tr.more_steps:
        w.append(f"  ... {tr.more_steps} more packets not listed")
    w.append("  summary: " + _summary(tr, det))
    return w


def _summary(tr, det):
    parts = []
    if tr.decided is None:
        parts.append("never decided (passed while pending)")
    elif tr.decided[0] is not None:
        parts.append(f"{tr.decided[2]} by rule [{tr.decided[0].id}] {tr.decided[0].msg!r} at packet {tr.decided[1]}")
    else:
        parts.append(f"{tr.decided[2]} by default_action at packet {tr.decided[1]}")
    if tr.offloaded_at is not None:
        parts.append(f"offloaded at packet {tr.offloaded_at}")
    elif tr.final_at is not None:
        parts.append(f"final at packet {tr.final_at}")
    else:
        parts.append("never final (inspected to its end)")
    parts.append(f"{len(tr.alerts)} alert(s)" + (": " + ", ".join(f"[{r.id}]@{cnt}" for cnt, r, _ in tr.alerts[:10])
                                                 if tr.alerts else ""))
    return "; ".join(parts)
