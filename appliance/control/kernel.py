"""What only the kernel knows about the datapath, read at scrape time: the NFQUEUE
counters, conntrack's fill, and the packets/bytes through each rule of our chains."""
from appliance import netfilter


def filter_tables() -> dict:
    """{family: netfilter.filter_listing(family)}: one `iptables-nft-save -c` per family gives
    /metrics its counters and /readyz its drift check (not one process per chain). Read fresh
    each time: the queue counters fail-open passes are derived against are read fresh too."""
    out = {}
    for f in netfilter.FAMILIES:
        if f == 6 and not netfilter.ipv6_available():
            continue
        try:
            out[f] = netfilter.filter_listing(f)
        except netfilter.NetfilterError:
            out[f] = None
    return out


def link_state(name: str) -> str:
    """Whether one interface of this namespace can carry packets now: "up", "down"
    (administratively), "no carrier" (a veth whose peer is down, a NIC without link) or
    "missing". Read from the flags and the carrier, which change at once; operstate follows
    them only when the kernel's linkwatch gets to it (up to a second later)."""
    try:
        with open(f"/sys/class/net/{name}/flags") as f:
            if not int(f.read(), 16) & 0x1:          # IFF_UP
                return "down"
        with open(f"/sys/class/net/{name}/carrier") as f:
            return "up" if f.read().strip() == "1" else "no carrier"
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError):                    # carrier unreadable: the driver does not say
        return "up"


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
    if "-j SYNPROXY" in rule:
        return "synproxied"                 # config `overload.synproxy`: SYNs and cookie ACKs the kernel answered
    if "--ctstate INVALID" in rule:
        return "invalid_drop"
    if "NFQUEUE" in rule:
        # config `overload.established_first`: a flow's first packets, queued apart
        return "queued_new" if "--ctstate NEW" in rule or "--tcp-flags" in rule else "queued"
    if "-m hashlimit" in rule:
        return "source_limited"             # config `overload`: a source's new flows past its limit
    if "--save-mark" in rule:
        return "verdict_saved"
    if "CONNMARK --set-xmark" in rule:
        return "syn_unmarked"               # a bare SYN on a marked connection, sent to a worker
    kind = "offloaded" if "-m connmark" in rule else "decided"
    for target, verdict in (("-j ACCEPT", "pass"), ("-j DROP", "drop"), ("-j REJECT", "reject")):
        if target in rule:
            return f"{kind}_{verdict}"
    return "other"


def chain_counters() -> list:
    """[(family, chain, role, packets, bytes)] for every rule in our chains (rules of one role
    summed: REJECT has a TCP and an other-protocol rule)."""
    out = {}
    for family, chains in filter_tables().items():
        for chain in (netfilter.JUMP_CHAIN, netfilter.INSPECT_CHAIN):
            for rule, p, b in (chains or {}).get(chain, []):
                key = (family, chain, rule_role(chain, rule.split(" ", 2)[2]))
                have = out.get(key, (0, 0))
                out[key] = (have[0] + p, have[1] + b)
    return [(*k, *v) for k, v in sorted(out.items())]
