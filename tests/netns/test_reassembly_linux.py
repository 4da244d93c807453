"""The stream the appliance reads equals what a Linux receiver delivers: a hypothesis property
checked against a real socket.

Two namespaces of our own, A (the client) and B (the server), joined by a veth pair created
inside them. B runs a real listening socket. From A we craft the handshake and then data
segments with raw sockets (A's kernel has no socket for the connection, so its RSTs are
dropped by an iptables rule in A): random orders, overlaps and duplicates with conflicting
bytes. What the server application reads is compared with what appliance.stream.ClientStream
reads from the same packets, decoded with appliance.decode and fed as the Inspector feeds them.
"""
import ctypes
import itertools
import os
import secrets
import select
import shutil
import socket
import struct
import subprocess
import time
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from scapy.all import IP, TCP, raw

from appliance.decode import decode_l3
from appliance.flow import FlowTable
from appliance.stream import ClientStream

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates network namespaces")]

CLIENT, SERVER, PORT = "10.213.0.1", "10.213.0.2", 8080
QUIET = 0.08                  # seconds without new bytes before the server's reading is taken as done
_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def sh(*cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)} -> {r.returncode}: {r.stderr.strip()}")


@contextmanager
def netns(name):
    """Run the block in namespace `name` (this thread only); sockets made here stay in it."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET):
            raise OSError(ctypes.get_errno(), f"setns {name}")
        yield
    finally:
        if _libc.setns(own, CLONE_NEWNET):
            raise OSError(ctypes.get_errno(), "setns back")
        os.close(own)
        os.close(target)


class Lab:
    """Namespaces A and B, a listening socket in B, raw sockets in A."""

    def __init__(self):
        tag = secrets.token_hex(3)
        self.a, self.b = f"rq-a-{tag}", f"rq-b-{tag}"
        self.created = []
        self.ports = itertools.count(20000 + secrets.randbelow(20000))

    def up(self):
        for ns in (self.a, self.b):
            sh("ip", "netns", "add", ns)
            self.created.append(ns)
        sh("ip", "link", "add", "va", "netns", self.a, "type", "veth", "peer", "name", "vb", "netns", self.b)
        for ns, dev, addr in ((self.a, "va", CLIENT), (self.b, "vb", SERVER)):
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{addr}/24", "dev", dev)
            sh("ip", "netns", "exec", ns, "ip", "link", "set", dev, "up")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        # A has no socket for the crafted connection: keep its kernel's RSTs off the wire.
        sh("ip", "netns", "exec", self.a, "iptables", "-A", "OUTPUT", "-p", "tcp",
           "--tcp-flags", "RST", "RST", "-j", "DROP")
        with netns(self.b):
            self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind((SERVER, PORT))
            self.listener.listen(64)
        with netns(self.a):
            self.tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            self.rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
        return self

    def down(self):
        for s in ("listener", "tx", "rx"):
            if hasattr(self, s):
                getattr(self, s).close()
        for ns in reversed(self.created):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def send(self, pkt):
        wire = raw(pkt)
        self.tx.sendto(wire, (SERVER, 0))
        return wire

    def synack(self, sport, timeout=2.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.rx], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                break
            wire = self.rx.recv(65535)
            hl = (wire[0] & 15) * 4
            sp, dp = struct.unpack_from("!HH", wire, hl)
            if sp == PORT and dp == sport and wire[hl + 13] & 0x12 == 0x12:
                return wire
        raise AssertionError("no SYN/ACK from the server")

    def connection(self, segments, urgent=None):
        """Handshake, then `segments` [(offset from ISN+1, bytes, urgent pointer[, FIN])]; returns
        (what the server read, every packet of the conversation as (wire, to_server))."""
        sport = next(self.ports)
        isn = secrets.randbits(32)
        ip = IP(src=CLIENT, dst=SERVER)
        sent = [(self.send(ip / TCP(sport=sport, dport=PORT, flags="S", seq=isn, window=65535)), True)]
        sa = self.synack(sport)
        sent.append((sa, False))
        hl = (sa[0] & 15) * 4
        ack = (struct.unpack_from("!I", sa, hl + 4)[0] + 1) & 0xFFFFFFFF
        base = (isn + 1) & 0xFFFFFFFF
        sent.append((self.send(ip / TCP(sport=sport, dport=PORT, flags="A", seq=base, ack=ack, window=65535)), True))
        self.listener.settimeout(2.0)
        conn, _ = self.listener.accept()
        try:
            for off, data, urg, *fin in segments:
                flags = ("PAU" if urg else "PA") + ("F" if fin and fin[0] else "")
                seg = TCP(sport=sport, dport=PORT, flags=flags, seq=(base + off) & 0xFFFFFFFF, ack=ack,
                          window=65535, urgptr=urg or 0)
                sent.append((self.send(ip / seg / data), True))
            return read_until_quiet(conn), sent
        finally:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()


def read_until_quiet(conn):
    conn.setblocking(False)
    got = bytearray()
    last = time.monotonic()
    while time.monotonic() - last < QUIET:
        r, _, _ = select.select([conn], [], [], QUIET)
        if r:
            try:
                chunk = conn.recv(65536)
            except BlockingIOError:
                continue
            if not chunk:
                break
            got += chunk
            last = time.monotonic()
    return bytes(got)


def appliance_reads(sent):
    """ClientStream over the decoded packets, fed as the Inspector feeds it: flow tracking
    first (it marks the segments the server's TCP discards), then the stream."""
    flows = FlowTable(1000, verify_checksums=True)
    st, found = None, []
    for wire, _ in sent:
        pkt = decode_l3(wire, 1.0)
        flow, to_server, _ = flows.lookup(pkt)
        if st is None:
            st = ClientStream.open(pkt, to_server, flow.isn)
        if st is not None:
            st.feed(pkt, to_server, 8192, found)
    return st.data if st is not None else b""


@pytest.fixture(scope="module")
def lab():
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    lab = Lab()
    try:
        yield lab.up()
    finally:
        lab.down()


# A segment: where it starts (from ISN+1), how long, and the byte it is filled with; the
# fill differs between segments, so an overlap shows whose copy the reader kept.
segment = st.tuples(st.integers(0, 12), st.integers(1, 8), st.sampled_from(b"abcdefgh"))


@st.composite
def conversations(draw):
    segs = draw(st.lists(segment, min_size=1, max_size=5))
    if draw(st.booleans()):                        # often: one segment covers the start, so bytes flow
        segs.insert(draw(st.integers(0, len(segs))), (0, draw(st.integers(1, 20)), ord("z")))
    if segs and draw(st.booleans()):               # a duplicate of one of them, sent again later
        segs.insert(draw(st.integers(0, len(segs))), draw(st.sampled_from(segs)))
    return [(off, bytes([fill]) * n, None) for off, n, fill in segs]


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(segments=conversations())
def test_stream_equals_what_linux_delivers(lab, segments):
    server, sent = lab.connection(segments)
    assert appliance_reads(sent) == server


def test_urgent_pointer_into_the_next_segment(lab):
    # The pointer of "Host: ev" names the first byte of the next segment: Linux (no
    # SO_OOBINLINE) takes "X" out when it arrives; the appliance must read the same.
    server, sent = lab.connection([(0, b"Host: ev", 9), (8, b"Xil.example", None)])
    assert server == b"Host: evil.example"
    assert appliance_reads(sent) == server


def test_plain_in_order_segments(lab):
    # The harness itself: two in-order segments arrive whole on both sides.
    server, sent = lab.connection([(0, b"GET / HTTP/1.1\r\n", None), (16, b"Host: a.example\r\n\r\n", None)])
    assert server == b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n"
    assert appliance_reads(sent) == server


def test_fin_on_a_retransmission_ending_at_rcv_nxt(lab):
    # "abc" again with a FIN: its data is all delivered but the FIN is at rcv_nxt, so Linux
    # takes it (end_seq counts the FIN) and the application reads nothing after it; the
    # segment that follows at the FIN's position draws a reset, its bytes never read
    server, sent = lab.connection([(0, b"abc", None), (0, b"abc", None, True), (3, b"XHost: evil", None)])
    assert server == b"abc"
    assert appliance_reads(sent) == server
