"""EVE JSON lines: Suricata's event format, so existing EVE tooling reads ours.

Each event is one line written with a single write() on an O_APPEND descriptor,
so several worker processes can share one file without interleaving lines.
"""
import fcntl
import os
import stat
import sys
import time

# The event types the appliance writes (Suricata's eve-log.types); config `eve.types` and
# replay `--eve-types` choose among them, default all.
EVE_TYPES = ("alert", "anomaly", "flow", "stats", "dns", "tls", "http")

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
    global _second
    second = _second                     # read once: another thread may replace it meanwhile
    if second[0] != sec:                 # events come in bursts within one second: its text is made once
        second = _second = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)))
    return f"{second[1]}.{usec:06d}+0000"


_second = (None, "")                     # (the last second timestamp() formatted, its text)


class EveWriter:
    """Write events to a path ("-" = stdout) or an already open binary file.

    Never raises on a write: EVE is a record of verdicts, and a full or failing disk
    must not change one (a write error used to propagate through Inspector.process, and
    through tick() kill the worker). A failed event is counted in `lost`, the first failure
    is said once on stderr (the journal), and writing resumes by itself when the disk
    accepts it again (a line cut short by the failure is taken back out of the file, or closed
    first where it cannot be, so every line stays JSON).

    A regular file is bounded on disk: past `max_bytes` it is renamed to PATH.1 (PATH.1 to
    PATH.2, ... up to PATH.<keep>; the oldest goes) and a new PATH is started. Several
    workers append to one file: the one that rotates holds an flock on the file while it
    renames; the others see that PATH is no longer the file they hold and reopen it (as
    they do after a rename by logrotate).
    """

    CHECK_EVERY = 64            # writes between looks at the file's real size (other workers write too)
    # writes in a row that end a failure: at the edge of a full disk a short event fits where a
    # long one did not (a cut line gives its bytes back), and each would say so on stderr
    RECOVERED_AFTER = 16

    def __init__(self, target, max_bytes=None, keep=5):
        self.count = 0
        self.lost = 0
        self.rotations = 0
        self.max_bytes = max_bytes
        self.keep = keep
        self.path = None
        self._own = False
        self._partial = False           # the last write stopped inside a line
        self._failing = None            # the error of the failure being counted, if any
        self._written_since_failure = 0
        self._since_check = 0
        if target == "-":
            self._fd = sys.stdout.fileno()
        elif isinstance(target, (str, os.PathLike)):
            self.path = os.fspath(target)
            d = os.path.dirname(self.path)
            if d:
                os.makedirs(d, exist_ok=True)
            self._fd = self._open()
            self._own = True
        else:
            self._fd = target.fileno()

    def _open(self):
        return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o640)     # read: _cut

    def write(self, event):
        line = orjson.dumps(event) + b"\n"
        if self._partial:
            line = b"\n" + line
        if self.max_bytes and self._own:
            self._since_check += 1
            if self._since_check >= self.CHECK_EVERY:
                self._since_check = 0
                self._bound()
        done = 0
        try:
            while done < len(line):
                done += os.write(self._fd, memoryview(line)[done:])
        except OSError as e:
            if done:
                self._cut(line[:done])
            self._lose(e)
            return
        self._partial = False
        self.count += 1
        if self._failing is not None:
            self._written_since_failure += 1
            if self._written_since_failure < self.RECOVERED_AFTER:
                return
            print(f"appliance: EVE {self.path or 'output'}: writing again; {self.lost} events lost "
                  f"({self._failing})", file=sys.stderr, flush=True)
            self._failing = None

    def _cut(self, fragment):
        """Take a line cut short by a failed write back out of the file, so another worker's
        next line is not appended to it (and counted written while no reader can parse it).
        Only while the fragment is still the file's tail; otherwise (a pipe, or another writer
        appended meanwhile) the next line of ours starts on a new line. Not locked: a line
        another worker appends between the tail's read and the truncate is cut with it (a
        window of two syscalls, at the edge of a full disk; a lock on every write would cost
        every event two more)."""
        try:
            size = os.fstat(self._fd).st_size
            if size >= len(fragment) and os.pread(self._fd, len(fragment), size - len(fragment)) == fragment:
                os.ftruncate(self._fd, size - len(fragment))
                return
        except OSError:
            pass
        self._partial = True

    def _lose(self, e):
        self.lost += 1
        self._written_since_failure = 0
        self._say(e)

    def _say(self, e):
        if self._failing is None:
            self._failing = e.strerror or str(e)
            print(f"appliance: EVE {self.path or 'output'}: cannot write ({self._failing}); counting lost "
                  "events until writes succeed again (verdicts are not affected)", file=sys.stderr, flush=True)

    def _bound(self):
        """Rotate when the file is past max_bytes; reopen when PATH is another file now."""
        try:
            st = os.fstat(self._fd)
            if not stat.S_ISREG(st.st_mode):
                self.max_bytes = None          # /dev/null, a FIFO: nothing to bound
                return
            try:
                now = os.stat(self.path)
            except FileNotFoundError:
                now = None
            if now is None or (now.st_ino, now.st_dev) != (st.st_ino, st.st_dev):
                self._reopen()                 # rotated by another worker or by logrotate
                return
            if st.st_size < self.max_bytes:
                return
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                now = os.stat(self.path)
                if (now.st_ino, now.st_dev) == (st.st_ino, st.st_dev):   # nobody rotated meanwhile
                    for i in range(self.keep - 1, 0, -1):
                        try:
                            os.rename(f"{self.path}.{i}", f"{self.path}.{i + 1}")
                        except FileNotFoundError:
                            pass
                    os.rename(self.path, f"{self.path}.1")
                    self.rotations += 1
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            self._reopen()
        except OSError as e:                  # e.g. the directory is read-only: keep appending, say so
            self._say(e)

    def _reopen(self):
        fd = self._open()
        os.close(self._fd)
        self._fd = fd
        self._partial = False                  # a new file starts on a line boundary

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
