"""A small pcapng writer (SHB, one IDB per interface, EPB with a comment), bounded on disk.

Written here rather than with a library: dpkt's pcapng Writer takes one interface and
builds every block as an object (the per-packet cost is the point of a log written
inline), scapy's writer is slower still, and the format needs three blocks (pcapng spec,
draft-ietf-opsawg-pcapng): Section Header, Interface Description, Enhanced Packet.

Packets are the L3 bytes the Inspector saw, so the link type is LINKTYPE_RAW (101): the
same live (NFQUEUE hands over L3 packets) and in replay (the capture's link layer and
VLAN tags are not kept).

Blocks are gathered in memory and written together in one os.write() on an O_APPEND
descriptor: when FLUSH_BYTES are waiting, FLUSH_SECONDS after the first of them, on the
worker's tick (flush()), at rotation and at close. A write per block cost ~16 us, the bulk
of the log's cost per alerted flow (docs/performance.md "Pcap log"); the price is that a
reader (tshark on a live log) sees packets up to a second late, and a worker killed by
SIGKILL loses what was waiting (at most a second or FLUSH_BYTES; SIGTERM, a reload and a
Python error all close the log, which writes it), as Suricata's buffered pcap-log does.
Never raises on a write: a failure is counted in `lost` (`packets` counts what reached the
file), said once on stderr, and a block cut short is truncated away, so the file stays a
valid pcapng up to its last whole block. Past `max_bytes` the file is renamed
NAME.1.pcapng (NAME.1 to NAME.2, ... up to NAME.<keep>; the oldest goes) and a new one
begins: at most (keep + 1) x (max_bytes + one block) bytes per writer.
"""
import os
import struct
import sys
import time

LINKTYPE_RAW = 101
_SHB_TYPE, _IDB_TYPE, _EPB_TYPE = 0x0A0D0D0A, 0x00000001, 0x00000006
_BYTE_ORDER_MAGIC = 0x1A2B3C4D
_OPT_COMMENT, _OPT_END = 1, 0
_IF_NAME, _IF_TSRESOL = 2, 9
_MAX_USEC = (1 << 64) - 1
FLUSH_BYTES = 64 << 10          # blocks waiting past this are written at once ...
FLUSH_SECONDS = 1.0             # ... and none waits longer than this once a packet comes


def _option(code, value):
    pad = -len(value) % 4
    return struct.pack("<HH", code, len(value)) + value + b"\0" * pad


def _block(btype, body):
    """A block: type, total length, body (padded to 32 bits), total length again."""
    body += b"\0" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def section_header(application="appliance"):
    opts = _option(4, application.encode()) + _option(_OPT_END, b"")    # shb_userappl
    return _block(_SHB_TYPE, struct.pack("<IHHq", _BYTE_ORDER_MAGIC, 1, 0, -1) + opts)


def interface_description(snaplen, name="", linktype=LINKTYPE_RAW):
    opts = _option(_IF_TSRESOL, b"\x06")                                 # microseconds
    if name:
        opts += _option(_IF_NAME, name.encode(errors="replace"))
    return _block(_IDB_TYPE, struct.pack("<HHI", linktype, 0, snaplen) + opts + _option(_OPT_END, b""))


_EPB_HEAD = struct.Struct("<7I")
_U32 = struct.Struct("<I")
_PADS = (b"", b"\0", b"\0\0", b"\0\0\0")


def enhanced_packet(iface, ts, data, snaplen, comment=""):
    """One packet: `data` cut to `snaplen` (its original length kept), `comment` as opt_comment.
    Built in one join: it runs once per logged packet."""
    usec = ts * 1_000_000
    usec = int(usec) if 0 <= usec <= _MAX_USEC else (0 if not usec > 0 else _MAX_USEC)   # NaN -> 0
    cap = data if len(data) <= snaplen else data[:snaplen]
    n = len(cap)
    if comment:
        c = comment.encode()
        opts = struct.pack("<HH", _OPT_COMMENT, len(c)) + c + _PADS[-len(c) % 4] + b"\0\0\0\0"   # + opt_endofopt
    else:
        opts = b""
    total = 32 + n + (-n % 4) + len(opts)
    return b"".join((_EPB_HEAD.pack(_EPB_TYPE, total, iface, usec >> 32, usec & 0xFFFFFFFF, n, len(data)),
                     cap, _PADS[-n % 4], opts, _U32.pack(total)))


class PcapngWriter:
    """Append packets to DIR/NAME.pcapng, rotated and bounded (see the module's comment)."""

    def __init__(self, directory, name, max_bytes, keep, snaplen=65535):
        self.directory = directory
        self.name = name
        self.max_bytes = max_bytes
        self.keep = keep
        self.snaplen = snaplen
        self.path = os.path.join(directory, name + ".pcapng")
        self.packets = 0                # written to the file
        self.lost = 0                   # not written (a write failed)
        self.rotations = 0
        self._fd = None
        self._size = 0                  # bytes of whole blocks in the current file ...
        self._waiting = []              # ... and the blocks after them, not written yet: (block, is_packet, iface)
        self._waiting_bytes = 0
        self._since = 0.0               # when the first waiting block came (time.monotonic)
        self._ifaces = {}               # interface name -> its IDB's index in this file (written or waiting)
        self._failing = None

    # -- files -------------------------------------------------------------------

    def _rotated(self, i):
        return os.path.join(self.directory, f"{self.name}.{i}.pcapng")

    def _shift(self):
        """NAME.pcapng -> NAME.1.pcapng, each older one a number up, the oldest gone."""
        for i in range(self.keep - 1, 0, -1):
            try:
                os.replace(self._rotated(i), self._rotated(i + 1))
            except FileNotFoundError:
                pass
        os.replace(self.path, self._rotated(1))

    def _start(self):
        """A new file: a file left by an earlier run (a restarted worker, a rerun replay)
        is rotated first, so every file is one section from one writer. Its header is
        written at once: a directory that cannot take a file says so now."""
        os.makedirs(self.directory, exist_ok=True)
        try:
            if os.path.getsize(self.path) > 0:
                self._shift()
        except FileNotFoundError:
            pass
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o640)
        self._size = 0
        self._ifaces = {}
        self._waiting, self._waiting_bytes = [], 0
        header = section_header()
        try:
            n = os.write(self._fd, header)
        except OSError:
            n = 0
        if n != len(header):                      # not even a header: start over with the next packet
            os.close(self._fd)
            self._fd = None
            raise OSError(5, "write failed")
        self._size = n

    def _rotate(self):
        os.close(self._fd)
        self._fd = None
        self._shift()
        self.rotations += 1
        self._start()

    def flush(self):
        """Write the waiting blocks in one os.write. A short write keeps the whole blocks
        that fit and truncates the rest away (their packets lost, their interfaces
        described again in the next block); raises OSError then. Returns None."""
        waiting = self._waiting
        if not waiting:
            return
        data = b"".join(b for b, _, _ in waiting)
        self._waiting, self._waiting_bytes = [], 0
        try:
            n = os.write(self._fd, data)
        except OSError:
            n = 0
        if n == len(data):
            self._size += n
            self.packets += sum(1 for _, is_packet, _ in waiting if is_packet)
            return
        kept = 0                                  # the whole blocks that fit
        for i, (b, is_packet, iface) in enumerate(waiting):
            if kept + len(b) > n:
                break
            kept += len(b)
            self.packets += is_packet
        for b, is_packet, iface in waiting[i:]:
            self.lost += is_packet
            if not is_packet:
                self._ifaces.pop(iface, None)
        try:
            os.ftruncate(self._fd, self._size + kept)
        except OSError:
            pass
        self._size += kept
        raise OSError(28 if n else 5, "short write" if n else "write failed")

    # -- packets -------------------------------------------------------------------

    def write(self, ts, data, comment="", iface=""):
        """Append one packet (written with the next flush). Never raises."""
        queued = False
        try:
            if self._fd is None:
                self._start()
            waiting = self._waiting
            if not waiting:
                self._since = time.monotonic()
            idx = self._ifaces.get(iface)
            if idx is None:
                block = interface_description(self.snaplen, iface)
                waiting.append((block, False, iface))
                self._waiting_bytes += len(block)
                idx = self._ifaces[iface] = len(self._ifaces)
            block = enhanced_packet(idx, ts, data, self.snaplen, comment)
            waiting.append((block, True, iface))
            self._waiting_bytes += len(block)
            queued = True                         # (from here on, flush() counts it written or lost)
            if (self._waiting_bytes >= FLUSH_BYTES or self._size + self._waiting_bytes >= self.max_bytes
                    or time.monotonic() - self._since >= FLUSH_SECONDS):
                self._flush_now()
        except OSError as e:
            self._failed(e, 0 if queued else 1)

    def _flush_now(self):
        """flush(), then say a failure ended, and rotate past max_bytes; raises OSError."""
        self.flush()
        if self._failing is not None:
            print(f"appliance: pcap log {self.path}: writing again; {self.lost} packets lost "
                  f"({self._failing})", file=sys.stderr, flush=True)
            self._failing = None
        if self._size >= self.max_bytes:
            self._rotate()

    def _failed(self, e, lost):
        """A failed open or write: `lost` packets counted (a failed flush counts its own), said once."""
        self.lost += lost
        if self._failing is None:
            self._failing = e.strerror or str(e)
            print(f"appliance: pcap log {self.path}: cannot write ({self._failing}); counting lost "
                  "packets until writes succeed again (verdicts are not affected)", file=sys.stderr, flush=True)

    def tick(self):
        """The worker's clock: what waits is written (an idle log is not a second behind)."""
        if self._waiting:
            try:
                self._flush_now()
            except OSError as e:
                self._failed(e, 0)

    def close(self):
        self.tick()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
