"""Mutation testing: flip one line, run the tests that should notice, count what they catch.

    python3 -m bench.mutate                 # every mutation below (~20-30 min on 2 cores)
    python3 -m bench.mutate --only dns      # mutations whose file or label contains "dns"
    python3 -m bench.mutate --only flow.py,icmp_error   # ... or one of several texts
    python3 -m bench.mutate --list

Each mutation is a one-line change of the kind a slip or a refactor makes (a bound off by
one, a mask, a dropped `.lower()`, a swapped field). It is applied to a copy of the
repository (the work tree is never touched), the fast tests of that area run there with
`-x`, and the mutation is CAUGHT when a test fails, SURVIVED when all pass. A mutation whose
line is no longer in the source is STALE (the code moved: update the list). The score is
caught / (caught + survived). A survivor is a missing test, or an equivalent mutation
(listed as such below, with the reason).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

U, R = "tests/unit/", "tests/replay/"
DETECT = [U + "test_detect_engine.py", U + "test_content_match.py", U + "test_rules_loader.py",
          U + "test_shipped_rules.py", U + "test_applayer_edges.py", R + "test_detect_edges.py",
          R + "test_rule_keys.py", R + "test_semantics.py",
          R + "test_threshold.py"]
DNS = [U + "test_dns.py", U + "test_dns_pointers.py", U + "test_applayer_edges.py", U + "test_applayer_fuzz.py",
       R + "test_rule_keys.py", R + "test_name_limits.py"]
TLS = [U + "test_tls.py", U + "test_applayer_edges.py", U + "test_applayer_fuzz.py", R + "test_rule_keys.py",
       R + "test_review_evasion.py", R + "test_name_limits.py"]
BODY = [U + "test_http_body.py", R + "test_file_data.py"]
STATUS = [R + "test_http_stat_code.py"]
HTTP = [U + "test_http.py", U + "test_applayer_fuzz.py", R + "test_rule_keys.py", R + "test_review_evasion.py", R + "test_name_limits.py"]
APP = [R + "test_app_transactions.py", R + "test_semantics.py", R + "test_rule_keys.py", R + "test_review_evasion.py",
       R + "test_review_findings.py"]
STREAM = [U + "test_stream.py", U + "test_stream_urgent.py", U + "test_stream_bounds.py", R + "test_review_evasion.py",
          R + "test_review_findings.py"]
FLOW = [U + "test_flow.py", U + "test_stream.py", R + "test_receiver_evasion.py", R + "test_review_evasion.py",
        R + "test_review_findings.py"]
INSPECT = [R + "test_exception_policy.py", R + "test_review_offload.py", R + "test_semantics.py",
           R + "test_review_evasion.py", R + "test_review_findings.py", R + "test_app_transactions.py",
           R + "test_limits.py", R + "test_name_limits.py", R + "test_receiver_evasion.py", R + "test_rule_keys.py"]
DECODE = [U + "test_decode.py", U + "test_decode_edges.py", U + "test_ipv6_ah.py", U + "test_decode_corpus.py", U + "test_defrag.py",
          R + "test_decode_paths.py"]

LOGS = [R + "test_protocol_answers.py", R + "test_protocol_logs.py", R + "test_name_limits.py", U + "test_applayer_fuzz.py"]

D, A, S, P = "appliance/detect/", "appliance/applayer/", "appliance/stream.py", "appliance/decode.py"
F, I = "appliance/flow.py", "appliance/inspector.py"

# (label, file, line as written (stripped, unique in the file), replacement, tests)
MUTATIONS = [
    # detect/: keywords and the engine
    ("nocase: rule value not folded", D + "engine.py",
     "if lowered.find(c.value.lower(), c.offset, end) < 0:", "if lowered.find(c.value, c.offset, end) < 0:", DETECT),
    ("nocase: payload not folded", D + "engine.py",
     "lowered = bytes(payload).lower()", "lowered = bytes(payload)", DETECT),
    ("depth counted from 0, not offset", D + "engine.py",
     "end = c.offset + c.depth if c.depth is not None else len(payload)",
     "end = c.depth if c.depth is not None else len(payload)", DETECT),
    ("offset ignored (case-sensitive content)", D + "engine.py",
     "elif payload.find(c.value, c.offset, end) < 0:", "elif payload.find(c.value, 0, end) < 0:", DETECT),
    ("regex anchored (match for search)", D + "engine.py",
     "return r.regex.search(payload) is not None",
     "return r.regex.match(payload) is not None", DETECT),
    ("icmp_code compared with the type", D + "engine.py",
     "if r.icmp_code is not None and pkt.icmp_code != r.icmp_code:",
     "if r.icmp_code is not None and pkt.icmp_type != r.icmp_code:", DETECT),
    ("flow: established inverted", D + "engine.py",
     'elif (kw == "established") != established(flow):', 'elif (kw == "established") == established(flow):', DETECT),
    ("tcp_flags on non-TCP packets", D + "engine.py",
     "if r.tcp_flags is not None and (pkt.proto != TCP or not r.tcp_flags.matches(pkt.tcp_flags)):",
     "if r.tcp_flags is not None and (not r.tcp_flags.matches(pkt.tcp_flags)):", DETECT),
    ("established without a handshake", D + "engine.py",
     "return handshake_seen(flow) and flow.state in (ESTABLISHED, CLOSING)",
     "return flow.state in (ESTABLISHED, CLOSING)", DETECT),
    ("header alerts: other direction's count swapped", D + "engine.py",
     "if w_other and other & self.header_alert and not (flow.pkts_tc if to_server else flow.pkts_ts):",
     "if w_other and other & self.header_alert and not (flow.pkts_ts if to_server else flow.pkts_tc):",
     DETECT + APP + [R + "test_review_inspection.py"]),
    ("UDP flows stop looking for DNS queries", D + "engine.py",
     'if flow.proto == UDP and names & self.field["dns"] and (app is None or app.unknown is None):',
     'if flow.proto == TCP and names & self.field["dns"] and (app is None or app.unknown is None):', DETECT + APP),
    ("unmatched packet rule past the depth ends the walk", D + "engine.py",
     "c ^= low                       # the last look: not matched, try the next rule",
     "return DEFAULT, None", DETECT),
    ("header alerts fire on every packet", D + "engine.py",
     "if marker not in seen:", "if True:", DETECT),
    ("content prefilter drops rules without content", D + "engine.py",
     "rest &= self.no_content | scan[0]", "rest &= scan[0]", DETECT),
    ("tcp_flags exact compares required bits only", D + "rule.py",
     "return (flags & self.mask) == self.required", "return (flags & self.required) == self.required", DETECT),
    ("port range excludes its low end", D + "rule.py",
     "hit = any(lo <= port <= hi for lo, hi in self.ranges)", "hit = any(lo < port <= hi for lo, hi in self.ranges)",
     DETECT),
    ("*.suffix matches without the dot", D + "rule.py",
     'return c.endswith("." + self.name)', "return c.endswith(self.name)", DETECT),
    ("name match case-sensitive", D + "rule.py",
     'c = candidate.lower().rstrip(".")', 'c = candidate.rstrip(".")', DETECT),
    ("wide port range index excludes its low end", D + "index.py",
     "if lo <= port <= hi:", "if lo < port <= hi:", DETECT),
    ("negated address index inverted", D + "index.py",
     "if (t6 if v6 else t4).get(ip) is None:", "if (t6 if v6 else t4).get(ip) is not None:", DETECT),
    ("name index: suffix keeps the dot", D + "index.py",
     "m |= suffix.get(n[pos + 1:], 0)", "m |= suffix.get(n[pos:], 0)", DETECT),
    ("name index case-sensitive", D + "index.py",
     'n = name.lower().rstrip(".")', 'n = name.rstrip(".")', DETECT),
    ("nested prefixes do not inherit", D + "index.py",
     "cover = tree.get(key) or 0", "cover = 0", DETECT),
    ("threshold limit one short", D + "threshold.py", "ok = n <= t.count", "ok = n < t.count", DETECT),
    ("threshold every Nth off by one", D + "threshold.py", "ok = n % t.count == 0", "ok = n % t.count == 1", DETECT),
    ("threshold window never resets", D + "threshold.py",
     "if entry is None or now - entry[0] >= t.seconds:", "if entry is None:", DETECT),
    ("threshold by_src tracks dst", D + "threshold.py",
     'tracked = {"by_src": pkt.src, "by_dst": pkt.dst,', 'tracked = {"by_src": pkt.dst, "by_dst": pkt.src,',
     DETECT),
    ("port set difference keeps the excluded low port", D + "sets.py",
     "rest.append((plo, blo - 1))", "rest.append((plo, blo))", DETECT),
    ("union of two complements taken as their intersection", D + "sets.py",
     "return ValueSet(o.inter(self.items, other.items), True, o)",
     "return ValueSet(o.norm(self.items + other.items), True, o)", DETECT),
    ("tcp_flags ignore list not applied", D + "keywords.py",
     "return TcpFlags(required=required, exact=not plus, mask=0xFF & ~ignored), None",
     "return TcpFlags(required=required, exact=not plus, mask=0xFF), None", DETECT),
    ("rule names keep their trailing dot", D + "keywords.py",
     'name = name.rstrip(".")                # a trailing root dot is the same name',
     "name = name", DETECT),
    # applayer/
    ("dns: pointer high bits dropped", A + "dns.py",
     "target = ((length & 0x3F) << 8) | buf[off + 1]", "target = buf[off + 1]", DNS),
    ("dns: compressed name ends a byte early", A + "dns.py", "end = off + 2", "end = off + 1", DNS),
    ("dns: name length unbounded", A + "dns.py",
     "if wire > MAX_NAME_WIRE or off + 1 + length > n:", "if off + 1 + length > n:", DNS),
    ("dns: only the first question", A + "dns.py",
     "for _ in range(min(qdcount, MAX_QUESTIONS)):", "for _ in range(min(qdcount, 1)):", DNS + APP),
    ("dns: QR read from the wrong bit", A + "dns.py",
     "msg = DnsMessage(ident, bool(flags & 0x8000), (flags >> 11) & 0xF,",
     "msg = DnsMessage(ident, bool(flags & 0x0080), (flags >> 11) & 0xF,", DNS + APP),
    ("dns: a response with answers is not plausible", A + "dns.py",
     "if not flags & 0x8000 and (flags >> 11) & 0xF == 0 and (an or ns):",
     "if (flags >> 11) & 0xF == 0 and (an or ns):", DNS),
    ("dns: mDNS unicast-response bit not masked", A + "dns.py",
     "return qtype != 0 and (qclass & 0x7FFF) in (1, 3, 4, 254, 255)",
     "return qtype != 0 and qclass in (1, 3, 4, 254, 255)", DNS),
    ("dns: question skips qtype only", A + "dns.py",
     "off += 4                     # qtype, qclass", "off += 2", DNS),
    ("tls: last SNI wins", A + "tls.py",
     "if etype == EXT_SERVER_NAME and hello.sni is None:", "if etype == EXT_SERVER_NAME:", TLS),
    ("tls: any name type is a host name", A + "tls.py", "if ntype == 0:                 # host_name", "if True:", TLS),
    ("tls: session id length off by one", A + "tls.py",
     'return self._expect("session", f[34] + 2)', 'return self._expect("session", f[34] + 1)', TLS),
    ("tls: a record header of exactly five bytes waits", A + "tls.py",
     "if n - off < 5:", "if n - off <= 5:", TLS),
    ("tls: GREASE versions not removed", A + "tls.py",
     "offered = [v for v in self.offered if not is_grease(v)]", "offered = list(self.offered)", TLS),
    ("tls: GREASE test too wide", A + "tls.py",
     "return (v & 0x0F0F) == 0x0A0A and (v >> 8) == (v & 0xFF)", "return (v & 0x0F0F) == 0x0A0A", TLS),
    ("tls: supported_versions off by one", A + "tls.py",
     "for i in range(1, vend - 1, 2):", "for i in range(1, vend - 2, 2):", TLS),
    ("http: only the last Host line read", A + "http.py",
     "req.hosts.append(value)            # duplicates too: servers differ on which wins", "req.hosts[:] = [value]",
     HTTP),
    ("http: Host header beats the absolute URI", A + "http.py",
     "for raw in ([auth] if auth else []) + req.hosts:", "for raw in req.hosts or ([auth] if auth else []):", HTTP),
    ("http: body not skipped", A + "http.py", "self.left = int(next(iter(values)))", "self.left = 0", HTTP),
    ("http: IPv6 host loses its port rule", A + "http.py",
     'if sep and b":" not in name and (port == b"" or port.isdigit()):',
     'if sep and (port == b"" or port.isdigit()):', HTTP),
    ("http: leading empty lines not skipped in the guess", A + "http.py",
     'data = data.lstrip(b"\\r\\n")          # servers ignore empty lines before a request (RFC 9112 2.2)',
     "data = data", HTTP),
    ("http: conflicting Content-Length trusted", A + "http.py",
     "if len(values) != 1 or not _DIGITS.match(next(iter(values))):", "if not _DIGITS.match(next(iter(values))):",
     HTTP),
    ("app: only the first pipelined request named", A + "state.py",
     'app.names["http"] = [h for r in reqs for h in r.hosts]', 'app.names["http"] = [h for r in reqs[:1] for h in r.hosts]',
     HTTP + APP),
    ("app: DNS responses count as queries", A + "state.py",
     "if msg is not None and not msg.response and msg.queries:", "if msg is not None and msg.queries:", DNS + APP),
    ("app: DNS over TCP re-reads old messages", A + "state.py", "used, items, status = reader.feed(data, stream.complete)",
     "_, items, status = reader.feed(data, stream.complete); used = 0", DNS + APP),
    ("app: server speaking after the client ends naming", A + "state.py",
     "if not client_spoke:", "if True:", APP),
    ("app: a second ClientHello not read", A + "state.py",
     "if second:                                  # after a HelloRetryRequest: the hello the server acts on",
     "if False:", TLS + APP),
    ("tls: the reading ends after the first hello", A + "tls.py", "self.second = True", "self.second = False", TLS + APP),
    ("tls: records skipped before the first hello", A + "tls.py",
     "return self.second and (ctype == CONTENT_CCS or ctype == CONTENT_ALERT",
     "return (ctype == CONTENT_CCS or ctype == CONTENT_ALERT", TLS),
    ("http: CL with TE trusted", A + "http.py", "if req.odd or (lengths and codings):", "if req.odd:", HTTP),
    ("http: chunk size read as decimal", A + "http.py",
     "self.left = int(m.group(1), 16)", "self.left = int(m.group(1))", HTTP),
    ("http: chunk data longer than its size accepted", A + "http.py",
     'return "http_framing"          # chunk data longer than its size said', "return None", HTTP),
    ("http: a coding chain not ending in chunked trusted", A + "http.py",
     'if not chain or chain[-1] != b"chunked" or chain.count(b"chunked") > 1 \\',
     'if not chain or chain.count(b"chunked") > 1 \\', HTTP),
    ("http: obs-fold line not read as its own line", A + "http.py", "req.hosts.append(cont)", "pass", HTTP),
    ("http: folded framing header trusted", A + "http.py", "elif req.last in FRAMING:", "elif False:", HTTP),
    ("http: a body not read as requests", A + "http.py", "if self.left and not self.nested:", "if False:", HTTP + APP),
    ("http: Connection: close ignored", A + "state.py", "app.done = True                     # the server closes after this request",
     "pass", HTTP + APP),
    ("dns: TCP message cut by the window skipped whole", A + "dns.py",
     "msg = parse_message(bytes(data[off + 2:n]))", "msg = None", DNS + APP),
    # detect/engine.py: readings against the attacker
    ("engine: UNKNOWN fits no block rule under drop", D + "engine.py",
     "fit = self.block               # any name: every block rule fits, no pass rule", "fit = 0", DETECT + INSPECT),
    ("engine: UNKNOWN fits pass rules too", D + "engine.py",
     "fit = self.block               # any name: every block rule fits, no pass rule", "fit = -1",
     DETECT + INSPECT),
    ("engine: pass rules need any name, not every one", D + "engine.py",
     "fit = (self.block & index.lookup(names)) | (~self.block & index.lookup_all(names))",
     "fit = index.lookup(names)", DETECT + INSPECT),
    ("engine: block rules need every name", D + "engine.py",
     "fit = (self.block & index.lookup(names)) | (~self.block & index.lookup_all(names))",
     "fit = index.lookup_all(names)", DETECT + INSPECT),
    ("engine: mid-stream flipped rules read as oriented", D + "engine.py",
     "if low & self.perpkt and not self.packet_match(r, pkt, flow, to_server != bool(low & flipped), scan):",
     "if low & self.perpkt and not self.packet_match(r, pkt, flow, to_server, scan):", DETECT + INSPECT),
    ("engine: mid-stream pass rules fit either orientation", D + "engine.py",
     "m = (a & b) | ((a | b) & block)", "m = a | b", DETECT + INSPECT),
    ("engine: mid-stream port-justified orientation takes pass rules the other way", D + "engine.py",
     "m = a | (b & block)", "m = a | b", DETECT + INSPECT),
    ("engine: unread packet under drop matches no block rule", D + "engine.py",
     'block = self.block if self.exception_policy == "drop" else 0', "block = 0", DETECT + INSPECT),
    # inspector.py / icmp_error.py
    ("inspector: ambiguous stream keeps its names", I, 'reason = "stream_ambiguous"', "pass", INSPECT),
    ("inspector: bytes let go keep the names", I,
     'reason = "cap"         # bytes the server reads that the window let go', "pass", INSPECT),
    ("inspector: mid-stream pickup keeps the names", I,
     'self._cannot_know(flow, "midstream", cand_flow)', "pass", INSPECT),
    ("inspector: ICMP errors offloaded", I, "may_offload = s.offload and not icmp_error.is_error(pkt)",
     "may_offload = s.offload", INSPECT),
    ("inspector: unread packets offloaded", I, "return Verdict(action, False, None, [rule] if rule is not None and rule.logs else [], would)",
     "return Verdict(action, True, None, [rule] if rule is not None and rule.logs else [], would)", INSPECT),
    ("icmp_error: error of an undecided flow offloaded", "appliance/icmp_error.py",
     'return "pass", False                       # undecided (or passed, still inspected)', 'return "pass", True', INSPECT),
    ("icmp_error: dropped flow's error passes", "appliance/icmp_error.py",
     'action = "pass" if flow.verdict == "pass" else "drop"', 'action = "pass"', INSPECT),
    ("icmp_error: error offloaded before its connection", "appliance/icmp_error.py",
     "return action, offload and flow.offloaded", "return action, offload", INSPECT),
    # stream.py
    ("stream: TFO data needs one byte more acked", S,
     "self._settle(limit, ((pkt.ack - self.isn_next) & MASK) >= len(self.syn_data))",
     "self._settle(limit, ((pkt.ack - self.isn_next) & MASK) > len(self.syn_data))", STREAM),
    ("stream: positions unsigned (before-start is far ahead)", S,
     "rel = ((seq - self.start + HALF) & MASK) - HALF", "rel = (seq - self.start) & MASK", STREAM),
    ("stream: the next in-order segment is queued while others are", S,
     "if rel <= rcv:                           # in order: delivered now, its front dropped", "if rel < rcv:", STREAM),
    ("stream: SYN takes no sequence number", S,
     "seq = (seq + 1) & MASK               # SYN occupies one sequence number", "seq = seq & MASK", STREAM),
    ("stream: urgent byte left in the stream", S,
     "self._buf += payload[i + 1:skip + take]", "self._buf += payload[i:skip + take]", STREAM),
    ("stream: urgent pointer off by one", S,
     "off = ((seq + (urg_ptr - 1 if urg_ptr else 0) - self.start + HALF) & MASK) - HALF",
     "off = ((seq + urg_ptr - self.start + HALF) & MASK) - HALF", STREAM),
    ("flow: bad checksum dropped before any good one", F,
     "return ok is False and bool(flow.tcp_seen & _CSUM_TS)", "return ok is False", FLOW),
    ("stream: limit not applied on the fast path", S,
     "and len(buf) + len(payload) <= self.limit):", "):", STREAM),
    ("stream: a FIN at rcv_nxt on a retransmission ignored", S,
     "if end < rcv or (end == rcv and not fin) or self.fin:", "if end <= rcv or self.fin:", STREAM),
    # stream.py: Linux's out-of-order queue
    ("stream: same start, longer, does not replace", S,
     "if off == rel:                       # same start, ends later: replaces it", "if False:", STREAM),
    ("stream: a covered segment is queued", S,
     "if off + len(held) >= end:", "if off + len(held) > end:", STREAM),
    ("stream: merge_right keeps covered segments", S,
     "while j < len(pending) and pending[j][0] + len(pending[j][1]) <= end:",
     "while j < len(pending) and pending[j][0] + len(pending[j][1]) < end:", STREAM),
    ("stream: a cut segment not flagged", S, "self.cut = True", "pass", STREAM + INSPECT),
    ("stream: out-of-order bytes past the room not flagged lost", S,
     "self.lost = True                     # past the bytes we hold", "pass", STREAM + INSPECT),
    ("stream: queued bytes delivered from their start, not rcv_nxt", S,
     "grew = self._deliver(data, self.rcv - off, room_end) or grew", "grew = self._deliver(data, 0, room_end) or grew",
     STREAM),
    ("stream: FIN does not end the reading", S, "self.fin = True", "self.fin = False", STREAM),
    ("stream: overlap with queued bytes not compared", S,
     "if held[lo - off:hi - off] != payload[lo - rel:hi - rel]:", "if False:", STREAM + INSPECT),
    ("stream: a RST's payload delivered", S,
     "return False                         # Linux never delivers a RST's payload", "pass", STREAM + FLOW),
    ("stream: too-old ACK at rcv_nxt not ambiguous", S,
     'self._ambiguous("tcp.ack_ambiguous", found)', "pass", STREAM + FLOW),
    # flow.py: what the server's TCP discards (TcpReceiver)
    ("flow: ACK of unsent data accepted", F,
     'return "tcp.ack_unsent"       # acknowledges data the server never sent', 'pass', FLOW),
    ("flow: too-old ACK accepted", F, 'return "tcp.ack_too_old"', "pass", FLOW),
    ("flow: too-old window not capped by bytes acked", F,
     "window = min(t.max_window, (una - t.s_acked0) & MASK)", "window = t.max_window", FLOW),
    ("flow: PAWS compare off by one", F,
     "if ts is not None and t.ts_recent and not flags & RST and 2 <= ((t.ts_recent - ts[0]) & MASK) < HALF:",
     "if ts is not None and t.ts_recent and not flags & RST and 1 <= ((t.ts_recent - ts[0]) & MASK) < HALF:", FLOW),
    ("flow: PAWS applied to RSTs", F,
     "if ts is not None and t.ts_recent and not flags & RST and 2 <= ((t.ts_recent - ts[0]) & MASK) < HALF:",
     "if ts is not None and t.ts_recent and 2 <= ((t.ts_recent - ts[0]) & MASK) < HALF:", FLOW),
    ("flow: ts_recent moved past rcv_wup", F,
     "if (ts is not None and t.ts_recent is not None and ((seq - t.s_wup - 1) & MASK) >= HALF - 1",
     "if (ts is not None and t.ts_recent is not None", FLOW),
    ("flow: in-window RST to the server accepted", F,
     "if flow.tcp_seen & _HS_DONE and (seq != t.s_rcv or t.c_nxt != t.s_rcv):",
     "if flow.tcp_seen & _HS_DONE and seq != t.s_rcv:", FLOW),
    ("flow: in-window RST to the client accepted", F,
     'return "" if seq == t.s_nxt or not flow.tcp_seen & _HS_DONE else "tcp.rst_not_exact"', 'return ""', FLOW),
    ("flow: SYN on an open connection taken", F,
     "if to_server and flags & SYN and seen & _HS_DONE:", "if False:", FLOW),
    ("flow: segment without ACK taken", F,
     "if not flags & (ACK | RST | SYN):", "if False:", FLOW),
    ("flow: rcv_nxt follows out-of-order segments", F,
     "if ((seq - rcv - 1) & MASK) >= HALF - 1 and 0 < ((end - rcv) & MASK) < HALF:",
     "if 0 < ((end - rcv) & MASK) < HALF:", FLOW),
    # decode.py
    ("decode: IPv6 AH length as other headers", P,
     "hlen = (data[off + 1] + 2) << 2 if nh == AH else (data[off + 1] + 1) << 3", "hlen = (data[off + 1] + 1) << 3",
     DECODE),
    ("defrag: AH length as other headers", P,
     "hlen = (l3[off + 1] + 2) << 2 if nh == AH else (l3[off + 1] + 1) << 3", "hlen = (l3[off + 1] + 1) << 3", DECODE),
    ("decode: IPv4 header length in 8-byte units", P, "hlen = (vihl & 15) << 2", "hlen = (vihl & 15) << 3", DECODE),
    ("decode: Ethernet padding kept as payload", P,
     "if total < n:           # link-layer padding (short Ethernet frames) is not the packet", "if False:", DECODE),
    ("decode: DF read as MF", P, "p.frag = (ident, off, bool(fo & 0x2000))", "p.frag = (ident, off, bool(fo & 0x4000))",
     DECODE),
    ("decode: IPv4 fragment offset in 4-byte units", P, "off = (fo & 0x1FFF) << 3", "off = (fo & 0x1FFF) << 2",
     DECODE),
    ("decode: IPv6 fragment offset keeps the flag bits", P,
     "p.frag = (ident, fo & 0xFFF8, bool(fo & 1))", "p.frag = (ident, fo, bool(fo & 1))", DECODE),
    ("decode: two destination-options headers flagged", P,
     "if dstopts == 3:  # one before the routing header and one after are legal", "if dstopts == 2:", DECODE),
    ("decode: urgent pointer byte order", P,
     "p.urg_ptr = (data[off + 18] << 8) | data[off + 19]", "p.urg_ptr = (data[off + 19] << 8) | data[off + 18]",
     DECODE + STREAM),
    ("decode: fixed TCP option lengths not checked", P,
     "if olen < 2 or i + olen > end or _TCP_OPT_LEN.get(kind, olen) != olen:",
     "if olen < 2 or i + olen > end:", DECODE),
    ("decode: UDP length shorter than the datagram ignored", P, "end = off + ulen", "end = end", DECODE),
    ("decode: LINKTYPE_NULL family byte order", P,
     'af = int.from_bytes(data[:4], "little")', 'af = int.from_bytes(data[:4], "big")', DECODE),
    ("decode: jumbogram without hop-by-hop", P,
     "if plen == 0 and nh == HOPOPTS and n > 40:", "if plen == 0 and n > 40:", DECODE),
    ("decode: VLAN priority bits kept in the id", P, "vlan = [tci & 0xFFF]", "vlan = [tci]", DECODE),
    # protocol logs: the server's answers (applayer/server.py), ja4, certificates
    ("logs: server answers not read", I,
     "answered = app.server.feed(pkt)", "answered = []", LOGS),
    ("logs: ja4 ciphers not sorted", A + "tls.py",
     'cipher_list = ",".join("%04x" % c for c in sorted(ciphers))', 'cipher_list = ",".join("%04x" % c for c in ciphers)',
     LOGS),
    ("logs: ja4 keeps SNI/ALPN in the extension hash", A + "tls.py",
     'ext_list = ",".join("%04x" % e for e in sorted(exts) if e not in (EXT_SERVER_NAME, EXT_ALPN))',
     'ext_list = ",".join("%04x" % e for e in sorted(exts))', LOGS),
    ("logs: tls version from the legacy field, not supported_versions", A + "tls.py",
     "sh.version = version_name(selected if selected is not None else legacy)", "sh.version = version_name(legacy)",
     LOGS),
    ("logs: HEAD response framed by its Content-Length", A + "http.py",
     'if req.method == "HEAD" or code in (204, 304):', "if code in (204, 304):", LOGS),
    ("logs: response body bytes not counted", A + "http.py", "self.req.length += take", "pass", LOGS),
    ("logs: content type not cut at ';' (Suricata cuts it)", A + "http.py",
     'self.ctype = escape_label(value.split(b";", 1)[0])   # Suricata cuts at \';\'',
     "self.ctype = escape_label(value)", LOGS),
    ("logs: chunk size lines not counted in length (libhtp counts them)", A + "http.py",
     "self.req.length += size                # libhtp counts the chunk framing too", "pass", LOGS),
    ("logs: answer read past the server depth", A + "server.py",
     "data = data[:SERVER_DEPTH - self.read]     # what is past the depth is not read", "pass", LOGS),
    ("logs: no bound on transactions waiting", A + "server.py",
     "while len(self.waiting) > MAX_WAITING:", "while len(self.waiting) > 10 ** 6:", LOGS),
    ("logs: a body read to the close not logged at the FIN", A + "server.py",
     "out.insert(0, req)             # answered, its body not ended: the bytes counted so far", "pass", LOGS),
    ("logs: flows let go while an answer may come", I,
     "if app.server is not None and app.server.active:", "if False:", LOGS),
    ("logs: a second ClientHello not left waiting for its ServerHello", I,
     'and app.server.waiting and "tls" not in new):', "):", LOGS),
    ("logs: TLS 1.2 certificate not read", A + "tls.py", "self.want_cert = True", "pass", LOGS),
    ("logs: DHCP/NTP datagrams logged as DNS", I,
     "loggable = responses is not None and dns.plausible(pkt.payload)", "loggable = responses is not None", LOGS),
    ("logs: DNS response header bits left out", "appliance/output/events.py", "d[name] = True", "pass", LOGS),
    # HTTP bodies (file_data) and the response status, as merged (rev3)
    ("body: a bad gzip CRC not said", A + "body.py", "self.bad = self.bad or not good", "self.bad = False", BODY),
    ("body: later gzip members ignored", A + "body.py",
     'if self.kind == "gzip" and buf[:2] == b"\\x1f\\x8b":', "if False:", BODY),
    ("body: gzip members unbounded", A + "body.py", 'raise _Beyond("http.body_gzip_members")', "pass", BODY),
    ("status: answers after an ambiguous body taken as unanswered", A + "server.py",
     "if self.reader.blind and self.waiting:", "if False:", STATUS),
    ("engine: a file_data rule matched before its body fits", D + "engine.py",
     "if low & self.body_rules and not low & self.body_fit:", "if False:", BODY),
]

# Mutations known to change no observable behaviour (a survivor here is not a missing test).
EQUIVALENT = {
    "tcp_flags on non-TCP packets": "the loader refuses tcp_flags without proto tcp, and the proto "
                                    "index keeps such a rule off every other packet",
}


def copy_repo(dst):
    ignore = shutil.ignore_patterns("__pycache__", ".hypothesis", ".pytest_cache", ".cache", "*.egg-info", ".git")
    for name in ("appliance", "tests", "rules", "bench"):
        shutil.copytree(REPO / name, dst / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, dst / name)
    shared = REPO.parent / "shared"
    if shared.is_dir():                       # tests find the corpus at ../shared
        os.symlink(shared, dst.parent / "shared")


def apply(root, file, old, new):
    """Replace the one line whose stripped text is `old`; None if it is not there once."""
    path = root / file
    text = path.read_text()
    lines = text.split("\n")
    hits = [i for i, ln in enumerate(lines) if ln.strip() == old or ln.strip().startswith(old + "  #")]
    if len(hits) != 1:
        hits = [i for i, ln in enumerate(lines) if old in ln]
        if len(hits) != 1:
            return None
    i = hits[0]
    indent = lines[i][:len(lines[i]) - len(lines[i].lstrip())]
    lines[i] = indent + new if lines[i].strip().startswith(old) else lines[i].replace(old, new)
    path.write_text("\n".join(lines))
    return text, i + 1


def run_tests(root, tests, timeout):
    tests = [t for t in dict.fromkeys(tests) if (root / t).exists()]
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header", *tests]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    try:
        p = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return "timeout", ""
    last = (p.stdout.strip().splitlines() or [""])[-1]
    if p.returncode == 0:
        return "passed", last
    if p.returncode == 1:
        failed = [ln.split(" ")[1] for ln in p.stdout.splitlines() if ln.startswith("FAILED ")]
        return "failed", failed[0] if failed else last
    return f"error({p.returncode})", last


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m bench.mutate", description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="", help="run the mutations whose file or label contains this text (or one of several, comma-separated)")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--timeout", type=int, default=600, help="seconds for one mutation's tests")
    o = ap.parse_args(argv)
    wanted = o.only.split(",")
    chosen = [m for m in MUTATIONS if any(w in m[0] or w in m[1] for w in wanted)]
    if o.list:
        for label, file, old, new, _ in chosen:
            print(f"{file}: {label}\n    - {old}\n    + {new}")
        return 0
    print(f"# python3 -m bench.mutate {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip())
    with tempfile.TemporaryDirectory(prefix="mutate-") as tmp:
        root = Path(tmp) / "repo"
        root.mkdir()
        copy_repo(root)
        t0 = time.monotonic()
        base, why = run_tests(root, sorted({t for m in chosen for t in m[4]}), o.timeout)
        print(f"baseline (unmutated) tests: {base} in {time.monotonic() - t0:.0f}s")
        if base != "passed":
            print(f"the unmutated tests do not pass ({why}): fix that first")
            return 2
        counts = {"CAUGHT": 0, "SURVIVED": 0, "STALE": 0, "ERROR": 0}
        survivors = []
        for label, file, old, new, tests in chosen:
            t1 = time.monotonic()
            applied = apply(root, file, old, new)
            if applied is None:
                verdict, detail, line = "STALE", "line not found once in the source", "?"
            else:
                original, line = applied
                try:
                    status, detail = run_tests(root, tests, o.timeout)
                finally:
                    (root / file).write_text(original)
                verdict = {"failed": "CAUGHT", "passed": "SURVIVED"}.get(status, "ERROR")
                if verdict == "ERROR":
                    detail = f"{status}: {detail}"
            counts[verdict] += 1
            if verdict == "SURVIVED":
                survivors.append((label, file, line, old, new))
            print(f"{verdict:8s} {time.monotonic() - t1:5.0f}s  {file}:{line}  {label}"
                  + (f"  [{detail}]" if verdict != "SURVIVED" else ""), flush=True)
        judged = counts["CAUGHT"] + counts["SURVIVED"]
        score = counts["CAUGHT"] / judged if judged else 0.0
        print(f"\nscore {counts['CAUGHT']}/{judged} caught ({score:.0%}); survived {counts['SURVIVED']}, "
              f"stale {counts['STALE']}, errors {counts['ERROR']}; {time.monotonic() - t0:.0f}s")
        for label, file, line, old, new in survivors:
            note = EQUIVALENT.get(label)
            print(f"  survived: {file}:{line} {label}" + (f" (equivalent: {note})" if note else ""))
            print(f"      - {old}\n      + {new}")
        return 1 if survivors and any(s[0] not in EQUIVALENT for s in survivors) else 0


if __name__ == "__main__":
    sys.exit(main())
