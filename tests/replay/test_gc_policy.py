"""The GC policy for a long-lived flow table (appliance/gcpolicy.py), observed in child processes:
a replay run from the CLI and a process that builds its Inspector as the live/GENEVE workers do."""
import subprocess
import sys

import dpkt

from appliance import gcpolicy

from replaykit import REPO

# Runs `python3 -m appliance ARGS`, then reports the collector's state as the process ends.
OBSERVE = """
import atexit, gc, runpy, sys
atexit.register(lambda: print("GC", *gc.get_threshold(), gc.get_freeze_count(), file=sys.stderr))
sys.argv = ["appliance", *sys.argv[1:]]
runpy.run_module("appliance", run_name="__main__")
"""


def _syn_pcap(path, n):
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_RAW)
        for i in range(n):
            tcp = dpkt.tcp.TCP(sport=1024 + i, dport=443, seq=i, flags=dpkt.tcp.TH_SYN)
            ip = dpkt.ip.IP(src=bytes([10, 0, i >> 8 & 255, i & 255]), dst=b"\xc6\x33\x64\x07", p=6, data=tcp)
            ip.len = len(bytes(ip))
            w.writepkt(bytes(ip), ts=1.0 + i * 1e-3)
    return str(path)


def _gc_line(stderr):
    line = [x for x in stderr.splitlines() if x.startswith("GC ")][-1]
    return [int(v) for v in line.split()[1:]]


def test_replay_process_runs_with_the_policy(tmp_path):
    rules = tmp_path / "r.yaml"
    rules.write_text("rules:\n  - {id: 1, action: alert, proto: tcp, dst_port: 443}\n")
    cp = subprocess.run([sys.executable, "-c", OBSERVE, "replay", _syn_pcap(tmp_path / "s.pcap", 50),
                         "--rules", str(rules)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, cp.stderr
    *threshold, frozen = _gc_line(cp.stderr)
    assert threshold == [gcpolicy.GEN0, gcpolicy.GEN1, gcpolicy.GEN2]
    assert frozen > 1000                  # start-up (imports, rules) sits in the permanent generation


# As appliance/source/nfqueue.py and fleet/worker.py build theirs: an Inspector from loaded rules.
WORKER = """
import gc, sys, weakref
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings
from appliance import gcpolicy
first = Inspector(load_rules("rules/default.yaml"), Settings())
frozen = gc.get_freeze_count()
second = Inspector(load_rules("rules/default.yaml"), Settings())   # a second one does not refreeze
print("GC", *gc.get_threshold(), frozen, gc.get_freeze_count())

# Cycles made after start-up are still collected, without an explicit gc.collect():
class Node:
    pass
def cycle():
    a, b = Node(), Node()
    a.peer, b.peer = b, a
    return a
gone = []
weakref.finalize(cycle(), gone.append, 1)
for _ in range(gcpolicy.GEN0 * gcpolicy.GEN1 * 2):
    cycle()
print("COLLECTED", len(gone), gc.get_count()[0])
"""


def test_worker_process_policy_is_once_and_still_collects_cycles():
    cp = subprocess.run([sys.executable, "-c", WORKER], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, cp.stderr
    out = dict(line.split(" ", 1) for line in cp.stdout.splitlines())
    t0, t1, t2, frozen, frozen_after = map(int, out["GC"].split())
    assert (t0, t1, t2) == (gcpolicy.GEN0, gcpolicy.GEN1, gcpolicy.GEN2)
    assert frozen > 1000 and frozen_after == frozen
    collected, young = map(int, out["COLLECTED"].split())
    assert collected == 1                 # garbage cycles do not pile up under the raised threshold
    assert young <= gcpolicy.GEN0
