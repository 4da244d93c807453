"""Offline packets from pcap / pcapng files (optionally gzip-compressed).

Yields (timestamp, frame bytes, linktype, packet number). A file that is
unreadable or corrupt raises PcapError after yielding every packet before the
damage, so a replay keeps what it already inspected.
"""
import gzip
import struct

import dpkt


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
    finally:
        f.close()


def _pcap_reader(f, path):
    try:
        r = dpkt.pcap.Reader(f)
    except (ValueError, struct.error, dpkt.NeedData, EOFError, OSError) as e:
        raise PcapError(f"{path}: bad pcap header: {e}") from None
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
