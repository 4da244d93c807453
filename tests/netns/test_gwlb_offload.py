"""The kernel fast path's nftables program on its own (appliance.gwlb_offload), frame by frame.

    gwlb ns  ga 10.9.0.1 (and .3)  ──veth──  a0 10.9.0.2  appliance ns: the table, no socket

A frame with full checksums (sent from an AF_PACKET socket: no checksum offload to hide a
wrong one) either comes back rewritten by the kernel or does not; returned frames are read
on the same socket and checked field by field, checksums recomputed.
"""
import json
import os
import subprocess
import sys

import pytest

from tests.netns.datapath import REPO, run

pytestmark = pytest.mark.netns

ENI = 0x0E11000000ABCDEF
# In the appliance namespace: install, then add the flows' elements with a worker's FlowSets
# from Flows built of decoded inner packets (as the Inspector builds them).
INSTALL = """
import sys
from appliance import gwlb_offload as g
from appliance.decode import decode_l3
from appliance.flow import Flow, flow_key
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.packet import raw
dev, mac = g.device_of("10.9.0.2")
installed = g.install(dev, mac, "10.9.0.2", ["10.9.0.1/32"])
sets = g.FlowSets()
for action, inner in (("pass", IP(src="10.1.0.2", dst="10.2.0.2") / TCP(sport=40000, dport=80)),
                      ("pass", IPv6(src="fd01::2", dst="fd02::2") / TCP(sport=40000, dport=80)),
                      ("drop", IP(src="10.1.0.2", dst="10.2.0.2") / UDP(sport=40000, dport=53))):
    p = decode_l3(raw(inner)); p.tunnel = %d
    assert sets.add(Flow(flow_key(p), p), action)
sets.flush()
assert len(sets.flows) == 3 and sets.errors == 0
print(installed, end="")
""" % ENI
# In the gwlb namespace: send each frame (hex) from the argument list, print which came back
# (index -> returned frame hex), waiting a little for each.
EXCHANGE = """
import json, select, socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.bind(("ga", 0))
out = {}
for i, frame in enumerate(sys.argv[1:]):
    s.send(bytes.fromhex(frame))
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        if select.select([s], [], [], 0.05)[0]:
            data, addr = s.recvfrom(65535)
            if addr[2] != socket.PACKET_OUTGOING and data[23] == 17:     # UDP coming in
                out[i] = data.hex()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def lab():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, nftables)")
    tag = os.urandom(3).hex()
    g, a = f"i14go-g-{tag}", f"i14go-a-{tag}"
    created = []
    try:
        for ns in (g, a):
            run("ip", "netns", "add", ns)
            created.append(ns)
        run("ip", "link", "add", "ga", "netns", g, "type", "veth", "peer", "name", "a0", "netns", a)
        run("ip", "-n", g, "addr", "add", "10.9.0.1/24", "dev", "ga")
        run("ip", "-n", g, "addr", "add", "10.9.0.3/24", "dev", "ga")
        run("ip", "-n", a, "addr", "add", "10.9.0.2/24", "dev", "a0")
        for ns, dev in ((g, "ga"), (a, "a0")):
            run("ip", "-n", ns, "link", "set", dev, "up", "mtu", "9000")
        env = dict(os.environ, PYTHONPATH=REPO)
        installed = run("ip", "netns", "exec", a, sys.executable, "-c", INSTALL, env=env, cwd=REPO).stdout
        macs = {dev: json.loads(run("ip", "-n", ns, "-j", "link", "show", dev).stdout)[0]["address"]
                for ns, dev in ((g, "ga"), (a, "a0"))}
        yield {"g": g, "a": a, "env": env, "installed": installed, "macs": macs}
    finally:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def frame(lab, inner, src="10.9.0.1", options=None):
    """An Ethernet frame: GENEVE as GWLB builds it (or with `options`), full checksums."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import raw
    from appliance import geneve
    payload = geneve.encapsulate(ENI, 0x0A0B0C0D01020304, 0x1234, raw(inner))
    if options is not None:
        payload = bytes([len(options) // 4, 0]) + payload[2:8] + options + payload[8 + 32:]
    return raw(Ether(src=lab["macs"]["ga"], dst=lab["macs"]["a0"]) / IP(src=src, dst="10.9.0.2", id=7)
               / UDP(sport=51000, dport=6081) / payload), payload


def exchange(lab, frames):
    r = run("ip", "netns", "exec", lab["g"], sys.executable, "-c", EXCHANGE, *(f.hex() for f in frames))
    return {int(k): bytes.fromhex(v) for k, v in json.loads(r.stdout).items()}


def counters(lab):
    r = run("ip", "netns", "exec", lab["a"], sys.executable, "-c",
            "import json; from appliance import gwlb_offload as g; print(json.dumps(g.counters()))",
            env=lab["env"], cwd=REPO)
    return json.loads(r.stdout)


def test_passed_flow_comes_back_rewritten_with_valid_checksums(lab):
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.packet import raw
    sent = [frame(lab, IP(src="10.1.0.2", dst="10.2.0.2") / TCP(sport=40000, dport=80, flags="A") / b"data"),
            frame(lab, IP(src="10.2.0.2", dst="10.1.0.2") / TCP(sport=80, dport=40000, flags="PA") / b"reply"),
            frame(lab, IPv6(src="fd01::2", dst="fd02::2") / TCP(sport=40000, dport=80, flags="A") / b"six")]
    back = exchange(lab, [f for f, _ in sent])
    assert sorted(back) == [0, 1, 2]
    for i, (_, payload) in enumerate(sent):
        e = Ether(back[i])
        assert (e.src, e.dst) == (lab["macs"]["a0"], lab["macs"]["ga"])
        assert (e[IP].src, e[IP].dst, e[UDP].sport, e[UDP].dport) == ("10.9.0.2", "10.9.0.1", 6081, 6081)
        assert raw(e[UDP].payload) == payload                 # GENEVE header, options, inner: untouched
        ip_sum, udp_sum = e[IP].chksum, e[UDP].chksum
        del e[IP].chksum, e[UDP].chksum
        again = Ether(raw(e))
        assert (ip_sum, udp_sum) == (again[IP].chksum, again[UDP].chksum)


def test_what_the_kernel_leaves_to_the_worker(lab):
    """TCP SYN/FIN/RST, unknown flows, other option layouts, IPv4 options, inner fragments
    and strangers' datagrams are not answered by the kernel."""
    from scapy.layers.inet import IP, TCP, UDP
    flow = dict(src="10.1.0.2", dst="10.2.0.2")
    tcp = dict(sport=40000, dport=80)
    extra = bytes.fromhex("0108010200000000000000000108020200000000000000000108030100001234"
                          "0109010000000000")                      # a fourth (non-critical) option
    frames = [frame(lab, IP(**flow) / TCP(**tcp, flags=f))[0] for f in ("S", "FA", "R", "RA")]
    frames += [frame(lab, IP(**flow) / TCP(sport=40001, dport=80, flags="A"))[0],            # unknown flow
               frame(lab, IP(**flow) / UDP(sport=40000, dport=80))[0],                      # same ports, UDP
               frame(lab, IP(**flow) / TCP(**tcp, flags="A"), options=extra)[0],
               frame(lab, IP(**flow, options=b"\x01\x01\x01\x00") / TCP(**tcp, flags="A"))[0],
               frame(lab, IP(**flow, flags="MF") / TCP(**tcp, flags="A"))[0],
               frame(lab, IP(**flow) / TCP(**tcp, flags="A"), src="10.9.0.3")[0]]
    control = frame(lab, IP(**flow) / TCP(**tcp, flags="A"))[0]
    back = exchange(lab, [*frames, control])
    assert list(back) == [len(frames)]                       # only the control came back


def test_dropped_flow_is_dropped_and_counted(lab):
    from scapy.layers.inet import IP, UDP
    before = counters(lab)["drop4_udp"][0]
    f = frame(lab, IP(src="10.1.0.2", dst="10.2.0.2") / UDP(sport=40000, dport=53) / b"q")[0]
    assert exchange(lab, [f, f]) == {}
    assert counters(lab)["drop4_udp"][0] - before == 2


def test_drift_and_remove(lab):
    ns = ["ip", "netns", "exec", lab["a"], sys.executable, "-c"]
    check = ("import sys; from appliance import gwlb_offload as g; print(g.drift(sys.stdin.read()))")
    assert run(*ns, check, input=lab["installed"], env=lab["env"], cwd=REPO).stdout.strip() == "[]"
    run("ip", "netns", "exec", lab["a"], "nft", "insert", "rule", "netdev", "appliance_gwlb", "ingress", "accept")
    assert "was edited" in run(*ns, check, input=lab["installed"], env=lab["env"], cwd=REPO).stdout
    run(*ns, "from appliance import gwlb_offload as g; g.remove(); g.remove()", env=lab["env"], cwd=REPO)
    assert "is gone" in run(*ns, check, input=lab["installed"], env=lab["env"], cwd=REPO).stdout
