"""The interfaces a queued packet crosses, and the ingress check they make possible.

Live, NFQUEUE in the FORWARD hook tells a packet's input device and the one the kernel routes
it out of. A flow keeps the pair of its client's packets (flow.in_iface): its client's packets
enter on one, its server's on the other (the same one for a flow routed back out where it came
in). A packet whose addresses say "the server" but which entered where the client's packets
enter was not sent by the server: a client speaking for its server (a forged RST, SYN/ACK or
ACK) could otherwise move the flow's state where the server's never goes and hide what it sends
next. FlowTable.lookup refuses such a packet to its flow; the Inspector drops it
(`flow.wrong_side`). Replay and GWLB (one interface, GENEVE) know no interfaces: "" there.
"""


class Ingress(str):
    """An interface name (what events print as in_iface) with `out`, the interface the same
    packet leaves by ("" when the hook has none). One object per pair (ingress()): a flow holds
    it at no cost of its own."""

    @property
    def back(self):
        """The pair of the packets that go the other way ("" out: no way to know, itself)."""
        return ingress(self.out, str(self)) if self.out else self


_PAIRS = {}


def ingress(name, out):
    """The one Ingress of (name, out)."""
    pair = _PAIRS.get((name, out))
    if pair is None:
        pair = _PAIRS[(name, out)] = Ingress(name)
        pair.out = out
    return pair
