"""The conntrackd sync channel is unauthenticated UDP: whatever reaches ha.sync.port lands in
the external cache, and the commit on takeover writes it into the kernel -- connmark and all.
A host on the management link that is not the peer must not be able to plant a flow there
(with the offload PASS mark, a flow that bypasses inspection after the next takeover).

Two namespaces on one veth link: the appliance node (rvo-node-*, ha.sync from appliance.yaml,
started through `Conntrackd`, as `appliance ha` does) and an intruder (rvo-evil-*) at another
address of the management subnet, running its own conntrackd aimed at the node, with a
PASS-marked entry in its kernel. Real conntrackd, real conntrack, real iptables-nft."""
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.netns

GUARD = "APPLIANCE-HA-SYNC"
NODE, PEER, EVIL = "10.30.0.1", "10.30.0.2", "10.30.0.9"
PASS_MARK = "0x40000000"          # any mark: what matters is that it arrives
def flow(sport):
    return ["-p", "tcp", "-s", "10.1.0.66", "-d", "10.2.0.2", "--sport", str(sport), "--dport", "443"]

NODE_YAML = """\
interfaces: {{outside: eth0, inside: eth1, management: m0}}
ha:
  listen: {node}:7400
  peer: {peer}:7400
  check_listen: 10.31.0.1:7401
  check_peer: 10.31.0.2:7401
  secret: 0123456789abcdef0123
  route_tables: [rtb-0123456789abcdef0]
  eni: eni-0aaaaaaaaaaaaaaaa
  peer_eni: eni-0bbbbbbbbbbbbbbbb
  readyz: http://127.0.0.1:9900/readyz
  sync:
    interface: m0
    run_dir: {run}
"""

# runs in the node's namespace: conntrackd started the way `appliance ha` starts it, kept
# until stdin closes, then stopped the same way
NODE_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    from appliance.config import load_config
    from appliance.ha.conntrackd import Conntrackd
    c = Conntrackd(load_config(sys.argv[2]).ha)
    ok, detail = c.start()
    print("started" if ok else "failed", detail, flush=True)
    sys.stdin.read()
    c.stop()
""")


def sh(*argv, ns=None, check=True):
    argv = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)


@pytest.fixture
def link(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    for tool in ("ip", "conntrack", "conntrackd", "iptables-nft-restore"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (dev/setup.sh)")
    tag = secrets.token_hex(3)
    node, evil = f"rvo-node-{tag}", f"rvo-evil-{tag}"
    procs = []
    try:
        for ns in (node, evil):
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "set", "lo", "up", ns=ns)
        sh("ip", "link", "add", "m0", "type", "veth", "peer", "name", "m0", "netns", evil, ns=node)
        for ns, addr in ((node, NODE), (evil, EVIL)):
            sh("ip", "addr", "add", f"{addr}/24", "dev", "m0", ns=ns)
            sh("ip", "link", "set", "m0", "up", ns=ns)
        yield node, evil, tmp_path, procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        for ns in (node, evil):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def intruder_conf(run, source):
    os.makedirs(run, exist_ok=True)
    path = os.path.join(run, "conntrackd.conf")
    with open(path, "w") as f:
        f.write(f"""\
Sync {{
\tMode FTFW {{
\t}}
\tUDP {{
\t\tIPv4_address {source}
\t\tIPv4_Destination_Address {NODE}
\t\tPort 3780
\t\tInterface m0
\t\tChecksum on
\t}}
}}
General {{
\tHashSize 8192
\tHashLimit 65536
\tLogFile {run}/log
\tSyslog off
\tLockFile {run}/lock
\tUNIX {{
\t\tPath {run}/ctl
\t}}
\tFilter From Userspace {{
\t\tProtocol Accept {{
\t\t\tTCP
\t\t}}
\t}}
}}
""")
    return path


def external_cache(node, conf):
    return sh("conntrackd", "-C", conf, "-e", ns=node, check=False).stdout


def plant(evil, run, source, sport, procs):
    """The intruder's conntrackd at `source`, announcing a marked flow from port `sport`."""
    econf = intruder_conf(run, source)
    procs.append(subprocess.Popen(["ip", "netns", "exec", evil, "conntrackd", "-C", econf],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    deadline = time.monotonic() + 10
    while sh("conntrackd", "-C", econf, "-s", ns=evil, check=False).returncode != 0:
        assert time.monotonic() < deadline, "the intruder's conntrackd did not start"
        time.sleep(0.1)
    # planted in its own kernel, which its conntrackd announces (an event), then bulk-sent
    sh("conntrack", "-I", *flow(sport), "--state", "ESTABLISHED", "-t", "600", "-u", "SEEN_REPLY,ASSURED",
       "--mark", PASS_MARK, ns=evil)
    time.sleep(1)
    sh("conntrackd", "-C", econf, "-B", ns=evil, check=False)
    time.sleep(2)
    procs[-1].terminate()
    procs[-1].wait(10)


def test_only_the_peer_can_fill_the_external_cache(link):
    node, evil, tmp, procs = link
    run = str(tmp / "node")
    cfg = tmp / "appliance.yaml"
    cfg.write_text(NODE_YAML.format(node=NODE, peer=PEER, run=run))
    n = subprocess.Popen(["ip", "netns", "exec", node, sys.executable, "-c", NODE_SCRIPT, REPO, str(cfg)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    procs.append(n)
    assert n.stdout.readline().startswith("started"), "the node's conntrackd did not start"
    nconf = os.path.join(run, "conntrackd.conf")

    plant(evil, str(tmp / "evil"), EVIL, 40123, procs)
    cache = sh("conntrackd", "-C", nconf, "-e", ns=node, check=False).stdout
    assert "40123" not in cache, f"an intruder at {EVIL} filled the node's external cache:\n{cache}"

    # The same intruder with the peer's address (a host on the link that can spoof it: what
    # only the deployment can prevent, docs/ha.md): its entry arrives -- which also shows
    # the channel carries state at all, so the refusal above is the guard's doing
    sh("conntrack", "-D", *flow(40123), ns=evil)       # announced from the peer's address only 40124
    sh("ip", "addr", "del", f"{EVIL}/24", "dev", "m0", ns=evil)
    sh("ip", "addr", "add", f"{PEER}/24", "dev", "m0", ns=evil)
    plant(evil, str(tmp / "spoof"), PEER, 40124, procs)
    cache = sh("conntrackd", "-C", nconf, "-e", ns=node, check=False).stdout
    assert "40124" in cache and "40123" not in cache, cache
    # a takeover's commit writes what the cache holds, and only that, into the kernel
    sh("conntrackd", "-C", nconf, "-c", ns=node, check=False)
    assert "40124" in sh("conntrack", "-L", *flow(40124), ns=node, check=False).stdout
    assert "40123" not in sh("conntrack", "-L", *flow(40123), ns=node, check=False).stdout

    # stopped the way `appliance ha` stops it: the guard goes with conntrackd
    assert f"-j {GUARD}" in sh("iptables-nft", "-w", "-S", "INPUT", ns=node).stdout
    n.stdin.close()
    n.wait(20)
    assert f"-j {GUARD}" not in sh("iptables-nft", "-w", "-S", "INPUT", ns=node).stdout
