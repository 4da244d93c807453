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


def _pcap_reader(f, path):
    """Classic pcap, read with struct: checks every record's length, which
    dpkt's reader does not (a record cut short must be reported, not inspected)."""
    head = f.read(24)
    if len(head) < 24:
        raise PcapError(f"{path}: bad pcap header: file is {len(head)} bytes long")
    order, div = _MAGIC[head[:4]]
    linktype = struct.unpack(order + "I", head[20:24])[0] & 0x0FFFFFFF
    unpack = struct.Struct(order + "IIII").unpack   # bound once: a method lookup and call a record cost ~0.5k instructions
    read = f.read
    n = 0
    while True:
        hdr = read(16)
        if not hdr:
            return
        if len(hdr) < 16:
            raise PcapError(f"{path}: corrupt after packet {n}: record header cut short ({len(hdr)} of 16 bytes)")
        sec, frac, caplen, _wirelen = unpack(hdr)
        if caplen > _MAX_CAPLEN:
            raise PcapError(f"{path}: corrupt after packet {n}: record length {caplen} is implausible")
        buf = read(caplen)
        if len(buf) < caplen:
            raise PcapError(f"{path}: corrupt after packet {n}: record cut short ({len(buf)} of {caplen} bytes)")
        n += 1
        yield sec + frac / div, buf, linktype, n


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
