"""Per-flow rule state: flowbits, flowints, bypass (Suricata's flow variables).

The Detector numbers every flowbit name its rules use, so a flow's bits are one int and
its integers a dict keyed by names some rule wrote: a flow holds at most what the rule
set names, whatever the traffic says (bounded by construction). Flows without any state
pay one slot (None).

Semantics (docs/rules.md, "Flow state"): flowbits isset/isnotset are checked with the
rule's other packet conditions, against the state as earlier packets -- and earlier rules
on this packet -- left it; set/unset/toggle happen only when the whole rule matches.
flowint comparisons are checked the same way; its changes (=, +, -) happen only when the
whole rule matches, in the order written (Suricata's post-match).
"""
from .rule import FLOWINT_CHANGES

_U32 = (1 << 32) - 1


class FlowVars:
    __slots__ = ("bits", "ints", "bypass", "unknown")

    def __init__(self):
        self.bits = 0
        self.ints = None             # name -> int, created on the first flowint change
        self.bypass = False
        self.unknown = False         # earlier packets' changes were not seen (cannot_know)


class FlowState:
    """The compiled flowbits/flowint programs of a rule set."""

    def __init__(self, rules):
        names = {}
        for r in rules:
            for fb in r.flowbits:
                for n in fb.names:
                    names.setdefault(n, len(names))
        self.bit_no = names
        self.checks = {}             # rule id -> [(op, mask, any)]
        self.changes = {}            # rule id -> [(op, mask)]
        for r in rules:
            checks, changes = [], []
            for fb in r.flowbits:
                mask = 0
                for n in fb.names:
                    mask |= 1 << names[n]
                if fb.op in ("isset", "isnotset"):
                    checks.append((fb.op, mask, fb.any))
                else:
                    changes.append((fb.op, mask))
            if checks:
                self.checks[r.id] = checks
            if changes:
                self.changes[r.id] = changes

    @staticmethod
    def writes(r):
        return bool(r.bypass or any(fb.op not in ("isset", "isnotset") for fb in r.flowbits)
                    or any(fi.op in FLOWINT_CHANGES for fi in r.flowint))

    @staticmethod
    def reads(r):
        return bool(any(fb.op in ("isset", "isnotset") for fb in r.flowbits)
                    or any(fi.op not in FLOWINT_CHANGES for fi in r.flowint))

    def holds(self, r, flow):
        """The rule's flowbits/flowint conditions hold for the flow now."""
        fv = flow.vars
        checks = self.checks.get(r.id)
        if checks:
            bits = fv.bits if fv is not None else 0
            for op, mask, anyof in checks:
                have = bits & mask
                if op == "isset":
                    ok = bool(have) if anyof else have == mask
                else:                          # isnotset: "a|b" any of them unset, else all unset
                    ok = have != mask if anyof else not have
                if not ok:
                    return False
        if r.flowint:
            return self._flowint(r, flow)
        return True

    def _flowint(self, r, flow):
        """The rule's flowint comparisons (isset, notset, ==, >, ...) on the flow's integers
        as earlier packets and rules left them: Suricata checks them with the rule's other
        conditions and runs its changes (=, +, -) only after the whole rule matched (apply).
        So "x, +, 1; x, >, 3" never matches while x is unset, and "x, =, 7; x, ==, 1"
        matches when x was 1."""
        fv = flow.vars
        ints = fv.ints if fv is not None else None
        for fi in r.flowint:
            if fi.op in FLOWINT_CHANGES:
                continue
            cur = ints.get(fi.name) if ints is not None else None
            if fi.op == "isset":
                ok = cur is not None
            elif fi.op == "notset":
                ok = cur is None
            else:
                other = fi.value if isinstance(fi.value, int) else (ints.get(fi.value) if ints else None)
                ok = cur is not None and other is not None and _COMPARE[fi.op](cur, other)
            if not ok:
                return False
        return True

    @staticmethod
    def _change_ints(r, fv):
        """The matched rule's flowint changes, in the order written (Suricata's post-match)."""
        for fi in r.flowint:
            if fi.op not in FLOWINT_CHANGES:
                continue
            ints = fv.ints
            v = fi.value if isinstance(fi.value, int) else (ints.get(fi.value) if ints else None)
            if v is None:
                continue                       # from an unset variable: Suricata changes nothing
            if ints is None:
                ints = fv.ints = {}
            cur = ints.get(fi.name)
            if fi.op == "=":
                ints[fi.name] = v
            elif fi.op == "+":                 # unsigned 32-bit as Suricata's: + saturates, - stops at 0
                ints[fi.name] = min((cur or 0) + v, _U32)
            elif cur is not None:
                ints[fi.name] = max(cur - v, 0)

    def apply(self, r, flow):
        """The rule matched: its changes, in the order written."""
        changes = self.changes.get(r.id)
        if not (changes or r.bypass or r.flowint):
            return
        fv = flow.vars
        if fv is None:
            fv = flow.vars = FlowVars()
        if changes:
            bits = fv.bits
            for op, mask in changes:
                if op == "set":
                    bits |= mask
                elif op == "unset":
                    bits &= ~mask
                else:
                    bits ^= mask
            fv.bits = bits
        if r.flowint:
            self._change_ints(r, fv)
        if r.bypass:
            fv.bypass = True


_COMPARE = {"==": int.__eq__, "!=": int.__ne__, "<": int.__lt__, "<=": int.__le__,
            ">": int.__gt__, ">=": int.__ge__}


def remap(flows, old, new):
    """A reload numbered the bit names anew: each flow's bits follow their names (a name
    the new rules no longer use is dropped -- no rule can read it)."""
    if old.bit_no == new.bit_no:
        return
    moves = [(1 << i, 1 << new.bit_no[n]) for n, i in old.bit_no.items() if n in new.bit_no]
    for flow in flows:
        fv = flow.vars
        if fv is not None and fv.bits:
            fv.bits = sum(to for frm, to in moves if fv.bits & frm)


def cannot_know(flow):
    """The flow was picked up after its start (mid-stream: a restart, or an eviction the
    flow comes back from): the bits and integers its earlier packets set are unknown.
    Verdict rules that read them are then read by the exception policy (engine)."""
    fv = flow.vars
    if fv is None:
        fv = flow.vars = FlowVars()
    fv.unknown = True


def unknown(flow):
    fv = flow.vars
    return fv is not None and fv.unknown
