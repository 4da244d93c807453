"""A small YAML description of traffic -> raw IP frames (pcap LINKTYPE_RAW).

Built with struct, not scapy: the command runs in CI and on the appliance, where only the
runtime dependencies are installed. Each item is one conversation, whole and well formed
(the TCP handshake, the client's bytes, the server's answer, the close, valid checksums):
what a rule author wants to test is the rules, not the decoder.
"""
import ipaddress
import struct

T0 = 1_700_000_000.0
LINKTYPE_RAW = 101
KINDS = {                       # kind -> (transport, default dport, its own keys)
    "tcp": ("tcp", None, ("payload", "tls_sni", "response", "handshake_only")),
    "udp": ("udp", None, ("payload",)),
    "dns": ("udp", 53, ("query", "qtype")),
    "http": ("tcp", 80, ("host", "uri", "method", "user_agent", "response")),
    "tls": ("tcp", 443, ("sni", "response")),
}
COMMON = ("src", "dst", "sport", "dport", "count")
QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "MX": 15, "TXT": 16, "AAAA": 28, "ANY": 255}
DEFAULT_SRC, DEFAULT_DST = "10.0.0.10", "192.0.2.10"


def _sum16(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _csum(data):
    return ~_sum16(data) & 0xFFFF


def ip_packet(src, dst, proto, l4):
    """IPv4 or IPv6 around a transport header+payload whose checksum field is zero; the
    transport checksum is filled in over the pseudo-header."""
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if s.version == 4:
        pseudo = s.packed + d.packed + struct.pack("!BBH", 0, proto, len(l4))
    else:
        pseudo = s.packed + d.packed + struct.pack("!IxxxB", len(l4), proto)
    off = 16 if proto == 6 else 6
    c = _csum(pseudo + l4) or (0xFFFF if proto == 17 else 0)
    l4 = l4[:off] + struct.pack("!H", c) + l4[off + 2:]
    if s.version == 4:
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0x4000, 64, proto, 0, s.packed, d.packed)
        return hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:] + l4
    return struct.pack("!IHBB16s16s", 6 << 28, len(l4), proto, 64, s.packed, d.packed) + l4


def tcp_segment(sport, dport, seq, ack, flags, data=b""):
    bits = sum(v for k, v in (("F", 1), ("S", 2), ("R", 4), ("P", 8), ("A", 16)) if k in flags)
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, bits, 65535, 0, 0) + data


def udp_datagram(sport, dport, data):
    return struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data


def client_hello(sni):
    """A TLS 1.2 ClientHello record with one cipher suite and the SNI extension."""
    name = sni.encode("idna") if sni else b""
    exts = (struct.pack("!HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name) if sni else b""
    body = (b"\x03\x03" + b"\x11" * 32 + b"\x00" + struct.pack("!H", 2) + b"\x13\x01" + b"\x01\x00"
            + struct.pack("!H", len(exts)) + exts)
    msg = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack("!H", len(msg)) + msg


def dns_query(name, qtype=1, qid=0x1234):
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in dns_labels(name):
        q += bytes([len(label)]) + label
    return q + b"\x00" + struct.pack("!HH", qtype, 1)


_HEX = "0123456789abcdefABCDEF"


def dns_labels(name):
    """A name's wire labels from its text as the rules and the log write it (applayer/dns.py):
    `\\.` is a '.' inside a label, `\\xNN` the byte NN, a '.' otherwise separates labels (one
    trailing '.' is the root); a label of other text is IDNA-encoded whole. So a test can send
    the one label `good.example` (`good\\.example`), which an allow rule for the two labels
    must not pass. ValueError for a name no server would read as written: an empty label, a
    label over 63 bytes, a name over 255, text IDNA cannot encode (or encodes with a '.')."""
    labels, parts = [], []             # parts: this label's str runs and escaped bytes
    i, n = 0, len(name)
    while i < n:
        ch = name[i]
        if ch == "\\" and name[i + 1:i + 2] == ".":
            parts.append(b".")
            i += 2
        elif ch == "\\" and name[i + 1:i + 2] == "x" and len(name[i + 2:i + 4]) == 2 \
                and all(c in _HEX for c in name[i + 2:i + 4]):
            parts.append(bytes([int(name[i + 2:i + 4], 16)]))
            i += 4
        elif ch == "." and not (i + 1 == n and labels + parts):
            labels.append(_label(parts, name))
            parts = []
            i += 1
        elif ch == ".":                    # the trailing root
            i += 1
        else:
            if parts and isinstance(parts[-1], str):
                parts[-1] += ch
            else:
                parts.append(ch)
            i += 1
    labels.append(_label(parts, name))
    if sum(len(x) + 1 for x in labels) + 1 > 255:
        raise ValueError(f"{name!r}: longer than 255 bytes on the wire")
    return labels


def _label(parts, name):
    if not parts:
        raise ValueError(f"{name!r}: an empty label")
    text = [p for p in parts if isinstance(p, str)]
    if len(text) == len(parts) == 1 and not text[0].isascii():
        try:                               # a whole label of other text: IDNA, as a resolver sends it
            raw = text[0].encode("idna")
        except UnicodeError as e:
            raise ValueError(f"{name!r}: {text[0]!r} is not IDNA-encodable ({e})") from None
        if b"." in raw:                    # e.g. U+3002, which IDNA reads as a separator
            raise ValueError(f"{name!r}: {text[0]!r} holds a dot IDNA separates labels at; write it \\.")
    elif any(not t.isascii() for t in text):
        raise ValueError(f"{name!r}: non-ASCII text beside an escape in one label; write its bytes as \\xNN")
    else:
        raw = b"".join(p.encode("ascii") if isinstance(p, str) else p for p in parts)
    if len(raw) > 63:
        raise ValueError(f"{name!r}: a label of {len(raw)} bytes (at most 63)")
    return raw


def http_request(host, uri="/", method="GET", user_agent=None):
    head = f"{method} {uri} HTTP/1.1\r\nHost: {host}\r\n"
    if user_agent:
        head += f"User-Agent: {user_agent}\r\n"
    return (head + "\r\n").encode()


def conversation(kind, spec, sport):
    """One item -> ((src, sport, dst, dport, proto name), [frames]). `spec` is checked (cases.py)."""
    transport, dport_default, _ = KINDS[kind]
    src, dst = spec.get("src", DEFAULT_SRC), spec.get("dst", DEFAULT_DST)
    sport, dport = spec.get("sport", sport), spec.get("dport", dport_default)
    proto = 6 if transport == "tcp" else 17
    key = (str(ipaddress.ip_address(src)), sport, str(ipaddress.ip_address(dst)), dport, transport)
    if transport == "udp":
        data = (dns_query(spec["query"], QTYPES[spec.get("qtype", "A")]) if kind == "dns"
                else _bytes(spec.get("payload", "")))
        return key, [ip_packet(src, dst, proto, udp_datagram(sport, dport, data))]
    if kind == "http":
        data = http_request(spec["host"], spec.get("uri", "/"), spec.get("method", "GET"), spec.get("user_agent"))
    elif kind == "tls" or spec.get("tls_sni") is not None:
        data = client_hello(spec.get("sni", spec.get("tls_sni")))
    else:
        data = _bytes(spec.get("payload", ""))
    answer = _bytes(spec.get("response", ""))
    c, s = 1000, 5000
    out = []

    def seg(to_server, flags, d=b""):
        nonlocal c, s
        if to_server:
            out.append(ip_packet(src, dst, 6, tcp_segment(sport, dport, c, s if "A" in flags else 0, flags, d)))
            c += len(d) + ("S" in flags or "F" in flags)
        else:
            out.append(ip_packet(dst, src, 6, tcp_segment(dport, sport, s, c, flags, d)))
            s += len(d) + ("S" in flags or "F" in flags)
    seg(True, "S")
    seg(False, "SA")
    seg(True, "A")
    if spec.get("handshake_only"):
        return key, out
    if data:
        seg(True, "PA", data)
        seg(False, "A")
    if answer:
        seg(False, "PA", answer)
        seg(True, "A")
    seg(True, "FA")
    seg(False, "FA")
    seg(True, "A")
    return key, out


def _bytes(v):
    return v.encode("utf-8") if isinstance(v, str) else bytes(v)


def write_pcap(path, frames, t0=T0, step=0.001):
    """Classic pcap, raw IP, one frame every `step` seconds."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RAW))
        for i, buf in enumerate(frames):
            usec = round((t0 + i * step) * 1_000_000)
            f.write(struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000, len(buf), len(buf)) + buf)
