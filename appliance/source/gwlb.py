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
from appliance.reject import IcmpLimit, answer, kernel_limits
from appliance.packet import TCP

log = logging.getLogger("appliance.gwlb")

DATAGRAM_MAX = 65535
RCVBUF = 32 << 20
SO_RCVBUFFORCE = 33
SENDER_CACHE = 4096
TEARDOWN = (CLOSING, CLOSED)


class Counters:
    """What the GENEVE source sees beyond the Inspector's verdict counters."""
    __slots__ = ("datagrams", "returned", "dropped", "reject_sent", "send_errors", "malformed", "offloaded")

    def __init__(self):
        self.datagrams = self.returned = self.dropped = self.reject_sent = self.send_errors = 0
        self.offloaded = 0                       # flows handed to the kernel fast path
        self.malformed = {}                      # drop reason (geneve.*) -> count

    def as_dict(self):
        return {"datagrams": self.datagrams, "returned": self.returned, "dropped": self.dropped,
                "reject_sent": self.reject_sent, "send_errors": self.send_errors,
                "offloaded": self.offloaded, "malformed": dict(self.malformed)}


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
            ok = self._known[addr] = any(ip in n for n in self.networks)
        return ok


class GwlbSource:
    """Decapsulated packets from the GWLB socket, their verdicts back to the GWLB.

    Iterating reads datagrams until `stop()`; between datagrams (every `wait` seconds when
    idle) `idle()` runs, so flow timeouts advance with no traffic. Pull source: the verdict
    for a packet comes (source.run) before the next datagram is read, so the datagram in
    hand is the one the verdict is for."""

    def __init__(self, sock, senders, reply_port=geneve.PORT, idle=None, wait=0.2, limit=None, offload=None):
        self.sock = sock
        self.offload = offload                # gwlb_offload.FlowSets, or None (no kernel fast path)
        self.senders = senders
        self.reply_port = reply_port          # GWLB listens on 6081 (None: the sender's port)
        self.idle = idle
        self.wait = wait
        self.limit = limit if limit is not None else IcmpLimit(**kernel_limits())   # as inline (Rejector)
        self.counters = Counters()
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

    def verdict(self, pkt, v):
        c = self.counters
        action = v.action
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
            c.returned += self._send(self._datagram)
            return
        if action == "reject":
            data = answer(pkt)
            if data is not None and (pkt.proto == TCP or self.limit.allow(pkt.ip_version, pkt.src)):
                c.reject_sent += self._send(self._datagram[:self._header] + data)
        c.dropped += 1


def listen(address, port=geneve.PORT):
    """The GENEVE socket: bound to the data address (GWLB sends to the target's IP)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
    ap.add_argument("--ready", help="file written once the socket is bound")
    ap.add_argument("--no-offload", dest="offload", action="store_false",
                    help="no kernel fast path: every datagram comes to this process")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s appliance-gwlb[%(process)d] %(levelname)s %(message)s")
    try:
        rs = load_rules(a.rules)
        senders = Senders(a.gwlb)
    except (RuleError, ValueError) as e:
        print(f"appliance.source.gwlb: {e}", file=sys.stderr)
        return 2
    eve = EveWriter(a.eve) if a.eve else None
    insp = Inspector(rs, Settings(), eve)
    sock = listen(a.listen, a.port)
    flowsets = fast_path(a.listen, a.gwlb) if a.offload else None
    src = GwlbSource(sock, senders, idle=lambda: insp.tick(time.time()), offload=flowsets)
    if flowsets is not None:
        insp.on_flow_end = flowsets.ended

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
