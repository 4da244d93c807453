"""The hostile DNS datagram, before and after a change to the name reader: one question of
512 one-byte labels and 31 questions pointing to it (16,384 labels read), and the same with
every label a '.', through `parse_message` of two builds of the compiled `_c_dns`, loaded
into one process and timed in interleaved pairs (the order alternates), so a busy machine
weighs on both alike. Prints each build's min and median and the after/before ratio of
the pairs (median, middle half).

    python3 -m bench.dns_labels BEFORE.so AFTER.so [--pairs N]

BEFORE.so: the other tree's appliance/applayer/_c_dns*.so (copied out of it, built from
its own dns.py); AFTER.so: this tree's.
"""
import argparse
import importlib.machinery
import importlib.util
import statistics
import struct
import sys
import time

import appliance.applayer  # noqa: F401 -- the package the compiled module imports from

NAME = "appliance.applayer._c_dns"


def load(path):
    """One build of _c_dns as its own module object (sys.modules keeps neither)."""
    sys.modules.pop(NAME, None)
    loader = importlib.machinery.ExtensionFileLoader(NAME, path)
    mod = importlib.util.module_from_spec(importlib.util.spec_from_file_location(NAME, path, loader=loader))
    loader.exec_module(mod)
    sys.modules.pop(NAME, None)
    return mod


def hostile(label):
    head = struct.pack("!HHHHHH", 1, 0x0100, 32, 0, 0, 0)
    return head + (b"\x01" + label) * 512 + b"\x00\x00\x01\x00\x01" + b"\xc0\x0c\x00\x01\x00\x01" * 31


def once(mod, msg, n=50):
    t0 = time.perf_counter()
    for _ in range(n):
        mod.parse_message(msg)
    return (time.perf_counter() - t0) / n * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--pairs", type=int, default=60)
    a = ap.parse_args()
    before, after = load(a.before), load(a.after)
    for what, msg in (("512 one-byte labels", hostile(b"a")), ("512 labels of one '.'", hostile(b"."))):
        names = [[q.rrname for q in m.parse_message(msg).queries] for m in (before, after)]
        assert len(names[1]) == 32
        b, t = [], []
        for i in range(a.pairs):
            if i % 2:
                t.append(once(after, msg))
                b.append(once(before, msg))
            else:
                b.append(once(before, msg))
                t.append(once(after, msg))
        r = sorted(x / y for x, y in zip(t, b))
        print(f"{what} ({len(msg)} B, names {'equal' if names[0] == names[1] else 'differ'}): "
              f"before min {min(b):.2f} median {statistics.median(b):.2f} ms, after min {min(t):.2f} "
              f"median {statistics.median(t):.2f} ms; after/before {statistics.median(r):.3f} "
              f"(middle half {r[len(r) // 4]:.3f}-{r[3 * len(r) // 4]:.3f})")


if __name__ == "__main__":
    main()
