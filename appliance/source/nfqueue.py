"""Live packets from NFQUEUE: one worker process per queue.

A worker binds its queue, asks the kernel for fail-open and GSO (netfilterqueue has no
API for either: we send the NFQNL_MSG_CONFIG message on its own netlink socket), then
for every packet: decode_l3 -> Inspector.process -> verdict. Verdicts never modify the
packet (netfilterqueue copies at most ~4 KB of it; the kernel keeps the full skb as long
as we do not call set_payload), so a 9001-byte jumbo or a 64 KB GSO packet forwards whole.

Verdicts:
  pass            accept
  drop            drop
  reject          send RST / ICMP unreachable (appliance.reject), then drop
  + offload       set our connmark bits and REPEAT: the packet re-enters FORWARD, our
                  chain saves the mark to conntrack and the kernel handles the rest of the flow

Workers share one EVE file: EveWriter writes each line with one write() on an O_APPEND
descriptor, so lines from several workers never interleave.
"""
import ctypes
import errno
import logging
import os
import select
import signal
import socket
import struct
import sys
import time
import warnings

from appliance import netfilter
from appliance.decode import decode_l3
from appliance.detect.engine import Detector
from appliance.ingress import ingress
from appliance.inspector import Inspector, settings_from_config
from appliance.output.eve import EveWriter
from appliance.reject import Rejector
from appliance.reload import Inbox

log = logging.getLogger("appliance.nfqueue")
_now = time.time

# netfilterqueue's run() receives into a 4096-byte buffer and clamps the copy range to
# 4096-80, assuming 80 bytes of metadata. A packet longer than the copy range (a GSO
# super-packet, a 9001-byte jumbo) also carries NFQA_CAP_LEN and NFQA_SKB_INFO, the
# message no longer fits, recv() truncates it and the packet never gets a verdict
# (measured: TCP fell to 0.5 Mbit/s with GSO on). So we bind with a range that fits that
# buffer, then raise the range ourselves (NFQA_CFG_PARAMS) and read the socket ourselves
# (QueueSocket): every packet, GSO super-packets included, is inspected whole, up to 64 KB.
COPY_RANGE = 3840             # fits netfilterqueue's own buffer: the fallback
WHOLE_RANGE = 0xFFFF - 4      # asked for once bound: the kernel's most (NFQNL_MAX_COPY_RANGE, 0xFFFF - NLA_HDRLEN)
MESSAGE_MAX = WHOLE_RANGE + 1024
RCVBUF = 32 << 20             # queued 64 KB messages need room; SO_RCVBUFFORCE (root)
QUEUE_MAXLEN = 4096          # packets the kernel holds for us before fail-open / drop
ESTABLISHED_BURST = 4 * 64    # established_first: established messages read before one batch of new flows
WAIT_MS = 200                 # the two-queue loop's poll timeout: QueueSocket's SO_RCVTIMEO

# linux/netfilter/nfnetlink_queue.h
NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG, NFQNL_MSG_VERDICT_BATCH = 0, 1, 2, 3
NFQA_PACKET_HDR, NFQA_VERDICT_HDR, NFQA_MARK, NFQA_IFINDEX_INDEV, NFQA_IFINDEX_OUTDEV, NFQA_PAYLOAD = 1, 2, 3, 5, 6, 10
NF_DROP, NF_ACCEPT, NF_REPEAT = 0, 1, 4
PACKET_MSG = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET
NLMSG_HDRLEN = 16             # nlmsghdr; the nfgenmsg after it is 4 more
BATCH_MAX = 64                # accepts held back at most before one batch verdict goes out
BURST_WAIT = 20e-6            # a recv back sooner did not sleep (a wake-up takes 30 us or more here)
NFQA_CFG_PARAMS, NFQA_CFG_MASK, NFQA_CFG_FLAGS = 2, 4, 5
NFQNL_COPY_PACKET = 2
SO_RCVBUFFORCE = 33
NFQA_CFG_F_FAIL_OPEN, NFQA_CFG_F_CONNTRACK, NFQA_CFG_F_GSO = 0x1, 0x2, 0x4
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLMSG_ERROR = 2
PR_SET_PDEATHSIG = 1


def set_queue_flags(nfq, queue_num: int, flags: int, mask: int, backlog: list, timeout: float = 2.0) -> None:
    """NFQNL_MSG_CONFIG {NFQA_CFG_MASK, NFQA_CFG_FLAGS} for our queue. Raises OSError with
    the kernel's errno when refused (EOPNOTSUPP: this kernel lacks a flag). Queued packets
    read while waiting for the answer are appended to `backlog` (QueueSocket.feed)."""
    attrs = struct.pack("=HH", 8, NFQA_CFG_MASK) + struct.pack("!I", mask)
    attrs += struct.pack("=HH", 8, NFQA_CFG_FLAGS) + struct.pack("!I", flags)
    _queue_config(nfq, queue_num, attrs, backlog, timeout)


def set_copy_range(nfq, queue_num: int, copy_range: int, backlog: list, timeout: float = 2.0) -> None:
    """NFQNL_MSG_CONFIG {NFQA_CFG_PARAMS: copy_range, NFQNL_COPY_PACKET}: how many bytes of
    each packet the kernel copies to us (netfilterqueue caps what bind() may ask for)."""
    params = struct.pack("!IB", copy_range, NFQNL_COPY_PACKET)             # packed, 5 bytes
    attrs = struct.pack("=HH", 4 + len(params), NFQA_CFG_PARAMS) + params + b"\0" * 3
    _queue_config(nfq, queue_num, attrs, backlog, timeout)


LITTLE_ENDIAN = sys.byteorder == "little"     # netlink headers are in host order, NFQA values big-endian


def queued_packets(view, n, on_packet):
    """Hand each queued packet of the datagram view[:n] to on_packet(payload, packet_id,
    indev, outdev, mark), in order; returns (messages that were not a readable packet, kernel errors).

    Read by hand where netfilterqueue builds a Packet object per message through
    libnetfilter_queue: the packet header's id, the mark, the input and output devices (the
    flow's ingress check: appliance/ingress.py) and the payload are all the worker uses. A message header whose length is short or runs past the
    datagram ends it (nothing after it can be framed). An attribute shorter than its header
    or running past its message ends that message's walk and what came before it stands:
    with the packet header read, the packet goes on (no payload: b"", which decodes to an
    anomaly and a verdict by policy); without it there is no id to answer, it is counted."""
    b = view                                   # typed in _c_nfqueue.pxd: C reads of the bytes
    # the constants as locals: the twin compares C ints, not module globals, per attribute
    hdr_len, packet_msg, error_msg, little = NLMSG_HDRLEN, PACKET_MSG, NLMSG_ERROR, LITTLE_ENDIAN
    a_hdr, a_mark, a_indev, a_payload = NFQA_PACKET_HDR, NFQA_MARK, NFQA_IFINDEX_INDEV, NFQA_PAYLOAD
    a_outdev = NFQA_IFINDEX_OUTDEV
    off = 0
    unreadable = errors = 0
    while n - off >= hdr_len:
        if little:
            mlen = b[off] | b[off + 1] << 8 | b[off + 2] << 16 | b[off + 3] << 24
            mtype = b[off + 4] | b[off + 5] << 8
        else:
            mlen = b[off] << 24 | b[off + 1] << 16 | b[off + 2] << 8 | b[off + 3]
            mtype = b[off + 4] << 8 | b[off + 5]
        if mlen < hdr_len or mlen > n - off:
            unreadable += 1
            break
        end = off + mlen
        if mtype == packet_msg:
            has_id = False
            packet_id = mark = indev = outdev = 0
            payload = b""
            at = off + hdr_len + 4             # past the nfgenmsg
            while end - at >= 4:
                if little:
                    alen, atype = b[at] | b[at + 1] << 8, (b[at + 2] | b[at + 3] << 8) & 0x3FFF
                else:
                    alen, atype = b[at] << 8 | b[at + 1], (b[at + 2] << 8 | b[at + 3]) & 0x3FFF
                if alen < 4 or alen > end - at:
                    break
                v = at + 4
                if atype == a_payload:
                    payload = view[v:at + alen].tobytes()
                elif atype == a_hdr or atype == a_mark or atype == a_indev or atype == a_outdev:
                    if alen >= (11 if atype == a_hdr else 8):   # the header: id, hw_protocol, hook
                        x = b[v] << 24 | b[v + 1] << 16 | b[v + 2] << 8 | b[v + 3]   # a u32 in the twin
                        if atype == a_hdr:
                            packet_id, has_id = x, True
                        elif atype == a_mark:
                            mark = x
                        elif atype == a_indev:
                            indev = x
                        else:
                            outdev = x
                at += (alen + 3) & ~3
            if has_id:
                on_packet(payload, packet_id, indev, outdev, mark)
            else:
                unreadable += 1
        elif mtype == error_msg:
            errors += 1                        # a verdict the kernel refused (its errno in the body)
        else:
            unreadable += 1
        off += (mlen + 3) & ~3
    return unreadable, errors


class QueueSocket:
    """The queue's netlink socket, read and answered by the worker itself: recv() of whole
    messages (up to 64 KB packets, where netfilterqueue's run() cuts them at 4 KB), the
    packet parsed by hand (queued_packet) and verdicts sent as netlink messages of our own.
    netfilterqueue only binds and unbinds the queue.

    recv() blocks in the kernel (a blocked recv wakes faster than select() + recv():
    measured +100 us vs +58 us per ping through a queue here), with SO_RCVTIMEO so the
    worker regains control at least every `wait` seconds; `due()` returning True makes
    run() give control back at once (signals, the flow-table tick) even under load."""

    def __init__(self, sock, due, wait=0.2, queue_num=0):
        self.sock = sock                          # NETLINK_NETFILTER, bound to the queue (netfilterqueue's fd)
        self.sock.setblocking(True)
        sec = int(wait)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                             struct.pack("ll", sec, int((wait - sec) * 1_000_000)))
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
        except OSError:                           # not root: the kernel's rmem_max applies
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        self.buf = bytearray(MESSAGE_MAX)
        self.view = memoryview(self.buf)
        self.due = due
        self.batch = _batch_verdict(queue_num)
        self.one = _verdict(queue_num, False)     # NFQNL_MSG_VERDICT: verdict and id filled in per packet
        self.marked = _verdict(queue_num, True)   # ... with NFQA_MARK (an offload's REPEAT)
        self.held = self.last_id = 0
        self.bursting = False                        # the last message was waiting already: hold accepts
        self.batches = self.batched = 0              # batch verdicts sent, accepts they carried
        self.unreadable = self.refused = 0           # messages not a packet we could read; kernel errors
        self.messages = 0                            # messages read_waiting() read (the two-queue loop's counts)

    def run(self, on_packet):
        """Read queued packets and hand each to on_packet(payload, packet_id, indev, outdev, mark)
        until the socket times out (SO_RCVTIMEO) or due()."""
        sock, buf, view, due = self.sock, self.buf, self.view, self.due
        clock = time.perf_counter
        reads = 0                                    # messages read while accepts are held
        while True:
            # A recv that returns at once found its message waiting: a burst, whose accepts
            # are held (accept_later) and go out as one batch verdict once the socket is
            # empty. A packet that came after a wait is answered on its own at once, and
            # without a probing recv in front of the blocking one: that probe alone cost a
            # ping +40-70 us here (bench.verdict_io), so only a burst pays for it.
            # due() is asked between batches (none held): at least every BATCH_MAX messages
            # under load, before every packet otherwise. Messages are counted, not accepts:
            # a flood of drops behind one held accept must not hold it (and due()) forever
            if self.held and (self.held >= BATCH_MAX or reads >= BATCH_MAX):
                self.flush()
            if not self.held:
                reads = 0
                if due():
                    return
            n = -1
            if self.held:
                reads += 1
                try:
                    n = sock.recv_into(buf, 0, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    self.flush()
                except OSError as e:
                    if e.errno == errno.ENOBUFS:      # as below: the kernel dropped messages for us
                        continue
                    raise
            if n < 0:
                t = clock()
                try:
                    n = sock.recv_into(buf)          # EAGAIN after SO_RCVTIMEO
                except BlockingIOError:
                    return
                except OSError as e:
                    if e.errno == errno.ENOBUFS:      # the kernel dropped messages for us (its counters say)
                        continue
                    raise
                self.bursting = clock() - t < BURST_WAIT
            unreadable, refused = queued_packets(view, n, on_packet)
            if unreadable or refused:
                self.unreadable += unreadable
                self.refused += refused

    def read_waiting(self, on_packet, limit):
        """Read at most `limit` messages already waiting (never blocks), accepts held and
        sent as batches; returns the messages read. The two-queue loop's read
        (Worker._run_two_queues): it chooses which queue to read next, so it cannot sit in
        one queue's blocking recv."""
        sock, buf, view = self.sock, self.buf, self.view
        read = 0
        self.bursting = True
        try:
            while read < limit:
                try:
                    n = sock.recv_into(buf, 0, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                except OSError as e:
                    if e.errno == errno.ENOBUFS:      # the kernel dropped messages for us (its counters say)
                        continue
                    raise
                read += 1
                unreadable, refused = queued_packets(view, n, on_packet)
                if unreadable or refused:
                    self.unreadable += unreadable
                    self.refused += refused
                if self.held >= BATCH_MAX:
                    self.flush()
        finally:
            self.bursting = False
            self.flush()
        self.messages += read
        return read

    def feed(self, datagrams, on_packet):
        """Datagrams read past while waiting for a config ACK (_queue_config): their packets."""
        for data in datagrams:
            queued_packets(memoryview(data), len(data), on_packet)

    def accept(self, packet_id):
        """Accept now, or with the next batch while a burst holds accepts (sent alone then,
        it would overtake the held packets of its own flow)."""
        if self.held or self.bursting:
            self.last_id = packet_id
            self.held += 1
        else:
            self.send(NF_ACCEPT, packet_id)

    def accept_later(self, packet_id):
        """Accept this packet (and every one before it still queued) with the next batch
        verdict: one sendto for a run of accepts instead of one each. Safe because the
        kernel queues in id order and every earlier packet already has its verdict or is
        held here too."""
        self.last_id = packet_id
        self.held += 1

    def send(self, verdict, packet_id, mark=None):
        """One NFQNL_MSG_VERDICT: NF_ACCEPT, NF_DROP, or NF_REPEAT with a new mark."""
        if mark is None:
            msg = self.one
        else:
            msg = self.marked
            struct.pack_into("!I", msg, 36, mark)
        struct.pack_into("!II", msg, 24, verdict, packet_id)
        self.sock.send(msg)                   # unconnected netlink: to the kernel (portid 0)

    def flush(self):
        """Send the held accepts as one NFQNL_MSG_VERDICT_BATCH (every id <= the last)."""
        if self.held:
            struct.pack_into("!I", self.batch, len(self.batch) - 4, self.last_id)
            self.sock.sendto(self.batch, (0, 0))
            self.batches += 1
            self.batched += self.held
            self.held = 0

    def close(self):
        try:
            self.flush()
        except OSError as e:                      # the queue's unbind drops them in any case
            log.warning("the last batch verdict was not sent: %s", e)
        self.sock.close()


def _verdict(queue_num, with_mark):
    """An NFQNL_MSG_VERDICT for `queue_num`: verdict at offset 24, packet id at 28, the mark
    (with_mark) at 36; filled in per packet."""
    body = struct.pack("!BBH", socket.AF_UNSPEC, 0, queue_num)
    body += struct.pack("=HH", 12, NFQA_VERDICT_HDR) + struct.pack("!II", NF_ACCEPT, 0)
    if with_mark:
        body += struct.pack("=HH", 8, NFQA_MARK) + struct.pack("!I", 0)
    return bytearray(struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_VERDICT,
                                 NLM_F_REQUEST, 0, 0) + body)


def _batch_verdict(queue_num):
    """An NFQNL_MSG_VERDICT_BATCH accept for `queue_num`; the id (last 4 bytes) is filled in
    at each flush."""
    body = struct.pack("!BBH", socket.AF_UNSPEC, 0, queue_num)
    body += struct.pack("=HH", 12, NFQA_VERDICT_HDR) + struct.pack("!II", NF_ACCEPT, 0)
    return bytearray(struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_VERDICT_BATCH,
                                 NLM_F_REQUEST, 0, 0) + body)


def _queue_config(nfq, queue_num, attrs, backlog, timeout):
    """Send one NFQNL_MSG_CONFIG for our queue on the socket that owns it (the kernel only
    accepts config from the bound portid) and wait for the kernel's ACK."""
    sock = socket.fromfd(nfq.get_fd(), socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    try:
        seq = int(time.monotonic() * 1000) & 0x7FFFFFFF
        body = struct.pack("!BBH", socket.AF_UNSPEC, 0, queue_num) + attrs   # nfgenmsg; res_id = queue
        msg_type = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_CONFIG
        sock.sendto(struct.pack("=IHHII", 16 + len(body), msg_type, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body,
                    (0, 0))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([sock], [], [], left)[0]:
                raise OSError(errno.ETIMEDOUT, "no answer to NFQNL_MSG_CONFIG")
            data = sock.recv(MESSAGE_MAX)
            if len(data) >= 20:
                _, mtype, _, mseq, _ = struct.unpack_from("=IHHII", data)
                if mtype == NLMSG_ERROR and mseq == seq:
                    err = struct.unpack_from("=i", data, 16)[0]
                    break
            backlog.append(data)                  # a queued packet that arrived first
        if err:
            raise OSError(-err, os.strerror(-err))
    finally:
        sock.close()


class Counters:
    """What only the worker sees; verdict counts are the Inspector's (counters.verdicts)."""
    __slots__ = ("packets", "offloaded", "errors", "anomalies", "reject_sent", "copy_truncated")

    def __init__(self):
        for k in self.__slots__:
            setattr(self, k, 0)

    def as_dict(self):
        return {k: getattr(self, k) for k in self.__slots__}


class Worker:
    """One queue, one Inspector, one process."""

    def __init__(self, cfg, queue_num, ruleset, control=None, ready=None, report=None):
        self.copy_range = COPY_RANGE         # bytes of each packet the kernel copies to us
        self.cfg = cfg
        self.queue_num = queue_num
        self.ruleset = ruleset
        self.control = control               # pipe fd: checked updates from the supervisor (appliance.reload)
        self.inbox = None
        self.ready = ready                   # pipe end: "bound" or why not, for the supervisor
        self.counters = Counters()
        self.report = report                 # socket: counter snapshots to the supervisor's control plane
        self.reporter = None
        self.ifnames = {}                    # ifindex -> name
        self.paths = {}                      # indev << 32 | outdev -> Ingress (devices())
        self.rejector = Rejector(workers=cfg.workers)    # the kernel's ICMP limits, shared
        self.flags = set()                   # signals seen, handled in the loop
        self.fail_verdict = "accept" if cfg.fail_open else "drop"
        self.mark_mask = cfg.mark_mask       # restart-only: the kernel rules match these bits
        self.marks = netfilter.offload_marks(cfg.mark_mask)
        self.queue = None                    # the QueueSocket being read: the packet's verdict goes back on it
        self.queues = []                     # every QueueSocket (two with overload.established_first)

    def _report(self, status):
        if self.ready is not None:
            try:
                self.ready.send(status)
                self.ready.close()
            except OSError:
                pass
            self.ready = None

    # -- per packet ------------------------------------------------------------

    def ifname(self, index):
        name = self.ifnames.get(index)
        if name is None:
            try:
                name = socket.if_indextoname(index)
            except OSError:
                name = ""
            self.ifnames[index] = name
        return name

    def devices(self, indev, outdev):
        """The Ingress of a packet that entered on `indev` and is routed out of `outdev`
        (0: none yet), one object per pair (appliance/ingress.py)."""
        key = indev << 32 | outdev
        pair = self.paths.get(key)
        if pair is None:
            pair = self.paths[key] = ingress(self.ifname(indev), self.ifname(outdev) if outdev else "")
        return pair

    def on_packet(self, payload, packet_id, indev, outdev, mark):
        """One queued packet (QueueSocket.run): the one loop's body (source.run) for a push
        source.

        verdict() inlined for the common packet (no anomaly, a plain accept):
        a ping's request finds this code cold after ~10 ms asleep (caches refilled by other
        work), and each Python call or attribute fetched on the way costs a cache miss
        there (docs/performance.md, "Verdict I/O")."""
        c = self.counters
        c.packets += 1
        queue = self.queue
        try:
            p = decode_l3(payload, _now())
            p.in_iface = self.paths.get(indev << 32 | outdev) or self.devices(indev, outdev)
            if p.anomalies:
                self._count_anomalies(p, payload)
            v = self.inspector.process(p)
            if v.action == "pass" and not v.offload:
                if queue.bursting:
                    queue.last_id = packet_id     # accept_later(), inlined
                    queue.held += 1
                else:
                    queue.accept(packet_id)
            else:
                self.verdict(p, v, packet_id, mark)
        except Exception as e:               # a bad packet or a bug: count it, verdict by policy
            c = self.counters
            c.errors += 1
            if c.errors <= 10 or c.errors % 1000 == 0:
                log.exception("queue %d: packet error #%d (%s): %s", self.queue_num, c.errors,
                              self.fail_verdict, e)
            try:                             # every verdict is a packet's last step: none went out
                queue.accept(packet_id) if self.fail_verdict == "accept" else queue.send(NF_DROP, packet_id)
            except OSError:
                pass                         # unanswered: a later batch verdict (ids <= its own) accepts it; a send that fails is rare (ENOMEM), left as is

    def _count_anomalies(self, p, raw):
        c = self.counters
        if len(raw) >= self.copy_range:   # cut by the copy range, not on the wire
            c.copy_truncated += 1
            p.anomalies = [a for a in p.anomalies if not a.endswith(".trunc_pkt")]
        c.anomalies += bool(p.anomalies)

    def verdict(self, p, v, packet_id, mark):
        """Enforce the Inspector's verdict: answer a reject, mark an offloaded flow's
        packet for the kernel fast path, else accept or drop. The verdict's send is the last
        step of each branch (on_packet's error path relies on it)."""
        c = self.counters
        queue = self.queue
        action = v.action
        if action == "reject":
            try:
                if self.rejector.send(p):
                    c.reject_sent += 1
            except OSError as e:
                c.errors += 1
                log.warning("queue %d: reject answer not sent: %s", self.queue_num, e)
        if v.offload and v.flow is not None:   # v.offload: decided for good, and offload is on
            # a repeated packet leaves at once: the accepts held for earlier packets (of this
            # flow, maybe) go first, or the flow's later packets would overtake them
            queue.flush()
            c.offloaded += 1
            queue.send(NF_REPEAT, packet_id, (mark & ~self.mark_mask) | self.marks[action])   # others' bits kept
        elif action == "pass":
            queue.accept(packet_id)
        else:
            queue.send(NF_DROP, packet_id)

    # -- the loop --------------------------------------------------------------

    def _signal(self, signum, _frame):
        self.flags.add(signum)

    def run(self) -> int:
        from netfilterqueue import NetfilterQueue

        cfg = self.cfg
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            signal.signal(s, self._signal)
        # Reloads come from the supervisor, checked, over the control pipe: a SIGHUP sent to
        # a worker directly (pkill matches workers too) must not make it read any file.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.eve = _eve_writer(cfg)
        self.inspector = Inspector(self.ruleset, _settings(cfg), self.eve, _pcap_log(cfg, self.queue_num))
        if self.control is not None:
            # the new detector is built in a thread, beside the running one
            self.inbox = Inbox(self.control, lambda c, rs: (c, rs, Detector(rs, 0, c.inspection.exception_policy)), name=f"reload-q{self.queue_num}")

        nfq = self._bind(NetfilterQueue, self.queue_num)
        if nfq is None:
            return EXIT_CANNOT_BIND
        nfqs, nums = [nfq], [self.queue_num]
        new_queue = None
        if cfg.overload is not None and cfg.overload.established_first:
            # a flow's first packets come on the second range, at our offset (same hash)
            new_num = netfilter.new_flow_queues(cfg.queues)[self.queue_num - cfg.queue_base]
            new_nfq = self._bind(NetfilterQueue, new_num)
            if new_nfq is None:
                nfq.unbind()
                return EXIT_CANNOT_BIND
            nfqs.append(new_nfq)
            nums.append(new_num)
        self._report("bound")
        if self.report is not None:
            from appliance.control.report import Reporter
            self.reporter = Reporter(self.report, self.queue_num, cfg.control.top if cfg.control else 20)
            self._send_report()              # readiness need not wait for the first tick
        inbox = self.inbox
        due = (lambda: bool(self.flags) or time.monotonic() >= self.next_tick
               or (inbox is not None and inbox.pending()))
        sockets = []
        for q, num in zip(nfqs, nums):
            backlog = []                      # packets queued before the kernel's config answers
            self.copy_range = self._configure(q, num, backlog)
            qs = QueueSocket(socket.fromfd(q.get_fd(), socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER),
                             due, queue_num=num)
            sockets.append(qs)
            self.queue = qs
            qs.feed(backlog, self.on_packet)
        queue = self.queue = sockets[0]
        if len(sockets) > 1:
            new_queue = sockets[1]
        self.queues = sockets
        self.next_tick = time.monotonic() + 1.0
        log.info("queue %d: worker %d bound (%s, gso, copy %d bytes)%s", self.queue_num, os.getpid(),
                 "fail-open" if cfg.fail_open else "fail-closed", self.copy_range,
                 f"; new flows on queue {nums[-1]}, read after it" if new_queue else "")

        parent = os.getppid()
        try:
            while True:
                if self.flags:
                    if not self._handle_signals():
                        break
                if inbox is not None and inbox.pending():
                    self.swap(*inbox.take())
                if new_queue is None:
                    queue.run(self.on_packet)     # returns on a receive timeout or when due()
                else:
                    self._run_two_queues(queue, new_queue, due)
                if time.monotonic() >= self.next_tick:
                    self.next_tick = time.monotonic() + 1.0
                    self.inspector.tick(time.time())
                    if self.inspector.pcap_log is not None:
                        self.inspector.pcap_log.tick()
                    if self.reporter is not None:
                        self._send_report()
                    if os.getppid() != parent:
                        log.error("queue %d: supervisor gone; worker exits", self.queue_num)
                        break
            self.flags.clear()
            self.next_tick = time.monotonic() + 1.0   # drain what is queued to us, for a second at most
            if new_queue is None:
                queue.sock.settimeout(0.0)
                queue.run(self.on_packet)
            else:
                for qs in sockets:
                    self.queue = qs
                    qs.read_waiting(self.on_packet, QUEUE_MAXLEN)
        finally:
            for qs in sockets:
                qs.close()
            for q in nfqs:
                q.unbind()
            self.inspector.close()
            self.rejector.close()
            if self.reporter is not None:
                self.reporter.close()
            if self.eve:
                self.eve.close()
            if self.inspector.pcap_log is not None:
                self.inspector.pcap_log.close()
        return 0

    def _bind(self, NetfilterQueue, queue_num):
        """A netfilterqueue handle bound to `queue_num`, or None (reported) when another program holds it."""
        nfq = NetfilterQueue()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)   # "rcvbuf limit": the kernel caps it; fine
                # the callback never runs: QueueSocket reads the socket, not netfilterqueue
                nfq.bind(queue_num, _not_read_here, max_len=QUEUE_MAXLEN, range=COPY_RANGE)
        except OSError as e:
            why = (f"queue {queue_num}: cannot bind ({e}): another program holds it? "
                   f"see /proc/net/netfilter/nfnetlink_queue; change queue_base")
            log.error("%s", why)
            self._report(why)
            return None
        return nfq

    def _configure(self, nfq, queue_num, backlog):
        """Fail-open and GSO flags, and the whole-packet copy range, for one bound queue;
        returns the copy range in force."""
        flags = NFQA_CFG_F_GSO | (NFQA_CFG_F_FAIL_OPEN if self.cfg.fail_open else 0)
        try:
            set_queue_flags(nfq, queue_num, flags, NFQA_CFG_F_GSO | NFQA_CFG_F_FAIL_OPEN, backlog)
        except OSError as e:
            log.warning("queue %d: kernel refused queue flags %#x (%s); continuing without them",
                        queue_num, flags, e)
        try:
            set_copy_range(nfq, queue_num, WHOLE_RANGE, backlog)
            return WHOLE_RANGE
        except OSError as e:
            log.warning("queue %d: kernel refused a %d-byte copy range (%s); inspecting the first %d bytes "
                        "of each packet", queue_num, WHOLE_RANGE, e, COPY_RANGE)
            return COPY_RANGE

    def _run_two_queues(self, established, new, due):
        """`overload.established_first`: read the established flows' queue first, up to
        ESTABLISHED_BURST messages, then one batch of the new flows' queue, until due() or
        both are empty for a receive timeout. A flood of new flows then fills its own queue
        (failure_mode decides there) while flows under way are still read; the bound on the
        first keeps new flows from waiting forever behind a busy established queue."""
        poller = select.poll()
        poller.register(established.sock, select.POLLIN)
        poller.register(new.sock, select.POLLIN)
        on_packet = self.on_packet
        while not due():
            self.queue = established
            n = established.read_waiting(on_packet, ESTABLISHED_BURST)
            self.queue = new
            n += new.read_waiting(on_packet, BATCH_MAX)
            if not n and not poller.poll(WAIT_MS):
                return

    def _send_report(self):
        """The once-a-second snapshot (and answers to the CLI's requests); a failure here is
        logged and never reaches the packet loop."""
        try:
            self.reporter.tick(self.inspector, self.counters)
        except Exception:
            log.exception("queue %d: control report failed", self.queue_num)

    def _handle_signals(self) -> bool:
        """Act on signals received since the last loop; False when the worker must stop."""
        seen, self.flags = self.flags, set()
        if signal.SIGUSR1 in seen:
            self.write_stats()
        return not ({signal.SIGTERM, signal.SIGINT} & seen)

    def swap(self, cfg, ruleset, detector):
        """Put the supervisor's checked update in place between two packets: the detector
        is already built, so the packet loop pauses for the swap alone."""
        old_cfg, self.cfg = self.cfg, cfg
        enforced = self.inspector.reload(ruleset, _settings(cfg, self.inspector.settings), detector)
        if enforced:                     # (never offloaded: Inspector._process; their next packet is dropped or answered)
            log.warning("queue %d: the reload enforces %d monitored flows", self.queue_num, len(enforced))
        if cfg.pcap_log != old_cfg.pcap_log:      # a new pcap_log section: a new log (held rings go)
            old_log = self.inspector.pcap_log
            self.inspector.pcap_log = _pcap_log(cfg, self.queue_num)
            if old_log is not None:
                old_log.close()
        # reopen the EVE file: a new path, or a log rotated by rename
        old = self.eve
        self.eve = self.inspector.eve = _eve_writer(cfg)
        if old:
            old.close()
        log.info("queue %d: config and rules reloaded (%d rules)", self.queue_num, len(ruleset.rules))

    def write_stats(self) -> dict:
        """The Inspector's stats event plus this worker's capture counters (Suricata's
        `capture` section), and the per-worker counters on stderr."""
        from appliance.output import events
        ev = events.stats(self.inspector, time.time())
        c = self.counters
        kernel = netfilter.queue_counters().get(self.queue_num, {})
        ev["stats"]["capture"] = {"kernel_packets": c.packets,
                                  "kernel_drops": kernel.get("dropped", 0) + kernel.get("user_dropped", 0),
                                  "errors": c.errors}
        if self.eve:
            self.eve.write(ev)
        v = self.inspector.counters.verdicts
        counts = {"packets": c.packets, "passed": v["pass"], "dropped": v["drop"], "rejected": v["reject"],
                  **{k: x for k, x in c.as_dict().items() if k != "packets"},
                  # ICMP answers the rate limit held back (the EVE stats schema has no key for it)
                  "reject_suppressed": self.rejector.limit.suppressed,
                  # accepts answered by batch verdicts, and how many batches carried them
                  "batched_accepts": sum(q.batched for q in self.queues),
                  "verdict_batches": sum(q.batches for q in self.queues),
                  # netlink messages that were not a readable packet; verdicts the kernel refused
                  "unreadable_messages": sum(q.unreadable for q in self.queues),
                  "refused_verdicts": sum(q.refused for q in self.queues)}
        if len(self.queues) > 1:             # overload.established_first: messages read from each queue
            counts["established_messages"] = self.queues[0].messages
            counts["new_flow_messages"] = self.queues[1].messages
        log.info("queue %d: worker %d stats %s", self.queue_num, os.getpid(),
                 " ".join(f"{k}={x}" for k, x in counts.items()))
        return ev


def _eve_writer(cfg):
    """The worker's EVE file, bounded on disk by the config's rotation settings."""
    return EveWriter(cfg.eve, max_bytes=cfg.eve_max_bytes, keep=cfg.eve_keep) if cfg.eve else None


def _pcap_log(cfg, queue_num):
    """The worker's own pcap log file (workers are processes: one file each, qN.pcapng)."""
    if cfg.pcap_log is None:
        return None
    from appliance.output.pcap_log import PcapLog
    return PcapLog(cfg.pcap_log, f"q{queue_num}")


def _settings(cfg, running=None):
    """Inspector settings from the config; on a reload, the flow table size stays (the
    table is built once) and everything else follows the file."""
    return settings_from_config(cfg, outside_ifaces=(cfg.outside,),
                                max_flows=running.max_flows if running else cfg.inspection.max_flows,
                                # the kernel verified checksums (locally made packets carry partial ones)
                                verify_checksums=False,
                                # a flow the kernel policy decides never reaches a worker: one
                                # that does was not kernel-decided (say, the table was being replaced)
                                kernel_decisions=False)


EXIT_CANNOT_BIND = 3          # worker exit status: the queue is held by someone else


def _not_read_here(nfpkt):
    """netfilterqueue's callback, which nothing calls (it never reads the socket); were it
    to, the packet is dropped rather than left without a verdict."""
    nfpkt.drop()


def worker_main(cfg, queue_num, ruleset, control, ready=None, inherited=(), report=None) -> None:
    """Process entry point (forked by the supervisor). `control`: the read end of this
    worker's update pipe; `inherited`: the supervisor's pipe ends this child must not hold."""
    for fd in inherited:
        try:
            os.close(fd)
        except OSError:
            pass
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)   # die with the supervisor, even on kill -9
    except (OSError, AttributeError):
        pass
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s appliance[%(process)d] %(levelname)s %(message)s")
    sys.exit(Worker(cfg, queue_num, ruleset, control, ready, report).run())


from appliance.compiled import use_compiled  # noqa: E402 -- last: the Cython build of this file, if built
use_compiled(globals())
