"""What only the kernel knows about the datapath, read at scrape time: the NFQUEUE
counters, conntrack's fill, and the packets/bytes through each rule of our chains."""
import re

from appliance import netfilter

_COUNTED = re.compile(r"^\[(\d+):(\d+)\] -A (APPLIANCE-\S+) (.*)$")


def queues() -> dict:
    """queue -> {portid, waiting (queue_total), dropped, user_dropped, queued (id_sequence)}."""
    return netfilter.queue_counters()


def conntrack() -> dict:
    out = {}
    for key in ("count", "max"):
        try:
            with open(f"/proc/sys/net/netfilter/nf_conntrack_{key}") as f:
                out[key] = int(f.read().strip())
        except (OSError, ValueError):
            pass
    return out


def rule_role(chain: str, rule: str) -> str:
    """A short, stable name for one of our rules (netfilter.chains_text writes them)."""
    if chain == netfilter.JUMP_CHAIN:
        return "forward " + " ".join(w for w in rule.split() if not w.startswith("-") and "APPLIANCE" not in w)
    if "--ctstate INVALID" in rule:
        return "invalid_drop"
    if "NFQUEUE" in rule:
        return "queued"
    if "--save-mark" in rule:
        return "verdict_saved"
    kind = "offloaded" if "-m connmark" in rule else "decided"
    for target, verdict in (("-j ACCEPT", "pass"), ("-j DROP", "drop"), ("-j REJECT", "reject")):
        if target in rule:
            return f"{kind}_{verdict}"
    return "other"


def chain_counters() -> list:
    """[(family, chain, role, packets, bytes)] for every rule in our chains (rules of one role
    summed: REJECT has a TCP and an other-protocol rule)."""
    out = {}
    for family, names in netfilter.FAMILIES.items():
        if family == 6 and not netfilter.ipv6_available():
            continue
        save = names["restore"].replace("-restore", "-save")
        try:
            text = netfilter._run([save, "-c", "-t", "filter"], check=False).stdout
        except netfilter.NetfilterError:
            continue
        for line in text.splitlines():
            m = _COUNTED.match(line)
            if m:
                key = (family, m.group(3), rule_role(m.group(3), m.group(4)))
                p, b = out.get(key, (0, 0))
                out[key] = (p + int(m.group(1)), b + int(m.group(2)))
    return [(*k, *v) for k, v in sorted(out.items())]
