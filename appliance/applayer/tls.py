"""TLS ClientHello (RFC 8446 4.1.2, RFC 5246 7.4.1.2): SNI, ALPN, offered version.

Input is the client->server stream. A ClientHello may span many handshake records
(and so TCP segments), zero-length ones included; HelloReader walks the records and
concatenates their fragments until the whole handshake message is present.
"""

from dataclasses import dataclass, field

from appliance.applayer import CAP, MORE, NOT
from appliance.applayer.dns import escape_label

CONTENT_HANDSHAKE = 22
HANDSHAKE_CLIENT_HELLO = 1
CONTENT_CCS, CONTENT_ALERT, CONTENT_APPDATA = 20, 21, 23
OTHER_CONTENT = (CONTENT_CCS, CONTENT_ALERT, CONTENT_APPDATA)
MAX_RECORD = 16384 + 2048      # TLSCiphertext bound; plaintext is 16384
MAX_HELLO = 131396             # OpenSSL's CLIENT_HELLO_MAX_LENGTH, the largest we know a server reads
MAX_EMPTY_RECORDS = 32         # OpenSSL: more zero-length records in a row is a fatal alert

EXT_SERVER_NAME = 0
EXT_ALPN = 16
EXT_SUPPORTED_VERSIONS = 43

VERSIONS = {
    0x0002: "SSLv2", 0x0300: "SSLv3", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1",
    0x0303: "TLS 1.2", 0x0304: "TLS 1.3",
}


@dataclass
class ClientHello:
    sni: str | None
    version: str
    alpn: list = field(default_factory=list)


def version_name(v: int) -> str:
    if v in VERSIONS:
        return VERSIONS[v]
    if v >> 8 == 0x7F:                 # pre-RFC 8446 drafts
        return "TLS 1.3 draft-%d" % (v & 0xFF)
    return "0x%04x" % v


def is_grease(v: int) -> bool:
    # RFC 8701: 0x0A0A, 0x1A1A, ... 0xFAFA
    return (v & 0x0F0F) == 0x0A0A and (v >> 8) == (v & 0xFF)


def looks_like(data: bytes) -> bool:
    """A handshake record header carrying a ClientHello: 16 03 xx len len 01, after any
    zero-length handshake records (OpenSSL skips them). The record version's minor byte is
    not checked: servers accept any (OpenSSL takes 03 05, 03 ff)."""
    off = 0
    while data[off:off + 2] == b"\x16\x03" and data[off + 3:off + 5] == b"\x00\x00":
        off += 5                       # an empty record: a TLS stream only, whatever follows
    if off and len(data) - off < 6:
        return True
    return (len(data) - off >= 6 and data[off] == CONTENT_HANDSHAKE and data[off + 1] == 3
            and data[off + 5] == HANDSHAKE_CLIENT_HELLO)


class HelloReader:
    """The ClientHello out of the client's stream as a server's record layer reads it:
    handshake records of any size, zero-length ones included (OpenSSL 3 takes up to
    MAX_EMPTY_RECORDS in a row), the message fragmented across them however the client
    likes, up to MAX_HELLO. It consumes the record bytes it read and keeps only the
    handshake message (at most MAX_HELLO + 4 bytes, and only while it is incomplete).

    feed(data) -> (consumed, result): MORE, NOT, CAP or the ClientHello."""

    __slots__ = ("hs", "need", "left", "empty")

    def __init__(self):
        self.hs = bytearray()      # the handshake message so far
        self.need = None           # its whole length (4-byte header included), once known
        self.left = 0              # bytes of the current record's body still to come
        self.empty = 0             # zero-length records in a row

    def feed(self, data):
        off, n = 0, len(data)
        while True:
            if self.left:
                take = min(self.left, n - off)
                self.hs += data[off:off + take]
                off += take
                self.left -= take
                got = self._message()
                if got is not MORE:
                    return off, got
                if self.left:
                    return off, MORE           # the record itself is still arriving
            if n - off < 5:
                # Check what we can of a partial header so garbage is NOT early.
                if n - off >= 1 and data[off] != CONTENT_HANDSHAKE:
                    return off, self._other(data[off], off)
                if n - off >= 2 and data[off + 1] != 3:
                    return off, NOT
                return off, MORE
            ctype, major = data[off], data[off + 1]
            rlen = (data[off + 3] << 8) | data[off + 4]
            if ctype != CONTENT_HANDSHAKE:
                return off, self._other(ctype, off)
            if major != 3 or rlen > MAX_RECORD:
                return off, NOT
            off += 5
            if rlen == 0:
                self.empty += 1
                if self.empty > MAX_EMPTY_RECORDS:
                    return off, CAP            # OpenSSL gives up here; another stack might not
                continue
            self.empty = 0
            self.left = rlen

    def _other(self, ctype, off):
        """A record of another TLS content type once the handshake has begun, before the
        ClientHello is whole: a server may skip it (a warning alert) or abort; which one
        is not ours to guess. As the first record it is simply not a ClientHello."""
        started = off > 0 or self.need is not None or self.hs or self.empty
        return CAP if started and ctype in OTHER_CONTENT else NOT

    def _message(self):
        hs = self.hs
        if self.need is None and len(hs) >= 4:
            if hs[0] != HANDSHAKE_CLIENT_HELLO:
                return NOT
            self.need = 4 + ((hs[1] << 16) | (hs[2] << 8) | hs[3])
            if self.need > MAX_HELLO + 4:
                return CAP                     # more than any server we know reads
        if self.need is not None and len(hs) >= self.need:
            hello = _parse_body(bytes(hs[4:self.need]))
            self.hs = bytearray()
            return hello
        return MORE


def _extensions(body, off, hello, offered):
    n = len(body)
    if off + 2 > n:
        return True                    # no extensions block: legal for old clients
    end = off + 2 + ((body[off] << 8) | body[off + 1])
    if end > n:
        return False
    off += 2
    while off + 4 <= end:
        etype = (body[off] << 8) | body[off + 1]
        elen = (body[off + 2] << 8) | body[off + 3]
        off += 4
        if off + elen > end:
            return False
        ext = body[off:off + elen]
        off += elen
        if etype == EXT_SERVER_NAME and hello.sni is None:
            hello.sni = _server_name(ext)
        elif etype == EXT_ALPN:
            hello.alpn = _alpn(ext)
        elif etype == EXT_SUPPORTED_VERSIONS and ext:
            vend = min(1 + ext[0], len(ext))
            for i in range(1, vend - 1, 2):
                offered.append((ext[i] << 8) | ext[i + 1])
    return off == end


def _server_name(ext):
    if len(ext) < 2:
        return None
    end = min(2 + ((ext[0] << 8) | ext[1]), len(ext))
    off = 2
    while off + 3 <= end:
        ntype = ext[off]
        nlen = (ext[off + 1] << 8) | ext[off + 2]
        off += 3
        if off + nlen > end:
            return None
        if ntype == 0:                 # host_name
            return escape_label(ext[off:off + nlen])
        off += nlen
    return None


def _alpn(ext):
    protos = []
    if len(ext) < 2:
        return protos
    end = min(2 + ((ext[0] << 8) | ext[1]), len(ext))
    off = 2
    while off < end:
        plen = ext[off]
        off += 1
        if plen == 0 or off + plen > end:
            break
        protos.append(escape_label(ext[off:off + plen]))
        off += plen
    return protos


def parse_client_hello(data: bytes):
    """ClientHello from the first client->server bytes: ClientHello, MORE, NOT or CAP."""
    try:
        return HelloReader().feed(data)[1]
    except Exception:  # defensive: the datapath never sees a parser exception
        return NOT


def _parse_body(body):
    """The ClientHello message body -> ClientHello or NOT."""
    try:
        n = len(body)
        if n < 35:
            return NOT
        client_version = (body[0] << 8) | body[1]
        off = 34                                   # version + random
        off += 1 + body[off]                       # session_id
        if off + 2 > n:
            return NOT
        off += 2 + ((body[off] << 8) | body[off + 1])   # cipher_suites
        if off + 1 > n:
            return NOT
        off += 1 + body[off]                       # compression_methods
        if off > n:
            return NOT
        hello = ClientHello(None, "")
        offered = []
        if not _extensions(body, off, hello, offered):
            return NOT
        offered = [v for v in offered if not is_grease(v)]
        hello.version = version_name(max(offered) if offered else client_version)
        return hello
    except Exception:  # defensive: the datapath never sees a parser exception
        return NOT
