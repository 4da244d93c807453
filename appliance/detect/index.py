"""Compiled lookup structures: rule sets as bitmasks (bit i = rules[i]).

Every index answers "which rules could match this value" as one Python int, so a
flow's candidate rules are a handful of dictionary/trie lookups and ANDs, however
many rules there are. Rule order is bit order: the lowest set bit is the first
rule in evaluation order.
"""
import ipaddress
from socket import AF_INET, AF_INET6, inet_pton

import pytricia

try:
    import hyperscan
except ImportError:          # e.g. a platform without a wheel: plain bytes.find prefilter
    hyperscan = None

try:
    import cython
    COMPILED = cython.compiled       # True in the compiled twin only
except ImportError:                  # Cython is not a run-time dependency
    COMPILED = False

# Port ranges narrower than this are expanded into the exact-port dict.
_EXPAND_RANGE = 4096


def meets(a, b):
    """Whether masks a and b share a rule: bool(a & b). Compiled, a C loop over the two ints'
    own 30-bit digits that makes no int for the answer (a 1,000-rule mask is 34 digits; each
    `&` a 1,000-bit int made and freed, a dozen a SYN); anything but two non-negative ints
    takes the Python `&`."""
    if COMPILED:
        got = appliance_mask_meets(a, b)     # noqa: F821 (compiled only: _c_index.pxd)
        if got >= 0:
            return got == 1
    return (a & b) != 0


def and_masks(a, b, c, d, e):
    """a & b & c & d & e, one int made where four `&` make four (compiled, CPython 3.11 and
    older: their digits ANDed in C; else, or for anything but non-negative ints, Python's `&`)."""
    if COMPILED:
        got = appliance_mask_and5(a, b, c, d, e)     # noqa: F821 (compiled only: _c_index.pxd)
        if got is not None:
            return got
    return a & b & c & d & e


def bits(mask):
    """Yield set bit positions, lowest first."""
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


def raw_address(text):
    """An address's bytes (4 or 16) from its text; b"" when the text is not an address."""
    try:
        return inet_pton(AF_INET6 if ":" in text else AF_INET, text)
    except (OSError, TypeError, ValueError):
        return b""


class AddrTrie:
    """One address set (e.g. HOME_NET) as tries: membership in one lookup, once per new flow."""

    def __init__(self, aset):
        self.v4, self.v6 = pytricia.PyTricia(32), pytricia.PyTricia(128)
        self.negated = aset.negated
        for net in aset.networks:
            (self.v4 if net.version == 4 else self.v6)[str(net)] = True

    def contains(self, ip):
        try:
            return ((self.v6 if ":" in ip else self.v4).get(ip) is not None) != self.negated
        except ValueError:                     # not an address
            return False

    def contains_raw(self, raw):
        """contains() by the address's bytes (4 or 16: pytricia takes them as they are, where
        a text is parsed again for every lookup; anything else is not an address). `in`, not
        .get(): the trie's C slot (get is a method looked up and given an argument tuple)."""
        try:
            return (raw in (self.v6 if len(raw) == 16 else self.v4)) != self.negated
        except ValueError:
            return False


class AddrIndex:
    """Which rules' address set (src or dst) contains an IP; and, from the same trie walk,
    whether `home` (HOME_NET, an AddrSet) holds it: a new flow's direction asks that of both
    its addresses, its candidates ask the masks, one walk an address answers both."""

    def __init__(self, entries, home=None):
        self.any = 0
        self.v4 = pytricia.PyTricia(32)
        self.v6 = pytricia.PyTricia(128)
        own = {}
        negated = {}                           # AddrSet -> mask: "!$HOME_NET" is one trie for all its rules
        for i, aset in entries:
            bit = 1 << i
            if aset is None:
                self.any |= bit
            elif aset.negated:
                negated[aset.networks] = negated.get(aset.networks, 0) | bit
            else:
                for net in aset.networks:
                    own[net] = own.get(net, 0) | bit
        home_nets = frozenset(home.networks) if home is not None else frozenset()
        self.home_negated = home.negated if home is not None else False
        # A prefix's value: (the "any" rules' mask | its rules' | those of the prefixes that
        # cover it, whether a HOME_NET network holds it). Shortest prefixes first, so each
        # inherits from its cover: a lookup's longest match is the union, and holds the
        # address in HOME_NET exactly when a HOME_NET network holds the address.
        for net in sorted(own.keys() | home_nets, key=lambda n: (n.version, n.prefixlen)):
            tree = self.v4 if net.version == 4 else self.v6
            key = str(net)
            cover = tree.get(key)
            mask, home_cover = cover if cover is not None else (self.any, False)
            tree[key] = (own.get(net, 0) | mask, home_cover or net in home_nets)
        self.negated = []                      # [(v4 trie, v6 trie, mask)]: rules match when the IP is NOT in the trie
        for nets, mask in negated.items():
            t4, t6 = pytricia.PyTricia(32), pytricia.PyTricia(128)
            for net in nets:
                (t4 if net.version == 4 else t6)[str(net)] = True
            self.negated.append((t4, t6, mask))

    def lookup_raw(self, raw):
        """lookup() by the address's bytes (4 or 16, as decode has them: pytricia takes them
        as they are, where a text is parsed again for every lookup; anything else is not an
        address: only "any" rules can match)."""
        v6 = len(raw) == 16
        try:
            tree = self.v6 if v6 else self.v4
            hit = tree[raw] if raw in tree else None     # as lookup_home_raw: the trie's C slots
            m = self.any if hit is None else hit[0]
            for t4, t6, mask in self.negated:
                if raw not in (t6 if v6 else t4):
                    m |= mask
        except ValueError:
            return self.any
        return m

    def lookup_home_raw(self, raw):
        """(lookup_raw(raw), whether HOME_NET holds the address, as AddrTrie.contains_raw
        answers) from one walk of the trie."""
        v6 = len(raw) == 16
        try:
            # `in`, then `[]` on a hit (a second walk, ~500 instructions): pytricia's C slots,
            # where .get() is a method looked up and called with an argument tuple (~900
            # more); a flood's spoofed sources mostly miss
            tree = self.v6 if v6 else self.v4
            hit = tree[raw] if raw in tree else None
            m, home = (self.any, False) if hit is None else hit
            for t4, t6, mask in self.negated:
                if raw not in (t6 if v6 else t4):
                    m |= mask
        except ValueError:                     # not an address: "any" rules only, not at home
            return self.any, False
        return m, home != self.home_negated

    def lookup(self, ip):
        v6 = ":" in ip
        tree = self.v6 if v6 else self.v4
        try:
            hit = tree.get(ip)
            m = self.any if hit is None else hit[0]
            for t4, t6, mask in self.negated:
                if (t6 if v6 else t4).get(ip) is None:
                    m |= mask
        except ValueError:                     # not an address: only "any" rules can match
            return self.any
        return m


class PortIndex:
    def __init__(self, entries):
        self.any = 0
        exact = {}
        self.ranges = []                       # [(lo, hi, bit)] for wide ranges
        self.negated = []
        for i, pset in entries:
            bit = 1 << i
            if pset is None:
                self.any |= bit
            elif pset.negated:
                self.negated.append((bit, pset))
            else:
                for lo, hi in pset.ranges:
                    if hi - lo < _EXPAND_RANGE:
                        for p in range(lo, hi + 1):
                            exact[p] = exact.get(p, 0) | bit
                    else:
                        self.ranges.append((lo, hi, bit))
        # a port's mask with the "any" rules' in it: a lookup ORs nothing more (a 1,000-bit
        # int made) when no wide range or negated set holds the port
        self.exact = {p: m | self.any for p, m in exact.items()}

    def lookup(self, port):
        m = self.exact.get(port, self.any)
        for lo, hi, bit in self.ranges:
            if lo <= port <= hi:
                m |= bit
        for bit, pset in self.negated:
            if pset.contains(port):
                m |= bit
        return m


class NameIndex:
    """Which rules' name patterns (exact or *.suffix) match any of some names."""

    def __init__(self, entries):
        self.exact = {}
        self.suffix = {}
        self.depth = 0                         # labels of the deepest *.suffix pattern
        for i, patterns in entries:
            bit = 1 << i
            for p in patterns:
                d = self.suffix if p.wildcard else self.exact
                d[p.name] = d.get(p.name, 0) | bit
                if p.wildcard:
                    self.depth = max(self.depth, p.name.count(".") + 1)

    def lookup(self, names):
        m = 0
        exact, suffix, depth = self.exact, self.suffix, self.depth
        for name in names:
            n = name.lower().rstrip(".")
            m |= exact.get(n, 0)
            # the suffixes of up to `depth` labels, from the right: no pattern has more, and a
            # hostile name of 512 labels costs what an ordinary one does (review rvall: every
            # suffix sliced and hashed was quadratic, 15-27 ms a datagram)
            pos = len(n)
            for _ in range(depth):
                pos = n.rfind(".", 0, pos)
                while pos > 0 and n[pos - 1] == "\\":   # a DNS label's own \. (dns.py), not a boundary
                    pos = n.rfind(".", 0, pos - 1)
                if pos < 0:
                    break
                m |= suffix.get(n[pos + 1:], 0)
        return m

    def lookup_all(self, names):
        """Rules whose patterns match every one of the names (an allow rule must cover
        each request of a pipeline, each reading of an ambiguous Host)."""
        m = None
        for name in names:
            one = self.lookup((name,))
            m = one if m is None else m & one
            if not m:
                return 0
        return m or 0


class ContentPrefilter:
    """One multi-pattern scan per payload -> mask of rules whose contents may all be present.

    Hyperscan finds every literal in one pass; exact offset/depth checks are done
    afterwards, only for the few rules that survive.
    """

    def __init__(self, entries):
        self.owner = []                        # pattern id -> rule bit
        self.need = {}                         # rule bit -> number of distinct patterns it needs
        patterns, flags = [], []
        for i, contents in entries:
            bit = 1 << i
            self.need[bit] = len(contents)
            for c in contents:
                self.owner.append(bit)
                patterns.append(c.value)
                flags.append(hyperscan.HS_FLAG_SINGLEMATCH | (hyperscan.HS_FLAG_CASELESS if c.nocase else 0)
                             if hyperscan else c.nocase)
        self.patterns = patterns
        self.flags = flags
        # every rule one pattern (the engine's: its prefilter literal): a reported pattern is its
        # rule's bit, no count per rule to keep
        self.single = all(n == 1 for n in self.need.values())
        self.db = self.scratch = self.db_scan = None
        if hyperscan and patterns:
            self.db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            # every byte as \xNN in Hyperscan's regex syntax, not its literal API: the binding
            # passes literals as C strings, so a NUL ended them ("|00 01|" failed to compile,
            # "a|00|b" was looked for as "a")
            self.db.compile(expressions=[b"".join(b"\\x%02x" % c for c in p) for p in patterns],
                            ids=list(range(len(patterns))), elements=len(patterns), flags=flags)
            self.scratch = hyperscan.Scratch(self.db)
            self.db_scan = self.db.scan        # bound once: a scan a payload is the hot call

    def scan(self, payload):
        """Mask of rules all of whose content literals occur somewhere in payload."""
        if not self.patterns or not payload:
            return 0
        owner = self.owner
        if self.db is not None:
            # the binding's arguments by position (data, handler, flags, context, scratch): by
            # keyword its argument parsing cost ~3,400 instructions a scan, the scan itself ~2,000;
            # the found pattern ids go to a list (a module handler: no closure made a scan)
            found = []
            self.db_scan(payload if type(payload) is bytes else bytes(payload), _on_match, 0, found,
                         self.scratch)
            if not found:
                return 0
            if self.single:
                m = 0
                for pid in found:
                    m |= owner[pid]
                return m
            counts = {}
            for pid in found:
                bit = owner[pid]
                counts[bit] = counts.get(bit, 0) + 1
        else:
            counts = {}
            lowered = None
            for pid, pat in enumerate(self.patterns):
                if self.flags[pid]:
                    lowered = lowered if lowered is not None else bytes(payload).lower()
                    hit = pat.lower() in lowered
                else:
                    hit = pat in payload
                if hit:
                    counts[owner[pid]] = counts.get(owner[pid], 0) + 1
        m = 0
        need = self.need
        for bit, n in counts.items():
            if n >= need[bit]:
                m |= bit
        return m


def _on_match(pid, start, end, flags, found):
    """Hyperscan's match handler: the pattern id, for ContentPrefilter.scan (its context: a list)."""
    found.append(pid)


def parse_nets(values):
    return tuple(ipaddress.ip_network(v, strict=False) for v in values)


from ..compiled import use_compiled  # noqa: E402 -- last: the Cython build of this file, if built
use_compiled(globals())
