"""`payload: stream` (Suricata's flow:only_stream): content read on a direction's
reassembled TCP stream instead of each packet's payload, so a match split across
segments is seen.

Each direction has its own reassembly (ClientStream: Linux's receive queue, what the
receiving application reads), kept only for flows that a stream rule may look at. A
packet that delivers new in-order bytes is inspected with those bytes plus the last
(longest content - 1) bytes before them, per rule (Suricata's stream inspection does the
same): a match that ends in the new bytes is found, a match found before is not found
again (its longest content cannot fit in the overlap), so a rule matches once per
occurrence, on the packet that completed it. A retransmission or an out-of-order segment
delivers nothing new: no stream rule matches on it; the packet that fills the hole
delivers the bytes behind it too.

A stream read two ways (a conflicting overlap, an urgent byte whose effect depends on
when the application read, out-of-order data past the room) or with a gap (the receiver
acknowledged bytes never seen here) is `unknown`: what the
receiver reads is not sure, so the engine reads it against the attacker (exception
policy "drop": drop/reject stream rules match, pass rules do not).
"""
from ..packet import ACK, RST
from ..stream import HALF, MASK, ClientStream


class StreamPayload:
    """One direction's reassembled bytes for stream rules: feed() every segment of the
    flow, get back this packet's new bytes with the overlap before them."""
    __slots__ = ("stream", "keep", "reported", "gap", "inspected")

    def __init__(self, isn, keep):
        self.stream = ClientStream(isn)   # (isn None: picked up at the first byte seen)
        self.keep = keep                  # bytes kept before the new ones: longest stream content - 1
        self.reported = False             # exception.stream_ambiguous said for this direction
        self.gap = False                  # the receiver acknowledged bytes never seen here
        self.inspected = 0                # stream bytes handed to the rules so far

    @property
    def unknown(self) -> bool:
        st = self.stream
        return st.ambiguous or st.lost or self.gap

    def acked(self, ack, found):
        """The receiver's cumulative ACK: past the bytes delivered here (and a FIN), it read
        bytes this reassembly never saw (a capture that lost them, a path that bypassed the
        appliance): what it read is not known."""
        sb = self.stream.bytes
        if self.gap or sb is None or sb.start is None:
            return
        if ((ack - sb.start - sb.rcv - sb.fin + HALF) & MASK) - HALF > 0:   # (from rcv: review s18 F1)
            self.gap = True
            found.append("stream.gap")

    def feed(self, pkt, toward, window, found):
        """`toward`: the segment goes this direction (else it is the other side's: a SYN/ACK
        may settle a SYN's data, read on this direction's next segment). Returns (bytes, new)
        -- the overlap then the bytes not inspected yet, and how many those are -- or None
        when there are none."""
        st = self.stream
        grew = st.feed(pkt, toward, window, found)
        sb = st.bytes
        if not toward or sb is None:
            return None
        data = sb.data
        while grew and sb.cut:            # a segment larger than the room: the rest once it is free
            sb.consume(len(sb.data))
            if not st.feed(pkt, toward, window, found):
                break
            data += sb.data
        new = sb.delivered - self.inspected
        if new <= 0:
            return None
        self.inspected = sb.delivered
        data = data[-(new + self.keep):]
        sb.consume(max(0, len(sb.data) - self.keep))
        return data, new


def view(flow, pkt, to_server, keep, window, found):
    """(this direction's StreamPayload, what its feed() returned for this packet), creating
    the flow's per-direction reassembly on its first data segment; None before that."""
    pair = flow.payloads
    if pair is None:
        if not pkt.payload:
            return None
        pair = flow.payloads = [None, None]
    i = 0 if to_server else 1
    if pair[i] is None and pkt.payload:
        # anchored at the ISN when the handshake was seen, so a first segment out of order
        # waits for the bytes before it; not when this direction carried inspected payload
        # before (stream rules loaded since): those bytes are gone, it starts here (mid-stream)
        tcp = flow.tcp
        isn = flow.isn if to_server else (tcp.s_acked0 - 1) & MASK if tcp is not None else None
        earlier = (flow.inspected_bytes - flow.inspected_tc if to_server else flow.inspected_tc) - len(pkt.payload)
        pair[i] = StreamPayload(isn if earlier <= 0 else None, keep)
    if not to_server and pair[0] is not None:
        pair[0].feed(pkt, False, window, found)   # a SYN/ACK settles the client's SYN data
    other = pair[1 - i]
    if other is not None and pkt.tcp_flags & (ACK | RST) == ACK and not pkt.discard:
        other.acked(pkt.ack, found)
    sp = pair[i]
    if sp is None:
        return None
    sp.keep = keep                        # a reload may bring longer contents
    return sp, sp.feed(pkt, True, window, found)
