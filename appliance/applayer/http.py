"""HTTP/1.x requests (RFC 9112): request line, Host and User-Agent.

RequestReader walks the client->server stream the way a server does: each request of
a keep-alive connection, header block line by line, then its body framed by
Content-Length or chunked coding (or none), then the next request. It consumes what it
has read, so the stream only holds the line in progress. Framing a server could read
two ways (Content-Length with Transfer-Encoding, differing lengths, a coding that is
not chunked, a folded or odd framing header, bad chunk syntax) ends the walk: what
follows is UNKNOWN. A Host that reads several ways (duplicate lines, obs-fold, an
absolute-form target) gives every reading, for detection to read against the attacker.
"""

import re
from dataclasses import dataclass, field

from appliance.applayer import CAP, body
from appliance.applayer.dns import escape_label

try:
    import cython
    COMPILED = cython.compiled       # True in the compiled twin only (its C header-line readers)
except ImportError:                  # Cython is not a run-time dependency
    COMPILED = False

# The header block (request line included) a server accepts: Go's net/http default
# (DefaultMaxHeaderBytes, 1 MiB) is the largest common one, above Apache's 100 fields of
# 8190 bytes (~800 KiB) and nginx's 4 x 8 KiB. A block still open past it is a cap hit.
MAX_HEADER_BLOCK = 1 << 20
# Go reads the request line and header block up to DefaultMaxHeaderBytes + 4096 (its
# initialReadLimitSize; a method of 1 MiB was served, one past this refused): a run of token
# characters longer than this is no method any server we follow reads.
LONGEST_METHOD = MAX_HEADER_BLOCK + 4096
ALT_HOLD = 8192        # a body read as requests: bytes held for a line in progress
# Host and User-Agent readings and framing lines one request may carry before its names count as unknown
# (cap): a real request has one of each; without a bound a 1 MiB header block of
# "Content-Length: 1" lines held 6 MB per connection until it ended.
MAX_READINGS = 32
FRAMING = (b"content-length", b"transfer-encoding")

METHODS = frozenset((
    b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"CONNECT", b"TRACE", b"PATCH",
    b"PROPFIND", b"PROPPATCH", b"MKCOL", b"COPY", b"MOVE", b"LOCK", b"UNLOCK", b"SEARCH",
    b"REPORT", b"MKACTIVITY", b"CHECKOUT", b"MERGE", b"M-SEARCH", b"NOTIFY", b"SUBSCRIBE",
    b"UNSUBSCRIBE", b"PURGE",
))

# A request line as servers split it: Python's http.server takes any whitespace around and
# between the words (it decodes the line as Latin-1 and calls str.split(), so \x1c-\x1f,
# \x85 and \xa0 separate words too), nginx a method of capitals, '_' and '-'.
_WS = b" \t\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0"
_TO_SP = bytes.maketrans(_WS, b" " * len(_WS))
# Go's net/http takes any token as a method (RFC 9110 5.6.2: "get", "G.T", of any length) and
# routes it by its Host like any other: a method is any token, or a request Go reads would
# end the reading.
_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_TOKEN_RUN = re.compile(_TOKEN[:-1] + b"*")     # a token or nothing
_SPACE = b"[" + re.escape(_WS) + b"]"
_METHOD_SP = re.compile(_SPACE + b"*" + _TOKEN + _SPACE)
_METHOD_PREFIX = re.compile(_SPACE + b"*" + _TOKEN + rb"\Z")
_SPACES = re.compile(_SPACE + b"*")
# a control byte no request line holds (those in _WS are whitespace to the servers we follow)
_CTL = re.compile(rb"[\x00-\x08\x0a\x0d-\x1b\x7f]")
# what an open request line's target may start with: a path, "*", or a scheme / host and ":"
_TARGET_START = re.compile(rb"[/*]|[A-Za-z][A-Za-z0-9+.-]*(?::|\Z)")
_METHOD = re.compile(_TOKEN + rb"\Z")
# An absolute-form target's scheme and its ':' (RFC 3986 3.1): nginx and Go take any such
# scheme, not only http/https, and route the request by the authority after "//".
SCHEME = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]*:")
_BLOCK_END = re.compile(rb"\r?\n\r?\n")
_BLANK_LINES = re.compile(rb"(?:[ \t\x0b\x0c\r]*\n)+")   # lines str.split() finds no word in
_DIGITS = re.compile(rb"[0-9]{1,18}\Z")


@dataclass
class HttpRequest:
    method: str
    uri: str
    protocol: str
    host: str | None
    user_agent: str | None
    hosts: list = field(default_factory=list, compare=False)   # every reading of the host (names)
    user_agents: list = field(default_factory=list, compare=False)   # every reading of the User-Agent
    # its response, once the server's bytes showed it (ResponseReader; None until then)
    status: int | None = field(default=None, compare=False)
    response_protocol: str | None = field(default=None, compare=False)
    content_type: str | None = field(default=None, compare=False)   # up to its first ';', as Suricata's
    redirect: str | None = field(default=None, compare=False)       # the Location header
    length: int | None = field(default=None, compare=False)   # response body bytes counted
    body: object = field(default=None, compare=False, repr=False)   # body.Body of the response (file_data)
    body_fired: object = field(default=None, compare=False, repr=False)   # file_data alert rules fired on it
    request_body: object = field(default=None, compare=False, repr=False)  # RequestSide: its own body


def looks_like(data: bytes) -> bool:
    """A known method + SP, or any method token whose request line ends in HTTP/x.y.

    The second form needs the whole first line; FTP/SMTP commands ("USER x") also
    start with an uppercase token + SP and must not pass as HTTP.
    """
    data = data.lstrip(b"\r\n")          # servers ignore empty lines before a request (RFC 9112 2.2)
    m = _METHOD_SP.match(data)
    if m is None:
        return False
    if data[:m.end() - 1].strip(_WS) in METHODS:
        return True
    eol = data.find(b"\n", 0, 16384)
    if eol < 0:
        return False
    return data[:eol].rstrip(b"\r").translate(_TO_SP).rsplit(None, 1)[-1].startswith(b"HTTP/")


def method_arriving(data: bytes) -> bool:
    """The bytes are a method token still arriving (no space yet): nginx serves an
    uppercase method of 8 KiB and Go one of 1 MiB by its Host, split across segments too."""
    return _METHOD_PREFIX.match(data) is not None


def request_line_open(data: bytes) -> bool:
    """The bytes begin a request line that has not ended in them: a method token, maybe a
    space and its target. Go reads a method of any token and length (and nginx any target
    length): such a line may be a request that looks_like cannot tell yet, so detection
    hands it to the RequestReader, which reads it at its end or calls it a cap hit."""
    data = data.lstrip(b"\r\n")
    if b"\n" in data:
        return False                           # ended: looks_like has read it
    m = _METHOD_SP.match(data)
    if m is None:
        # a window of token characters and no space (state.on_stream waits for the space
        # until then): a method longer than the window, or a raw stream of letters; the
        # reader tells them apart at the method's end (RequestReader._long_method)
        return _METHOD_PREFIX.match(data) is not None
    # a plausible target, so that a chat line ("hello world, ...") or a git:// request
    # ("0060git-upload-pack /repo\0host=...") stays not-HTTP (review s8: they were dropped)
    target = data[m.end():].lstrip(_WS)
    return not _CTL.search(target) and (not target or _TARGET_START.match(target) is not None)


def normalize_host(raw: bytes) -> str | None:
    """Host header value -> lowercase name without port; "[::1]:80" -> "::1"."""
    host = raw.strip(b" \t").lower()
    if host.startswith(b"["):
        end = host.find(b"]")
        host = host[1:end] if end > 0 else host[1:]
    else:
        name, sep, port = host.rpartition(b":")
        # Only strip a real port; a bare IPv6 address has several colons.
        if sep and b":" not in name and (port == b"" or port.isdigit()):
            host = name
    host = host.strip(b" \t")
    return escape_label(host) if host else None


def _before_colon(raw: bytes) -> str | None:
    """nginx's reading of a Host (ngx_http_validate_host): the name ends at the first ':'
    whatever follows ("evil.example:80:80", "evil.example:x"), where normalize_host keeps
    a value whose port is not one."""
    host = raw.strip(b" \t")
    if host[:1] == b"[" or b":" not in host:
        return None
    return normalize_host(host.partition(b":")[0])


# the hostname characters a Host value starts with (after any spaces or tabs)
_NAME_START = re.compile(rb"[ \t]*([A-Za-z0-9._-]+)")
# the bytes of an ordinary Host value: a name and a port ("[" and "]" are not: a name
# before them is one nginx's wildcard names match; an IPv6 literal takes the regex path)
_PLAIN_HOST = b"".join(bytes(range(a, b)) for a, b in ((0x30, 0x3B), (0x41, 0x5B), (0x61, 0x7B))) + b".-_"


def _name_start(raw: bytes) -> str | None:
    """The hostname a Host starts with when other bytes follow it ("evil.example\\",
    "evil.example;", "evil.example x"): nginx serves its default vhost for those and Apache
    and Go refuse them, but nginx's wildcard and regex names match them (`evil.*`,
    `~^evil\\.example`): read against the attacker (docs/rules.md, HTTP names)."""
    if not raw.translate(None, _PLAIN_HOST):
        return None                            # the common case, without a regex call
    m = _NAME_START.match(raw)
    if m is None:
        return None
    rest = raw[m.end():].rstrip(b" \t")
    if not rest or rest[:1] == b":" or rest[0] >= 0x80:
        # the whole name, or a port: the readings above; a byte past ASCII continues the
        # label ("bücher.example" is no name "b", nor "evil.exampleü" evil.example)
        return None
    return normalize_host(m.group(1))


def _authority(uri: bytes) -> bytes | None:
    """The authority of an absolute-form URI ("http://user@a.example:80/x"), else None.
    Any scheme counts: nginx and Go route "a+b://evil.example/" by its authority."""
    m = SCHEME.match(uri)
    if m is None or not uri.startswith(b"//", m.end()):
        return None
    rest = uri[m.end() + 2:]
    for stop in (b"/", b"?", b"#"):
        i = rest.find(stop)
        if i >= 0:
            rest = rest[:i]
    return rest.rpartition(b"@")[2]


# A header line Python's header parser (email.feedparser's headerRE) reads as one: at a
# line that is not, it ends the header block (what follows is body to it).
_PLAIN_HEADER = re.compile(rb"[\x21-\x39\x3b-\x7e]+:[^\r]*\Z")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,15})(?:[ \t]*;[^\r\n]*)?\r?\Z")
_REQUEST_LINE = ("line",)


class _Request:
    """The request whose header block is being read."""
    __slots__ = ("method", "uri", "protocol", "hosts", "agent", "agents", "framing", "last", "bytes", "odd", "conn",
                 "plain", "early")

    def __init__(self, method, uri, protocol):
        self.method, self.uri, self.protocol = method, uri, protocol
        self.hosts = []            # raw Host readings, in order
        self.agent = None
        self.agents = []           # raw User-Agent readings: each line, and a folded one's two
        self.framing = []          # (name, value) of Content-Length / Transfer-Encoding lines
        self.last = None           # name of the last header line (obs-fold continues it)
        self.bytes = 0             # header block bytes so far
        self.odd = False           # a framing header a server could read two ways
        self.conn = []             # Connection header values as sent (a folded one adds b"")
        self.plain = True          # every header line is a plain "name: value" one
        self.early = False         # judged at its line end already (HTTP/0.9)


class RequestReader:
    """One connection's requests, fed the stream's readable bytes; consumes what it read.

    feed(data, full) -> (consumed, requests finished, status): status None while more may
    come, "done" when no more requests will be read (not HTTP, or the connection's bytes
    stopped being requests), CAP when a limit is hit with a line or block still open,
    "http_framing" when the next request's start is ambiguous. `full`: the stream holds
    no more bytes until some are consumed."""

    __slots__ = ("phase", "req", "left", "skip_line", "count", "closing", "alt", "alt_buf", "after_body", "nested",
                 "bodies", "body_tx", "grown", "skips")

    def __init__(self, bodies=None):
        self.phase = "line"        # line | headers | body | chunk_size | chunk_data | chunk_end | trailers
        self.req = None
        self.left = 0              # body / chunk bytes still to skip
        self.skip_line = False     # inside an over-long header line that names nothing we need
                                   # ("cr": what was skipped of it ended with a CR)
        self.count = 0             # requests read so far
        self.closing = False       # the last request asked the server to close after it
        self.alt = None            # the body read as requests (a server that ignores the body)
        self.alt_buf = None
        self.after_body = False    # that reading was mid-request when the body ended
        self.nested = False        # this is such a reading: it reads no body two ways again
        self.bodies = bodies       # file_data: (body.Limits, body.FlowBudget) when request bodies are read
        self.body_tx = None        # the RequestSide whose body is being read
        self.grown = []            # request sides whose body changed (the caller takes them)
        self.skips = None          # the last feed's body bytes passed over unread: [(offset, length)]

    def feed(self, data, full):
        off, n = 0, len(data)
        done = []
        status = None
        skips = None
        while off < n:
            if self.phase == "method":
                off, status = self._long_method(data, off, n)
                break
            if self.closing and self.phase == "line":
                status = "done"                # the server closes after that request: reads no more
                break
            if self.phase == "body" or self.phase == "chunk_data":
                take = min(self.left, n - off)
                if self.body_tx is not None:
                    self._body_bytes(data[off:off + take])
                if self.alt is not None:
                    status = self._alt_feed(data[off:off + take], done)
                elif take:
                    # bytes no name or framing rests on (a copy of them need not match: a
                    # retransmission after a loss; stream.py's read spans)
                    if skips is None:
                        skips = []
                    skips.append((off, take))
                off += take
                self.left -= take
                if status is not None or self.left:
                    break
                if self.phase == "body":
                    self.phase = "line"
                    self._body_end()
                    self._alt_end(done)
                else:
                    self.phase = "chunk_end"
                continue
            if self.phase == "line":
                # blank lines before a request are skipped (_line): all of a run in one step,
                # or a body of newlines costs a Python call per byte (70x a body of text)
                m = _BLANK_LINES.match(data, off)
                if m is not None:
                    off = m.end()
                    continue
            eol = data.find(b"\n", off)
            if eol < 0:
                status = self._long_line(data, off, n, full)
                if status == "skip":
                    status = None
                    off = n
                break
            line = bytes(data[off:eol])
            if line.endswith(b"\r"):
                line = line[:-1]
            size = eol + 1 - off
            off = eol + 1
            if self.skip_line:
                if b"\r" in line or (self.skip_line == "cr" and size > 1):
                    status = CAP               # a bare CR in it: see _skip
                    break
                self.skip_line = False
                continue
            status = self._line(line, size, done)
            if status is not None:
                break
        self.skips = skips
        return off, done, status

    def _alt_feed(self, chunk, done):
        """A server that ignores this request's body (Python's http.server does, for a GET
        with Content-Length) reads the body as the next requests: read it that way too."""
        buf = self.alt_buf
        buf += chunk
        used, reqs, status = self.alt.feed(buf, False)
        del buf[:used]
        done.extend(reqs)
        if status is None and len(buf) > ALT_HOLD:
            # a line longer than we hold: inside a request (Python's http.server reads lines up
            # to 64 KiB), that reading cannot be followed; anything else is no request at all
            if self.alt.req is not None or _METHOD_SP.match(buf):
                status = "http_framing"
            else:
                status = "done"
        if status is not None:
            self.alt = self.alt_buf = None
            return "http_framing" if status == "http_framing" else None
        return None

    def _alt_end(self, done):
        """The body ended: a request the other reading still has open names its hosts so far
        (its block runs on into what follows; that reading continues there)."""
        alt = self.alt
        if alt is not None and alt.req is not None:
            done.append(alt._finish(alt.req))
        self.after_body = alt is not None and (alt.req is not None or bool(self.alt_buf))
        self.alt = self.alt_buf = None

    def _long_line(self, data, off, n, full):
        """No end of line in the bytes held. While the stream can bring more, wait; when it
        cannot (the window is full), a header line that names nothing we need is skipped,
        anything else is a cap hit (a server with longer lines may read it)."""
        if self.skip_line:
            if self.req is not None:
                self.req.bytes += n - off
                if self.req.bytes > MAX_HEADER_BLOCK:
                    return CAP
            return self._skip(data, off, n)
        if not full or off:
            # (a window full behind bytes read already: consuming them makes room for the line)
            if self.phase == "line" and self.req is None and _METHOD_SP.match(data, off) is None \
                    and not _METHOD_PREFIX.match(data, off) and data[off] not in b"\r\n" + _WS:
                return "done"                  # not a request line: a server would answer 400 and close
            return None
        if self.phase == "line" and self.req is None and _METHOD_PREFIX.match(data, off) is not None:
            # a window of token characters: a method longer than it (Go reads one) or a raw
            # stream of letters; count it to its end, which tells which
            self.phase = "method"
            self.left = 0
            return self._long_method(data, _SPACES.match(data, off).end(), n)[1] or "skip"
        if self.phase == "headers" and data[off] not in b" \t":
            name, sep, _ = bytes(data[off:n]).partition(b":")
            if sep and name.strip().lower() not in (b"host",) + FRAMING:
                self.skip_line = True
                self.req.bytes += n - off
                return CAP if self.req.bytes > MAX_HEADER_BLOCK else self._skip(data, off, n)
        return CAP

    def _long_method(self, data, off, n):
        """Inside a method token longer than the window (self.left: its bytes so far):
        (consumed up to, status). Its space makes the request line one longer than the
        window: a cap hit (names unknown). Any other byte, or a token run past what Go
        reads, is no request: a raw stream of letters, let go ("done")."""
        end = _TOKEN_RUN.match(data, off).end()
        self.left += end - off
        if self.left > LONGEST_METHOD:
            return end, "done"
        if end == n:
            return end, None
        return end, CAP if data[end] in _WS else "done"

    def _skip(self, data, off, n):
        """Pass over a piece of a long header line. A bare CR in it is a line end to Python's
        http.server (its header parser splits on CR too: "X-Pad: <9 KB>\\rHost: evil" gave it
        a Host), and the pieces cannot be read past the window: a cap hit."""
        chunk = data[off:n]
        if b"\r" in chunk[:-1] or (self.skip_line == "cr" and chunk):
            return CAP
        self.skip_line = "cr" if chunk[-1:] == b"\r" else True
        return "skip"

    def _line(self, line, size, done):
        phase = self.phase
        if phase == "line":
            parts = line.translate(_TO_SP).split()
            if not parts:
                return None                    # RFC 9112 2.2: empty lines before a request
            if len(parts) < 2 or not _METHOD.match(parts[0]):
                # after a body another reading was inside a request: where this one starts is
                # read two ways
                return "http_framing" if self.after_body else "done"
            self.after_body = False
            method = parts[0]
            if len(parts) >= 3 and parts[-1].startswith(b"HTTP/"):
                protocol, uri = parts[-1], b" ".join(parts[1:-1])
            else:
                protocol, uri = b"", b" ".join(parts[1:])
            if method not in METHODS and not protocol:
                return "http_framing" if self.after_body else "done"   # "USER x": FTP/SMTP, not HTTP/0.9
            if method == b"PRI" and protocol == b"HTTP/2.0":
                return "h2c"                   # HTTP/2 follows (prior knowledge, or after Upgrade: h2c): its
                                               # :authority is in HPACK frames we do not read
            self.req = _Request(method, uri, protocol)
            self.req.bytes = size
            self.phase = "headers"
            if not protocol and method == b"GET" and not self.nested:
                return self._http09(done)
            return None
        if phase == "headers":
            req = self.req
            req.bytes += size
            if req.bytes > MAX_HEADER_BLOCK:
                return CAP
            if line:
                self._header(req, line)
                if len(req.hosts) + len(req.framing) + len(req.agents) > MAX_READINGS:
                    return CAP
                return None
            tx = self._finish(req)
            if not req.early or req.hosts:
                done.append(tx)                # (an HTTP/0.9 request: Python's reading adds Host lines)
            self.req = None
            status = self._body(req)
            if self.bodies is not None and status is None and self.phase in ("body", "chunk_size"):
                self._body_start(tx)
            return status
        if phase == "chunk_size":
            m = _CHUNK_SIZE.match(line)
            if m is None:
                return "http_framing"
            self.left = int(m.group(1), 16)
            self.phase = "chunk_data" if self.left else "trailers"
            return None
        if phase == "chunk_end":
            if line:
                return "http_framing"          # chunk data longer than its size said
            self.phase = "chunk_size"
            return None
        if phase == "trailers":
            if not line:
                self.phase = "line"
                self._body_end()
            return None
        return None

    def _http09(self, done):
        """A GET line without a version is an HTTP/0.9 request: nginx and Apache act on it at
        its line end, with no header block (the absolute-form authority names the host;
        without one they serve their default server, a name the appliance cannot know),
        while Python's http.server reads a header block first. Judge it now; the block, if
        one comes, is read on as before and its Host lines are another reading."""
        req = self.req
        if not _authority(req.uri):
            return "http09"
        done.append(self._finish(req))
        req.early = True
        return None

    # -- file_data on requests: the body as the server reads it, as sent (servers rarely
    # undo a request's Content-Encoding, so it is not decoded) --------------------------

    def _body_start(self, tx):
        limits, budget = self.bodies
        side = tx.request_body = RequestSide(tx, body.Body((), limits, budget))
        self.body_tx = side
        self.grown.append(side)

    def _body_bytes(self, chunk):
        side = self.body_tx
        if side.body.feed(chunk) and side not in self.grown:
            self.grown.append(side)

    def _body_end(self):
        side, self.body_tx = self.body_tx, None
        if side is not None and not side.body.complete:
            side.body.end()
            if side not in self.grown:
                self.grown.append(side)

    def _header(self, req, line):
        if COMPILED and type(line) is bytes and _request_header(req, line):
            return                             # a plain line, read in one C pass
        if req.plain and not _PLAIN_HEADER.match(line):
            req.plain = False
        if b"\r" in line:
            # A bare CR: RFC 9112 2.2 has it rejected or read as SP; a server that ends the
            # line there reads each piece as a line. Every reading counts.
            pieces = line.split(b"\r")
            self._header(req, line.replace(b"\r", b" "))
            for i, piece in enumerate(pieces):
                name, sep, value = piece.partition(b":")
                name = name.strip(_WS).lower() if i else req.last
                if i and not sep:
                    continue
                if name == b"host":
                    req.hosts.append(value if i else piece.partition(b":")[2])
                elif name in FRAMING:
                    req.odd = True
            return
        if line[:1] in (b" ", b"\t"):
            # obs-fold (RFC 9112 5.2): a server rejects it or joins it to the previous line with
            # SP; a lax one reads it as a line of its own. Every reading counts.
            cont = line.strip(b" \t")
            if req.last == b"host":
                req.hosts.append(req.hosts[-1] + b" " + cont if req.hosts else cont)
                req.hosts.append(cont)
            elif req.last in FRAMING:
                req.odd = True
            elif req.last == b"connection":
                req.conn.append(b"")           # a folded Connection is no plain "close"
            elif req.last == b"user-agent" and req.agents:
                req.agents += [req.agents[-1] + b" " + cont, cont]
            name, sep, value = cont.partition(b":")
            if sep and name.strip().lower() == b"host":
                req.hosts.append(value)
            elif sep and name.strip().lower() in FRAMING:
                req.odd = True
            return
        name, sep, value = line.partition(b":")
        if not sep:
            req.last = None
            return
        bare = name.lower()
        name = bare.strip(b" \t")
        req.last = name
        if name == b"connection":
            req.conn.append(value.lstrip(b" \t").lower())   # trailing blanks count (Python's do)
            return
        value = value.strip(b" \t")
        if name == b"host":
            req.hosts.append(value)            # duplicates too: servers differ on which wins
        elif name == b"user-agent":
            if req.agent is None:
                req.agent = escape_label(value)
            req.agents.append(value)           # duplicates too: the first (nginx), the last, all joined (Apache)
        elif name in FRAMING:
            if bare != name:
                req.odd = True                 # "Content-Length :": rejected by some, read by others
            req.framing.append((name, value))

    def _finish(self, req):
        """The finished header block as an HttpRequest with every reading of its host."""
        readings = []
        # An absolute-form target names the host, whatever the Host header says: origin
        # servers must ignore Host then (RFC 9112 3.2.2) and proxies route by it; a lax
        # server reads the Host header instead, so both are readings.
        auth = _authority(req.uri) if req.method != b"CONNECT" else req.uri
        for raw in ([auth] if auth else []) + req.hosts:
            for h in (normalize_host(raw), _before_colon(raw), _name_start(raw)):
                if h and h not in readings:
                    readings.append(h)
        self.count += 1
        self.closing = _closes(req)
        agents = req.agents            # none or one (the usual): no duplicates and no joined reading
        if len(agents) > 1:
            agents = list(dict.fromkeys(agents + [b", ".join(agents)]))
        return HttpRequest(escape_label(req.method), escape_label(req.uri), escape_label(req.protocol),
                           readings[0] if readings else None, req.agent, readings,
                           [escape_label(a) for a in agents])

    def _body(self, req):
        """Where the next request starts (RFC 9112 6.3), or "http_framing" when a server
        could read it two ways."""
        lengths = [v for k, v in req.framing if k == b"content-length"]
        codings = [v for k, v in req.framing if k == b"transfer-encoding"]
        if req.odd or (lengths and codings):
            return "http_framing"              # request smuggling's classic forms
        if codings:
            chain = [c.strip(b" \t").lower() for c in b",".join(codings).split(b",")]
            chain = [c for c in chain if c]
            if not chain or chain[-1] != b"chunked" or chain.count(b"chunked") > 1 \
                    or req.protocol == b"HTTP/1.0":
                return "http_framing"          # a server answers 400 and closes, or reads on somehow
            self.phase = "chunk_size"
            return None
        if lengths:
            values = {v for v in b",".join(lengths).split(b",")}
            values = {v.strip(b" \t") for v in values}
            if len(values) != 1 or not _DIGITS.match(next(iter(values))):
                return "http_framing"
            self.left = int(next(iter(values)))
            self.phase = "body" if self.left else "line"
            if self.left and not self.nested:
                self.alt = RequestReader()
                self.alt.nested = True
                self.alt_buf = bytearray()
            return None
        self.phase = "line"                    # a request without either has no body
        return None


class RequestSide:
    """A request as file_data sees it on the client's packets: its own buffers (uri,
    host, ...), its body in place of the response's."""
    __slots__ = ("req", "body", "body_fired")

    def __init__(self, req, b):
        self.req, self.body, self.body_fired = req, b, set()

    def __getattr__(self, name):
        return getattr(self.req, name)


def _closes(req):
    """Whether every server closes after this request, so no later one is read (RFC 9112
    9.3, 9.6). Servers read Connection differently: Python's http.server closes only when
    its first Connection header is exactly "close" ("close, x", "close " or a folded one
    keep it open), nginx keeps an HTTP/1.0 connection when any Connection header contains
    "keep-alive"; and Python's header parser stops at a line that is no plain "name:
    value" one (a bare CR even makes an empty line there), so what follows is not a header
    to it. So only the forms all read alike end the reading: in a block of plain lines, one
    header saying just "close", or HTTP/1.0 without any."""
    if not req.plain:
        return False                           # Python may not have read the Connection line
    if req.conn == [b"close"]:
        return True
    return req.protocol == b"HTTP/1.0" and not req.conn


def parse_requests(data: bytes) -> tuple[list, bool]:
    """Every request readable from the start of `data` (one look, no stream), and whether
    more may come."""
    try:
        reader = RequestReader()
        used, reqs, status = reader.feed(data, False)
        return reqs, status is None and (reader.req is not None or (reader.phase == "line" and used < len(data)))
    except Exception:  # defensive: the datapath never sees a parser exception
        return [], False


# -- responses (the http log and a transaction's status; no name is read from them) -----

_STATUS_LINE = re.compile(rb"(HTTP/[0-9]\.[0-9])[ \t]+([0-9]{3})(?:[ \t]|\Z)")
MAX_RESPONSE_HEADERS = 65536   # a response header block past this: the reading stops


class ResponseReader:
    """The server's responses in order, each matched to the oldest request still waiting
    (keep-alive and pipelining: HTTP/1.1 answers in request order, RFC 9112 9.3.2). Reads
    the status line and the headers it logs, then frames the body as a client does (RFC
    9112 6.3): none for HEAD, 1xx, 204 and 304; chunked; Content-Length; else until the
    connection closes. An interim 1xx (100 Continue) answers no request; a 101 switches
    protocols, so the reading ends after it. `length` counts the body's bytes as they came
    (chunk size lines and the CRLF after each chunk's data included, trailers not), as
    Suricata's `length` (libhtp's response_message_len: before decompression, not the
    Content-Length header).

    feed(data, full, waiting) -> (consumed, requests answered, status): `waiting` is the
    list of requests still waiting (the reader takes the first one's answer); status None
    while more may come, "done" when the reading stops (not a response, a switched
    protocol, framing it cannot follow, a line longer than the window)."""

    __slots__ = ("phase", "left", "req", "framing", "ctype", "location", "skip_line", "block",
                 "bodies", "heads", "grown", "found", "last_body", "blind")

    def __init__(self, bodies=None):
        self.phase = "line"        # line | headers | body | close | chunk_size | chunk_data | chunk_end | trailers
        self.left = 0
        self.req = None            # the request being answered (None: an interim response)
        self.framing = None        # ("length", n) | ("chunked",) | None, from the header block
        self.ctype = None
        self.location = None
        self.skip_line = False     # inside a header line longer than the window
        self.block = 0             # header block bytes so far
        # file_data: (body.Limits, body.FlowBudget) when bodies are read for rules, else None
        self.bodies = bodies
        self.heads = None          # the framing/coding header lines of this response (body.framing)
        self.grown = []            # this feed: transactions whose inspected body changed
        self.found = []            # this feed: anomalies of the body reading
        self.last_body = None      # the transaction whose body was read last
        self.blind = False         # a body read to the close as clients read its length differently:
                                   # the answers a client reads inside it are not read here

    def feed(self, data, full, waiting):
        off, n = 0, len(data)
        done = []
        self.grown, self.found = [], []
        while off < n:
            phase = self.phase
            if phase in ("body", "chunk_data", "close"):
                take = n - off if phase == "close" else min(self.left, n - off)
                if self.req.body is not None:
                    self._body_bytes(data[off:off + take])
                off += take
                self.req.length += take
                if phase == "close":
                    break
                self.left -= take
                if self.left:
                    break
                if phase == "body":
                    done.append(self._end())
                else:
                    self.phase = "chunk_end"
                continue
            eol = data.find(b"\n", off)
            if eol < 0:
                if full and not off and phase == "headers":
                    self.skip_line = True          # a header line we do not log (the window holds ours)
                    self.block += n - off
                    off = n
                    if self.block > MAX_RESPONSE_HEADERS:
                        return off, done, "done"
                    break
                if full and not off:
                    return off, done, "done"       # a status or chunk line longer than the window
                break
            line = bytes(data[off:eol]).rstrip(b"\r")
            size = eol + 1 - off
            off = eol + 1
            if self.skip_line:
                self.skip_line = False
                continue
            status = self._line(line, size, waiting, done)
            if status is not None:
                if self.req is not None and self.req.body is not None and status == "done":
                    self._body_cannot("http.body_framing")   # chunk syntax no client reads alike
                return off, done, status
        return off, done, None

    def _line(self, line, size, waiting, done):
        phase = self.phase
        if phase == "line":
            if not line:
                return None                        # a stray CRLF between responses
            m = _STATUS_LINE.match(line)
            if m is None:
                return "done"
            code = int(m.group(2))
            self.framing, self.ctype, self.location, self.block = None, None, None, len(line)
            self.heads = []
            self.req = None
            if not 100 <= code < 200 or code == 101:
                if not waiting:
                    return "done"                  # an answer to no request we read
                self.req = waiting.pop(0)
                self.req.status = code
                self.req.response_protocol = escape_label(m.group(1))
                self.req.length = 0
            self.phase = "headers"
            return None
        if phase == "headers":
            self.block += len(line)
            if self.block > MAX_RESPONSE_HEADERS:
                return "done"
            if line:
                if COMPILED and type(line) is bytes and _response_header(self, line):
                    return None                # a plain line, read in one C pass
                body.note_header(self.heads, line)
                name, sep, value = line.partition(b":")
                name = name.strip(b" \t").lower()
                value = value.strip(b" \t")
                if name == b"content-type" and self.ctype is None:
                    self.ctype = escape_label(value.split(b";", 1)[0])   # Suricata cuts at ';'
                elif name == b"location" and self.location is None:
                    self.location = escape_label(value)
                return None
            return self._body(done)
        if phase == "chunk_size":
            m = _CHUNK_SIZE.match(line) if self.bodies is None else body.chunk_size(line)
            if m is None:
                return "done"
            self.req.length += size                # libhtp counts the chunk framing too
            self.left = int(m.group(1), 16) if self.bodies is None else m
            self.phase = "chunk_data" if self.left else "trailers"
            return None
        if phase == "chunk_end":
            if line:
                return "done"
            self.req.length += size
            self.phase = "chunk_size"
            return None
        if phase == "trailers":
            if not line:
                done.append(self._end())
            return None
        return None

    def _body(self, done):
        """The header block ended: where the body ends (RFC 9112 6.3)."""
        req = self.req
        if req is None:                            # an interim response: the real one follows
            self.phase = "line"
            return None
        req.content_type, req.redirect = self.ctype, self.location
        code = req.status
        if code == 101:
            done.append(self._end())
            return "done"                          # another protocol follows
        # (a CONNECT's 2xx opens a tunnel: what follows is read on, as the request side does; TLS
        # in it ends the reading at its first byte, plain HTTP in it is answered in order)
        if req.method == "HEAD" or code in (204, 304):
            done.append(self._end())
            return None
        # the framing as clients read it, bodies inspected or not: the next status is where
        # a client reads it (a reader of its own would take one of two lengths)
        if self.bodies is not None:
            self.framing = self._body_start(req)
        else:
            self.framing = _one_length(self.heads) if COMPILED else None
            if self.framing is None:
                self.framing = body.framing(self.heads)[0]
            if self.framing[0] == "ambiguous":
                self.blind = True          # read to the close; the answers after it: unknown
                self.framing = ("close",)
        framing = self.framing
        if framing is None or framing[0] == "close":
            self.phase = "close"                   # read until the connection closes
        elif framing[0] == "chunked":
            self.phase = "chunk_size"
        else:
            self.left = framing[1]
            self.phase = "body"
            if not self.left:
                done.append(self._end())
        return None

    def _end(self):
        req, self.req = self.req, None
        self.phase = "line"
        if req is not None and req.body is not None:
            self.body_end(req)
        return req

    # -- file_data: the body as a client reads it (body.py) ----------------------

    def _body_start(self, req):
        """The framing a client reads (body.framing), and the body that rules inspect."""
        limits, budget = self.bodies
        framing, codings, odd = body.framing(self.heads)
        req.body = body.Body(codings, limits, budget)
        self.last_body = req
        req.body_fired = set()
        for name in odd:
            self.found.append(name)
        if "http.body_te_coding" in odd:
            req.body.raw_too = True                # browsers ignore the transfer coding: as sent
        if framing[0] == "ambiguous":
            # clients read the length two ways: read on until the close (every byte any of
            # them may take as this body is inspected), and say no rule saw the body for sure
            self._body_cannot("http.body_framing")
            self.blind = True
            return ("close",)
        self.grown.append(req)
        return framing

    def _body_bytes(self, chunk):
        req = self.req
        if req.body.feed(chunk) and req not in self.grown:
            self.grown.append(req)
        self._body_anomalies(req.body)

    def _body_cannot(self, reason):
        req = self.req
        req.body.mark(reason)
        self._body_anomalies(req.body)
        if req not in self.grown:
            self.grown.append(req)

    def _body_anomalies(self, b):
        if b.anomalies:
            self.found += b.anomalies
            b.anomalies = []

    def body_end(self, req):
        """The body ended (its framing, the connection's end, or the reading stopped)."""
        b = req.body
        if not b.complete:
            b.end()
            self._body_anomalies(b)
            if req not in self.grown:
                self.grown.append(req)



# -- the compiled twin's header lines in one C pass (the code above is the reference) -------

def _name_is(b, start, end, low):
    """Compiled twin only: b[start:end] is `low` (lowercase ASCII) but for ASCII case, as
    the reference's bytes.lower() compares."""
    n = len(low)
    if end - start != n:
        return False
    i = 0
    while i < n:
        c = b[start + i]
        if 0x41 <= c <= 0x5A:
            c += 0x20
        if c != low[i]:
            return False
        i += 1
    return True


def _blanks_off(b, s, e):
    """Compiled twin only: the bounds of b[s:e] without its leading and trailing SP and TAB
    (as .strip(b" \\t")), a C pass over the buffer; a ctuple return makes no tuple."""
    while s < e and (b[s] == 0x20 or b[s] == 0x09):
        s += 1
    while e > s and (b[e - 1] == 0x20 or b[e - 1] == 0x09):
        e -= 1
    return s, e


def _request_header(req, line):
    """Compiled twin only: read a plain request header line as RequestReader._header does,
    in one pass over the bytes' buffer (no partition, lower or strip copies); False, having
    changed nothing, for a line the reference code must read: a CR in it, obs-fold (a
    leading SP/TAB), no ':', or a Connection or framing header."""
    b = line
    n = len(line)
    if n == 0 or b[0] == 0x20 or b[0] == 0x09:
        return False
    colon = -1
    plain = True                    # _PLAIN_HEADER: a name of \x21-\x7e but ':', then ':'
    i = 0
    while i < n:
        c = b[i]
        if c == 0x0D:
            return False
        if colon < 0:
            if c == 0x3A:
                colon = i
            elif c < 0x21 or c > 0x7E:
                plain = False
        i += 1
    if colon < 0:
        return False
    if colon == 0:
        plain = False
    s, e = _blanks_off(b, 0, colon)  # the name inside its blanks (SP and TAB, as strip(b" \t"))
    if _name_is(b, s, e, b"connection") or _name_is(b, s, e, b"content-length") \
            or _name_is(b, s, e, b"transfer-encoding"):
        return False
    vs, ve = _blanks_off(b, colon + 1, n)     # the value inside its blanks
    if not plain:
        req.plain = False
    if _name_is(b, s, e, b"host"):
        req.last = b"host"
        req.hosts.append(line[vs:ve])
    elif _name_is(b, s, e, b"user-agent"):
        req.last = b"user-agent"
        value = line[vs:ve]
        if req.agent is None:
            req.agent = escape_label(value)
        req.agents.append(value)
    else:
        req.last = line[s:e].lower()
    return True


def _response_header(reader, line):
    """Compiled twin only: read a response header line that is no framing or coding one as
    ResponseReader._line and body.note_header do, in one pass; False, having changed
    nothing, for a line the reference code must read (obs-fold, no ':', Content-Length,
    Transfer-Encoding, Content-Encoding)."""
    b = line
    n = len(line)
    if n == 0 or b[0] == 0x20 or b[0] == 0x09:
        return False
    colon = -1
    i = 0
    while i < n:
        if b[i] == 0x3A:
            colon = i
            break
        i += 1
    if colon < 0:
        return False
    s, e = _blanks_off(b, 0, colon)
    if _name_is(b, s, e, b"content-length") or _name_is(b, s, e, b"transfer-encoding") \
            or _name_is(b, s, e, b"content-encoding"):
        return False
    heads = reader.heads
    if heads and heads[-1][0] is not None:
        heads.append((None, b"", False))   # a line between: what folds after it is not ours
    vs, ve = _blanks_off(b, colon + 1, n)
    if _name_is(b, s, e, b"content-type"):
        if reader.ctype is None:
            reader.ctype = escape_label(line[vs:ve].split(b";", 1)[0])
    elif _name_is(b, s, e, b"location"):
        if reader.location is None:
            reader.location = escape_label(line[vs:ve])
    return True


def _one_length(heads):
    """Compiled twin only: body.framing(heads)[0] for the common heads (none, or one plain
    Content-Length of 1-18 digits), else None (body.framing reads them)."""
    one = None
    for h in heads:
        if h[0] is not None:
            if one is not None:
                return None
            one = h
    if one is None:
        return ("close",)
    if one[0] != b"content-length" or one[2]:
        return None
    v = one[1]
    if type(v) is not bytes:
        return None
    n = len(v)
    if n < 1 or n > 18:
        return None
    b = v
    i = 0
    while i < n:
        if b[i] < 0x30 or b[i] > 0x39:
            return None
        i += 1
    return ("length", int(v))


from ..compiled import use_compiled  # noqa: E402 -- last: the Cython build of this file, if built
use_compiled(globals())
