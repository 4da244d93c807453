"""A fleet worker's teardown `forget` (appliance/source/gwlb.py, GwlbSource.verdict): the
client's FIN or RST of an offloaded flow takes its elements out of the kernel fast path's
sets before the verdict returns, so the rest of the teardown comes to the worker and the
flow closes there. Without it the elements stayed until the flow ended in Python (the
closing timeout, 60 s, or a new SYN on the ports): the port-reuse path alone deleted them.

Real nftables, a real GwlbSource and Inspector in a namespace of our own; GENEVE datagrams
from a local socket (they reach the worker over lo, so the set's contents are what is read)."""
import os
import subprocess
import sys

import pytest

from datapath import REPO, veth_namespace

pytestmark = pytest.mark.netns

SCRIPT = r"""
import socket, subprocess, sys, time
from scapy.layers.inet import IP, TCP
from scapy.packet import raw
from appliance import geneve, gwlb_offload as g
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings
from appliance.source.gwlb import GwlbSource, Senders, fast_path, listen

open("rules.yaml", "w").write("rules:\n  - {id: 1, action: pass, proto: tcp, dst_port: 9000}\n")
insp = Inspector(load_rules("rules.yaml"), Settings())
flowsets = fast_path("10.9.0.2", ["10.9.0.1/32"])
assert flowsets is not None
src = GwlbSource(listen("10.9.0.2", geneve.PORT), Senders(["10.9.0.1/32"]), defrag=insp.defrag, offload=flowsets)
insp.on_flow_end = flowsets.ended
packets = iter(src)
gwlb = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
gwlb.bind(("10.9.0.1", 0))
C, S, CP = "10.1.0.2", "10.2.0.2", 41000

def through(inner):
    # one inner packet through GENEVE, the worker's loop step (source.run), its pending adds in
    gwlb.sendto(geneve.encapsulate(0xE11, 1, 2, raw(inner)), ("10.9.0.2", geneve.PORT))
    p = next(packets)
    v = insp.process(p)
    src.verdict(p, v)
    flowsets.flush()
    return v

def kernel():
    out = subprocess.run(["nft", "list", "set", "netdev", g.TABLE, "pass4_tcp"], capture_output=True, text=True).stdout
    return f"0x{(CP << 16) | 9000:08x}" in out

through(IP(src=C, dst=S) / TCP(sport=CP, dport=9000, flags="S", seq=1000))
through(IP(src=S, dst=C) / TCP(sport=9000, dport=CP, flags="SA", seq=5000, ack=1001))
through(IP(src=C, dst=S) / TCP(sport=CP, dport=9000, flags="A", seq=1001, ack=5001))
v = through(IP(src=C, dst=S) / TCP(sport=CP, dport=9000, flags="PA", seq=1001, ack=5001) / bytes(100))    # no protocol: passed for good
print("offloaded", v.action, src.counters.offloaded > 0, kernel())
flag = sys.argv[1]
v = through(IP(src=C, dst=S) / TCP(sport=CP, dport=9000, flags=flag, seq=1101, ack=5001))
print("after", flag, v.flow.state, kernel())
src.stop()
g.remove()
"""


@pytest.fixture
def ns():
    with veth_namespace("tdn", ("10.9.0.1/24", "10.9.0.2/24")) as ex:
        yield ex


@pytest.mark.parametrize("flag", ["FA", "R"], ids=["fin", "rst"])
def test_a_fin_or_rst_takes_the_flow_out_of_the_kernel_sets_at_once(flag, ns, tmp_path):
    r = subprocess.run(ns + [sys.executable, "-c", SCRIPT, flag], capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": REPO}, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "offloaded pass True True", r.stdout + r.stderr     # the flow was in the kernel
    state = "closing" if flag == "FA" else "closed"
    assert lines[1] == f"after {flag} {state} False", r.stdout + r.stderr  # and left it with the FIN/RST
