"""QueueSocket.read_waiting, the two-queue loop's read (overload.established_first): at most its
limit of messages, never a wait on an empty socket, accepts held and sent as one batch.
Messages come from a second netlink socket of ours, addressed to the queue socket's portid
(as the kernel addresses them); verdicts go to the kernel, for a queue nobody binds."""
import os
import socket
import struct

import pytest

from appliance.source import nfqueue as nq
from appliance.source.nfqueue import QueueSocket

UNBOUND = 65530                   # a queue number no test binds


def netlink():
    if os.geteuid() != 0:
        pytest.skip("netfilter netlink sockets need CAP_NET_ADMIN")
    try:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, nq.NETLINK_NETFILTER)
        s.bind((0, 0))
    except OSError as e:
        pytest.skip(f"no netfilter netlink socket here: {e}")
    return s


def packet(packet_id):
    """A queued packet's message: the packet header (id) and a 28-byte IPv4/UDP payload."""
    def attr(atype, value):
        return struct.pack("=HH", 4 + len(value), atype) + value + b"\0" * (-len(value) % 4)
    payload = bytes.fromhex("4500001c0001000040110000c0000201c0000202") + b"\x9c\x40\x23\x28\x00\x08\x00\x00"
    body = struct.pack("!BBH", 2, 0, 0) + attr(nq.NFQA_PACKET_HDR, struct.pack("!IHB", packet_id, 0x0800, 2))
    body += attr(nq.NFQA_PAYLOAD, payload)
    return struct.pack("=IHHII", 16 + len(body), nq.PACKET_MSG, 0, 0, 0) + body


def test_read_waiting_reads_at_most_its_limit_then_the_rest_then_nothing_without_waiting():
    sock, sender = netlink(), netlink()
    queue = QueueSocket(sock, lambda: False, wait=5.0, queue_num=UNBOUND)
    for i in range(1, 6):
        sender.sendto(packet(i), (sock.getsockname()[0], 0))
    got = []

    def on_packet(payload, packet_id, indev, outdev, mark):
        got.append(packet_id)
        queue.accept(packet_id)               # held while draining: one batch at the end

    assert queue.read_waiting(on_packet, 3) == 3
    assert got == [1, 2, 3]
    assert (queue.batches, queue.batched, queue.held, queue.bursting) == (1, 3, 0, False)
    assert queue.read_waiting(on_packet, 100) >= 2   # the rest (and the kernel's refusal of the batch: no one binds the queue)
    assert got == [1, 2, 3, 4, 5] and queue.batched == 5
    while queue.read_waiting(on_packet, 100):        # the kernel's refusals of the last batch
        pass
    # an empty socket: 0 at once (a blocking read would wait SO_RCVTIMEO, `wait`: 5 s, for nothing)
    assert queue.read_waiting(on_packet, 100) == 0
    assert queue.messages >= 5
    sender.close()
    queue.close()
