"""TLS ClientHello (RFC 8446 4.1.2, RFC 5246 7.4.1.2): SNI, ALPN, offered version.

Input is the client->server stream. A ClientHello may span many handshake records
(and so TCP segments), zero-length ones included; HelloReader walks the records and
concatenates their fragments until the whole handshake message is present.
"""

import hashlib
from dataclasses import dataclass, field

from appliance.applayer import CAP, MORE, NOT
from appliance.applayer.dns import escape_label

CONTENT_HANDSHAKE = 22
HANDSHAKE_CLIENT_HELLO = 1
CONTENT_CCS, CONTENT_ALERT, CONTENT_APPDATA = 20, 21, 23
ALERT_USER_CANCELED = 90       # the one alert TLS 1.3 servers ignore (RFC 8446 6.1)
OTHER_CONTENT = (CONTENT_CCS, CONTENT_ALERT, CONTENT_APPDATA)
MAX_RECORD = 16384 + 2048      # TLSCiphertext bound; plaintext is 16384
MAX_HELLO = 131396             # OpenSSL's CLIENT_HELLO_MAX_LENGTH, the largest we know a server reads
MAX_EMPTY_RECORDS = 32         # OpenSSL: more zero-length records in a row is a fatal alert
MAX_EARLY_DATA_SKIPPED = 16384 + 2048   # early data a server skips after a HelloRetryRequest: OpenSSL's
                                        # default recv_max_early_data, BoringSSL's kMaxEarlyDataSkipped

EXT_SERVER_NAME = 0
EXT_ALPN = 16
EXT_SUPPORTED_VERSIONS = 43
EXT_EARLY_DATA = 42
EXT_SUPPORTED_GROUPS = 10
EXT_EC_POINT_FORMATS = 11
EXT_SIGNATURE_ALGORITHMS = 13
# JA3 (the fingerprint threat intel publishes) needs the offered cipher suites, extension
# types, groups and point formats. Held up to these bounds; a hello offering more is
# fingerprinted from what was held (ja3 then says so: ClientHello.ja3_cut).
MAX_KEPT_CIPHERS = 1024        # bytes of the cipher_suites list (512 suites; real clients offer < 100)
MAX_KEPT_EXT_TYPES = 128       # extension types listed (real clients send < 30)
# Bytes of a kept extension the parser holds: a host_name's 255 (OpenSSL's limit) with its
# list framing, real ALPN lists, supported_versions (<= 255 by its length byte). The rest is
# skipped, or held up to 64 KiB per connection while the hello trickles in; a server name
# that does not fit cannot be known (CAP).
MAX_KEPT_EXTENSION = 1024

VERSIONS = {
    0x0002: "SSLv2", 0x0300: "SSLv3", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1",
    0x0303: "TLS 1.2", 0x0304: "TLS 1.3",
}


@dataclass
class ClientHello:
    sni: str | None
    version: str
    alpn: list = field(default_factory=list)
    early_data: bool = False           # offered 0-RTT data: records of it may follow the hello
    # JA3's fields (the log's, not the rules': left out of ==): the legacy version, cipher
    # suites, extension types in order, supported groups, EC point formats
    legacy_version: int = field(default=0, compare=False)
    ciphers: list = field(default_factory=list, compare=False)
    extensions: list = field(default_factory=list, compare=False)
    groups: list = field(default_factory=list, compare=False)
    point_formats: list = field(default_factory=list, compare=False)
    ja3_cut: bool = field(default=False, compare=False)   # a list ran past what is held: partial
    # JA4's extra fields: the signature algorithms in order, the first ALPN value as sent,
    # the highest supported_versions entry (GREASE out; None without the extension)
    sig_algs: list = field(default_factory=list, compare=False)
    alpn_first: bytes | None = field(default=None, compare=False)
    offered_max: int | None = field(default=None, compare=False)
    # the server's answer (the log's): its ServerHello, once the server's bytes showed it
    server: object = field(default=None, compare=False)
    certificate: object = field(default=None, compare=False)   # CertificateNames (TLS <= 1.2)

    def ja4(self):
        """FoxIO's JA4 (technical_details/JA4.md), TLS over TCP: t, version (the highest
        supported_versions entry, else the legacy version), d/i (SNI or not), cipher and
        extension counts (GREASE out, capped at 99), the first ALPN value's first and last
        characters; then sha256[:12] of the sorted cipher list and of the sorted extension
        list (SNI and ALPN out) _ the signature algorithms in their order."""
        ciphers = [v for v in self.ciphers if not is_grease(v)]
        exts = [v for v in self.extensions if not is_grease(v)]
        v = self.offered_max if self.offered_max is not None else self.legacy_version
        head = "t%s%s%02d%02d%s" % (_JA4_VERSIONS.get(v, "00"), "d" if EXT_SERVER_NAME in exts else "i",
                                    min(len(ciphers), 99), min(len(exts), 99), _ja4_alpn(self.alpn_first))
        cipher_list = ",".join("%04x" % c for c in sorted(ciphers))
        ext_list = ",".join("%04x" % e for e in sorted(exts) if e not in (EXT_SERVER_NAME, EXT_ALPN))
        sigs = [s for s in self.sig_algs if not is_grease(s)]
        if sigs and ext_list:
            ext_list += "_" + ",".join("%04x" % s for s in sigs)
        return "%s_%s_%s" % (head, _ja4_hash(cipher_list), _ja4_hash(ext_list))

    def ja3_string(self):
        """Salesforce's JA3: version,ciphers,extensions,groups,point formats (GREASE out)."""
        def j(vals):
            return "-".join(str(v) for v in vals if not is_grease(v))
        return ",".join((str(self.legacy_version), j(self.ciphers), j(self.extensions),
                         j(self.groups), "-".join(str(v) for v in self.point_formats)))


_JA4_VERSIONS = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3", 0x0002: "s2",
                 0xfeff: "d1", 0xfefd: "d2", 0xfefc: "d3"}


def _ja4_hash(text):
    """JA4's truncated hash; an empty list is twelve zeros, not the hash of nothing."""
    return hashlib.sha256(text.encode()).hexdigest()[:12] if text else "000000000000"


def _ja4_alpn(value):
    """The first and last characters of the first ALPN value ("00" without one); of its hex
    form when either is not alphanumeric (JA4.md's examples: AB CD -> "ad", 30 AB -> "3b")."""
    if not value:
        return "00"
    first, last = value[0], value[-1]
    if chr(first).isascii() and chr(first).isalnum() and chr(last).isascii() and chr(last).isalnum():
        return chr(first) + chr(last)
    h = value.hex()
    return h[0] + h[-1]


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
    zero-length handshake or change-cipher-spec records (OpenSSL 3 skips up to 32 of them
    and acts on the hello after them). The record version's minor byte is not checked:
    servers accept any (OpenSSL takes 03 05, 03 ff)."""
    off = 0
    while data[off:off + 1] in (b"\x16", b"\x14") and data[off + 1:off + 2] == b"\x03" \
            and data[off + 3:off + 5] == b"\x00\x00":
        off += 5                       # an empty record: a TLS stream only, whatever follows
    if off and len(data) - off < 6:
        return True
    return (len(data) - off >= 6 and data[off] == CONTENT_HANDSHAKE and data[off + 1] == 3
            and data[off + 5] == HANDSHAKE_CLIENT_HELLO)


class HelloReader:
    """The ClientHellos out of the client's stream as a server's record layer reads them:
    handshake records of any size, zero-length ones included (OpenSSL 3 takes up to
    MAX_EMPTY_RECORDS in a row), the message fragmented across them however the client
    likes, up to MAX_HELLO. It consumes the record bytes it read; the message itself is
    parsed as it arrives (_HelloParser), so what is kept is one field at a time, not the
    message: an extension we do not read (padding, 9 KB of unknown data) is skipped.

    After the first ClientHello it reads on (`second`): a server that answers with a
    HelloRetryRequest reads a second ClientHello, and OpenSSL acts on its SNI (checked
    against `openssl s_server -servername_fatal`: a second hello naming another host gets
    unrecognized_name). Skipped there, as servers do: change-cipher-spec records (RFC 8446
    D.4), user_canceled alerts (TLS 1.3 servers ignore them; any other alert ends the
    reading: the server reads no more after close_notify or a fatal one) and, when the first hello offered early data, application
    data up to MAX_EARLY_DATA_SKIPPED (a server that answers with a HelloRetryRequest skips
    the 0-RTT records, RFC 8446 4.2.10, then reads the second hello). Any other handshake
    message, or encrypted data past that, ends the reading; more empty records in a
    row than OpenSSL takes is CAP there too (a server that takes them reads on).

    feed(data) -> (consumed, result): MORE, NOT, CAP or the ClientHello; after the first
    hello NOT means the reading ended without another."""

    __slots__ = ("parser", "left", "empty", "started", "second", "early", "skipping")

    def __init__(self):
        self.parser = _HelloParser()
        self.left = 0              # bytes of the current record's body still to come
        self.empty = 0             # zero-length records in a row
        self.started = False       # a handshake record was read
        self.second = False        # the first ClientHello was read: looking for a second one
        self.early = 0             # early data record bytes a server may still skip before it
        self.skipping = False      # the current record is one the server skips

    def feed(self, data):
        off, n = 0, len(data)
        while True:
            if self.left:
                take = min(self.left, n - off)
                if self.skipping:
                    got = MORE
                else:
                    if self.parser is None:
                        # the first hello ended inside its record: the record's rest is the next
                        # handshake message (a second hello is read, anything else is NOT)
                        self.parser = _HelloParser()
                    got = self.parser.take(data[off:off + take])
                off += take
                self.left -= take
                if got is not MORE:
                    return off, self._result(got)
                if self.left:
                    return off, MORE           # the record itself is still arriving
            if n - off < 5:
                # Check what we can of a partial header so garbage is NOT early.
                if (n - off >= 1 and data[off] != CONTENT_HANDSHAKE and not self._skipped(data[off])
                        and not (data[off] == CONTENT_CCS and self._before_hello())):
                    return off, self._other(data[off])
                if n - off >= 2 and data[off + 1] != 3:
                    return off, NOT
                return off, MORE
            ctype, major = data[off], data[off + 1]
            rlen = (data[off + 3] << 8) | data[off + 4]
            if (ctype != CONTENT_HANDSHAKE and not self._skipped(ctype)
                    and not (ctype == CONTENT_CCS and rlen == 0 and self._before_hello())):
                return off, self._other(ctype)
            if major != 3 or rlen > MAX_RECORD:
                return off, NOT
            if ctype == CONTENT_ALERT:
                if rlen != 2:
                    return off, NOT            # an alert is 2 bytes, never fragmented (RFC 8446 6)
                if n - off < 7:
                    return off, MORE
                if data[off + 6] != ALERT_USER_CANCELED:
                    return off, NOT            # close_notify or a fatal one: the server reads no more
            if ctype == CONTENT_APPDATA:
                if rlen > self.early:
                    return off, NOT            # more early data than servers skip: not a retry
                self.early -= rlen
            off += 5
            self.started = True
            if rlen == 0 or ctype == CONTENT_CCS or ctype == CONTENT_ALERT:
                # OpenSSL counts a TLS 1.3 change_cipher_spec as an empty record (and aborts on
                # a fifth warning alert): skipped records cost a bounded walk per connection
                self.empty += 1
                if self.empty > MAX_EMPTY_RECORDS:
                    # OpenSSL gives up here; another stack might not, and read a (second)
                    # ClientHello after them: what it names can no longer be known
                    return off, CAP
                if rlen == 0:
                    continue
            else:
                self.empty = 0
            self.left = rlen
            # a record the server skips: so do we, and a hello it interrupts reads on after it
            self.skipping = ctype != CONTENT_HANDSHAKE
            if not self.skipping and self.parser is None:
                self.parser = _HelloParser()

    def _before_hello(self):
        """The first ClientHello's 4-byte header not read whole yet: OpenSSL skips an
        empty change_cipher_spec record there (counted as an empty record), between the
        header's bytes too, and so do we."""
        return not self.second and self.parser is not None and self.parser.left is None

    def _skipped(self, ctype):
        """A record a server skips while it waits for a second ClientHello."""
        return self.second and (ctype == CONTENT_CCS or ctype == CONTENT_ALERT
                                or (ctype == CONTENT_APPDATA and self.early > 0))

    def _result(self, got):
        if self.second:
            # the second reading never guesses (TLS 1.2's encrypted Finished may look like a
            # huge hello); a hello whose server name we could not hold is CAP, as the first
            if got is CAP and self.parser.name_cut:
                return CAP
            return got if isinstance(got, ClientHello) else NOT
        if isinstance(got, ClientHello):
            self.second = True
            self.parser = None
            self.early = MAX_EARLY_DATA_SKIPPED if got.early_data else 0
        return got

    def _other(self, ctype):
        """A record of another TLS content type once the handshake has begun, before the
        ClientHello is whole: a server may skip it (a warning alert) or abort; which one
        is not ours to guess. As the first record it is simply not a ClientHello."""
        if self.second:
            return NOT
        return CAP if self.started and ctype in OTHER_CONTENT else NOT


_KEPT_EXTENSIONS = (EXT_SERVER_NAME, EXT_ALPN, EXT_SUPPORTED_VERSIONS, EXT_SUPPORTED_GROUPS,
                    EXT_EC_POINT_FORMATS, EXT_SIGNATURE_ALGORITHMS)


class _HelloParser:
    """The ClientHello handshake message, parsed as its bytes arrive. Holds at most one
    field: 35 bytes of fixed header, a session id, or one extension we read (the SNI,
    ALPN and supported_versions; <= 64 KiB by their length field); the rest is skipped.
    take(chunk) -> MORE, NOT, CAP or the ClientHello (bytes after the message are not looked at)."""

    __slots__ = ("step", "want", "buf", "skip", "left", "ext_left", "etype", "ext_rest", "hello", "offered",
                 "legacy", "name_cut", "cipher_rest")

    def __init__(self):
        self.step = "header"       # which field `buf` is filling
        self.want = 4              # its length
        self.buf = bytearray()
        self.skip = 0              # bytes to pass over before the next field (cipher suites, an extension)
        self.left = None           # message body bytes still to come, once its length is known
        self.ext_left = 0          # bytes of the extensions block still to come
        self.etype = None
        self.ext_rest = 0          # bytes of the kept extension past what is held
        self.name_cut = False      # the server name ran past what is held (CAP)
        self.hello = ClientHello(None, "")
        self.offered = []
        self.legacy = 0
        self.cipher_rest = 0       # cipher_suites bytes past what is held

    def take(self, data):
        off, n = 0, len(data)
        while True:
            if self.skip:
                t = min(self.skip, n - off)
                off += t
                self.skip -= t
                self.left -= t
                if self.skip:
                    return MORE
                got = self._next()
            else:
                want = self.want
                if not self.buf and n - off >= want:
                    field = data[off:off + want]       # whole in this piece: the usual case
                    off += want
                else:
                    t = min(want - len(self.buf), n - off)
                    self.buf += data[off:off + t]
                    off += t
                    if len(self.buf) < want:
                        return MORE
                    field = bytes(self.buf)
                    self.buf.clear()
                if self.left is not None:
                    self.left -= want
                got = self._field(field)
            if got is not MORE:
                return got

    def _expect(self, step, want):
        if self.left is not None and want > self.left:
            return NOT                         # a field that overruns the message
        self.step, self.want = step, want
        if want == 0:
            return self._field(b"")
        return MORE

    def _skip(self, n, step):
        if n > self.left:
            return NOT
        self.skip, self.step = n, step
        return self._next() if n == 0 else MORE

    def _field(self, f):
        step = self.step
        if step == "header":
            if f[0] != HANDSHAKE_CLIENT_HELLO:
                return NOT
            self.left = (f[1] << 16) | (f[2] << 8) | f[3]
            if self.left > MAX_HELLO:
                return CAP                     # more than any server we know reads
            return self._expect("fixed", 35)   # version, random, session id length
        if step == "fixed":
            self.legacy = self.hello.legacy_version = (f[0] << 8) | f[1]
            return self._expect("session", f[34] + 2)
        if step == "session":
            n = (f[-2] << 8) | f[-1]
            kept = min(n, MAX_KEPT_CIPHERS)
            self.cipher_rest = n - kept
            return self._expect("ciphers", kept)
        if step == "ciphers":
            self.hello.ciphers = [(f[i] << 8) | f[i + 1] for i in range(0, len(f) - 1, 2)]
            if self.cipher_rest:
                self.hello.ja3_cut = True
            return self._skip(self.cipher_rest, "compression")
        if step == "compression_len":
            return self._skip(f[0], "extensions")
        if step == "extensions_len":
            self.ext_left = (f[0] << 8) | f[1]
            if self.ext_left > self.left:
                return NOT
            return self._ext_next()
        if step == "ext_header":
            self.etype, elen = (f[0] << 8) | f[1], (f[2] << 8) | f[3]
            if self.etype == EXT_EARLY_DATA:
                self.hello.early_data = True
            if len(self.hello.extensions) < MAX_KEPT_EXT_TYPES:
                self.hello.extensions.append(self.etype)
            else:
                self.hello.ja3_cut = True
            self.ext_left -= 4 + elen          # overrunning the block: NOT after it (_ext_next)
            if self.etype in _KEPT_EXTENSIONS:
                kept = min(elen, MAX_KEPT_EXTENSION)
                self.ext_rest = elen - kept
                return self._expect("ext_body", kept)
            return self._skip(elen, "ext_done")
        if step == "ext_body":
            etype, hello = self.etype, self.hello
            if etype == EXT_SERVER_NAME and hello.sni is None:
                hello.sni = _server_name(f)
                if hello.sni is None and self.ext_rest:
                    self.name_cut = True       # its name runs past what we hold
                    return CAP
            elif etype == EXT_ALPN:
                hello.alpn = _alpn(f)
                if len(f) >= 3 and 3 + f[2] <= len(f):
                    hello.alpn_first = bytes(f[3:3 + f[2]])
            elif etype == EXT_SIGNATURE_ALGORITHMS:
                hello.sig_algs = _u16_list(f)
            elif etype == EXT_SUPPORTED_GROUPS:
                hello.groups = _u16_list(f)
            elif etype == EXT_EC_POINT_FORMATS and f:
                hello.point_formats = list(f[1:1 + f[0]])
            elif etype == EXT_SUPPORTED_VERSIONS and f:
                vend = min(1 + f[0], len(f))
                for i in range(1, vend - 1, 2):
                    self.offered.append((f[i] << 8) | f[i + 1])
            if self.ext_rest:
                return self._skip(self.ext_rest, "ext_done")
            return self._ext_next()
        return NOT

    def _next(self):
        """After a skip."""
        step = self.step
        if step == "compression":
            return self._expect("compression_len", 1)
        if step == "extensions":
            if self.left < 2:
                return self._done()            # no extensions block: legal for old clients
            return self._expect("extensions_len", 2)
        return self._ext_next()                # ext_done

    def _ext_next(self):
        if self.ext_left == 0:
            return self._done()
        if self.ext_left < 4:
            return NOT
        return self._expect("ext_header", 4)

    def _done(self):
        offered = [v for v in self.offered if not is_grease(v)]
        if offered:
            self.hello.offered_max = max(offered)
        self.hello.version = version_name(max(offered) if offered else self.legacy)
        return self.hello


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


def _u16_list(ext):
    """A list of 16-bit values behind a 2-byte length (supported_groups), within what is held."""
    if len(ext) < 2:
        return []
    end = min(2 + ((ext[0] << 8) | ext[1]), len(ext))
    return [(ext[i] << 8) | ext[i + 1] for i in range(2, end - 1, 2)]


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


# -- the server's side (for the tls log only; no rule reads it) -------------------------

HANDSHAKE_SERVER_HELLO = 2
# RFC 8446 4.1.3: a ServerHello with this random is a HelloRetryRequest
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
MAX_SERVER_HELLO = 65536 + 4   # a ServerHello's extensions are bounded by a 16-bit length


@dataclass
class ServerHello:
    legacy_version: int
    version: str                   # the selected one: supported_versions when sent, else legacy_version
    cipher: int
    extensions: list = field(default_factory=list)
    alpn: list = field(default_factory=list)
    retry: bool = False            # a HelloRetryRequest: another ClientHello/ServerHello follows

    def ja3s_string(self):
        """Salesforce's JA3S: version,cipher,extensions (GREASE out, as Suricata does)."""
        return "%d,%d,%s" % (self.legacy_version, self.cipher,
                             "-".join(str(e) for e in self.extensions if not is_grease(e)))


def parse_server_hello(body):
    """A ServerHello message body (after the 4-byte handshake header): ServerHello or None."""
    try:
        if len(body) < 38:
            return None
        legacy = (body[0] << 8) | body[1]
        off = 35 + body[34]                       # version, random, session id
        if off + 3 > len(body):
            return None
        sh = ServerHello(legacy, "", (body[off] << 8) | body[off + 1], retry=body[2:34] == HRR_RANDOM)
        off += 3                                  # cipher, compression
        selected = None
        if off + 2 <= len(body):
            end = min(off + 2 + ((body[off] << 8) | body[off + 1]), len(body))
            off += 2
            while off + 4 <= end:
                etype, elen = (body[off] << 8) | body[off + 1], (body[off + 2] << 8) | body[off + 3]
                off += 4
                ext = body[off:min(off + elen, end)]
                sh.extensions.append(etype)
                if etype == EXT_SUPPORTED_VERSIONS and len(ext) >= 2:
                    selected = (ext[0] << 8) | ext[1]
                elif etype == EXT_ALPN:
                    sh.alpn = _alpn(ext)
                off += elen
        sh.version = version_name(selected if selected is not None else legacy)
        return sh
    except Exception:  # defensive: the datapath never sees a parser exception
        return None


HANDSHAKE_CERTIFICATE = 11
MAX_CERTIFICATE_MESSAGE = 65536 + 4   # a longer chain is not read (no subject/issuer logged)


@dataclass
class CertificateNames:
    """The server certificate's subject and issuer (the first of the chain), as Suricata
    writes them: "C=US, O=Example, CN=www.example.com"."""
    subject: str | None
    issuer: str | None


class ServerHelloReader:
    """The server's ServerHellos out of its stream: handshake records, the message
    reassembled across them (up to MAX_SERVER_HELLO). After a HelloRetryRequest it reads on
    for the next ServerHello. After a TLS 1.2 (or older) one it reads the next handshake
    message: a Certificate (in the clear before TLS 1.3) gives the first certificate's
    subject and issuer (CertificateNames; up to MAX_CERTIFICATE_MESSAGE); then, or after a
    TLS 1.3 ServerHello (its certificate is encrypted), it is done. Change-cipher-spec
    records are skipped before the ServerHello (TLS 1.3 middlebox compatibility) and end the
    reading after it (a resumed session: no certificate); an alert, application data or an
    unexpected handshake message ends it too.

    feed(data) -> (consumed, items, status): items are ServerHello and CertificateNames;
    status None while more may come, "done"."""

    __slots__ = ("hs", "left", "skipping", "want_cert")

    def __init__(self):
        self.hs = bytearray()      # handshake bytes of the message being reassembled
        self.left = 0              # bytes of the current record's body still to come
        self.skipping = False      # the current record is one we pass over
        self.want_cert = False     # a TLS 1.2 ServerHello was read: its Certificate comes next

    def feed(self, data, full=False):
        off, n = 0, len(data)
        out = []
        while True:
            if self.left:
                take = min(self.left, n - off)
                if not self.skipping:
                    self.hs += data[off:off + take]
                off += take
                self.left -= take
                while len(self.hs) >= 4:          # whole messages reassembled so far
                    want = HANDSHAKE_CERTIFICATE if self.want_cert else HANDSHAKE_SERVER_HELLO
                    bound = MAX_CERTIFICATE_MESSAGE if self.want_cert else MAX_SERVER_HELLO
                    mlen = self.hs[1] * 65536 + self.hs[2] * 256 + self.hs[3]   # (no C shift: bytes, < 2**24)
                    if self.hs[0] != want or mlen + 4 > bound:
                        return off, out, "done"
                    if len(self.hs) < 4 + mlen:
                        break
                    body = bytes(self.hs[4:4 + mlen])
                    del self.hs[:4 + mlen]
                    if self.want_cert:
                        names = certificate_names(body)
                        if names is not None:
                            out.append(names)
                        return off, out, "done"
                    sh = parse_server_hello(body)
                    if sh is None:
                        return off, out, "done"
                    out.append(sh)
                    if not sh.retry:
                        if sh.version not in ("TLS 1.2", "TLS 1.1", "TLS 1.0", "SSLv3"):
                            return off, out, "done"    # TLS 1.3: the certificate is encrypted
                        self.want_cert = True
                if self.left:
                    return off, out, None
            if n - off < 5:
                return off, out, None
            ctype, major = data[off], data[off + 1]
            rlen = (data[off + 3] << 8) | data[off + 4]
            if major != 3 or rlen > MAX_RECORD or ctype not in (CONTENT_HANDSHAKE, CONTENT_CCS) \
                    or (ctype == CONTENT_CCS and self.want_cert):
                return off, out, "done"
            off += 5
            self.left = rlen
            self.skipping = ctype == CONTENT_CCS


# -- X.509 names (DER), for the tls log's subject/issuer ---------------------------------

_OID_NAMES = {
    "2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O",
    "2.5.4.11": "OU", "2.5.4.5": "serialNumber", "2.5.4.9": "street", "2.5.4.17": "postalCode",
    "2.5.4.15": "businessCategory", "2.5.4.4": "SN", "2.5.4.42": "GN", "2.5.4.12": "title",
    "0.9.2342.19200300.100.1.25": "DC", "0.9.2342.19200300.100.1.1": "UID",
    "1.2.840.113549.1.9.1": "emailAddress",
    "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionC", "1.3.6.1.4.1.311.60.2.1.2": "jurisdictionST",
    "1.3.6.1.4.1.311.60.2.1.1": "jurisdictionL",
}


def _der(buf, off, end):
    """One DER element at off: (tag, content start, content end); None if malformed."""
    if off + 2 > end:
        return None
    tag, n = buf[off], buf[off + 1]
    off += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 3 or off + k > end:
            return None
        n = int.from_bytes(buf[off:off + k], "big")
        off += k
    if off + n > end:
        return None
    return tag, off, off + n


def _oid(b):
    if not b:
        return ""
    parts = [b[0] // 40, b[0] % 40] if b[0] < 80 else [2, b[0] - 80]
    v = 0
    for x in b[1:]:
        v = (v << 7) | (x & 0x7F)
        if not x & 0x80:
            parts.append(v)
            v = 0
    return ".".join(map(str, parts))


def _name(buf, start, end):
    """An X.509 Name (SEQUENCE OF SET OF {type, value}) as "C=US, O=Example, CN=x"."""
    out = []
    off = start
    while off < end:
        rdn = _der(buf, off, end)
        if rdn is None or rdn[0] != 0x31:
            return None
        a = rdn[1]
        while a < rdn[2]:
            atv = _der(buf, a, rdn[2])
            if atv is None or atv[0] != 0x30:
                return None
            oid = _der(buf, atv[1], atv[2])
            if oid is None or oid[0] != 0x06:
                return None
            val = _der(buf, oid[2], atv[2])
            if val is None:
                return None
            raw = bytes(buf[val[1]:val[2]])
            if val[0] == 0x1E:                     # BMPString: UTF-16BE
                raw = raw.decode("utf-16-be", "replace").encode()
            text = escape_label(raw) if val[0] != 0x0C else _utf8(raw)
            out.append("%s=%s" % (_OID_NAMES.get(_oid(buf[oid[1]:oid[2]]), _oid(buf[oid[1]:oid[2]])), text))
            a = atv[2]
        off = rdn[2]
    return ", ".join(out)


def _utf8(raw):
    """A UTF8String: its text, with control characters and the escape char escaped."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return escape_label(raw)
    return "".join(c if c.isprintable() and c != "\\" else escape_label(c.encode()) for c in text)


def certificate_names(body):
    """The first certificate of a Certificate message body (TLS 1.2: a 3-byte list length,
    then 3-byte-length certificates): its subject and issuer, or None when it does not read."""
    try:
        if len(body) < 6:
            return None
        clen = int.from_bytes(body[3:6], "big")
        cert = body[6:6 + clen]
        top = _der(cert, 0, len(cert))                     # Certificate
        if top is None or top[0] != 0x30:
            return None
        tbs = _der(cert, top[1], top[2])                   # TBSCertificate
        if tbs is None or tbs[0] != 0x30:
            return None
        fields = []
        off = tbs[1]
        while off < tbs[2] and len(fields) < 7:
            el = _der(cert, off, tbs[2])
            if el is None:
                return None
            if not fields and el[0] == 0xA0:               # [0] version: not counted
                off = el[2]
                fields.append(None)
                continue
            fields.append(el)
            off = el[2]
        if fields and fields[0] is None:
            fields = fields[1:]
        # serial, signature algorithm, issuer, validity, subject
        if len(fields) < 5 or fields[2][0] != 0x30 or fields[4][0] != 0x30:
            return None
        issuer = _name(cert, fields[2][1], fields[2][2])
        subject = _name(cert, fields[4][1], fields[4][2])
        if issuer is None and subject is None:
            return None
        return CertificateNames(subject, issuer)
    except Exception:  # defensive: the datapath never sees a parser exception
        return None


from ..compiled import use_compiled  # noqa: E402 -- last: the Cython build of this file, if built
use_compiled(globals())
