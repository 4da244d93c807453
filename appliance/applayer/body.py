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
DECODERS = ("gzip", "x-gzip", "deflate", "identity")


class Limits:
    __slots__ = ("inspect", "ratio", "flow")

    def __init__(self, inspect=100 * 1024, ratio=1000, flow=1 << 20):
        self.inspect = inspect     # decoded bytes inspected per body
        self.ratio = ratio         # decoded / encoded bytes per coding stage, past RATIO_SLACK
        self.flow = flow           # decoded bytes per flow, all bodies together


class FlowBudget:
    """Decoded bytes a flow may still produce (Limits.flow), shared by its bodies."""
    __slots__ = ("left",)

    def __init__(self, limits):
        self.left = limits.flow


class _Stage:
    """One content coding being undone."""
    __slots__ = ("kind", "z", "tail", "fed", "out", "ended")

    def __init__(self, kind):
        self.kind = kind           # gzip | deflate (its wrapper decided on its first bytes)
        self.z = zlib.decompressobj(31) if kind == "gzip" else None
        self.tail = b""            # input not decoded yet (bounded by what one segment brings)
        self.fed = 0               # input bytes consumed
        self.out = 0               # output bytes produced
        self.ended = False

    def decode(self, data, room):
        """Up to `room` (<= STEP) bytes of output from the held input plus `data`."""
        buf = self.tail + data if self.tail else data
        if self.z is None:
            if len(buf) < 2:
                self.tail = buf
                return b""
            # deflate: RFC 9110 says zlib (RFC 1950), old servers send raw deflate (RFC 1951);
            # browsers and curl try the zlib header and fall back to raw, so do we
            cmf, flg = buf[0], buf[1]
            zlib_header = cmf & 0x0F == 8 and (cmf << 8 | flg) % 31 == 0
            self.z = zlib.decompressobj(15 if zlib_header else -15)
        if self.ended:
            self.tail = b""
            return b""
        out = self.z.decompress(buf, room)
        self.tail = self.z.unconsumed_tail
        self.fed += len(buf) - len(self.tail)
        self.out += len(out)
        if self.z.eof:
            self.ended = True      # bytes after the stream's end: ignored, as zlib's clients do
            self.tail = b""
        return out


class Body:
    """One message body as a rule sees it: `data` (decoded, up to the inspect depth),
    `raw` (as sent, up to the same depth; kept while a coding is in force), `complete`
    once nothing more of it will be inspected, `unknown` (a reason) when a rule cannot
    see what the client gets, `anomalies` said about it (the reader hands them on)."""
    __slots__ = ("limits", "budget", "stages", "data", "raw", "complete", "unknown", "raw_too",
                 "anomalies", "seen", "_values")

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
            self.raw += chunk[:depth - len(self.raw)]
            grew = self.raw_too or self.unknown is not None
        if self.raw is None:
            room = min(depth - len(self.data), self.budget.left)
            take = chunk[:room]
            self.data += take
            self.budget.left -= len(take)
            if len(self.data) >= depth:
                self.complete = True
            elif len(take) < len(chunk):
                self.mark("http.body_flow_cap")   # the flow's bodies took their budget
                self.complete = True
            return bool(take) or self.unknown is not None
        if not self.stages:        # not decoded (any more): the raw reading grows
            if len(self.raw) >= depth:
                self.complete = True
            return grew
        try:
            grew = self._decode(chunk) or grew
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
                room = min(STEP, depth - len(self.data), self.budget.left) if last else STEP
                if room <= 0:
                    return self._full(before)
                if not data and not stage.tail:
                    continue
                out = stage.decode(data, room)
                if stage.out > RATIO_SLACK and stage.out > self.limits.ratio * max(stage.fed, 1):
                    self._cannot("http.body_ratio")
                    return len(self.data) > before
                if out:
                    moved = True
                    if last:
                        self.data += out
                        self.budget.left -= len(out)
                    else:
                        pending[i + 1] += out
            if not moved:
                break
        if len(self.data) >= depth:
            self.complete = True
        return len(self.data) > before

    def _full(self, before):
        if len(self.data) >= self.limits.inspect:
            self.complete = True   # the inspect depth: what follows is not inspected (as Suricata)
        else:
            self._cannot("http.body_flow_cap")
        return len(self.data) > before

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
