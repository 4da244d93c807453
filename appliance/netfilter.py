"""The kernel ruleset the appliance owns: install, replace atomically, remove.

Layout (filter table, IPv4 and IPv6 alike; every object is ours and named APPLIANCE-*):

    FORWARD            -m comment --comment appliance -j APPLIANCE-FWD     (one jump, never duplicated)
    APPLIANCE-FWD      -i OUTSIDE -o INSIDE -j APPLIANCE-INSPECT
                       -i INSIDE -o OUTSIDE -j APPLIANCE-INSPECT
                       -i OUTSIDE ! -o INSIDE -j DROP       anything else forwarded from a data side:
                       -i INSIDE ! -o OUTSIDE -j DROP       routed back out where it came in, or elsewhere
    APPLIANCE-INSPECT  -i OUTSIDE, tcp to a proxied port, ctstate NEW,INVALID -> SYNPROXY  (config `overload.synproxy`)
                       ctstate INVALID -> DROP               bad checksum / out of window: evasion fodder
                       a bare SYN, not NEW, connmark != 0 -> CONNMARK clear   a new connection is judged (inspecting only)
                       connmark PASS   -> ACCEPT             offloaded flows stay in the kernel
                       connmark DROP   -> DROP
                       connmark REJECT -> REJECT (tcp-reset / admin-prohibited)
                       nfmark != 0     -> CONNMARK --save-mark   a worker just decided: remember it
                       nfmark PASS     -> ACCEPT
                       nfmark != 0     -> DROP                   (drop; reject was already answered by the worker)
                       ctstate NEW or a bare SYN over the source's limit -> DROP   (config `overload`, if set)
                       -> NFQUEUE --queue-num N | --queue-balance A:B [--queue-bypass]
    with `overload.established_first`, the last rule is three (new_flow_queues):
                       ctstate NEW,RELATED -> NFQUEUE the second range (B+1 .. B+1+B-A) [--queue-bypass]
                       a bare SYN     -> NFQUEUE the second range [--queue-bypass]
                       -> NFQUEUE A..B [--queue-bypass]        established flows: read first

With `overload.synproxy` one more chain, in the raw table, before conntrack:

    PREROUTING (raw)   -m comment --comment appliance -j APPLIANCE-SYNPROXY  (one jump, first)
    APPLIANCE-SYNPROXY -i OUTSIDE, a bare SYN to a proxied port -> CT --notrack

Offload works with the NF_REPEAT verdict: the worker sets the nfmark and repeats, so the
packet re-enters the FORWARD hook, reaches the save-mark rule and conntrack carries the
decision for the rest of the flow. A mark saved in mangle POSTROUTING instead would never
see drop-offloaded packets (they die in FORWARD), and keeping everything in one chain of
one table makes the whole state readable in one `iptables-save`.

Both chains are written with `iptables-nft-restore --noflush`: declaring a chain flushes it,
so a re-install replaces our rules in one transaction and leaves everybody else's alone.
This kernel family lacks the nftables `queue` expression on some builds, so the queue is
the xt NFQUEUE target through iptables-nft, which works everywhere; `capabilities()` says
what the running kernel offers.
"""
import logging
import os
import subprocess

log = logging.getLogger("appliance.netfilter")

COMMENT = "appliance"
JUMP_CHAIN = "APPLIANCE-FWD"
INSPECT_CHAIN = "APPLIANCE-INSPECT"
RAW_CHAIN = "APPLIANCE-SYNPROXY"      # raw table: the proxied SYNs, untracked (synproxy_rules)

# Offload verdicts live in two mark bits of our own (config `mark_mask`, two bits: pass =
# the lower, drop = the higher, reject = both). Every rule matches and saves under that mask
# only, so other tools' bits pass through untouched -- and bits of theirs inside our mask
# would read as our verdicts, which is why the default avoids the known users
# (config.DEFAULT_MARK_MASK; docs/datapath.md lists them).
TIMEOUT = 30                  # seconds an iptables command may take before it is an error


def offload_marks(mask: int) -> dict:
    """verdict -> mark value under `mask` (exactly two bits, checked by config)."""
    low = mask & -mask
    return {"pass": low, "drop": mask ^ low, "reject": mask}

FAMILIES = {
    4: {"restore": "iptables-nft-restore", "cmd": "iptables-nft", "unreach": "icmp-admin-prohibited"},
    6: {"restore": "ip6tables-nft-restore", "cmd": "ip6tables-nft", "unreach": "icmp6-adm-prohibited"},
}


class NetfilterError(Exception):
    pass


def _run(argv, stdin=None, check=True, timeout=TIMEOUT):
    try:
        r = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise NetfilterError(f"{argv[0]} not found: install the iptables package (nft backend)") from None
    except subprocess.TimeoutExpired:
        # a wedged iptables (a held lock, a stuck netlink dump) is reported, never a crash
        # of the supervisor: the callers (start, watch, stop) handle NetfilterError
        raise NetfilterError(f"{' '.join(argv)} did not finish within {timeout}s") from None
    if check and r.returncode != 0:
        raise NetfilterError(f"{' '.join(argv)} failed (exit {r.returncode}): {r.stderr.strip()}")
    return r


def nft(args, stdin=None, check=True, error=NetfilterError, why=""):
    """`nft ARGS` for the native tables we own (kernel decisions, the GENEVE fast path): a
    missing, wedged or failing nft is raised as the caller's `error`, never a crash."""
    try:
        r = subprocess.run(["nft", *args], input=stdin, capture_output=True, text=True, timeout=TIMEOUT)
    except FileNotFoundError:
        raise error(f"nft not found: install the nftables package{why}") from None
    except subprocess.TimeoutExpired:
        raise error(f"nft {' '.join(args)} did not finish within {TIMEOUT}s") from None
    if check and r.returncode != 0:
        raise error(f"nft {' '.join(args)} failed (exit {r.returncode}): {r.stderr.strip()[:2000]}")
    return r


def new_flow_queues(queues: range) -> range:
    """`overload.established_first`: the second range, as many queues right after `queues`.
    Worker i reads queues[i] first and new_flow_queues(queues)[i] after it. queue-balance
    picks the queue by a hash of the addresses (IPv4: and the protocol) scaled to the range's
    length with one kernel-wide seed, so with equal lengths a flow's packets pick offset i in both ranges:
    its first packets and the rest reach the same worker (tests/netns/test_established_first.py)."""
    return range(queues.stop, queues.stop + len(queues))


def queue_target(queues: range, fail_open: bool) -> str:
    """The NFQUEUE target text. queue-balance hashes the addresses (IPv4: and the protocol),
    never the ports, so one host pair always lands on one worker; --queue-bypass accepts when no worker listens."""
    if len(queues) == 1:
        t = f"-j NFQUEUE --queue-num {queues[0]}"
    else:
        t = f"-j NFQUEUE --queue-balance {queues[0]}:{queues[-1]}"
    return t + (" --queue-bypass" if fail_open else "")


# The per-source table (`overload`): one entry per source seen within EXPIRE; a full table
# makes hashlimit drop the new source's packet, so it is sized for a flood from many
# sources (an entry is ~100 B of kernel memory: 26 MB at the maximum).
SOURCE_TABLE_MAX = 1 << 18
# Bucket per source prefix, by the side a packet arrives on. Outside, an IPv6 host owns its
# /64 (a limit per address would be none). Inside, a /64 is a subnet of many hosts (an AWS
# subnet's whole IPv6 block): one bucket for it let one busy or compromised host get its
# neighbours' new flows dropped; inside hosts have their addresses assigned, so per address.
SOURCE_PREFIX = {("out", 4): 32, ("out", 6): 64, ("in", 4): 32, ("in", 6): 128}


def source_limit_rules(family: int, overload, outside: str, inside: str) -> list:
    """The rules that drop a source's new flows past `overload` (config.Overload) before
    they are queued: a flood from a few sources then costs the kernel, never a worker.
    Two rules, one token bucket per source (hashlimit shares a table by name): what
    conntrack calls NEW, and a bare SYN conntrack does not (it reuses the 5-tuple of an
    entry that saw a reply, so it is ESTABLISHED to conntrack: a flood cycling through its
    source ports would pass a NEW-only limit) -- to a worker each is a new flow.

    Each side has a table of its own (`appliance-new4-out`: what arrives on the outside): a source address says nothing about who sent the packet, and
    with one table a flood from outside carrying a protected host's address (IPv6: any of
    its /64) would empty that host's bucket and get its own outbound flows dropped."""
    rate, burst = overload.new_flows_per_source, overload.new_flows_burst
    # an idle source's entry goes after it would have refilled its burst (at least 1 s)
    expire = max(1000, -(-burst * 1000 // rate))

    def limit(side):
        return (f"-m hashlimit --hashlimit-above {rate}/sec --hashlimit-burst {burst} --hashlimit-mode srcip "
                f"--hashlimit-srcmask {SOURCE_PREFIX[side, family]} --hashlimit-htable-max {SOURCE_TABLE_MAX} "
                f"--hashlimit-htable-expire {expire} --hashlimit-name appliance-new{family}-{side} -j DROP")

    rules = []
    for iface, side in ((outside, "out"), (inside, "in")):
        rules += [f"-A {INSPECT_CHAIN} -i {iface} -m conntrack --ctstate NEW {limit(side)}",
                  f"-A {INSPECT_CHAIN} -i {iface} -p tcp --syn -m conntrack ! --ctstate NEW {limit(side)}"]
    return rules


def synproxy_raw_rules(synproxy, outside: str) -> list:
    """Raw PREROUTING (before conntrack): the SYNs synproxy_rules answers are not tracked, as
    the kernel's SYNPROXY documentation has it. A tracked SYN's entry is never confirmed (it
    dies with the SYN: no table entry either way, measured), but each one is allocated, hashed
    and counted against nf_conntrack_max while it lives: measured 1.07-1.20x the SYNs/s the
    proxy takes untracked (docs/performance.md "SYN proxy"). Not a SYN to one of the host's own
    addresses: the proxy is in FORWARD, so that one would be left untracked and never proxied,
    and a host firewall reading its conntrack state would misjudge it (review rvsynproxy)."""
    ports = ",".join(str(p) for p in synproxy.ports)
    return [f"-A {RAW_CHAIN} -i {outside} -p tcp -m multiport --dports {ports} --syn "
            "-m addrtype ! --dst-type LOCAL -j CT --notrack"]


def synproxy_rules(synproxy, outside: str) -> list:
    """The kernel's SYN proxy for new connections from outside to `synproxy.ports`
    (config.Synproxy): a SYN (untracked: synproxy_raw_rules) is answered with a SYN cookie
    and dropped (a spoofed flood fills no conntrack table and reaches no queue); the
    client's ACK, which conntrack cannot place (INVALID, or NEW where nf_conntrack_tcp_loose
    picks it up), is checked against its cookie, and only then the kernel opens the server
    connection itself (its SYN is locally generated: it never crosses FORWARD). From then
    conntrack's seqadj translates the server's sequence numbers to the cookie's on the way
    out (POSTROUTING): what FORWARD and the queue see is the server's SYN/ACK first, then
    the client's segments acknowledging cookie numbers (flow.TcpReceiver.ack_offset).
    An ACK with a bad cookie, or any other INVALID segment to these ports, is dropped."""
    ports = ",".join(str(p) for p in synproxy.ports)
    return [f"-A {INSPECT_CHAIN} -i {outside} -p tcp -m multiport --dports {ports} -m conntrack --ctstate NEW,INVALID,UNTRACKED "
            f"-j SYNPROXY --sack-perm --timestamp --wscale {synproxy.wscale} --mss {synproxy.mss}"]


def chains_text(family: int, outside: str, inside: str, queues: range, fail_open: bool, mark_mask: int,
                inspecting: bool = True, overload=None) -> str:
    """A restore description of OUR chains only (without the FORWARD jump). Not `inspecting`
    (an open-mode stop): the offloaded verdicts stay (and INVALID is still dropped), nothing
    is queued, and every other packet goes on through FORWARD as if we were not there.
    `overload` (config.Overload): new flows past a source's limit are dropped before the
    queue, after the mark rules (a repeated packet is not counted twice)."""
    m = f"0x{mark_mask:x}"
    passed, dropped, rejected = (f"0x{v:x}/{m}" for v in offload_marks(mark_mask).values())
    unreach = FAMILIES[family]["unreach"]
    lines = [
        "*filter",
        f":{JUMP_CHAIN} - [0:0]",
        f":{INSPECT_CHAIN} - [0:0]",
        f"-A {JUMP_CHAIN} -i {outside} -o {inside} -j {INSPECT_CHAIN}",
        f"-A {JUMP_CHAIN} -i {inside} -o {outside} -j {INSPECT_CHAIN}",
        # The appliance forwards from one side to the other, nothing else. A packet routed back
        # out where it came in bears an address of the side it came from (a client's forged
        # server RST, a spoofed source relayed to a neighbour: source/destination checks are
        # off on our ENIs) or is east-west traffic that was never inspected. Queued, one could
        # start a flow whose answer is the real traffic (review s20 F1); forwarded, it was a
        # bypass. Dropped here, before conntrack confirms an entry for it. (Not the crossing
        # packets: INSPECT returns them in an open-mode stop, to be forwarded uninspected.)
        f"-A {JUMP_CHAIN} -i {outside} ! -o {inside} -j DROP",
        f"-A {JUMP_CHAIN} -i {inside} ! -o {outside} -j DROP",
    ]
    if overload is not None and overload.synproxy is not None:
        # first, and kept in an open-mode stop too: it protects the servers without a queue
        lines += synproxy_rules(overload.synproxy, outside)
    lines += [
        # what conntrack calls INVALID (bad checksum, out of window, impossible flags) is a
        # segment the receiver would drop anyway; passing it only feeds evasions
        f"-A {INSPECT_CHAIN} -m conntrack --ctstate INVALID -j DROP",
    ]
    if inspecting:
        # A bare SYN on an existing entry always goes to a worker: conntrack reopens a closed
        # entry (a new one, no mark) only after a FIN, or a RST from the SYN's own side; after
        # the server's RST it "ignores" the new SYN, the SYN/ACK re-syncs the same entry and
        # the next connection on these ports would ride the old verdict. The worker tells a
        # new connection from a SYN the open one ignores by the server's answer
        # (Inspector._process) and marks again; a spoofed SYN only sends a decided flow's next
        # packets back to a worker. Not NEW: a fresh entry's mark is kernel_decisions' verdict.
        lines.append(f"-A {INSPECT_CHAIN} -p tcp --tcp-flags SYN,ACK,FIN,RST SYN -m conntrack ! --ctstate NEW "
                     f"-m connmark ! --mark 0x0/{m} -j CONNMARK --set-xmark 0x0/{m}")
    lines += [
        f"-A {INSPECT_CHAIN} -m connmark --mark {passed} -j ACCEPT",
        f"-A {INSPECT_CHAIN} -m connmark --mark {dropped} -j DROP",
        f"-A {INSPECT_CHAIN} -p tcp -m connmark --mark {rejected} -j REJECT --reject-with tcp-reset",
        f"-A {INSPECT_CHAIN} -m connmark --mark {rejected} -j REJECT --reject-with {unreach}",
    ]
    if inspecting:
        lines += [
            f"-A {INSPECT_CHAIN} -m mark ! --mark 0x0/{m} -j CONNMARK --save-mark --nfmask {m} --ctmask {m}",
            f"-A {INSPECT_CHAIN} -m mark --mark {passed} -j ACCEPT",
            f"-A {INSPECT_CHAIN} -m mark ! --mark 0x0/{m} -j DROP",
        ]
        if overload is not None and overload.new_flows_per_source is not None:
            lines += source_limit_rules(family, overload, outside, inside)
        if overload is not None and overload.established_first:
            # a flow's first packets (what source_limit_rules counts as new) queue apart, so a
            # flood of new flows overflows their queue, not the one of flows under way. RELATED
            # (ICMP errors) too: conntrack checks an error's outer destination only, so they can
            # be spoofed from any source at a connection the sender holds (review s17 F1)
            new = queue_target(new_flow_queues(queues), fail_open)
            lines += [f"-A {INSPECT_CHAIN} -m conntrack --ctstate NEW,RELATED {new}",
                      f"-A {INSPECT_CHAIN} -p tcp --tcp-flags SYN,ACK,FIN,RST SYN {new}"]
        lines.append(f"-A {INSPECT_CHAIN} {queue_target(queues, fail_open)}")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


JUMP_SPEC = ["-m", "comment", "--comment", COMMENT, "-j", JUMP_CHAIN]
RAW_JUMP_SPEC = ["-m", "comment", "--comment", COMMENT, "-j", RAW_CHAIN]


def _jump_count(family: int, table: str = "filter") -> int:
    hook, spec = ("FORWARD", JUMP_SPEC) if table == "filter" else ("PREROUTING", RAW_JUMP_SPEC)
    r = _run([FAMILIES[family]["cmd"], "-w", "-t", table, "-S", hook], check=False)
    want = f"-A {hook} {' '.join(spec)}"
    return sum(1 for line in r.stdout.splitlines() if line.strip() == want)


def ipv6_available() -> bool:
    return os.path.exists("/proc/sys/net/ipv6")


def install(outside: str, inside: str, queues: range, fail_open: bool, mark_mask: int,
            inspecting: bool = True, overload=None) -> dict:
    """Install or atomically replace our chains, with exactly one FORWARD jump, first.
    Returns our chains as the kernel lists them (`drift` compares against that).
    `inspecting=False`: the chains of an open-mode stop (offloaded verdicts only, see chains_text).

    One restore transaction declares (and so flushes) our chains, deletes every jump of
    ours that exists (duplicates from a manual edit, or one that was moved down) and
    inserts the jump at the top: never a moment without inspection, never two jumps."""
    spec = " ".join(JUMP_SPEC)
    installed = {}
    for family in (4, 6):
        if family == 6 and not ipv6_available():
            log.warning("IPv6 is disabled in this kernel: only IPv4 is inspected")
            continue
        fix = [f"-D FORWARD {spec}"] * _jump_count(family) + [f"-I FORWARD 1 {spec}"]
        text = chains_text(family, outside, inside, queues, fail_open, mark_mask, inspecting, overload)
        text = text.replace("COMMIT\n", "\n".join(fix) + "\nCOMMIT\n")
        proxy = overload.synproxy if overload is not None else None
        if proxy is not None:
            # the raw chain first: a SYN the filter rule proxies is never a tracked one
            raw = " ".join(RAW_JUMP_SPEC)
            text = "\n".join(["*raw", f":{RAW_CHAIN} - [0:0]", *synproxy_raw_rules(proxy, outside),
                              *[f"-D PREROUTING {raw}"] * _jump_count(family, "raw"),
                              f"-I PREROUTING 1 {raw}", "COMMIT", ""]) + text
        else:
            _remove_raw(family)            # left by an earlier run with the proxy on
        _run([FAMILIES[family]["restore"], "-w", "--noflush"], stdin=text)
        installed[family] = {chain: _chain_rules(family, chain) for chain in (JUMP_CHAIN, INSPECT_CHAIN)}
        if proxy is not None:
            installed[family][RAW_CHAIN] = _chain_rules(family, RAW_CHAIN, "raw")
        first = overload is not None and overload.established_first
        log.info("installed IPv%d chains: %s <-> %s, %s%s, marks under 0x%x", family, outside, inside,
                 queue_target(queues, fail_open)[3:] if inspecting else "offloaded verdicts only",
                 f" (new flows: {queue_target(new_flow_queues(queues), fail_open)[3:]})" if first and inspecting else "",
                 mark_mask)
    return installed


def _chain_rules(family: int, chain: str, table: str = "filter"):
    """Our chain's rules as the kernel lists them (`-S`), or None when the chain is gone."""
    r = _run([FAMILIES[family]["cmd"], "-w", "-t", table, "-S", chain], check=False)
    if r.returncode != 0:
        return None
    return [line for line in r.stdout.splitlines() if line.startswith(f"-A {chain} ")]


def filter_listing(family: int):
    """The filter table in one `iptables-nft-save -c`: {chain: [(rule, packets, bytes)]}, rules
    as `-S` lists them (the same text), every declared chain present; None when it fails.
    One process instead of one per chain: the control plane reads it once a scrape."""
    save = FAMILIES[family]["restore"].replace("-restore", "-save")
    r = _run([save, "-c", "-t", "filter"], check=False)
    if r.returncode != 0:
        return None
    chains = {}
    for line in r.stdout.splitlines():
        if line.startswith(":"):
            chains.setdefault(line[1:].split()[0], [])
        elif line.startswith("["):
            counters, _, rule = line.partition("] ")
            p, _, b = counters[1:].partition(":")
            if rule.startswith("-A "):
                chains.setdefault(rule.split()[1], []).append((rule, int(p), int(b)))
    return chains


def drift(installed: dict, listings: dict | None = None) -> list:
    """What someone else changed in our kernel state since install() (empty when nothing):
    our jump gone, duplicated or no longer first in FORWARD, our chains gone, or any rule
    in them added, removed or replaced (rule by rule against what install() listed: a
    swapped rule keeps the count and could accept everything). `listings`: {family:
    filter_listing(family)} already read; else each chain is listed here (`-S`)."""
    problems = []
    want_jump = f"-A FORWARD {' '.join(JUMP_SPEC)}"
    for family in (4, 6):
        if family == 6 and not ipv6_available():
            continue
        cmd = FAMILIES[family]["cmd"]
        if listings is not None:
            listed = listings.get(family) or {}
            forward = [rule for rule, _, _ in listed.get("FORWARD", [])]
            rules_of = lambda chain: ([rule for rule, _, _ in listed[chain]] if chain in listed else None)  # noqa: E731
        else:
            forward = [line for line in _run([cmd, "-w", "-S", "FORWARD"], check=False).stdout.splitlines()
                       if line.startswith("-A FORWARD")]
            rules_of = lambda chain: _chain_rules(family, chain)     # noqa: E731
        n = forward.count(want_jump)
        if n != 1:
            problems.append(f"IPv{family}: {n} FORWARD jumps to {JUMP_CHAIN} (want 1)")
        elif forward[0] != want_jump:
            problems.append(f"IPv{family}: a rule was put before our FORWARD jump: {forward[0]}")
        for chain in (JUMP_CHAIN, INSPECT_CHAIN):
            want = installed.get(family, {}).get(chain) or []
            have = rules_of(chain)
            if have is None:
                problems.append(f"IPv{family}: chain {chain} is gone")
            elif have != want:
                problems.append(f"IPv{family}: chain {chain} was edited: {_first_difference(have, want)}")
        if RAW_CHAIN in installed.get(family, {}):
            problems += _raw_drift(family, installed[family][RAW_CHAIN] or [])
    return problems


def _raw_drift(family: int, want: list) -> list:
    """The raw table's part of drift(): our PREROUTING jump, once and first, and our chain as listed."""
    cmd = FAMILIES[family]["cmd"]
    pre = [line for line in _run([cmd, "-w", "-t", "raw", "-S", "PREROUTING"], check=False).stdout.splitlines()
           if line.startswith("-A PREROUTING")]
    want_jump = f"-A PREROUTING {' '.join(RAW_JUMP_SPEC)}"
    problems = []
    n = pre.count(want_jump)
    if n != 1:
        problems.append(f"IPv{family}: {n} raw PREROUTING jumps to {RAW_CHAIN} (want 1)")
    elif pre[0] != want_jump:
        problems.append(f"IPv{family}: a rule was put before our raw PREROUTING jump: {pre[0]}")
    have = _chain_rules(family, RAW_CHAIN, "raw")
    if have is None:
        problems.append(f"IPv{family}: chain {RAW_CHAIN} is gone")
    elif have != want:
        problems.append(f"IPv{family}: chain {RAW_CHAIN} was edited: {_first_difference(have, want)}")
    return problems


def _remove_raw(family: int) -> None:
    """Our raw PREROUTING jump(s) and chain, if there (quiet when not)."""
    cmd = FAMILIES[family]["cmd"]
    for _ in range(_jump_count(family, "raw")):
        _run([cmd, "-w", "-t", "raw", "-D", "PREROUTING", *RAW_JUMP_SPEC])
    _run([cmd, "-w", "-t", "raw", "-F", RAW_CHAIN], check=False)
    _run([cmd, "-w", "-t", "raw", "-X", RAW_CHAIN], check=False)


def _first_difference(have, want) -> str:
    for i, (h, w) in enumerate(zip(have, want), 1):
        if h != w:
            return f"rule {i} is '{h}' (want '{w}')"
    if len(have) > len(want):
        return f"rule {len(want) + 1} added: '{have[len(want)]}'"
    return f"rule {len(have) + 1} removed: '{want[len(have)]}'"


def remove() -> None:
    """Delete our jump(s) and chains; never anything else. Quiet when nothing is installed."""
    for family in (4, 6):
        if family == 6 and not ipv6_available():
            continue
        cmd = FAMILIES[family]["cmd"]
        for _ in range(_jump_count(family)):
            _run([cmd, "-w", "-D", "FORWARD", *JUMP_SPEC])
        for chain in (JUMP_CHAIN, INSPECT_CHAIN):
            _run([cmd, "-w", "-F", chain], check=False)
        for chain in (JUMP_CHAIN, INSPECT_CHAIN):
            _run([cmd, "-w", "-X", chain], check=False)
        _remove_raw(family)
    log.info("removed appliance chains")


def installed_jumps() -> dict:
    """{4: n, 6: n}: how many FORWARD jumps to our chain exist (1 when healthy)."""
    return {f: _jump_count(f) for f in (4, 6) if f == 4 or ipv6_available()}


def _nft_queue_expression() -> bool:
    """Does nf_tables offer the `queue` expression? Checked with `nft -c` (nothing is created)."""
    probe = ("table inet appliance_probe {\n chain c {\n  type filter hook forward priority 0; policy accept;\n"
             "  queue num 0 bypass\n }\n}\n")
    try:
        r = subprocess.run(["nft", "-c", "-f", "-"], input=probe, capture_output=True, text=True, timeout=10)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def capabilities() -> dict:
    """What this kernel offers the datapath; logged at start."""
    caps = {
        "nft_queue_expression": _nft_queue_expression(),
        "nfnetlink_queue": os.path.exists("/proc/net/netfilter/nfnetlink_queue"),
        "ipv6": ipv6_available(),
        "queue_backend": "iptables-nft NFQUEUE (xt target)",
        "offload": "connmark (NF_REPEAT + CONNMARK --save-mark)",
    }
    log.info("kernel capabilities: %s", caps)
    return caps


def queue_counters() -> dict:
    """queue number -> {"queued": packets ever queued, "dropped": kernel drops, "user_dropped": ...}
    from /proc/net/netfilter/nfnetlink_queue (one line per bound queue)."""
    try:
        with open("/proc/net/netfilter/nfnetlink_queue") as f:
            return parse_queue_counters(f.read())
    except OSError:
        return {}


def parse_queue_counters(text: str) -> dict:
    """queue_counters from the file's text (benches and tests read it in another namespace)."""
    out = {}
    for line in text.splitlines():
        v = line.split()
        if len(v) >= 8:
            out[int(v[0])] = {"portid": int(v[1]), "waiting": int(v[2]), "dropped": int(v[5]),
                              "user_dropped": int(v[6]), "queued": int(v[7])}
    return out
