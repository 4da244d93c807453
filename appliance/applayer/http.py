"""HTTP/1.x requests (RFC 9112): request line, Host and User-Agent.

Walks every complete request header block at the start of the client->server
stream (pipelining), skipping a body only when Content-Length says how long it
is. Chunked or unknown-length bodies end the walk: what follows cannot be
located without decoding the body.
"""

import re
from dataclasses import dataclass

from appliance.applayer.dns import escape_label

MAX_HEADER = 16384     # a longer header block is treated as complete at this bound
MAX_REQUESTS = 64      # per call; pipelines are short in practice
MAX_METHOD = 32

METHODS = frozenset((
    b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"CONNECT", b"TRACE", b"PATCH",
    b"PROPFIND", b"PROPPATCH", b"MKCOL", b"COPY", b"MOVE", b"LOCK", b"UNLOCK", b"SEARCH",
    b"REPORT", b"MKACTIVITY", b"CHECKOUT", b"MERGE", b"M-SEARCH", b"NOTIFY", b"SUBSCRIBE",
    b"UNSUBSCRIBE", b"PURGE",
))

_METHOD_SP = re.compile(rb"[A-Z][A-Z_-]{0,%d} " % (MAX_METHOD - 1))
_METHOD_PREFIX = re.compile(rb"[A-Z][A-Z_-]{0,%d}\Z" % (MAX_METHOD - 1))
_BLOCK_END = re.compile(rb"\r?\n\r?\n")
_DIGITS = re.compile(rb"[0-9]{1,18}\Z")


@dataclass
class HttpRequest:
    method: str
    uri: str
    protocol: str
    host: str | None
    user_agent: str | None


def looks_like(data: bytes) -> bool:
    """A known method + SP, or any method token whose request line ends in HTTP/x.y.

    The second form needs the whole first line; FTP/SMTP commands ("USER x") also
    start with an uppercase token + SP and must not pass as HTTP.
    """
    data = data.lstrip(b"\r\n")          # servers ignore empty lines before a request (RFC 9112 2.2)
    m = _METHOD_SP.match(data)
    if m is None:
        return False
    if data[:m.end() - 1] in METHODS:
        return True
    eol = data.find(b"\n", 0, MAX_HEADER)
    if eol < 0:
        return False
    return data[:eol].rstrip(b"\r").rsplit(b" ", 1)[-1].startswith(b"HTTP/")


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


def _authority(uri: bytes) -> bytes | None:
    """The authority of an absolute-form URI ("http://user@a.example:80/x"), else None."""
    scheme_end = uri.find(b"://")
    if scheme_end <= 0 or not uri[:scheme_end].isalpha():
        return None
    rest = uri[scheme_end + 3:]
    for stop in (b"/", b"?", b"#"):
        i = rest.find(stop)
        if i >= 0:
            rest = rest[:i]
    return rest.rpartition(b"@")[2]


def _request(block: bytes):
    """One header block -> (HttpRequest, content_length, chunked) or None if not a request."""
    lines = block.split(b"\n")
    parts = lines[0].rstrip(b"\r").split()
    if len(parts) < 2:
        return None
    method = parts[0]
    if len(parts) >= 3 and parts[-1].startswith(b"HTTP/"):
        protocol, uri = parts[-1], b" ".join(parts[1:-1])
    else:
        protocol, uri = b"", b" ".join(parts[1:])
    if method not in METHODS and not protocol:
        return None                         # "USER x", "EHLO x": FTP/SMTP, not HTTP/0.9
    host = agent = None
    length = None
    chunked = False
    bad_length = False
    for line in lines[1:]:
        name, sep, value = line.rstrip(b"\r").partition(b":")
        if not sep:
            continue
        name = name.strip().lower()
        value = value.strip(b" \t")
        if name == b"host":
            if host is None:                # first Host wins; later ones are ignored
                host = normalize_host(value)
        elif name == b"user-agent":
            if agent is None:
                agent = escape_label(value)
        elif name == b"content-length":
            if not _DIGITS.match(value) or (length is not None and int(value) != length):
                bad_length = True
            else:
                length = int(value)
        elif name == b"transfer-encoding":
            chunked = True                  # any coding: body length unknown to us
    # An absolute-form target names the host, whatever the Host header says: origin servers
    # must ignore Host then (RFC 9112 3.2.2) and proxies route by it.
    auth = _authority(uri) if method != b"CONNECT" else uri
    if auth:
        host = normalize_host(auth) or host
    if bad_length:
        chunked = True                      # cannot find the next request reliably
    req = HttpRequest(escape_label(method), escape_label(uri), escape_label(protocol), host, agent)
    return req, length or 0, chunked


def partial_request(data: bytes):
    """The request whose header block is still open at the end of `data`, from the lines
    that are complete: its host is known as soon as the request line (absolute form) or a
    Host line has arrived. An attacker cannot hide a Host already sent behind padding or
    tiny segments until the inspection depth runs out. None when no host is known yet."""
    try:
        off = 0
        n = len(data)
        while True:                          # skip the complete requests, as parse_requests does
            while off < n and data[off] in b"\r\n":
                off += 1
            m = _BLOCK_END.search(data, off, off + MAX_HEADER)
            if m is None:
                break
            off = m.end()
        last = data.rfind(b"\n", off, off + MAX_HEADER)
        if last < 0 or _METHOD_SP.match(data, off) is None:
            return None
        got = _request(bytes(data[off:last + 1]))
        return got[0] if got is not None and got[0].host else None
    except Exception:  # defensive, as parse_requests
        return None


def parse_requests(data: bytes) -> tuple[list, bool]:
    """All complete request header blocks at the start of `data`, and whether more may come."""
    requests = []
    try:
        off = 0
        n = len(data)
        while off < n and len(requests) < MAX_REQUESTS:
            # RFC 9112 2.2: a server ignores empty lines before a request-line.
            while off < n and data[off] in b"\r\n":
                off += 1
            if off >= n:
                return requests, False
            if _METHOD_SP.match(data, off) is None:
                # A method token cut short by the end of the buffer may still complete.
                return requests, bool(_METHOD_PREFIX.match(data, off))
            m = _BLOCK_END.search(data, off, off + MAX_HEADER)
            if m is None:
                if n - off < MAX_HEADER:
                    return requests, True
                end = off + MAX_HEADER      # over the bound: take what we have, stop
            else:
                end = m.end()
            got = _request(bytes(data[off:end]))
            if got is None:
                return requests, False
            req, length, chunked = got
            requests.append(req)
            if m is None or chunked:
                return requests, False
            off = end + length
            if off > n:
                return requests, False      # inside a body: headers all seen
        return requests, False
    except Exception:  # defensive: the datapath never sees a parser exception
        return requests, False
