"""Small load tools the inline benchmark runs inside its namespaces (stdlib only).

    python3 -m bench.nsload udpflood DST PORT SECONDS SRC[,SRC...]   -> {"sent": n, "seconds": s}
    python3 -m bench.nsload serve ADDR PORT                          (connection + echo server; runs until killed)
    python3 -m bench.nsload conns DST PORT SECONDS THREADS           -> {"conns": n, "seconds": s, "errors": e}
    python3 -m bench.nsload echo DST PORT COUNT                      -> {"rtt_us": [...]}
    python3 -m bench.nsload synflood DST PORT COUNT RATE PREFIX LO HI  -> {"sent": n, "seconds": s}
        (bare SYNs from spoofed sources PREFIX.LO .. PREFIX.HI, random source ports; raw socket)
"""
import json
import random
import socket
import struct
import sys
import threading
import time

PAYLOAD = b"x" * 18          # 18 bytes + 8 UDP + 20 IP = a 46-byte IP packet


def udpflood(dst, port, seconds, sources):
    socks = []
    for i, src in enumerate(sources):
        for k in range(4):                       # 4 flows (source ports) per source address
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((src, 0))
            s.connect((dst, port + k))
            socks.append(s)
    sends = [s.send for s in socks]
    n = 0
    end = time.perf_counter() + seconds
    t0 = time.perf_counter()
    while True:
        for send in sends:
            try:
                send(PAYLOAD)
            except OSError:
                pass                              # ENOBUFS etc.: the queue is full; keep offering
        n += len(sends)
        if n % 4096 < len(sends) and time.perf_counter() >= end:
            break
    return {"sent": n, "seconds": time.perf_counter() - t0}


def serve(addr, port):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, port))
    ls.listen(1024)
    print("ready", flush=True)

    def handle(c):
        try:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while True:
                d = c.recv(4096)
                if not d:
                    break
                if d.startswith(b"GET"):
                    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    break
                c.sendall(d)                     # echo
        except OSError:
            pass
        finally:
            c.close()

    while True:
        c, _ = ls.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()


def conns(dst, port, seconds, threads):
    count = [0] * threads
    errors = [0] * threads
    end = time.perf_counter() + seconds
    req = b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n"

    def loop(i):
        while time.perf_counter() < end:
            try:
                with socket.create_connection((dst, port), timeout=2) as s:
                    s.sendall(req)
                    while s.recv(4096):
                        pass
                count[i] += 1
            except OSError:
                errors[i] += 1
    t0 = time.perf_counter()
    ts = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return {"conns": sum(count), "seconds": time.perf_counter() - t0, "errors": sum(errors)}


def echo(dst, port, count):
    s = socket.create_connection((dst, port), timeout=2)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    out = []
    for _ in range(count):
        t = time.perf_counter()
        s.sendall(b"p")
        s.recv(16)
        out.append((time.perf_counter() - t) * 1e6)
        time.sleep(0.002)                        # low load: one probe at a time
    s.close()
    return {"rtt_us": out}


def synflood(dst, port, count, rate, prefix, lo, hi, ports=64512):
    """`count` bare SYNs at about `rate` per second, each from a new (address, port): every
    one is a new flow for the appliance (`ports` < 64512: source ports drawn from 1024 ..
    1024+ports-1 only, so the flood comes back to 5-tuples it used before). The TCP checksum is the constant part's sum plus
    the words that change (source address, port, sequence number)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    d = socket.inet_aton(dst)
    d_hi, d_lo = struct.unpack("!HH", d)
    const = d_hi + d_lo + 6 + 20 + port + (5 << 12 | 0x02) + 64240      # pseudo header + header
    rng = random.Random(1)
    sources = [socket.inet_aton(f"{prefix}.{i}") for i in range(lo, hi + 1)]
    words = [struct.unpack("!HH", a) for a in sources]
    sent = 0
    t0 = time.perf_counter()
    batch = max(1, rate // 100)
    while sent < count:
        for _ in range(min(batch, count - sent)):
            k = rng.randrange(len(sources))
            sport = rng.randrange(1024, 1024 + ports)
            seq = rng.getrandbits(32)
            c = const + words[k][0] + words[k][1] + sport + (seq >> 16) + (seq & 0xFFFF)
            c = (c & 0xFFFF) + (c >> 16)
            c = (c & 0xFFFF) + (c >> 16)
            tcp = struct.pack("!HHIIBBHHH", sport, port, seq, 0, 5 << 4, 0x02, 64240, ~c & 0xFFFF, 0)
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0, sources[k], d)
            try:
                s.sendto(ip + tcp, (dst, 0))
                sent += 1
            except OSError:                      # a full socket buffer: the next burst tries again
                break
        ahead = sent / rate - (time.perf_counter() - t0)
        if ahead > 0:
            time.sleep(ahead)
    return {"sent": sent, "seconds": time.perf_counter() - t0}


def main(argv):
    cmd = argv[0]
    if cmd == "udpflood":
        r = udpflood(argv[1], int(argv[2]), float(argv[3]), argv[4].split(","))
    elif cmd == "serve":
        return serve(argv[1], int(argv[2]))
    elif cmd == "conns":
        r = conns(argv[1], int(argv[2]), float(argv[3]), int(argv[4]))
    elif cmd == "synflood":
        r = synflood(argv[1], int(argv[2]), int(argv[3]), int(argv[4]), argv[5], int(argv[6]), int(argv[7]),
                     *(int(a) for a in argv[8:9]))
    elif cmd == "echo":
        r = echo(argv[1], int(argv[2]), int(argv[3]))
    else:
        raise SystemExit(__doc__)
    print(json.dumps(r))


if __name__ == "__main__":
    main(sys.argv[1:])
