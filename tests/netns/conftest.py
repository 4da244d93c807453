"""A 3-namespace topology for the datapath tests (prefix "dp-"):

    client ns                 appliance ns                      server ns
    c0 10.1.0.2/24  ───  eth0 10.1.0.1 (outside)
       fd01::2/64            fd01::1
                             eth1 10.2.0.1 (inside)  ───  s0 10.2.0.2/24
                             fd02::1                        fd02::2/64

Veth pairs are created directly inside the namespaces (never in the root namespace),
the build stops at the first error, and every namespace is deleted at the end of the
session even when a test fails.
"""
import os
import secrets
import shutil
import subprocess

import pytest


def run(*cmd, check=True, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} -> exit {r.returncode}: {r.stderr.strip()}")
    return r


class Topology:
    def __init__(self):
        tag = secrets.token_hex(3)
        self.client, self.fw, self.server = f"dp-c-{tag}", f"dp-a-{tag}", f"dp-s-{tag}"
        self.client_ip, self.server_ip = "10.1.0.2", "10.2.0.2"
        self.client_ip6, self.server_ip6 = "fd01::2", "fd02::2"
        self.outside, self.inside = "eth0", "eth1"
        self.created = []

    def ex(self, ns, *cmd, check=False, **kw):
        return run("ip", "netns", "exec", ns, *cmd, check=check, **kw)

    def up(self):
        for ns in (self.client, self.fw, self.server):
            run("ip", "netns", "add", ns)
            self.created.append(ns)
        c, a, s = self.client, self.fw, self.server
        run("ip", "link", "add", "c0", "netns", c, "type", "veth", "peer", "name", "eth0", "netns", a)
        run("ip", "link", "add", "s0", "netns", s, "type", "veth", "peer", "name", "eth1", "netns", a)
        for ns, dev, v4, v6 in ((c, "c0", "10.1.0.2/24", "fd01::2/64"), (a, "eth0", "10.1.0.1/24", "fd01::1/64"),
                                (a, "eth1", "10.2.0.1/24", "fd02::1/64"), (s, "s0", "10.2.0.2/24", "fd02::2/64")):
            self.ex(ns, "ip", "addr", "add", v4, "dev", dev, check=True)
            self.ex(ns, "ip", "-6", "addr", "add", v6, "dev", dev, "nodad", check=True)
            self.ex(ns, "ip", "link", "set", dev, "up", check=True)
            self.ex(ns, "ip", "link", "set", "lo", "up", check=True)
        self.ex(c, "ip", "route", "add", "default", "via", "10.1.0.1", check=True)
        self.ex(c, "ip", "-6", "route", "add", "default", "via", "fd01::1", check=True)
        self.ex(s, "ip", "route", "add", "default", "via", "10.2.0.1", check=True)
        self.ex(s, "ip", "-6", "route", "add", "default", "via", "fd02::1", check=True)
        self.ex(a, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1", check=True)

    def down(self):
        for ns in self.created:
            # processes left in a namespace (servers) keep it busy: end ours first
            pids = run("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            run("ip", "netns", "del", ns, check=False)
        self.created = []


@pytest.fixture(scope="session")
def dp_topo():
    if os.geteuid() != 0:
        pytest.skip("datapath tests need root (network namespaces, NFQUEUE)")
    if not shutil.which("ip") or run("ip", "netns", "list", check=False).returncode != 0:
        pytest.skip("`ip netns` is unavailable")
    for tool in ("iptables-nft-restore", "curl", "nc", "conntrack"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed")
    t = Topology()
    try:
        t.up()
    except Exception:
        t.down()
        raise
    try:
        yield t
    finally:
        t.down()
