"""One flow's app layer: which protocol it speaks and its transactions so far.

The Inspector hands this stage the client's readable bytes (TCP, from the stream
stage) or each datagram (UDP); the stage detects the protocol, parses the next
transactions and answers with the app fields that got a new transaction on this
packet, plus anomaly names. Detection reads `flow.app.names`; events read the
transaction of the names a rule matched.
"""
from . import MORE, NOT, detect, dns, http, tls
from ..detect.keywords import APP_FIELDS as FIELDS   # the app fields rules can name; each is a protocol

MULTI_TX = ("dns", "http")          # protocols where a later transaction may bring new names
_DETECT_GIVE_UP = 64                # app bytes a flow must show before we stop naming its protocol


class Unknown(tuple):
    """The names of a transaction the appliance cannot read for sure (an ambiguous stream,
    a flow picked up mid-stream, a cap hit while a name was pending): any name at all.
    Detection reads it against the attacker (docs/rules.md, "When the appliance cannot
    know"). An empty tuple, so code that only lists names sees none."""
    __slots__ = ()

    def __repr__(self):
        return "UNKNOWN"


UNKNOWN = Unknown()


class AppState:
    """`names[field]`: names of the current transaction(s); None while a name may still
    show, [] when none will (another protocol, or the parser gave up), UNKNOWN when the
    appliance cannot know them."""

    __slots__ = ("proto", "names", "tx", "tx_count", "unknown")

    def __init__(self, proto):
        self.proto = proto           # "dns" | "tls" | "http" | "failed" | "unknown"
        self.names = {f: ([] if f != proto else None) for f in FIELDS}
        self.tx = None               # the latest transaction(s): DnsMessage, ClientHello, HttpRequest, or a list
        self.tx_count = 0            # transactions parsed so far (HTTP requests, DNS-over-TCP messages)
        self.unknown = None          # why the names can no longer be known (an exception reason), once they cannot

    @property
    def known(self) -> bool:
        return self.proto != "failed" and self.proto != "unknown"

    @property
    def multi_tx(self) -> bool:
        return self.proto in MULTI_TX

    def transaction(self, patterns=None):
        """The current transaction; of several (pipelined requests, DNS queries in one
        segment), the first one a pattern matches, else the last."""
        tx = self.tx
        if not isinstance(tx, list):
            return tx
        if patterns:
            for t in tx:
                names = [q.rrname for q in t.queries] if self.proto == "dns" else [t.host or ""]
                if any(p.matches(n) for p in patterns for n in names):
                    return t
        return tx[-1]


FAILED = AppState("failed")         # shared by every flow that can carry no name; never changed


def cannot_know(flow, reason):
    """From now on the flow's names are UNKNOWN: the fields of its protocol, or every
    field while the protocol itself is not known for sure (a stream that reads two ways
    may hide "GET" as well as a Host). Returns the fields that changed, for detection to
    look again; () when the flow was marked before."""
    app = flow.app
    if app is not None and app.unknown is not None:
        return ()
    proto = app.proto if app is not None and app.known and reason != "stream_ambiguous" else "unknown"
    new = AppState(proto)
    new.unknown = reason
    if app is not None:
        new.tx, new.tx_count = app.tx, app.tx_count
    changed = tuple(FIELDS) if proto == "unknown" else (proto,)
    for f in changed:
        new.names[f] = UNKNOWN
    flow.app = new
    return changed


def on_stream(flow, data, done, found):
    """New client bytes `data` (all of them so far; `done`: no more will be looked at).
    Returns the fields that got a new transaction."""
    app = flow.app
    if app is not None and app.unknown is not None:
        return ()                               # nothing read from here on can be trusted
    if app is None:
        guess = detect(data, flow.proto, flow.sport, flow.dport)
        if guess is None:
            if done or len(data) >= _DETECT_GIVE_UP:
                flow.app = FAILED
            return ()
        app = flow.app = AppState(guess)
    ap = app.proto
    if ap == "tls":
        return _tls(app, data, done, found)
    if ap == "http":
        return _http(app, data)
    if ap == "dns":
        return _dns_tcp(app, data, done)
    return ()


def on_server_bytes(flow, client_spoke):
    """DNS, TLS and HTTP clients speak first: a server that talks before its client has
    sent a byte is none of them, so stop waiting for a name."""
    if flow.app is None and not client_spoke:
        flow.app = FAILED


def on_datagram(flow, payload):
    """UDP: every datagram stands alone. A datagram that is not a DNS query says nothing
    about the next one, so DNS rules stay live for the whole flow. Queries (QR=0) count
    from either side: a "resolver" that sends first must not make the client's queries
    invisible."""
    if not payload or (flow.app is not None and flow.app.unknown is not None):
        return ()
    msg = dns.parse_message(payload)
    if msg is not None and not msg.response and msg.queries:
        app = flow.app
        if app is None or app.proto != "dns":
            app = flow.app = AppState("dns")
        _dns_queries(app, [msg])
        return ("dns",)
    if flow.app is None:
        flow.app = FAILED                       # this datagram names nothing
    return ()


def _tls(app, data, done, found):
    if app.names["tls"] is not None:
        return ()                               # one ClientHello per connection
    hello = tls.parse_client_hello(data)
    if hello is MORE:
        if done:
            app.names["tls"] = []
        return ()
    if hello is NOT:
        app.names["tls"] = []
        found.append("tls.invalid_client_hello")
        return ()
    app.names["tls"] = [hello.sni] if hello.sni else []
    app.tx = hello
    return ("tls",)


def _http(app, data):
    reqs, more = http.parse_requests(data)
    if len(reqs) <= app.tx_count:
        if app.names["http"] is None:
            if more:
                req = http.partial_request(data)
                if req is not None:             # the host is known before the block ends
                    app.names["http"] = [req.host]
                    app.tx = req
                    return ("http",)
            elif not reqs:
                app.names["http"] = []
        return ()
    new = reqs[app.tx_count:]                   # every request since the last look (pipelining)
    app.tx_count = len(reqs)
    app.names["http"] = [r.host for r in new if r.host]
    app.tx = new if len(new) > 1 else new[0]
    return ("http",)


def _dns_tcp(app, data, done):
    msgs, _ = dns.parse_tcp(data)
    msgs = msgs[app.tx_count:]
    app.tx_count += len(msgs)
    queries = [m for m in msgs if not m.response and m.queries]
    if not queries:
        if app.names["dns"] is None and done:
            app.names["dns"] = []
        return ()
    _dns_queries(app, queries)
    return ("dns",)


def _dns_queries(app, queries):
    app.names["dns"] = [q.rrname for m in queries for q in m.queries]
    app.tx = queries if len(queries) > 1 else queries[0]
