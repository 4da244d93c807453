"""One flow's app layer: which protocol it speaks and its transactions so far.

The Inspector hands this stage the client's readable bytes (TCP, from the stream
stage) or each datagram (UDP); the stage detects the protocol, parses the next
transactions and answers with the app fields that got a new transaction on this
packet, plus anomaly names. Detection reads `flow.app.names`; events read the
transaction of the names a rule matched.
"""
from . import CAP, DETECT_BYTES, DNS_PORTS, MORE, NOT, detect, dns, http, tls
from ..detect.keywords import APP_FIELDS as FIELDS   # the app fields rules can name; each is a protocol

_BLANKS = b"\r\n" + http._WS     # what Python's http.server strips before a request line
MAX_LEADING_BLANKS = 65536          # Python's http.server: the longest request line it reads
MULTI_TX = ("dns", "http")          # protocols where a later transaction may bring new names
_DETECT_GIVE_UP = 64                # app bytes a flow must show before we stop naming its protocol


class Unknown(tuple):
    """The names of a transaction the appliance cannot read for sure (an ambiguous stream,
    a flow picked up mid-stream, a cap hit while a name was pending): any name at all.
    Detection reads it against the attacker (docs/rules.md, "When the appliance cannot
    know"). A tuple of the names that were read before it became unknown (often none),
    so code that only lists names sees those."""
    __slots__ = ()

    def __repr__(self):
        return "UNKNOWN(%s)" % ", ".join(self) if self else "UNKNOWN"


UNKNOWN = Unknown()


class AppState:
    """`names[field]`: names of the current transaction(s); None while a name may still
    show, [] when none will (another protocol, or the parser gave up), an Unknown when the
    appliance cannot know them (holding the names it did read, if any)."""

    __slots__ = ("proto", "names", "tx", "tx_count", "unknown", "reader", "done", "server", "answered")

    def __init__(self, proto):
        self.proto = proto           # "dns" | "tls" | "http" | "failed" | "server_first" | "unknown"
        self.names = {f: ([] if f != proto else None) for f in FIELDS}
        self.tx = None               # the latest transaction(s): DnsMessage, ClientHello, HttpRequest, or a list
        self.tx_count = 0            # transactions parsed so far (HTTP requests, DNS-over-TCP messages)
        self.unknown = None          # why the names can no longer be known (an exception reason), once they cannot
        self.reader = None           # the protocol's stream reader (TCP), while it reads
        self.done = False            # no later transaction will be read (the server reads no more, or we cannot)
        self.server = None           # server.ServerSide: the answers read for the protocol logs (TCP)
        self.answered = ()           # HTTP: the transactions the server's latest packet answered

    @property
    def known(self) -> bool:
        return self.proto != "failed" and self.proto != "unknown" and self.proto != "server_first"

    @property
    def multi_tx(self) -> bool:
        """A later transaction may still bring new names (TLS: a second ClientHello, while
        the reader looks for one)."""
        return ((self.proto in MULTI_TX or self.reader is not None)
                and not self.done and self.unknown is None)

    def transaction(self, patterns=None):
        """The current transaction; of several (pipelined requests, DNS queries in one
        segment), the first one a pattern matches, else the last."""
        tx = self.tx
        if not isinstance(tx, list):
            return tx
        if patterns:
            for t in tx:
                names = [q.rrname for q in t.queries] if self.proto == "dns" else (t.hosts or [t.host or ""])
                if any(p.matches(n) for p in patterns for n in names):
                    return t
        return tx[-1]


FAILED = AppState("failed")         # shared by every flow that can carry no name; never changed
FAILED.done = True
# Shared by every TCP flow whose server sent a byte before its client's first: it names
# nothing now (rules judge it as FAILED), but the client's first bytes are still read (as a
# client-first flow's: on_stream), for that byte may be one the client's TCP never took (a
# spoof from outside: review s14b). Never changed.
SERVER_FIRST = AppState("server_first")
SERVER_FIRST.done = True


def cannot_know(flow, reason, wanted=None):
    """From now on the flow's names are UNKNOWN: the fields of its protocol, or every
    field while the protocol itself is not known for sure (a stream that reads two ways
    may hide "GET" as well as a Host). Names already read for the current transaction
    stay inside the Unknown (exception_policy "ignore" still judges them). `wanted`: the
    fields verdict rules need (None: any); nothing changes when none of them would.
    Returns the fields that changed, for detection to look again; () when the flow was
    marked before or no rule needs it."""
    app = flow.app
    if app is not None and app.unknown is not None:
        return ()
    proto = app.proto if app is not None and app.known and reason != "stream_ambiguous" else "unknown"
    changed = tuple(FIELDS) if proto == "unknown" else (proto,)
    if wanted is not None and not any(f in wanted for f in changed):
        return ()
    new = AppState(proto)
    new.unknown = reason
    new.done = True
    if app is not None:
        new.tx, new.tx_count, new.server, new.answered = app.tx, app.tx_count, app.server, app.answered
    for f in changed:
        old = app.names[f] if app is not None else None
        new.names[f] = Unknown(old) if old else UNKNOWN
    flow.app = new
    return changed


def on_stream(flow, stream, found, earlier=(), bodies=None):
    """New client bytes in `stream` (a ClientStream: its readable bytes from `base` on;
    the readers consume what they read). Returns (the fields that got a new transaction,
    the reason the names can no longer be known or None). `earlier`: the fields that got
    transactions from this same packet already (a segment longer than the window is read
    in several calls): the new ones add to those, so detection judges them all. `bodies`:
    request bodies are read for file_data rules (http.RequestReader)."""
    app = flow.app
    server_first = app is SERVER_FIRST
    if server_first:
        app = None                              # the client's first bytes: read as any client's
    elif app is not None and (app.unknown is not None or (app.done and not _body_open(app))):
        stream.consume(len(stream.data), True)  # nothing more to read here: hold no bytes (unread)
        return (), None
    data = stream.data
    if app is None:
        data = _skip_leading_blanks(flow, stream, data)
        if not data:
            return (), None
        if not stream.complete and len(data) >= _DETECT_GIVE_UP and http.method_arriving(data):
            # a long method token still arriving: nothing but its space changes the guess, so
            # it is not detected again on each segment (a byte at a time cost 5x a request
            # line's worst case: review s12)
            return (), None
        guess = detect(data, flow.proto, flow.sport, flow.dport)
        if guess == "dns" and _reads_as_request(data):
            # a TCP DNS server reads a first frame of any bytes and answers the next one, an
            # HTTP server on the same port reads a request line split before its end: the
            # same bytes read two ways (review s12: a split request passed a Host blocklist on
            # port 53 as DNS); real DNS starts with a binary length (a token byte: 16 KiB+)
            return (), "stream_ambiguous"
        if guess is None:
            if not stream.complete and (len(data) < _DETECT_GIVE_UP or http.method_arriving(data)):
                # too few bytes to tell, or a method token whose space has not come: its
                # request may name a Host (nginx reads an 8 KiB method, Go a 1 MiB one). The
                # flow stays pending (no final verdict, no offload) until the window is full
                return (), None
            if not http.request_line_open(data[:DETECT_BYTES]):
                flow.app = FAILED
                return (), None
            # a request line still open (a long target or method token, its end in a later
            # segment or past what detect() reads): the HTTP reader reads it to its end, and
            # a line longer than the window is a cap hit (names unknown), not a nameless flow
            guess = "http"
        app = flow.app = AppState(guess)
        if server_first:
            # no DNS, TLS or HTTP server speaks before its client: a byte the client's TCP
            # may never have taken (a spoof), or a server of the client's own; either way
            # the names are read and judged as any client's
            found.append("applayer.server_spoke_first")
    ap = app.proto
    before = (app.names[ap], app.tx) if ap in earlier else None
    if ap == "tls":
        got = _tls(app, stream, data, found)
    elif ap == "http":
        got = _http(app, stream, data, bodies)
    elif ap == "dns":
        got = _dns_tcp(app, stream, data, found)
    else:
        return (), None
    if before is not None and ap in got[0]:
        names, tx = before
        app.names[ap] = list(names or ()) + list(app.names[ap])
        app.tx = _listed(tx) + _listed(app.tx)
    if app.done:
        # the reading ended here: hold nothing more, so the rest of a segment the window
        # cut is fed (and let go) too, not counted as bytes lost to a reading
        stream.consume(len(stream.data), True)
    return got


def _listed(tx):
    return tx if isinstance(tx, list) else [tx] if tx is not None else []


def _reads_as_request(data):
    """Bytes a TCP DNS server would skip as a first frame that an HTTP server on its port
    reads as a request (line): past blanks, which nginx and Python's http.server skip before
    a request (review s13: `\r\n\r\n\r\n` then a request passed as DNS), a request line
    ended or still open, or nothing but blanks yet."""
    head = bytes(data[:DETECT_BYTES]).lstrip(_BLANKS)
    return not head or http.request_line_open(head) or http.looks_like(head)


def _skip_leading_blanks(flow, stream, data):
    """HTTP servers read past blanks before a request: nginx skips empty lines, Python's
    http.server any whitespace on the request line (up to its 64 KiB line). Consume them
    so detection sees the method however many there are, up to that line. DNS-over-TCP
    (whose length prefix may be such a byte) and TLS never start with one."""
    if flow.dport in DNS_PORTS:           # the server's port: a client picks its own
        return data
    lead = len(data) - len(data.lstrip(_BLANKS))
    if lead:
        stream.consume(lead)
        if stream.base > MAX_LEADING_BLANKS:
            flow.app = FAILED
            return b""
        data = data[lead:]
    return data


def on_server_bytes(flow, client_spoke):
    """DNS, TLS and HTTP clients speak first, and their servers answer a whole first
    transaction: a server that talks before its client sent a byte is none of them (the
    flow names nothing for now: SERVER_FIRST), or, once the client's first transaction has
    begun, a server doing something we do not follow (its name can no longer be known).
    Returns that reason or None. A client whose first bytes were too few to tell its
    protocol keeps its chance."""
    app = flow.app
    if app is None:
        if not client_spoke:
            # not FAILED: the appliance does not check that the client's TCP takes the
            # byte, so one spoofed from outside made a later request's name go unseen
            # (review s14b). The client's first bytes are still read (on_stream)
            flow.app = SERVER_FIRST
        return None
    if app.reader is not None and getattr(app.reader, "phase", None) == "method":
        # a token run past the window, its space not come: no HTTP server answers before
        # its request, so a reply says a raw stream: let go, names none (review s12: letters
        # or hex past 8 KiB were dropped when their server replied; a server that speaks
        # first and then reads a request is the attacker's own, which needs no name trick)
        flow.app = FAILED
        return None
    if app.known and app.unknown is None and app.names[app.proto] is None and not app.tx_count:
        # (a whole first message that named nothing, a DNS cookie probe, is answered: no sign)
        app.names[app.proto] = []
        app.done = True
        return "server_first"
    return None


def on_datagram(flow, payload, responses=None, found=None):
    """UDP: every datagram stands alone. A datagram that is not a DNS query says nothing
    about the next one, so DNS rules stay live for the whole flow. Queries (QR=0) count
    from either side: a "resolver" that sends first must not make the client's queries
    invisible. Returns (the fields that got a new transaction, the reason the names can no
    longer be known or None). `responses`: a list that gets the DNS responses read (for
    the dns log; no rule reads them), None when the log is off. `found`: a list that gets
    the anomaly names."""
    if not payload or (flow.app is not None and flow.app.unknown is not None):
        return (), None
    msg = dns.parse_message(payload)
    if msg is CAP:
        return (), "cap"                        # a name a resolver reads, past our work bound
    if msg is not None and not msg.response and msg.queries:
        app = flow.app
        if app is None or app.proto != "dns":
            app = flow.app = AppState("dns")
        _dns_queries(app, [msg], found)
        return ("dns",), None
    if msg and msg.response and responses is not None:
        responses.append(msg)                   # (its names checked if the log takes it)
    if flow.app is None:
        flow.app = FAILED                       # this datagram names nothing
    return (), None


def _give_up(app, reason):
    """The reader stops: no name from here on (the Inspector marks them UNKNOWN when a
    verdict rule needs them)."""
    if app.names[app.proto] is None:
        app.names[app.proto] = []
    app.done = True
    app.reader = None
    return reason


def _tls(app, stream, data, found):
    reader = app.reader
    if reader is None:
        reader = app.reader = tls.HelloReader()
    second = reader.second
    used, hello = reader.feed(data)
    stream.consume(used)
    if hello is MORE:
        return (), None
    if second:                                  # after a HelloRetryRequest: the hello the server acts on
        if hello is CAP:                        # past what we follow: the next hello could be anything
            return (), _give_up(app, "cap")
        app.reader = None
        app.done = True
        if hello is NOT:
            return (), None
        app.names["tls"] = [hello.sni] if hello.sni else []   # the first one passed already
        app.tx = hello
        return ("tls",), None
    if hello is CAP:
        return (), _give_up(app, "cap")
    if hello is NOT:
        app.reader = None
        app.done = True
        app.names["tls"] = []
        found.append("tls.invalid_client_hello")
        return (), None
    app.names["tls"] = [hello.sni] if hello.sni else []
    app.tx = hello
    return ("tls",), None


def _read(app, stream, data, make):
    """Feed the flow's reader (made on first use) and let the stream go of what it used."""
    reader = app.reader
    if reader is None:
        reader = app.reader = make()
    used, items, status = reader.feed(data, stream.complete)
    stream.consume(used, getattr(reader, "skips", None) or ())
    return reader, items, status


def _body_open(app):
    """A request body is still being read after the last request (Connection: close)."""
    reader = app.reader
    return reader is not None and getattr(reader, "body_tx", None) is not None


def _http(app, stream, data, bodies=None):
    reader, reqs, status = _read(app, stream, data, lambda: http.RequestReader(bodies))
    new = ()
    if reqs:
        app.tx_count += len(reqs)
        app.names["http"] = [h for r in reqs for h in r.hosts]
        app.tx = reqs if len(reqs) > 1 else reqs[0]
        new = ("http",)
    if status is None:
        if reader.closing:
            app.done = True                     # the server closes after this request
        return new, None
    if status == "done":
        _give_up(app, None)
        return new, None
    return new, _give_up(app, "cap" if status is CAP else status)


def _dns_tcp(app, stream, data, found):
    reader, msgs, status = _read(app, stream, data, dns.TcpReader)
    app.tx_count += len(msgs)
    queries = [m for m in msgs if not m.response and m.queries]
    new = ()
    if queries:
        _dns_queries(app, queries, found)
        new = ("dns",)
    if status is CAP:
        return new, _give_up(app, "cap")
    return new, None


def _dns_queries(app, queries, found):
    names = app.names["dns"] = [q.rrname for m in queries for q in m.queries]
    # A label holding a '.' (dns.py writes it "\."): the rules read the labels as they are,
    # as a server does; a resolver or client that flattens a name to text (a stub's log, a
    # forwarder's cache key) may read other labels, which the appliance cannot know. (A
    # backslash first: one memchr; the two-character search alone crawls through 512 dots.)
    if found is not None and _dot_in_label(names):
        found.append("dns.dot_in_label")
    app.tx = queries if len(queries) > 1 else queries[0]


def _dot_in_label(names):
    return any("\\" in n and "\\." in n for n in names)


def dns_responses_logged(msgs, found):
    """Responses the dns log writes (UDP here, TCP from the server's side): a name with a
    '.' inside a label (question, answer owner or a CNAME/PTR/NS target, logged "\\.") is the
    same anomaly as in a query: a stub or log that flattens it reads other labels. Rules
    read no response names, so nothing else depends on it."""
    if found is None:
        return
    for m in msgs:
        # one text of every name: a '\\' in a name's text only starts "\\." or "\\xNN", and the
        # NUL between names is escaped inside them, so "\\." spans no two names
        text = "\0".join([q.rrname for q in m.queries] + [a.rrname for a in m.answers]
                          + [a.rdata for a in m.answers if a.rdata])
        if "\\" in text and "\\." in text:
            found.append("dns.dot_in_label")
            return


from ..compiled import use_compiled  # noqa: E402 -- last: the Cython build of this file, if built
use_compiled(globals())
