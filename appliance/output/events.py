"""Build EVE events (alert, anomaly, flow, stats, and the dns/tls/http protocol logs) in Suricata's schema.

Only keys the Suricata EVE schema defines are used; appliance-specific detail
goes where the schema leaves room (alert.metadata).
"""
import hashlib
from collections import Counter

from .eve import timestamp
from ..detect.inspect_buffer import RESPONSE_BUFFERS, AppProgram
from ..detect.classification import category
from ..detect.keywords import app_program
from ..packet import PROTO_NAMES, TCP, ICMP, ICMPV6

_FLAG_LETTERS = ((0x01, "F"), (0x02, "S"), (0x04, "R"), (0x08, "P"), (0x10, "A"), (0x20, "U"), (0x40, "E"), (0x80, "C"))


def proto_name(p):
    return PROTO_NAMES.get(p, str(p))


def _base(event_type, ts):
    return {"timestamp": timestamp(ts), "event_type": event_type}


def _addresses(ev, pkt, flow):
    if flow is not None:
        ev["flow_id"] = flow.id
    if pkt is not None and pkt.src:
        ev["src_ip"] = pkt.src
        ev["src_port"] = pkt.sport
        ev["dest_ip"] = pkt.dst
        ev["dest_port"] = pkt.dport
        ev["proto"] = proto_name(pkt.proto)
        if pkt.proto in (ICMP, ICMPV6) and pkt.icmp_type >= 0:
            ev["icmp_type"] = pkt.icmp_type
            ev["icmp_code"] = pkt.icmp_code
        if pkt.vlan:
            ev["vlan"] = list(pkt.vlan)
    if pkt is not None and pkt.in_iface:
        ev["in_iface"] = pkt.in_iface
    if pkt.pcap_file:                              # replay: the capture file and packet number
        ev["pcap_filename"] = pkt.pcap_file
        if pkt.pcap_cnt:
            ev["pcap_cnt"] = pkt.pcap_cnt
        elif flow is not None and flow.pcap_cnt:
            ev["pcap_cnt"] = flow.pcap_cnt


def app_fields(ev, flow, rule=None):
    """Add app_proto and the dns/tls/http object of the flow's current transaction
    (of several, the one the rule's names match)."""
    app = flow.app if flow is not None else None
    if app is None or not app.known:
        return
    ev["app_proto"] = app.proto
    tx = app.transaction(rule and (rule.dns_query or rule.http_host))
    if rule is not None and app.answered and any(b in RESPONSE_BUFFERS for b, _ in (*rule.buffers, *rule.bsize)):
        # a rule on the response status: the transaction the packet answered that it fits
        prog = AppProgram(rule, rule.http_host)
        tx = next((t for t in app.answered if prog.fits(app.proto, [t], True)), app.answered[0])
    elif rule is not None and isinstance(app.tx, list) and app_program(rule):
        # of several, the transaction the rule's buffers fit (as the engine read them)
        prog = AppProgram(rule, rule.dns_query or rule.tls_sni or rule.http_host)
        tx = next((t for t in app.tx if prog.fits(app.proto, [t], True)), tx)
    if tx is None:
        return
    ev[app.proto] = tx_object(app.proto, tx)


def tx_object(proto, tx):
    """The dns/tls/http object of one transaction (a DNS query or response, a ClientHello,
    an HTTP request), in Suricata's EVE shape (dns: version 3)."""
    if proto == "dns":
        d = {"version": 3, "type": "response" if tx.response else "request", "id": tx.id,
             "queries": [{"rrname": q.rrname, "rrtype": q.rrtype} for q in tx.queries]}
        if tx.response:
            d["flags"] = "%x" % tx.flags
            d["qr"] = True
            # Suricata's response header bits: each one written only when set
            for bit, name in ((0x0400, "aa"), (0x0200, "tc"), (0x0100, "rd"), (0x0080, "ra"), (0x0040, "z")):
                if tx.flags & bit:
                    d[name] = True
            d["opcode"] = tx.opcode
            d["rcode"] = tx.rcode
            answers = []
            for a in tx.answers:
                one = {"rrname": a.rrname, "rrtype": a.rrtype, "ttl": a.ttl}
                if a.rdata is not None:
                    one["rdata"] = a.rdata
                answers.append(one)
            if answers:
                d["answers"] = answers
        return d
    if proto == "tls":
        t = {"version": tx.version}
        if tx.sni:
            t["sni"] = tx.sni
        if tx.alpn:
            t["client_alpns"] = list(tx.alpn)
        ja3 = tx.ja3_string()
        t["ja3"] = {"hash": hashlib.md5(ja3.encode()).hexdigest(), "string": ja3}
        t["ja4"] = tx.ja4()
        sh = tx.server
        if sh is not None:                        # the ServerHello: the version the server chose
            t["version"] = sh.version
            ja3s = sh.ja3s_string()
            t["ja3s"] = {"hash": hashlib.md5(ja3s.encode()).hexdigest(), "string": ja3s}
            if sh.alpn:
                t["server_alpns"] = list(sh.alpn)
        cert = tx.certificate
        if cert is not None:                      # TLS <= 1.2: the certificate is in the clear
            if cert.subject:
                t["subject"] = cert.subject
            if cert.issuer:
                t["issuerdn"] = cert.issuer
        return t
    # Suricata's `protocol` is the request's; a request without one (HTTP/0.9 style) shows
    # the response's
    h = {"url": tx.uri, "http_method": tx.method, "protocol": tx.protocol or tx.response_protocol or ""}
    if tx.host:
        h["hostname"] = tx.host
    if tx.user_agent:
        h["http_user_agent"] = tx.user_agent
    if tx.status is not None:
        h["status"] = tx.status
        h["length"] = tx.length or 0
        if tx.content_type:
            h["http_content_type"] = tx.content_type
        if tx.redirect:
            h["redirect"] = tx.redirect
    return h


def protocol(pkt, flow, proto, tx):
    """A protocol log event (event_type dns/tls/http): one transaction, whatever the rules.
    tls and http are transactions of the connection, logged client -> server whichever packet
    completed them (Suricata's LOG_DIR_FLOW); dns events keep their packet's direction (a
    response from the server). `pkt` None: logged as the flow ends (its last packet's time)."""
    if pkt is None or (proto != "dns" and flow is not None):
        ev = _base(proto, pkt.ts if pkt is not None else flow.last)
        ev["flow_id"] = flow.id
        ev.update(src_ip=flow.src, src_port=flow.sport, dest_ip=flow.dst, dest_port=flow.dport,
                  proto=proto_name(flow.proto))
        iface = pkt.in_iface if pkt is not None else flow.in_iface
        if iface:
            ev["in_iface"] = iface
        pcap_file = pkt.pcap_file if pkt is not None else flow.pcap_file
        if pcap_file:
            ev["pcap_filename"] = pcap_file
            cnt = (pkt.pcap_cnt if pkt is not None else 0) or flow.pcap_cnt
            if cnt:
                ev["pcap_cnt"] = cnt
    else:
        ev = _base(proto, pkt.ts)
        _addresses(ev, pkt, flow)
    ev["app_proto"] = proto
    ev[proto] = tx_object(proto, tx)
    return ev


def alert(pkt, flow, rule, pkt_action, would=None):
    """`would`: monitor mode passed a packet enforce mode would have dropped/rejected: the
    alert is "allowed" (Suricata's word for it) and metadata.monitor names what would have
    happened (would_drop / would_reject); alert has no other room in the EVE schema."""
    ev = _base("alert", pkt.ts)
    _addresses(ev, pkt, flow)
    a = {
        "action": "blocked" if pkt_action in ("drop", "reject") else "allowed",
        "gid": rule.gid,
        "signature_id": rule.id,
        "rev": rule.rev or 1,            # YAML rules have no revision: Suricata's default 1
        "signature": rule.msg,
        "severity": rule.severity,
    }
    if rule.classtype:
        a["category"] = category(rule.classtype)   # its description, as Suricata writes it
    meta = {k: list(v) for k, v in (rule.metadata or {}).items()}
    meta.setdefault("rule_action", [rule.action])
    meta.setdefault("rule_source", [f"{rule.file}:{rule.line}"])
    if would is not None:
        meta["monitor"] = [f"would_{would}"]
    a["metadata"] = meta
    if rule.target is not None:
        # Suricata's target keyword: which end of the alerting packet is attacked
        src, dst = {"ip": pkt.src}, {"ip": pkt.dst}
        if pkt.proto in (6, 17, 132):      # ports only where the protocol has them
            src["port"], dst["port"] = pkt.sport, pkt.dport
        a["source"], a["target"] = (src, dst) if rule.target == "dest_ip" else (dst, src)
    ev["alert"] = a
    if flow is not None:
        ev["direction"] = "to_server" if pkt.src == flow.src and pkt.sport == flow.sport else "to_client"
    app_fields(ev, flow, rule)
    return ev


def anomaly(pkt, flow, name, layer):
    ev = _base("anomaly", pkt.ts)
    _addresses(ev, pkt, flow)
    kind = "applayer" if layer == "applayer" else ("stream" if name.startswith("stream.") else "decode")
    ev["anomaly"] = {"type": kind, "event": name, "layer": layer}
    return ev


def tcp_flags_hex(flags):
    return f"{flags:02x}"


def flow(f):
    end = timestamp(f.last)                       # the event's time and the flow's end: made once
    ev = {"timestamp": end, "flow_id": f.id, "event_type": "flow",
          "src_ip": f.src, "src_port": f.sport, "dest_ip": f.dst, "dest_port": f.dport,
          "proto": proto_name(f.proto)}
    if f.in_iface:
        ev["in_iface"] = f.in_iface
    if f.pcap_file:
        ev["pcap_filename"] = f.pcap_file
        if f.pcap_cnt:
            ev["pcap_cnt"] = f.pcap_cnt
    if f.app is not None and f.app.known:
        ev["app_proto"] = f.app.proto
    fl = {
        "pkts_toserver": f.pkts_ts, "pkts_toclient": f.pkts_tc,
        "bytes_toserver": f.bytes_ts, "bytes_toclient": f.bytes_tc,
        "start": timestamp(f.start), "end": end,
        "age": int(f.last - f.start),
        "state": f.state, "reason": f.reason, "alerted": f.alerted,
        "action": "pass" if f.monitored else (f.verdict or "pass"),   # what the packets got
    }
    if f.offloaded:                               # seen on an interface: live, the kernel took it
        # (a string: how, e.g. "kernel_policy", a flow the kernel decides from its header alone)
        fl["bypass"] = f.offloaded if type(f.offloaded) is str else "kernel" if f.in_iface else "offload"
    ev["flow"] = fl
    if f.proto == TCP:
        ev["tcp"] = {"tcp_flags": tcp_flags_hex(f.flags_ts | f.flags_tc),
                     "tcp_flags_ts": tcp_flags_hex(f.flags_ts), "tcp_flags_tc": tcp_flags_hex(f.flags_tc),
                     "state": f.state}
    if f.verdict_rule is not None:
        ev["metadata"] = {"flowbits": [f"verdict_rule:{f.verdict_rule.id}"]}
    return ev


# Distinct non-IP kinds counted by name. A capture (or a LINKTYPE_NULL header) can carry any
# of 2^16 ethertypes / address families: past this many, new ones count as "<family>-other".
MAX_ENCAP_KINDS = 64


class Counters:
    """Per-inspector counters, reported in the stats event. Packets are counted by
    (IP version, protocol): an IP packet by its protocol number in a list per version (one
    item update a packet: no key tuple made and hashed, as the one dict took), the rest
    (non-IP, a protocol the decoder could not read) in a dict; `kinds` joins them. The
    compiled twin holds `pkts`/`bytes` as C 64-bit counts: exact to 2**63 (about 23 years of
    100 Gbit/s), where these Python ints never end."""

    def __init__(self):
        self.pkts = self.bytes = self.invalid = 0
        self.ip4 = [0] * 256         # IPv4 packets by protocol number
        self.ip6 = [0] * 256         # IPv6 packets by (final) next header
        self.other_kinds = {}        # (ip_version, proto) -> packets, for the rest
        self.vlan = 0
        self.encap = {}
        self.verdicts = {"pass": 0, "drop": 0, "reject": 0}
        self.would_block = {"drop": 0, "reject": 0}   # monitor mode: passed, enforce would have done this
        self.alerts = self.alerts_suppressed = 0
        self.rule_hits = Counter()   # (rule id, msg) -> alert events
        self.fast_path = 0
        self.internal_errors = 0
        self.kernel_decided = self.kernel_mismatch = 0   # kernel_policy.py: flows it decides / disagreements
        self.flows_ended = {}
        self.app_flows = {}

    def count_packet(self, pkt):
        self.pkts += 1
        self.bytes += pkt.length
        version = pkt.ip_version
        proto = pkt.proto
        if 0 <= proto < 256 and version == 4:
            self.ip4[proto] += 1
        elif 0 <= proto < 256 and version == 6:
            self.ip6[proto] += 1
        else:
            k = (version, proto)
            kinds = self.other_kinds
            kinds[k] = kinds.get(k, 0) + 1
        if pkt.anomalies or pkt.vlan or not version:
            self._count_unusual(pkt)

    @property
    def kinds(self):
        """(ip_version, proto) -> packets, of the kinds seen."""
        out = {(4, p): n for p, n in enumerate(self.ip4) if n}
        out.update({(6, p): n for p, n in enumerate(self.ip6) if n})
        out.update(self.other_kinds)
        return out

    def _count_unusual(self, pkt):
        if pkt.anomalies:
            self.invalid += 1
        if pkt.vlan:
            self.vlan += 1
        if not pkt.ip_version and pkt.encap:
            encap, kind = self.encap, pkt.encap
            if kind not in encap and len(encap) >= MAX_ENCAP_KINDS:
                kind = kind.split("-", 1)[0] + "-other"   # e.g. "af-other": totals stay right
            encap[kind] = encap.get(kind, 0) + 1

    def count_verdict(self, action):
        self.verdicts[action] += 1

    def by(self, version=None, proto=None):
        return sum(n for (v, p), n in self.kinds.items()
                   if (version is None or v == version) and (proto is None or p == proto))

    @property
    def accepted(self):
        return self.verdicts["pass"]

    @property
    def blocked(self):
        return self.verdicts["drop"]

    @property
    def rejected(self):
        return self.verdicts["reject"]


def stats(inspector, now):
    c = inspector.counters
    ft = inspector.flows
    uptime = int(now - inspector.first_ts) if inspector.first_ts is not None else 0
    decoder = {"pkts": c.pkts, "bytes": c.bytes, "invalid": c.invalid, "ipv4": c.by(4), "ipv6": c.by(6),
               "tcp": c.by(proto=6), "udp": c.by(proto=17), "icmpv4": c.by(proto=1), "icmpv6": c.by(proto=58),
               "vlan": c.vlan,
               "mpls": c.encap.get("mpls", 0), "pppoe": c.encap.get("pppoe", 0), "arp": c.encap.get("arp", 0),
               "unknown_ethertype": sum(v for k, v in c.encap.items() if k.startswith("ethertype-"))}
    if c.pkts:
        decoder["avg_pkt_size"] = c.bytes // c.pkts
    return {
        "timestamp": timestamp(now), "event_type": "stats",
        "stats": {
            "uptime": uptime,
            "decoder": decoder,
            "flow": {"total": ft.total, "active": len(ft), "tcp": ft.by_proto.get(6, 0),
                     "udp": ft.by_proto.get(17, 0), "icmpv4": ft.by_proto.get(1, 0),
                     "icmpv6": ft.by_proto.get(58, 0),
                     "mgr": {"flows_evicted": ft.evicted, "flows_timeout": c.flows_ended.get("timeout", 0)}},
            "flow_bypassed": {"local_pkts": c.fast_path, "closed": c.flows_ended.get("closed", 0)},
            "detect": {"alert": c.alerts, "alerts_suppressed": c.alerts_suppressed},
            "ips": {"accepted": c.accepted, "blocked": c.blocked, "rejected": c.rejected},
            "appliance": appliance_counters(inspector),
        },
    }


def appliance_counters(inspector):
    """The one addition to Suricata's stats schema (it has no names for these): what went
    wrong inside, and what the event limits and the disk kept out of EVE."""
    c, lim, ft = inspector.counters, inspector.limits, inspector.flows
    eve = inspector.eve
    pcap_log = getattr(inspector, "pcap_log", None)
    return {
        "internal_errors": c.internal_errors,
        "monitor": {"would_drop": c.would_block["drop"], "would_reject": c.would_block["reject"]},
        **({"kernel_decisions": {"flows": c.kernel_decided, "mismatch": c.kernel_mismatch}}
           if getattr(inspector, "kernel_policy", None) is not None else {}),
        "eve": {"written": getattr(eve, "count", 0), "lost": getattr(eve, "lost", 0),
                "rotations": getattr(eve, "rotations", 0)},
        **({"pcap_log": pcap_log.counters()} if pcap_log is not None else {}),
        "anomalies": dict(sorted(lim.anomalies.items())),
        "anomalies_suppressed": lim.anomalies_suppressed,
        "flows_unlogged": dict(sorted(lim.flows_unlogged.items())),
        "flows_evicted": {"final": ft.evicted_by_class[0], "unconfirmed": ft.evicted_by_class[1],
                          "pending": ft.evicted_by_class[2]},
    }


from ..compiled import use_compiled  # noqa: E402 -- last: the Cython build of this file, if built
use_compiled(globals())
