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
      APPLIANCE-DECIDE-QUEUE / -DROP / -REJECT
                            what a queued / dropped / rejected new flow leaves behind: its reverse
                            tuple in flows_queued4/6 or flows_refused4/6 (below), then the verdict

The flows a worker may hold that conntrack does not: a first packet the kernel or a worker
dropped leaves no conntrack entry (it is never confirmed), but the engine keeps its flow (a
drop is final; a pending flow waits for its next packet), so a packet the other way belongs to
that flow, while conntrack calls it NEW with the other end as the initiator. Judged as a new
flow the other way round, an answer would be passed, and its conntrack pass mark would pass the
dropped side's next packets too (a `content` drop rule defeated by the server speaking next;
an outbound drop rule by the outside host sending to the same ports). So every queued new
packet puts its reverse tuple in `flows_queued` (a packet that fits goes to the queue: the
worker judges it with its flow), every dropped or rejected one in `flows_refused` (a packet
that fits is dropped, as the engine's decided flow drops it), for the engine's idle timeout of
a flow in that state (flow.TIMEOUTS, refreshed by every packet that fits; _REMEMBERED), and a
kernel-passed UDP flow's in `flows_passed` (conntrack forgets answered UDP before the engine).
Each set holds SET_SIZE flows per family; past that, a new one is not remembered (a flood of
new flows fills it: docs/datapath.md says what that loses).

Native nftables, because the iptables-nft NFQUEUE chain cannot hold interval sets of networks
with negation: a rule's address set is a named interval set per family, its ports an anonymous
interval set. The table is replaced in one `nft -f` transaction (flush its chains, delete the rules' sets,
define; the flows_* sets keep their flows), checked for drift against its own listing, and
deleted on stop. (It is a transaction of its own, next to
the iptables one: for the moment between them, the old table and the new chains, or the
reverse, judge new flows -- each with a rule set that was checked.)
"""
import ipaddress
import logging
import re
import shutil
from dataclasses import replace

from .detect.kernel_policy import QUEUE
from .detect.rule import AddrSet
from .flow import TIMEOUTS, NEW, ESTABLISHED
from .netfilter import NetfilterError, nft, offload_marks
from .packet import TCP, UDP

log = logging.getLogger("appliance.netfilter")

TABLE = "appliance_decide"
CHAIN = "APPLIANCE-DECIDE"
PRIORITY = "filter - 5"
TIMEOUT = 30
SET_SIZE = 262144                       # flows per family in each flows_* set
_FAMILIES = (("ipv4", "ip", "4"), ("ipv6", "ip6", "6"))


def table_text(policy, outside, inside, mark_mask, merge=True):
    """The table as `nft -f` reads it (without the replace preamble); `merge` False: one rule
    per entry (bench/kernel_chain.py measures what merging saves)."""
    sets, chains = [], {"inbound": [], "outbound": []}
    passed = offload_marks(mark_mask)["pass"]
    keep = ~mark_mask & 0xFFFFFFFF
    # a counter on each decision: the flows the kernel decides are in no worker's stats
    verdicts = {
        "pass": [f"counter goto {CHAIN}-PASS"],
        "drop": [f"counter goto {CHAIN}-DROP"],
        "reject": [f"counter goto {CHAIN}-REJECT"],
        QUEUE: [f"goto {CHAIN}-QUEUE"],
    }
    runs = merged(policy.entries) if merge else [(e, f"rule {e.rule_id}") for e in policy.entries]
    for n, (e, label) in enumerate(runs):
        for way in ("inbound", "outbound"):
            if e.direction not in ("any", way):
                continue
            for swapped in ((False, True) if e.either_way else (False,)):
                for match in _matches(e, swapped, f"e{n}{'r' if swapped else ''}", sets):
                    for v in verdicts[e.verdict]:
                        chains[way].append(" ".join(filter(None, (match, v))) + f' comment "{label}"')
    lines = [f"table inet {TABLE} {{"]
    for name, family, elements in dict.fromkeys(sets):
        lines += [f"  set {name} {{", f"    type {family}_addr; flags interval;",
                  f"    elements = {{ {', '.join(elements)} }}", "  }"]
    for kind in ("queued", "refused", "passed"):
        for family, _, v in _FAMILIES:
            lines += [f"  set flows_{kind}{v} {{",
                      f"    type {family}_addr . {family}_addr . inet_proto . inet_service . inet_service;",
                      f"    size {SET_SIZE}; flags dynamic, timeout;", "  }"]
    lines += [f"  chain {CHAIN} {{", f"    type filter hook forward priority {PRIORITY}; policy accept;",
              "    ct state != new return",
              f"    iifname {_q(outside)} oifname {_q(inside)} jump {CHAIN}-IN",
              f"    iifname {_q(inside)} oifname {_q(outside)} jump {CHAIN}-OUT", "  }"]
    for way, suffix in (("inbound", "IN"), ("outbound", "OUT")):
        lines += [f"  chain {CHAIN}-{suffix} {{", "    meta l4proto != { tcp, udp } return",
                  # nft (and conntrack) find the ports behind any number of IPv6 extension headers,
                  # the decoder behind decode.MAX_IPV6_EXTHDRS (past it: Packet.unread, judged by the
                  # addresses); nft cannot count them, so the engine judges every such packet
                  f"    meta nfproto ipv6 ip6 nexthdr != {{ tcp, udp }} goto {CHAIN}-QUEUE"]
        # a flow a worker or this table already holds (see the module's doc)
        for family, key, v in _FAMILIES:
            lines += [f"    meta nfproto {family} {_tuple(key)} @flows_refused{v} counter goto {CHAIN}-DROP"
                      ' comment "reverse of a dropped flow"',
                      f"    meta nfproto {family} {_tuple(key)} @flows_queued{v} goto {CHAIN}-QUEUE",
                      f"    meta nfproto {family} {_tuple(key)} @flows_passed{v} goto {CHAIN}-PASS"]
        # the engine's first packet of an oriented flow (kernel_policy.first_packet_decidable)
        lines += [f"    tcp flags & (syn | ack) != syn goto {CHAIN}-QUEUE",
                  f"    udp sport < 1024 udp dport >= 1024 goto {CHAIN}-QUEUE"]
        lines += [f"    {line}" for line in chains[way]]
        lines += [f'    {v} comment "default action"' for v in verdicts[policy.default]]
        lines.append("  }")
    for kind, then in (("QUEUE", ["return"]), ("DROP", ["drop"]),
                       ("REJECT", ["meta l4proto tcp reject with tcp reset", "reject with icmpx type admin-prohibited"]),
                       ("PASS", [f"ct mark set ct mark & 0x{keep:08x} | 0x{passed:08x} accept"])):
        lines.append(f"  chain {CHAIN}-{kind} {{")
        lines += [f"    {line}" for line in _remember(_REMEMBERED[kind])]
        lines += [f"    {line}" for line in then]
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def merged(entries):
    """[(entry, label)]: runs of adjacent entries that differ only in one address field (a
    block list: the same verdict for each of many networks) as one entry over the union of
    their networks, labelled "rules FIRST-LAST". Adjacent, so the first that fits gives the
    same verdict as before; a chain walks its rules one by one, and 10,000 rules of one block
    list cost ~7 ms per new flow where one set lookup costs what one rule does
    (bench/kernel_chain.py)."""
    out = []
    for e in entries:
        if out and (field := _mergeable(out[-1][0], e)):
            first = out[-1][0]
            union = AddrSet(getattr(first, field).networks + getattr(e, field).networks)
            out[-1] = (replace(first, **{field: union}), out[-1][1], e.rule_id)
        else:
            out.append((e, e.rule_id, e.rule_id))
    return [(e, f"rule {a}" if a == b else f"rules {a}-{b}") for e, a, b in out]


def _mergeable(a, b):
    """The address field ("src" or "dst") in which alone two entries differ, or None."""
    if (a.verdict, a.direction, a.protos, a.either_way, a.sport, a.dport) != \
            (b.verdict, b.direction, b.protos, b.either_way, b.sport, b.dport):
        return None
    for field, other in (("src", "dst"), ("dst", "src")):
        x, y = getattr(a, field), getattr(b, field)
        if getattr(a, other) == getattr(b, other) and x is not None and y is not None \
                and not x.negated and not y.negated:
            return field
    return None


def _tuple(key, reverse=False):
    """The packet's (src, dst, proto, sport, dport) as a flows_* set key; `reverse`: the answer's."""
    a, b, pa, pb = ("daddr", "saddr", "dport", "sport") if reverse else ("saddr", "daddr", "sport", "dport")
    return f"{key} {a} . {key} {b} . meta l4proto . th {pa} . th {pb}"


# What each verdict's chain remembers: (set, {protocol: the engine's idle timeout to keep it}).
# Queued: a flow not yet seen both ways (TCP) or one an answer makes ESTABLISHED (UDP: 300 s;
# sending more to the queue is always exact). Refused: a dropped flow, seen one way. Passed:
# UDP only; conntrack forgets an answered UDP flow after 30 s (answered within its first 2 s)
# or 120 s, the engine after 300 s: the answer after that is the passed flow's, not a new one
# (TCP: conntrack's own timeouts outlive the engine's).
_REMEMBERED = {
    "QUEUE": ("queued", {TCP: TIMEOUTS[TCP][NEW], UDP: TIMEOUTS[UDP][ESTABLISHED]}),
    "DROP": ("refused", {TCP: TIMEOUTS[TCP][NEW], UDP: TIMEOUTS[UDP][NEW]}),
    "REJECT": ("refused", {TCP: TIMEOUTS[TCP][NEW], UDP: TIMEOUTS[UDP][NEW]}),
    "PASS": ("passed", {UDP: TIMEOUTS[UDP][ESTABLISHED]}),
}


def _remember(what):
    """Statements putting the packet's reverse tuple in flows_<set>, for the engine's idle
    timeout of such a flow (flow.TIMEOUTS)."""
    kind, timeouts = what
    return [f"meta nfproto {family} meta l4proto {name} update @flows_{kind}{v} "
            f"{{ {_tuple(key, reverse=True)} timeout {timeouts[proto]}s }}"
            for family, key, v in _FAMILIES for proto, name in ((TCP, "tcp"), (UDP, "udp")) if proto in timeouts]


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
            ports += f"th {field} {'!= ' if pset.negated else ''}{{ {_ports(pset.ranges, pset.negated)} }} "
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


def _ports(ranges, negated=False):
    """The set's elements; a negated one as ranges even for one port: nft turns `!= { 53 }` into a
    plain compare and merges two adjacent ones (sport, dport) into one 4-byte "!= (53, 53)", which
    fits when EITHER port differs (nft 1.0.6; a range compare is not merged)."""
    merged = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return ", ".join(str(lo) if lo == hi and not negated else f"{lo}-{hi}" for lo, hi in merged)


def _nft(args, stdin=None, check=True):
    return nft(args, stdin, check, why=" (inspection.kernel_decisions)")


def install(policy, outside, inside, mark_mask):
    """Install or atomically replace the table; returns its listing (what `drift` compares)."""
    table = table_text(policy, outside, inside, mark_mask)
    # Keep the flows_* sets (what the table remembers of flows it queued or dropped): a reload
    # or a repair that emptied them would judge the other side of a flow dropped a moment
    # before as a new flow. One transaction: empty every chain, delete the rules' own sets,
    # define the rest again (an existing flows_* set is left as it is).
    old = _nft(["-t", "list", "table", "inet", TABLE], check=False)
    stale = re.findall(r"^\s*set (\S+) \{", old.stdout, re.M) if old.returncode == 0 else []
    keep = f"table inet {TABLE}\nflush table inet {TABLE}\n" + "".join(
        f"delete set inet {TABLE} {name}\n" for name in stale if not name.startswith("flows_"))
    try:
        _nft(["-f", "-"], stdin=keep + table)
    except NetfilterError as e:
        # a table not ours to keep (an older layout, an edited set): replace it whole
        log.warning("kernel decisions: %s; replacing the table, its flows forgotten", e)
        _nft(["-f", "-"], stdin=f"table inet {TABLE}\ndelete table inet {TABLE}\n" + table)
    decided = sum(1 for e in policy.entries if e.verdict is not QUEUE)
    log.info("installed kernel decisions: %d of %d entries decided in the kernel, default %s",
             decided, len(policy.entries), policy.default or "queued")
    return listing()


_COUNTS = re.compile(r"counter packets \d+ bytes \d+")


def listing():
    """The table as the kernel lists it, its counters' values left out (they are no drift),
    or None when it is gone."""
    r = _nft(["list", "table", "inet", TABLE], check=False)
    return _COUNTS.sub("counter", _without_flows(r.stdout)) if r.returncode == 0 else None


def _without_flows(text):
    """The listing without the flows_* sets' elements: traffic adds and expires them."""
    out, in_flows, in_elements = [], False, False
    for line in text.splitlines(keepends=True):
        s = line.strip()
        if s.startswith("set "):
            in_flows = s.startswith("set flows_")
        if in_flows and s.startswith("elements = {"):
            in_elements = True
        if not in_elements:
            out.append(line)
        elif s.endswith("}"):
            in_elements = False
    return "".join(out)


def counters(text=None):
    """{(rule, verdict): packets} the table's decisions counted so far ("rule 5", "default
    action"), from `nft list table` text (read here when None)."""
    if text is None:
        r = _nft(["list", "table", "inet", TABLE], check=False)
        text = r.stdout if r.returncode == 0 else ""
    out = {}
    for line in text.splitlines():
        m = re.search(r"counter packets (\d+) .*?(accept|goto \S+-(?:PASS|DROP|REJECT)) comment \"([^\"]+)\"", line)
        if m:
            verdict = "pass" if m.group(2) == "accept" else m.group(2).rsplit("-", 1)[1].lower()
            key = (m.group(3), verdict)
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
