"""Live packets from an AWS Gateway Load Balancer: GENEVE over UDP 6081.

The GWLB sends each packet of the protected VPC to a target, wrapped in GENEVE with AWS's
options (appliance.geneve); the target returns the packets it allows the same way, and the
GWLB delivers them on. So for every datagram:

    parse GENEVE (strict; a bad one is a counted drop, never forwarded)
    -> decode the inner packet, keyed on its 5-tuple plus the endpoint (Packet.tunnel = ENI id)
    -> Inspector.process (the one pipeline: source.run)
    -> pass:   the datagram back to the GWLB exactly as received (header, options, inner bytes)
       drop:   nothing goes back
       reject: the inner packet is dropped; the RST / ICMP answer goes back inside the same
               GENEVE header (same options: the GWLB returns it through the same endpoint)
       a fragment: kept until its IP datagram is judged whole, then returned with the
               datagram's other fragments (pass) or not at all (`_fragment`)
    -> a final verdict (Verdict.offload): both directions of the flow into the kernel's sets
       (appliance.gwlb_offload), which return or drop its later datagrams without waking us;
       the flow's end takes them out again

A plain blocking socket loop: Python has no recvmmsg, and recv_into one reused buffer
allocates only the bytes of the datagram. One socket, one process; scaling out is the
GWLB's job (more targets), see docs/gwlb.md.
"""
import argparse
import ipaddress
import logging
import os
import signal
import socket
import sys
import time

from appliance import geneve, gwlb_offload
from appliance.decode import decode_l3
from appliance.flow import CLOSED, CLOSING
from appliance.inspector import HELD
from appliance.reject import IcmpLimit, answer, kernel_limits, too_big
from appliance.packet import TCP

log = logging.getLogger("appliance.gwlb")

DATAGRAM_MAX = 65535
OUTER = 20 + 8                  # the outer IPv4 and UDP headers around a GENEVE datagram
GWLB_MTU = 8500                 # the largest inner packet a GWLB carries
TOO_BIG = "gwlb.too_big"        # anomaly: an allowed packet that cannot go back whole
RCVBUF = 32 << 20
SO_RCVBUFFORCE = 33
SENDER_CACHE = 4096
TEARDOWN = (CLOSING, CLOSED)


class Counters:
    """What the GENEVE source sees beyond the Inspector's verdict counters."""
    __slots__ = ("datagrams", "returned", "dropped", "reject_sent", "send_errors", "malformed", "too_big",
                 "too_big_sent", "held", "offloaded")

    def __init__(self):
        self.datagrams = self.returned = self.dropped = self.reject_sent = self.send_errors = 0
        self.too_big = self.too_big_sent = 0     # allowed but too big to go back; ICMP answers sent
        self.offloaded = 0                       # flows handed to the kernel fast path
        self.malformed = {}                      # drop reason (geneve.*) -> count
        self.held = 0                            # fragments kept until their datagram is judged whole

    def as_dict(self):
        return {"datagrams": self.datagrams, "returned": self.returned, "dropped": self.dropped,
                "reject_sent": self.reject_sent, "send_errors": self.send_errors,
                "malformed": dict(self.malformed), "too_big": self.too_big, "too_big_sent": self.too_big_sent,
                "held": self.held, "offloaded": self.offloaded}


class Senders:
    """The addresses a GWLB may send from (its nodes' addresses, or their subnets). Anyone
    else reaching UDP 6081 could otherwise have us forward what they wrap."""

    def __init__(self, networks):
        self.networks = tuple(ipaddress.ip_network(n, strict=False) for n in networks)
        if not self.networks:
            raise ValueError("no GWLB sender address configured: every datagram would be refused")
        self._known = {}

    def allowed(self, addr):
        ok = self._known.get(addr)
        if ok is None:
            if len(self._known) >= SENDER_CACHE:  # a spoofed-source flood cannot grow it
                self._known.clear()
            ip = ipaddress.ip_address(addr.split("%", 1)[0])
            # a dual-stack socket ("::") sees an IPv4 node as ::ffff:a.b.c.d: the same sender
            ip = getattr(ip, "ipv4_mapped", None) or ip
            ok = self._known[addr] = any(ip in n for n in self.networks)
        return ok


class GwlbSource:
    """Decapsulated packets from the GWLB socket, their verdicts back to the GWLB.

    Iterating reads datagrams until `stop()`; between datagrams (every `wait` seconds when
    idle) `idle()` runs, so flow timeouts advance with no traffic. Pull source: the verdict
    for a packet comes (source.run) before the next datagram is read, so the datagram in
    hand is the one the verdict is for."""

    def __init__(self, sock, senders, reply_port=geneve.PORT, idle=None, wait=0.2, limit=None, defrag=None,
                 offload=None):
        self.sock = sock
        self.offload = offload                # gwlb_offload.FlowSets, or None (no kernel fast path)
        self.senders = senders
        self.reply_port = reply_port          # GWLB listens on 6081 (None: the sender's port)
        self.idle = idle
        self.wait = wait
        self.limit = limit if limit is not None else IcmpLimit(**kernel_limits())   # as inline (Rejector)
        self.counters = Counters()
        # the Inspector's Defragmenter: a fragment's datagram waits there until the whole IP
        # datagram is judged (None: fragments are never returned before that, so never whole)
        self.defrag = defrag
        # the largest outer IPv4 packet the data interface sends (its MTU); None: not checked.
        # A datagram larger than that came in outer fragments and cannot go back whole.
        self.mtu = None
        self.buf = bytearray(DATAGRAM_MAX)
        self.view = memoryview(self.buf)
        self._running = True
        self._datagram = b""
        self._header = 0
        self._peer = None

    def stop(self):
        self._running = False

    def malformed(self, reason):
        m = self.counters.malformed
        m[reason] = m.get(reason, 0) + 1

    def __iter__(self):
        sock, view, c, offload = self.sock, self.view, self.counters, self.offload
        sock.settimeout(self.wait)
        short = False                     # the socket's timeout is the adds' DELAY
        next_idle = time.monotonic() + self.wait
        while self._running:
            now = time.monotonic()
            if self.idle is not None and now >= next_idle:
                next_idle = now + self.wait
                self.idle()
            if offload is not None:
                if offload.due(now):
                    offload.flush()
                if short != offload.waiting():    # adds waiting: wait for a datagram no longer than they may
                    short = not short
                    sock.settimeout(offload.DELAY if short else self.wait)
            try:
                n, peer = sock.recvfrom_into(self.buf)
            except (socket.timeout, BlockingIOError, InterruptedError):
                continue
            c.datagrams += 1
            if not self.senders.allowed(peer[0]):   # read each time: a reload may change it
                self.malformed("geneve.unknown_sender")
                continue
            data = view[:n].tobytes()
            t = geneve.parse(data)
            if t.__class__ is str:
                self.malformed(t)
                continue
            p = decode_l3(data[t.header_len:], time.time())
            p.tunnel = t.eni
            if self.mtu is not None and n + OUTER > self.mtu:   # the Inspector writes the event
                p.anomalies = [*p.anomalies, TOO_BIG]
            if p.quote is not None:           # an ICMP error relates to a flow of the same endpoint
                p.quote.tunnel = t.eni
            self._datagram, self._header, self._peer = data, t.header_len, peer
            yield p
        if offload is not None:               # stopping: the flows' ends to come need no deletes
            offload.release()

    def _send(self, data):
        peer = self._peer
        port = self.reply_port if self.reply_port is not None else peer[1]
        try:
            self.sock.sendto(data, (peer[0], port))
            return True
        except OSError as e:                  # a full socket buffer, a route gone: counted
            self.counters.send_errors += 1
            if self.counters.send_errors <= 10:
                log.warning("gwlb: cannot return a datagram to %s: %s", peer[0], e)
            return False

    def _too_big(self, pkt):
        """An allowed packet that cannot go back whole (it came in outer fragments; sent back
        fragmented it would rely on the GWLB reassembling GENEVE, which AWS does not
        document): not returned. As a router on a smaller link does, the
        sender hears why when it asked not to be fragmented (IPv4 DF, every IPv6 packet):
        ICMP fragmentation needed / ICMPv6 Packet Too Big, with the inner MTU that fits, back
        through the tunnel (rate-limited like reject answers). IPv4 without DF is not
        fragmented here: dropped, counted, and the anomaly event says so."""
        c = self.counters
        c.too_big += 1
        c.dropped += 1
        if c.too_big <= 10:
            log.warning("gwlb: a %d-byte inner packet %s -> %s does not fit the data interface's MTU %d back "
                        "(GENEVE adds %d bytes); not returned", len(pkt.l3), pkt.src, pkt.dst, self.mtu,
                        OUTER + self._header)
        data = too_big(pkt, self.mtu - OUTER - self._header)
        if data is not None and self.limit.allow(pkt.ip_version, pkt.src):
            c.too_big_sent += self._send(self._datagram[:self._header] + data)

    def _fragment(self, pkt, v):
        """A fragment's datagram: True when it is dealt with here. The receiver reassembles
        what we return, so nothing of an IP datagram goes back before the Inspector judged it
        whole: a held fragment's datagram is kept with it in the Defragmenter (bounded there,
        gone with it: timeout, eviction, an overlap discarding it); the completing one's
        verdict takes them all, in the order received. Returning held fragments at once
        would let the sender complete a dropped datagram at the receiver by sending its last
        fragment again (a new datagram here, held and returned)."""
        d = self.defrag.placed if self.defrag is not None else None
        if v is HELD:
            if d is not None:                 # a duplicate, or a discarded datagram's: never returned
                self.defrag.carry(d, self._datagram)
            self.counters.held += 1
            return True
        if d is None:                         # not reassembled (too broken to place): judged alone
            return False
        if v.action == "pass":
            for data in d.carried:
                if self.mtu is not None and len(data) + OUTER > self.mtu:
                    self.counters.too_big += 1
                    self.counters.dropped += 1
                else:
                    self.counters.returned += self._send(data)
        else:
            self.counters.dropped += len(d.carried)
        return False

    def verdict(self, pkt, v):
        c = self.counters
        action = v.action
        if pkt.frag is not None and self._fragment(pkt, v):
            return
        flow = v.flow
        if self.offload is not None and flow is not None:
            if flow.state in TEARDOWN:
                # a FIN or RST (the kernel sends them here): the rest of the teardown comes
                # here too, so the flow closes and ends in Python (and a new connection on
                # the same ports is inspected from its SYN)
                self.offload.forget(flow)
            elif v.offload:
                # final only (never while pending): one packet must not offload an undecided flow
                c.offloaded += self.offload.add(flow, action, time.monotonic())
        if action == "pass":                  # held fragments too: the datagram's verdict is its last one's
            if self.mtu is not None and len(self._datagram) + OUTER > self.mtu:
                self._too_big(pkt)
                return
            c.returned += self._send(self._datagram)
            return
        if action == "reject":
            data = answer(pkt)
            if data is not None and (pkt.proto == TCP or self.limit.allow(pkt.ip_version, pkt.src)):
                c.reject_sent += self._send(self._datagram[:self._header] + data)
        c.dropped += 1


def data_interface(listen_address, sender):
    """(name, MTU) of the interface GENEVE comes and goes on: the one holding the listen
    address, or (listening on any) the one the route to the GWLB leaves by; None if unknown."""
    import json
    import subprocess
    try:
        if ipaddress.ip_address(listen_address).is_unspecified:
            out = subprocess.run(["ip", "-j", "route", "get", sender], capture_output=True, text=True, timeout=5)
            name = json.loads(out.stdout)[0]["dev"]
        else:
            out = subprocess.run(["ip", "-j", "addr", "show", "to", listen_address], capture_output=True, text=True,
                                 timeout=5)
            name = json.loads(out.stdout)[0]["ifname"]
        return name, interface_mtu(name)
    except (OSError, ValueError, KeyError, IndexError, subprocess.TimeoutExpired):
        return None


def interface_mtu(name):
    with open(f"/sys/class/net/{name}/mtu") as f:
        return int(f.read())


def listen(address, port=geneve.PORT, reuse_port=False):
    """The GENEVE socket: bound to the data address (GWLB sends to the target's IP).
    `reuse_port`: one of a group of worker sockets on the port (appliance.fleet.steering)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
    except OSError:                           # not root: the kernel's rmem_max applies
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    s.bind((address, port))
    return s


def main(argv=None) -> int:
    """`python3 -m appliance.source.gwlb --rules R --gwlb CIDR [--listen ADDR] [--eve F]`:
    one GENEVE worker (the first step of fleet mode; appliance.yaml's `mode: gwlb` comes
    with the supervisor and health endpoint, docs/gwlb.md). SIGUSR1 writes the counters to
    stderr as JSON; SIGTERM stops."""
    import json
    from appliance import source
    from appliance.detect.loader import RuleError, load_rules
    from appliance.inspector import Inspector, Settings
    from appliance.output.eve import EveWriter

    ap = argparse.ArgumentParser(prog="appliance.source.gwlb")
    ap.add_argument("--rules", action="append", required=True)
    ap.add_argument("--gwlb", action="append", required=True, help="GWLB sender address or CIDR")
    ap.add_argument("--listen", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=geneve.PORT)
    ap.add_argument("--eve")
    ap.add_argument("--home-net", action="append",
                    help="the protected network (CIDR): which side is outside, as no interface tells it here")
    ap.add_argument("--ready", help="file written once the socket is bound")
    ap.add_argument("--no-offload", dest="offload", action="store_false",
                    help="no kernel fast path: every datagram comes to this process")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s appliance-gwlb[%(process)d] %(levelname)s %(message)s")
    try:
        rs = load_rules(a.rules, home_net=a.home_net)
        senders = Senders(a.gwlb)
    except (RuleError, ValueError) as e:
        print(f"appliance.source.gwlb: {e}", file=sys.stderr)
        return 2
    eve = EveWriter(a.eve) if a.eve else None
    insp = Inspector(rs, Settings(), eve)
    sock = listen(a.listen, a.port)
    flowsets = fast_path(a.listen, a.gwlb) if a.offload else None
    src = GwlbSource(sock, senders, idle=lambda: insp.tick(time.time()), defrag=insp.defrag, offload=flowsets)
    if flowsets is not None:
        insp.on_flow_end = flowsets.ended
    found = data_interface(a.listen, str(senders.networks[0].network_address))
    if found is not None:
        src.mtu = found[1]

    def stats(*_):
        out = {"gwlb": src.counters.as_dict(), "verdicts": dict(insp.counters.verdicts)}
        if flowsets is not None:        # what the kernel returned/dropped without us, per set
            out["kernel"] = gwlb_offload.counters()
        print(json.dumps(out), file=sys.stderr, flush=True)
    signal.signal(signal.SIGUSR1, stats)
    signal.signal(signal.SIGTERM, lambda *_: src.stop())
    if a.ready:
        with open(a.ready, "w") as f:
            f.write(str(os.getpid()))
    log.info("gwlb: listening on %s:%d for %s", a.listen, a.port, ", ".join(a.gwlb))
    try:
        source.run(src, insp)
    finally:
        if flowsets is not None:
            gwlb_offload.remove()
    stats()
    if eve:
        eve.close()
    return 0


def fast_path(address, senders):
    """Install the kernel fast path on the interface holding `address` (this process owns
    the table: `appliance.gwlb_offload`); None, said why, when it cannot be."""
    where = gwlb_offload.device_of(address) if address not in ("0.0.0.0", "::") else None
    if where is None or ":" in address:
        log.warning("gwlb: no kernel fast path: listen on the data interface's IPv4 address (not %s) "
                    "for decided flows to stay in the kernel", address)
        return None
    try:
        gwlb_offload.install(where[0], where[1], address, senders)
        return gwlb_offload.FlowSets()
    except gwlb_offload.OffloadError as e:
        log.warning("gwlb: no kernel fast path: %s", e)
        return None


if __name__ == "__main__":
    sys.exit(main())
