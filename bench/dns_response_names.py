"""What the dns.dot_in_label check costs a logged DNS response, against parsing it: a CNAME
response with three answers, `state.dns_responses_logged` and `dns.parse_message` timed in
alternating rounds in one process (pure Python with APPLIANCE_PURE_PYTHON=1, else the
compiled twins). Prints each one's median and range per call, and the check's share.

    python3 -m bench.dns_response_names [--rounds 7] [--calls 100000]
"""
import argparse
import statistics
import struct
import timeit

from appliance.applayer import dns, state


def response():
    def name(labels):
        return b"".join(bytes([len(x)]) + x for x in labels) + b"\x00"
    msg = struct.pack("!HHHHHH", 1, 0x8180, 1, 3, 0, 0) + name([b"www", b"example", b"com"]) + b"\0\1\0\1"
    msg += b"\xc0\x0c" + struct.pack("!HHIH", 5, 1, 60, 6) + b"\x03cdn\xc0\x10"      # CNAME cdn.example.com
    for i in range(2):
        msg += b"\xc0\x29" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([192, 0, 2, i])
    return msg


def main(argv=None):
    ap = argparse.ArgumentParser(prog="bench.dns_response_names")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=100000)
    a = ap.parse_args(argv)
    raw = response()
    msg = dns.parse_message(raw)
    found = []
    runs = {"parse_message": [], "dns_responses_logged": []}
    for _ in range(a.rounds):
        runs["parse_message"].append(timeit.timeit(lambda: dns.parse_message(raw), number=a.calls) / a.calls * 1e6)
        runs["dns_responses_logged"].append(
            timeit.timeit(lambda: state.dns_responses_logged([msg], found), number=a.calls) / a.calls * 1e6)
    for k, v in runs.items():
        print(f"{k:22} {statistics.median(v):7.2f} us a call ({min(v):.2f}..{max(v):.2f})")
    share = [c / p for c, p in zip(runs["dns_responses_logged"], runs["parse_message"])]
    print(f"check / parse          {statistics.median(share):7.3f} ({min(share):.3f}..{max(share):.3f})")


if __name__ == "__main__":
    main()
