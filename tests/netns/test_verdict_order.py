"""Live: batch verdicts keep a flow's packets in order. A worker in a burst holds its
accepts (WholeMessages.accept_later) until the socket is empty; a flow decided in the middle
of that burst is offloaded by a repeat verdict, and a repeated packet leaves at once -- so,
were the held accepts of the same flow still waiting, its later packets would overtake its
earlier ones (TCP: duplicate ACKs and spurious fast retransmits at the receiver). Counted:
the order in which one UDP flow's numbered datagrams arrive. Nothing timed.

Own topology (namespaces prefixed "vor-").
"""
import os
import signal
import subprocess
import sys

import pytest

from datapath import appliances, topology_fixture

pytestmark = pytest.mark.netns

topo = topology_fixture("vor")

# a payload rule that never matches keeps the flow under inspection for the YAML depth
# (16 packets), then it is decided pass and offloaded: mid-burst
RULES = """\
default_action: pass
rules:
  - {id: 1, action: drop, proto: udp, dst_port: 9998, content: "NEVER-SENT"}
"""
N = 60
# prints "ready", then the sequence numbers in arrival order once N came or 6 s passed
RECEIVE = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 9998)); s.settimeout(6)
print("ready", flush=True)
got = []
try:
    while len(got) < int(sys.argv[1]):
        got.append(int(s.recv(100)))
except OSError:
    pass
print(" ".join(map(str, got)), flush=True)
"""
SEND = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 40000))
for i in range(int(sys.argv[2])):
    s.sendto(b"%d" % i, (sys.argv[1], 9998))
"""


@pytest.fixture
def appliance(topo, tmp_path):
    yield from appliances(topo, tmp_path, RULES)


def test_a_flow_offloaded_in_a_burst_is_not_overtaken_by_its_held_accepts(topo, appliance):
    t = topo
    a = appliance(workers=1, failure_mode="closed").start()
    rx = subprocess.Popen(["ip", "netns", "exec", t.server, sys.executable, "-c", RECEIVE, str(N)],
                          stdout=subprocess.PIPE, text=True)
    assert rx.stdout.readline().strip() == "ready"
    [worker] = a.worker_pids()
    os.kill(worker, signal.SIGSTOP)          # the flow's datagrams wait, then come as one burst
    try:
        t.ex(t.client, sys.executable, "-c", SEND, t.server_ip, str(N), check=True)
    finally:
        os.kill(worker, signal.SIGCONT)
    order = [int(x) for x in rx.stdout.readline().split()]
    rx.wait()
    a.stop()
    assert sorted(order) == list(range(N)), order            # all arrived (nothing was dropped)
    assert order == list(range(N)), f"the flow's datagrams were reordered: {order}"
