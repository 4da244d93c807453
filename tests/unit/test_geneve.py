"""GENEVE as GWLB sends it: the header and AWS options, strict validation, never a raise."""
import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.contrib.geneve import GENEVE, GeneveOptions
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.packet import raw

from appliance import geneve
from appliance.geneve import AWS_CLASS, Tunnel, encapsulate, parse

INNER4 = raw(IP(src="10.1.0.2", dst="10.2.0.2") / TCP(sport=40000, dport=80, flags="S"))
INNER6 = raw(IPv6(src="fd01::2", dst="fd02::2") / UDP(sport=5353, dport=53) / b"q")
ENI, ATT, COOKIE = 0x0123456789ABCDEF, 0xFEDCBA9876543210, 0xCAFEF00D
FUZZ = settings(max_examples=300, deadline=None)


def opt(cls, typ, data):
    return struct.pack("!HBB", cls, typ, len(data) // 4) + data


def datagram(options, inner=INNER4, version=0, oam=0, protocol=0x0800, optlen=None):
    optlen = len(options) // 4 if optlen is None else optlen
    return struct.pack("!BBH", (version << 6) | optlen, oam << 7, protocol) + b"\0\0\x07\0" + options + inner


AWS_OPTS = (opt(AWS_CLASS, 1, ENI.to_bytes(8, "big")) + opt(AWS_CLASS, 2, ATT.to_bytes(8, "big"))
            + opt(AWS_CLASS, 3, COOKIE.to_bytes(4, "big")))


def test_aws_options_are_read_and_the_inner_packet_found():
    d = datagram(AWS_OPTS)
    t = parse(d)
    assert isinstance(t, Tunnel)
    assert (t.eni, t.attachment, t.cookie, t.vni) == (ENI, ATT, COOKIE, 7)
    assert d[t.header_len:] == INNER4


def test_scapy_built_datagram_agrees():
    """An independent encoder (scapy's GENEVE layer) and ours produce what parse reads alike."""
    opts = [GeneveOptions(classid=AWS_CLASS, type=1, data=ENI.to_bytes(8, "big")),
            GeneveOptions(classid=AWS_CLASS, type=2, data=ATT.to_bytes(8, "big")),
            GeneveOptions(classid=AWS_CLASS, type=3, data=COOKIE.to_bytes(4, "big"))]
    d = raw(GENEVE(proto=0x86DD, options=opts) / IPv6(src="fd01::2", dst="fd02::2") / UDP(sport=5353, dport=53) / b"q")
    t = parse(d)
    assert (t.eni, t.attachment, t.cookie, t.protocol) == (ENI, ATT, COOKIE, 0x86DD)
    assert d == encapsulate(ENI, ATT, COOKIE, INNER6)


def test_unknown_non_critical_option_is_kept_critical_one_drops():
    extra = opt(0x0105, 0x01, b"abcd")
    t = parse(datagram(AWS_OPTS + extra))
    assert isinstance(t, Tunnel) and t.header_len == 8 + len(AWS_OPTS) + 8
    assert parse(datagram(AWS_OPTS + opt(0x0105, 0x81, b"abcd"))) == "geneve.unknown_critical_option"


def test_each_malformation_has_its_reason():
    cases = {
        "geneve.header_too_small": b"\0" * 7,
        "geneve.bad_version": datagram(AWS_OPTS, version=1),
        "geneve.oam": datagram(AWS_OPTS, oam=1),
        "geneve.options_too_long": datagram(AWS_OPTS, inner=b"", optlen=63),
        "geneve.bad_option_length": datagram(opt(AWS_CLASS, 1, ENI.to_bytes(8, "big"))[:4] + b"\0" * 4,
                                             optlen=2),
        "geneve.aws_option_length": datagram(opt(AWS_CLASS, 1, b"\0" * 4) + AWS_OPTS[12:]),
        "geneve.duplicate_aws_option": datagram(AWS_OPTS + opt(AWS_CLASS, 3, b"\0" * 4)),
        "geneve.missing_aws_option": datagram(AWS_OPTS[:-8]),
        "geneve.bad_protocol": datagram(AWS_OPTS, protocol=0x6558),
        "geneve.no_inner_packet": datagram(AWS_OPTS, inner=b""),
        "geneve.inner_version_mismatch": datagram(AWS_OPTS, inner=INNER6),
    }
    for reason, d in cases.items():
        assert parse(d) == reason, reason
        assert reason in geneve.REASONS


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_never_raise(data):
    r = parse(data)
    assert isinstance(r, (Tunnel, str))
    if isinstance(r, str):
        assert r in geneve.REASONS


@FUZZ
@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1),
       st.sampled_from([INNER4, INNER6]), st.integers(0, 2**24 - 1))
def test_roundtrip(eni, att, cookie, inner, vni):
    d = encapsulate(eni, att, cookie, inner, vni=vni)
    t = parse(d)
    assert (t.eni, t.attachment, t.cookie, t.vni) == (eni, att, cookie, vni)
    assert d[t.header_len:] == inner


@FUZZ
@given(st.data())
def test_mutations_never_raise_and_a_tunnel_is_always_consistent(data):
    d = bytearray(encapsulate(ENI, ATT, COOKIE, INNER4))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(d) - 1))
        d[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(d)))
    r = parse(bytes(d[:cut]))
    if isinstance(r, Tunnel):       # whatever was accepted is self-consistent
        assert 8 <= r.header_len < cut
        assert d[r.header_len] >> 4 == geneve.INNER_VERSION[r.protocol]
    else:
        assert r in geneve.REASONS
