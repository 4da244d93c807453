"""The two ends of test_stream_linux.py, each run inside its own network namespace.

`server`: a plain Linux TCP listener; it reads only once every segment has arrived (so the
reading does not depend on when the application read) and prints what it read, in hex.
`client CASE`: sends one scripted conversation with scapy (raw IP, its own kernel's RSTs
filtered by the caller) and pickles every segment sent and the SYN/ACK received to PATH, so
the test can replay exactly those bytes through the appliance's flow tracking and stream.
"""
import pickle
import socket
import sys
import time

C, S, SPORT = "10.99.0.1", "10.99.0.2", 8080
A = 1000                                # the client's ISN
EVIL = b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n"
GOOD = b"GET / HTTP/1.1\r\nHost: good.example\r\n\r\n"
N = 16                                  # where "Host" starts


def server(delay):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((S, SPORT))
    s.listen(5)
    s.settimeout(20)
    c, _ = s.accept()
    time.sleep(delay)
    c.settimeout(0.5)
    out = b""
    try:
        while True:
            d = c.recv(65536)
            if not d:
                break
            out += d
    except socket.timeout:
        pass
    print(out.hex(), flush=True)


def _script(seg, B, tsecr=0):
    """case name -> the segments after the handshake (seg(flags, seq, ack, data, **tcp))."""
    ts = lambda val: [("Timestamp", (val, tsecr))]  # noqa: E731
    return {
        "paws_stale_decoy": lambda: (seg("PA", A + 1, B + 1, GOOD, options=ts(50)),
                                     seg("PA", A + 1, B + 1, EVIL, options=ts(100002))),
        "rst_inexact_then_data": lambda: (seg("PA", A + 1, B + 1, EVIL[:N]), seg("R", A + 1 + N + 50, 0),
                                          seg("PA", A + 1 + N, B + 1, EVIL[N:])),
        "fin_then_more": lambda: (seg("FPA", A + 1, B + 1, EVIL[:N]), seg("PA", A + 1 + N, B + 1, EVIL[N:])),
        "in_order_over_queued": lambda: (seg("PA", A + 1 + N, B + 1, GOOD[N:]), seg("PA", A + 1, B + 1, EVIL)),
        "same_start_longer": lambda: (seg("PA", A + 1 + N, B + 1, GOOD[N:30]), seg("PA", A + 1 + N, B + 1, EVIL[N:]),
                                      seg("PA", A + 1, B + 1, EVIL[:N])),
        "covers_later_queued": lambda: (seg("PA", A + 21, B + 1, GOOD[20:30]), seg("PA", A + 1 + N, B + 1, EVIL[N:]),
                                        seg("PA", A + 1, B + 1, EVIL[:N])),
        "partial_earlier_first": lambda: (seg("PA", A + 21, B + 1, EVIL[20:]), seg("PA", A + 26, B + 1, GOOD[25:]),
                                          seg("PA", A + 1, B + 1, EVIL[:20])),
        "partial_later_first": lambda: (seg("PA", A + 26, B + 1, GOOD[25:]), seg("PA", A + 21, B + 1, EVIL[20:30]),
                                        seg("PA", A + 1, B + 1, EVIL[:20])),
        "retransmit_other_bytes": lambda: (seg("PA", A + 1, B + 1, EVIL[:30]), seg("PA", A + 1, B + 1, GOOD),
                                           seg("PA", A + 31, B + 1, EVIL[30:])),
        "ack_too_old_first": lambda: (seg("PA", A + 1, B + 1 - 2**30, GOOD), seg("PA", A + 1, B + 1, EVIL)),
        # after data, Linux's header-prediction fast path may take it: the model must say so
        "ack_too_old_later": lambda: (seg("PA", A + 1, B + 1, EVIL[:N]), seg("PA", A + 1 + N, B + 1, EVIL[N:20]),
                                      seg("PA", A + 21, B + 1 - 2**30, GOOD[20:]), seg("PA", A + 21, B + 1, EVIL[20:])),
        "ack_unsent": lambda: (seg("PA", A + 1, B + 5000, GOOD), seg("PA", A + 1, B + 1, EVIL)),
        "rst_data_inexact": lambda: (seg("RA", A + 2, B + 1, GOOD[1:]), seg("PA", A + 1, B + 1, EVIL)),
        "no_ack_data": lambda: (seg("P", A + 1, 0, GOOD), seg("PA", A + 1, B + 1, EVIL)),
        "syn_new_isn": lambda: (seg("PA", A + 1, B + 1, EVIL[:N]), seg("S", 777777, 0),
                                seg("PA", A + 1 + N, B + 1, EVIL[N:])),
        "synack_from_client": lambda: (seg("SA", 600000, B + 1), seg("PA", A + 1, B + 1, EVIL)),
        "urgent_past_segment_end": lambda: (seg("PAU", A + 1, B + 1, EVIL[:24], urgptr=26),
                                            seg("PA", A + 25, B + 1, b"X" + EVIL[24:])),
        "urgent_pointer_zero": lambda: (seg("PAU", A + 1, B + 1, b"X" + EVIL, urgptr=0),),
        "urgent_before_rcv_nxt": lambda: (seg("PA", A + 1, B + 1, EVIL[:N]),
                                          seg("PAU", A + 1, B + 1, EVIL[:N + 4], urgptr=3),
                                          seg("PA", A + 1 + N + 4, B + 1, EVIL[N + 4:])),
    }


CASES = sorted(_script(None, 0))


def client(case, path):
    from scapy.all import IP, TCP, Raw, conf, send, sr1
    conf.verb = 0
    CPORT = 40000 + CASES.index(case)   # a port of its own: no earlier connection in the way
    stamps = case.startswith("paws")
    syn = IP(src=C, dst=S) / TCP(sport=CPORT, dport=SPORT, flags="S", seq=A, window=64240,
                                 options=[("WScale", 7)] + ([("Timestamp", (100000, 0))] if stamps else []))
    synack = sr1(syn, timeout=3)
    B = synack[TCP].seq
    tsecr = dict(synack[TCP].options).get("Timestamp", (0, 0))[0]
    log = [(True, bytes(syn)), (False, bytes(synack[IP]))]

    def seg(flags, seq, ack, data=b"", **kw):
        p = IP(src=C, dst=S) / TCP(sport=CPORT, dport=SPORT, flags=flags, seq=seq & 0xFFFFFFFF,
                                   ack=ack & 0xFFFFFFFF, window=502, **kw)
        if data:
            p = p / Raw(data)
        send(p)
        log.append((True, bytes(p)))
        time.sleep(0.05)
    seg("A", A + 1, B + 1, **({"options": [("Timestamp", (100001, tsecr))]} if stamps else {}))
    _script(seg, B, tsecr)[case]()
    with open(path, "wb") as f:
        pickle.dump(log, f)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(float(sys.argv[2]))
    else:
        client(sys.argv[2], sys.argv[3])
