# cython: nonecheck=True
"""The server's side of a TCP flow, read for the protocol logs: DNS answers over TCP, the
TLS ServerHello (ja3s, the selected version), HTTP responses (status, length, content
type); and for rules on the HTTP response status (http.stat_code), which are judged when a
transaction's status line is read (`settled`).

A transaction the client side read waits here for its answer and is logged when the
answer is read, or, with what is known, when the answer cannot come or be followed: the
server's bytes end (FIN), the reader stops (not the protocol, a switched protocol, a
framing it cannot follow), SERVER_DEPTH is read, a hole it cannot fill, too many waiting,
the flow ends or is decided for good (a drop). DNS queries are logged at once (as over
UDP); their responses are events of their own.

The server's bytes are reassembled like the client's (StreamStart, Linux's receive queue),
in a window of the same size; the readers consume what they read.
"""
from ..packet import FIN, RST
from ..stream import MASK, StreamStart
from . import dns, http, tls

SERVER_DEPTH = 1 << 20     # server bytes read per flow: Suricata's default stream.reassembly.depth
MAX_WAITING = 64           # transactions waiting for an answer; past it the oldest is logged as is


class ServerSide:
    __slots__ = ("proto", "bytes", "reader", "waiting", "done", "read", "answering", "statused", "unread",
                 "why")

    def __init__(self, proto, flow, window, bodies=None):
        self.proto = proto
        self.bytes = StreamStart(window)
        if flow.tcp is not None:           # the SYN/ACK was seen: the server's first byte is ISN + 1
            self.bytes.add((flow.tcp.s_acked0 - 1) & MASK, b"", True)
        self.reader = (dns.TcpReader() if proto == "dns" else tls.ServerHelloReader() if proto == "tls"
                       else http.ResponseReader(bodies))   # bodies: read for file_data rules
        self.waiting = []          # transactions waiting for their answer, oldest first
        self.done = False          # nothing more is read: what waits is logged as is
        self.read = 0              # server bytes the reader consumed
        self.answering = None      # TLS: the hello whose ServerHello was read, its certificate next
        # HTTP, for rules on the status (taken by `settled`): transactions whose status line was
        # read, and those whose status can no longer be read though the server may have sent it
        # (a bound, a hole, an answer the reader does not follow: `why`, an exception reason)
        self.statused = []
        self.unread = []
        self.why = None

    @property
    def active(self) -> bool:
        """An answer may still come for a transaction that waits (or is being answered)."""
        return not self.done and (bool(self.waiting) or self.answering is not None
                                  or getattr(self.reader, "req", None) is not None)

    def wait(self, txs):
        """Transactions to log once answered. Returns those to log now: DNS queries (and the
        oldest waiting ones past MAX_WAITING, or all of them once the reading stopped)."""
        out = list(txs) if self.proto == "dns" else []
        if self.done:
            return out if self.proto == "dns" else list(txs)
        self.waiting.extend(txs)
        while len(self.waiting) > MAX_WAITING:
            tx = self.waiting.pop(0)
            if self.proto != "dns":
                out.append(tx)
            if self.proto == "http":
                self._unread([tx], "cap")
        return out

    def feed(self, pkt):
        """One server->client segment. Returns the transactions to log now."""
        if self.done or pkt.tcp_flags & RST:
            return []
        st = self.bytes
        out = []
        fin = bool(pkt.tcp_flags & FIN)
        grew = st.add(pkt.seq, pkt.payload, False, fin)
        while grew and not self.done:
            out += self._read(st.data, st.complete)
            grew = st.cut and st.add(pkt.seq, pkt.payload, False, fin)
        if not self.done and (st.fin or st.lost or st.dropped or self.read >= SERVER_DEPTH):
            if not st.fin:
                self._body_lost()
            # no more to read (the server's FIN: what waits got no answer), or a hole we
            # cannot fill, or the depth: what waits may have been answered, unread
            out += self.flush(None if st.fin and not (st.lost or st.dropped) and self.read < SERVER_DEPTH
                              else "cap")
        return out

    def _read(self, data, full):
        out = []
        data = data[:SERVER_DEPTH - self.read]     # what is past the depth is not read
        if self.proto == "dns":
            used, msgs, status = self.reader.feed(data, full)
            for m in msgs:
                if m.response:
                    if self.waiting:
                        self.waiting.pop(0)
                    out.append(m)
        elif self.proto == "tls":
            used, items, status = self.reader.feed(data)
            for item in items:
                if isinstance(item, tls.ServerHello):
                    if self.waiting:
                        hello = self.waiting.pop(0)
                        hello.server = item
                        if self.reader.want_cert:
                            self.answering = hello     # logged with its certificate's names
                        else:
                            out.append(hello)
                elif self.answering is not None:       # CertificateNames
                    self.answering.certificate = item
                    out.append(self.answering)
                    self.answering = None
        else:
            head = self.waiting[:]
            used, out, status = self.reader.feed(data, full, self.waiting)
            # the reader takes the oldest waiting request on each status line it reads
            self.statused += head[:len(head) - len(self.waiting)]
            if self.reader.blind and self.waiting:
                # a body read to the close because clients read its length differently: a
                # lax one reads the next answers inside it. Their status cannot be known
                # (now, not at a close that may never come); logged with what is known
                gone, self.waiting = self.waiting, []
                self._unread(gone, "http_response")
                out += gone
        self.bytes.consume(used)
        self.read += used
        if status is not None:
            out += self.flush("http_response")
        return out

    def _unread(self, txs, why):
        if txs:
            self.unread += txs
            self.why = self.why or why

    def settled(self):
        """HTTP: (transactions whose status was read, those whose status can no longer be
        read, why) since the last call."""
        got = self.statused, self.unread, self.why
        self.statused, self.unread, self.why = [], [], None
        return got

    def _body_lost(self):
        """Server bytes the reading cannot follow (a hole, past the depth): a body being read
        is no longer what the client gets."""
        req = getattr(self.reader, "req", None)
        if req is not None and getattr(req, "body", None) is not None and not req.body.complete:
            self.reader._body_cannot("http.body_gap")

    def flush(self, why=None):
        """The reading ends: every transaction still waiting (and one being answered) is
        logged with what is known. `why`: an exception reason when an answer may have come
        that will not be read (None: the answers ended, or the flow did)."""
        if self.proto == "http" and why is not None:
            self._unread([t for t in self.waiting if t.status is None], why)
        self.done = True
        out = [] if self.proto == "dns" else list(self.waiting)
        if self.answering is not None:
            out.insert(0, self.answering)   # its ServerHello read, its certificate not
            self.answering = None
        req = getattr(self.reader, "req", None)
        if req is not None:
            if getattr(req, "body", None) is not None:
                self.reader.body_end(req)     # its body ends here: what was read is all a rule sees
            out.insert(0, req)             # answered, its body not ended: the bytes counted so far
            self.reader.req = None
        self.waiting = []
        self.bytes = None
        return out


from ..compiled import use_compiled  # noqa: E402 -- last: the Cython build of this file, if built
use_compiled(globals())
