"""The pipeline both sources feed: decode has happened; here a packet goes
flow -> app-layer names -> detection -> verdict, and events go out.

Live NFQUEUE workers and offline replay call the same `Inspector.process`, so a
fix in one is a fix in both. Time is the packet's own timestamp: in replay the
pcap clock drives timeouts and thresholds exactly as the wall clock does live.
"""
from dataclasses import dataclass
import ipaddress

import pytricia

from . import applayer
from .applayer import dns, tls, http
from .detect.engine import Detector, MATCH, DEFAULT, APP_FIELDS
from .flow import FlowTable, CLIENT_CHECKSUMS_REAL
from .output import events
from .packet import TCP, UDP, SYN, ACK, URG
from .checksum import transport_ok
from .stream import StreamStart

# app-layer bytes a flow must show before we give up naming its protocol
_DETECT_GIVE_UP = 64


@dataclass
class Settings:
    home_net: list | None = None          # CIDRs; None = the rule set's HOME_NET
    outside_ifaces: tuple = ()            # live: packets arriving here come from outside
    depth_packets: int = 16               # inspection depth per flow (both directions)
    depth_bytes: int = 8192               # ... and payload bytes
    max_flows: int = 100_000
    offload: bool = True                  # decided flows skip inspection (live: kernel fast path)
    stream_bytes: int = 8192              # first bytes of the client stream kept for app-layer names
    anomaly_action: str = "pass"          # verdict for packets too malformed to have a flow
    verify_checksums: bool = True         # a bad TCP checksum keeps a segment out of the stream
                                          # (live: off, the kernel's conntrack already judged it)
    source_name: str = ""                 # replay: pcap file name for events


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


class Inspector:
    def __init__(self, ruleset, settings=None, eve=None):
        self.settings = settings or Settings()
        self.eve = eve
        self.flows = FlowTable(self.settings.max_flows)
        self.generation = 0
        self.detector = Detector(ruleset, self.generation)
        self.ruleset = ruleset
        self._home = self._home_tree(ruleset)
        self.counters = events.Counters()
        self.first_ts = None
        self.now = 0.0

    # -- public API ------------------------------------------------------------

    def process(self, pkt):
        """Inspect one decoded packet and return its Verdict. Never raises."""
        try:
            return self._process(pkt)
        except Exception as e:           # a bug must not take the datapath down
            self.counters.internal_errors += 1
            self._emit(events.anomaly(pkt, None, "engine." + type(e).__name__, "engine", self.settings))
            return PASS if self.settings.anomaly_action == "pass" else Verdict("drop")

    def tick(self, now):
        """Expire idle flows; call about once a second of packet time."""
        self.now = max(self.now, now)
        for flow in self.flows.expire(now):
            self._end_flow(flow)

    def reload(self, ruleset, settings=None):
        """Swap the rule set (and settings) atomically. Decided flows keep their verdict;
        candidate caches are cleared. New settings apply to flows from now on."""
        if settings is not None:
            self.settings = settings
        self.generation += 1
        self.detector = Detector(ruleset, self.generation)
        for flow in self.flows.flows.values():   # candidate masks were for the old rules
            flow.cand_ts = flow.cand_tc = None
        self.ruleset = ruleset
        self._home = self._home_tree(ruleset)

    def stats_event(self):
        ev = events.stats(self, self.now)
        self._emit(ev)
        return ev

    def close(self):
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
        if pkt.anomalies:
            for name in pkt.anomalies:
                self._emit(events.anomaly(pkt, None, name, "decode", self.settings))
        if pkt.ip_version == 0 or not pkt.src:
            if pkt.anomalies and self.settings.anomaly_action == "drop":
                c.count_verdict("drop")
                return Verdict("drop")
            c.count_verdict("pass")
            return PASS

        flow, to_server, evicted = self.flows.lookup(pkt)
        s = self.settings
        if s.source_name:
            flow.pcap_file = s.source_name
        if flow.final:                     # decided for good: the fast path
            action = "pass" if flow.verdict == "pass" else "drop"
            c.verdicts[action] += 1
            c.fast_path += 1
            if evicted is not None:
                self._end_flow(evicted)
            return Verdict(action, s.offload, flow)
        if evicted is not None:
            self._end_flow(evicted)
        if flow.pkts_ts + flow.pkts_tc == 1:
            flow.direction = self._direction(flow, pkt)
            if flow.proto != TCP and flow.proto != UDP:
                self._set_app(flow, "failed")    # no DNS/TLS/HTTP name can ever show

        # every packet of a flow that is not final is inspected: its packet count is the depth used
        n = flow.pkts_ts + flow.pkts_tc
        within_before = n - 1 < s.depth_packets and flow.inspected_bytes < s.depth_bytes
        flow.inspected_bytes += len(pkt.payload)
        within = n < s.depth_packets and flow.inspected_bytes < s.depth_bytes

        new_fields = self._applayer(pkt, flow, to_server) if within_before else ()
        det = self.detector
        cand = det.candidates(pkt, flow, to_server)
        # Verdict rules describe the connection (initiator -> responder), whichever
        # way this packet goes; alert rules look at the packet's own direction.
        cand_flow = cand if to_server else det.candidates(_Reverse(flow, True), flow, True)
        scan = [None]

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
                self._emit(events.alert(pkt, flow, rule, pkt_action, self.settings))
            c.alerts_suppressed = det.thresholds.suppressed
        c.alerts += len(emitted)

        if flow.verdict in ("drop", "reject"):
            flow.final = True
        elif flow.verdict == "pass":
            flow.final = not within or not self._more_to_inspect(flow, to_server)
        offload = flow.final and s.offload
        if offload:
            flow.offloaded = True
        c.count_verdict(pkt_action)
        return Verdict(pkt_action, offload, flow, emitted)

    def _more_to_inspect(self, flow, to_server):
        """Could anything still fire or change the verdict on a later packet?"""
        det = self.detector
        other = flow.cand_tc if to_server else flow.cand_ts
        if other is None:
            other = det.candidates(_Reverse(flow, not to_server), flow, not to_server)
        cand = (flow.cand_ts if to_server else flow.cand_tc) | other
        if cand & det.deep_alert:
            return True                    # content/packet/app alert rules still look
        if other & det.header_alert and not (flow.pkts_tc if to_server else flow.pkts_ts):
            return True                    # the other direction's header alerts have not fired yet
        # Multi-transaction protocols: a later DNS query / HTTP request may hit an app rule.
        if cand & det.decision & det.app_any and flow.app_proto in ("dns", "http"):
            return True
        if flow.proto == UDP and cand & det.decision & det.field["dns"]:
            return True                    # a later datagram may be a DNS query
        return False

    # -- app layer -------------------------------------------------------------

    def _applayer(self, pkt, flow, to_server):
        """Extract names from the client's first bytes; return the fields that got
        a new transaction on this packet."""
        proto = flow.proto
        if proto == TCP:
            st = self._client_stream(pkt, flow, to_server)
            if st is None:
                return ()
            data = st.data
            done = st.complete
        elif proto == UDP:
            return self._udp_applayer(pkt, flow, to_server)
        else:
            return ()

        if flow.app_proto is None:
            guess = applayer.detect(data, proto, flow.sport, flow.dport)
            if guess is None:
                if done or len(data) >= _DETECT_GIVE_UP:
                    self._set_app(flow, "failed")
                return ()
            self._set_app(flow, guess)
        ap = flow.app_proto
        if ap == "tls":
            if flow.app["tls"] is not None:
                return ()
            hello = tls.parse_client_hello(data)
            if hello is applayer.MORE:
                if done:
                    flow.app["tls"] = []
                return ()
            if hello is applayer.NOT:
                flow.app["tls"] = []
                self._emit(events.anomaly(pkt, flow, "tls.invalid_client_hello", "applayer", self.settings))
                return ()
            flow.app["tls"] = [hello.sni] if hello.sni else []
            flow.app_tx = hello
            return ("tls",)
        if ap == "http":
            reqs, more = http.parse_requests(data)
            if len(reqs) <= flow.tx_count:
                if flow.app["http"] is None:
                    if more:
                        req = http.partial_request(data)
                        if req is not None:        # the host is known before the block ends
                            flow.app["http"] = [req.host]
                            flow.app_tx = req
                            return ("http",)
                    elif not reqs:
                        flow.app["http"] = []
                return ()
            new = reqs[flow.tx_count:]          # every request since the last look (pipelining)
            flow.tx_count = len(reqs)
            flow.app["http"] = [r.host for r in new if r.host]
            flow.app_tx = new if len(new) > 1 else new[0]
            return ("http",)
        if ap == "dns":
            msgs, _ = dns.parse_tcp(data)
            msgs = msgs[flow.tx_count:]
            flow.tx_count += len(msgs)
            queries = [m for m in msgs if not m.response and m.queries]
            if not queries:
                if flow.app["dns"] is None and done:
                    flow.app["dns"] = []
                return ()
            self._dns_queries(flow, queries)
            return ("dns",)
        return ()

    def _client_stream(self, pkt, flow, to_server):
        """Feed a TCP packet to the client's stream as the server will read it; the stream
        when it has new bytes to look at, else None."""
        flags = pkt.tcp_flags
        st = flow.stream
        if not to_server:
            if not (isinstance(st, tuple) and flags & (SYN | ACK) == SYN | ACK):
                # DNS, TLS and HTTP clients speak first: a server that talks before its
                # client has sent a byte is none of them, so stop waiting for a name.
                if flow.app_proto is None and pkt.payload and not (isinstance(st, StreamStart) and st.data):
                    self._set_app(flow, "failed")
                return None
            # The SYN/ACK says whether the server took the data in the SYN (TCP Fast Open
            # with a cookie) or only the SYN (the default): name the flow by the bytes the
            # server will read, not by the ones it dropped.
            st = self._settle_syn_data(flow, ((pkt.ack - st[0]) & 0xFFFFFFFF) >= len(st[1]))
            return st if st.data else None
        # once the client is known to send real checksums, only segments with data need one
        if (self.settings.verify_checksums and (pkt.payload or not flow.tcp_seen & CLIENT_CHECKSUMS_REAL)
                and not self._checksum_ok(pkt, flow) and pkt.payload):
            return None                          # the receiver discards it: it names nothing
        if not isinstance(st, StreamStart):
            if flags & SYN and not flags & ACK:
                isn_next = (pkt.seq + 1) & 0xFFFFFFFF
                # data in a SYN is tentative until the SYN/ACK acknowledges it
                flow.stream = (isn_next, bytes(pkt.payload)) if pkt.payload else isn_next
                return None
            if not pkt.payload:
                return None
            if isinstance(st, tuple):            # no SYN/ACK seen: the client's next byte tells
                st = self._settle_syn_data(flow, pkt.seq != st[0])
            else:
                st = self._start_stream(flow, st)
        seq, payload = pkt.seq, b"" if flags & SYN else pkt.payload   # a SYN's data: see above
        if pkt.urg_ptr and payload or flow.oob:
            seq, payload = _out_of_band(flow, seq, payload, pkt.urg_ptr if flags & URG else 0)
        return st if st.add(seq, payload, bool(flags & SYN)) else None

    def _checksum_ok(self, pkt, flow):
        """Would the server accept this client segment? Captures taken on the client carry
        unfinished (offloaded) checksums on every segment, so a bad checksum only counts
        once the client has sent a good one: then a bad segment is a decoy the server drops."""
        ok = transport_ok(pkt)
        if ok:
            flow.tcp_seen |= CLIENT_CHECKSUMS_REAL
            return True
        if ok is None or not flow.tcp_seen & CLIENT_CHECKSUMS_REAL:
            return True
        self._emit(events.anomaly(pkt, flow, "tcp.invalid_checksum", "decode", self.settings))
        return False

    def _start_stream(self, flow, isn_next):
        """The client's StreamStart, anchored at ISN+1 when the SYN was seen."""
        st = flow.stream = StreamStart(self.settings.stream_bytes)
        if isn_next is not None:
            st.add((isn_next - 1) & 0xFFFFFFFF, b"", True)
        return st

    def _settle_syn_data(self, flow, accepted):
        """Turn the SYN's tentative data into stream bytes (the server took it) or drop it."""
        isn_next, data = flow.stream
        st = self._start_stream(flow, isn_next)
        if accepted:
            st.add(isn_next, data)
        return st

    def _udp_applayer(self, pkt, flow, to_server):
        """UDP: every datagram stands alone. A datagram that is not a DNS query says nothing
        about the next one, so DNS rules stay live for the whole flow. Queries (QR=0) count
        from either side: a "resolver" that sends first must not make the client's queries
        invisible."""
        if not pkt.payload:
            return ()
        msg = dns.parse_message(pkt.payload)
        if msg is not None and not msg.response and msg.queries:
            if flow.app_proto != "dns":
                self._set_app(flow, "dns")
            self._dns_queries(flow, [msg])
            return ("dns",)
        if flow.app_proto is None:
            self._set_app(flow, "failed")       # this datagram names nothing
        return ()

    def _dns_queries(self, flow, queries):
        flow.app["dns"] = [q.rrname for m in queries for q in m.queries]
        flow.app_tx = queries if len(queries) > 1 else queries[0]

    def _set_app(self, flow, proto):
        flow.app_proto = proto
        # Fields of other protocols are known to be absent; ours stays open until parsed.
        flow.app = {f: ([] if f != proto else None) for f in APP_FIELDS}
        self.counters.app_flows[proto] = self.counters.app_flows.get(proto, 0) + 1

    # -- helpers ---------------------------------------------------------------

    def _direction(self, flow, pkt):
        outside = self.settings.outside_ifaces
        if outside and pkt.in_iface:
            inbound = pkt.in_iface in outside
            if pkt.src != flow.src:              # first seen from the responder (SYN/ACK, echo reply)
                inbound = not inbound
            return "inbound" if inbound else "outbound"
        src_in = self._in_home(flow.src)
        dst_in = self._in_home(flow.dst)
        if dst_in and not src_in:
            return "inbound"
        if src_in and not dst_in:
            return "outbound"
        return "any"

    def _in_home(self, ip):
        tree = self._home[1 if ":" in ip else 0]
        try:
            return tree.get(ip) is not None
        except ValueError:
            return False

    def _home_tree(self, ruleset):
        nets = self.settings.home_net
        if nets is None:
            nets = [n for n in (ruleset.vars.get("HOME_NET") or []) if isinstance(n, str) and not n.startswith(("!", "$"))]
        v4, v6 = pytricia.PyTricia(32), pytricia.PyTricia(128)
        for n in nets:
            try:
                net = ipaddress.ip_network(str(n), strict=False)
            except ValueError:
                continue
            (v4 if net.version == 4 else v6)[str(net)] = True
        return v4, v6

    def _end_flow(self, flow):
        self.counters.flows_ended[flow.reason] = self.counters.flows_ended.get(flow.reason, 0) + 1
        self._emit(events.flow(flow, self.settings))

    def _emit(self, event):
        if self.eve is not None:
            self.eve.write(event)


_MAX_OOB = 16


def _out_of_band(flow, seq, payload, urg_ptr):
    """The segment as the receiver's stream has it: a Linux/BSD receiver (no SO_OOBINLINE)
    takes the byte before the urgent pointer out of the stream, so "Host: evXil" reads
    "Host: evil". Bytes taken out earlier shift the sequence numbers that follow."""
    M = 0xFFFFFFFF
    pos = (seq + urg_ptr - 1) & M
    if 0 < urg_ptr <= len(payload) and pos not in (flow.oob or ()) and len(flow.oob or ()) < _MAX_OOB:
        flow.oob = (flow.oob or ()) + (pos,)       # once, whatever the retransmissions
    inside = sorted(((pos - seq) & M) for pos in flow.oob if ((pos - seq) & M) < len(payload))
    before = sum(1 for pos in flow.oob if pos != seq and ((seq - pos) & M) < 0x80000000)
    if inside:
        data = bytearray(payload)
        for i in reversed(inside):
            del data[i]
        payload = bytes(data)
    return (seq - before) & M, payload


class _Reverse:
    """The minimal packet view detection needs to look up the other direction."""
    __slots__ = ("proto", "src", "dst", "sport", "dport")

    def __init__(self, flow, to_server):
        self.proto = flow.proto
        if to_server:
            self.src, self.sport, self.dst, self.dport = flow.src, flow.sport, flow.dst, flow.dport
        else:
            self.src, self.sport, self.dst, self.dport = flow.dst, flow.dport, flow.src, flow.sport
