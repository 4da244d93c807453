"""A live fleet worker's FlowSets across the supervisor's reinstall of the fast path's table
(a worker died): what the worker flushed into the new table before it read the SIGUSR2
flag must stay known, or its FIN/RST deletes nothing and the next connection on its ports
is passed by the kernel, uninspected (review s10: resync() forgot it). Real nftables in a
namespace of our own; the flows are small records of the fields FlowSets reads."""
import subprocess
import sys

import pytest

from datapath import REPO, veth_namespace

pytestmark = pytest.mark.netns

SCRIPT = r"""
import subprocess
from appliance import gwlb_offload as g

class flow:                        # hashable by identity, as the Flow
    def __init__(self, sport, reason="closed"):
        self.tunnel, self.proto, self.src, self.dst, self.dport = 7, 6, "10.1.0.2", "10.2.0.2", 8443
        self.sport, self.reason = sport, reason

def kernel():
    out = subprocess.run(["nft", "list", "set", "netdev", g.TABLE, "pass4_tcp"], capture_output=True, text=True).stdout
    return sorted(p for p in (41000, 41001, 41002) if f"0x{(p << 16) | 8443:08x}" in out)

install = lambda: g.install("d0", "02:00:00:00:00:01", "10.9.0.1", ["10.9.0.0/24"])
install()
fs = g.FlowSets()
a, b = flow(41000), flow(41001)
fs.add(a, "pass"); fs.flush()
install()                          # the supervisor: a worker died, the table is new and empty
fs.add(b, "pass"); fs.flush()      # flushed before this worker's idle() reads the flag
fs.resync(); fs.flush()            # idle(): SIGUSR2
print("after resync", kernel())    # both: b was never gone, a goes in again
fs.ended(b)                        # b's RST
print("after b ended", kernel())
c = flow(41002, reason="timeout")
fs.add(c, "pass"); fs.flush()
install(); fs.resync()
fs.ended(c)                        # ended idle: a batched delete
fs.flush()
print("after c ended", kernel())
g.remove()
"""


@pytest.fixture
def ns():
    with veth_namespace("rsy") as ex:
        yield ex


def test_a_flow_flushed_into_the_new_table_before_the_resync_still_leaves_it(ns):
    r = subprocess.run(ns + [sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = dict(line.split(" [", 1) for line in r.stdout.splitlines())
    assert lines["after resync"] == "41000, 41001]", r.stdout
    assert lines["after b ended"] == "41000]", r.stdout
    assert lines["after c ended"] == "41000]", r.stdout
