"""Live: `overload.established_first` queues ICMP errors with the new flows (review s17 F1).

An attacker who holds one real connection through the appliance (not offloaded: here
offload is off; live, any flow still inspected) sends ICMP errors that quote it, each
from its own spoofed outer source. conntrack calls each one RELATED (the outer source is
never checked, only the outer destination against the quoted connection's), so none is
NEW: queued by `--ctstate NEW` alone they went to the established flows' queue, read first,
and past the per-source limit. Counts only (namespaces prefixed "efrel-").
"""
import subprocess
import sys
import time

import pytest

from datapath import appliances, topology_fixture, wait_for

pytestmark = pytest.mark.netns

topo = topology_fixture("efrel")
RULES = "default_action: pass\nrules:\n  - {id: 1, action: drop, proto: udp, dst_port: 9}\n"
N = 300
CPORT = 40000


@pytest.fixture
def appliance(topo, tmp_path):
    yield from appliances(topo, tmp_path, RULES)



SEND = """
import random, sys
from scapy.all import IP, ICMP, TCP, send, conf
conf.verb = 0
server, client, cport, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
pkts = [IP(src="198.18.%d.%d" % (i // 250, 1 + i % 250), dst=server) / ICMP(type=3, code=3)
        / IP(src=server, dst=client) / TCP(sport=9000, dport=cport, flags="A", seq=1)
        for i in range(n)]
send(pkts)
"""


def test_a_related_icmp_flood_from_spoofed_sources_stays_out_of_the_established_queue(topo, appliance):
    a = appliance(workers=1, failure_mode="closed", offload=False,
                  extra="overload: {established_first: true}\n").start()
    server = subprocess.Popen(["ip", "netns", "exec", topo.server, "nc", "-l", "9000"],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    client = subprocess.Popen(["ip", "netns", "exec", topo.client, "nc", "-p", str(CPORT), topo.server_ip, "9000"],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: "ESTABLISHED" in topo.ex(topo.fw, "conntrack", "-L", "-p", "tcp", "--dport", "9000").stdout,
                 what="the attacker's own connection")
        before = a.queues()
        r = topo.ex(topo.client, sys.executable, "-c", SEND, topo.server_ip, topo.client_ip, str(CPORT), str(N))
        assert r.returncode == 0, r.stderr
        wait_for(lambda: sum(q for q, _ in a.queues().values()) >= sum(q for q, _ in before.values()) + N * 9 // 10,
                 what="the ICMP errors queued")
        after = a.queues()
    finally:
        for p in (client, server):
            p.kill()
            p.wait()
    est = after[0][0] - before[0][0]
    new = after[1][0] - before[1][0]
    print(f"established queue took {est}, new-flow queue {new} of {N} spoofed ICMP errors")
    # what established_first promises: a flood spoofed from many sources is not read ahead
    assert est < N // 10, (before, after)
    assert new >= N * 9 // 10, (before, after)
