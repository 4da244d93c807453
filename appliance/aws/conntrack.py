"""Conntrack sizing for the bootstrap: table size, hash size and TCP timeouts.

Offloaded flows live only in conntrack (their verdict is its mark), so a full table drops
new connections in the kernel ("nf_conntrack: table full, dropping packet") before the
appliance sees them. The kernel's default is sized for a host, not for a hop: at most 262144
entries whatever the memory, and established TCP entries kept for 5 days.

  nf_conntrack_max     = MemTotal / 4096, between 65536 and 4194304 (an entry with its
                         extensions and slab overhead is about 512 bytes: a full table then
                         takes about 1/8 of memory)
  nf_conntrack_buckets = nf_conntrack_max (8 bytes each: chains of about one entry when full)
  tcp established      = 7440 s (RFC 5382 REQ-5: at least 2 h 4 min); the other TCP timeouts
                         stay the kernel's unless the config sets them

`conntrack:` in appliance.yaml overrides each (config.Conntrack). nf_conntrack_max and
nf_conntrack_buckets are global: the kernel lets only the initial network namespace write
them, so elsewhere (a container, the netns tests) the action reports the value it left
instead of failing; the TCP timeouts are per network namespace.
"""
import dataclasses
import os

from appliance.aws.hostconfig import Sysctl

BYTES_PER_ENTRY_BUDGET = 4096        # of MemTotal per table entry: ~512 B used, 1/8 of memory when full
MIN_MAX = 65536
MAX_MAX = 4194304
TCP_ESTABLISHED = 7440
TCP_TIMEOUTS = ("established", "syn_sent", "syn_recv", "fin_wait", "close_wait", "time_wait")


def mem_total(meminfo="/proc/meminfo"):
    """MemTotal in bytes (the memory the kernel has, a little below the instance type's figure)."""
    with open(meminfo) as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise OSError(f"{meminfo}: no MemTotal line")


def figures(mem_bytes):
    """(nf_conntrack_max, nf_conntrack_buckets) for a host with `mem_bytes` of memory."""
    n = max(MIN_MAX, min(MAX_MAX, mem_bytes // BYTES_PER_ENTRY_BUDGET))
    return n, n


@dataclasses.dataclass(frozen=True)
class GlobalSysctl(Sysctl):
    """A sysctl only the initial network namespace may write (read-only, mode 0444, elsewhere)."""

    def apply(self, ipr):
        try:
            return super().apply(ipr)
        except OSError:
            if os.path.exists(self.path) and not os.stat(self.path).st_mode & 0o222:
                with open(self.path) as f:
                    now = f.read().strip()
                return (f"left at {now}: read-only in this network namespace (the kernel lets only the "
                        "host's initial namespace set it)")
            raise


def plan(settings, mem_bytes):
    """settings: config.Conntrack. Returns (actions, note)."""
    auto_max, auto_buckets = figures(mem_bytes)
    cmax = settings.max if settings.max is not None else auto_max
    buckets = settings.buckets if settings.buckets is not None else (
        auto_buckets if settings.max is None else cmax)
    acts = [
        GlobalSysctl(("net", "netfilter", "nf_conntrack_buckets"), buckets,
                     "hash size: chains of about one entry at a full table"),
        GlobalSysctl(("net", "netfilter", "nf_conntrack_max"), cmax,
                     "offloaded flows live only in conntrack; a full table drops new connections"),
    ]
    for name in TCP_TIMEOUTS:
        v = getattr(settings, f"tcp_timeout_{name}")
        if v is not None:
            acts.append(Sysctl(("net", "netfilter", f"nf_conntrack_tcp_timeout_{name}"), v, ""))
    note = (f"conntrack: MemTotal {mem_bytes >> 20} MiB -> max {auto_max}, buckets {auto_buckets}"
            + (f"; config: max {cmax}, buckets {buckets}" if (cmax, buckets) != (auto_max, auto_buckets) else ""))
    return acts, note
