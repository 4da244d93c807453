"""Live: the per-source limit (`overload:`) as a weapon. Someone outside sends SYNs with a
protected host's own address as the source, far past the limit: to the kernel they are that
host's new flows. With one bucket per address for both directions, the flood empties the
protected host's bucket and its own outbound connections are dropped -- a DoS of the inside
from the outside, built from the protection itself (IPv6: any address of the host's /64
will do, so a whole subnet at once). A packet arriving on the outside can only be charged to
what arrives on the outside. Counts only, nothing timed.

Own topology (namespaces prefixed "ovs-"); hping3 spoofs from the client namespace.
"""
import shutil
import sys
import subprocess

import pytest

from datapath import appliances, topology_fixture, wait_for

pytestmark = pytest.mark.netns

topo = topology_fixture("ovs")

RULES = "default_action: pass\nrules: []\n"
RATE, BURST = 20, 20
FETCHES = 10


@pytest.fixture
def appliance(topo, tmp_path):
    yield from appliances(topo, tmp_path, RULES)


def test_a_flood_spoofing_an_inside_host_from_outside_does_not_cut_its_outbound_flows(topo, tmp_path, appliance):
    if not shutil.which("hping3"):
        pytest.skip("hping3 is not installed (dev/setup.sh)")
    a = appliance(workers=1, extra=f"overload: {{new_flows_per_source: {RATE}, new_flows_burst: {BURST}}}\n").start()
    (tmp_path / "hello").write_text("hello\n")
    web = subprocess.Popen(["ip", "netns", "exec", topo.client, "python3", "-m", "http.server", "8081",
                            "--bind", topo.client_ip, "--directory", str(tmp_path)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    flood = None
    try:
        wait_for(lambda: ":8081 " in topo.ex(topo.client, "ss", "-ltnH").stdout, what="web server")

        def fetch():
            return topo.ex(topo.server, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                           "--max-time", "3", f"http://{topo.client_ip}:8081/hello").stdout

        assert fetch() == "200"
        # from the outside, with the inside host's address: 1,000 SYNs a second, 50x the limit
        flood = subprocess.Popen(["ip", "netns", "exec", topo.client, "hping3", "-q", "-S", "-a", topo.server_ip,
                                  "-p", "9", "-i", "u1000", "-c", "30000", topo.server_ip],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: _limited(a) > 100, what="the flood reaching the source limit")
        codes = [fetch() for _ in range(FETCHES)]
        assert flood.poll() is None, "the flood ended before the fetches did: nothing was shown"
    finally:
        if flood is not None and flood.poll() is None:
            flood.kill()
            flood.wait()
        web.kill()
        web.wait()
    assert codes.count("200") == FETCHES, f"the inside host's own connections were cut: {codes}"


def _limited(a):
    out = "".join(a.topo.ex(a.topo.fw, save, "-c").stdout for save in ("iptables-nft-save", "ip6tables-nft-save"))
    return sum(int(line[1:].split(":")[0]) for line in out.splitlines()
               if line.startswith("[") and "-m hashlimit" in line)


@pytest.mark.parametrize("flags", [["-S", "-X", "-Y"], ["-S", "-d", "64"], ["-S", "-P", "-U"]],
                         ids=["syn-ece-cwr", "syn-with-data", "syn-psh-urg"])
def test_syn_variants_spend_the_bucket_like_a_bare_syn(topo, tmp_path, appliance, flags):
    """What a worker takes for a new flow's SYN (ECN setup, data on the SYN, PSH/URG beside
    it) is limited as one: `--syn` tests SYN,RST,ACK,FIN only."""
    if not shutil.which("hping3"):
        pytest.skip("hping3 is not installed (dev/setup.sh)")
    a = appliance(workers=1, extra=f"overload: {{new_flows_per_source: {RATE}, new_flows_burst: {BURST}}}\n").start()
    before, queued = _limited(a), a.queued()
    topo.ex(topo.client, "hping3", "-q", *flags, "-a", "10.1.0.77", "-p", "81", "-i", "u1000", "-c", "1000",
            topo.server_ip)
    limited = _limited(a) - before
    # 1,000 SYNs over ~1 s from one source at 20/s, burst 20: a few dozen pass, the rest are limited
    assert limited >= 900 and a.queued() - queued <= 100, (limited, a.queued() - queued)


# opens TCP connections from argv[1] to argv[2]:argv[3] for argv[4] seconds, about 1,000 a
# second (non-blocking connects: each SYN a new flow); prints "go" at once, then how many
OPEN_FLOWS = """
import socket, sys, time
print("go", flush=True)
n, end = 0, time.monotonic() + float(sys.argv[4])
while time.monotonic() < end:
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.bind((sys.argv[1], 0)); s.setblocking(False)
    try:
        s.connect((sys.argv[2], int(sys.argv[3])))
    except BlockingIOError:
        pass
    s.close(); n += 1
    time.sleep(0.001)
print(n, flush=True)
"""


def test_one_inside_ipv6_host_does_not_spend_its_subnet_neighbours_budget(topo, tmp_path, appliance):
    """Inside, a /64 is a subnet of many hosts (an AWS subnet's IPv6 block is one /64), not one
    host's: with a bucket per /64 one busy or compromised host got its neighbours' new
    outbound flows dropped. Inside sources are limited per address."""
    a = appliance(workers=1, extra=f"overload: {{new_flows_per_source: {RATE}, new_flows_burst: {BURST}}}\n").start()
    topo.ex(topo.server, "ip", "addr", "add", "fd02::3/64", "dev", "s0", "nodad", check=True)
    (tmp_path / "hello").write_text("hello\n")
    web = subprocess.Popen(["ip", "netns", "exec", topo.client, "python3", "-m", "http.server", "8081",
                            "--bind", topo.client_ip6, "--directory", str(tmp_path)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    noisy = None
    try:
        wait_for(lambda: ":8081 " in topo.ex(topo.client, "ss", "-ltnH").stdout, what="web server")

        def fetch():
            return topo.ex(topo.server, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3",
                           "--interface", topo.server_ip6, f"http://[{topo.client_ip6}]:8081/hello").stdout

        assert fetch() == "200"
        before = _limited(a)
        # the neighbour: new flows at about 1,000 a second, 50x the limit
        noisy = subprocess.Popen(["ip", "netns", "exec", topo.server, sys.executable, "-c", OPEN_FLOWS, "fd02::3",
                                  topo.client_ip6, "8082", "40"], stdout=subprocess.PIPE, text=True)
        assert noisy.stdout.readline().strip() == "go"
        wait_for(lambda: _limited(a) - before > 500, what="the neighbour reaching its limit")
        codes = [fetch() for _ in range(FETCHES)]
        assert noisy.poll() is None, "the neighbour stopped before the fetches did: nothing was shown"
    finally:
        if noisy is not None:
            noisy.kill()
            noisy.wait()
        web.kill()
        web.wait()
    assert codes.count("200") == FETCHES, f"fd02::2's connections were cut by fd02::3's flows: {codes}"
