"""Rule variables ($NAME) and the address/port specs that use them.

A spec is an address, CIDR, port, "a-b" range, any, $VAR, a list of these, or "!"
before any of them; "[a, !b]" strings are lists too. Specs expand to sets through
the algebra in sets.py. Problems go to the `Where` of the spec, or of the variable's
definition when the fault is there (reported once, however many rules use it).
"""
import ipaddress
import re
from dataclasses import dataclass

from ..problems import Where, closest, got, is_int
from .rule import DEFAULT_HOME_NET, AddrSet, PortSet
from .sets import KINDS, ValueSet

HOME_NET_SOURCE = "<home_net>"          # the FILE in messages about the home_net argument
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_BASE60 = re.compile(r"(?<![\w.:])[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+(?![\w.:])")
_BAD = object()                          # a variable whose definition is broken (already reported)
_EVERY_ADDR = {ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")}


@dataclass
class Variable:
    value: object          # as written: a string, number or (nested) list
    where: Where           # its definition


class Variables:
    def __init__(self, problems):
        self.problems = problems
        self.defs = {}                     # name -> Variable
        self.kinds = {}                    # name -> "addr" | "port" | "any" | _BAD
        self.visiting = []                 # names being kinded, to find cycles
        self.cache = {}                    # (name, kind) -> ValueSet | None

    # -------------------------------------------------- definitions

    def define(self, name, value, where):
        """One `NAME: value` of a vars mapping; the first definition wins, an equal one is fine."""
        if not isinstance(name, str) or not _NAME.match(name):
            where.report(f"bad variable name {name!r} (use letters, digits and _)")
            return
        if isinstance(value, list) and not value or value is None or value == "":
            where.report(f"variable {name} is empty")
            return
        first = self.defs.get(name)
        if first is None:
            self.defs[name] = Variable(value, where)
        elif raw(first.value) != raw(value):
            where.report(f"variable {name} redefined with a different value (first defined at {first.where})")

    def define_defaults(self, home_net=None):
        """HOME_NET from the caller (wins over the files), else the files', else private space;
        EXTERNAL_NET defaults to everything else."""
        if home_net is not None:
            value = list(home_net) if isinstance(home_net, (list, tuple)) else [home_net]
            self.defs["HOME_NET"] = Variable(value, Where(self.problems, HOME_NET_SOURCE, 1))
        elif "HOME_NET" not in self.defs:
            self.defs["HOME_NET"] = Variable(list(DEFAULT_HOME_NET), Where(self.problems, "<default>", 0))
        if "EXTERNAL_NET" not in self.defs:
            self.defs["EXTERNAL_NET"] = Variable("!$HOME_NET", Where(self.problems, "<default>", 0))

    def check(self):
        """Report every broken definition, used or not."""
        for name in list(self.defs):
            self.kind(name)

    def display(self):
        """name -> its value as a flat list of strings (RuleSet.vars)."""
        return {n: raw(v.value) for n, v in self.defs.items()}

    def home_net(self):
        """HOME_NET resolved ($VARs, "!", lists) to an AddrSet; None when its definition is broken."""
        var = self.defs["HOME_NET"]
        s = self.expand_var("HOME_NET", "addr", var.where, "$HOME_NET")
        return None if s is None else AddrSet(s.items, s.neg)

    # -------------------------------------------------- what a variable holds

    def kind(self, name):
        """"addr", "port", "any" (only any/neutral) or _BAD; reports definition problems once."""
        if name in self.kinds:
            return self.kinds[name]
        var = self.defs[name]
        if name in self.visiting:
            cycle = self.visiting[self.visiting.index(name):] + [name]
            var.where.report("variable cycle: " + " -> ".join("$" + n for n in cycle))
            return _BAD
        self.visiting.append(name)
        kinds, ok = set(), True
        for atom, where in _atoms(var.value, var.where):
            if atom == "any":
                continue
            if isinstance(atom, str) and atom.startswith("$"):
                ref = atom[1:]
                if ref not in self.defs:
                    where.report(self.unknown(ref))
                    ok = False
                    continue
                k = self.kind(ref)
                if k is _BAD:
                    ok = False
                elif k != "any":
                    kinds.add(k)
                continue
            if isinstance(atom, str) and parse_addr(atom)[0] is not None:
                kinds.add("addr")
            elif parse_port(atom)[0] is not None and not (is_int(atom) and base60_hint(where.text, atom)):
                kinds.add("port")
            else:
                hint = is_int(atom) and base60_hint(where.text, atom)
                what = hint or (f"'{atom}' is not an address, CIDR or port" if isinstance(atom, str)
                                else f"expected an address or port, got {got(atom)}")
                where.report(f"variable {name}: {what}")
                ok = False
        self.visiting.pop()
        if ok and len(kinds) > 1:
            var.where.report(f"variable {name} mixes addresses and ports")
            ok = False
        if name in self.kinds:             # marked bad by a cycle found below
            return self.kinds[name]
        kind = (kinds.pop() if kinds else "any") if ok else _BAD
        if kind == "port" and name in ("HOME_NET", "EXTERNAL_NET"):
            var.where.report(f"variable {name} must hold addresses, not ports")
            kind = _BAD
        self.kinds[name] = kind
        return kind

    def unknown(self, name):
        close = closest(name, list(self.defs), fold_case=False)
        hint = f" (did you mean ${close}?)" if close else ""
        return f"unknown variable ${name}{hint}"

    # -------------------------------------------------- address and port sets

    def expand(self, value, kind, where, field):
        """A ValueSet for an address/port spec, or None after reporting why not."""
        ops = KINDS[kind]
        if isinstance(value, list):
            if not value:
                where.report(f"{field}: empty list")
                return None
            pos, neg, ok = [], [], True
            for i, item in enumerate(value):
                negated = isinstance(item, str) and item.strip().startswith("!")
                s = self.expand(item.strip()[1:] if negated else item, kind, where.of(value, i), field)
                if s is None:
                    ok = False
                else:
                    (neg if negated else pos).append(s)
            if not ok:
                return None
            result = ValueSet((), True, ops)   # any
            if pos:
                result = pos[0]
                for s in pos[1:]:
                    result = result.union(s)
            for s in neg:
                result = result.minus(s)
            return result
        if isinstance(value, str):
            s = value.strip()
            if s.startswith("!"):
                inner = self.expand(s[1:], kind, where, field)
                return inner.complement() if inner else None
            if s.startswith("["):
                parts = split_bracket(s)
                if parts is None:
                    where.report(f"{field}: unbalanced brackets in '{s}'")
                    return None
                return self.expand(parts, kind, where, field)
            if s == "any":
                return ValueSet((), True, ops)
            if s.startswith("$"):
                return self.expand_var(s[1:], kind, where, field)
        if kind == "addr":
            if not isinstance(value, str):
                hint = " (quote IPv6 addresses)" if is_int(value) else ""
                where.report(f"{field}: expected an address, CIDR, list or $VAR, got {got(value)}{hint}")
                return None
            net, msg = parse_addr(value.strip())
        else:
            hint = is_int(value) and base60_hint(where.text, value)
            if hint:
                where.report(f"{field}: {hint}")
                return None
            net, msg = parse_port(value.strip() if isinstance(value, str) else value)
        if msg:
            where.report(f"{field}: {msg}")
            return None
        return ValueSet((net,), False, ops)

    def expand_var(self, name, kind, where, field):
        if name not in self.defs:
            where.report(f"{field}: {self.unknown(name)}")
            return None
        vkind = self.kind(name)
        if vkind is _BAD:
            return None                    # its definition is already reported
        var = self.defs[name]
        if vkind not in (kind, "any"):
            want = "addresses" if kind == "addr" else "ports"
            where.report(f"{field}: ${name} holds {'ports' if vkind == 'port' else 'addresses'} "
                         f"(defined at {var.where}), expected {want}")
            return None
        key = (name, kind)
        if key not in self.cache:
            self.cache[key] = self.expand(var.value, kind, var.where, f"${name}")
        return self.cache[key]

    def addr_set(self, value, where, field):
        """(AddrSet or None for any, True) or (None, False) after reporting."""
        s = self.expand(value, "addr", where, field)
        if s is None:
            return None, False
        if (s.neg and not s.items) or (not s.neg and set(s.items) == _EVERY_ADDR):
            return None, True              # any
        if not s.neg and not s.items or s.neg and set(s.items) == _EVERY_ADDR:
            where.report(f"{field} matches no address")
            return None, False
        return AddrSet(s.items, s.neg), True

    def port_set(self, value, where, field):
        """(PortSet or None for any, True) or (None, False) after reporting."""
        s = self.expand(value, "port", where, field)
        if s is None:
            return None, False
        if (s.neg and not s.items) or (not s.neg and s.items == ((0, 65535),)):
            return None, True
        if not s.neg and not s.items or s.neg and s.items == ((0, 65535),):
            where.report(f"{field} matches no port")
            return None, False
        return PortSet(s.items, s.neg), True


# ---------------------------------------------------------------- one address or port

def parse_addr(s):
    """(network, None) or (None, message) for one address/CIDR string; host bits are cleared."""
    if "%" in s:      # ipaddress reads a scope (fe80::1%eth0); packets carry none, and pytricia refuses it
        return None, f"'{s}': an address with a scope (%zone) never appears in a packet; leave the scope out"
    try:
        return ipaddress.ip_network(s, strict=False), None
    except ValueError:
        return None, f"'{s}' is not an IP address or CIDR"


def parse_port(v):
    """((lo, hi), None) or (None, message) for one port, "a-b" range or int."""
    if is_int(v):
        lo = hi = v
    elif isinstance(v, str) and re.fullmatch(r"\d+", v):
        lo = hi = int(v)
    elif isinstance(v, str) and re.fullmatch(r"\d+\s*-\s*\d+", v):
        lo, hi = (int(x) for x in v.split("-"))
    elif isinstance(v, str) and re.fullmatch(r"\d*:\d*", v):
        return None, f"'{v}' is not a port; write a range as \"a-b\""
    else:
        return None, f"'{v}' is not a port or port range" if isinstance(v, str) else f"expected a port, got {got(v)}"
    if not (0 <= lo <= 65535 and 0 <= hi <= 65535):
        return None, f"port {v!r} is out of range 0-65535"
    if lo > hi:
        return None, f"port range '{v}' is reversed (low > high)"
    return (lo, hi), None


def base60_hint(text_line, value):
    """YAML 1.1 reads an unquoted 1:2 as the base-60 number 62: name it when that happened."""
    for tok in _BASE60.findall(text_line or ""):
        n = 0
        for part in tok.lstrip("+-").replace("_", "").split(":"):
            n = n * 60 + int(part)
        if n == value:
            lo, _, hi = tok.partition(":")
            return f"'{tok}' is read by YAML as the base-60 number {value}; write a port range as \"{lo}-{hi}\""
    return None


def split_bracket(s):
    """"[a, [b, c], !d]" -> ["a", "[b, c]", "!d"]; None when brackets do not balance."""
    inner, parts, depth, cur = s[1:-1], [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
            continue
        depth += (ch == "[") - (ch == "]")
        if depth < 0:
            return None
        cur += ch
    if depth or not s.endswith("]"):
        return None
    parts.append(cur.strip())
    return [p for p in parts if p] if inner.strip() else []


def _atoms(value, where):
    """(atom, where) for each leaf of a variable's value: negations and brackets removed."""
    if isinstance(value, list):
        for i, v in enumerate(value):
            yield from _atoms(v, where.of(value, i))
        return
    if isinstance(value, str):
        s = value.strip().lstrip("!").strip()
        if s.startswith("["):
            parts = split_bracket(s)
            if parts is None:
                yield (s, where)           # reported as not an address/port
                return
            for part in parts:
                yield from _atoms(part, where)
            return
        yield (s, where)
        return
    yield (value, where)


def raw(value):
    """A variable's value as a flat list of strings, for display and for comparing redefinitions."""
    if isinstance(value, list):
        return [s for v in value for s in raw(v)]
    return [str(value)]
