"""Connection state for the pair: conntrackd, configured from `ha.sync` and owned by `appliance ha`.

Offloaded flows live only in conntrack: their verdict is the connmark (netfilter.py), so a
standby that takes the routes without the entries sees every offloaded connection begin again
mid-stream. conntrackd (netfilter.org) replicates the table: each node sends its entries'
changes to the peer (FTFW: acknowledged, resent when lost) over unicast UDP on the management
link (VPCs have no multicast); the peer keeps them in its *external cache* and writes them into
its kernel on takeover (`-c`). The connmark is one of the attributes conntrackd replicates
(NTA_MARK in its wire format; tests/aws/test_ha_sync_netns.py reads it back on the peer), and a
committed TCP entry gets window tracking off (conntrackd's TCPWindowTracking default): the
new primary did not see the windows.

The transitions are those of conntrackd's own keepalived script (primary-backup.sh):
  becoming primary   -c commit the external cache -- done *before* the routes move, so the
                        first packet the VPC sends us meets the entry and its mark (committed
                        after, that packet would make a fresh unmarked entry the commit cannot
                        replace: the kernel refuses to create an existing entry)
                     -f flush both caches, -R resync the internal cache with the kernel table,
                     -B bulk-send it to the peer (the new standby's external cache)
  becoming standby   -t (after being primary or fault) the kernel's entries expire in
                        PURGE_TIMEOUT unless traffic refreshes them: the flows went to the
                        peer, and an old entry left here would clash on a failback (the
                        commit cannot replace an existing entry, and its stale TCP window
                        would make the flow's packets INVALID, which the appliance drops)
                     -n request a resync from the primary (fills our external cache)
Nothing on `fault`: a node in fault keeps the routes until the peer takes them.

The sync channel has no authentication (the heartbeats' HMAC protects decisions, nothing in
conntrackd protects state), and conntrackd takes entries from any sender: a host on the
management link could plant a flow with the offload PASS mark in our external cache, and the
next takeover's commit would wave it through uninspected. So conntrackd only runs behind a
guard of ours in the INPUT hook (GUARD_CHAIN): ha.sync.port is accepted on ha.sync.interface
from ha.sync.peer to ha.sync.address, and dropped from anywhere else. A host that can send with
the peer's address on that link is beyond it: docs/ha.md says what the deployment must do.
"""
import ipaddress
import os
import re
import shutil
import subprocess
import time

PURGE_TIMEOUT = 5         # seconds: what `-t` leaves an unrefreshed kernel entry (conntrackd's default: 60)
ACTION_TIMEOUT = 10.0     # seconds one `conntrackd -X` may take (a commit of a big table is the slow one)
RESTART_AFTER = 5.0       # seconds between restarts of a conntrackd that exited

# what each option does, for the events (`conntrackd -h` names)
ACTIONS = {"-c": "commit", "-f": "flush", "-R": "resync_kernel", "-B": "bulk_send", "-n": "request_resync",
           "-t": "purge_timers", "-s": "stats"}


def ignored_addresses(ha):
    """The appliance's own addresses: flows to or from them (heartbeats, probes, the sync
    channel itself, the control plane) are not the traffic being protected."""
    out = {"127.0.0.1", "::1"}
    for hp in ha.addresses().values():
        if hp:
            out.add(hp[0])
    if ha.sync:
        out |= {ha.sync.address, ha.sync.peer}
    return sorted(out, key=lambda a: (ipaddress.ip_address(a).version, ipaddress.ip_address(a)))


GUARD_CHAIN = "APPLIANCE-HA-SYNC"
GUARD_COMMENT = "appliance-ha-sync"


def guard_family(sync):
    return ipaddress.ip_address(sync.address).version


def guard_jump(sync):
    return f"-p udp --dport {sync.port} -m comment --comment {GUARD_COMMENT} -j {GUARD_CHAIN}"


def guard_text(sync, jumps=()):
    """The restore text of the guard: our chain (declared, so flushed and rewritten) and one
    INPUT jump, first, after deleting the `jumps` already there (`-S` lines: a restart)."""
    jump = guard_jump(sync)
    return "\n".join([
        "*filter",
        f":{GUARD_CHAIN} - [0:0]",
        f"-A {GUARD_CHAIN} -i {sync.interface} -s {sync.peer} -d {sync.address} -j RETURN",
        f"-A {GUARD_CHAIN} -j DROP",
        *["-D" + j[2:] for j in jumps],
        f"-I INPUT 1 {jump}",
        "COMMIT", ""])


def _guard_jumps(sync):
    """Our INPUT jumps as the kernel lists them (it adds `-m udp`): deleted by that text."""
    from appliance.netfilter import FAMILIES, _run
    r = _run([FAMILIES[guard_family(sync)]["cmd"], "-w", "-S", "INPUT"], check=False)
    return [ln.strip() for ln in r.stdout.splitlines()
            if ln.startswith("-A INPUT ") and f"--comment {GUARD_COMMENT} -j {GUARD_CHAIN}" in ln]


def install_guard(sync):
    """(ok, detail). Nothing raised: a failure is the caller's reason not to start conntrackd."""
    from appliance.netfilter import FAMILIES, NetfilterError, _run
    try:
        _run([FAMILIES[guard_family(sync)]["restore"], "-w", "--noflush"], stdin=guard_text(sync, _guard_jumps(sync)))
    except NetfilterError as e:
        return False, f"the sync channel's guard ({GUARD_CHAIN}) was not installed: {e}"
    return True, f"udp {sync.port} only from {sync.peer} on {sync.interface}"


def guard_intact(sync):
    """True when the guard is as installed: our chain's two rules, and our jump first in INPUT
    (a flush of INPUT, or a rule put before ours, would let anybody's state in again)."""
    from appliance.netfilter import FAMILIES, _run
    cmd = FAMILIES[guard_family(sync)]["cmd"]
    chain = _run([cmd, "-w", "-S", GUARD_CHAIN], check=False)
    rules = [ln for ln in chain.stdout.splitlines() if ln.startswith(f"-A {GUARD_CHAIN} ")]
    first = [ln for ln in _run([cmd, "-w", "-S", "INPUT"], check=False).stdout.splitlines()
             if ln.startswith("-A INPUT ")][:1]
    return (chain.returncode == 0 and len(rules) == 2 and rules[-1] == f"-A {GUARD_CHAIN} -j DROP"
            and first == _guard_jumps(sync) and len(_guard_jumps(sync)) == 1)


def remove_guard(sync):
    from appliance.netfilter import FAMILIES, NetfilterError, _run
    text = "\n".join(["*filter", *["-D" + j[2:] for j in _guard_jumps(sync)],
                      f"-F {GUARD_CHAIN}", f"-X {GUARD_CHAIN}", "COMMIT", ""])
    try:
        _run([FAMILIES[guard_family(sync)]["restore"], "-w", "--noflush"], stdin=text)
    except NetfilterError:
        pass                              # no chain (never installed): nothing of ours is left


def paths(sync):
    d = sync.run_dir
    return {"config": os.path.join(d, "conntrackd.conf"), "socket": os.path.join(d, "conntrackd.ctl"),
            "lock": os.path.join(d, "conntrackd.lock"), "log": os.path.join(d, "conntrackd.log")}


def conntrack_max(path="/proc/sys/net/netfilter/nf_conntrack_max"):
    try:
        with open(path) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def cache_limits(table_max):
    """(HashSize, HashLimit) for a kernel table of `table_max` entries: conntrackd refuses
    entries past HashLimit (those flows would not be synced), and its manual asks for twice
    nf_conntrack_max; the bootstrap sizes that table by memory (up to 4194304), so a fixed
    limit would be too small on a big instance."""
    n = max(table_max or 0, 65536)
    return max(32768, n // 4), 2 * n


def config_text(ha, table_max=None):
    """conntrackd.conf for `ha` (ha.sync set); `table_max`: nf_conntrack_max."""
    s, p = ha.sync, paths(ha.sync)
    hash_size, hash_limit = cache_limits(table_max)
    v6 = ipaddress.ip_address(s.address).version == 6
    fam = "IPv6" if v6 else "IPv4"
    iface = f"\t\tInterface {s.interface}\n"
    ignore = "".join(f"\t\t\t{'IPv6' if ':' in a else 'IPv4'}_address {a}\n" for a in ignored_addresses(ha))
    return f"""\
# Generated by `appliance ha` from the ha.sync section of its appliance.yaml: edits are overwritten.
Sync {{
\tMode FTFW {{
\t\tResendQueueSize 131072
\t\tStartupResync on
\t\tPurgeTimeout {PURGE_TIMEOUT}
\t}}
\tUDP {{
\t\t{fam}_address {s.address}
\t\t{fam}_Destination_Address {s.peer}
\t\tPort {s.port}
{iface}\t\tSndSocketBuffer 1249280
\t\tRcvSocketBuffer 1249280
\t\tChecksum on
\t}}
}}
General {{
\tHashSize {hash_size}
\tHashLimit {hash_limit}
\tLogFile {p['log']}
\tSyslog off
\tLockFile {p['lock']}
\tUNIX {{
\t\tPath {p['socket']}
\t}}
\tNetlinkBufferSize 2097152
\tNetlinkBufferSizeMaxGrowth 8388608
\tNetlinkEventsReliable on
\tFilter From Userspace {{
\t\tProtocol Accept {{
\t\t\tTCP
\t\t\tUDP
\t\t\tICMP
\t\t\tIPv6-ICMP
\t\t}}
\t\tAddress Ignore {{
{ignore}\t\t}}
\t}}
}}
"""


class Conntrackd:
    """The conntrackd process of this node and the actions on it. Every action returns
    (ok, detail) for the caller's `ha` event; nothing here raises on a failed command."""

    def __init__(self, ha, clock=time.monotonic):
        self.ha, self.clock = ha, clock
        self.paths = paths(ha.sync)
        self.proc = None
        self.started_at = float("-inf")
        self.restarts = 0

    def _ctl(self, *args, timeout=ACTION_TIMEOUT):
        try:
            r = subprocess.run([self.ha.sync.conntrackd, "-C", self.paths["config"], *args],
                               capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            return False, f"{self.ha.sync.conntrackd} not found: install the conntrackd package"
        except subprocess.TimeoutExpired:
            return False, f"conntrackd {' '.join(args)} did not finish within {timeout:g}s"
        out = (r.stdout + r.stderr).strip()
        # conntrackd prints its own log lines ("[date] (pid=N) [ERROR] ...") on failure
        detail = " ".join(re.sub(r"^\[[^\]]*\] \(pid=\d+\) ", "", ln) for ln in out.splitlines()[-3:])
        return r.returncode == 0, detail

    def start(self):
        """Write the config and start conntrackd (foreground, our child). (ok, detail)."""
        tmp = self.paths["config"] + ".tmp"
        try:
            os.makedirs(self.ha.sync.run_dir, exist_ok=True)
            with open(tmp, "w") as f:
                f.write(config_text(self.ha, conntrack_max()))
            os.replace(tmp, self.paths["config"])
        except OSError as e:
            return False, f"cannot write {self.paths['config']}: {e.strerror}"
        detail = ""
        if os.path.exists(self.paths["lock"]):
            if self._ctl("-s", timeout=2)[0]:
                return False, f"a conntrackd already answers on {self.paths['socket']}: not starting a second one"
            os.unlink(self.paths["lock"])          # left by a conntrackd that died (it refuses to start over it)
            detail = f"removed the stale lock {self.paths['lock']}; "
        if shutil.which(self.ha.sync.conntrackd) is None:   # before touching the firewall: nothing to guard
            return False, f"{detail}cannot start {self.ha.sync.conntrackd}: not found (install the conntrackd package)"
        ok, guarded = install_guard(self.ha.sync)
        if not ok:                                 # no conntrackd rather than one anybody can feed
            return False, guarded
        self.started_at = self.clock()
        try:
            log = open(self.paths["log"] + ".out", "ab")
            self.proc = subprocess.Popen([self.ha.sync.conntrackd, "-C", self.paths["config"]],
                                         stdout=log, stderr=log, stdin=subprocess.DEVNULL)
            log.close()
        except OSError as e:
            remove_guard(self.ha.sync)
            return False, f"{detail}cannot start {self.ha.sync.conntrackd}: {e.strerror}"
        deadline = self.clock() + 5.0
        while self.clock() < deadline:             # up when its control socket answers
            if self.proc.poll() is not None:
                return False, f"{detail}conntrackd exited {self.proc.returncode}: {self.log_tail()}"
            if os.path.exists(self.paths["socket"]) and self._ctl("-s", timeout=2)[0]:
                return True, f"{detail}pid {self.proc.pid}, {self.paths['config']}; {guarded}"
            time.sleep(0.05)
        return False, f"{detail}conntrackd (pid {self.proc.pid}) did not answer on {self.paths['socket']} within 5s"

    def log_tail(self):
        for name in (self.paths["log"], self.paths["log"] + ".out"):
            try:
                with open(name, errors="replace") as f:
                    lines = [ln.strip() for ln in f if ln.strip()]
                if lines:
                    return lines[-1]
            except OSError:
                pass
        return "(no log)"

    def exited(self):
        """The exit code when our conntrackd has ended since start, else None."""
        return None if self.proc is None else self.proc.poll()

    def may_restart(self):
        return self.clock() - self.started_at >= RESTART_AFTER

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        remove_guard(self.ha.sync)

    def run(self, option):
        """One action ("-c", "-f", ...): (ok, detail)."""
        return self._ctl(option)

    def counters(self):
        """A few of `conntrackd -s`'s figures ({} when it does not answer): entries in each
        cache, and the sync channel's message and loss counts."""
        try:
            r = subprocess.run([self.ha.sync.conntrackd, "-C", self.paths["config"], "-s"],
                               capture_output=True, text=True, timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            return {}
        if r.returncode != 0:
            return {}
        return parse_stats(r.stdout)


_CHANNEL_FIGURES = {"Bytes sent": "sync_bytes_sent", "Bytes recv": "sync_bytes_received",
                    "Pckts sent": "sync_packets_sent", "Pckts recv": "sync_packets_received",
                    "Error send": "sync_send_errors", "Error recv": "sync_receive_errors",
                    "Malformed msgs": "sync_malformed_messages", "Lost msgs": "sync_lost_messages"}


def parse_stats(text):
    """`conntrackd -s` text -> {"internal_entries", "external_entries", "sync_bytes_sent", ...}
    for what it shows (conntrackd 1.4: a "cache internal:" / "cache external:" block each, the
    channel's figures as "N Bytes sent" pairs); lines it does not know are skipped."""
    out, section = {}, ""
    for line in text.splitlines():
        head = line.strip()
        if head.startswith("cache "):
            section = head.split()[1].rstrip(":")
            continue
        m = re.match(r"current active connections:\s+(\d+)", head)
        if m and section in ("internal", "external"):
            out[f"{section}_entries"] = int(m.group(1))
        for count, label in re.findall(r"(\d+) (Bytes sent|Bytes recv|Pckts sent|Pckts recv|Error send|"
                                       r"Error recv|Malformed msgs|Lost msgs)", line):
            out[_CHANNEL_FIGURES[label]] = int(count)
    return out
