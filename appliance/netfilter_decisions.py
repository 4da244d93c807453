"""The nftables table that judges header-decided flows before any queue (inspection.kernel_decisions).

    table inet appliance_decide            ours alone; every chain named APPLIANCE-* (marks.py
                                           skips our own chains when it looks for mark users)
      APPLIANCE-DECIDE      forward hook, priority filter - 5: before iptables-nft's FORWARD
                            (priority filter), so before our APPLIANCE-INSPECT chain and its queue
                            ct state new only; OUTSIDE -> INSIDE: APPLIANCE-DECIDE-IN (the flow is
                            inbound), INSIDE -> OUTSIDE: APPLIANCE-DECIDE-OUT
      APPLIANCE-DECIDE-IN/OUT
                            the first-packet guard (kernel_policy.first_packet_decidable), then the
                            policy's entries in order, then its default:
                              pass   -> the offload pass connmark, accept: APPLIANCE-INSPECT
                                        accepts the flow's every packet by that mark, as an offloaded one
                              drop   -> drop; reject -> tcp reset / icmpx admin-prohibited (as the
                                        connmark REJECT rules): a dropped first packet leaves no
                                        conntrack entry to mark, the next one is judged the same
                              queue  -> return: iptables' APPLIANCE-INSPECT queues it as before

Native nftables, because the iptables-nft NFQUEUE chain cannot hold interval sets of networks
with negation: a rule's address set is a named interval set per family, its ports an anonymous
interval set. The table is replaced in one `nft -f` transaction (add, delete, define), checked
for drift against its own listing, and deleted on stop. (It is a transaction of its own, next to
the iptables one: for the moment between them, the old table and the new chains, or the
reverse, judge new flows -- each with a rule set that was checked.)
"""
import ipaddress
import logging
import re
import shutil

from .detect.kernel_policy import QUEUE
from .netfilter import nft, offload_marks

log = logging.getLogger("appliance.netfilter")

TABLE = "appliance_decide"
CHAIN = "APPLIANCE-DECIDE"
PRIORITY = "filter - 5"
TIMEOUT = 30


def table_text(policy, outside, inside, mark_mask):
    """The table as `nft -f` reads it (without the replace preamble)."""
    sets, chains = [], {"inbound": [], "outbound": []}
    passed = offload_marks(mark_mask)["pass"]
    keep = ~mark_mask & 0xFFFFFFFF
    # a counter on each decision: the flows the kernel decides are in no worker's stats
    verdicts = {
        "pass": [f"counter ct mark set ct mark & 0x{keep:08x} | 0x{passed:08x} accept"],
        "drop": ["counter drop"],
        "reject": ["meta l4proto tcp counter reject with tcp reset", "counter reject with icmpx type admin-prohibited"],
        QUEUE: ["return"],
    }
    for n, e in enumerate(policy.entries):
        for way in ("inbound", "outbound"):
            if e.direction not in ("any", way):
                continue
            for swapped in ((False, True) if e.either_way else (False,)):
                for match in _matches(e, swapped, f"e{n}{'r' if swapped else ''}", sets):
                    for v in verdicts[e.verdict]:
                        chains[way].append(" ".join(filter(None, (match, v))) + f' comment "rule {e.rule_id}"')
    lines = [f"table inet {TABLE} {{"]
    for name, family, elements in dict.fromkeys(sets):
        lines += [f"  set {name} {{", f"    type {family}_addr; flags interval;",
                  f"    elements = {{ {', '.join(elements)} }}", "  }"]
    lines += [f"  chain {CHAIN} {{", f"    type filter hook forward priority {PRIORITY}; policy accept;",
              "    ct state != new return",
              f"    iifname {_q(outside)} oifname {_q(inside)} jump {CHAIN}-IN",
              f"    iifname {_q(inside)} oifname {_q(outside)} jump {CHAIN}-OUT", "  }"]
    for way, suffix in (("inbound", "IN"), ("outbound", "OUT")):
        lines += [f"  chain {CHAIN}-{suffix} {{",
                  # the engine's first packet of an oriented flow (kernel_policy.first_packet_decidable)
                  "    meta l4proto != { tcp, udp } return",
                  "    tcp flags & (syn | ack) != syn return",
                  "    udp sport < 1024 udp dport >= 1024 return"]
        lines += [f"    {line}" for line in chains[way]]
        lines += [f'    {v} comment "default action"' for v in verdicts[policy.default]]
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _q(name):
    return '"' + name.replace('"', "") + '"'


def _matches(e, swapped, tag, sets):
    """The nft match expressions for an entry (one per address family it can fit, or one for
    both when it names no address). `swapped`: the reply's header (its src is the flow's dst)."""
    src, dst, sport, dport = (e.dst, e.src, e.dport, e.sport) if swapped else (e.src, e.dst, e.sport, e.dport)
    ports = ""
    if len(e.protos) == 1:
        ports += f"meta l4proto {'tcp' if 6 in e.protos else 'udp'} "
    for field, pset in (("sport", sport), ("dport", dport)):
        if pset is not None:
            ports += f"th {field} {'!= ' if pset.negated else ''}{{ {_ports(pset.ranges)} }} "
    ports = ports.strip()
    if src is None and dst is None:
        return [ports]
    out = []
    for version, family, key in ((4, "ipv4", "ip"), (6, "ipv6", "ip6")):
        parts, named = [f"meta nfproto {family}"], []
        for field, aset in (("saddr", src), ("daddr", dst)):
            if aset is None:
                continue
            nets = [n for n in ipaddress.collapse_addresses(n for n in aset.networks if n.version == version)]
            if not nets:
                if aset.negated:
                    continue            # "anything but" networks of the other family: every address here
                break                   # no network of this family: the entry cannot fit it
            name = f"{tag}_{field}{version}"
            named.append((name, family, tuple(str(n) for n in nets)))
            parts.append(f"{key} {field} {'!= ' if aset.negated else ''}@{name}")
        else:
            sets += named
            out.append(" ".join(filter(None, (*parts, ports))))
    return out


def _ports(ranges):
    merged = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return ", ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in merged)


def _nft(args, stdin=None, check=True):
    return nft(args, stdin, check, why=" (inspection.kernel_decisions)")


def install(policy, outside, inside, mark_mask):
    """Install or atomically replace the table; returns its listing (what `drift` compares)."""
    text = f"table inet {TABLE}\ndelete table inet {TABLE}\n" + table_text(policy, outside, inside, mark_mask)
    _nft(["-f", "-"], stdin=text)
    decided = sum(1 for e in policy.entries if e.verdict is not QUEUE)
    log.info("installed kernel decisions: %d of %d entries decided in the kernel, default %s",
             decided, len(policy.entries), policy.default or "queued")
    return listing()


_COUNTS = re.compile(r"counter packets \d+ bytes \d+")


def listing():
    """The table as the kernel lists it, its counters' values left out (they are no drift),
    or None when it is gone."""
    r = _nft(["list", "table", "inet", TABLE], check=False)
    return _COUNTS.sub("counter", r.stdout) if r.returncode == 0 else None


def counters(text=None):
    """{(rule, verdict): packets} the table's decisions counted so far ("rule 5", "default
    action"), from `nft list table` text (read here when None)."""
    if text is None:
        r = _nft(["list", "table", "inet", TABLE], check=False)
        text = r.stdout if r.returncode == 0 else ""
    out = {}
    for line in text.splitlines():
        m = re.search(r"counter packets (\d+) .*?(accept|drop|reject).*comment \"([^\"]+)\"", line)
        if m:
            key = (m.group(3), {"accept": "pass"}.get(m.group(2), m.group(2)))
            out[key] = out.get(key, 0) + int(m.group(1))
    return out


def drift(installed):
    """What changed in our table since install (empty when nothing)."""
    have = listing()
    if have is None:
        return [f"nftables table inet {TABLE} is gone"]
    if have != installed:
        for h, w in zip(have.splitlines() + [""], installed.splitlines() + [""]):
            if h != w:
                return [f"nftables table inet {TABLE} was edited: '{h.strip()}' (want '{w.strip()}')"]
    return []


def remove():
    """Delete our table; quiet when it does not exist (or nft is not installed: then none can)."""
    if shutil.which("nft") is not None and listing() is not None:
        _nft(["delete", "table", "inet", TABLE])
        log.info("removed kernel decisions table")
