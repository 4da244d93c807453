"""A Gateway Load Balancer simulator, run inside the "gwlb" namespace that routes between
client and server (tests/netns/test_gwlb.py).

Every packet the namespace would forward is taken from NFQUEUE 0 (so the client's and the
server's real traffic), wrapped in GENEVE with AWS's options (the endpoint's ENI id, the
attachment id, a flow cookie per inner 5-tuple) and sent from UDP 10.9.0.1:6081 to the
appliance; the original is dropped. What comes back from the appliance is checked (it must
come from the appliance's port 6081 and carry byte for byte a GENEVE header we sent: the
whole datagram when it is one we sent), decapsulated and injected with a raw socket, so it
reaches its destination as GWLB's endpoint would deliver it.

Counters go to the --stats file as JSON after every change:
  sent, returned_exact (the datagram as we sent it), answers (our header, another inner
  packet: reject answers), mismatched (anything else: a test failure), injected;
  ports: inner port (either end) -> [sent, returned_exact], so a test can follow one flow.
"""
import argparse
import json
import os
import socket
import threading
import zlib

from netfilterqueue import NetfilterQueue

from appliance import geneve
from appliance.decode import decode_l3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--appliance", required=True)
    ap.add_argument("--local", required=True)
    ap.add_argument("--eni", type=lambda s: int(s, 0), required=True)
    ap.add_argument("--attachment", type=lambda s: int(s, 0), default=0x0A0B0C0D01020304)
    ap.add_argument("--stats", required=True)
    a = ap.parse_args()

    tunnel = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tunnel.bind((a.local, geneve.PORT))
    raw4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    raw6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
    lock = threading.Lock()
    sent, headers = {}, set()
    stats = {"sent": 0, "returned_exact": 0, "answers": 0, "mismatched": [], "injected": 0, "cookies": [], "ports": {}}

    def save():
        tmp = a.stats + ".tmp"
        with open(tmp, "w") as f:
            json.dump(stats, f)
        os.replace(tmp, a.stats)

    def cookie(p):
        ends = sorted([(p.src, p.sport), (p.dst, p.dport)])
        return zlib.crc32(repr((p.proto, ends)).encode())

    def count(p, i):
        for port in {p.sport, p.dport}:
            stats["ports"].setdefault(str(port), [0, 0])[i] += 1

    def on_packet(nfpkt):
        inner = nfpkt.get_payload()
        p = decode_l3(inner)
        d = geneve.encapsulate(a.eni, a.attachment, cookie(p), inner)
        with lock:
            sent[d] = sent.get(d, 0) + 1
            headers.add(d[:len(d) - len(inner)])
            stats["sent"] += 1
            count(p, 0)
            c = cookie(p)
            if c not in stats["cookies"]:
                stats["cookies"].append(c)
            save()
        tunnel.sendto(d, (a.appliance, geneve.PORT))
        nfpkt.drop()

    def returns():
        while True:
            d, peer = tunnel.recvfrom(65535)
            t = geneve.parse(d)
            with lock:
                if peer != (a.appliance, geneve.PORT) or t.__class__ is str:
                    stats["mismatched"].append(f"{peer} {t if t.__class__ is str else ''} {d[:64].hex()}")
                elif sent.get(d):
                    sent[d] -= 1
                    stats["returned_exact"] += 1
                    count(decode_l3(d[t.header_len:]), 1)
                elif d[:t.header_len] in headers:
                    stats["answers"] += 1
                else:
                    stats["mismatched"].append(f"unknown header {d[:t.header_len].hex()}")
                    save()
                    continue
                save()
            if t.__class__ is str:
                continue
            inner = d[t.header_len:]
            p = decode_l3(inner)
            try:
                (raw6 if p.ip_version == 6 else raw4).sendto(inner, (p.dst, 0))
                with lock:
                    stats["injected"] += 1
                    save()
            except OSError as e:
                with lock:
                    stats["mismatched"].append(f"inject failed: {e}")
                    save()

    threading.Thread(target=returns, daemon=True).start()
    save()
    nfq = NetfilterQueue()
    nfq.bind(0, on_packet)
    print("ready", flush=True)
    nfq.run()


if __name__ == "__main__":
    main()
