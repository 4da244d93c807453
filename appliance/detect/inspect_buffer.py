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
- The work is bounded: RECURSION_LIMIT steps tried on one buffer (Suricata's default
  inspection recursion limit), PACKET_STEPS for all of one packet's programs, and
  REGEX_TIME for the regex searches of all of one packet's programs (bounded_regex.py;
  one search may overrun it). Suricata answers "no match" at its limit, which lets an
  attacker who repeats a rule's first content hide the rest; here the answer is
  unknown: the caller counts it (an anomaly) and it is read against the attacker -- a
  drop, reject or alert rule's program holds, a pass rule's does not.
"""
import re
import time

from .bounded_regex import REGEX_TIME, InspectionLimit, RegexTimeout
from .rule import Content, IsDataAt, Pcre

RECURSION_LIMIT = 3000
PACKET_STEPS = 10 * RECURSION_LIMIT    # all programs on one packet's buffers together
# Buffers a sticky-buffer keyword names -> the app field whose transactions carry them.
BUFFERS = {"http.uri": "http", "http.uri.raw": "http", "http.method": "http",
           "http.user_agent": "http", "http.host": "http", "http.stat_code": "http", "dns.query": "dns",
           "tls.sni": "tls"}
# Buffers of the server's answer: a transaction has them once its response is read (rules
# on them are judged on the packet that completes the status line, engine.py).
RESPONSE_BUFFERS = frozenset(("http.stat_code",))
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

    def matches(self, buf, block=False, limits=None) -> bool:
        """The steps hold on buf. At a bound the answer is unknown: `block` (True for
        drop/reject/alert rules, against the attacker). `limits`: [bounds reached, steps
        left for this packet's programs, seconds left for their regex searches]
        (Detector.limits), so that one packet cannot cost RECURSION_LIMIT steps and
        REGEX_TIME for every rule."""
        steps = RECURSION_LIMIT if limits is None else max(0, min(RECURSION_LIMIT, limits[1]))
        # [steps left, seconds left for backtracking searches]: _search spends the second
        budget = [steps, REGEX_TIME if limits is None else limits[2]]
        try:
            return _step(self.steps, self.anchors, 0, bytes(buf), 0, [None, {}], budget)
        except InspectionLimit as e:
            if limits is not None:
                limits[0] += 1
                if type(e) is RegexTimeout:
                    budget[1] = 0              # spent, whatever time.monotonic() says
            return block
        finally:
            if limits is not None:
                limits[1] -= steps - max(budget[0], 0)
                limits[2] = budget[1]


def packet_search(regex, buf, limits):
    """regex.search(buf) within the seconds left for this packet's regex searches
    (limits[2], as Program.matches), which it spends; InspectionLimit past them."""
    budget = [0, limits[2]]
    try:
        return _search(regex, buf, 0, budget)
    except RegexTimeout:
        budget[1] = 0
        raise
    finally:
        limits[2] = budget[1]


def _search(regex, buf, pos, budget):
    """regex.search(buf, pos), a backtracking one within budget[1], the seconds left for
    the packet's backtracking searches, which it spends: only the time inside them counts
    (an RE2 search is linear, as a content search is, and is bounded by the step budget)."""
    if regex.linear:
        return regex.search(buf, pos)
    start = time.monotonic()
    try:
        return regex.search(buf, pos, start + budget[1])
    finally:
        budget[1] -= time.monotonic() - start


def _step(steps, anchors, i, buf, prev, low, budget):
    """Steps i.. hold with the previous match ending at `prev`. `low`: [the buffer
    lowercased or None, {step: its last find (start, end, pos)}]."""
    n = len(steps)
    while i < n:
        budget[0] -= 1
        if budget[0] < 0:
            raise InspectionLimit
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
                # Backtracking asks a step again from a later start: the last answer holds
                # when no occurrence can lie between (else each retry rescans to the end,
                # 3000 x 64 KB on "ab" repeated for "a; b distance 0; c distance 0").
                last = low[1].get(i)
                if last is not None and last[1] == end and last[0] <= start and (last[2] < 0 or start <= last[2]):
                    pos = last[2]
                else:
                    pos = hay.find(pat, start, end)
                    low[1][i] = (start, end, pos)
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
                if s.endswith:
                    return False
                pos = hay.find(pat, pos + 1, end)
            return False
        if t is Pcre:
            base = prev if s.relative else 0
            # Suricata hands a relative pcre the buffer from the previous match on: ^ anchors there
            m = _search(s.regex, buf[base:] if base else buf, 0, budget)
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
                m = _search(s.regex, buf, base + m.start() + 1, budget)
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
SCHEME = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]*:")   # as applayer/http.py's: RFC 3986 3.1


def normalize_uri(raw: bytes) -> bytes:
    """Suricata's http.uri is libhtp's normalised URI: the path and query of the request
    target. Here: an absolute-form target loses its scheme://authority, %XX escapes in
    the path are decoded and its "." / ".." segments resolved (RFC 3986 5.2.4), the
    query stays as sent. (libhtp's personalities do more, e.g. %u decoding on IIS.)"""
    raw = _origin_form(raw)
    path, q, query = raw.partition(b"?")
    if b"%" in path:
        path = _PCT.sub(lambda m: bytes((int(m.group(1), 16),)), path)
    if b"." in path:
        path = _remove_dots(path)
    return path + q + query


def _origin_form(raw):
    """An absolute-form target without its scheme and authority: the path servers act on.
    Any scheme (nginx and Go route "ftp://host/admin" to /admin), and a scheme without an
    authority ("http:/admin" is /admin to Go)."""
    m = SCHEME.match(raw)
    if m is None:
        return raw
    rest = raw[m.end():]
    if rest.startswith(b"//"):
        rest = rest[2:]
        cut = min((p for p in (rest.find(b"/"), rest.find(b"?")) if p >= 0), default=len(rest))
        rest = rest[cut:]
    elif not rest.startswith(b"/"):
        return raw                                             # "a:b": no path to read
    return rest if rest.startswith(b"/") else b"/" + rest     # an empty path is "/"


_ESC = re.compile(rb"%(?:[uU]([0-9A-Fa-f]{4})|([0-9A-Fa-f]{2}))")
_OVERLONG = re.compile(rb"[\xc0\xc1][\x80-\xbf]|\xe0[\x80-\x9f][\x80-\xbf]")
_SLASHES = re.compile(rb"/{2,}")


def lenient_uri(raw: bytes) -> bytes:
    """The path a lenient server acts on, where servers read a request target
    differently from normalize_uri: "#" ends the path (Apache, nginx, http.server);
    "//" is "/" (nginx's merge_slashes, Apache, http.server, Tomcat); ";params" end a
    segment ("/public/..;/admin" is /admin to Tomcat and Jetty); IIS decodes %uXXXX and
    overlong UTF-8 ("%c0%ae" is ".") and takes "\\" for "/"; a NUL ends the path where
    a C string carries it. Decoded in one pass (no double decoding)."""
    raw = _origin_form(raw).partition(b"#")[0]
    path, q, query = raw.partition(b"?")
    path = _ESC.sub(_unescape_one, path)
    path = _OVERLONG.sub(lambda m: _overlong(m.group()), path)
    path = path.partition(b"\0")[0].replace(b"\\", b"/")
    if b";" in path:
        path = b"/".join(seg.partition(b";")[0] for seg in path.split(b"/"))
    path = _SLASHES.sub(b"/", path)
    return _remove_dots(path) + q + query


def _unescape_one(m):
    u, x = m.groups()
    return chr(int(u, 16)).encode("utf-8", "surrogatepass") if u else bytes((int(x, 16),))


def _overlong(b):
    cp = ((b[0] & 0x1f) << 6 | (b[1] & 0x3f)) if len(b) == 2 else ((b[1] & 0x3f) << 6 | (b[2] & 0x3f))
    return chr(cp).encode("utf-8")


def uri_readings(raw: bytes):
    """http.uri's values: normalize_uri's reading (libhtp's, Suricata's), and the lenient
    one when it differs -- a server may act on either, so a drop rule matches when one
    reading fits, a pass rule only when both do (the caller's any/all)."""
    strict, loose = normalize_uri(raw), lenient_uri(raw)
    return [strict] if loose == strict else [strict, loose]


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
            return uri_readings(unescape(tx.uri))
        if name == "http.uri.raw":
            return [unescape(tx.uri)]
        if name == "http.method":
            # RFC 9110: case-sensitive, and nginx refuses "post"; Go's net/http hands it to
            # a handler that may not look at the method: as sent and in capitals
            m = unescape(tx.method)
            return [m] if m.upper() == m else [m, m.upper()]
        if name == "http.user_agent":
            # every reading (duplicate lines, obs-fold): servers and applications differ on
            # which they act on, so drop rules fit when one does, pass rules when all do
            agents = getattr(tx, "user_agents", None) or ([tx.user_agent] if tx.user_agent is not None else [])
            return [unescape(a) for a in agents]
        if name == "http.host":
            return host_readings([unescape(h) for h in tx.hosts])
        if name == "http.stat_code":          # the status line's 3 digits, as sent
            return [b"%03d" % tx.status] if tx.status is not None else []
    elif proto == "dns" and name == "dns.query":
        return [v for q in tx.queries for v in name_readings(unescape(q.rrname))]
    elif proto == "tls" and name == "tls.sni":
        return name_readings(unescape(tx.sni)) if tx.sni else []
    return []


def name_readings(name: bytes):
    """A DNS or TLS name as sent, and as resolvers and TLS servers match it (ASCII case
    folded, a trailing root dot dropped: "EVIL.example." is evil.example to them) when that
    differs -- a drop rule on "evil.example" holds for both, a pass rule needs both."""
    folded = name.lower().rstrip(b".")
    return [name] if folded == name else [name, folded]


def host_readings(hosts):
    """HTTP hosts (lowercase already) as sent, and without trailing dots when they have
    some: nginx and Apache serve "evil.example." (":80") from evil.example's vhost, Go its
    default (docs/rules.md, HTTP names)."""
    for h in list(hosts):
        for bare in name_readings(h)[1:]:       # as dns.query and tls.sni
            if bare not in hosts:
                hosts.append(bare)
    return hosts


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

    def fits(self, proto, txs, any_tx, cache=None, limits=None):
        """Read against the attacker by the caller: any_tx (drop/reject/alert) -> some
        transaction fits, and in it some value of each buffer; else (pass) every
        transaction and every value. `cache`: buffer values already read, shared by the
        rules judged on the same transactions."""
        pick = any if any_tx else all
        cache = {} if cache is None else cache
        return pick(self.fits_tx(proto, t, pick, cache, limits) for t in txs)

    def fits_tx(self, proto, tx, pick, cache, limits=None, unread=False):
        """`unread`: the transaction's response status could not be read; its response
        buffers are taken as fitting (read against the attacker, for drop/reject rules)."""
        if tx is None:
            return False
        if self.patterns is not None:
            names = [q.rrname for q in tx.queries] if proto == "dns" else \
                (tx.hosts if proto == "http" else [tx.sni] if tx.sni else [])
            if not names or not pick(any(p.matches(n) for p in self.patterns) for n in names):
                return False
        for name, rng in self.sizes:
            if unread and name in RESPONSE_BUFFERS:
                continue
            vals = buffer_values(cache, proto, tx, name)
            if not vals or not pick(rng.matches(len(v)) for v in vals):
                return False
        for name, prog in self.programs:
            if unread and name in RESPONSE_BUFFERS:
                continue
            vals = buffer_values(cache, proto, tx, name)
            if not vals or not pick(prog.matches(v, pick is any, limits) for v in vals):
                return False                   # a buffer the transaction lacks matches nothing
        return True


def buffer_values(cache, proto, tx, name):
    """tx_buffer, read once per transaction and buffer for all the rules judged on it."""
    key = (id(tx), name)
    vals = cache.get(key)
    if vals is None:
        vals = cache[key] = tx_buffer(proto, tx, name)
    return vals
