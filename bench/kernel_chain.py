"""Kernel decisions: what the nftables table costs a new flow, by rule-set size
(`python3 -m bench.kernel_chain [--flows N]`, root; not part of `python3 -m bench`).

The table netfilter_decisions.table_text writes for a rule set, hooked on `output` instead
of `forward` in a scratch namespace of its own (bench-kc; a veth pair, a static neighbour),
judges N UDP datagrams from N source ports: each a new conntrack flow, each walking the chain.
Baseline, measured right before in the same run: the same table with no entries (the default
action only). Rule sets: a block list of n header-only drop rules, one /24 each (one set
lookup since adjacent entries differing in one address field are merged; without that, each
rule is one more rule walked), and bench.rulegen's mix (alert rules: the flow is queued early).
Prints us per new flow and the ratio; the machine's load (uptime) with it: the figures are noisy.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

from appliance.detect.kernel_policy import KernelPolicy, compile_policy
from appliance.detect.loader import load_rules
from appliance.netfilter_decisions import table_text
from .rulegen import write_rules

NS = "bench-kc"
SEND = """
import socket, sys, time
t = time.perf_counter()
for i in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("10.9.0.1", 10000 + i))
    s.sendto(b"x", ("10.9.0.2", 30000)); s.close()
print(time.perf_counter() - t)
"""


def on_output(text):
    """The table on the output hook, its inbound chain for every packet."""
    text = text.replace("type filter hook forward", "type filter hook output")
    text = re.sub(r'    iifname "\S+" oifname "\S+" jump (\S+-IN)\n', r"    jump \1\n", text)
    return re.sub(r'    iifname "\S+" oifname "\S+" jump \S+-OUT\n', "", text)


def per_flow(text, flows):
    """Seconds per new flow sending through the table (a namespace made and deleted here)."""
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        def ex(*cmd, **kw):
            return subprocess.run(["ip", "netns", "exec", NS, *cmd], check=True, **kw)
        ex("ip", "link", "set", "lo", "up")
        ex("ip", "link", "add", "kc0", "type", "veth", "peer", "name", "kc1")
        ex("ip", "link", "set", "kc0", "up")
        ex("ip", "link", "set", "kc1", "up")
        ex("ip", "addr", "add", "10.9.0.1/24", "dev", "kc0")
        ex("ip", "neigh", "add", "10.9.0.2", "lladdr", "02:00:00:00:00:02", "dev", "kc0")
        ex("nft", "-f", "-", input=on_output(text), text=True)
        return float(ex(sys.executable, "-c", SEND, str(flows), capture_output=True, text=True).stdout) / flows
    finally:
        subprocess.run(["ip", "netns", "del", NS], check=False)


def block_list(directory, n):
    lines = ["default_action: pass", "rules:"]
    for i in range(n):
        lines.append(f"  - {{id: {i + 1}, msg: b{i}, action: drop, src: 100.{64 + i // 256}.{i % 256}.0/24, log: false}}")
    path = os.path.join(directory, f"block{n}.yaml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=2000)
    o = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench.kernel_chain needs root (a network namespace)")
    print("load:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    d = tempfile.mkdtemp()
    print(f"{'rule set':<28} {'rules':>6} {'nft rules':>9} {'base us':>8} {'table us':>9} {'ratio':>6}")
    for name, path, merge in [*(("block list", block_list(d, n), True) for n in (100, 1000, 10000)),
                              *(("block list, not merged", block_list(d, n), False) for n in (100, 1000, 10000)),
                              *(("bench.rulegen", write_rules(d, n), True) for n in (1000, 10000))]:
        rules = load_rules([path])
        policy = compile_policy(rules)
        text = table_text(policy, "eth0", "eth1", 0x3000, merge=merge)
        nft_rules = sum(1 for line in text.splitlines() if 'comment "rule' in line)
        base = per_flow(table_text(KernelPolicy((), policy.default), "eth0", "eth1", 0x3000), o.flows)
        full = per_flow(text, o.flows)
        print(f"{name:<28} {len(rules.rules):>6} {nft_rules:>9} {base * 1e6:>8.1f} {full * 1e6:>9.1f} "
              f"{full / base:>6.2f}")


if __name__ == "__main__":
    main()
