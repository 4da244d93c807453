"""Generate the mixed benchmark capture: HTTP, TLS (with SNI), DNS, bulk TCP and UDP flows,
interleaved, Ethernet/IPv4, written with struct (no scapy, no per-packet objects).

    python3 -m bench.gen_pcap [--packets N] [--out PATH] [--seed S]

The file is cached under bench/.cache (or $BENCH_CACHE) keyed by its size and seed, so
reruns reuse it. Checksums are left 0: the pipeline does not verify them.
"""
import argparse
import os
import random
import struct
import sys
import time

from .common import CACHE

ETH = struct.Struct("!6s6sH")
IP4 = struct.Struct("!BBHHHBBH4s4s")
TCPH = struct.Struct("!HHIIBBHHH")
UDPH = struct.Struct("!HHHH")
REC = struct.Struct("<IIII")
MAC_C, MAC_S = bytes.fromhex("02000000000a"), bytes.fromhex("02000000000b")
FIN, SYN, RST, PSH, ACK = 1, 2, 4, 8, 16
MSS = 1448

# Server names and HTTP hosts the traffic uses; the benchmark rule generator draws
# its name rules from a disjoint pool, plus a few of these so some rules match.
SNI_NAMES = [f"api{i}.service{i % 37}.example.com" for i in range(200)]
HTTP_HOSTS = [f"www{i}.shop{i % 23}.example.net" for i in range(200)]
DNS_NAMES = [f"host{i}.zone{i % 41}.example.org" for i in range(500)]


def pcap_header():
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)


def client_hello(sni):
    name = sni.encode()
    sni_ext = struct.pack("!HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    versions = struct.pack("!HHB", 43, 5, 4) + b"\x03\x04\x03\x03"
    groups = struct.pack("!HHH", 10, 4, 2) + b"\x00\x1d"
    exts = sni_ext + versions + groups
    body = (b"\x03\x03" + bytes(32) + b"\x20" + bytes(32) + struct.pack("!H", 4) + b"\x13\x01\x13\x02"
            + b"\x01\x00" + struct.pack("!H", len(exts)) + exts)
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def dns_query(name, qid):
    q = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\x00"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + b"\x00\x01\x00\x01"


def dns_answer(name, qid):
    q = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\x00"
    ans = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4) + b"\xc6\x33\x64\x07"
    return struct.pack("!HHHHHH", qid, 0x8180, 1, 1, 0, 0) + q + b"\x00\x01\x00\x01" + ans


_FILL = bytes(random.Random(7).getrandbits(8) for _ in range(MSS))


def http_response_head(total):
    """A status line and headers whose Content-Length makes head + body `total` bytes."""
    def head(n):
        return b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n" % n
    body = total - len(head(0))
    while len(head(body)) + body > total:
        body -= 1
    return head(body)


# A TLS 1.3 ServerHello record (supported_versions: 0x0304): the server's first bytes, so the
# protocol logs read it (ja3s, the selected version) as they would a real server's
SERVER_HELLO = (b"\x16\x03\x03\x00\x30\x02\x00\x00\x2c\x03\x03" + bytes(32) + b"\x00\x13\x01\x00"
                + b"\x00\x06\x00\x2b\x00\x02\x03\x04")


def _tcp_flow(rng, request, response_len, client_data=0, response_head=b"", answer=b""):
    """(to_server, flags, payload) steps of one TCP conversation with a handshake and FIN close.
    The response is `response_head` (a status line) then filler, response_len bytes in all;
    `answer` (a ServerHello) comes right after the request, before the client's data."""
    steps = [(True, SYN, b""), (False, SYN | ACK, b""), (True, ACK, b"")]
    if request:
        steps.append((True, PSH | ACK, request))
    if answer:
        steps.append((False, PSH | ACK, answer))
    sent = 0
    n = 0
    while sent < client_data:
        k = min(MSS, client_data - sent)
        steps.append((True, ACK, _FILL[:k]))
        sent += k
        n += 1
        if n % 2 == 0:
            steps.append((False, ACK, b""))
    sent = 0
    n = 0
    while sent < response_len:
        k = min(MSS, response_len - sent)
        chunk = (response_head + _FILL)[:k] if sent == 0 else _FILL[:k]
        steps.append((False, ACK if sent + k < response_len else PSH | ACK, chunk))
        sent += k
        n += 1
        if n % 2 == 0:
            steps.append((True, ACK, b""))
    steps += [(True, FIN | ACK, b""), (False, FIN | ACK, b""), (True, ACK, b"")]
    return steps


def flow_steps(kind, rng, qid):
    if kind == "http":
        host = rng.choice(HTTP_HOSTS)
        req = (f"GET /item/{rng.randrange(10**6)} HTTP/1.1\r\nHost: {host}\r\n"
               f"User-Agent: bench/1.0\r\nAccept: */*\r\n\r\n").encode()
        size = rng.randrange(500, 4 * MSS)
        return 80, 6, _tcp_flow(rng, req, size, response_head=http_response_head(size))
    if kind == "tls":
        return 443, 6, _tcp_flow(rng, client_hello(rng.choice(SNI_NAMES)), rng.randrange(2000, 6 * MSS),
                                 client_data=rng.randrange(100, 1500), answer=SERVER_HELLO)
    if kind == "bulk":
        port = rng.choice((22, 873, 5001, 9000))
        return port, 6, _tcp_flow(rng, b"", rng.randrange(40, 80) * MSS)
    if kind == "dns":
        name = rng.choice(DNS_NAMES)
        return 53, 17, [(True, 0, dns_query(name, qid)), (False, 0, dns_answer(name, qid))]
    # plain UDP: a short exchange of datagrams of mixed size
    port = rng.choice((4500, 5060, 3478, 12000 + rng.randrange(1000)))
    return port, 17, [(rng.random() < 0.6, 0, _FILL[:rng.randrange(60, 1200)]) for _ in range(rng.randrange(4, 16))]


KINDS = ("http", "tls", "dns", "bulk", "udp")
WEIGHTS = (25, 28, 30, 4, 13)


def generate(path, packets, seed=1, concurrent=64):
    """Write `packets` packets to path (atomically). Returns (packets, flows)."""
    rng = random.Random(seed)
    tmp = path + ".tmp"
    ts = 1_700_000_000.0
    active = []
    flows = 0
    n = 0
    ip_pack, tcp_pack, udp_pack, eth_pack, rec_pack = IP4.pack, TCPH.pack, UDPH.pack, ETH.pack, REC.pack
    eth_cs = eth_pack(MAC_S, MAC_C, 0x0800)
    eth_sc = eth_pack(MAC_C, MAC_S, 0x0800)

    def new_flow():
        nonlocal flows
        flows += 1
        kind = rng.choices(KINDS, WEIGHTS)[0]
        dport, proto, steps = flow_steps(kind, rng, flows & 0xFFFF)
        c = struct.pack("!BBBB", 10, rng.randrange(256), rng.randrange(256), rng.randrange(1, 255))
        s = struct.pack("!BBBB", rng.choice((198, 203, 151)), rng.randrange(256), rng.randrange(256), rng.randrange(1, 255))
        return [proto, c, s, 1024 + rng.randrange(60000), dport, rng.getrandbits(32), rng.getrandbits(32), steps, 0]

    with open(tmp, "wb") as f:
        f.write(pcap_header())
        out = []
        while n < packets:
            if len(active) < concurrent:
                active.append(new_flow())
            i = n % len(active)
            fl = active[i]
            proto, c, s, cport, sport_, cseq, sseq, steps, k = fl
            to_server, flags, payload = steps[k]
            if to_server:
                src, dst, sp, dp, eth = c, s, cport, sport_, eth_cs
            else:
                src, dst, sp, dp, eth = s, c, sport_, cport, eth_sc
            if proto == 6:
                if to_server:
                    l4 = tcp_pack(sp, dp, cseq, sseq, 0x50, flags, 65535, 0, 0)
                    fl[5] = (cseq + len(payload) + (1 if flags & (SYN | FIN) else 0)) & 0xFFFFFFFF
                else:
                    l4 = tcp_pack(sp, dp, sseq, cseq, 0x50, flags, 65535, 0, 0)
                    fl[6] = (sseq + len(payload) + (1 if flags & (SYN | FIN) else 0)) & 0xFFFFFFFF
            else:
                l4 = udp_pack(sp, dp, 8 + len(payload), 0)
            tot = 20 + len(l4) + len(payload)
            ip = ip_pack(0x45, 0, tot, n & 0xFFFF, 0x4000, 64, proto, 0, src, dst)
            frame_len = 14 + tot
            sec = int(ts)
            out.append(rec_pack(sec, int((ts - sec) * 1e6), frame_len, frame_len))
            out.append(eth)
            out.append(ip)
            out.append(l4)
            out.append(payload)
            n += 1
            ts += 0.00001
            k += 1
            if k == len(steps):
                active[i] = new_flow()
            else:
                fl[8] = k
            if len(out) > 50000:
                f.write(b"".join(out))
                out.clear()
        f.write(b"".join(out))
    os.replace(tmp, path)
    return n, flows


def cached(packets, seed=1):
    os.makedirs(CACHE, exist_ok=True)
    path = os.path.join(CACHE, f"mixed-{packets}-s{seed}-v2.pcap")   # v2: real response heads
    if not os.path.exists(path):
        t = time.perf_counter()
        n, flows = generate(path, packets, seed)
        print(f"generated {path}: {n} packets, {flows} flows, {os.path.getsize(path) / 1e6:.0f} MB "
              f"in {time.perf_counter() - t:.1f}s", file=sys.stderr, flush=True)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m bench.gen_pcap", description=__doc__.split("\n")[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=None, help="output file (default: the cache)")
    o = ap.parse_args(argv)
    if o.out:
        n, flows = generate(o.out, o.packets, o.seed)
        print(f"{o.out}: {n} packets, {flows} flows")
    else:
        print(cached(o.packets, o.seed))


if __name__ == "__main__":
    main()
