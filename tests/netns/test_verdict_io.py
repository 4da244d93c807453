"""Live: batch verdicts (appliance/source/nfqueue.py, WholeMessages.accept_later). A worker
holds its accepts while more packets wait and answers a run of them with one
NFQNL_MSG_VERDICT_BATCH; a drop between two accepts is sent on its own at once. Counted:
every datagram to the passed port arrives, none to the dropped one, and the worker's stats
line says the accepts went out in batches. Nothing timed.

Own topology (namespaces prefixed "vio-").
"""
import os
import re
import signal
import subprocess
import sys

import pytest

from datapath import appliances, topology_fixture, wait_for

pytestmark = pytest.mark.netns

topo = topology_fixture("vio")

RULES = """\
default_action: pass
rules:
  - {id: 1, action: drop, proto: udp, dst_port: 9997}
"""
# Counts datagrams on each port in argv[2:] for argv[1] seconds; prints "ready", then the counts.
COUNT = """
import select, socket, sys, time
socks = []
for port in sys.argv[2:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)     # SO_RCVBUFFORCE
    s.bind(("0.0.0.0", int(port))); s.setblocking(False); socks.append(s)
print("ready", flush=True)
n, end = [0] * len(socks), time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    for i in range(len(socks)):
        if socks[i] in select.select(socks, [], [], 0.2)[0]:
            while True:
                try:
                    socks[i].recv(100); n[i] += 1
                except BlockingIOError:
                    break
print(" ".join(map(str, n)), flush=True)
"""
# N datagrams, every third one to the dropped port
SEND = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[2])):
    s.sendto(b"x" * 32, (sys.argv[1], 9997 if i % 3 == 2 else 9998))
"""
N = 3000


@pytest.fixture
def appliance(topo, tmp_path):
    yield from appliances(topo, tmp_path, RULES)


def test_a_run_of_accepts_goes_out_in_batches_and_a_drop_between_them_stays_dropped(topo, appliance):
    t = topo
    a = appliance(workers=1, failure_mode="closed", offload=False).start()
    counter = subprocess.Popen(["ip", "netns", "exec", t.server, sys.executable, "-c", COUNT, "8", "9998", "9997"],
                               stdout=subprocess.PIPE, text=True)
    assert counter.stdout.readline().strip() == "ready"
    [worker] = a.worker_pids()
    # the worker stops reading: the datagrams wait in its queue (3,000 < 4,096: none
    # overflows), then it reads them back to back, as under load
    os.kill(worker, signal.SIGSTOP)
    try:
        t.ex(t.client, sys.executable, "-c", SEND, t.server_ip, str(N), check=True)
    finally:
        os.kill(worker, signal.SIGCONT)
    passed, dropped = map(int, counter.stdout.readline().split())
    counter.wait()
    print("counts", passed, dropped)
    assert passed == N - N // 3 and dropped == 0, (passed, dropped)
    os.kill(worker, signal.SIGUSR1)
    line = wait_for(lambda: re.search(r"stats .*batched_accepts=(\d+) verdict_batches=(\d+)", a.log_text()),
                    what="the worker's stats line")
    batched, batches = int(line.group(1)), int(line.group(2))
    print("batches", batched, batches)
    assert batched >= passed - 10, (batched, passed)     # (a few may have come one at a time)
    assert 0 < batches <= batched / 2, (batches, batched)
    a.stop()
