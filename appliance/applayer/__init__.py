"""App-layer parsers: names out of the first bytes of a flow.

Each parser takes the contiguous bytes the stream layer has so far and answers
with a result, `MORE` (need more bytes; may still be this protocol), `NOT`
(definitely not this protocol) or `CAP` (a limit was hit before the name: the
appliance cannot know it). None of them raise on hostile input.

`detect()` guesses the protocol by content; ports only break ties.
"""

from appliance.packet import TCP, UDP


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name

    def __bool__(self):
        # Neither sentinel is a result; `if result:` must not mistake them for one.
        return False


MORE = _Sentinel("MORE")
NOT = _Sentinel("NOT")
CAP = _Sentinel("CAP")     # a limit (the protocol's, or a resource bound) is hit before the name: cannot know

DNS_PORTS = (53, 5353, 5355)
TLS_PORTS = (443, 853, 993, 995, 465, 636, 8443)
HTTP_PORTS = (80, 8080, 8000, 8008, 3128)
DETECT_BYTES = 4096        # the first bytes of a flow detect() looks at


def _port_pick(candidates, sport, dport):
    for name, ports in (("dns", DNS_PORTS), ("tls", TLS_PORTS), ("http", HTTP_PORTS)):
        if name in candidates and (sport in ports or dport in ports):
            return name
    return candidates[0]


def detect(data: bytes, proto: int, sport: int, dport: int) -> str | None:
    """Guess the app protocol of a flow from its first bytes ("dns", "tls", "http").

    None when nothing fits (yet). Content decides; ports only break ties between
    protocols that all fit.
    """
    try:
        data = bytes(data[:DETECT_BYTES])
        candidates = []
        if proto == UDP:
            if dns.plausible(data):
                candidates.append("dns")
        elif proto == TCP:
            if tls.looks_like(data):
                candidates.append("tls")
            if http.looks_like(data):
                candidates.append("http")
            if len(data) >= 2:
                frame = data[2:2 + int.from_bytes(data[:2], "big")]
                if dns.plausible(frame):
                    candidates.append("dns")
                elif not candidates and dport in DNS_PORTS and len(data) >= 6:
                    # a DNS server reads length-prefixed messages whatever the first one is:
                    # dnsmasq skips one shorter than a header, a response, an odd opcode or
                    # counts (checked live) and answers the next; so nothing else fitting, a
                    # TCP flow to a DNS port is DNS, or the next query would go unseen. The server's
                    # port only (a client picks its own), and not before 6 bytes: a ClientHello or a
                    # request line fits nothing in its first two
                    candidates.append("dns")
        if not candidates:
            return None
        if len(candidates) == 1:
            return candidates[0]
        return _port_pick(candidates, sport, dport)
    except Exception:  # a guess must never take the datapath down
        return None


# Last, so the parser modules can import MORE/NOT/CAP from this package; imported here once
# rather than in detect(), where the import statement cost ~0.8 us on each flow's first bytes.
from appliance.applayer import dns, http, tls  # noqa: E402
