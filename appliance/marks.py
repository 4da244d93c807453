"""Who else on this host uses packet marks or connmarks, and with which bits.

`appliance run` checks at start that no rule outside its own chains sets, copies or matches
mark/connmark bits inside `mark_mask`: such a rule either writes bits that would read as our
offload verdicts (a packet another tool marks would pass uninspected) or sees our bits and
stops matching. Found that way, the start is refused with every rule named and a free mask
suggested (docs/datapath.md, "Mark bits").

Read from the rulesets themselves:
  iptables-nft-save / ip6tables-nft-save   the iptables rules (xt compat matches included, whose
                                           arguments `nft -j` does not show)
  iptables-legacy-save / ip6tables-legacy  only when legacy tables exist (/proc/net/ip_tables_names)
  nft -j list ruleset                      native nftables tables (those iptables-nft owns are
                                           read above)
"""
import json
import shlex
import subprocess

ALL = 0xFFFFFFFF
OWN_CHAIN_PREFIX = "APPLIANCE-"
# iptables options whose value names mark bits (value/mask or value); what bits they touch
_VALUE_MASK = ("--mark", "--set-xmark", "--set-mark", "--tproxy-mark")
_VALUE = ("--or-mark", "--xor-mark", "--nfmask", "--ctmask", "--mask")
_COPIES = ("--save-mark", "--restore-mark")


def _int(s):
    return int(s, 0) & ALL


def iptables_rule_bits(tokens):
    """Mark/connmark bits an iptables-save rule (tokens after `-A CHAIN`) matches or writes."""
    bits, copies, masks = 0, False, False
    for i, tok in enumerate(tokens):
        arg = tokens[i + 1] if i + 1 < len(tokens) else ""
        try:
            if tok in _VALUE_MASK:
                v, _, m = arg.partition("/")
                bits |= (_int(m) if m else ALL) | (_int(v) if tok != "--mark" else 0)
            elif tok in _VALUE:
                bits |= _int(arg)
                masks |= tok in ("--nfmask", "--ctmask", "--mask")
            elif tok == "--and-mark":
                bits |= ~_int(arg) & ALL
            elif tok in _COPIES:
                copies = True
        except ValueError:
            bits = ALL                 # a value we cannot read: assume it touches everything
    if copies and not masks:
        bits = ALL                     # save/restore without masks copies all 32 bits
    return bits


def _save_lines(cmd):
    try:
        r = subprocess.run([cmd], capture_output=True, text=True, timeout=30)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None
    return r.stdout.splitlines() if r.returncode == 0 else None


def iptables_users(save_output, source):
    """[(where, bits)] from iptables-save text, our own chains left out; also the tables seen."""
    out, table, tables = [], None, set()
    for line in save_output:
        if line.startswith("*"):
            table = line[1:].strip()
            tables.add(table)
        elif line.startswith("-A "):
            try:
                tokens = shlex.split(line)
            except ValueError:
                tokens = line.split()
            chain = tokens[1]
            if chain.startswith(OWN_CHAIN_PREFIX):
                continue
            bits = iptables_rule_bits(tokens[2:])
            if bits:
                out.append((f"{source} -t {table} {line}", bits))
    return out, tables


def _ref(e):
    return isinstance(e, dict) and any(k in e and isinstance(e[k], dict) and e[k].get("key") == "mark"
                                       for k in ("meta", "ct"))


def _written(v, key):
    """Bits an nft `<key> mark set <v>` writes: mark | V and mark ^ V write V, mark & A writes
    ~A, the same mark writes none; a constant or the other mark copied in writes all 32, and
    anything unrecognised counts as all."""
    if _ref(v):
        return 0 if key in v else ALL
    if isinstance(v, dict) and len(v) == 1:
        op, args = next(iter(v.items()))
        if op in ("|", "^", "&") and isinstance(args, list) and len(args) == 2 and isinstance(args[1], int):
            inner = _written(args[0], key)
            return inner | ((~args[1] if op == "&" else args[1]) & ALL)
    return ALL


def nft_rule_bits(exprs):
    """Mark/connmark bits a native nft rule (its JSON expressions) matches or writes."""
    bits = 0
    for e in exprs:
        if "match" in e:
            left = e["match"].get("left")
            if _ref(left):
                bits |= ALL
            elif isinstance(left, dict) and isinstance(left.get("&"), list) and _ref(left["&"][0]):
                m = left["&"][1]
                bits |= (m & ALL) if isinstance(m, int) else ALL
        elif "mangle" in e and _ref(e["mangle"].get("key")):
            key = "meta" if "meta" in e["mangle"]["key"] else "ct"
            bits |= _written(e["mangle"]["value"], key)
    return bits


def nft_users(doc, iptables_tables):
    """[(where, bits)] from `nft -j list ruleset`, tables iptables-nft owns left out."""
    out = []
    for item in doc.get("nftables", []):
        r = item.get("rule")
        if not r or r.get("chain", "").startswith(OWN_CHAIN_PREFIX):
            continue
        if r.get("table") in iptables_tables.get(r.get("family"), ()):
            continue
        bits = nft_rule_bits(r.get("expr", []))
        if bits:
            out.append((f"nft {r['family']} {r['table']} {r['chain']} handle {r.get('handle')}", bits))
    return out


def host_users():
    """Every rule on this host (this network namespace) outside our chains that touches marks:
    [(where, bits)], and notes on what could not be read."""
    users, notes, tables = [], [], {"ip": set(), "ip6": set()}
    for cmd, fam in (("iptables-nft-save", "ip"), ("ip6tables-nft-save", "ip6")):
        lines = _save_lines(cmd)
        if lines is None:
            notes.append(f"{cmd} did not run: its rules were not checked")
            continue
        found, tables[fam] = iptables_users(lines, cmd)
        users += found
    for names, cmd in (("/proc/net/ip_tables_names", "iptables-legacy-save"),
                       ("/proc/net/ip6_tables_names", "ip6tables-legacy-save")):
        try:
            legacy = open(names).read().strip()
        except OSError:
            legacy = ""
        if legacy:
            lines = _save_lines(cmd)
            if lines is None:
                notes.append(f"legacy iptables tables exist ({names}) but {cmd} did not run: not checked")
            else:
                users += iptables_users(lines, cmd)[0]
    try:
        r = subprocess.run(["nft", "-j", "list", "ruleset"], capture_output=True, text=True, timeout=30)
        if r.returncode == 0:
            users += nft_users(json.loads(r.stdout or "{}"), tables)
        else:
            notes.append(f"nft -j list ruleset failed: {r.stderr.strip()}: native nftables rules not checked")
    except (FileNotFoundError, subprocess.TimeoutExpired, ValueError) as e:
        notes.append(f"nft not usable ({type(e).__name__}): native nftables rules not checked (install nftables)")
    return users, notes


def free_mask(used):
    """Two adjacent free bits, highest first below 0x80000000 (None when there are none)."""
    for shift in range(30, -1, -1):
        m = 0b11 << shift
        if not used & m:
            return m
    return None


def collisions(mask, users=None):
    """Problems (one line per rule whose bits overlap `mask`) and notes."""
    if users is None:
        users, notes = host_users()
    else:
        notes = []
    clash = [(where, bits) for where, bits in users if bits & mask]
    if not clash:
        return [], notes
    used = 0
    for _, bits in users:
        used |= bits
    lines = [f"mark_mask 0x{mask:x}: {where}  (bits 0x{bits & mask:x} of ours)" for where, bits in clash]
    free = free_mask(used)
    lines.append("its marks would read as offload verdicts, or it would stop matching ours: set mark_mask to "
                 "bits no rule here uses" + (f" (free here: 0x{free:x})" if free else
                                             " (no two adjacent bits are free; choose any two free ones)"))
    return lines, notes

