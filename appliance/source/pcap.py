"""Offline packets from pcap / pcapng files (optionally gzip-compressed).

`PcapSource` yields decoded packets stamped with their file and packet number;
`packets()` yields the raw records (timestamp, frame bytes, linktype, packet
number). A file that is unreadable or corrupt raises PcapError after yielding
every packet before the damage, so a replay keeps what it already inspected.
"""
import gzip
import os
import struct
import zlib

import dpkt

from appliance.decode import decode_frame

try:
    import cython
    COMPILED = cython.compiled       # True in the compiled twin only
except ImportError:                  # Cython is not a run-time dependency
    COMPILED = False


class PcapSource:
    """The packets of several capture files, in order. A damaged file is recorded in
    `errors` (its good packets are kept) and the next file is read."""

    def __init__(self, paths, progress=None):
        self.paths = list(paths)
        self.progress = progress         # progress(path, packet number, file size), about once a second
        self.frames = 0
        self.errors = []

    def __iter__(self):
        for path in self.paths:
            name = os.path.basename(path)
            try:
                size = os.path.getsize(path)
            except OSError:
                size = 0
            last = None
            try:
                for ts, buf, linktype, cnt in packets(path):
                    pkt = decode_frame(buf, linktype, ts)
                    pkt.pcap_cnt = cnt
                    pkt.pcap_file = name
                    self.frames += 1
                    if self.progress and (last is None or ts - last >= 1.0 or ts < last):
                        last = ts
                        self.progress(path, cnt, size)
                    yield pkt
            except PcapError as e:
                self.errors.append(str(e))

    def verdict(self, pkt, verdict):
        """Offline there is nothing to enforce: the Inspector has logged what it decided."""


class PcapError(Exception):
    pass


_PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"


def _open(path):
    try:
        f = open(path, "rb")
    except OSError as e:
        raise PcapError(f"{path}: cannot open: {e.strerror}") from None
    head = f.read(4)
    f.seek(0)
    if head[:2] == b"\x1f\x8b":
        f = gzip.GzipFile(fileobj=f)
        try:
            head = f.read(4)
        except (OSError, EOFError) as e:
            raise PcapError(f"{path}: bad gzip data: {e}") from None
        f.seek(0)
    return f, head


def packets(path):
    f, head = _open(path)
    try:
        if head in _PCAP_MAGICS:
            reader = _pcap_reader(f, path)
        elif head == _PCAPNG_MAGIC:
            reader = _pcapng_reader(f, path)
        else:
            raise PcapError(f"{path}: not a pcap or pcapng file (magic {head.hex() or 'empty'})")
        yield from reader
    except (OSError, EOFError, zlib.error) as e:   # e.g. a gzip stream cut short
        raise PcapError(f"{path}: corrupt: {e}") from None
    finally:
        f.close()


_MAGIC = {  # magic -> (byte order, timestamp divisor)
    b"\xd4\xc3\xb2\xa1": ("<", 1e6), b"\xa1\xb2\xc3\xd4": (">", 1e6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e9), b"\xa1\xb2\x3c\x4d": (">", 1e9),
}
_MAX_CAPLEN = 1 << 18      # larger records are corruption, not packets
# A plain file is read this much at a time and its whole records cut out of the buffer in one C
# pass (_records): two reads, a struct call and a generator step a record cost ~2.6k
# instructions of a SYN-flood packet. A gzip stream is read record by record as it always was:
# a stream cut short then still yields every packet before the damage.
_CHUNK = 1 << 18


def _pcap_reader(f, path):
    """Classic pcap, read with struct: checks every record's length, which
    dpkt's reader does not (a record cut short must be reported, not inspected)."""
    head = f.read(24)
    if len(head) < 24:
        raise PcapError(f"{path}: bad pcap header: file is {len(head)} bytes long")
    order, div = _MAGIC[head[:4]]
    linktype = struct.unpack(order + "I", head[20:24])[0] & 0x0FFFFFFF
    unpack = struct.Struct(order + "IIII").unpack   # bound once: a method lookup and call a record cost ~0.5k instructions
    chunk = 0 if isinstance(f, gzip.GzipFile) else _CHUNK
    little = order == "<"
    read = f.read
    n = 0
    data, pos = b"", 0               # read ahead; where the next record starts in it
    while True:
        if chunk:                    # compiled: every whole record in data at once
            recs, pos = _records(data, pos, little, div, linktype, n)
            n += len(recs)
            yield from recs
        # one record from pos, reading what it lacks (a chunk, or at least what it needs)
        have = len(data) - pos
        if have < 16:
            data, pos = data[pos:] + read(max(chunk, 16 - have)), 0
            if len(data) < 16:
                if not data:
                    return
                raise PcapError(f"{path}: corrupt after packet {n}: record header cut short ({len(data)} of 16 bytes)")
        sec, frac, caplen, _wirelen = unpack(data[pos:pos + 16])
        if caplen > _MAX_CAPLEN:
            raise PcapError(f"{path}: corrupt after packet {n}: record length {caplen} is implausible")
        end = pos + 16 + caplen
        if end > len(data):
            data, pos = data[pos:] + read(max(chunk, end - len(data))), 0
            end = 16 + caplen
            if end > len(data):
                raise PcapError(f"{path}: corrupt after packet {n}: record cut short ({len(data) - 16} of {caplen} bytes)")
        buf = data[pos + 16:end]
        pos = end
        n += 1
        yield sec + frac / div, buf, linktype, n


def _records(data, pos, little, div, linktype, n):
    """Compiled: the whole, plausible records of `data` from `pos` on, as _pcap_reader yields
    them (numbered from n + 1), and where the first that is not starts. Pure Python: none (the
    reader's own per-record code, the reference, reads them)."""
    out = []
    if not COMPILED:
        return out, pos
    r = data                         # compiled: a pointer to the bytes' own buffer
    size = len(data)
    limit = _MAX_CAPLEN
    while size - pos >= 16:
        h = r + pos
        sec, frac, caplen = _word(h, little), _word(h + 4, little), _word(h + 8, little)
        if caplen > limit or size - pos - 16 < caplen:
            break
        n += 1
        out.append((sec + frac / div, r[pos + 16:pos + 16 + caplen], linktype, n))
        pos += 16 + caplen
    return out, pos


def _word(h, little):
    """Compiled: the unsigned 32-bit word at h, in the file's byte order."""
    w = h[3] if little else h[0]
    for i in range(1, 4):
        w = w * 256 + (h[3 - i] if little else h[i])     # (no C shifts: test_compiled_no_c_shifts)
    return w


def _pcapng_reader(f, path):
    try:
        r = dpkt.pcapng.Reader(f)
    except (ValueError, struct.error, dpkt.NeedData, EOFError, OSError) as e:
        raise PcapError(f"{path}: bad pcapng header: {e}") from None
    linktype = r.datalink()
    n = 0
    it = iter(r)
    while True:
        try:
            ts, buf = next(it)
        except StopIteration:
            return
        except (ValueError, struct.error, dpkt.NeedData, EOFError, OSError) as e:
            raise PcapError(f"{path}: corrupt after packet {n}: {e}") from None
        n += 1
        yield float(ts), buf, linktype, n


from ..compiled import use_compiled  # noqa: E402 -- last: the Cython build of this file, if built
use_compiled(globals())
