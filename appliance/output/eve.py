"""EVE JSON lines: Suricata's event format, so existing EVE tooling reads ours.

Each event is one line written with a single write() on an O_APPEND descriptor,
so several worker processes can share one file without interleaving lines.
"""
import os
import sys
import time

import orjson


# The range a four-digit year can show: a capture's clock is whatever its file says (a pcapng
# with if_tsresol=0 can claim 2^64-1 s), so a time outside it is shown at the nearest end.
_LATEST = 253402300799               # 9999-12-31T23:59:59


def timestamp(ts):
    """Suricata's EVE timestamp: 2009-11-24T21:27:09.534255+0000 (UTC). Total: any
    number (NaN, infinities, 1e19, negative) gives a timestamp, never an exception."""
    if not 0 <= ts < _LATEST:        # also NaN
        ts = _LATEST if ts >= _LATEST else 0
    sec = int(ts)
    usec = int(round((ts - sec) * 1_000_000))
    if usec >= 1_000_000:
        sec, usec = sec + 1, usec - 1_000_000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{usec:06d}+0000"


class EveWriter:
    """Write events to a path ("-" = stdout) or an already open binary file."""

    def __init__(self, target):
        self.count = 0
        self._own = False
        if target == "-":
            self._fd = sys.stdout.fileno()
        elif isinstance(target, (str, os.PathLike)):
            d = os.path.dirname(os.fspath(target))
            if d:
                os.makedirs(d, exist_ok=True)
            self._fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
            self._own = True
        else:
            self._fd = target.fileno()

    def write(self, event):
        line = orjson.dumps(event) + b"\n"
        view = memoryview(line)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self.count += 1

    def close(self):
        if self._own:
            os.close(self._fd)
            self._own = False


class EveList:
    """Collect events in memory (tests, and `replay` into a sorted/filtered sink)."""

    def __init__(self):
        self.events = []

    def write(self, event):
        self.events.append(event)

    def close(self):
        pass
