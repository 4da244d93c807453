"""Suricata's inspection of one buffer: a program of content / pcre / isdataat steps.

A rule's steps on one buffer (the packet payload, or a sticky buffer such as
http.uri) hold together in Suricata's sense:
- offset/depth, startswith/endswith place a content absolutely in the buffer;
  distance/within place it relative to the end of the previous match (a content
  or pcre that matched), and pcre's R flag searches from there; isdataat asks
  for a byte at an offset (relative: past the previous match).
- `!` (negated) steps hold when the bytes are NOT where they say; they move no
  position, so a step after a negated one is relative to the match before it.
- Backtracking: when a later relative step fails, the earlier step that anchors it
  is retried at its next occurrence (Suricata's detect-engine-content-inspection
  does the same, "content:"a"; content:"b"; within:2;" matches "a..ab"). Retrying
  only helps when a later step depends on the position, so a step whose follower
  is not relative is tried at its first occurrence only.
- The work is bounded like Suricata's inspection recursion limit: past
  RECURSION_LIMIT steps tried on one buffer the program does not match (the value
  Suricata uses by default, so a .rules rule gives the same answer it gives there).
"""
import re

from .rule import Content, IsDataAt, Pcre

RECURSION_LIMIT = 3000
# Buffers a sticky-buffer keyword names -> the app field whose transactions carry them.
BUFFERS = {"http.uri": "http", "http.uri.raw": "http", "http.method": "http",
           "http.user_agent": "http", "http.host": "http", "dns.query": "dns", "tls.sni": "tls"}
BUFFERS["file_data"] = "http"      # the HTTP body (applayer/body.py; detect/file_data.py)
_UNESCAPE = re.compile(rb"\\x([0-9a-f]{2})")


class Program:
    """One buffer's steps, with for each step whether a later step depends on where it
    matched (only those are retried at their next occurrence)."""
    __slots__ = ("steps", "anchors")

    def __init__(self, steps):
        self.steps = tuple(steps)
        anchors = []
        for i in range(len(self.steps)):
            dep = False
            for s in self.steps[i + 1:]:
                if s.relative:
                    dep = True
                    break
                if not s.negated and type(s) is not IsDataAt:
                    break                      # a positive content/pcre: later steps hang on it
            anchors.append(dep)
        self.anchors = tuple(anchors)

    def matches(self, buf) -> bool:
        budget = [RECURSION_LIMIT]
        return _step(self.steps, self.anchors, 0, bytes(buf), 0, [None], budget)


def _step(steps, anchors, i, buf, prev, low, budget):
    """Steps i.. hold with the previous match ending at `prev`."""
    n = len(steps)
    while i < n:
        budget[0] -= 1
        if budget[0] < 0:
            return False
        s = steps[i]
        t = type(s)
        if t is Content:
            if s.nocase:
                if low[0] is None:
                    low[0] = buf.lower()
                hay, pat = low[0], s.value.lower()
            else:
                hay, pat = buf, s.value
            size, plen = len(buf), len(s.value)
            if s.relative:
                start = prev + (s.distance or 0)
                end = size if s.within is None else min(size, start + s.within)
                start = max(start, 0)
            else:
                start = s.offset
                end = size if s.depth is None else min(size, s.offset + s.depth)
            if s.startswith:
                end = min(end, plen)
            if s.endswith:                     # only one place it can be: the buffer's end
                pos = size - plen
                pos = pos if pos >= start and size <= end and hay.startswith(pat, pos) else -1
            else:
                pos = hay.find(pat, start, end)
            if s.negated:
                if pos >= 0:
                    return False
                i += 1
                continue
            if not anchors[i]:
                if pos < 0:
                    return False
                prev = pos + plen
                i += 1
                continue
            while pos >= 0:                    # backtracking: each occurrence in turn
                if _step(steps, anchors, i + 1, buf, pos + plen, low, budget):
                    return True
                if s.endswith or budget[0] < 0:
                    return False
                pos = hay.find(pat, pos + 1, end)
            return False
        if t is Pcre:
            base = prev if s.relative else 0
            # Suricata hands a relative pcre the buffer from the previous match on: ^ anchors there
            m = s.regex.search(buf[base:]) if base else s.regex.search(buf)
            if s.negated:
                if m is not None:
                    return False
                i += 1
                continue
            if not anchors[i]:
                if m is None:
                    return False
                prev = base + m.end()
                i += 1
                continue
            while m is not None:
                if _step(steps, anchors, i + 1, buf, base + m.end(), low, budget):
                    return True
                if budget[0] < 0:
                    return False
                m = s.regex.search(buf, base + m.start() + 1)
                base = 0
            return False
        # IsDataAt: Suricata's test, absolute "byte n exists", relative "n bytes past prev"
        ok = (prev + s.n <= len(buf)) if s.relative else (s.n < len(buf))
        if ok == s.negated:
            return False
        i += 1
    return True


# ---------------------------------------------------------------- app-layer buffers

def unescape(text):
    """The bytes behind an app-layer string (the parsers escape non-printable bytes and
    the backslash as \\xNN, which is unambiguous)."""
    b = text.encode("utf-8", "surrogateescape")
    return _UNESCAPE.sub(lambda m: bytes((int(m.group(1), 16),)), b) if b"\\x" in b else b


_PCT = re.compile(rb"%([0-9A-Fa-f]{2})")


def normalize_uri(raw: bytes) -> bytes:
    """Suricata's http.uri is libhtp's normalised URI: the path and query of the request
    target. Here: an absolute-form target loses its scheme://authority, %XX escapes in
    the path are decoded and its "." / ".." segments resolved (RFC 3986 5.2.4), the
    query stays as sent. (libhtp's personalities do more, e.g. %u decoding on IIS.)"""
    low = raw[:8].lower()
    if low.startswith((b"http://", b"https://")):
        rest = raw[raw.find(b"//") + 2:]
        cut = min((p for p in (rest.find(b"/"), rest.find(b"?")) if p >= 0), default=len(rest))
        raw = rest[cut:] or b"/"
    path, q, query = raw.partition(b"?")
    if b"%" in path:
        path = _PCT.sub(lambda m: bytes((int(m.group(1), 16),)), path)
    if b"." in path:
        path = _remove_dots(path)
    return path + q + query


def _remove_dots(path):
    out = []
    segs = path.split(b"/")
    for i, seg in enumerate(segs):
        last = i == len(segs) - 1
        if seg == b".":
            if last:
                out.append(b"")
        elif seg == b"..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append(b"")
        else:
            out.append(seg)
    return b"/".join(out)


def tx_buffer(proto, tx, name):
    """The values of one sticky buffer in one transaction: a list (several for the
    readings of an ambiguous Host, or the questions of one DNS message; none when the
    transaction lacks it)."""
    if proto == "http":
        if name == "file_data":
            return body_values(tx)
        if name == "http.uri":
            return [normalize_uri(unescape(tx.uri))]
        if name == "http.uri.raw":
            return [unescape(tx.uri)]
        if name == "http.method":
            return [unescape(tx.method)]
        if name == "http.user_agent":
            return [unescape(tx.user_agent)] if tx.user_agent is not None else []
        if name == "http.host":
            return [unescape(h) for h in tx.hosts]
    elif proto == "dns" and name == "dns.query":
        return [unescape(q.rrname) for q in tx.queries]
    elif proto == "tls" and name == "tls.sni":
        return [unescape(tx.sni)] if tx.sni else []
    return []


def body_values(tx):
    """file_data: the body as inspected (decoded; the raw bytes too where clients differ)."""
    return tx.body.values() if tx.body is not None else []


_TX_PROTO = {"HttpRequest": "http", "DnsMessage": "dns", "ClientHello": "tls"}


def tx_proto(tx):
    """The app field a parsed transaction belongs to."""
    return _TX_PROTO.get(type(tx).__name__)


class AppProgram:
    """What one rule asks of a transaction's sticky buffers: programs, sizes (bsize,
    urilen), and its whole-name patterns, which must fit the same transaction."""
    __slots__ = ("programs", "sizes", "patterns")

    def __init__(self, rule, patterns):
        self.programs = tuple((b, Program(steps)) for b, steps in rule.buffers)
        sizes = list(rule.bsize)
        if rule.urilen is not None:
            sizes.append(rule.urilen)
        self.sizes = tuple(sizes)
        self.patterns = patterns               # NamePatterns of the rule's name key, or None

    def fits(self, proto, txs, any_tx, cache=None):
        """Read against the attacker by the caller: any_tx (drop/reject/alert) -> some
        transaction fits, and in it some value of each buffer; else (pass) every
        transaction and every value. `cache`: buffer values already read, shared by the
        rules judged on the same transactions."""
        pick = any if any_tx else all
        cache = {} if cache is None else cache
        return pick(self.fits_tx(proto, t, pick, cache) for t in txs)

    def fits_tx(self, proto, tx, pick, cache):
        if tx is None:
            return False
        if self.patterns is not None:
            names = [q.rrname for q in tx.queries] if proto == "dns" else \
                (tx.hosts if proto == "http" else [tx.sni] if tx.sni else [])
            if not names or not pick(any(p.matches(n) for p in self.patterns) for n in names):
                return False
        for name, rng in self.sizes:
            vals = buffer_values(cache, proto, tx, name)
            if not vals or not pick(rng.matches(len(v)) for v in vals):
                return False
        for name, prog in self.programs:
            vals = buffer_values(cache, proto, tx, name)
            if not vals or not pick(prog.matches(v) for v in vals):
                return False                   # a buffer the transaction lacks matches nothing
        return True


def buffer_values(cache, proto, tx, name):
    """tx_buffer, read once per transaction and buffer for all the rules judged on it."""
    key = (id(tx), name)
    vals = cache.get(key)
    if vals is None:
        vals = cache[key] = tx_buffer(proto, tx, name)
    return vals
