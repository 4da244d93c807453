"""HTTP message bodies for `file_data`: content codings decoded within bounds.

The framing (Content-Length, chunked, until close) is the response reader's (http.py); a
Body gets the body's bytes as framed and keeps what a rule inspects: the first
`limits.inspect` bytes of the decoded body (Suricata's response-body-limit, 100 KiB by
default), and, while a content coding is in force, the raw bytes up to the same depth.

Bounds, so a decompression bomb cannot take memory or CPU: every zlib call gets a
max_length (a stage never holds more than STEP bytes of output at once, its unread input
stays in its unconsumed_tail); decoding stops at the inspect depth; a stage whose output
outgrows its input more than `limits.ratio` times is a bomb (anomaly "http.body_ratio");
and a flow keeps at most `limits.flow` body bytes over all its bodies ("http.body_flow_cap").

Where a rule could not see what the client gets, `unknown` names why (detection reads
that by the exception policy, docs/rules.md). Clients differ on a coding that fails to
decode (Chrome and curl fail the response, a lax client shows the bytes as sent): the
decoded prefix AND the raw bytes are inspected, both readings, with an anomaly.
"""
import zlib

STEP = 16384               # output of one zlib call: a stage holds no more at once
RATIO_SLACK = 4096         # output allowed before the ratio counts (tiny inputs inflate a lot)
MAX_CODINGS = 4            # "gzip, gzip, gzip, gzip": past this the body is not decoded
MAX_MEMBERS = 64           # gzip members of one body decoded (each costs a zlib object): past it unknown
ZLIB_STATE = 48 * 1024     # what one inflate stream holds (its 32 KiB window and state), charged to the pool
HEADER_MAX = 4096          # gzip header bytes (FEXTRA, FNAME, FCOMMENT) waited for before the data
DECODERS = ("gzip", "x-gzip", "deflate", "identity")


class Limits:
    __slots__ = ("inspect", "ratio", "flow", "total")

    def __init__(self, inspect=100 * 1024, ratio=1000, flow=1 << 20, total=64 << 20):
        self.inspect = inspect     # decoded bytes inspected per body
        self.ratio = ratio         # decoded / encoded bytes per coding stage, past RATIO_SLACK
        self.flow = flow           # decoded bytes per flow, all bodies together
        self.total = total         # bytes all bodies of all flows hold at once (decoded and raw)


class Pool:
    """Body bytes all flows may still hold (Limits.total). A body holds its bytes until it
    is freed (its flow ended or was released): a stalled response inflating ~150 bytes to
    the inspect depth is within every per-flow bound, a flood of them is not."""
    __slots__ = ("left",)

    def __init__(self, limits):
        self.left = limits.total


class FlowBudget:
    """Decoded bytes a flow may still produce (Limits.flow), shared by its bodies, and the
    pool of all flows (None: unbounded, a body read alone)."""
    __slots__ = ("left", "pool")

    def __init__(self, limits, pool=None):
        self.left = limits.flow
        self.pool = pool

    def room(self):
        return self.left if self.pool is None else min(self.left, self.pool.left)

    def why(self):
        """The bound that left no room."""
        return "http.body_memory" if self.pool is not None and self.pool.left < self.left else "http.body_flow_cap"


class _Beyond(Exception):
    """A stage met a bound (a header too long, too many gzip members): the client decodes
    bytes this stage will not, the body is unknown (`reason`)."""


class _Stage:
    """One content coding being undone. The wrapper (gzip header and trailer, zlib's two
    bytes and Adler-32) is read here and the deflate data inflated raw, as Chrome and
    Firefox do: a checksum that does not match does not lose the decoded bytes (zlib
    raises on the trailer, discarding that call's output), it is an anomaly. Every gzip
    member is decoded (Firefox, gunzip; Chrome stops after the first: a prefix of ours)."""
    __slots__ = ("kind", "z", "tail", "fed", "out", "ended", "check", "size", "members", "bad", "extra")

    def __init__(self, kind):
        self.kind = kind           # gzip | deflate (its wrapper decided on its first bytes)
        self.z = None              # raw inflate, once the wrapper's header was read
        self.tail = b""            # input not decoded yet (bounded by what one segment brings)
        self.fed = 0               # input bytes consumed
        self.out = 0               # output bytes produced
        self.ended = False
        self.check = 0             # the member's CRC-32 / Adler-32 so far (None: raw deflate, none)
        self.size = 0              # the member's output so far (gzip's ISIZE)
        self.members = 0           # gzip members begun
        self.bad = False           # a checksum did not match (Body takes it)
        self.extra = False         # a second gzip member began (Body takes it)

    def decode(self, data, room):
        """Up to `room` (<= STEP) bytes of output from the held input plus `data`."""
        buf = self.tail + data if self.tail else data
        self.tail = b""
        out = b""
        while buf and not self.ended and not out:
            z = self.z
            if z is None:
                used = self._header(buf)
                if used is None:           # the header is not all here yet
                    if len(buf) > HEADER_MAX:
                        raise _Beyond("http.body_decode")
                    break
                self.fed += used
                buf = buf[used:]
                continue
            if z.eof:
                buf = self._trailer(buf)
                if buf is None:
                    return b""             # (the rest of the trailer is still to come: tail)
                continue
            out = z.decompress(buf, room)
            rest = z.unused_data if z.eof else z.unconsumed_tail
            self.fed += len(buf) - len(rest)
            self.out += len(out)
            self.size += len(out)
            if self.check is not None and out:
                self.check = (zlib.crc32 if self.kind == "gzip" else zlib.adler32)(out, self.check)
            buf = rest
            if z.eof and self.check is None:
                self.ended = True          # raw deflate: no trailer, what follows is ignored
        if not self.ended:
            self.tail = bytes(buf)
        return out

    def _header(self, buf):
        """Bytes of the wrapper's header at the start of `buf` (None: not all here yet)."""
        if self.kind == "deflate":
            if len(buf) < 2:
                return None
            # RFC 9110 says zlib (RFC 1950), old servers send raw deflate (RFC 1951);
            # browsers and curl try the zlib header and fall back to raw, so do we
            cmf, flg = buf[0], buf[1]
            wrapped = cmf & 0x0F == 8 and (cmf << 8 | flg) % 31 == 0
            if wrapped and flg & 0x20:
                raise zlib.error("preset dictionary")   # no client has it
            self.z = zlib.decompressobj(-15)
            self.check = 1 if wrapped else None
            return 2 if wrapped else 0
        if buf[:3] != b"\x1f\x8b\x08"[:len(buf[:3])]:
            raise zlib.error("not gzip")
        if len(buf) < 10:
            return None
        flg, pos = buf[3], 10
        if flg & 4:                        # FEXTRA
            if len(buf) < 12:
                return None
            pos = 12 + (buf[10] | buf[11] << 8)
        for bit in (8, 16):                # FNAME, FCOMMENT: zero-terminated
            if flg & bit:
                end = buf.find(b"\0", pos)
                if end < 0:
                    return None
                pos = end + 1
        if flg & 2:                        # FHCRC
            pos += 2
        if len(buf) < pos:
            return None
        self.z = zlib.decompressobj(-15)
        self.check = self.size = 0
        self.members += 1
        if self.members == 2:
            self.extra = True
        elif self.members > MAX_MEMBERS:
            raise _Beyond("http.body_gzip_members")
        return pos

    def _trailer(self, buf):
        """The deflate data ended: its checksum, then (gzip) maybe another member, else the
        end (bytes after it are ignored, as clients do). The input left, None to wait."""
        if self.check is None:             # raw deflate: nothing follows
            self.ended = True
            return b""
        size = 8 if self.kind == "gzip" else 4
        if len(buf) < size or (self.kind == "gzip" and len(buf) == size + 1 and buf[size] == 0x1F):
            self.tail = bytes(buf)         # (a next member's magic may be cut too)
            return None
        if self.kind == "gzip":
            good = int.from_bytes(buf[:4], "little") == self.check \
                and int.from_bytes(buf[4:8], "little") == self.size & 0xFFFFFFFF
        else:
            good = int.from_bytes(buf[:4], "big") == self.check
        self.bad = self.bad or not good
        self.fed += size
        buf = buf[size:]
        if self.kind == "gzip" and buf[:2] == b"\x1f\x8b":
            self.z = None                  # another member
            return buf
        self.ended = True
        return b""


class Body:
    """One message body as a rule sees it: `data` (decoded, up to the inspect depth),
    `raw` (as sent, up to the same depth; kept while a coding is in force), `complete`
    once nothing more of it will be inspected, `unknown` (a reason) when a rule cannot
    see what the client gets, `anomalies` said about it (the reader hands them on)."""
    __slots__ = ("limits", "budget", "stages", "data", "raw", "complete", "unknown", "raw_too",
                 "anomalies", "seen", "_values", "held")

    def __init__(self, codings, limits, budget):
        self.limits = limits
        self.budget = budget
        self.data = bytearray()
        self.raw = None
        self.complete = False
        self.unknown = None
        self.raw_too = False        # the raw bytes are a reading too (a coding failed, or clients differ on it)
        self.anomalies = []
        self.seen = 0              # body bytes as sent, counted
        self._values = None        # values(), until the body changes (rules judge it per packet)
        self.held = 0              # bytes charged to the pool, given back when the body is freed
        self.stages = []
        chain = [c for c in codings if c != "identity"]
        if not chain:
            return
        self.raw = bytearray()
        if len(chain) > MAX_CODINGS or any(c not in DECODERS for c in chain):
            # br, zstd, compress, or a chain longer than any server sends: not decoded here
            self._cannot("http.body_coding")
            return
        # the codings were applied in order: undone last to first
        pool = budget.pool
        if pool is not None and pool.left < len(chain) * ZLIB_STATE:
            self._cannot("http.body_memory")
            return
        self._hold(len(chain) * ZLIB_STATE, False)   # a decoder's window and state: held until freed
        self.stages = [_Stage("gzip" if c in ("gzip", "x-gzip") else "deflate") for c in reversed(chain)]

    def values(self):
        """The buffers file_data inspects: the decoded body, and the raw one where a coding
        failed or is not decoded (a lax client shows it as sent)."""
        if self._values is None:
            self._values = self._read()
        return self._values

    def _read(self):
        if self.raw is not None and (self.raw_too or self.unknown):
            return [bytes(self.data), bytes(self.raw)] if self.data else [bytes(self.raw)]
        return [bytes(self.data)]

    def feed(self, chunk):
        """Body bytes as framed (chunk data without its framing). Returns True when the
        inspected buffer changed."""
        if self.complete or not chunk:
            return False
        self._values = None
        self.seen += len(chunk)
        depth = self.limits.inspect
        grew = False
        if self.raw is not None and len(self.raw) < depth:
            pool = self.budget.pool
            room = depth - len(self.raw) if pool is None else min(depth - len(self.raw), pool.left)
            take = chunk[:room]
            self.raw += take
            self._hold(len(take), False)
            grew = self.raw_too or self.unknown is not None
            if len(take) < min(len(chunk), depth - len(self.raw) + len(take)):
                self._cannot("http.body_memory")   # all flows' bodies took the pool
                self.complete = True
                return True
        if self.raw is None:
            room = min(depth - len(self.data), self.budget.room())
            take = chunk[:room]
            self.data += take
            self._hold(len(take))
            if len(self.data) >= depth:
                self.complete = True
            elif len(take) < len(chunk):
                self.mark(self.budget.why())   # the flow's bodies (or all flows') took their budget
                self.complete = True
            return bool(take) or self.unknown is not None
        if not self.stages:        # not decoded (any more): the raw reading grows
            if len(self.raw) >= depth:
                self.complete = True
            return grew
        try:
            grew = self._decode(chunk) or grew
        except _Beyond as e:
            self._cannot(str(e))
            grew = True
        except zlib.error:
            self.stages = []
            self.raw_too = True
            self.anomalies.append("http.body_decode")
            grew = True            # the raw reading joins the values
        return grew

    def _decode(self, chunk):
        """Push `chunk` through the stages; every call bounded by STEP and the room left."""
        before = len(self.data)
        depth = self.limits.inspect
        pending = [chunk] + [b""] * (len(self.stages) - 1)
        while True:
            moved = False
            for i, stage in enumerate(self.stages):
                data = pending[i]
                pending[i] = b""
                last = i == len(self.stages) - 1
                room = min(STEP, depth - len(self.data), self.budget.room()) if last else STEP
                if room <= 0:
                    return self._full(before)
                if not data and not stage.tail:
                    continue
                out = stage.decode(data, room)
                if stage.bad or stage.extra:
                    before -= self._stage_news(stage)
                if stage.out > RATIO_SLACK and stage.out > self.limits.ratio * max(stage.fed, 1):
                    self._cannot("http.body_ratio")
                    return len(self.data) > before
                if out:
                    moved = True
                    if last:
                        self.data += out
                        self._hold(len(out))
                    else:
                        pending[i + 1] += out
            if not moved:
                break
        if len(self.data) >= depth:
            self.complete = True
        return len(self.data) > before

    def _stage_news(self, stage):
        """What a stage found in its wrapper, said once. Returns 1 when the raw reading
        joined the values (the caller's "changed")."""
        joined = 0
        if stage.extra:
            stage.extra = False
            self.anomalies.append("http.body_gzip_members")   # clients differ past the first
        if stage.bad:
            stage.bad = False
            if not self.raw_too:
                # Chrome and Firefox show the bytes, curl fails the response: both readings
                self.raw_too = True
                self.anomalies.append("http.body_decode")
                joined = 1
        return joined

    def _full(self, before):
        if len(self.data) >= self.limits.inspect:
            self.complete = True   # the inspect depth: what follows is not inspected (as Suricata)
        else:
            self._cannot(self.budget.why())
        return len(self.data) > before

    def _hold(self, n, decoded=True):
        """`n` more bytes held: the flow's decoded budget, all flows' pool."""
        if decoded:
            self.budget.left -= n
        pool = self.budget.pool
        if pool is not None:
            pool.left -= n
            self.held += n

    def __del__(self):
        if self.held:
            self.budget.pool.left += self.held   # the flow ended or let go of it

    def mark(self, reason):
        """The framing around this body reads two ways, or its bytes stopped being followed:
        a rule cannot see it as the client does (decoding goes on where it can)."""
        if self.unknown is None:
            self.unknown = reason
            self.anomalies.append(reason)
            self._values = None

    def _cannot(self, reason):
        """Decoding stops short of the depth: the client gets bytes no rule saw."""
        self._values = None
        self.unknown = reason
        self.anomalies.append(reason)
        self.stages = []

    def end(self):
        """The body ended (its framing said so, or the connection closed)."""
        self._values = None
        if not self.complete and self.stages and not self.raw_too and self.unknown is None:
            first = self.stages[0]
            if not first.ended and first.fed:
                self.raw_too = True          # a truncated stream: clients differ, both readings count
                self.anomalies.append("http.body_decode")
        self.complete = True


# -- framing as clients read it ------------------------------------------------------

_FRAMING_HEADERS = (b"content-length", b"transfer-encoding", b"content-encoding")


def note_header(heads, line):
    """Keep a response header line framing or coding depends on: (name, value, odd). A
    folded line (obs-fold) continuing one of them makes it odd: clients join it or refuse."""
    if line[:1] in (b" ", b"\t"):
        if heads and heads[-1][0] is not None:
            name, value, _ = heads[-1]
            heads[-1] = (name, value + b" " + line.strip(b" \t"), True)
        return
    name, sep, value = line.partition(b":")
    low = name.lower()
    stripped = low.strip(b" \t")
    if sep and stripped in _FRAMING_HEADERS and len(heads) < 64:
        heads.append((stripped, value.strip(b" \t"), low != stripped))
    elif heads and heads[-1][0] is not None:
        heads.append((None, b"", False))       # a line between: what folds after it is not ours


def _tokens(values):
    return [t.strip(b" \t").lower().decode("latin-1") for t in b",".join(values).split(b",") if t.strip(b" \t")]


def framing(heads):
    """(framing, content codings, anomalies) of a response with a body, as clients read it.
    framing: ("chunked",) | ("length", n) | ("close",) | ("ambiguous",) when clients read
    the length differently (the caller reads on until the close and says so)."""
    heads = [h for h in heads if h[0] is not None]
    te = [v for n, v, _ in heads if n == b"transfer-encoding"]
    cl = [v for n, v, _ in heads if n == b"content-length"]
    ce = [v for n, v, _ in heads if n == b"content-encoding"]
    odd = any(o for n, _, o in heads if n != b"content-encoding")
    found = []
    codings = _tokens(ce)
    if odd:
        found.append("http.body_odd_framing")
    if te:
        chain = _tokens(te)
        if cl:
            found.append("http.body_cl_te")    # RFC 9112 6.3: TE wins (curl, Chrome, Firefox do)
        extra = [c for c in chain if c != "chunked"]
        if extra:
            # a transfer coding besides chunked: RFC-wise decoded (one we know), browsers
            # ignore it (the caller inspects the bytes as sent too); "xchunked" is no coding
            found.append("http.body_te_coding")
            codings = [c for c in extra if c in DECODERS] + codings
        if chain and chain[-1] == "chunked" and chain.count("chunked") == 1 and not odd:
            return ("chunked",), codings, found
        if "chunked" in chain or odd or cl:
            # "chunked, gzip": RFC 9112 reads until the close, Chrome chunked (any chunked token);
            # "xchunked" + Content-Length: RFC the close, a lax client the length
            return ("ambiguous",), codings, found
        return ("close",), codings, found
    if cl:
        values = {v.strip(b" \t") for v in b",".join(cl).split(b",")}
        if odd or len(values) != 1 or not next(iter(values)).isdigit() or len(next(iter(values))) > 18:
            found.append("http.body_content_length")   # Chrome/curl refuse, others take one
            return ("ambiguous",), codings, found
        return ("length", int(next(iter(values)))), codings, found
    return ("close",), codings, found


_HEX = frozenset(b"0123456789abcdefABCDEF")


def chunk_size(line):
    """A chunk-size line as the laxest common client reads it: blanks around the size,
    extensions after ';', uppercase hex, any number of leading zeros. None: no size."""
    size = line.split(b";", 1)[0].strip(b" \t")
    if not size or not all(c in _HEX for c in size):
        return None
    size = size.lstrip(b"0") or b"0"
    if len(size) > 15:
        return None
    return int(size, 16)
