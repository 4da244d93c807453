"""The kernel fast path for decided GENEVE flows: what connmark offload is to the inline
datapath, for traffic from a Gateway Load Balancer.

Behind a GWLB there is no forwarding and no conntrack entry to carry a mark: every packet
is a UDP datagram to port 6081. So the appliance owns an nftables *netdev ingress* table on
the data interface that looks into the datagram (raw payload at the fixed offsets of GWLB's
option layout) and, for a flow whose verdict is final, answers in the kernel what the worker
would have answered:

    table netdev appliance_gwlb
      ingress   from a GWLB sender to our address, UDP 6081, not an outer fragment, and
                GENEVE exactly as GWLB builds it: Ver 0, Opt Len 8 words, O/C clear, the three
                AWS options in their order (ENI id, attachment id, flow cookie) -> geneve
      geneve    inner IPv4 with a 20-byte header and no fragment -> inner4; inner IPv6 -> inner6
      inner4/6  TCP with SYN, FIN or RST: back to ingress (the worker sees them, flows end
                and restart in Python); key (ENI id . inner src . dst . ports) in
                drop<v>_<proto>: drop; in pass<v>_<proto>: goto back
      back      the datagram returned to its sender: MACs and outer addresses swapped, UDP
                source port 6081, the destination port as the worker uses (6081, or the
                sender's port), `fwd` out of the interface it came in on. The GENEVE header,
                options and inner packet are untouched (the kernel fixes the IP and UDP
                checksums for the rewritten fields).

Anything else (other option layouts, IPv4 options, IPv6 extension headers, ICMP, fragments,
unknown flows) goes on to the socket. One set per direction of key shape: nftables 1.0.6
cannot declare a five-part `typeof` of raw payloads (measured), so the protocol is a set of
its own rather than a key part.

Like netfilter.py, the table is installed atomically (one transaction deletes and declares
it), listed after install, checked for drift, removed; nothing outside it is touched.

`FlowSets` is the worker's side: the elements of one flow (both directions) are added when
its verdict is final and deleted when it ends, through libnftables in this process (no
`nft` process per flow).
"""
import ctypes
import ipaddress
import json
import logging
import re
import subprocess
import time

from . import geneve, netfilter
from .flow import ESTABLISHED, TIMEOUTS
from .packet import TCP, UDP

log = logging.getLogger("appliance.gwlb_offload")

TABLE = "appliance_gwlb"
PROTOS = {TCP: "tcp", UDP: "udp"}
PROTO_OF = {v: k for k, v in PROTOS.items()}
TIMEOUT = 30                      # seconds an nft command may take
GRACE = 60                        # seconds an element outlives its flow's idle timeout
# raw payload offsets in bits from the outer UDP header; the inner packet starts at UDP
# payload + 40 (GENEVE 8 + the AWS options 12 + 12 + 8)
INNER = 384
KEY4 = "@th,160,64 . @th,480,32 . @th,512,32 . @th,544,32"      # ENI . saddr . daddr . ports
KEY6 = "@th,160,64 . @th,448,128 . @th,576,128 . @th,704,32"
AWS_OPTIONS = "@th,128,32 0x01080102 @th,224,32 0x01080202 @th,320,32 0x01080301"


class OffloadError(Exception):
    pass


def set_name(action: str, version: int, proto: int) -> str:
    return f"{'pass' if action == 'pass' else 'drop'}{version}_{PROTOS[proto]}"


def ruleset(device: str, mac: str, address: str, senders, reply_port=geneve.PORT) -> str:
    """The table's text (nft -f)."""
    sets = []
    for action in ("pass", "drop"):
        for version, key in ((4, KEY4), (6, KEY6)):
            for proto in PROTOS:
                sets.append(f"  set {set_name(action, version, proto)} {{\n    typeof {key}\n    flags timeout\n  }}")
    cidrs = ", ".join(str(ipaddress.ip_network(s, strict=False)) for s in senders)

    def inner(version, key, nexthdr, flags):
        rules = [f"    {nexthdr} 6 {flags} & 0x07 != 0 return"]     # FIN 0x01, SYN 0x02, RST 0x04
        for proto in PROTOS:
            rules.append(f"    {nexthdr} {proto} {key} @{set_name('drop', version, proto)} counter drop")
            rules.append(f"    {nexthdr} {proto} {key} @{set_name('pass', version, proto)} counter goto back")
        return "\n".join(rules)
    # to where the worker sends (source.gwlb reply_port): GWLB listens on 6081 (the port the
    # datagram came to), None: the port it came from
    if reply_port is None:
        ports = f"udp dport set udp sport udp sport set {geneve.PORT}"
    else:
        ports = f"udp sport set {geneve.PORT}" + (f" udp dport set {int(reply_port)}" if reply_port != geneve.PORT else "")
    return f"""table netdev {TABLE} {{
{chr(10).join(sets)}
  chain ingress {{
    type filter hook ingress device "{device}" priority 0; policy accept;
    ip saddr {{ {cidrs} }} ip daddr {address} ip frag-off & 0x3fff == 0 udp dport {geneve.PORT} {AWS_OPTIONS} jump geneve
  }}
  chain geneve {{
    @th,64,32 0x08000800 @th,{INNER},8 0x45 @th,{INNER + 48},16 & 0x3fff == 0 jump inner4
    @th,64,32 0x080086dd @th,{INNER},4 6 jump inner6
  }}
  chain inner4 {{
{inner(4, KEY4, f"@th,{INNER + 72},8", f"@th,{INNER + 264},8")}
  }}
  chain inner6 {{
{inner(6, KEY6, f"@th,{INNER + 48},8", f"@th,{INNER + 424},8")}
  }}
  chain back {{
    ether daddr set ether saddr ether saddr set {mac} ip daddr set ip saddr ip saddr set {address} {ports} fwd to "{device}"
  }}
}}
"""


def _nft(argv, stdin=None, check=True):
    return netfilter.nft(argv, stdin, check, OffloadError)


def device_of(address: str):
    """(device, mac) of the interface holding `address`, or None."""
    r = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True, timeout=TIMEOUT)
    for link in json.loads(r.stdout or "[]"):
        if any(a.get("local") == address for a in link.get("addr_info", [])):
            return link["ifname"], link.get("address", "")
    return None


def ipv4_of(device: str):
    """The first IPv4 address of `device`, or None."""
    r = subprocess.run(["ip", "-j", "-4", "addr", "show", "dev", device], capture_output=True, text=True, timeout=TIMEOUT)
    for link in json.loads(r.stdout or "[]"):
        for a in link.get("addr_info", []):
            return a.get("local")
    return None


def install(device: str, mac: str, address: str, senders, reply_port=geneve.PORT) -> str:
    """Install or atomically replace the table (its sets start empty: the workers offload
    their final flows again on their next packet). Returns the table as listed (for drift)."""
    text = f"table netdev {TABLE}\ndelete table netdev {TABLE}\n" + ruleset(device, mac, address, senders, reply_port)
    _nft(["-f", "-"], stdin=text)
    log.info("gwlb fast path installed on %s (%s)", device, address)
    return listing()


def listing():
    """The table without set elements (`nft -t`) and counter values, or None when it is gone."""
    r = _nft(["-t", "list", "table", "netdev", TABLE], check=False)
    return _COUNTER.sub("counter", r.stdout) if r.returncode == 0 else None


_COUNTER = re.compile(r"counter packets \d+ bytes \d+")


def counters() -> dict:
    """set name -> (datagrams, bytes) the kernel dropped or returned for that set's flows
    (none of them woke a worker); {} when the table is not there."""
    r = _nft(["-j", "list", "table", "netdev", TABLE], check=False)
    out = {}
    if r.returncode != 0:
        return out
    for obj in json.loads(r.stdout).get("nftables", []):
        rule = obj.get("rule")
        if rule is None:
            continue
        name = count = None
        for e in rule.get("expr", []):
            right = e.get("match", {}).get("right")
            if isinstance(right, str) and right.startswith("@"):
                name = right[1:]
            if "counter" in e:
                count = (e["counter"]["packets"], e["counter"]["bytes"])
        if name is not None and count is not None:
            out[name] = count
    return out


def drift(installed: str) -> list:
    """What someone else changed in our table since install() (empty when nothing)."""
    now = listing()
    if now is None:
        return [f"table netdev {TABLE} is gone"]
    if now != installed:
        have, want = now.splitlines(), installed.splitlines()
        for i, (h, w) in enumerate(zip(have, want), 1):
            if h != w:
                return [f"table netdev {TABLE} was edited: line {i} is '{h.strip()}' (want '{w.strip()}')"]
        return [f"table netdev {TABLE} was edited: {len(have)} lines (want {len(want)})"]
    return []


def remove() -> None:
    """Delete our table; quiet when it is not there."""
    _nft(["delete", "table", "netdev", TABLE], check=False)


class _Nft:
    """libnftables in this process: a command costs a netlink transaction, not a fork."""

    def __init__(self):
        try:
            lib = ctypes.CDLL("libnftables.so.1")
        except OSError as e:
            raise OffloadError(f"libnftables.so.1 not found ({e}): install the nftables package") from None
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_buffer_output.argtypes = lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        self.lib = lib
        self.ctx = lib.nft_ctx_new(0)
        lib.nft_ctx_buffer_output(self.ctx)
        lib.nft_ctx_buffer_error(self.ctx)

    def run(self, cmd: str):
        """None when it worked, else nft's error text."""
        if self.lib.nft_run_cmd_from_buffer(self.ctx, cmd.encode()) == 0:
            return None
        return (self.lib.nft_ctx_get_error_buffer(self.ctx) or b"").decode(errors="replace").strip()


def _addr(a: str) -> str:
    ip = ipaddress.ip_address(a)
    return f"0x{int(ip):0{ip.max_prefixlen // 4}x}"


def flow_elements(flow, eni: int):
    """(set, [element, element]) for both directions of `flow`, or None when the fast path
    does not carry its protocol (only TCP and UDP have ports at fixed offsets)."""
    if flow.proto not in PROTOS:
        return None
    version = 6 if ":" in flow.src else 4
    s, d = _addr(flow.src), _addr(flow.dst)
    e = f"0x{eni:016x}"
    fwd = f"{e} . {s} . {d} . 0x{(flow.sport << 16) | flow.dport:08x}"
    rev = f"{e} . {d} . {s} . 0x{(flow.dport << 16) | flow.sport:08x}"
    return version, (fwd, rev)


class FlowSets:
    """A worker's view of the table's sets: the flows it handed to the kernel.

    Adds are batched: one libnftables command costs about the same for one flow as for a
    hundred (parsing and a netlink transaction), and at one command per new flow a worker
    managed a tenth of its new flows/s (docs/performance.md). The source calls `flush()` when
    `due()` (BATCH flows waiting or DELAY seconds since the first); until then the flow's
    packets still come to the worker, which passes or drops them as final."""
    BATCH = 64
    DELAY = 0.005

    def __init__(self, table=TABLE):
        self.table = table
        self.nft = _Nft()
        self.flows = {}                  # Flow -> (set name, elements) while in the kernel
        self.pending = {}                # Flow -> (set name, elements) until the next flush
        self.doomed = []                 # (set name, elements) of ended flows, deleted at the next flush
        self.since = 0.0                 # monotonic time of the oldest pending add or delete
        self.added = self.removed = self.errors = 0

    def add(self, flow, action: str, now: float = 0.0) -> bool:
        """Both directions of a flow whose verdict is final (pass, or drop/reject: drop),
        at the next flush."""
        eni = flow.tunnel                # the ENI id in the flow's key; 0: not through a GWLB endpoint
        if flow in self.flows or flow in self.pending or not eni:
            return False
        found = flow_elements(flow, eni)
        if found is None:
            return False
        version, elements = found
        if not self.pending and not self.doomed:
            self.since = now
        self.pending[flow] = (set_name(action, version, flow.proto), elements)
        return True

    def waiting(self) -> bool:
        return bool(self.pending or self.doomed)

    def due(self, now: float) -> bool:
        return (bool(self.pending or self.doomed)
                and (len(self.pending) + len(self.doomed) >= self.BATCH or now - self.since >= self.DELAY))

    def flush(self) -> None:
        """Ended flows out of the kernel and every pending flow's elements in, each in one
        command (one transaction)."""
        doomed, self.doomed = self.doomed, []
        if doomed:
            self._delete(doomed)
        pending, self.pending = self.pending, {}
        if not pending:
            return
        cmds = [self._add_cmd(name, elements) for name, elements in pending.values()]
        if self.nft.run("\n".join(cmds)) is not None:
            # one bad element fails the transaction: the others still go in, each on its own
            for flow, cmd in zip(list(pending), cmds):
                err = self.nft.run(cmd)
                if err is not None:
                    self._error("add", err)
                    del pending[flow]
        self.flows.update(pending)
        self.added += len(pending)

    def _add_cmd(self, name, elements):
        # the flow's idle timeout, and a minute: Python ends the flow (and deletes these)
        # first; the kernel's own timeout only clears what a dead worker left
        timeout = TIMEOUTS[PROTO_OF[name[-3:]]][ESTABLISHED] + GRACE
        return f"add element netdev {self.table} {name} {{ {', '.join(f'{el} timeout {timeout}s' for el in elements)} }}"

    def forget(self, flow, now: bool = True) -> None:
        """The flow ended in Python (or is tearing down): its packets go to the worker again.
        `now`: deleted before this returns (a teardown, a new connection on the same ports:
        the next packet must not pass in the kernel); else at the next flush (an idle flow,
        an evicted one: nothing of theirs is due)."""
        if self.pending.pop(flow, None) is not None:
            return
        entry = self.flows.pop(flow, None)
        if entry is None:
            return
        self.removed += 1
        if now:
            self._delete([entry])
        else:
            if not self.pending and not self.doomed:
                self.since = time.monotonic()
            self.doomed.append(entry)

    def ended(self, flow) -> None:
        """Inspector.on_flow_end: reused/closed ports at once, the rest batched."""
        self.forget(flow, now=flow.reason in ("reused", "closed"))

    def resync(self) -> None:
        """The supervisor installed the table again (a worker died, its elements with it):
        what this worker had in the kernel may be gone. Everything it holds as added goes in
        again at the next flush (adding an element that is there is no error): a flow
        flushed into the new table between the reinstall and this call stays known, so its
        end still deletes it. Deletes already due stay due (a missing element is skipped)."""
        if self.flows and not self.pending and not self.doomed:
            self.since = time.monotonic()
        self.pending.update(self.flows)
        self.flows.clear()

    def release(self) -> None:
        """The worker stops: leave the kernel's elements to their timeouts (decided flows
        keep being answered, as connmarks outlive an inline worker); no per-flow deletes."""
        self.flows.clear()
        self.pending.clear()
        self.doomed.clear()

    def _delete(self, entries):
        cmds = [f"delete element netdev {self.table} {name} {{ {', '.join(els)} }}" for name, els in entries]
        if self.nft.run("\n".join(cmds)) is None:
            return
        for name, els in entries:        # one was gone already (its timeout): the rest each on its own
            for el in els:
                self.nft.run(f"delete element netdev {self.table} {name} {{ {el} }}")

    def _error(self, what, err):
        self.errors += 1
        if self.errors <= 10:
            log.warning("gwlb fast path: cannot %s a flow: %s", what, err)
