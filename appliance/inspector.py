"""The pipeline every source feeds: decode has happened; here a packet goes
defrag -> flow -> stream -> app layer -> detection -> verdict, and events go out.

Each stage owns its state (the flow table its flows, the stream the client's bytes,
the app layer its transactions, the detector whether a flow still needs a look);
the Inspector only sequences them, and writes a packet's events once, at the end.
Live NFQUEUE workers and offline replay call the same `Inspector.process`, so a
fix in one is a fix in both. Time is the packet's own timestamp: in replay the
pcap clock drives timeouts and thresholds exactly as the wall clock does live.
"""
from dataclasses import dataclass

from .applayer import state as applayer
from .defrag import Defragmenter
from .detect.engine import Detector, MATCH, DEFAULT
from .flow import FlowTable
from .output import events
from .packet import TCP, UDP, SYN
from .stream import ClientStream


@dataclass
class Settings:
    outside_ifaces: tuple = ()            # live: packets arriving here come from outside
    depth_packets: int = 16               # inspection depth per flow (both directions) for content,
    depth_bytes: int = 8192               # packet conditions and alerts; names are read past it
    max_flows: int = 100_000
    offload: bool = True                  # decided flows skip inspection (live: kernel fast path)
    stream_bytes: int = 8192              # client stream bytes held at once for the app layer (it
                                          # consumes what it parsed): the longest line/field it reads
    anomaly_action: str = "pass"          # verdict for packets too malformed to have a flow
    exception_policy: str = "drop"        # when a name cannot be known (ambiguous stream, mid-stream
                                          # pickup, cap hit, internal error): "drop" reads it as any
                                          # name (block rules match, allow rules do not); "ignore"
                                          # as no name (the rules that need it do not match)
    verify_checksums: bool = True         # a bad TCP checksum keeps a segment out of the stream
                                          # (live: off, the kernel's conntrack already judged it)


class Verdict:
    """What to do with one packet."""
    __slots__ = ("action", "offload", "flow", "alerts")

    def __init__(self, action, offload=False, flow=None, alerts=()):
        self.action = action              # "pass" | "drop" | "reject"
        self.offload = offload            # flow decided for good: hand it to the kernel
        self.flow = flow
        self.alerts = alerts              # rules whose alert events this packet emitted

    def __repr__(self):
        return f"Verdict({self.action!r}, offload={self.offload}, alerts={[r.id for r in self.alerts]})"


PASS = Verdict("pass")
HELD = Verdict("pass")                    # a fragment held until its datagram is whole (replay)


class Inspector:
    def __init__(self, ruleset, settings=None, eve=None):
        self.settings = settings or Settings()
        self.eve = eve
        self.defrag = Defragmenter()
        self.flows = FlowTable(self.settings.max_flows)
        self.generation = 0
        self.detector = Detector(ruleset, self.generation, self.settings.exception_policy)
        self.ruleset = ruleset
        self.counters = events.Counters()
        self.first_ts = None
        self.now = 0.0
        self._last_tick = None
        self._found = ()                  # this packet's anomalies: (name, layer)
        self._ended = None                # the flow that ended to make room for this packet
        self._flow = None                 # this packet's flow, once looked up

    # -- public API ------------------------------------------------------------

    def process(self, pkt):
        """Inspect one decoded packet and return its Verdict. Never raises."""
        self._found = ()
        self._ended = self._flow = None
        try:
            ts = pkt.ts
            last = self._last_tick
            if last is None or ts - last >= 1.0 or ts < last:
                self.tick(ts)              # the packet's clock: timeouts run on pcap time in replay
            if pkt.frag is not None:       # live, the kernel reassembles; replay, we do
                whole = self.defrag.feed(pkt)
                if whole is None:
                    self.counters.count_packet(pkt)   # held until its datagram completes; the frame counts
                    return HELD
                pkt = whole
            v = self._process(pkt)
            self._emit(pkt, v)
            return v
        except Exception as e:           # a bug must not take the datapath down ...
            self.counters.internal_errors += 1
            found = [*self._found, ("engine." + type(e).__name__, "engine")]
            flow = self._flow
            action = self.settings.anomaly_action
            if flow is not None and not flow.final:
                # ... nor become a verdict in the attacker's favour: the flow's names are
                # unknown from now on, this packet takes the exception policy, nothing is offloaded
                if applayer.cannot_know(flow, "internal_error"):
                    found.append(("exception.internal_error", "engine"))
                action = "drop" if self.settings.exception_policy == "drop" else "pass"
            self._found = found
            v = Verdict(action, False, flow)
            self.counters.count_verdict(action)
            self._emit(pkt, v)
            return v

    def tick(self, now):
        """Expire idle flows and stale fragments; the packet clock calls it about once a
        second, a live source also when no packet came."""
        self._last_tick = now
        self.now = max(self.now, now)
        self.defrag.expire(now)
        for flow in self.flows.expire(now):
            self._end_flow(flow)

    def reload(self, ruleset, settings=None):
        """Swap the rule set (and settings) atomically. Decided flows keep their verdict;
        candidate caches are cleared. New settings apply to flows from now on."""
        if settings is not None:
            self.settings = settings
        self.generation += 1
        self.detector = Detector(ruleset, self.generation, self.settings.exception_policy)
        for flow in self.flows.flows.values():   # candidate masks were for the old rules
            flow.cand_ts = flow.cand_tc = None
        self.ruleset = ruleset

    def stats_event(self):
        ev = events.stats(self, self.now)
        self._write(ev)
        return ev

    def close(self):
        """End every flow (flow events), as at the end of a capture or a worker's life."""
        for flow in self.flows.drain("shutdown"):
            self._end_flow(flow)

    # -- the packet path -------------------------------------------------------

    def _process(self, pkt):
        c = self.counters
        c.count_packet(pkt)
        if pkt.ts > self.now:
            self.now = pkt.ts
        if self.first_ts is None:
            self.first_ts = pkt.ts
        if pkt.ip_version == 0 or not pkt.src:
            action = "drop" if pkt.anomalies and self.settings.anomaly_action == "drop" else "pass"
            c.count_verdict(action)
            return PASS if action == "pass" else Verdict("drop")

        flow, to_server, self._ended = self.flows.lookup(pkt)
        self._flow = flow
        s = self.settings
        if flow.final:                     # decided for good: the fast path
            action = "pass" if flow.verdict == "pass" else "drop"
            c.verdicts[action] += 1
            c.fast_path += 1
            return Verdict(action, s.offload, flow)
        first = flow.pkts_ts + flow.pkts_tc == 1
        if first:
            flow.direction = self._direction(flow, pkt)
            if flow.proto != TCP and flow.proto != UDP:
                flow.app = applayer.FAILED             # no DNS/TLS/HTTP name can ever show
                self._count_app(flow.app)

        # every packet of a flow that is not final is inspected: its packet count is the depth used
        # for packet conditions and alerts; names are read whatever the depth (the app layer
        # bounds them by each protocol's own limits)
        n = flow.pkts_ts + flow.pkts_tc
        within_before = n - 1 < s.depth_packets and flow.inspected_bytes < s.depth_bytes
        flow.inspected_bytes += len(pkt.payload)
        within = n < s.depth_packets and flow.inspected_bytes < s.depth_bytes

        det = self.detector
        cand = det.candidates(pkt, flow, to_server)
        # Verdict rules describe the connection (initiator -> responder), whichever
        # way this packet goes; alert rules look at the packet's own direction.
        cand_flow = cand if to_server else det.connection_candidates(flow)
        scan = [None]
        if first and flow.proto == TCP and not pkt.tcp_flags & SYN:
            # picked up mid-stream: its start, maybe its requests, are behind us
            self._cannot_know(flow, "midstream", cand_flow)
        new_fields = self._applayer(pkt, flow, to_server, cand_flow)

        action = flow.verdict
        decided_now = None                 # the rule that decided on this packet, if any
        decided_here = False
        if action is None or (action == "pass" and new_fields):
            status, rule = det.decide(pkt, flow, to_server, cand_flow, within_before, within, scan)
            if status == MATCH and (action is None or rule.action != "pass"):
                flow.verdict, flow.verdict_rule, decided_now = rule.action, rule, rule
                decided_here = True
            elif status == DEFAULT and (action is None or det.default_action != "pass"):
                # first decision, or a new transaction on a passed flow that no rule
                # passes again (an allow-list's second DNS query / HTTP request)
                flow.verdict = det.default_action
                decided_here = True
        pkt_action = flow.verdict or "pass"
        if pkt_action == "reject" and not decided_here:
            pkt_action = "drop"            # the RST/unreachable went out with the deciding packet

        fired = det.alerts(pkt, flow, to_server, cand, new_fields, scan) if within_before else []
        if decided_now is not None and decided_now.log:
            fired.append(decided_now)
        emitted = []
        for rule in fired:
            if det.thresholds.allow(rule, pkt, flow, pkt.ts):
                flow.alerted = True
                emitted.append(rule)
        c.alerts_suppressed = det.thresholds.suppressed

        if flow.verdict in ("drop", "reject"):
            flow.final = True
        elif flow.verdict == "pass":
            flow.final = not det.more_to_inspect(flow, to_server, within)
        offload = flow.final and s.offload
        if offload:
            flow.offloaded = True
        c.count_verdict(pkt_action)
        return Verdict(pkt_action, offload, flow, emitted)

    def _applayer(self, pkt, flow, to_server, cand):
        """The stream and app-layer stages; returns the app fields that got a new
        transaction on this packet (or whose names can no longer be known)."""
        before = flow.app
        found = []
        reason = None
        if flow.proto == TCP:
            s = self.settings
            st = flow.stream
            if st is None:
                st = flow.stream = ClientStream.open(pkt, to_server, s.verify_checksums, flow.isn)
            if st is not None and st.feed(pkt, to_server, s.stream_bytes, s.verify_checksums, found):
                full = st.complete
                new, reason = applayer.on_stream(flow, st, found)
                # A window filled by this segment may have cut it: once the app layer consumed,
                # the rest fits (its checksum was checked already).
                while full and reason is None and st.feed(pkt, to_server, s.stream_bytes, False, found):
                    full = st.complete
                    more, reason = applayer.on_stream(flow, st, found)
                    new = tuple(dict.fromkeys(new + more))
            else:
                new = ()
                if not to_server and pkt.payload:
                    reason = applayer.on_server_bytes(flow)
        elif flow.proto == UDP:
            new = applayer.on_datagram(flow, pkt.payload)
        else:
            return ()
        if found:
            self._found = [*self._found, *((name, "decode" if name.startswith("tcp.") else "applayer")
                                           for name in found)]
        if reason is not None:
            # a limit hit, framing read two ways, a server not waiting for the name
            changed = self._cannot_know(flow, reason, cand)
            if changed:
                new = tuple(dict.fromkeys(new + changed))
        if flow.app is not before and flow.app is not None and (before is None or not before.known):
            self._count_app(flow.app)
        return new

    def _cannot_know(self, flow, reason, cand):
        """The flow's names can no longer be known for sure: when verdict rules need
        them, mark them UNKNOWN (exception_policy decides how rules read that) and say so.
        Returns the fields that changed."""
        wanted = self.detector.name_fields(cand)
        if not wanted:
            return ()
        changed = applayer.cannot_know(flow, reason, wanted)
        if changed:
            self._found = [*self._found, ("exception." + reason, "engine")]
        return changed

    def _count_app(self, app):
        self.counters.app_flows[app.proto] = self.counters.app_flows.get(app.proto, 0) + 1

    # -- helpers ---------------------------------------------------------------

    def _direction(self, flow, pkt):
        outside = self.settings.outside_ifaces
        if outside and pkt.in_iface:
            inbound = pkt.in_iface in outside
            if pkt.src != flow.src:              # first seen from the responder (SYN/ACK, echo reply)
                inbound = not inbound
            return "inbound" if inbound else "outbound"
        src_in = self.detector.in_home(flow.src)   # HOME_NET: resolved once, by the loader
        dst_in = self.detector.in_home(flow.dst)
        if dst_in and not src_in:
            return "inbound"
        if src_in and not dst_in:
            return "outbound"
        return "any"

    # -- events: written in one place ----------------------------------------

    def _emit(self, pkt, verdict):
        """The packet's events, in order: decode anomalies, flows that ended to make room,
        stage anomalies, alerts."""
        flow = verdict.flow
        for name in pkt.anomalies:
            self._write(events.anomaly(pkt, None, name, "decode"))
        if self._ended is not None:
            self._end_flow(self._ended)
        for name, layer in self._found:
            self._write(events.anomaly(pkt, flow, name, layer))
        if verdict.alerts:
            c = self.counters
            c.alerts += len(verdict.alerts)
            for rule in verdict.alerts:
                c.rule_hits[(rule.id, rule.msg)] += 1
                self._write(events.alert(pkt, flow, rule, verdict.action))

    def _end_flow(self, flow):
        self.counters.flows_ended[flow.reason] = self.counters.flows_ended.get(flow.reason, 0) + 1
        self._write(events.flow(flow))

    def _write(self, event):
        if self.eve is not None:
            self.eve.write(event)
