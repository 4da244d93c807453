"""Review (rvnfq), older than the worker's own queue read: the worker asks for a 0xFFFF-byte
copy range and records WHOLE_RANGE (65535) as what it gets, but the kernel clamps it to
NFQNL_MAX_COPY_RANGE = 0xFFFF - NLA_HDRLEN = 65531 (/proc/net/netfilter/nfnetlink_queue says
so). A 65532..65535-byte GRO/GSO packet then arrives cut to 65531 bytes, and _count_anomalies
(len(raw) >= copy_range) blames the wire: an ipv4.trunc_pkt anomaly instead of copy_truncated."""
import os
import subprocess
import sys

import pytest

from appliance.source import nfqueue as nq

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NS = "nsx-copyrange"
PROBE = """
import warnings
from netfilterqueue import NetfilterQueue
from appliance.source import nfqueue as nq
n = NetfilterQueue()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    n.bind(65000, lambda p: None, max_len=16, range=nq.COPY_RANGE)
nq.set_copy_range(n, 65000, nq.WHOLE_RANGE, [])
for line in open("/proc/net/netfilter/nfnetlink_queue"):
    f = line.split()
    if f[0] == "65000":
        print(f[4])
n.unbind()
"""


def test_the_kernel_copies_at_most_whole_range():
    if os.geteuid() != 0:
        pytest.skip("needs root (a network namespace, NFQUEUE)")
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        out = subprocess.run(["ip", "netns", "exec", NS, sys.executable, "-c", PROBE], cwd=ROOT, check=True,
                             capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT}).stdout
    finally:
        subprocess.run(["ip", "netns", "del", NS])
    assert int(out) == nq.WHOLE_RANGE       # 65531: NFQNL_MAX_COPY_RANGE, not 0xFFFF

