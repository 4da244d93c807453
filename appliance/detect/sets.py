"""Set algebra for rule addresses and ports, used while loading rules.

A set is kept as (items, negated): either the union of its items or the complement
of it. Union, intersection and complement stay in that form, which gives lists with
negated members their Suricata meaning: [a, !b] = a minus b; [!a, !b] = neither a nor b.
The loader turns the final set into the AddrSet/PortSet a Rule carries.
"""
import ipaddress


class AddrOps:
    @staticmethod
    def norm(nets):
        out = []
        for version in (4, 6):
            out.extend(ipaddress.collapse_addresses(n for n in nets if n.version == version))
        return tuple(out)

    @classmethod
    def inter(cls, a, b):
        return cls.norm([x if x.subnet_of(y) else y for x in a for y in b
                         if x.version == y.version and x.overlaps(y)])

    @classmethod
    def diff(cls, a, b):
        out = []
        for x in a:
            pieces = [x]
            for y in b:
                if y.version != x.version:
                    continue
                rest = []
                for p in pieces:
                    if not p.overlaps(y):
                        rest.append(p)
                    elif not p.subnet_of(y):
                        rest.extend(p.address_exclude(y))
                pieces = rest
            out.extend(pieces)
        return cls.norm(out)


class PortOps:
    @staticmethod
    def norm(ranges):
        out = []
        for lo, hi in sorted(ranges):
            if out and lo <= out[-1][1] + 1:
                out[-1] = (out[-1][0], max(out[-1][1], hi))
            else:
                out.append((lo, hi))
        return tuple(out)

    @classmethod
    def inter(cls, a, b):
        return cls.norm([(max(l1, l2), min(h1, h2)) for l1, h1 in a for l2, h2 in b
                         if max(l1, l2) <= min(h1, h2)])

    @classmethod
    def diff(cls, a, b):
        out = []
        for lo, hi in a:
            pieces = [(lo, hi)]
            for blo, bhi in b:
                rest = []
                for plo, phi in pieces:
                    if bhi < plo or blo > phi:
                        rest.append((plo, phi))
                        continue
                    if plo < blo:
                        rest.append((plo, blo - 1))
                    if bhi < phi:
                        rest.append((bhi + 1, phi))
                pieces = rest
            out.extend(pieces)
        return cls.norm(out)


class ValueSet:
    __slots__ = ("items", "neg", "ops")

    def __init__(self, items, neg, ops):
        self.items, self.neg, self.ops = tuple(items), neg, ops

    def complement(self):
        return ValueSet(self.items, not self.neg, self.ops)

    def union(self, other):
        o = self.ops
        if not self.neg and not other.neg:
            return ValueSet(o.norm(self.items + other.items), False, o)
        if self.neg and other.neg:
            return ValueSet(o.inter(self.items, other.items), True, o)
        pos, neg = (other, self) if self.neg else (self, other)
        return ValueSet(o.diff(neg.items, pos.items), True, o)

    def minus(self, other):
        # a - b = not(not a or b)
        return self.complement().union(other).complement()


KINDS = {"addr": AddrOps, "port": PortOps}
