# cython: nonecheck=True
# (compiled twin: a typed Flow or Packet that is None raises AttributeError, as here, instead of being read as a C struct)
"""The pipeline every source feeds: decode has happened; here a packet goes
defrag -> flow -> stream -> app layer -> detection -> verdict, and events go out.

Each stage owns its state (the flow table its flows, the stream the client's bytes,
the app layer its transactions, the detector whether a flow still needs a look);
the Inspector only sequences them, and writes a packet's events once, at the end.
Live NFQUEUE workers and offline replay call the same `Inspector.process`, so a
fix in one is a fix in both. Time is the packet's own timestamp: in replay the
pcap clock drives timeouts and thresholds exactly as the wall clock does live.
"""
from dataclasses import dataclass, fields, replace

from . import gcpolicy, icmp_error
from .applayer import state as applayer
from .defrag import Defragmenter
from .detect.engine import CLIENT_AWAITED, Detector, MATCH, DEFAULT, server_side
from .detect import flowstate
from .detect import stream_payload
from .detect.kernel_policy import policy_for, KERNEL_DECIDED
from .flow import OFFSET_UNKNOWN, FlowTable, flow_key, handshake_seen
from .flow import MIDSTREAM, MONITORED, UNORIENTED, flag_of, set_direction, set_flag, set_verdict, verdict_of
from .output import events
from .output.limits import EventLimits
from .packet import TCP, UDP, SYN, ACK
from .applayer import DNS_PORTS
from .applayer import dns
from .applayer.server import ServerSide
from .applayer import body as http_body

from .output.eve import EVE_TYPES
PROTOCOL_LOGS = ("dns", "tls", "http")
from .stream import ClientStream


@dataclass
class Settings:
    outside_ifaces: tuple = ()            # live: packets arriving here come from outside
    depth_packets: int | None = None      # inspection depth per flow for content, packet conditions
    depth_bytes: int | None = None        # and alerts (names are read past it); None: by rule set,
                                          # see depth_of
    max_flows: int = 100_000
    offload: bool = True                  # decided flows skip inspection (live: kernel fast path)
    stream_bytes: int = 8192              # client stream bytes held at once for the app layer (it
                                          # consumes what it parsed): the longest line/field it reads
    anomaly_action: str = "pass"          # verdict for packets too malformed to have a flow
    exception_policy: str = "drop"        # when a name cannot be known (ambiguous stream, mid-stream
                                          # pickup, cap hit, internal error): "drop" reads it as any
                                          # name (block rules match, allow rules do not); "ignore"
                                          # as no name (the rules that need it do not match)
    verify_checksums: bool = True         # a bad TCP checksum keeps a segment out of flow tracking
                                          # (live: off, the kernel's conntrack already judged it)
    eve_types: tuple = EVE_TYPES          # the EVE event types written (Suricata's eve-log.types); a
                                          # protocol log on keeps flows inspected while it may log more
    mode: str = "enforce"                 # "monitor": every rule's drop/reject passes (see Inspector._monitored)
    body_bytes: int = 100 * 1024          # file_data: decoded body bytes inspected per transaction
    body_ratio: int = 1000                # ... a coding stage inflating more than this: a bomb
    body_flow_bytes: int = 1 << 20        # ... decoded bytes per flow, all its bodies together
    body_total_bytes: int = 64 << 20      # ... bytes all flows' bodies hold at once (per worker)
    kernel_decisions: bool = False        # header-decided flows are judged by the kernel (live) / marked
                                          # so (replay): detect/kernel_policy.py
    synproxy_ports: frozenset = frozenset()   # server ports behind the kernel's SYN proxy (overload.synproxy):
                                          # their client ACKs count from the cookie (flow.TcpReceiver)


def settings_from_config(cfg, **overrides):
    """Settings from appliance.yaml, for `run` and `replay --config` alike: every key of the
    `inspection:` section that Settings knows (depths, max_flows, policies), offload, and the
    failure mode's verdict for packets without a flow; `overrides` set what the source knows."""
    known = {f.name for f in fields(Settings)}
    values = {f.name: getattr(cfg.inspection, f.name) for f in fields(cfg.inspection) if f.name in known}
    values.update(offload=cfg.offload, anomaly_action="pass" if cfg.fail_open else "drop",
                  eve_types=tuple(cfg.eve_types), mode=cfg.mode)
    proxy = cfg.overload.synproxy if cfg.overload is not None else None
    if proxy is not None:
        values.update(synproxy_ports=frozenset(proxy.ports))
    values.update(overrides)
    return Settings(**values)


class Verdict:
    """What to do with one packet."""
    __slots__ = ("action", "offload", "flow", "alerts", "would")

    def __init__(self, action, offload=False, flow=None, alerts=(), would=None):
        self.action = action              # "pass" | "drop" | "reject"
        self.offload = offload            # flow decided for good: hand it to the kernel
        self.flow = flow
        self.alerts = alerts              # rules whose alert events this packet emitted
        self.would = would                # monitor mode: the "drop"/"reject" enforce mode would have given

    def __repr__(self):
        return f"Verdict({self.action!r}, offload={self.offload}, alerts={[r.id for r in self.alerts]})"


# Inspection depth defaults (docs/performance.md): YAML rule sets look at a flow's first 16
# packets / 8 KiB (both directions together), then it is decided and offloaded; with .rules
# Suricata's: every packet while a loaded rule can still match, up to 1 MiB of payload per
# direction (stream.reassembly.depth; here UDP/ICMP get the same budget, so they end too).
YAML_DEPTH = (16, 8192, False)
SURICATA_DEPTH = (1 << 62, 1 << 20, True)


def depth_of(settings, ruleset):
    """(packets, bytes, bytes_per_direction) for this rule set; the settings' (config
    `inspection:`) numbers override the defaults, the byte count stays per direction
    with .rules."""
    pkts, nbytes, per_dir = SURICATA_DEPTH if ruleset.suricata else YAML_DEPTH
    return (settings.depth_packets if settings.depth_packets is not None else pkts,
            settings.depth_bytes if settings.depth_bytes is not None else nbytes, per_dir)


PASS = Verdict("pass")
# applayer's sentinels as this module's globals: compiled, a global read is a cached C
# lookup, `applayer.X` a module getattr (~240 instructions) on every new flow's packet
SERVER_FIRST = applayer.SERVER_FIRST
FAILED = applayer.FAILED
HELD = Verdict("pass")                    # a fragment held until its datagram is whole (replay)


def _bypassed(flow):
    """A rule's `bypass` ran on this flow (detect/flowstate.py): its alerts look no further.
    Here, not in flowstate: the compiled Inspector reads it as a C function, twice a packet."""
    fv = flow.vars
    return fv is not None and fv.bypass


class Inspector:
    detector_class = Detector             # replay --explain: a tracing subclass (detect/trace.py)

    def __init__(self, ruleset, settings=None, eve=None, pcap_log=None):
        self.settings = settings or Settings()
        self.eve = eve
        self.pcap_log = pcap_log          # output.pcap_log.PcapLog: the packets behind the events, or None
        self.defrag = Defragmenter()
        self.flows = FlowTable(self.settings.max_flows, self.settings.verify_checksums,
                               self.settings.synproxy_ports)
        self.generation = 0
        self.detector = self.detector_class(ruleset, self.generation, self.settings.exception_policy)
        self.ruleset = ruleset
        self.depth = depth_of(self.settings, ruleset)
        self.counters = events.Counters()
        self.limits = EventLimits()           # what a flood may cost in events
        self.first_ts = None
        self.now = 0.0
        self._last_tick = None
        self._found = ()                  # this packet's anomalies: (name, layer)
        self._ended = None                # the flow that ended to make room for this packet
        self._flow = None                 # this packet's flow, once looked up
        self._txs = []                    # this packet's transactions to log: (proto, tx)
        self._untracked = 0               # detector.filters.untracked last reported
        self._answered = None             # HTTP responses this packet settled, for rules on the status
        self._bodies = []                 # this packet's transactions whose body grew (file_data)
        self._body_pool = None            # body bytes all flows may still hold (body_total_bytes)
        self._pool_total = 0
        self._types_set(self.settings)
        self.kernel_policy = None         # settings.kernel_decisions: what the kernel decides (replay: marked)
        self._kernel = {}                 # flow -> the verdict the kernel policy gave it
        self._decided = None              # the decided path's last Verdict that has nothing to write
        self._reject_due = {}             # id(flow) -> flow: a reject a reload enforced, answered on its next packet
        self._kernel_policy()
        self.on_flow_end = None           # a source's callback per ended flow (GENEVE: leave the kernel sets)
        gcpolicy.settle()                 # start-up is done: the GC policy for a long-lived flow table

    # -- public API ------------------------------------------------------------

    def process(self, pkt):
        """Inspect one decoded packet and return its Verdict. Never raises."""
        self._found = ()
        self._ended = self._flow = None
        self._txs = []
        self._answered = None
        self._bodies = []
        v = None                           # _process's answer, once it has counted it
        try:
            ts = pkt.ts
            last = self._last_tick
            if last is None or ts - last >= 1.0 or ts < last:
                self.tick(ts)              # the packet's clock: timeouts run on pcap time in replay
            if pkt.frag is not None:       # live, the kernel reassembles; replay, we do
                whole = self.defrag.feed(pkt)
                if whole is None:
                    self.counters.count_packet(pkt)   # held until its datagram completes; the frame counts
                    if pkt.anomalies:                 # e.g. an overlap discarded the datagram, as the kernel does
                        self._emit(pkt, HELD)
                    return HELD
                pkt = whole
            v = self._process(pkt)
            if v is self._decided:         # a decided flow's packet with nothing to write (_process)
                return v
            if pkt.anomalies or self._found or self._txs or v.alerts or self._ended is not None:
                self._emit(pkt, v)         # (else it would write nothing)
            if self.pcap_log is not None:
                self._log_packet(pkt, v)
            flow = v.flow
            if flow is not None and flow.final:
                _release(flow)
            return v
        except Exception as e:           # a bug must not take the datapath down ...
            self.counters.internal_errors += 1
            found = [*self._found, ("engine." + type(e).__name__, "engine")]
            flow = self._flow or self._flow_of(pkt)
            action = self.settings.anomaly_action
            if flow is not None and not flow.final:
                # ... nor become a verdict in the attacker's favour: the flow's names are
                # unknown from now on, this packet takes the exception policy, nothing is offloaded
                if applayer.cannot_know(flow, "internal_error"):
                    found.append(("exception.internal_error", "engine"))
                action = "drop" if self.settings.exception_policy == "drop" else "pass"
            would = None
            if flow is not None and flow.final and flow.verdict != "pass":
                # decided for good (maybe on this packet, before its events failed): a drop
                # stands, or the very packet a drop rule matched would pass
                action = "drop"
                if flow.monitored:         # what enforcement would do: the flow's own verdict
                    would, action = ("reject" if flow.verdict == "reject" else "drop"), "pass"
                    if v is None or v.would != would:      # (_process counted its own would)
                        self.counters.would_block[would] += 1
            self._found = found
            if flow is not None and flow.final:
                _release(flow)             # (the decided path counts on a final flow being released)
            if v is not None:              # _process counted its answer: this one replaces it
                self.counters.verdicts[v.action] -= 1
            self.counters.count_verdict(action)
            v = Verdict(action, False, flow, (), would)
            try:
                self._emit(pkt, v)         # the sink may be what failed: the verdict still returns
            except Exception:
                self.counters.internal_errors += 1
            if self.pcap_log is not None:
                self._log_packet(pkt, v)
            return v

    def _log_packet(self, pkt, v):
        """The pcap log's look at the packet: a bug there is counted, never a verdict."""
        try:
            self.pcap_log.packet(pkt, v, self.detector)
        except Exception:
            self.counters.internal_errors += 1

    def _flow_of(self, pkt):
        """The packet's flow, if the table has one, when the error came before the lookup."""
        try:
            return self.flows.flows.get(flow_key(pkt))
        except Exception:
            return None

    def tick(self, now):
        """Expire idle flows and stale fragments; the packet clock calls it about once a
        second, a live source also when no packet came. Never raises (a worker's loop
        calls it outside any packet)."""
        self._last_tick = now
        self.now = max(self.now, now)
        try:
            self.defrag.expire(now)
            for flow in self.flows.expire(now):
                try:                       # out of the table already: one failing end must not
                    self._end_flow(flow)   # leave the rest un-ended (kernel sets, _kernel, rings)
                except Exception:
                    self.counters.internal_errors += 1
        except Exception:                 # a bug: counted (stats), the worker lives on
            self.counters.internal_errors += 1

    def reload(self, ruleset, settings=None, detector=None):
        """Swap the rule set (and settings) atomically. Decided flows keep their verdict;
        candidate caches are cleared. New settings apply to flows from now on. `detector`:
        one built from `ruleset` beforehand (a live worker builds it beside the running one).
        Returns the monitored flows whose drop/reject is enforced now (_enforce_monitored)."""
        if settings is not None:
            self.settings = settings
            self.flows.verify_checksums = settings.verify_checksums
            # new flows: a server port added to (or taken from) the SYN proxy (flow.py _PROXIED)
            self.flows.proxied_ports = settings.synproxy_ports
            self._types_set(settings)
        self.generation += 1
        if detector is None:
            detector = self.detector_class(ruleset, self.generation, self.settings.exception_policy)
        detector.generation = self.generation
        detector.exception_policy = self.settings.exception_policy   # read per decision, not at build
        flowstate.remap(self.flows.flows.values(), self.detector.state, detector.state)
        self.detector = detector
        self._untracked = 0                    # the new detector's filters count from 0
        for flow in self.flows.flows.values():   # candidate masks were for the old rules
            flow.cand_ts = flow.cand_tc = None
            if flow.app is applayer.SERVER_FIRST:
                flow.client_awaited = False    # (the new rules may watch more: its next packet tells)
            if flow.stream is not None:
                flow.stream.unsettle()         # (... and judge more of its bytes: stream.py settle)
        old_rules, self.ruleset = self.ruleset.rules, ruleset
        self.depth = depth_of(self.settings, ruleset)
        self._kernel_policy()
        enforced = self._enforce_monitored(old_rules, ruleset)
        # a reject monitor mode passed got no RST/unreachable: its flow's next packet gets one
        # (then what follows is rejected or dropped, as after any reject); held until then or
        # the flow's end (_end_flow), across later reloads too (review s7)
        self._reject_due.update({id(f): f for f in enforced if f.verdict == "reject"})
        return enforced

    def _enforce_monitored(self, old_rules, ruleset):
        """Flows passed only because their drop/reject was monitored, whose decision the
        reloaded rules still give and enforce now: they take it from their next packet (a
        long-lived connection found in monitor mode must not outlive the switch to enforce).
        "Still give": the deciding rules up to the flow's own (same gid and id, matching and
        deciding as before) are unchanged, or for the default action all of them are -- a pass
        rule added ahead of it (an exception made in monitor mode) passes the flow (review
        rvall). Monitor mode kept these flows from the kernel, so their next packet comes
        here. Returns them."""
        before = [r for r in old_rules if r.decides]
        after = [r for r in ruleset.rules if r.decides]
        same = 0                   # how many deciding rules, from the first, are unchanged
        for a, b in zip(before, after):
            if (a.gid, a.id) != (b.gid, b.id) or not _same_decision(a, b):
                break
            same += 1
        position = {id(r): i for i, r in enumerate(before)}
        enforced = []
        for flow in self.flows.flows.values():
            if not flow.monitored or not flow.final or flow.verdict == "pass":
                continue
            old = flow.verdict_rule
            if old is None:
                kept = same == len(before) == len(after) and ruleset.default_action == flow.verdict
                rule = None
            else:
                at = position.get(id(old), len(before))
                kept = at < same
                rule = after[at] if kept else None
            if not kept or self._monitored(rule):
                continue
            flow.monitored = False
            flow.verdict_rule = rule
            enforced.append(flow)
        return enforced

    def _kernel_policy(self):
        """The kernel policy of the running rules and settings (None when kernel_decisions is off)."""
        s = self.settings
        pl = self.pcap_log
        recorded = None if pl is None else "all" if pl.all else "alerts"
        self.kernel_policy = policy_for(s, self.ruleset, recorded) if s.kernel_decisions else None

    def _types_set(self, settings):
        types = frozenset(settings.eve_types)
        self.types = types
        self.protologs = types.intersection(PROTOCOL_LOGS)

    def stats_event(self):
        ev = events.stats(self, self.now)
        if "stats" in self.types:
            self._write(ev)
        return ev

    def close(self):
        """End every flow (flow events), as at the end of a capture or a worker's life."""
        for flow in self.flows.drain("shutdown"):
            try:                           # as in tick(): one failing end must not lose the rest
                self._end_flow(flow)
            except Exception:
                self.counters.internal_errors += 1

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
        s = self.settings
        if pkt.unread:
            return self._unread(pkt)
        if pkt.quote is not None:
            quoted = icmp_error.quoted_flow(self.flows, pkt)
            if quoted is not None:         # judged with the connection conntrack relates it to
                action, offload = icmp_error.related_verdict(quoted, s.offload)
                would = None
                if action != "pass" and quoted.monitored:
                    would, action = action, "pass"
                    c.would_block[would] += 1
                c.count_verdict(action)
                return Verdict(action, offload, quoted, would=would)
        # An offload mark lands on the packet's conntrack entry: an ICMP error's is the
        # connection it quotes, never one of ours to decide here (icmp_error.py).
        may_offload = s.offload and not (pkt.proto != TCP and pkt.proto != UDP and icmp_error.is_error(pkt))

        flow, to_server, self._ended = self.flows.lookup(pkt)
        if to_server is None:
            return self._wrong_side()
        if (flow.final and pkt.proto == TCP and pkt.tcp_flags & (SYN | ACK) == SYN
                and (not to_server and handshake_seen(flow) or flow.midstream)):
            # A bare SYN from the old responder (live, conntrack calls one on an open entry
            # INVALID: this is a new entry, the other way), or on a flow picked up mid-stream
            # (no handshake: no challenge ACK to tell the old connection from a new one): a
            # new connection, inspected from its SYN (review s9: it inherited the old pass)
            flow, to_server = self._reopened(flow, pkt)
        self._flow = flow
        if flow.final:                     # decided for good: the fast path
            action = "pass" if flow.verdict == "pass" else "drop"
            # A bare SYN on a decided connection whose handshake is done: live, the kernel
            # queues every one (netfilter.py clears its connection's mark). The old connection,
            # if open, ignores it (challenge ACK: this flow goes on, offloaded again); a server
            # that forgot it answers with a SYN/ACK, which starts a new flow and a new
            # inspection (FlowTable.lookup). So the SYN passes unoffloaded, for the answer to
            # be queued too -- never with data (TFO: a new connection would read it unjudged;
            # the client sends its SYN again without).
            syn = pkt.proto == TCP and pkt.tcp_flags & (SYN | ACK) == SYN and handshake_seen(flow)
            if syn:
                action = "drop" if pkt.payload else "pass"
            elif self._reject_due and self._reject_due.pop(id(flow), None) is flow:
                action = "reject"          # monitor mode sent no answer: the enforcing reload's first packet does
            would = None
            if action != "pass" and flow.monitored:
                would, action = action, "pass"
                c.would_block[would] += 1
            c.verdicts[action] += 1
            c.fast_path += 1
            # (its flow was released when it became final)
            return self._unwritten(pkt, Verdict(action, may_offload and would is None and not syn, flow, (), would))
        if (flow.app is SERVER_FIRST and flow.client_awaited and not (to_server and pkt.payload)
                and not pkt.tcp_flags & SYN):
            # (a SYN/ACK still settles a Fast Open SYN's data in the client stream: review s15 F1)
            # passed, its server spoke first, and nothing but its client's first bytes may
            # change that (more_to_inspect: CLIENT_AWAITED): not final (no offload, which a
            # spoofed server byte would buy), yet every other packet (a banner the client
            # never answers, passive FTP data) costs about a decided flow's, no app layer
            size = len(pkt.payload)
            flow.inspected_bytes += size
            if not to_server:
                flow.inspected_tc += size
            c.verdicts["pass"] += 1
            return self._unwritten(pkt, Verdict("pass", False, flow))
        det = self.detector
        addrs = None
        first = flow.pkts_ts + flow.pkts_tc == 1
        if first:
            # its addresses walked once: HOME_NET for the direction, the masks for candidates
            addrs = det.header_addresses(pkt)
            set_direction(flow, self._direction(pkt, not to_server, addrs))
            if flow.proto != TCP and flow.proto != UDP:
                flow.app = FAILED                      # no DNS/TLS/HTTP name can ever show
                self._count_app(flow.app)
            elif flow.proto == TCP and not pkt.tcp_flags & SYN:
                flow.midstream = flow.unoriented = True   # picked up without its handshake: who began it is unknown
            elif flow.proto == UDP and server_side(flow) == "b":
                # A datagram has no handshake: its first sender is only who spoke first. From a
                # port below 1024 to one above, that is the server (a reply, or a datagram an
                # outside host sent to open the flow before the client's query): read both ways,
                # or one datagram from S:53 makes `dst_port: 53` rules miss the client's queries.
                flow.unoriented = True
            if self.kernel_policy is not None:
                # live, the kernel judges this flow before any queue; replay says it would have
                kv = self.kernel_policy.decide(pkt.proto, pkt.src, pkt.sport, pkt.dst, pkt.dport,
                                               flow.direction, pkt.tcp_flags)
                if kv is not None:
                    self._kernel[flow] = kv
                    flow.offloaded = KERNEL_DECIDED
                    c.kernel_decided += 1

        # every packet of a flow that is not final is inspected: its packet count is the depth used
        # for packet conditions and alerts; names are read whatever the depth (the app layer
        # bounds them by each protocol's own limits)
        n = flow.pkts_ts + flow.pkts_tc
        depth_packets, depth_bytes, per_direction = self.depth
        size = len(pkt.payload)
        if per_direction:                  # .rules: each direction has its own byte budget
            tc = flow.inspected_tc
            ts = flow.inspected_bytes - tc
            within_before = n - 1 < depth_packets and (ts if to_server else tc) < depth_bytes
            if to_server:
                ts += size
            else:
                tc += size
            within = n < depth_packets and (ts < depth_bytes or tc < depth_bytes)
            # each direction's own: its alert rules hold the flow only while it is within
            within_dirs = (within and (ts if to_server else tc) < depth_bytes,
                           within and (tc if to_server else ts) < depth_bytes)
        else:
            within_before = n - 1 < depth_packets and flow.inspected_bytes < depth_bytes
            within = n < depth_packets and flow.inspected_bytes + size < depth_bytes
            within_dirs = within
        flow.inspected_bytes += size
        if not to_server:
            flow.inspected_tc += size

        # A bare SYN from the responder before a handshake completed: both ends opened, a
        # simultaneous open or one SYN spoofed from outside (review s15 F3: a SYN from the
        # server's side made the client's request read as server bytes, never named). Who
        # the client is cannot be known: read both ways and against the attacker, as a flow
        # picked up mid-stream (its next SYN, once it is decided, starts a new inspection)
        two_syns = (not first and not to_server and flow.proto == TCP and pkt.tcp_flags & (SYN | ACK) == SYN
                    and not flow.midstream and not handshake_seen(flow))
        if two_syns:
            flow.midstream = flow.unoriented = True
        cand = det.candidates(pkt, flow, pkt.from_initiator, addrs)   # by its sender's end (FlowTable.lookup)
        # Verdict rules describe the connection (initiator -> responder), whichever
        # way this packet goes; alert rules look at the packet's own direction.
        if flag_of(flow, UNORIENTED):      # the initiator is unknown: both orientations, against the attacker
            cand_flow, flipped = det.unoriented_candidates(flow)
        else:
            cand_flow, flipped = (cand if to_server else det.connection_candidates(flow)), 0
        scan = [None]
        limits = det.start_packet()
        unknown_now = ()
        if (first or two_syns) and flag_of(flow, MIDSTREAM):
            # picked up mid-stream: its start, maybe its requests, are behind us
            unknown_now = self._cannot_know(flow, "midstream", cand_flow)
            if cand_flow & det.decision & det.reads:
                # ... and the flowbits/flowints its earlier packets set (engine.packet_match)
                flowstate.cannot_know(flow)
                self._found = [*self._found, ("exception.midstream", "engine")]
        new_fields = self._applayer(pkt, flow, to_server, cand_flow)
        if two_syns and unknown_now:
            new_fields = tuple(new_fields) + tuple(unknown_now)   # judged again, even if passed
        if det.stream:
            det.view = det.stream_scan = None
            if flow.proto == TCP and within_before and (cand | cand_flow) & det.stream:
                self._stream_view(pkt, flow, to_server, cand_flow)

        answered = self._answered
        if answered is not None and answered[1] and det.response_rules(flow, False):
            # a transaction's status the server may have sent will not be read: say so
            self._found = [*self._found, ("exception." + answered[2], "engine")]
        action = verdict_of(flow)
        decided_now = None                 # the rule that decided on this packet, if any
        decided_here = False
        det.body_txs = self._bodies
        if action is None or (action == "pass" and (new_fields or answered is not None or self._bodies)):
            more = within if within_dirs is within else (
                within_dirs if to_server else (within_dirs[1], within_dirs[0]))   # (ts, tc)
            status, rule = det.decide(pkt, flow, to_server, cand_flow, within_before, more, scan, flipped,
                                      bool(pkt.discard), answered)
            if status == MATCH and (action is None or rule.action != "pass"):
                set_verdict(flow, rule.action)
                flow.verdict_rule = decided_now = rule
                decided_here = True
                set_flag(flow, MONITORED, self._monitored(rule))
            elif status == DEFAULT and (action is None or det.default_action != "pass"):
                # first decision, or a new transaction on a passed flow that no rule
                # passes again (an allow-list's second DNS query / HTTP request)
                set_verdict(flow, det.default_action)
                decided_here = True
                set_flag(flow, MONITORED, self._monitored(None))
        verdict = verdict_of(flow)         # read once (flow.py's C calls, compiled)
        pkt_action = verdict or "pass"
        if pkt_action == "reject" and not decided_here:
            pkt_action = "drop"            # the RST/unreachable went out with the deciding packet
        # Monitor mode changes the packet's verdict only: the flow keeps the rule's decision
        # (final, no more inspection, as enforce mode), so later rules see exactly what they
        # would see enforcing and the alerts are the same; the flow is passed (kept here, not
        # offloaded: below), and its alerts say what enforce mode would have done.
        would = None
        if pkt_action != "pass" and flag_of(flow, MONITORED):
            would, pkt_action = pkt_action, "pass"
            c.would_block[would] += 1

        # bypass: alert rules no longer look at the flow (it is held only for a verdict rule)
        look = within_before and not _bypassed(flow)
        fired = det.alerts(pkt, flow, to_server, cand, new_fields, scan, bool(pkt.discard), answered) if look else []
        if det.filters.untracked != self._untracked:
            # a detection_filter count this packet needed could not be kept (engine.packet_match)
            self._untracked = det.filters.untracked
            self._found = [*self._found, ("detect.filter_untracked", "engine")]
        if self._bodies and det.body_rules:     # bodies are bounded by their own depth
            fired += det.body_alerts(pkt, flow, to_server, cand, self._bodies, scan)
        if decided_now is not None and decided_now.logs:
            fired.append(decided_now)
        emitted = []
        for rule in fired:
            if det.thresholds.allow(rule, pkt, flow, pkt.ts):
                flow.alerted = True
                emitted.append(rule)
        c.alerts_suppressed = det.thresholds.suppressed
        if det.limits[0] != limits:        # a rule's inspection reached its bound: read against the attacker
            self._found = [*self._found, ("detect.inspection_limit", "engine")]

        if verdict == "drop" or verdict == "reject":
            flow.final = True
        elif verdict == "pass":
            # bypass: a matched rule ended the alerts' and logs' look at the passed flow; a
            # verdict rule that may still change the verdict (a later request's name) keeps it
            if _bypassed(flow):
                more = det.more_to_inspect(flow, to_server, within_dirs, alerts=False)
                held = more or self._answers_due(flow, within)
            else:
                more = det.more_to_inspect(flow, to_server, within_dirs)
                held = more or self._logs_more(flow) or self._answers_due(flow, within)
            # Passed on bytes the server has not acknowledged: they may die before it (a low
            # TTL) and other bytes at their place reach it, read here as a resend compared with
            # the kept ones (stream.py): not final, nor offloaded, until the server's ACK
            # (review s19d F2/F4)
            flow.final = not held
            if not held and flow.stream is not None and flow.stream.unconfirmed:
                flow.final = False
                flow.stream.settle()           # (what it was judged on is all it keeps)
            if (more is CLIENT_AWAITED and not (self._logs_more(flow) or self._answers_due(flow, within))
                    and not (self._kernel and flow in self._kernel)):
                flow.client_awaited = True     # only the client's first bytes hold it: the path above
        if flow.final:
            self.flows.file(flow)          # the first a flood may evict from now on
            self._txs += self._unanswered(flow)
        # a drop/reject monitor mode passes stays with the worker: a reload that enforces it
        # finds the flow and stops it (offloaded, its idle timeout would drop it from the
        # table while the kernel kept passing it, and no connmark could be found for a NATed
        # or ICMP flow; review rvlead)
        offload = flow.final and may_offload and would is None
        if offload and not flow.offloaded:
            flow.offloaded = True
        if self._kernel and flow in self._kernel:
            self._kernel_check(flow, pkt_action)
        c.count_verdict(pkt_action)
        return Verdict(pkt_action, offload, flow, emitted, would)

    def _unwritten(self, pkt, v):
        """v, for a decided (or held server-first) flow's packet; when there is nothing to
        write for it (no anomaly: no event; no flow ended for it, nothing found, no
        transaction or alert on such a flow, no packet for the pcap log), process() returns
        it as it is (cold code a ping skips). The pcap log in mode `alerts` has nothing to do
        with a passed flow decided for good that never alerted: its ring went when it became
        final (PcapLog.packet)."""
        if not pkt.anomalies and self._ended is None and not self._found:
            pl = self.pcap_log
            if pl is None:
                self._decided = v
            else:
                flow = v.flow
                if not pl.all and flow.final and not flow.alerted and flow.verdict == "pass":
                    self._decided = v
        return v

    def _kernel_check(self, flow, pkt_action):
        """A kernel-decided flow's packet got the kernel's verdict from the engine too (a reject
        answers the first packet, the kernel drops the rest); else say so: the compiled
        policy and the engine disagree (a bug in kernel_policy.py)."""
        kv = self._kernel[flow]
        first = flow.pkts_ts + flow.pkts_tc == 1
        if pkt_action == (kv if first or kv != "reject" else "drop"):
            return
        self.counters.kernel_mismatch += 1
        self._found = [*self._found, ("kernel.policy_mismatch", "engine")]

    def _reopened(self, flow, pkt):
        """A new connection on a decided flow's ports (the caller says when): the old
        verdict was for the old connection. The old flow ends; the new one is inspected
        from this SYN."""
        self.flows.remove(flow, "reused")
        self._end_flow(flow)
        flow, to_server, ended = self.flows.lookup(pkt)
        if ended is not None:
            if self._ended is None:
                self._ended = ended
            else:
                self._end_flow(ended)
        return flow, to_server

    def _wrong_side(self):
        """A packet of a known flow that entered on the interface its other end's packets
        enter on (appliance/ingress.py): its source address is not its sender's (a client
        speaking for its server: a forged RST, SYN/ACK or ACK that would move the flow's
        state where the server's never goes, reviews s19 F6, s19c H8/H9). It never reaches
        the flow (no state, count or stream) and is dropped; monitor mode: would."""
        self._found = [*self._found, ("flow.wrong_side", "flow")]
        action, would = "drop", None
        if self.settings.mode == "monitor":
            would, action = action, "pass"
            self.counters.would_block[would] += 1
        self.counters.count_verdict(action)
        return Verdict(action, False, None, (), would)

    def _unread(self, pkt):
        """A packet whose transport the decoder could not read (an IPv6 extension-header
        chain longer than it follows, a cut transport header). Linux may still key it to a
        real connection (it follows any chain within the packet) and it may carry that
        connection's data, so it gets no flow of its own and is never offloaded; its
        addresses decide what they can (Detector.decide_unread), the exception policy
        the rest."""
        rule, used = self.detector.decide_unread(pkt, self._direction(pkt))
        if used:
            self._found = [*self._found, ("exception.unread", "engine")]
        action = rule.action if rule is not None else self.detector.default_action
        if action == "reject":
            action = "drop"                # no ports to answer with a reset
        would = None
        if action != "pass" and self._monitored(rule):
            would, action = action, "pass"
            self.counters.would_block[would] += 1
        self.counters.count_verdict(action)
        return Verdict(action, False, None, [rule] if rule is not None and rule.logs else [], would)

    def _monitored(self, rule):
        """Does a drop/reject by `rule` (None: the default action) only alert? In monitor
        mode every one does; otherwise those of rule files in monitor mode (a YAML file's
        `mode: monitor`, the config's rules_mode), the default action when such a file set it."""
        if self.settings.mode == "monitor":
            return True
        return rule.monitor if rule is not None else self.ruleset.default_monitor

    def _applayer(self, pkt, flow, to_server, cand):
        """The stream and app-layer stages; returns the app fields that got a new
        transaction on this packet (or whose names can no longer be known)."""
        before = flow.app
        found = []
        reason = None
        loggable = True
        if flow.proto == TCP:
            s = self.settings
            st = flow.stream
            if st is None:
                st = flow.stream = ClientStream.open(pkt, to_server, flow.isn)
            if st is not None and not st.ambiguous and flow.tcp is not None and flow.tcp.ack_offset == OFFSET_UNKNOWN:
                # behind the SYN proxy without the cookie's offset the client's ACKs cannot be
                # read: which of its segments the server discarded (an ACK too old) is unknown
                st.ambiguous = True
            if st is not None and st.feed(pkt, to_server, s.stream_bytes, found):
                full = st.complete
                bodies = self._request_bodies(flow)
                new, reason = applayer.on_stream(flow, st, found, (), bodies)
                app = flow.app
                if ((new or (app is not before and app is not None and (before is None or not before.known)))
                        and cand & self.detector.app_any):
                    # the bytes that named something, or told the protocol (or none), and a rule
                    # reads names: a pass rests on them (none does on a port rule's flow)
                    st.judged()
                self._request_progress(flow)
                # A window filled by this segment may have cut it: once the app layer consumed,
                # the rest fits (its checksum was checked already).
                while full and reason is None and st.feed(pkt, to_server, s.stream_bytes, found, True):
                    full = st.complete
                    more, reason = applayer.on_stream(flow, st, found, new, bodies)
                    if more and cand & self.detector.app_any:
                        st.judged()
                    self._request_progress(flow)
                    new = tuple(dict.fromkeys(new + more))
            else:
                new = ()
                if not to_server and pkt.payload:
                    reason = applayer.on_server_bytes(flow, st is not None and bool(st.base or st.data))
            app = flow.app
            if (to_server and app is not None and app.server is not None and app.proto == "tls" and app.done
                    and app.server.waiting and "tls" not in new):
                # the client went past its hello (encrypted records, its next handshake message):
                # it did so after the ServerHello; one not read by now (a capture of one
                # direction) never will be: log what is known. (Not on the packet of a hello:
                # a second one after a HelloRetryRequest ends the client's reading, and its
                # ServerHello is still to come.)
                self._txs += [("tls", t) for t in app.server.flush()]
            if not to_server and app is not None and app.server is not None:
                # the server's answers, for the protocol logs: what they complete is logged now
                try:
                    answered = app.server.feed(pkt)
                except Exception:          # a log's reader must not turn into a verdict: counted,
                    self.counters.internal_errors += 1     # and what waits is logged as is
                    answered = app.server.flush("internal_error")
                self._body_progress(app.server, found)
                if app.server.proto in self.protologs:   # (else read for rules on the status or bodies only)
                    self._txs += [(app.server.proto, t) for t in answered]
                    if app.server.proto == "dns" and answered:
                        applayer.dns_responses_logged(answered, found)
            if reason is None and st is not None:
                if st.ambiguous:
                    # the client's bytes read two ways (a conflicting overlap, an urgent mark
                    # whose effect depends on when the server reads): no name from them is sure
                    reason = "stream_ambiguous"
                elif st.lost:
                    reason = "cap"         # bytes the server reads that the window let go
        elif flow.proto == UDP:
            responses = [] if "dns" in self.protologs else None
            new, reason = applayer.on_datagram(flow, pkt.payload, responses, found)
            # Rules read any datagram that parses as a DNS query (against the attacker); the
            # log takes only plausible DNS (a qtype, a known class): a DHCP or NTP datagram
            # that happens to parse is not a DNS transaction to a SIEM, nor to a packet analyser
            # (asked only when a log line depends on it: most datagrams bring no response and
            # no new query, and the check parses the first name)
            loggable = responses is not None and bool(responses or new) and dns.plausible(pkt.payload)
            if responses and loggable:
                self._txs = [("dns", m) for m in responses]
                applayer.dns_responses_logged(responses, found)
        else:
            return ()
        if new and (self.protologs or self.detector.needs_responses or self._reads_bodies(flow)):
            # this packet's new transactions, logged before a limit below may mark the names
            # unknown (the transactions read so far were read for sure)
            app = flow.app
            logged = app.proto in new and app.proto in self.protologs and (flow.proto == TCP or loggable)
            # a rule on the response status or on bodies that may apply: the server's answers are read for it
            for_rules = (flow.proto == TCP and app.proto == "http" and "http" in new
                         and (self.detector.response_rules(flow) or self._reads_bodies(flow)))
            if logged or for_rules:
                tx = app.tx
                txs = tx if isinstance(tx, list) else [tx]
                if flow.proto == TCP:
                    # logged once answered (or when no answer can come): ServerSide
                    if app.server is None:
                        bodies = None
                        if self._reads_bodies(flow):   # one budget for the flow: the requests' reader's
                            bodies = getattr(app.reader, "bodies", None) or self._body_limits()
                        app.server = ServerSide(app.proto, flow, self.settings.stream_bytes, bodies)
                    txs = app.server.wait(txs)
                if logged:
                    self._txs += [(app.proto, t) for t in txs]
        if flow.proto == TCP and flow.app is not None and flow.app.server is not None:
            self._settle(flow.app)         # (a server side to settle: most flows have none)
        if found:
            self._found = [*self._found, *[(name, "decode" if name.startswith("tcp.") else
                                            "stream" if name.startswith("stream.") else "applayer")
                                           for name in found]]
        if reason is not None:
            # a limit hit, framing read two ways, a server not waiting for the name
            changed = self._cannot_know(flow, reason, cand)
            if changed:
                new = tuple(dict.fromkeys(new + changed))
        if flow.app is not before and flow.app is not None and (before is None or not before.known):
            self._count_app(flow.app)
        return new

    def _stream_view(self, pkt, flow, to_server, cand):
        """payload: stream rules may look at this flow: its direction's reassembled bytes
        (detect/stream_payload.py), within the inspection depth only (the caller)."""
        det = self.detector
        found = []
        view = det.view = stream_payload.view(flow, pkt, to_server, det.keep, self.settings.stream_bytes, found)
        if view is not None and to_server and flow.stream is not None and cand & det.stream & det.block & ~det.only_tc:
            flow.stream.read()             # a pass rests on these bytes too (review s21 C)
        if view is not None and view[0].unknown and not view[0].reported and cand & det.stream & det.block:
            view[0].reported = True        # read against the attacker from now on: say so once
            found.append("exception.stream_ambiguous")
        if found:
            self._found = [*self._found, *((name, "engine" if name.startswith("exception.") else
                                            "decode" if name.startswith("tcp.") else "stream")
                                           for name in found)]

    def _settle(self, app):
        """The HTTP responses this packet settled (their status read, or no longer readable),
        for the rules on the status; kept on the app state for the alert's http object.
        Taken even when no rule reads the status: else every answered request of a
        keep-alive connection is held until it ends."""
        server = app.server
        if server is None or server.proto != "http":
            return
        txs, unread, why = server.settled()
        if not self.detector.needs_responses:
            return
        if txs or unread:
            self._answered = (txs, unread, why)
            app.answered = txs + unread
        elif app.answered:
            app.answered = ()

    def _answers_due(self, flow, within):
        """A rule on the response status may still judge a transaction whose status has not
        been read (within the server side's bounds, applayer/server.py): the flow is not
        final. Alert rules only within the inspection depth, where alerts look."""
        app = flow.app
        server = app.server if app is not None else None
        return (server is not None and server.proto == "http" and server.active
                and bool(self.detector.response_rules(flow, within)))

    # -- file_data: response bodies (applayer/body.py, detect/file_data.py) ----------

    def _reads_bodies(self, flow):
        """Bodies are read when a loaded rule reads file_data and the flow speaks HTTP."""
        app = flow.app
        return bool(self.detector.body_rules) and app is not None and app.proto == "http"

    def _body_limits(self):
        s = self.settings
        limits = http_body.Limits(s.body_bytes, s.body_ratio, s.body_flow_bytes, s.body_total_bytes)
        pool = self._body_pool
        if pool is None:
            pool = self._body_pool = http_body.Pool(limits)
        elif self._pool_total != s.body_total_bytes:
            pool.left += s.body_total_bytes - self._pool_total   # a reload changed the bound
        self._pool_total = s.body_total_bytes
        return limits, http_body.FlowBudget(limits, pool)

    def _body_progress(self, server, found):
        """The bodies this server packet grew or ended, and what their reading said."""
        reader = server.reader
        grown = getattr(reader, "grown", None)
        if grown:
            self._bodies = list(grown)
            found += reader.found
            reader.grown, reader.found = [], []

    def _request_bodies(self, flow):
        """What a new request reader reads request bodies with (None: none are read)."""
        if not self.detector.body_rules or flow.proto != TCP:
            return None
        app = flow.app
        if app is not None and (app.proto != "http" or app.reader is not None):
            return None                    # not HTTP, or its reader exists already
        return self._body_limits()

    def _request_progress(self, flow):
        """The request bodies this client packet grew or ended."""
        app = flow.app
        reader = app.reader if app is not None else None
        grown = getattr(reader, "grown", None)
        if grown:
            self._bodies = self._bodies + grown
            reader.grown = []

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

    def _logs_more(self, flow):
        """A protocol log is on and the flow's app layer may still produce a transaction
        to log: the flow is not final. Bounded by the app layer's own limits: a TCP flow
        names its protocol within its first 64 client bytes or never; a reader that gives
        up or hits a limit is done; TLS reads at most two ClientHellos; DNS over UDP on a
        DNS port stays inspected until the flow ends (each datagram may be a query). Or a
        logged TCP transaction's answer may still come (applayer/server.py: its bounds,
        1 MiB of the server's bytes, 64 waiting)."""
        logs = self.protologs
        if not logs or (flow.proto != TCP and flow.proto != UDP):
            return False
        app = flow.app
        if flow.proto == UDP:
            return ("dns" in logs and (app is None or app.unknown is None)
                    and (flow.dport in DNS_PORTS or flow.sport in DNS_PORTS
                         or (app is not None and app.proto == "dns")))
        if app is None:
            return True                    # its protocol is not known yet
        if app.server is not None and app.server.active:
            return True                    # a logged transaction's answer may still come
        return app.known and app.proto in logs and app.multi_tx

    def _unanswered(self, flow):
        """The flow is decided for good or ends: its transactions still waiting for an
        answer are logged with what is known."""
        app = flow.app
        if app is None or app.server is None:
            return []
        server, app.server = app.server, None
        if server.done or server.proto not in self.protologs:
            return []                      # (read for rules on the status or file_data only: nothing to log)
        return [(server.proto, t) for t in server.flush()]

    def _count_app(self, app):
        self.counters.app_flows[app.proto] = self.counters.app_flows.get(app.proto, 0) + 1

    # -- helpers ---------------------------------------------------------------

    def _direction(self, pkt, from_responder=False, addrs=None):
        """The direction of the connection `pkt` starts (its flow's first packet), or of the
        packet alone (_unread). `addrs`: the detector's header_addresses(pkt), whose HOME_NET
        answers are read instead of asking HOME_NET's own trie."""
        outside = self.settings.outside_ifaces
        if outside and pkt.in_iface:
            inbound = pkt.in_iface in outside
            if from_responder:                   # first seen from the responder (SYN/ACK, echo reply):
                inbound = not inbound            # by the key's side, not the address (one host, two ports)
            return "inbound" if inbound else "outbound"
        # the initiator's address and the responder's: the packet's own (its text, already
        # made), the other way round when the responder sent it; not Flow.src/dst, which
        # make the text again from the key (two per new flow: a SYN flood's every packet)
        if addrs is not None:
            src_in, dst_in = addrs[0][1], addrs[1][1]      # the packet's source's, destination's
            if from_responder:
                src_in, dst_in = dst_in, src_in
        else:
            src, dst = (pkt.dst, pkt.src) if from_responder else (pkt.src, pkt.dst)
            src_raw, dst_raw = (pkt.dst_raw, pkt.src_raw) if from_responder else (pkt.src_raw, pkt.dst_raw)
            det = self.detector
            src_in = det.in_home(src, src_raw)   # HOME_NET: resolved once, by the loader
            dst_in = det.in_home(dst, dst_raw)
        if dst_in and not src_in:
            return "inbound"
        if src_in and not dst_in:
            return "outbound"
        return "any"

    # -- events: written in one place ----------------------------------------

    def _emit(self, pkt, verdict):
        """The packet's events, in order: decode anomalies, flows that ended to make room,
        stage anomalies, protocol logs (its new transactions), alerts; each type only when
        `eve_types` has it."""
        flow = verdict.flow
        if pkt.anomalies and "anomaly" in self.types:
            self._anomalies(pkt, None, [(name, "decode") for name in pkt.anomalies])
        ended = self._ended
        if ended is not None:
            self._ended = None             # ended once: the error path must not end it again
            self._end_flow(ended)
        if self._found and "anomaly" in self.types:
            self._anomalies(pkt, flow, self._found)
        eve = self.eve                    # (no writer, as in a replay without --eve: no event is built)
        if eve is not None:
            for proto, tx in self._txs:
                eve.write(events.protocol(pkt, flow, proto, tx))
        if verdict.alerts:
            c = self.counters
            c.alerts += len(verdict.alerts)
            write = "alert" in self.types and eve is not None
            for rule in verdict.alerts:
                c.rule_hits[(rule.id, rule.msg)] += 1
                if write:
                    eve.write(events.alert(pkt, flow, rule, verdict.action, verdict.would))

    def _anomalies(self, pkt, flow, found):
        """Anomaly events, bounded (output/limits.py): one per kind per packet, then per
        kind and source over time."""
        allow, src, done = self.limits.anomaly, pkt.src, set()
        for name, layer in found:
            if name in done:
                continue
            done.add(name)
            if allow(name, src, pkt.ts) and self.eve is not None:
                self.eve.write(events.anomaly(pkt, flow, name, layer))

    def _end_flow(self, flow):
        if self._kernel:
            self._kernel.pop(flow, None)
        if self._reject_due:
            self._reject_due.pop(id(flow), None)
        self.counters.flows_ended[flow.reason] = self.counters.flows_ended.get(flow.reason, 0) + 1
        if self.on_flow_end is not None:
            try:                           # a source's callback (GENEVE: nft): its failure is
                self.on_flow_end(flow)     # counted, never the packet's nor the expiry loop's
            except Exception:
                self.counters.internal_errors += 1
        if self.pcap_log is not None:
            self.pcap_log.forget(flow)
        unanswered = self._unanswered(flow)      # (always: it ends the server side's wait)
        if self.eve is not None:
            for proto, tx in unanswered:
                self.eve.write(events.protocol(None, flow, proto, tx))
        if "flow" in self.types and self.limits.flow(flow, self.now) and self.eve is not None:
            self.eve.write(events.flow(flow))

    def _write(self, event):
        if self.eve is not None:
            self.eve.write(event)


# A rule's fields that say neither what it matches nor what it decides: a reload may change
# them and the rule still gives its old verdict to the flows it decided
_NOT_THE_DECISION = ("msg", "monitor", "file", "line", "order", "rev", "severity", "classtype", "log", "target")


def _same_decision(old, new):
    """Does `new` (the reloaded rule of the same gid and id) match and decide as `old` did?"""
    try:
        return replace(new, **{f: getattr(old, f) for f in _NOT_THE_DECISION}) == old
    except Exception:              # a field that cannot be compared: not known to be the same
        return False


def _release(flow):
    """A final flow is never inspected again, and its events were written: drop the client
    stream (up to stream_bytes each) and the parsed transactions. Flow events need only the
    protocol; port reuse needs the stream's ISN, which the flow keeps."""
    st, app = flow.stream, flow.app
    flow.payloads = None                  # payload: stream reassembly
    if st is not None:
        isn = st.isn
        if isn is not None:
            flow.isn = isn
        flow.stream = None
    if app is not None and app.tx is not None:
        app.tx = None


from .compiled import use_compiled  # noqa: E402 -- last: the Cython build of this file, if built
use_compiled(globals())
