# cython: nonecheck=True
# (compiled twin: a Flow argument that is None raises AttributeError, as here, instead of reading the None object as a C struct)
"""Detection: which rule decides a flow, and which alert rules fire on a packet.

Semantics (docs/rules.md has the user's version):
- pass/drop/reject rules are walked in order; the first that matches decides.
  A rule whose condition is still open is *pending*: it holds back every later
  rule, and the packet passes meanwhile. Packet conditions are open while the flow
  is within its inspection depth; past it they count as not matched. A name is open
  until the app layer has it, says there is none, or cannot know it: the depth does
  not bound names, the protocols' own limits do (docs/rules.md).
- Names are read against the attacker: a drop/reject rule matches when any of a
  transaction's names fits (pipelined requests, queries of one message, the readings
  of an ambiguous Host), a pass rule only when every one does. Unknown names (the
  appliance cannot know them) match every drop/reject rule and no pass rule under
  exception_policy "drop" (the default); under "ignore" only the names it did read
  count.
- alert rules never decide. Header-only alert rules fire once per flow and
  direction (Suricata's IP-only rules: the first packet each way; every packet
  with `every_packet`); content/packet
  rules fire per matching packet; app-layer rules once per transaction.
- Flow state (flowstate.py): flowbits/flowint conditions are packet conditions;
  changes happen on a match. A verdict rule with `header: packet` is matched
  against each packet's own header: one that fits only the other direction holds
  no later rule back, but keeps the default from deciding while it may still fit.
Header fields are matched against each packet's own direction (Suricata's
`->`), through bitmask indexes cached per flow direction.
"""
import sys

from . import file_data
from . import index as ix
from .index import and_masks, meets
from .bounded_regex import REGEX_TIME, InspectionLimit
from .inspect_buffer import PACKET_STEPS, BUFFERS, RESPONSE_BUFFERS, AppProgram, Program, buffer_values, tx_proto, \
    packet_search
from .keywords import APP_FIELDS, RULE_FIELD, app_fields, app_program, per_packet
from .rule import PROTOS, Content
from .flowstate import FlowState, unknown as unknown_state
from .threshold import DetectionFilters, Thresholds
from ..applayer import DNS_PORTS
from ..applayer.state import SERVER_FIRST, Unknown
from ..flow import ESTABLISHED, CLOSING, VERDICTS, handshake_seen
from ..packet import SYN, TCP, UDP

MATCH, PENDING, DEFAULT = "match", "pending", "default"
# more_to_inspect's answer when only the client's first bytes of a server-first flow may
# still change its verdict (truthy: the flow is not final; the Inspector passes the rest cheaply)
CLIENT_AWAITED = "client_awaited"
_SIZED, _LITERAL, _PROGRAM = 1, 2, 4          # Detector.kind_of: dsize/ttl/ip_proto, a prefilter literal, a payload Program
_STREAM = 8                                   # ... content/regex on the reassembled stream (payload: stream)
_BOTH = 16                                    # ... payload: both: the stream where there is one, else the packet
MASK_CACHE_BYTES = 4 << 20      # the interned candidate masks (Detector._header), per Detector
MASK_ENTRY_BYTES = 64           # a dict entry with its share of the table's slack (measured 30-40 B)


class Detector:
    def __init__(self, ruleset, generation=0, exception_policy="drop"):
        rules = ruleset.rules
        self.rules = rules
        if ruleset.default_action not in VERDICTS or ruleset.default_action is None:
            # it becomes Flow.verdict, a closed set (the compiled Flow holds it as a byte):
            # refused with the rules, not on a worker's packet
            raise ValueError(f"default_action must be pass, drop or reject, not {ruleset.default_action!r}")
        self.default_action = ruleset.default_action
        self.generation = generation
        self.exception_policy = exception_policy
        self.decision = self.alert = self.plain = self.perpkt = self.content = 0
        self.block = 0                        # drop/reject rules: a name matches if any reading fits
        self.header_alert = 0
        self.field = {f: 0 for f in APP_FIELDS}
        self.proto_any = 0
        self.proto = {}
        self.direction = {"inbound": 0, "outbound": 0, "any": 0}
        # per rule, from the keyword table: which app fields it needs, whether it has packet conditions
        self.app_of = [app_fields(r) for r in rules]
        self.per_packet = [per_packet(r) for r in rules]
        # Suricata's buffer inspection, only for the rules that use it (plain contents keep
        # the find() loop): compiled payload programs, app programs, and their masks.
        self.payload_program = {}             # rule index -> Program (content beyond value/nocase/offset/depth)
        self.app_program = {}                 # rule index -> AppProgram
        self.program = 0                      # rules with an AppProgram
        self.unnamed = {f: 0 for f in APP_FIELDS}   # ... of them, those with no name key on the field
        self.proto_only = {f: 0 for f in APP_FIELDS}  # app_proto rules that ask nothing more of f
        self.sized = 0                        # rules with dsize/ttl/ip_proto
        # inspections that reached their bound (read against the attacker), steps and regex
        # seconds left for this packet's programs (reset per packet by start_packet)
        self.limits = [0, PACKET_STEPS, REGEX_TIME]
        literals = []
        # payload: stream/both (stream_payload.py): the rules, and per rule the bytes before a
        # packet's new ones it reads (its longest content - 1); the prefilter scans packets,
        # and for `both` rules the stream bytes too (stream_scan)
        self.stream = 0
        self.both = 0                         # ... of them, payload: both
        self.stream_keep = {}
        self.view = None                      # this packet's (StreamPayload, feed result) or None
        self.stream_scan = None               # the prefilter's mask on this packet's stream bytes (lazy)
        for i, r in enumerate(rules):
            bit = 1 << i
            if r.payload != "packet":
                self.stream |= bit
                if r.payload == "both":
                    self.both |= bit
                self.stream_keep[i] = max((len(s.value) for s in r.content if type(s) is Content
                                           and not s.negated), default=1) - 1
            if r.decides:
                self.decision |= bit
                if r.action != "pass":
                    self.block |= bit
            else:
                self.alert |= bit
            app = self.app_of[i]
            if r.app_proto is not None and getattr(r, RULE_FIELD[r.app_proto]) is None \
                    and not app_program(r):
                self.proto_only[r.app_proto] |= bit
            for f in app:
                self.field[f] |= bit
            if self.per_packet[i]:
                self.perpkt |= bit
            if not app and not self.per_packet[i]:
                self.plain |= bit
                # (each packet: every_packet; a silent or state-changing one must be walked)
                if not r.decides and not (r.every_packet or r.noalert or FlowState.writes(r)):
                    self.header_alert |= bit
            if r.content:
                literal = prefilter_literal(r.content)
                if literal is not None and r.payload != "stream":
                    self.content |= bit        # has a literal the prefilter looks for
                    literals.append((i, (literal,)))
                if not simple_content(r.content):
                    self.payload_program[i] = Program(r.content)
            if r.dsize is not None or r.ttl is not None or r.ip_proto is not None:
                self.sized |= bit
            if app_program(r):
                self.program |= bit
                self.app_program[i] = AppProgram(r, next((getattr(r, RULE_FIELD[f]) for f in app
                                                          if getattr(r, RULE_FIELD[f]) is not None), None))
                for f in app:
                    if getattr(r, RULE_FIELD[f]) is None:
                        self.unnamed[f] |= bit  # no name key: the program alone decides
            for name in r.protos:
                pnum = PROTOS[name]
                if pnum is None:
                    self.proto_any |= bit
                else:
                    self.proto[pnum] = self.proto.get(pnum, 0) | bit
            if r.direction == "any":
                for k in self.direction:
                    self.direction[k] |= bit
            else:
                self.direction[r.direction] |= bit
        self.bit_of = {r.id: 1 << i for i, r in enumerate(rules)}
        self.app_any = 0
        for f in APP_FIELDS:
            self.app_any |= self.field[f]
        # Complements as positive masks: `x & ~m` on 10,000-bit ints costs more than it looks.
        count = len(rules)       # a Python int: in the compiled build `1 << len(...)` is a C shift (overflows at 64 rules)
        every = (1 << count) - 1
        self.no_app = every ^ self.app_any
        # verdict rules a packet's addresses alone decide: any protocol, any port, nothing else
        self.addr_only = 0
        for i, r in enumerate(rules):
            if (r.decides and r.protos == ("ip",) and r.src_port is None and r.dst_port is None
                    and (self.plain >> i) & 1):
                self.addr_only |= 1 << i
        self.no_content = every ^ self.content
        self.keep = max(self.stream_keep.values(), default=0)   # what StreamPayload keeps: the most any reads
        self.kind_of = {r.id: (i, ((self.sized >> i) & 1) * _SIZED | ((self.content >> i) & 1) * _LITERAL
                               | (i in self.payload_program) * _PROGRAM
                               | ((self.stream >> i) & 1) * _STREAM | (r.payload == "both") * _BOTH)
                        for i, r in enumerate(rules)}
        self.deep_alert = self.alert & ~self.header_alert      # alerts that look past the header
        self.body_rules = file_data.mask(rules)   # rules on file_data: judged on the body's packets
        self.body_fit = 0                         # of them, those the body fits (set by decide's walk)
        self.body_txs = ()                        # the transactions whose body this packet brought
        # the address tries answer HOME_NET too: a new flow's direction and its candidates
        # from one walk an address (header_addresses)
        self.src = ix.AddrIndex(((i, r.src) for i, r in enumerate(rules)), ruleset.home_net)
        self.dst = ix.AddrIndex(((i, r.dst) for i, r in enumerate(rules)), ruleset.home_net)
        self.sport = ix.PortIndex((i, r.src_port) for i, r in enumerate(rules))
        self.dport = ix.PortIndex((i, r.dst_port) for i, r in enumerate(rules))
        self.names = {f: ix.NameIndex((i, getattr(r, RULE_FIELD[f])) for i, r in enumerate(rules)
                                      if getattr(r, RULE_FIELD[f]) is not None)
                      for f in APP_FIELDS}
        self.prefilter = ix.ContentPrefilter(literals)
        # one prefilter per sticky buffer: each rule's literal on it (fast_pattern or longest)
        by_buffer = {}
        for i, r in enumerate(rules):
            for b, steps in r.buffers:
                literal = prefilter_literal(steps)
                if literal is not None:
                    by_buffer.setdefault(b, []).append((i, (literal,)))
        self.buffer_prefilter = {b: (ix.ContentPrefilter(entries), sum(1 << i for i, _ in entries))
                                 for b, entries in by_buffer.items()}
        self.home = ix.AddrTrie(ruleset.home_net)          # HOME_NET as the loader resolved it
        self.thresholds = Thresholds()
        self.filters = DetectionFilters()
        # flowbits/flowint/bypass, Suricata's <> and per-packet headers of verdict rules
        self.state = FlowState(rules)
        self.reads = self.writes = self.pkt_header = self.bidir = self.no_hold = 0
        for i, r in enumerate(rules):
            bit = 1 << i
            if FlowState.reads(r):
                self.reads |= bit
            if FlowState.writes(r):
                self.writes |= bit
            if r.decides and r.header == "packet":
                self.pkt_header |= bit
            if r.decides and not r.hold:
                self.no_hold |= bit
            if r.bidirectional:
                self.bidir |= bit
        self.no_reads = every ^ self.reads
        # rules that only look at one direction's packets (flow: to_server / to_client)
        self.only_ts = self.only_tc = 0
        for i, r in enumerate(rules):
            if "to_server" in r.flow:
                self.only_ts |= 1 << i
            elif "to_client" in r.flow:
                self.only_tc |= 1 << i
        self.silent = 0                        # noalert rules
        for i, r in enumerate(rules):
            if r.noalert:
                self.silent |= 1 << i
        self.stateful = self.reads | self.writes | self.silent   # alerts walks these in its careful loop
        # rules on the response (http.stat_code): judged on the packet that completes a
        # transaction's status line, on the transactions it answers (engine: `answered`)
        self.response = 0
        for i, r in enumerate(rules):
            if any(b in RESPONSE_BUFFERS for b, _ in (*r.buffers, *r.bsize)):
                self.response |= 1 << i
        self.no_app_resp = self.no_app | self.response      # alerts: what no transaction must fit
        # may_log: per app protocol, the alert rules a TCP flow speaking it can never fire:
        # every field they need is another protocol's and named (a flow's protocol, once
        # known, never becomes another: its other fields stay empty or UNKNOWN, which no name
        # pattern matches). Programs without a name, rules on the response or on bodies: not
        # (they read more than a name); those keep holding the flow.
        loose = self.response | self.body_rules
        for f in APP_FIELDS:
            loose |= self.unnamed[f]
        self.mute_on = {p: 0 for p in (*APP_FIELDS, "failed")}
        for i, fields in enumerate(self.app_of):
            if fields and not (loose >> i) & 1:   # (only its alert rules are asked)
                for p in self.mute_on:
                    if p not in fields:   # ("failed": a TCP flow that names nothing, never read again)
                        self.mute_on[p] |= 1 << i
        self._masks = {}
        # at most MASK_CACHE_BYTES: each entry counted as wide as a mask of every rule can be
        # (`every`, a Python int: compiled, 1 << len(rules) would be a C shift)
        self._masks_max = max(1, MASK_CACHE_BYTES // (sys.getsizeof(every) + MASK_ENTRY_BYTES))

    def in_home(self, ip, raw=b""):
        """Whether HOME_NET holds the address: by its bytes when given (decode's), else its text."""
        return self.home.contains_raw(raw or ix.raw_address(ip))

    @property
    def needs_responses(self):
        """A loaded rule reads the HTTP response status: the server's side is read for it."""
        return bool(self.response)

    def response_rules(self, flow, alerts=True):
        """The rules on the response status that may apply to the flow (either direction's
        header); `alerts` False: verdict rules only."""
        if not self.response:
            return 0
        m = self.response if alerts else self.response & self.decision
        ts, tc = flow.cand_ts, flow.cand_tc
        if ts is None:
            ts = self.candidates(_Reverse(flow, True), flow, True)
        if tc is None:
            tc = self.candidates(_Reverse(flow, False), flow, False)
        return (ts | tc) & m

    def _answers_fit(self, resp, txs, unread):
        """The rules of `resp` (on the response status) the transactions answered on this
        packet fit: drop/reject and alert rules when any does, pass rules when every one
        does. `unread`: transactions whose status can no longer be read (the appliance
        cannot know it): under exception_policy "drop" any status for drop/reject rules
        (the rest of the rule must still fit), for pass rules none; under "ignore" none."""
        fit = self._programs_fit(resp, 0, None, "http", txs=txs) if txs else 0
        if unread:
            fit &= ~(resp & self.decision & ~self.block)
            if self.exception_policy == "drop":
                cache = {}
                for i in ix.bits(resp & self.block & ~fit):
                    if any(self.app_program[i].fits_tx("http", t, any, cache, self.limits, True) for t in unread):
                        fit |= 1 << i
        return fit

    # -- header candidates ---------------------------------------------------

    def header_addresses(self, pkt):
        """A new flow's first packet's addresses, one trie walk each: ((its source's src-rule
        mask, whether HOME_NET holds its source), (its destination's dst-rule mask, whether
        HOME_NET holds it)). Inspector._direction reads the HOME_NET answers and candidates
        the masks, where each asked its own tries (four walks a new flow, a SYN flood's
        every packet)."""
        return (self.src.lookup_home_raw(getattr(pkt, "src_raw", b"") or ix.raw_address(pkt.src)),
                self.dst.lookup_home_raw(getattr(pkt, "dst_raw", b"") or ix.raw_address(pkt.dst)))

    def candidates(self, pkt, flow, from_initiator, addrs=None):
        """Rules whose proto/addresses/ports/direction match this packet's header, cached per
        flow by the end that sent it (`from_initiator`: FlowTable.lookup's pkt.from_initiator,
        or the side a _Reverse view was made for): cand_ts holds the initiator's header's
        candidates (the flow's own), cand_tc the responder's. By the sender, not by
        to_server: an ICMP echo packet is to_client by its type, and an echo reply the
        initiator sends carries the initiator's header (review rvall). Inspector.reload
        clears the caches. `addrs`: header_addresses(pkt), when the caller walked them."""
        if from_initiator:
            m = flow.cand_ts
            if m is None:
                m = flow.cand_ts = self._header(pkt, flow.direction, False, addrs)
        else:
            m = flow.cand_tc
            if m is None:
                m = flow.cand_tc = self._header(pkt, flow.direction, False, addrs)
        return m

    def _header(self, pkt, direction, swapped=False, addrs=None):
        m = self.proto_any | self.proto.get(pkt.proto, 0)
        if m:
            if addrs is not None:   # the packet's own, walked already (header_addresses)
                src, dst = addrs[0][0], addrs[1][0]
            else:   # by the address bytes (decode's): no text parsed again per lookup
                src = self.src.lookup_raw(getattr(pkt, "src_raw", b"") or ix.raw_address(pkt.src))
                dst = self.dst.lookup_raw(getattr(pkt, "dst_raw", b"") or ix.raw_address(pkt.dst))
            # one int made for the five (compiled: ANDed in C), not one per `&`
            m = and_masks(m & self.direction[direction], src, dst,
                          self.sport.lookup(pkt.sport), self.dport.lookup(pkt.dport))
        if self.bidir and not swapped:
            # Suricata's <>: those rules also fit with the packet's sides swapped
            m |= self._header(_Swapped(pkt), direction, True) & self.bidir
        # Flows share one int per distinct mask (10,000 rules = 1.3 KB a mask). A spoofed scan
        # makes one per (source x port partition): cleared when full (it only interns).
        masks = self._masks
        got = masks.get(m)
        if got is None:
            if len(masks) >= self._masks_max:
                masks.clear()
            got = masks[m] = m
        return got

    def unoriented_candidates(self, flow):
        """Verdict candidates for a TCP flow picked up mid-stream, whose initiator is not
        known (the first packet seen may be the server's): (mask, flipped). Read against
        the attacker: a drop/reject rule is a candidate when it fits either orientation;
        a pass rule when it fits the orientation the ports justify (the responder on a
        port below 1024, the initiator on one at or above), or, without that, both.
        `flipped`: the candidates that fit only with the first speaker as the responder
        (their to_server/to_client conditions read the other way)."""
        a = self.connection_candidates(flow)
        b = self._header(_Reverse(flow, False), _OTHER_SIDE[flow.direction])
        block = self.block
        server = server_side(flow)
        if server == "a":
            m = a | (b & block)
        elif server == "b":
            m = b | (a & block)
        else:
            m = (a & b) | ((a | b) & block)
        return m, m & b & ~a

    def connection_candidates(self, flow):
        """Candidates for the connection's own direction (initiator -> responder), for a
        packet going the other way: verdict rules describe the connection."""
        m = flow.cand_ts
        if m is None:                      # the reverse view only on a miss: most calls hit the cache
            m = self.candidates(_Reverse(flow, True), flow, True)
        return m

    def more_to_inspect(self, flow, to_server, within=True, alerts=True):
        """Could anything still fire or change the verdict of a passed flow on a later packet?
        `within`: the flow is inside its inspection depth (alerts look only there), or
        (this direction, the other) when each has its own budget (.rules); name
        rules look at every transaction the server reads, whatever the depth. `alerts`:
        False asks only whether a verdict rule may still change the verdict (bypass ends
        the alerts' look, never the judging of a later transaction)."""
        this = flow.cand_ts if to_server else flow.cand_tc
        if this is None:       # an echo flow whose to_client packets all came from the initiator
            this = self.candidates(_Reverse(flow, to_server), flow, to_server)
        # .rules: (this direction, the other) each within its own byte budget; alert rules
        # of a direction past its depth look at nothing more, so they hold nothing
        w_this, w_other = within if type(within) is tuple else (within, within)
        if alerts and w_this and this & self.deep_alert:
            # this direction's answer needs no look at the other: a flow's first packet (every
            # SYN of a flood) does not build the reverse view and its header lookups
            return True
        other = flow.cand_tc if to_server else flow.cand_ts
        if other is None:
            other = self.candidates(_Reverse(flow, not to_server), flow, not to_server)
        cand = this | other
        within = w_this or w_other
        if alerts:
            if ((this if w_this else 0) | (other if w_other else 0)) & self.deep_alert:
                return True                # content/packet/app alert rules still look
            if w_other and other & self.header_alert and not (flow.pkts_tc if to_server else flow.pkts_ts):
                return True                # the other direction's header alerts have not fired yet
        if cand & self.body_rules and file_data.may_come(flow):
            return True                    # a body within the inspect depth may still come
        names = cand & self.decision & self.app_any
        if not names:
            return False
        app = flow.app
        if app is SERVER_FIRST:
            # its server spoke first: the client's first bytes may still name something (a
            # spoofed server byte must not let a request go unseen), whatever the depth
            return CLIENT_AWAITED
        # Multi-transaction protocols: a later DNS query / HTTP request may hit a name rule.
        if app is not None and app.multi_tx and names & self.field[app.proto]:
            return True
        if flow.proto == UDP and names & self.field["dns"] and (app is None or app.unknown is None):
            # A later datagram may be a DNS query: on a DNS port, whatever came before it;
            # elsewhere (QUIC, RTP, ...) within the depth, as other content.
            return within or flow.dport in DNS_PORTS or flow.sport in DNS_PORTS
        return False

    def may_log(self, flow):
        """Could this flow still alert, or be dropped or rejected (what the pcap log writes)?
        False only when no rule of this rule set can (a reload may bring one: it clears the
        candidate caches, and the question is asked again). Within one rule set the answer
        only goes from True to False: a passed flow is judged again only by its candidates,
        and a TCP flow's known protocol stays its own. Read against the attacker: anything
        not known for sure answers True (undecided, monitored, picked up mid-stream, a TCP
        flow before its handshake is seen: a second SYN may still make it unoriented, and its
        candidates then take in the other orientation's drop rules; review s17)."""
        if (flow.verdict != "pass" or flow.monitored or flow.unoriented or self.default_action != "pass"
                or flow.proto == TCP and not handshake_seen(flow)):
            return True            # a later transaction may get the default, or a drop is only monitored
        ts = flow.cand_ts
        if ts is None:
            ts = self.candidates(_Reverse(flow, True), flow, True)
        tc = flow.cand_tc
        if tc is None:
            tc = self.candidates(_Reverse(flow, False), flow, False)
        cand = ts | tc
        if cand & self.block:
            return True            # a drop/reject rule may still match a later transaction
        alerts = cand & self.alert
        if not alerts:
            return False
        app = flow.app
        mute = self.mute_on.get(app.proto) if flow.proto == TCP and app is not None else None
        if mute is None:
            return True            # its protocol may still name any field (UDP: any datagram a query)
        return bool(alerts ^ (alerts & mute))

    # -- per-packet conditions -----------------------------------------------

    def packet_match(self, r, pkt, flow, to_server, scan):
        """All of r's per-packet conditions hold for this packet. `scan` is a lazy
        one-element cache of the content prefilter mask."""
        if r.flow:
            for kw in r.flow:
                if kw == "to_server":
                    if not to_server:
                        return False
                elif kw == "to_client":
                    if to_server:
                        return False
                elif (kw == "established") != established(flow):
                    return False
        if r.tcp_flags is not None and (pkt.proto != TCP or not r.tcp_flags.matches(pkt.tcp_flags)):
            return False
        if r.icmp_type is not None and pkt.icmp_type != r.icmp_type:
            return False
        if r.icmp_code is not None and pkt.icmp_code != r.icmp_code:
            return False
        payload = pkt.payload
        # per-rule flags from a small list, not `bit & mask` on 10,000-bit masks
        i, kind = self.kind_of[r.id]
        if kind & _SIZED and not sizes_match(r, pkt, payload):
            return False
        if kind & _STREAM and (self.view is not None or not kind & _BOTH) \
                and not (kind & _BOTH and pkt.tcp_flags & SYN):
            # payload: both reads the stream wherever this direction is reassembled (every TCP
            # data packet of a flow it may look at): its packets' bytes are read there, once,
            # as Suricata reads a segment added to the stream; the packet elsewhere, and a SYN's
            # data (Suricata does not add it to the stream; a Fast Open server has handed it to
            # its application before the next segment)
            if kind & _BOTH and self._degraded():
                # this direction's reassembly lost bytes or has a gap (a capture's loss, a far
                # segment): the bytes it still delivers first, the packet's own as fallback, as
                # Suricata reads them (review s14b: read against the attacker, normal flows were
                # dropped; review s15: read per packet only, one far segment turned the stream off)
                got = self.view[1]
                if not ((got is not None and self._holds_on(r, i, kind, self._delivered(i, got), True, scan))
                        or self._holds_on(r, i, kind, payload, False, scan)):
                    return False
            else:
                payload = self._stream_payload(i, r)
                if payload is None:
                    return False
                # (True: read against the attacker: content and regex hold)
                if payload is not True and not self._holds_on(r, i, kind, payload, True, scan):
                    return False
        elif not self._holds_on(r, i, kind, payload, False, scan):
            return False
        if r.flowbits or r.flowint:
            if r.decides and unknown_state(flow):
                # earlier packets' state is unknown (picked up mid-stream): as an unknown
                # name, a drop/reject rule's condition holds under exception_policy "drop",
                # a pass rule's never does
                if r.action == "pass" or self.exception_policy != "drop":
                    return False
            elif not self.state.holds(r, flow):
                return False
        # last: it counts the matches of everything else
        if r.detection_filter is not None:
            over = self.filters.exceeded(r, pkt, flow, pkt.ts)
            if over is None:
                # the count cannot be kept (the table is full of open windows): as a name
                # that cannot be known, a drop/reject rule matches under exception_policy
                # "drop", nothing else does (the Inspector reports it)
                over = r.action in ("drop", "reject") and self.exception_policy == "drop"
            if not over:
                return False
        return True

    def _holds_on(self, r, i, kind, payload, streamed, scan):
        """r's content and regex hold on these bytes (the packet's payload, or the stream's
        bytes for this packet when `streamed`)."""
        if (r.content or r.regex is not None) and not payload:
            # Suricata runs no payload rule on a packet without payload, negated content too
            # (review s14b: content:!"|16 03|" matched the handshake's last ACK: a false drop)
            return False
        if r.content:
            if kind & _LITERAL:
                if streamed:
                    if self.stream_scan is None:
                        # the longest overlap holds every rule's: a literal not in it is in none
                        self.stream_scan = self.prefilter.scan(self.view[1][0])
                    if not self.stream_scan & self.bit_of[r.id]:
                        return False
                else:
                    if scan[0] is None:
                        scan[0] = self.prefilter.scan(payload)
                    if not scan[0] & self.bit_of[r.id]:
                        return False
            if kind & _PROGRAM:
                # one condition of the rule: regex, flowbits, detection_filter still follow
                if not self.payload_program[i].matches(payload, r.action != "pass", self.limits):
                    return False
            elif not plain_contents_match(r.content, payload):
                return False
        return r.regex is None or self._regex_match(r, payload)

    def _degraded(self):
        """This direction's reassembly lost bytes (a segment past its room) or has a gap (an
        ACK past the bytes seen), and reads one way (a conflicting overlap stays read against
        the attacker)."""
        sp = self.view[0]
        return (sp.stream.lost or sp.gap) and not sp.stream.ambiguous

    def _delivered(self, i, got):
        """The stream's bytes for this packet that rule i reads: its overlap and the new ones."""
        data, new = got
        return data[max(0, len(data) - new - self.stream_keep[i]):]

    def _stream_payload(self, i, r):
        """The bytes a stream rule reads on this packet: its overlap and the new stream bytes;
        None when there are none; True when the stream is read two ways and the rule matches
        by exception_policy "drop" (a drop/reject rule does, a pass rule does not; alert
        rules, and every rule under "ignore", read the bytes as reassembled)."""
        view = self.view
        if view is None:
            return None
        sp, got = view
        if sp.unknown and r.action != "alert" and self.exception_policy == "drop":
            return True if r.action != "pass" else None
        if got is None:
            return None
        data, new = got
        return data[max(0, len(data) - new - self.stream_keep[i]):]

    def start_packet(self):
        """A new packet: its programs get PACKET_STEPS steps and REGEX_TIME seconds of
        regex search together. Returns the count of bounds reached so far (the caller
        compares it after the packet)."""
        self.limits[1] = PACKET_STEPS
        self.limits[2] = REGEX_TIME
        return self.limits[0]

    def _regex_match(self, r, payload):
        """The rule's `regex` key on the payload; past the packet's regex time unknown, read
        against the attacker (a pass rule does not match, any other does) and counted."""
        try:
            return packet_search(r.regex, payload, self.limits) is not None
        except InspectionLimit:
            self.limits[0] += 1
            return r.action != "pass"

    # -- decisions -----------------------------------------------------------

    def decide(self, pkt, flow, to_server, cand, inspect, more, scan, flipped=0, discarded=False,
               answered=None):
        """(MATCH, rule) | (PENDING, rule) | (DEFAULT, None) for this packet.

        `inspect`: this packet is within the inspection depth, so packet conditions are
        checked on it. `more`: later packets will be too, so an unmet packet condition is
        pending rather than failed; (to_server, to_client) when each direction has its own
        budget (.rules): pending only for a rule that can look at a direction still within.
        A name not known yet is pending either way.
        `flipped`: rules that read this packet's direction the other way
        (unoriented_candidates). `discarded`: the server's TCP discards this segment (flow
        tracking): nothing in it reaches the server, so it satisfies no pass rule's packet
        condition and changes no flow state; a drop/reject rule still judges it (a NULL
        scan, a decoy are the sender's own doing). `answered`: (transactions whose response
        status this packet completed, transactions whose status can no longer be read), or None.

        Rules on the response status are judged on the packet that completes it. Before
        it, one waits: a later pass rule and the default cannot decide while it may still
        match, a later drop/reject rule that matches decides at once (both block; the
        request does not reach the server, as in Suricata, where a stat_code rule cannot
        match a request packet). With no status to come, it is not matched."""
        # rules a later inspected packet may still satisfy; a shared depth's answer here, not
        # through the method (compiled, a method looked up and called: ~700 instructions a SYN)
        later = (-1 if more else 0) if type(more) is not tuple else self._later(more, flipped)
        if type(more) is tuple:
            more = more[1] if to_server else more[0]   # below: the other direction's packets
        c = cand & self.decision
        pkth = self.pkt_header
        here = 0
        if pkth:
            # rules whose header describes each packet (Suricata's drop/pass rules without a
            # flow direction): they fit this packet's own header, or may fit a later packet
            # the other way -- a packet condition not met yet
            side = pkt.from_initiator      # the header it carries: its sender's (an echo reply may be the initiator's)
            here = self.candidates(pkt, flow, side)
            there = self.candidates(_Reverse(flow, not side), flow, not side)
            c = (c & ~pkth) | ((here | there) & pkth & self.decision)
            flipped &= ~pkth
        # (meets: a test that makes no int, index.meets)
        resp = c & self.response if meets(c, self.response) else 0
        awaiting = 0                           # response rules whose status is still to come
        unmet = 0                              # rules in the walk whose body or status has not fit (yet)
        if resp:
            c ^= resp                          # not judged on the requests' names: below
        if meets(c, self.app_any):
            body = c & self.body_rules
            c = self._drop_unmatched_app(c ^ body, flow)
            if body:
                c |= file_data.decide_mask(self, body, flow, self._body_txs(flow))
                unmet = body & ~self.body_fit
        if resp:
            app = flow.app
            names = app.names["http"] if app is not None else None
            if type(names) is Unknown and self.exception_policy == "drop":
                c |= resp & self.block         # the flow's transactions cannot be known: any status
            elif answered is not None and (answered[0] or answered[1]):
                c |= self._answers_fit(resp, answered[0], answered[1])
            elif app is None or names is None:
                c |= resp                      # pending with the request's names
                unmet |= resp
            elif app.proto == "http" and app.server is not None and app.server.active:
                c |= resp                      # (another protocol has no HTTP status: not matched)
                awaiting = resp
                unmet |= resp
        # a packet past its direction's depth is not looked at; while later packets will be
        # (.rules: the other direction's budget is left) a packet condition is pending, not
        # failed -- else a download past its depth decided the upload's drop rules by default
        unseen = 0 if inspect else self.perpkt
        if discarded:
            unseen |= self.perpkt & (~self.block | self.writes)
        if unseen:
            c &= ~(unseen & ~later)
            unseen &= later
        rules = self.rules
        plain = self.plain
        waiting = None                         # a per-packet-header rule that may fit a later packet
        deferred = None                        # the first rule waiting for a response status
        seen = flow.matched
        seen = seen[1] if seen is not None and seen[0] == self.generation else 0
        while c:
            low = c & -c
            i = low.bit_length() - 1
            r = rules[i]
            if meets(low, pkth) and not meets(low, here):
                # Suricata judges each packet on its own: a rule whose header does not fit
                # this packet holds nothing back here, but the flow is not decided by the
                # default while a later packet the other way may still fit it
                if more and waiting is None:
                    waiting = r
                c ^= low
                continue
            if meets(low, unseen):
                if low & self.no_hold:         # Suricata's: judged per packet, holds nothing back
                    waiting = waiting or r
                    c ^= low
                    continue
                return PENDING, r
            if meets(low, plain) or meets(low, seen):   # (seen: it matched on an earlier packet, while an earlier rule pended)
                if deferred is not None and not low & self.block:
                    return PENDING, deferred
                if low & self.writes:
                    self.state.apply(r, flow)      # bypass
                return MATCH, r
            if meets(low, self.app_any):
                app = flow.app
                if app is None or _unnamed(app, self.app_of[i]):
                    blocked = self._note_later(c, low, seen, pkt, flow, to_server, scan, flipped, here, unseen | unmet)
                    return blocked or (PENDING, r)   # the app layer resolves it within the protocol's limits
                if low & self.body_rules and not low & self.body_fit:
                    blocked = self._note_later(c, low, seen, pkt, flow, to_server, scan, flipped, here, unseen | unmet)
                    return blocked or (PENDING, r)   # its body may still come (file_data.py)
                if low & awaiting:
                    if deferred is None:
                        deferred = r           # judged when the status comes; later block rules still may
                    c ^= low
                    continue
            if meets(low, self.perpkt) and not self.packet_match(r, pkt, flow, to_server != bool(low & flipped), scan):
                if low & later:
                    if low & self.no_hold:
                        # Suricata judges each packet on its own: not met on this packet, the
                        # rule holds no later rule back here, but may match a later packet --
                        # the default waits (as for a per-packet header that fits the other way)
                        waiting = waiting or r
                        c ^= low
                        continue
                    blocked = self._note_later(c, low, seen, pkt, flow, to_server, scan, flipped, here, unseen | unmet)
                    return blocked or (PENDING, r)
                c ^= low                       # the last look: not matched, try the next rule
                continue
            if deferred is not None and not low & self.block:
                return PENDING, deferred
            if low & self.writes:
                self.state.apply(r, flow)
            return MATCH, r
        if deferred is not None:
            return PENDING, deferred
        return (PENDING, waiting) if waiting is not None else (DEFAULT, None)

    def _later(self, more, flipped):
        """The rules a later packet within the depth may still satisfy (all, or none, when
        the depth is shared; with a budget per direction, not those that look only at a
        direction past its depth -- `flipped` rules read directions the other way)."""
        if type(more) is not tuple:
            return -1 if more else 0
        ts, tc = more
        if ts == tc:
            return -1 if ts else 0
        only_ts = (self.only_ts & ~flipped) | (self.only_tc & flipped)
        only_tc = (self.only_tc & ~flipped) | (self.only_ts & flipped)
        return ~only_tc if ts else ~only_ts

    def _note_later(self, c, low, seen, pkt, flow, to_server, scan, flipped, here, unseen=0):
        """Rule `low` of candidates `c` pends: remember the later rules whose packet
        conditions hold on this packet, so that one decides if the earlier never matches
        (judged again only on the packet that resolves the earlier one, a drop rule that
        matched on packet 4 was forgotten). Rules after the first plain one can never
        decide: not looked at. Returns (MATCH, rule) when the first that matched is a
        drop/reject rule and every rule before it is one too: whichever decides, the flow
        is blocked, so it is now; else None."""
        rest = c & ~(low | (low - 1))
        first_plain = rest & self.plain
        if first_plain:
            rest &= (first_plain & -first_plain) - 1
        # (unseen: not looked at on this packet; and a rule whose body or response status has
        # not fit: its packet conditions alone do not make it match)
        rest &= self.perpkt & ~seen & ~unseen
        found = 0
        for i in ix.bits(rest):
            low = 1 << i
            if low & self.pkt_header and not low & here:
                continue
            if low & self.app_any:
                app = flow.app
                if app is None or _unnamed(app, self.app_of[i]):
                    continue
            if self.packet_match(self.rules[i], pkt, flow, to_server != bool(low & flipped), scan):
                found |= low
        if not found:
            return None
        flow.matched = (self.generation, seen | found)
        first = found & -found
        if first & self.block and not c & (first - 1) & ~self.block:
            r = self.rules[first.bit_length() - 1]
            if first & self.writes:
                self.state.apply(r, flow)
            return MATCH, r
        return None

    def decide_unread(self, pkt, direction):
        """(rule or None, policy_used) for a packet whose transport the decoder could not
        read: its addresses are all that is known. Rules are walked in order; one that
        needs nothing but addresses decides as always; one that needs more (protocol,
        ports, names, content) is read against the attacker under exception_policy
        "drop" (a drop/reject rule matches, a pass rule does not) and does not match
        under "ignore". None: the default action. `policy_used`: a rule needing more
        than the addresses was read by the policy before the decision."""
        c = self.decision & self.direction[direction]
        if c:
            c &= self.src.lookup_raw(getattr(pkt, "src_raw", b"") or ix.raw_address(pkt.src))
        if c:
            c &= self.dst.lookup_raw(getattr(pkt, "dst_raw", b"") or ix.raw_address(pkt.dst))
        block = self.block if self.exception_policy == "drop" else 0
        used = False
        while c:
            low = c & -c
            if low & self.addr_only:
                return self.rules[low.bit_length() - 1], used
            used = True
            if low & block:
                return self.rules[low.bit_length() - 1], used
            c ^= low
        return None, used

    def _drop_unmatched_app(self, c, flow):
        """Remove app-layer rules that can no longer match: their names are known and do
        not fit (any name for a drop/reject rule, every name for a pass rule)."""
        app = flow.app
        for f in APP_FIELDS:
            fmask = self.field[f]
            if not c & fmask:
                continue
            names = app.names[f] if app is not None else None
            if names is None:
                continue                       # pending
            if type(names) is Unknown and self.exception_policy == "drop":
                fit = self.block               # any name: every block rule fits, no pass rule
            else:
                if not names:
                    fit = 0                    # (a TLS ClientHello without SNI: proto_only below)
                elif len(names) == 1:
                    fit = self.names[f].lookup(names)
                else:
                    index = self.names[f]
                    fit = (self.block & index.lookup(names)) | (~self.block & index.lookup_all(names))
                progs = c & fmask & self.program if self.program else 0
                if progs:
                    fit = self._programs_fit(progs & (fit | self.unnamed[f]), fit, app, f)
                if app.proto == f:
                    fit |= self.proto_only[f]  # the protocol is all they ask
            c &= ~(fmask & ~fit)
        return c

    def _programs_fit(self, progs, fit, app, f, any_tx=None, txs=None):
        """`fit` with each rule of `progs` set or cleared by its AppProgram on the flow's
        latest transaction(s) of field f (or `txs`): drop/reject (and alert, any_tx) rules
        fit when any transaction does, pass rules when every one does."""
        fit &= ~progs
        if txs is None:
            if app is None or app.tx is None:
                return fit
            # (a flow whose reading became ambiguous has proto "unknown" but keeps the
            # transactions it did read: exception_policy "ignore" judges those)
            txs = [t for t in (app.tx if isinstance(app.tx, list) else (app.tx,)) if tx_proto(t) == f]
        if not txs:
            return fit
        cache = {}
        # per transaction, the rules whose literal on each buffer occurs in it (one scan per buffer)
        possible = [self._buffer_scan(progs, f, t, cache) for t in txs]
        for i in ix.bits(progs):
            bit = 1 << i
            anyt = any_tx if any_tx is not None else bool(bit & self.block)
            pick = any if anyt else all
            prog = self.app_program[i]
            if pick(p & bit and prog.fits_tx(f, t, pick, cache, self.limits) for t, p in zip(txs, possible)):
                fit |= bit
        return fit

    def _buffer_scan(self, m, f, tx, cache):
        """`m` less the rules whose prefilter literal on a buffer of field f is in none of
        the transaction's values of it (a necessary condition for any/all of them to fit)."""
        for b, (prefilter, lits) in self.buffer_prefilter.items():
            if BUFFERS[b] != f or not m & lits:
                continue
            hit = 0
            for v in buffer_values(cache, f, tx, b):
                hit |= prefilter.scan(v)
            m ^= m & lits & ~hit
        return m

    def _body_txs(self, flow):
        """The transactions a file_data verdict rule is judged on: those whose body this
        packet brought, else the flow's latest body."""
        if self.body_txs:
            return self.body_txs
        server = flow.app.server if flow.app is not None else None
        last = getattr(server.reader, "last_body", None) if server is not None and server.reader else None
        return (last,) if last is not None else ()

    def body_alerts(self, pkt, flow, to_server, cand, txs, scan):
        """file_data alert rules fired by this packet's body bytes (once per transaction)."""
        return file_data.alerts(self, pkt, flow, to_server, cand, txs, scan)

    def name_fields(self, cand):
        """The app fields verdict rules among `cand` need."""
        c = cand & self.decision & self.app_any
        if not c:
            return ()
        return tuple(f for f in APP_FIELDS if c & self.field[f])

    # -- alerts --------------------------------------------------------------

    def alerts(self, pkt, flow, to_server, cand, new_fields, scan, discarded=False, answered=None):
        """Alert rules that fire on this packet (before thresholds). `discarded`: a segment
        the server discards still alerts (a scan is worth seeing) but changes no flow state:
        the rules that would are left out. Rules on the response status only on the packet
        that completed one (`answered`, as for decide): once per such packet, on the
        transactions it answered."""
        out = []
        rules = self.rules
        if discarded:
            a = cand & self.alert & ~self.writes
            head = a & self.header_alert
            rest = a ^ head
        else:
            # cand's header-only alerts and the rest without (cand & alert) made first: the
            # header ones' mask only on the packet that fires them, the rest one `&`
            head = self.header_alert if meets(cand, self.header_alert) else 0
            rest = cand & self.deep_alert
        if head:
            # Header-only alerts fire once per flow and direction: the first packet each way
            # fires them all, later packets skip the walk.
            seen = flow.alerted_rules
            marker = (self.generation, to_server)
            if seen is None:
                seen = flow.alerted_rules = set()
            if marker not in seen:
                seen.add(marker)
                out.extend([rules[i] for i in ix.bits(cand & head)])
        if not rest:
            return out
        resp = rest & self.response if meets(rest, self.response) else 0
        if resp:
            rest ^= resp
            if answered is not None and answered[0]:
                rest |= self._answers_fit(resp, answered[0], ())
        if meets(rest, self.body_rules):
            rest ^= rest & self.body_rules     # judged on their body's packets: body_alerts
        # App-layer rules only on the packet that completed a transaction of their field.
        if meets(rest, self.app_any):
            app_ok = 0
            for f in new_fields:
                fmask = self.field[f]
                if rest & fmask:
                    ok = fmask & self.names[f].lookup(flow.app.names[f] or ())
                    progs = (rest ^ (rest & self.response)) & fmask & self.program if self.program else 0
                    if progs:
                        ok = self._programs_fit(progs & (ok | self.unnamed[f]), ok, flow.app, f, True)
                    if flow.app.proto == f:
                        ok |= self.proto_only[f]
                    app_ok |= ok
            # (rest & no_app) | (rest & app_ok) | (rest & response) as one `&` (and one `|` when
            # a transaction fits): each of those a 1,000-bit int made
            rest &= (self.no_app_resp | app_ok) if app_ok else self.no_app_resp
        # Content rules need their literals present: one prefilter scan decides most.
        if meets(rest, self.content):
            if scan[0] is None:
                # an empty payload holds no literal (ContentPrefilter.scan's 0): a SYN makes no call
                scan[0] = self.prefilter.scan(pkt.payload) if pkt.payload else 0
            # payload: both rules read the stream where there is one: packet_match scans it.
            # What a packet with no literal found and no stream keeps is no_content: one `&`
            keep = self.no_content
            if scan[0]:
                keep = keep | scan[0]
            if self.both and self.view is not None:
                keep = keep | self.both
            rest &= keep
            if not rest:
                return out
        per_packet = self.per_packet
        if not meets(rest, self.stateful):
            for i in ix.bits(rest):
                r = rules[i]
                if not per_packet[i] or self.packet_match(r, pkt, flow, to_server, scan):
                    out.append(r)
            return out
        # flow state: rules that only change it come first, so a rule that reads it sees
        # this packet's changes (Suricata orders flowbits setters before their checkers)
        for part in (rest & self.no_reads, rest & self.reads):
            for i in ix.bits(part):
                r = rules[i]
                if not per_packet[i] or self.packet_match(r, pkt, flow, to_server, scan):
                    if (1 << i) & self.writes:
                        self.state.apply(r, flow)
                    if not r.noalert:
                        out.append(r)
        return out


def _unnamed(app, fields):
    """Whether any of a rule's app fields has no name yet on this flow. A loop, not any() over
    a generator: the compiled Detector's decide is a C method, and Cython compiles no closure
    inside one."""
    names = app.names
    for f in fields:
        if names[f] is None:
            return True
    return False


def prefilter_literal(program):
    """The content the prefilter looks for: the fast_pattern one, else the longest positive
    one (a negated content is never required to be there); None when the program has no
    positive content (pcre/isdataat/negations only: every packet is inspected)."""
    best = None
    for s in program:
        if type(s) is Content and not s.negated:
            if s.fast_pattern:
                return s
            if best is None or len(s.value) > len(best.value):
                best = s
    return best


def simple_content(program):
    """Contents with only value/nocase/offset/depth: the engine's plain find() loop does them."""
    return all(type(s) is Content and not (s.negated or s.relative or s.startswith or s.endswith)
               for s in program)


def plain_contents_match(contents, payload):
    """Contents with only value/nocase/offset/depth (simple_content): each is there."""
    lowered = None
    for c in contents:
        end = c.offset + c.depth if c.depth is not None else len(payload)
        if c.nocase:
            if lowered is None:
                lowered = bytes(payload).lower()
            if lowered.find(c.value.lower(), c.offset, end) < 0:
                return False
        elif payload.find(c.value, c.offset, end) < 0:
            return False
    return True


def sizes_match(r, pkt, payload):
    """dsize, ttl, ip_proto (Suricata's): each that the rule has holds for this packet."""
    if r.dsize is not None and not r.dsize.matches(len(payload)):
        return False
    if r.ttl is not None and not r.ttl.matches(pkt.ttl):
        return False
    return r.ip_proto is None or r.ip_proto.matches(pkt.proto)


def established(flow):
    if flow.proto == TCP:
        return handshake_seen(flow) and flow.state in (ESTABLISHED, CLOSING)
    return flow.state == ESTABLISHED


_OTHER_SIDE = {"inbound": "outbound", "outbound": "inbound", "any": "any"}


def server_side(flow):
    """Which end of a mid-stream flow the ports say is the server: "a" the responder as
    first seen, "b" the first speaker, None when they do not say (both ports below 1024
    or both at or above). A client needs root to bind below 1024 and operating systems
    pick ephemeral ports above it."""
    a, b = flow.dport < 1024, flow.sport < 1024
    if a == b:
        return None
    return "a" if a else "b"


class _Swapped:
    """A packet's header with its sides swapped (Suricata's <>)."""
    __slots__ = ("proto", "src", "dst", "sport", "dport", "src_raw", "dst_raw")

    def __init__(self, pkt):
        self.proto = pkt.proto
        self.src, self.sport, self.dst, self.dport = pkt.dst, pkt.dport, pkt.src, pkt.sport
        self.src_raw, self.dst_raw = getattr(pkt, "dst_raw", b""), getattr(pkt, "src_raw", b"")


class _Reverse:
    """The minimal packet view candidate lookup needs for the other direction."""
    __slots__ = ("proto", "src", "dst", "sport", "dport", "src_raw", "dst_raw")

    def __init__(self, flow, to_server):
        self.proto = flow.proto
        if to_server:
            self.src, self.sport, self.dst, self.dport = flow.src, flow.sport, flow.dst, flow.dport
            self.src_raw, self.dst_raw = flow.src_raw, flow.dst_raw
        else:
            self.src, self.sport, self.dst, self.dport = flow.dst, flow.dport, flow.src, flow.sport
            self.src_raw, self.dst_raw = flow.dst_raw, flow.src_raw


from ..compiled import use_compiled  # noqa: E402 -- last: the Cython build of this file, if built
use_compiled(globals())
