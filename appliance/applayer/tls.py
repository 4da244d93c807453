"""TLS ClientHello (RFC 8446 4.1.2, RFC 5246 7.4.1.2): SNI, ALPN, offered version.

Input is the first bytes of the client->server stream. A ClientHello may span
several handshake records (and so TCP segments); the records are walked and
their fragments concatenated until the whole handshake message is present.
"""

from dataclasses import dataclass, field

from appliance.applayer import MORE, NOT
from appliance.applayer.dns import escape_label

CONTENT_HANDSHAKE = 22
HANDSHAKE_CLIENT_HELLO = 1
MAX_RECORD = 16384 + 2048      # TLSCiphertext bound; plaintext is 16384
MAX_HELLO = 16384              # a larger ClientHello is not parsed (NOT)

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
    """A handshake record header carrying a ClientHello: 16 03 xx len len 01. The record
    version's minor byte is not checked: servers accept any (OpenSSL takes 03 05, 03 ff)."""
    return (len(data) >= 6 and data[0] == CONTENT_HANDSHAKE and data[1] == 3
            and data[5] == HANDSHAKE_CLIENT_HELLO)


def _handshake(data):
    """Concatenate handshake-record fragments until the first handshake message is whole.

    Returns the ClientHello body bytes, MORE or NOT.
    """
    hs = bytearray()
    need = None
    off = 0
    n = len(data)
    while True:
        if n - off < 5:
            # Check what we can of a partial header so garbage is NOT early.
            if n - off >= 1 and data[off] != CONTENT_HANDSHAKE:
                return NOT
            if n - off >= 2 and data[off + 1] != 3:
                return NOT
            return MORE
        ctype, major = data[off], data[off + 1]
        rlen = (data[off + 3] << 8) | data[off + 4]
        if ctype != CONTENT_HANDSHAKE or major != 3 or rlen == 0 or rlen > MAX_RECORD:
            return NOT
        frag = data[off + 5:off + 5 + rlen]
        hs += frag
        if need is None and len(hs) >= 4:
            if hs[0] != HANDSHAKE_CLIENT_HELLO:
                return NOT
            need = 4 + ((hs[1] << 16) | (hs[2] << 8) | hs[3])
            if need > MAX_HELLO + 4:
                return NOT
        if need is not None and len(hs) >= need:
            return bytes(hs[4:need])
        if len(frag) < rlen:
            return MORE                # the record itself is still arriving
        if len(hs) >= 1 and hs[0] != HANDSHAKE_CLIENT_HELLO:
            return NOT
        off += 5 + rlen


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
    """ClientHello from the first client->server bytes: ClientHello, MORE or NOT."""
    try:
        body = _handshake(data)
        if body is MORE or body is NOT:
            return body
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
