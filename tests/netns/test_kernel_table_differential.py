"""The nft table the kernel pre-decision loads (netfilter_decisions.table_text), evaluated by the
kernel on real frames, against the policy it was compiled from (KernelPolicy.decide, which
tests/replay/test_kernel_policy.py proves against the engine). Random header rule sets; for
each packet the one end chain (QUEUE, DROP, REJECT, PASS) whose counter moved is the kernel's
verdict. The text is not enough: nft rewrites what it reads (two adjacent `!= { 53 }` port
matches were merged into one "(sport, dport) != (53, 53)" test: either port differing fitted).

    src ns (so) ── o0 [fw ns: the table, forwarding] i0 ── (di) dst ns

Frames go out raw (AF_PACKET) from src (inbound: o0 -> i0) or dst (outbound); the fw routes
everything from o0 to i0 and back by policy routing to static neighbours.
"""
import os
import random
import re
import secrets
import subprocess
import sys

import pytest
from scapy.all import Ether, IP, IPv6, TCP, UDP, raw

from datapath import run
from appliance.detect.kernel_policy import QUEUE, compile_policy
from appliance.detect.loader import load_rules
from appliance.netfilter_decisions import CHAIN, TABLE, table_text

pytestmark = pytest.mark.netns

HOME = ["10.0.0.0/8", "fd00::/8"]
V4 = ["10.1.2.3", "10.9.9.9", "192.0.2.10", "198.51.100.20", "203.0.113.7"]
V6 = ["fd00::1", "fd00:1::2", "2001:db8::5", "2001:db8:1::9"]
ADDRS = ["10.0.0.0/8", "10.1.0.0/16", "192.0.2.0/24", "\"!10.0.0.0/8\"", "203.0.113.7", "fd00::/8",
         "\"!fd00::/8\"", "2001:db8::/32", "$HOME_NET", "$EXTERNAL_NET", "[10.0.0.0/8, \"!10.1.0.0/16\"]",
         "[192.0.2.0/24, \"2001:db8::/32\"]"]
PORTS = ["80", "[80, 443]", "\"1000-2000\"", "\"!53\"", "\"!80\"", "[22, \"8000-8099\"]", "53",
         "\"![80, 443]\"", "\"0-1023\"", "\"!1024-65535\"", "65535"]
SPORTS, DPORTS = (40000, 1500, 53, 80, 1023, 1024, 65535), (80, 443, 53, 1500, 22, 8080, 9999, 0, 65535)
CHAINS = ("QUEUE", "DROP", "REJECT", "PASS")
VERDICT = {"QUEUE": QUEUE, "DROP": "drop", "REJECT": "reject", "PASS": "pass"}
SENDER = ("import socket, sys\ns = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind((sys.argv[1], 0))\n"
          "print('ready', flush=True)\nfor line in sys.stdin:\n"
          "    s.send(bytes.fromhex(line.strip())); print('ok', flush=True)\n")
MAC = {"so": "02:00:00:00:00:01", "di": "02:00:00:00:00:02", "o0": "02:00:00:00:00:11", "i0": "02:00:00:00:00:12"}


def header_rules(seed, n=12):
    """Header-only verdict rules (negated ports and addresses, ranges, directions, both
    families), a few logging or alert rules that keep a flow queued."""
    rng = random.Random(seed)
    out = [f"default_action: {rng.choice(('pass', 'drop', 'reject'))}", "rules:"]
    for i in range(n):
        action = rng.choice(("pass", "pass", "drop", "reject", "alert" if rng.random() < 0.2 else "drop"))
        proto = rng.choice(("tcp", "udp", "tcp", "udp", "ip"))
        r = [f"  - id: {i + 1}", f"    action: {action}", f"    proto: {proto}"]
        if action in ("drop", "reject") and rng.random() < 0.8:
            r.append("    log: false")
        for key in ("src", "dst"):
            if rng.random() < 0.4:
                r.append(f"    {key}: {rng.choice(ADDRS)}")
        if proto != "ip":
            for key in ("src_port", "dst_port"):
                if rng.random() < (0.5 if key == "src_port" else 0.7):
                    r.append(f"    {key}: {rng.choice(PORTS)}")
        if rng.random() < 0.25:
            r.append(f"    direction: {rng.choice(('inbound', 'outbound'))}")
        if rng.random() < 0.1:
            r.append("    bidirectional: true")
        out += r
    return "\n".join(out) + "\n"


class Bench:
    def __init__(self):
        tag = secrets.token_hex(3)
        self.src, self.fw, self.dst = (f"kt-{n}-{tag}" for n in ("src", "fw", "dst"))
        self.senders = {}

    def ex(self, ns, *cmd, **kw):
        return run("ip", "netns", "exec", ns, *cmd, **kw)

    def up(self):
        for ns in (self.src, self.fw, self.dst):
            run("ip", "netns", "add", ns)
        run("ip", "-n", self.fw, "link", "add", "o0", "type", "veth", "peer", "name", "so", "netns", self.src)
        run("ip", "-n", self.fw, "link", "add", "i0", "type", "veth", "peer", "name", "di", "netns", self.dst)
        for ns, dev in ((self.fw, "o0"), (self.fw, "i0"), (self.src, "so"), (self.dst, "di")):
            run("ip", "-n", ns, "link", "set", dev, "address", MAC[dev])
            run("ip", "-n", ns, "link", "set", dev, "up")
        run("ip", "-n", self.fw, "link", "set", "lo", "up")
        self.ex(self.fw, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
                "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
                "net.ipv4.conf.o0.rp_filter=0", "net.ipv4.conf.i0.rp_filter=0")
        # every frame in on one side goes out on the other, to a static neighbour there
        for dev, v4, v6, peer4, peer6, mac, table, frm in (
                ("o0", "10.250.0.1/30", "fd99::1/64", "10.250.0.2", "fd99::2", MAC["so"], 100, "i0"),
                ("i0", "10.250.1.1/30", "fd99:1::1/64", "10.250.1.2", "fd99:1::2", MAC["di"], 200, "o0")):
            run("ip", "-n", self.fw, "addr", "add", v4, "dev", dev)
            run("ip", "-n", self.fw, "-6", "addr", "add", v6, "dev", dev, "nodad")
            run("ip", "-n", self.fw, "neigh", "add", peer4, "lladdr", mac, "dev", dev, "nud", "permanent")
            run("ip", "-n", self.fw, "-6", "neigh", "add", peer6, "lladdr", mac, "dev", dev, "nud", "permanent")
            run("ip", "-n", self.fw, "route", "add", "default", "via", peer4, "table", str(table))
            run("ip", "-n", self.fw, "-6", "route", "add", "default", "via", peer6, "table", str(table))
            run("ip", "-n", self.fw, "rule", "add", "iif", frm, "lookup", str(table))
            run("ip", "-n", self.fw, "-6", "rule", "add", "iif", frm, "lookup", str(table))
        for ns, dev in ((self.src, "so"), (self.dst, "di")):
            p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SENDER, dev],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert p.stdout.readline().strip() == "ready"
            self.senders[dev] = p

    def down(self):
        for p in self.senders.values():
            p.kill()
            p.wait()
        for ns in (self.src, self.fw, self.dst):
            run("ip", "netns", "del", ns, check=False)

    def load(self, text):
        """The table with a counter first in each end chain."""
        for k in CHAINS:
            text = text.replace(f"  chain {CHAIN}-{k} {{\n", f"  chain {CHAIN}-{k} {{\n    counter\n")
        self.ex(self.fw, "nft", "delete", "table", "inet", TABLE, check=False)
        self.ex(self.fw, "nft", "-f", "-", input=text)

    def counts(self):
        out = self.ex(self.fw, "nft", "list", "table", "inet", TABLE).stdout
        return {k: int(re.search(rf"chain {CHAIN}-{k} {{\n\s*counter packets (\d+)", out).group(1)) for k in CHAINS}

    def verdict(self, dev, frame):
        """The end chain the frame reached, as a policy verdict (the table forgets every flow first)."""
        flush = "".join(f"flush set inet {TABLE} flows_{s}{v}\n" for s in ("queued", "refused", "passed") for v in "46")
        self.ex(self.fw, "nft", "-f", "-", input=flush)
        self.ex(self.fw, "conntrack", "-F", check=False)
        before = self.counts()
        p = self.senders[dev]
        p.stdin.write(frame.hex() + "\n")
        p.stdin.flush()
        assert p.stdout.readline().strip() == "ok"
        after = self.counts()
        moved = [k for k in CHAINS if after[k] != before[k]]
        assert len(moved) <= 1, (moved, frame.hex())
        # none: the table returned before deciding (a packet conntrack holds not new), which
        # leaves it to the queue's rules as the QUEUE chain does
        return VERDICT[moved[0]] if moved else QUEUE


@pytest.fixture(scope="module")
def bench():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    b = Bench()
    try:
        b.up()
        yield b
    finally:
        b.down()


def packet(rng):
    """((proto, src, sport, dst, dport, direction, tcp flags), sending device, frame)."""
    v6 = rng.random() < 0.4
    src, dst = rng.sample(V6 if v6 else V4, 2)
    proto = rng.choice((6, 6, 17))
    sport, dport = rng.choice(SPORTS + (rng.randrange(65536),)), rng.choice(DPORTS + (rng.randrange(65536),))
    flags = rng.choice((0x02, 0x02, 0x02, 0x12, 0x10)) if proto == 6 else 0
    way = rng.choice(("inbound", "outbound"))
    dev, to = ("so", "o0") if way == "inbound" else ("di", "i0")
    l3 = IPv6(src=src, dst=dst) if v6 else IP(src=src, dst=dst)
    l4 = TCP(sport=sport, dport=dport, flags=flags, seq=1000) if proto == 6 else UDP(sport=sport, dport=dport)
    return (proto, src, sport, dst, dport, way, flags), dev, raw(Ether(src=MAC[dev], dst=MAC[to]) / l3 / l4)


def check(bench, tmp_path, rules_text, packets):
    path = tmp_path / "rules.yaml"
    path.write_text(rules_text)
    policy = compile_policy(load_rules([str(path)], home_net=HOME))
    bench.load(table_text(policy, "o0", "i0", 0x3 << 20))
    wrong = []
    for key, dev, frame in packets:
        kernel, engine = bench.verdict(dev, frame), policy.decide(*key)
        if kernel != engine:
            wrong.append((key, kernel, engine))
    return wrong


def test_both_ports_negated(bench, tmp_path):
    """`src_port: !53, dst_port: !53` fits only when neither port is 53 (found by review: nft
    merged the two inequalities into one)."""
    rules = ("default_action: drop\nrules:\n"
             "  - {id: 1, action: pass, proto: udp, src_port: \"!53\", dst_port: \"!53\"}\n"
             "  - {id: 2, action: reject, proto: tcp, src_port: \"!80\", dst_port: \"!80\", log: false}\n")
    def frame(l3, l4):
        return raw(Ether(src=MAC["so"], dst=MAC["o0"]) / l3 / l4)
    packets = []
    for proto, l4t, port in ((17, UDP, 53), (6, TCP, 80)):
        for sport, dport in ((5000, port), (port, 5000), (5000, 6000)):
            for l3, src, dst in ((IP, "10.1.2.3", "192.0.2.10"), (IPv6, "fd00::1", "2001:db8::5")):
                l4 = l4t(sport=sport, dport=dport, **({"flags": "S"} if proto == 6 else {}))
                key = (proto, src, sport, dst, dport, "inbound", 0x02 if proto == 6 else 0)
                packets.append((key, "so", frame(l3(src=src, dst=dst), l4)))
    assert check(bench, tmp_path, rules, packets) == []


@pytest.mark.parametrize("seed", range(8))
def test_random_header_rules(bench, tmp_path, seed):
    rng = random.Random(seed)
    assert check(bench, tmp_path, header_rules(seed), [packet(rng) for _ in range(40)]) == []
