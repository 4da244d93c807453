"""Live side of tests/replay/test_review_offload2.py: a UDP flow whose first datagram comes
from the server's port.

Own topology (namespaces prefixed "ro2-"), deleted at the end of the module.
"""
import subprocess
import sys
import time

import pytest

from datapath import topology_fixture, appliances, wait_for
from appliance import netfilter
from appliance.config import DEFAULT_MARK_MASK as MARK_MASK

pytestmark = pytest.mark.netns

MARK_PASS = netfilter.offload_marks(MARK_MASK)["pass"]
DNS_BLOCK = """\
default_action: pass
rules:
  - {id: 1, action: drop, proto: udp, dst_port: 53}
"""

# Binds UDP port argv[1]; prints each datagram's size as it comes (for argv[2] seconds).
LISTEN = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', int(sys.argv[1]))); s.settimeout(float(sys.argv[2]))
print('bound', flush=True)
try:
    while True:
        print('got', len(s.recv(2048)), flush=True)
except OSError:
    print('done', flush=True)
"""
# From port argv[3], one datagram to argv[1]:argv[2].
SEND_FROM = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)    # beside the listener on 53
s.bind(('0.0.0.0', int(sys.argv[3]))); s.sendto(b'query', (sys.argv[1], int(sys.argv[2])))
"""


topo = topology_fixture("ro2")


@pytest.fixture
def appliance(topo, tmp_path):
    yield from appliances(topo, tmp_path, DNS_BLOCK)


def udp_marks(topo, port):
    out = topo.ex(topo.fw, "conntrack", "-L", "-p", "udp", "--sport", str(port)).stdout
    out += topo.ex(topo.fw, "conntrack", "-L", "-p", "udp", "--dport", str(port)).stdout
    return [int(f[5:]) & MARK_MASK for line in out.splitlines() for f in line.split() if f.startswith("mark=")]


def test_one_datagram_from_port_53_does_not_open_the_clients_dns_past_a_drop_rule(topo, appliance):
    a = appliance(workers=1).start()
    listener = subprocess.Popen(["ip", "netns", "exec", topo.server, sys.executable, "-c", LISTEN, "53", "3"],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().startswith("bound")
        before = a.queued()
        # the server's side speaks first, from port 53 to the client's port
        topo.ex(topo.server, sys.executable, "-c", SEND_FROM, topo.client_ip, "40000", "53", check=True)
        wait_for(lambda: a.queued() > before, timeout=5, what="the server's datagram queued")
        time.sleep(0.3)
        # was: passed and offloaded: the conntrack entry carried PASS, and the client's
        # queries to port 53 went through the kernel
        assert MARK_PASS not in udp_marks(topo, 53)
        topo.ex(topo.client, sys.executable, "-c", SEND_FROM, topo.server_ip, "53", "40000", check=True)
        lines = listener.stdout.read().split("\n")
        assert not any(line.startswith("got") for line in lines), "the client's query reached port 53"
    finally:
        listener.kill()
        listener.wait()
    a.stop()
