"""Kernel pre-decision: the part of the rule set the kernel can judge from a flow's first packet.

A new TCP/UDP flow whose first applicable verdict rule (in the engine's order) needs nothing but
the header -- addresses, ports, protocol, direction -- gets that rule's verdict from the kernel and
is never queued; so does a flow no rule applies to at all (the default action). Everything
else goes to the queue as before. "Applicable" is read exactly as Detector.decide reads it:

- verdict rules describe the connection (initiator -> responder): the first packet's own header;
- a verdict rule that needs more (a name, content, flow keywords, flowbits, thresholds, a
  response status, a body, `header: packet`, `bypass`, `<>`) sends every flow its header fits
  (both orientations when it may be read both ways) to the queue, where it pends or matches;
- a rule whose match writes an EVE alert -- every alert rule, and a verdict rule that logs (drop
  and reject do unless `log: false`) -- sends every flow it could see (either orientation: alert
  rules read each packet's own direction) to the queue, ahead of any verdict: the kernel writes
  no alerts;
- with a protocol log on (eve types dns/tls/http), a passed flow stays in the queue: the log
  would read its transactions;
- monitor mode (or a monitored rule file): a drop/reject only passes, so the kernel passes.

The first-packet guard makes "first packet" the engine's: TCP only from a bare SYN (a flow picked
up mid-stream has no known initiator), UDP not from a port below 1024 to one at or above (the
engine reads such a flow both ways), no other protocol. What the kernel path loses is said
in docs/performance.md: a kernel-decided flow writes no flow record and no counters but the
kernel's own.

The policy is a list of entries in order; `KernelPolicy.decide` evaluates it in Python (replay,
tests) and netfilter_decisions.py writes the same list as nftables rules.
"""
from dataclasses import dataclass

from ..packet import TCP, UDP, SYN, ACK
from .keywords import app_fields, per_packet
from .rule import PROTOS

KERNEL_PROTOS = frozenset((TCP, UDP))
QUEUE = None                               # an entry's verdict: leave the flow to the queue
KERNEL_DECIDED = "kernel_policy"           # Flow.offloaded (EVE flow.bypass) of a flow it decides


@dataclass(frozen=True)
class Entry:
    verdict: str | None                    # "pass" | "drop" | "reject", or QUEUE
    direction: str                         # any | inbound | outbound (the flow's)
    protos: frozenset                      # of KERNEL_PROTOS
    src: object                            # AddrSet or None (any), the initiator
    dst: object
    sport: object                          # PortSet or None
    dport: object
    either_way: bool                       # also fits with the sides swapped (the reply's header)
    rule_id: int
    why: str                               # what keeps it out of the kernel ("" for a verdict)

    def fits(self, proto, src, sport, dst, dport, direction):
        if proto not in self.protos or (self.direction != "any" and self.direction != direction):
            return False
        if _fits(self, src, sport, dst, dport):
            return True
        return self.either_way and _fits(self, dst, dport, src, sport)


def _fits(e, src, sport, dst, dport):
    return ((e.src is None or e.src.contains(src)) and (e.dst is None or e.dst.contains(dst))
            and (e.sport is None or e.sport.contains(sport)) and (e.dport is None or e.dport.contains(dport)))


@dataclass(frozen=True)
class KernelPolicy:
    entries: tuple                         # Entry, in order: the first that fits decides
    default: str | None                    # when none fits: the default action's verdict, or QUEUE

    @property
    def decides_anything(self):
        return self.default is not QUEUE or any(e.verdict is not QUEUE for e in self.entries)

    def decide(self, proto, src, sport, dst, dport, direction, tcp_flags=0):
        """The kernel's verdict for a flow's first packet, or QUEUE."""
        if not first_packet_decidable(proto, sport, dport, tcp_flags):
            return QUEUE
        for e in self.entries:
            if e.fits(proto, src, sport, dst, dport, direction):
                return e.verdict
        return self.default


def first_packet_decidable(proto, sport, dport, tcp_flags):
    """The guard both sides share: a packet the engine reads as an oriented flow's first."""
    if proto == TCP:
        return tcp_flags & (SYN | ACK) == SYN
    if proto == UDP:
        return not (sport < 1024 <= dport)     # engine.server_side "b": read both ways
    return False


PROTOCOL_LOGS = ("dns", "tls", "http")


def compile_policy(ruleset, monitor_all=False, protocol_logs=(), recorded=None):
    """The KernelPolicy of a rule set. `monitor_all`: the config's monitor mode;
    `protocol_logs`: the protocol log types on (a passed flow is then left to the queue);
    `recorded`: the pcap log's mode (output/pcap_log.py), whose packets only a worker can write:
    "alerts" records dropped and rejected flows (left to the queue), "all" every flow."""
    if recorded == "all":
        return KernelPolicy((), QUEUE)
    rules = ruleset.rules
    passes = not protocol_logs
    refuses = recorded is None
    entries = []
    # alerts fire whatever the verdict: every flow one may see goes to the queue, first
    for r in rules:
        protos = _protos(r)
        if protos and (not r.decides or r.logs):
            entries.append(_entry(r, QUEUE, protos, True, "alerts" if not r.decides else "logs"))
    for r in rules:
        protos = _protos(r)
        if not r.decides or not protos or r.logs:     # (one that logs: queued above)
            continue
        verdict = r.action
        # the header alone, as the Detector's `plain` (no name, content, flow keyword, flowbits,
        # `header: packet`, threshold: those are packet or app keywords); `<>` fits more
        if (monitor_all or r.monitor) and r.action != "pass":
            # monitor mode passes it in the worker, which keeps the flow: a reload that
            # enforces the rule stops it there (a kernel pass would outlive the reload)
            why = "monitored"
        elif app_fields(r) or per_packet(r) or r.bidirectional:
            why = "needs more than the header"
        elif verdict == "pass" and not passes:
            why = "protocol logs read passed flows"
        elif verdict != "pass" and not refuses:
            why = "the pcap log records refused flows"
        else:
            why = ""
        # read both ways: `<>`, and `header: packet` (each packet by its own header: the reply's too)
        either = r.bidirectional or r.header == "packet"
        entries.append(_entry(r, verdict if not why else QUEUE, protos, either, why))
    default = ruleset.default_action
    if (default == "pass" and not passes) or (default != "pass" and (monitor_all or ruleset.default_monitor
                                                                      or not refuses)):
        default = QUEUE
    return KernelPolicy(tuple(entries), default)


def _protos(r):
    out = set()
    for name in r.protos:
        n = PROTOS[name]
        out |= KERNEL_PROTOS if n is None else ({n} & KERNEL_PROTOS)
    return frozenset(out)


def _entry(r, verdict, protos, either_way, why):
    return Entry(verdict, r.direction, protos, r.src, r.dst, r.src_port, r.dst_port, either_way, r.id, why)


def policy_for(settings, ruleset, recorded=None):
    """The policy of a rule set under an Inspector's Settings, or a Config (`run`): both
    have eve_types and mode; `recorded`: the pcap log's mode, if one is written (a Config
    says its own)."""
    pcap_log = getattr(settings, "pcap_log", None)
    if recorded is None and pcap_log is not None:
        recorded = pcap_log.mode
    logs = tuple(t for t in settings.eve_types if t in PROTOCOL_LOGS)
    return compile_policy(ruleset, settings.mode == "monitor", logs, recorded)
