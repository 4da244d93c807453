"""Which worker a GENEVE datagram goes to: N sockets on one port (SO_REUSEPORT), and a
classic BPF program on the group that picks the socket from the *inner* addresses.

Why not the kernel's own reuseport hash: it hashes the outer addresses and ports, and a
flow's two directions need not share them (the GWLB may use another source port each way,
and a simulator or a GWLB node with one fixed port would send everything to one worker).
Each worker keeps its own flow table, so both directions of a flow must reach the same
worker: the program XORs the inner source and destination addresses (symmetric), folds the
result and takes it modulo N. Addresses only, not ports: the fragments of a datagram (only
the first one has ports) and ICMP errors about a flow (whose outer addresses are the flow's,
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
LD_B_ABS, LD_H_ABS, LD_W_IND, LD_MEM, LDX_MEM = 0x30, 0x28, 0x40, 0x60, 0x61
ST, TAX = 0x02, 0x07
ALU_AND_K, ALU_LSH_K, ALU_RSH_K, ALU_ADD_K, ALU_XOR_X, ALU_MOD_K = 0x54, 0x64, 0x74, 0x04, 0xAC, 0x94
JEQ_K, RET_A = 0x15, 0x16
OFFSET, HASH = 0, 1                       # scratch memory slots


def _ins(code, k=0, jt=0, jf=0):
    return (code, jt, jf, k)


def program(workers: int) -> list:
    """The steering program for `workers` sockets: [(code, jt, jf, k)]."""
    def xor_words(first, count):
        out = [_ins(LDX_MEM, OFFSET), _ins(LD_W_IND, first), _ins(ST, HASH)]
        for i in range(1, count):
            out += [_ins(LDX_MEM, OFFSET), _ins(LD_W_IND, first + 4 * i), _ins(LDX_MEM, HASH), _ins(ALU_XOR_X),
                    _ins(ST, HASH)]
        return out
    v4 = xor_words(12, 2)                 # inner IPv4 source, destination
    v6 = xor_words(8, 8)                  # inner IPv6 source, destination: 8 words
    tail = [_ins(LD_MEM, HASH), _ins(ALU_RSH_K, 16), _ins(LDX_MEM, HASH), _ins(ALU_XOR_X),
            _ins(ALU_MOD_K, workers), _ins(RET_A)]
    head = [_ins(LD_B_ABS, 0), _ins(ALU_AND_K, 0x3F), _ins(ALU_LSH_K, 2), _ins(ALU_ADD_K, 8), _ins(ST, OFFSET),
            _ins(LD_H_ABS, 2)]
    # Protocol Type 0x86DD: the IPv6 words; anything else (0x0800 or malformed): the IPv4 ones
    jump = _ins(JEQ_K, 0x86DD, jt=len(v4) + 1, jf=0)
    skip = _ins(0x05, len(v6))            # BPF_JMP|BPF_JA: over the IPv6 part
    return head + [jump] + v4 + [skip] + v6 + tail


def worker_of(datagram: bytes, workers: int) -> int:
    """What the program computes, in Python: the tests' and the docs' reference."""
    inner = 8 + (datagram[0] & 0x3F) * 4
    v6 = datagram[2:4] == b"\x86\xdd"
    first, count = (8, 8) if v6 else (12, 2)
    if len(datagram) < inner + first + 4 * count:
        return 0
    h = 0
    for i in range(count):
        h ^= struct.unpack_from("!I", datagram, inner + first + 4 * i)[0]
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
