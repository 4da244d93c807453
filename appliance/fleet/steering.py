"""Which worker a GENEVE datagram goes to: N sockets on one port (SO_REUSEPORT), and a
classic BPF program on the group that picks the socket from the *inner* addresses.

Why not the kernel's own reuseport hash: it hashes the outer addresses and ports, and a
flow's two directions need not share them (the GWLB may use another source port each way,
and a simulator or a GWLB node with one fixed port would send everything to one worker).
Each worker keeps its own flow table, so both directions of a flow must reach the same
worker: the program XORs the inner source and destination addresses (symmetric), folds the
result and takes it modulo N. Addresses only, not ports: the fragments of a datagram (only
the first one has ports) and ICMP errors about a flow (found past IPv6 extension headers
as the decoder finds them) (whose outer addresses are the flow's,
reversed or from a router) land on the same worker in the common case.

The program reads the datagram from the UDP payload on (the kernel pulls the UDP header
before it runs the program, net/core/sock_reuseport.c); a datagram too short for a load
makes the program return 0 (worker 0, which counts it as malformed).

The supervisor creates and keeps the sockets (fleet.supervisor): a worker that dies does not
close its socket, so the group's order (the program's index) never changes, and what comes
for that worker while it restarts waits in its socket's buffer.
"""
import ctypes
import socket
import struct

SO_ATTACH_REUSEPORT_CBPF = 51
SO_REUSEPORT = getattr(socket, "SO_REUSEPORT", 15)

# classic BPF opcodes (linux/filter.h)
LD_B_ABS, LD_H_ABS, LD_B_IND, LD_H_IND, LD_W_IND, LD_MEM, LDX_MEM = 0x30, 0x28, 0x50, 0x48, 0x40, 0x60, 0x61
ST, STX, TAX, TXA = 0x02, 0x03, 0x07, 0x87
AND_K, LSH_K, RSH_K, ADD_K, ADD_X, XOR_X, MOD_K = 0x54, 0x64, 0x74, 0x04, 0x0C, 0xAC, 0x94
JEQ_K, JGE_K, JA, RET_A = 0x15, 0x35, 0x05, 0x16
OFFSET, HASH, CUR, NEXT = 0, 1, 2, 3      # scratch memory slots: where the addresses are, the hash,
                                          # an IPv6 header in the chain, the one after it
IPV6_SKIPPED = (0, 43, 60)                # hop-by-hop, routing, destination options: (len + 1) * 8 bytes
IPV6_AH = 51                              # (len + 2) * 4 bytes
IPV6_CHAIN = 64                           # headers walked, as decode (MAX_IPV6_EXTHDRS)
ICMP4_ERRORS = (3, 4, 5, 11, 12)          # unreachable, source quench, redirect, time exceeded, parameter
ICMP6_INFO = 128                          # ICMPv6 types below are errors


def _assemble(items):
    """[(code, k, jt_label, jf_label) | "label"] -> [(code, jt, jf, k)]: forward jumps by name."""
    where, n = {}, 0
    for it in items:
        if isinstance(it, str):
            where[it] = n
        else:
            n += 1
    out, n = [], 0
    for it in items:
        if isinstance(it, str):
            continue
        code, k, jt, jf = (*it, None, None)[:4]
        n += 1
        if code == JA:
            k, jt, jf = where[k] - n, None, None
        out.append((code, where[jt] - n if jt else 0, where[jf] - n if jf else 0, k))
    return out


def _xor_words(first, count, done):
    """HASH = XOR of `count` 32-bit words from M[OFFSET] + first; then jump to `done`."""
    out = [(LDX_MEM, OFFSET), (LD_W_IND, first), (ST, HASH)]
    for i in range(1, count):
        out += [(LDX_MEM, OFFSET), (LD_W_IND, first + 4 * i), (LDX_MEM, HASH), (XOR_X, 0), (ST, HASH)]
    return out + [(JA, done)]


def _ipv6_chain():
    """A = a next header, M[CUR] where that header starts: past the extension headers decode
    reads past (an ICMPv6 error behind them is related to the flow it quotes there), to
    "v6icmp" at an ICMPv6 header, else to "v6addr". Classic BPF jumps only forward, so the
    walk is unrolled; its jt/jf reach 255 instructions, so far targets go through a JA."""
    out = []
    for i in range(IPV6_CHAIN):
        out += [(JEQ_K, 58, f"icmp{i}"), *[(JEQ_K, nh, f"skip{i}") for nh in IPV6_SKIPPED], (JEQ_K, IPV6_AH, f"ah{i}"),
                (JA, "v6addr"),
                f"icmp{i}", (JA, "v6icmp"),
                f"ah{i}", (LDX_MEM, CUR), (LD_B_IND, 1), (ADD_K, 2), (LSH_K, 2), (JA, f"len{i}"),
                f"skip{i}", (LDX_MEM, CUR), (LD_B_IND, 1), (ADD_K, 1), (LSH_K, 3),
                f"len{i}", (ADD_X, 0), (ST, NEXT), (LD_B_IND, 0), (LDX_MEM, NEXT), (STX, CUR)]
    return out + [(JA, "v6addr")]


def program(workers: int) -> list:
    """The steering program for `workers` sockets: [(code, jt, jf, k)]. The inner packet's
    addresses, or for an ICMP error the addresses of the packet it quotes (an error from a
    router on the way is about a flow between two others: it belongs with that flow)."""
    return _assemble([
        (LD_B_ABS, 0), (AND_K, 0x3F), (LSH_K, 2), (ADD_K, 8), (ST, OFFSET),     # the inner packet
        (LD_H_ABS, 2), (JEQ_K, 0x86DD, "v6", "v4"),
        "v4", (LDX_MEM, OFFSET), (LD_B_IND, 9), (JEQ_K, 1, "v4whole", "v4addr"),
        # a fragment (offset or more-fragments set): a non-first one has no ICMP header, its
        # first byte is data; every fragment goes by the addresses, so all meet
        "v4whole", (LD_H_IND, 6), (AND_K, 0x3FFF), (JEQ_K, 0, "v4icmp", "v4addr"),
        "v4icmp", (LD_B_IND, 0), (AND_K, 0x0F), (LSH_K, 2), (ADD_X, 0), (TAX, 0), (LD_B_IND, 0),
        *[(JEQ_K, t, "v4quote", None) for t in ICMP4_ERRORS], (JA, "v4addr"),
        "v4quote", (TXA, 0), (ADD_K, 8), (ST, OFFSET),                          # the quoted IPv4 header
        "v4addr", *_xor_words(12, 2, "hash"),
        "v6", (LD_MEM, OFFSET), (ADD_K, 40), (ST, CUR), (LDX_MEM, OFFSET), (LD_B_IND, 6),
        *_ipv6_chain(),
        "v6icmp", (LDX_MEM, CUR), (LD_B_IND, 0), (JGE_K, ICMP6_INFO, "v6addr", "v6quote"),
        "v6quote", (LD_MEM, CUR), (ADD_K, 8), (ST, OFFSET),                      # the quoted IPv6 header
        "v6addr", *_xor_words(8, 8, "hash"),
        "hash", (LD_MEM, HASH), (RSH_K, 16), (LDX_MEM, HASH), (XOR_X, 0), (MOD_K, workers), (RET_A, 0),
    ])


def worker_of(datagram: bytes, workers: int) -> int:
    """What the program computes, in Python: the tests' and the docs' reference."""
    try:
        at = 8 + (datagram[0] & 0x3F) * 4
        v6 = datagram[2:4] == b"\x86\xdd"
        if not v6 and datagram[at + 9] == 1 and not struct.unpack_from("!H", datagram, at + 6)[0] & 0x3FFF:
            icmp = at + (datagram[at] & 0x0F) * 4
            if datagram[icmp] in ICMP4_ERRORS:
                at = icmp + 8
        elif v6:
            nh, cur = datagram[at + 6], at + 40
            for _ in range(IPV6_CHAIN):
                if nh in IPV6_SKIPPED:
                    nh, cur = datagram[cur], cur + (datagram[cur + 1] + 1) * 8
                elif nh == IPV6_AH:
                    nh, cur = datagram[cur], cur + (datagram[cur + 1] + 2) * 4
                else:
                    break
            if nh == 58 and datagram[cur] < ICMP6_INFO:
                at = cur + 8
        first, count = (8, 8) if v6 else (12, 2)
        h = 0
        for i in range(count):
            h ^= struct.unpack_from("!I", datagram, at + first + 4 * i)[0]
    except (IndexError, struct.error):
        return 0                          # a load past the end: the program returns 0
    return (h ^ (h >> 16)) % workers


class _Filter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_Filter))]


def attach(sock, workers: int) -> None:
    """Put the steering program on `sock`'s reuseport group (raises OSError if refused)."""
    ins = program(workers)
    arr = (_Filter * len(ins))(*[_Filter(c, jt, jf, k) for c, jt, jf, k in ins])
    prog = _Fprog(len(ins), ctypes.cast(arr, ctypes.POINTER(_Filter)))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, bytes(memoryview(prog)))


def sockets(address, port, workers, make) -> list:
    """`workers` sockets bound to one port in order (their index is the program's answer),
    the program attached; `make(address, port, reuse_port)` creates and binds one."""
    if port:
        # Another process's SO_REUSEPORT sockets on the port (a second instance, a leftover)
        # would silently join the group and take the traffic the program sends to their
        # indexes: a plain socket (no SO_REUSEPORT, no SO_REUSEADDR) binds only where nobody is.
        probe = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.bind((address, port))
        except OSError as e:
            raise OSError(e.errno, f"UDP port {port} is already in use on {address} (another appliance?)") from None
        finally:
            probe.close()
    socks = []
    try:
        for _ in range(workers):
            socks.append(make(address, port, reuse_port=True))
            port = socks[0].getsockname()[1]    # port 0: the first socket's, for the rest
        attach(socks[0], workers)
    except OSError:
        for s in socks:
            s.close()
        raise
    return socks
