"""GENEVE datagrams returned per second: the Python source vs an nftables netdev-ingress fast
path for a decided flow. `python3 -m bench.gwlb [--seconds T]` (root).

Two namespaces joined by a veth: "gwlb" (10.9.0.1) sends one flow's GENEVE datagrams (a TCP
segment inside, AWS options) as fast as one Python sender can, and counts what comes back
on UDP 6081; "appliance" (10.9.0.2) returns them, in the same run:

    python   python3 -m appliance.source.gwlb with a pass-all rule set (every datagram
             through parse, decode and Inspector.process)
    kernel   no userspace: a netdev ingress chain on the appliance's veth matches the
             datagram's endpoint and inner addresses/ports against a set of passed flows,
             swaps the outer MACs/addresses, sets the source port 6081 and `fwd`s it back
             out (the design in docs/gwlb.md; what a worker would add per decided flow)

Rows: returned datagrams/s per mode and kernel/python. The sender is the same in both: the
kernel row is bounded by what one Python sender offers (printed), so its ratio is a floor.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

from .common import log

ENI = 0x0E11000000ABCDEF
SENDER = """
import socket, sys, time
from scapy.layers.inet import IP, TCP
from scapy.packet import raw
from appliance import geneve
d = geneve.encapsulate(%d, 1, 2, raw(IP(src="10.1.0.2", dst="10.2.0.2") / TCP(sport=40000, dport=80, flags="A") / (b"x" * 64)))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
n, end = 0, time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    for _ in range(100):
        try:
            s.sendto(d, ("10.9.0.2", 6081)); n += 1
        except OSError:
            pass
print(n)
""" % ENI
RECEIVER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)
s.bind(("10.9.0.1", 6081)); s.settimeout(0.2)
print("ready", flush=True)
n, end = 0, time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    try:
        s.recv(2048); n += 1
    except socket.timeout:
        pass
print(n)
"""
# inner IPv4 at UDP payload 40 (GENEVE 8 + AWS options 32): th bit offsets from the UDP header.
# Matched: Ver 0 with Opt Len 8 words (the three AWS options), O/C bits clear, inner IHL 5;
# the key is the ENI id . inner saddr . daddr . ports (one direction per element).
FASTPATH = """
table netdev i14fast {
  set passed { typeof @th,160,64 . @th,480,32 . @th,512,32 . @th,544,32; flags timeout; }
  chain in {
    type filter hook ingress device "a0" priority 0;
    udp dport 6081 @th,64,8 0x08 @th,72,8 0x00 @th,384,8 0x45 @th,160,64 . @th,480,32 . @th,512,32 . @th,544,32 @passed ether daddr set ether saddr ether saddr set %s ip daddr set ip saddr ip saddr set 10.9.0.2 udp sport set 6081 fwd to "a0"
  }
}
"""
ELEMENT = "{ 0x%016x . 0x0a010002 . 0x0a020002 . 0x9c400050 timeout 60s }" % ENI


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def measure(g, seconds, env):
    recv = subprocess.Popen(["ip", "netns", "exec", g, sys.executable, "-c", RECEIVER, str(seconds + 1)],
                            stdout=subprocess.PIPE, text=True, env=env)
    assert recv.stdout.readline().strip() == "ready"
    sent = int(sh("ip", "netns", "exec", g, sys.executable, "-c", SENDER, str(seconds), env=env).stdout)
    got = int(recv.communicate()[0])
    return sent / seconds, got / seconds


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m bench.gwlb")
    ap.add_argument("--seconds", type=float, default=3.0)
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("bench.gwlb needs root (network namespaces)")
    tag = os.urandom(3).hex()
    g, ap_ns = f"i14gw-bg-{tag}", f"i14gw-ba-{tag}"
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=repo)
    proc = None
    try:
        sh("ip", "netns", "add", g)
        sh("ip", "netns", "add", ap_ns)
        sh("ip", "link", "add", "ga", "netns", g, "type", "veth", "peer", "name", "a0", "netns", ap_ns)
        sh("ip", "-n", g, "addr", "add", "10.9.0.1/24", "dev", "ga")
        sh("ip", "-n", ap_ns, "addr", "add", "10.9.0.2/24", "dev", "a0")
        for ns, dev in ((g, "ga"), (ap_ns, "a0"), (g, "lo"), (ap_ns, "lo")):
            sh("ip", "-n", ns, "link", "set", dev, "up")
        with tempfile.TemporaryDirectory() as tmp:
            rules = os.path.join(tmp, "pass.yaml")
            with open(rules, "w") as f:
                f.write("default_action: pass\nrules: []\n")
            ready = os.path.join(tmp, "ready")
            proc = subprocess.Popen(["ip", "netns", "exec", ap_ns, sys.executable, "-m", "appliance.source.gwlb",
                                     "--rules", rules, "--gwlb", "10.9.0.1/32", "--listen", "10.9.0.2",
                                     "--ready", ready], cwd=repo, env=env, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 10
            while not os.path.exists(ready) and time.monotonic() < deadline:
                time.sleep(0.1)
            log("python source ...")
            offered_py, py = measure(g, a.seconds, env)
            proc.terminate()
            proc.wait()
        mac = sh("ip", "-n", ap_ns, "-br", "link", "show", "a0").stdout.split()[2]
        sh("ip", "netns", "exec", ap_ns, "nft", "-f", "-", input=FASTPATH % mac)
        sh("ip", "netns", "exec", ap_ns, "nft", "add", "element", "netdev", "i14fast", "passed", ELEMENT)
        log("kernel fast path ...")
        offered_k, kern = measure(g, a.seconds, env)
        print(f"{'mode':<8} {'offered/s':>10} {'returned/s':>11}")
        print(f"{'python':<8} {offered_py:>10.0f} {py:>11.0f}")
        print(f"{'kernel':<8} {offered_k:>10.0f} {kern:>11.0f}")
        print(f"kernel/python returned: {kern / max(py, 1):.1f}x (a floor: the kernel row is bounded by the sender)")
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        for ns in (g, ap_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


if __name__ == "__main__":
    main()
