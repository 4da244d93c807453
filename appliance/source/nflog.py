"""Packet copies from an NFLOG group: packets the kernel already passed, read by a worker.

The handshake copy (config `inspection.handshake_copies`, docs/datapath.md): a plain SYN or
SYN/ACK whose verdict can only be pass is accepted by the kernel and copied to the worker
here, so a new connection does not wait for a worker wake-up per handshake packet. The
worker reads this socket dry (non-blocking) before each queued packet: the kernel sends a
copy (NFLOG threshold 1: flushed in the packet's own hook call) before the packet goes on,
so every copy of a packet that happened before a queued one is here when the queued one is
read -- the SYN/ACK's copy is in the socket before the client can send its ACK.

A copy the kernel could not deliver (the socket was full: ENOBUFS; a gap in the
per-group sequence numbers) means the worker cannot know some handshake: `lost()` says so
and the Inspector takes the safe side (inspector.copies_lost).

Wire format: linux/netfilter/nfnetlink_log.h.
"""
import errno
import socket
import struct

NETLINK_NETFILTER = 12
NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET, NFULNL_MSG_CONFIG = 0, 1
NFULA_CFG_CMD, NFULA_CFG_MODE, NFULA_CFG_NLBUFSIZ, NFULA_CFG_TIMEOUT, NFULA_CFG_QTHRESH, NFULA_CFG_FLAGS = 1, 2, 3, 4, 5, 6
NFULNL_CFG_CMD_BIND, NFULNL_CFG_CMD_UNBIND = 1, 2
NFULNL_COPY_PACKET = 2
NFULNL_CFG_F_SEQ = 0x1
NFULA_IFINDEX_INDEV, NFULA_IFINDEX_OUTDEV, NFULA_PAYLOAD, NFULA_SEQ = 4, 5, 9, 12
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLMSG_ERROR, NLMSG_DONE = 2, 3
SO_RCVBUFFORCE = 33
COPY_RANGE = 0xFFFF            # whole packets (a handshake packet is < 100 bytes; the bound is the kernel's)
RCVBUF = 32 << 20              # bytes of copies waiting (config inspection.copy_buffer); SO_RCVBUFFORCE (root)
NLBUFSIZ = 256                 # the kernel sizes each copy's message to the packet, not to 4 KB
MESSAGE_MAX = COPY_RANGE + 1024


def _attr(kind, value):
    n = 4 + len(value)
    return struct.pack("=HH", n, kind) + value + b"\0" * (-n % 4)


def _config(group, attrs, seq):
    body = struct.pack("!BBH", socket.AF_UNSPEC, 0, group) + attrs
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG,
                       NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body


class Copies:
    """What the copies' messages say: the packets, and whether any went missing (the
    per-group sequence numbers, NFULNL_CFG_F_SEQ, count every copy the kernel built)."""

    def __init__(self):
        self.next_seq = None             # the kernel's per-group sequence number we expect next
        self.missing = 0                 # copies the kernel built that never reached us
        self.overruns = 0                # ENOBUFS seen: copies the kernel could not queue to us
        self._lost = False               # a loss not yet reported by lost()

    def lost(self):
        """True once for each loss seen since the last call."""
        lost, self._lost = self._lost, False
        return lost

    def overrun(self):
        self.overruns += 1
        self._lost = True

    def messages(self, data, out):
        """Append (l3 bytes, in ifindex, out ifindex) of each packet message in `data` to `out`."""
        off, end = 0, len(data)
        while off + 16 <= end:
            length, mtype = struct.unpack_from("=IH", data, off)
            if length < 16 or off + length > end:
                break
            if mtype == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET:
                packet = self._packet(data, off + 20, off + length)
                if packet is not None:
                    out.append(packet)
            off += (length + 3) & ~3

    def _packet(self, data, off, end):
        payload, indev, outdev, seq = None, 0, 0, None
        while off + 4 <= end:
            alen, kind = struct.unpack_from("=HH", data, off)
            if alen < 4 or off + alen > end:
                break
            kind &= 0x7FFF
            if kind == NFULA_PAYLOAD:
                payload = bytes(data[off + 4:off + alen])
            elif kind == NFULA_IFINDEX_INDEV and alen >= 8:
                indev = struct.unpack_from("!I", data, off + 4)[0]
            elif kind == NFULA_IFINDEX_OUTDEV and alen >= 8:
                outdev = struct.unpack_from("!I", data, off + 4)[0]
            elif kind == NFULA_SEQ and alen >= 8:
                seq = struct.unpack_from("!I", data, off + 4)[0]
            off += (alen + 3) & ~3
        if seq is not None:
            if self.next_seq is not None and seq != self.next_seq:
                self.missing += (seq - self.next_seq) & 0xFFFFFFFF
                self._lost = True
            self.next_seq = (seq + 1) & 0xFFFFFFFF
        if payload is None:
            return None
        return payload, indev, outdev


class CopySource(Copies):
    """One NFLOG group bound in copy-packet mode, read without blocking."""

    def __init__(self, group, rcvbuf=RCVBUF):
        super().__init__()
        self.group = group
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind((0, 0))
        self.buf = bytearray(MESSAGE_MAX)
        seq = 1
        # the mode and the flags: whole packets, a sequence number in each, and a copy sent at
        # once (threshold 1, no timer batching): the ordering above rests on it
        for attrs in (_attr(NFULA_CFG_CMD, struct.pack("B", NFULNL_CFG_CMD_BIND)),
                      _attr(NFULA_CFG_MODE, struct.pack("!IBB", COPY_RANGE, NFULNL_COPY_PACKET, 0)),
                      _attr(NFULA_CFG_QTHRESH, struct.pack("!I", 1)),
                      _attr(NFULA_CFG_NLBUFSIZ, struct.pack("!I", NLBUFSIZ)),
                      _attr(NFULA_CFG_FLAGS, struct.pack("!H", NFULNL_CFG_F_SEQ))):
            self._ack(_config(group, attrs, seq), seq)
            seq += 1
        self.sock.setblocking(False)

    def _ack(self, msg, seq):
        self.sock.sendto(msg, (0, 0))
        self.sock.settimeout(2.0)
        while True:
            data = self.sock.recv(MESSAGE_MAX)
            _, mtype, _, mseq, _ = struct.unpack_from("=IHHII", data)
            if mtype == NLMSG_ERROR and mseq == seq:
                err = struct.unpack_from("=i", data, 16)[0]
                if err:
                    raise OSError(-err, f"NFLOG group {self.group}: {errno.errorcode.get(-err, err)}")
                return

    def fileno(self):
        return self.sock.fileno()

    def drain(self):
        """Every copy waiting, oldest first: [(l3 bytes, in ifindex, out ifindex)]. Never blocks."""
        out = []
        recv_into, buf = self.sock.recv_into, self.buf
        while True:
            try:
                n = recv_into(buf)
            except BlockingIOError:
                return out
            except OSError as e:
                if e.errno == errno.ENOBUFS:    # the kernel dropped copies for a full socket
                    self.overrun()
                    continue
                raise
            self.messages(memoryview(buf)[:n], out)

    def close(self):
        try:
            self.sock.setblocking(True)
            self._ack(_config(self.group, _attr(NFULA_CFG_CMD, struct.pack("B", NFULNL_CFG_CMD_UNBIND)), 99), 99)
        except OSError:
            pass
        self.sock.close()
