"""ICMP errors belong to the connection they quote.

Conntrack relates an ICMP/ICMPv6 error (unreachable, packet too big, time exceeded,
parameter problem, ...) to the connection whose packet it quotes: the error's conntrack
entry *is* that connection's (ctstate RELATED). Whatever our chain does with the error's
mark therefore lands on the quoted connection: a passed + offloaded error would run
CONNMARK --save-mark on it and hand it to the kernel before its own verdict is known
(one port unreachable quoting a pending :443 connection, and its ClientHello is never
read). So an error is judged with the connection it quotes (Suricata does the same):

- quoting a flow we track: that flow decides. A final verdict applies to the error
  (drop/reject -> drop: an error is never answered with an error, RFC 1122 3.2.2); an
  undecided or still-inspected flow's error passes, as the flow's own packets do
  meanwhile (path MTU discovery must keep working while a name is pending). The error
  is offloaded only when its connection is final and already offloaded: the mark it
  saves is the one the connection carries anyway.
- quoting nothing we track (forgotten, never seen, unreadable quote): the ICMP rules
  judge it as a packet of its own ICMP flow, and it is never offloaded.
"""
from .decode import ICMP_ERRORS
from .flow import flow_key
from .packet import ICMP, ICMPV6


def quoted_flow(flows, pkt):
    """The tracked flow `pkt` (an ICMP error) quotes, or None. Changes nothing in the table:
    an error neither counts toward that flow's depth nor keeps it alive."""
    return flows.flows.get(flow_key(pkt.quote))


def related_verdict(flow, offload):
    """(action, offload) for an error quoting `flow`."""
    if flow.final:
        action = "pass" if flow.verdict == "pass" else "drop"
        return action, offload and flow.offloaded
    return "pass", False                       # undecided (or passed, still inspected)


def is_error(pkt):
    """An ICMP/ICMPv6 error by type, readable quote or not: never offloaded on its own."""
    if pkt.proto == ICMP:
        return pkt.icmp_type in ICMP_ERRORS
    return pkt.proto == ICMPV6 and 0 <= pkt.icmp_type < 128
