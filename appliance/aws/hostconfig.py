"""Host settings an inline appliance needs, as a plan of idempotent actions.

`plan(bindings, table)` only computes; `apply(actions)` changes the kernel (sysctls in
/proc/sys of the current network namespace, links/addresses/routes/rules via netlink).
Each action reads the current state first, so running the bootstrap twice is a no-op.
"""
import dataclasses
import ipaddress
import os

PROC_SYS = "/proc/sys"
MGMT_RULE_PRIORITY = 1000


def vpc_router(cidr):
    """The VPC router answers at the subnet's network address + 1."""
    return str(ipaddress.ip_network(cidr, strict=False).network_address + 1)


@dataclasses.dataclass(frozen=True)
class Sysctl:
    parts: tuple          # ("net", "ipv4", "conf", "ens5", "rp_filter"): names may hold dots
    value: int
    why: str = ""

    @property
    def path(self):
        return os.path.join(PROC_SYS, *self.parts)

    def describe(self):
        return f"sysctl {'.'.join(self.parts)}={self.value}" + (f"  # {self.why}" if self.why else "")

    def apply(self, ipr):
        try:
            with open(self.path) as f:
                if f.read().strip() == str(self.value):
                    return "unchanged"
            with open(self.path, "w") as f:
                f.write(str(self.value))
        except OSError as e:
            raise OSError(f"cannot set {'.'.join(self.parts)}={self.value}: {e.strerror} ({self.path})") from None
        return "set"


@dataclasses.dataclass(frozen=True)
class LinkUp:
    ifname: str

    def describe(self):
        return f"ip link set {self.ifname} up"

    def apply(self, ipr):
        idx = _index(ipr, self.ifname)
        ipr.link("set", index=idx, state="up")
        return "up"


@dataclasses.dataclass(frozen=True)
class Address:
    ifname: str
    address: str
    prefixlen: int

    def describe(self):
        return f"ip addr add {self.address}/{self.prefixlen} dev {self.ifname}  # unless present"

    def apply(self, ipr):
        idx = _index(ipr, self.ifname)
        for a in ipr.get_addr(index=idx, family=2):
            if a.get_attr("IFA_ADDRESS") == self.address:
                return "present"
        ipr.addr("add", index=idx, address=self.address, prefixlen=self.prefixlen)
        return "added"


@dataclasses.dataclass(frozen=True)
class Route:
    dst: str                 # "default" or a CIDR
    ifname: str
    gateway: str = None
    table: int = 254         # main
    src: str = None
    why: str = ""

    def describe(self):
        s = f"ip route replace {self.dst}"
        s += f" via {self.gateway}" if self.gateway else " scope link"
        s += f" dev {self.ifname}"
        s += f" src {self.src}" if self.src else ""
        s += f" table {self.table}" if self.table != 254 else ""
        return s + (f"  # {self.why}" if self.why else "")

    def apply(self, ipr):
        kw = {"oif": _index(ipr, self.ifname), "table": self.table}
        if self.dst == "default":
            kw.update(dst="0.0.0.0", dst_len=0)
        else:
            net = ipaddress.ip_network(self.dst, strict=False)
            kw.update(dst=str(net.network_address), dst_len=net.prefixlen)
        if self.gateway:
            kw["gateway"] = self.gateway
        else:
            kw["scope"] = 253            # link
        if self.src:
            kw["prefsrc"] = self.src
        ipr.route("replace", **kw)
        return "replaced"


@dataclasses.dataclass(frozen=True)
class Rule:
    src: str
    table: int
    priority: int = MGMT_RULE_PRIORITY

    def describe(self):
        return f"ip rule add from {self.src} lookup {self.table} priority {self.priority}  # unless present"

    def apply(self, ipr):
        for r in ipr.get_rules(family=2):
            if (r.get_attr("FRA_PRIORITY") == self.priority and r.get_attr("FRA_SRC") == self.src
                    and r.get_attr("FRA_TABLE") == self.table):
                return "present"
        ipr.rule("add", family=2, src=self.src, src_len=32, table=self.table, priority=self.priority)
        return "added"


def _index(ipr, ifname):
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise OSError(f"interface {ifname!r} vanished")
    return found[0]


def ipv6_enabled():
    return os.path.isdir(os.path.join(PROC_SYS, "net/ipv6/conf/all"))


def interface_addresses(bindings):
    """Every bound ENI's interface up with its primary IPv4 address (inline and fleet alike)."""
    acts = []
    for b in bindings:
        acts.append(LinkUp(b.ifname))
        ip = b.eni.primary_ipv4
        if not ip:
            raise ValueError(f"{b.role} ENI {b.eni.eni_id} has no private IPv4 address in IMDS local-ipv4s")
        acts.append(Address(b.ifname, ip, ipaddress.ip_network(b.eni.subnet_cidr, strict=False).prefixlen))
    return acts


def management_routes(mgmt, table):
    """The management ENI answers from its own routing table (source-based rule)."""
    ip = mgmt.eni.primary_ipv4
    return [Route(mgmt.eni.subnet_cidr, mgmt.ifname, table=table, src=ip,
                  why="management subnet in the management table"),
            Route("default", mgmt.ifname, vpc_router(mgmt.eni.subnet_cidr), table=table,
                  why="control-plane replies leave through the management ENI"),
            Rule(ip, table)]


def plan(bindings, table, ipv6=None, conntrack=None, mem_bytes=None):
    """bindings: role -> interfaces.Binding; conntrack: config.Conntrack (None: leave
    conntrack as it is). Returns (actions, notes)."""
    ipv6 = ipv6_enabled() if ipv6 is None else ipv6
    acts, notes = [], []
    if conntrack is not None:
        from appliance.aws import conntrack as ct_sizing
        ct_acts, ct_note = ct_sizing.plan(conntrack, mem_bytes or ct_sizing.mem_total())
        acts += ct_acts
        notes.append(ct_note)
    data = [bindings[r] for r in ("outside", "inside")]
    mgmt = bindings.get("management")
    every = data + ([mgmt] if mgmt else [])

    acts.append(Sysctl(("net", "ipv4", "ip_forward"), 1, "route between the data ENIs"))
    if ipv6:
        acts.append(Sysctl(("net", "ipv6", "conf", "all", "forwarding"), 1, "route IPv6 too"))
    # Written after forwarding: turning ip_forward on rewrites the redirect defaults.
    acts.append(Sysctl(("net", "ipv4", "conf", "all", "rp_filter"), 0,
                       "the per-interface values below decide (kernel takes the max of all and iface)"))
    for b in data:
        acts.append(Sysctl(("net", "ipv4", "conf", b.ifname, "rp_filter"), 2,
                           "loose: an inline path is asymmetric per interface (strict drops sources "
                           "whose reverse route leaves by the other ENI)"))
    if mgmt:
        acts.append(Sysctl(("net", "ipv4", "conf", mgmt.ifname, "rp_filter"), 1,
                           "strict: the management ENI is an end host, its replies use its own table"))
    for scope in ("all", "default") + tuple(b.ifname for b in every):
        acts.append(Sysctl(("net", "ipv4", "conf", scope, "send_redirects"), 0,
                           "the VPC router, not the appliance, owns the path"))
        acts.append(Sysctl(("net", "ipv4", "conf", scope, "accept_redirects"), 0,
                           "a redirect would route around the inspection"))
        if ipv6:
            acts.append(Sysctl(("net", "ipv6", "conf", scope, "accept_redirects"), 0, ""))
    if ipv6:
        for b in every:
            acts.append(Sysctl(("net", "ipv6", "conf", b.ifname, "accept_ra"), 2,
                               "keep the RA-learned IPv6 default route with forwarding on"))

    acts += interface_addresses(every)

    out, ins = bindings["outside"], bindings["inside"]
    acts.append(Route("default", out.ifname, vpc_router(out.eni.subnet_cidr),
                      why="to the Internet through the outside ENI's subnet router"))
    for cidr in ins.eni.vpc_cidrs:
        ipaddress.ip_network(cidr, strict=False)   # ValueError here (and in --dry-run), not half-way through apply
        acts.append(Route(cidr, ins.ifname, vpc_router(ins.eni.subnet_cidr),
                          why="the VPC through the inside ENI (connected subnets stay more specific)"))
    if mgmt:
        acts += management_routes(mgmt, table)

    mtus = {b.ifname: b.link.mtu for b in every}
    notes.append("MTU as AWS set it (unchanged): " + ", ".join(f"{n}={m}" for n, m in mtus.items()))
    if out.link.mtu != ins.link.mtu:
        notes.append(f"warning: outside MTU {out.link.mtu} != inside MTU {ins.link.mtu}; "
                     "large packets will need fragmentation or PMTU discovery")
    return acts, notes


def apply(actions):
    """Apply in order; returns [(describe, result)]. Raises OSError naming the action that failed."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError
    done = []
    with IPRoute() as ipr:
        for a in actions:
            try:
                done.append((a.describe(), a.apply(ipr)))
            except NetlinkError as e:
                raise OSError(f"{a.describe()}: netlink error {e.code} ({os.strerror(e.code)})") from None
    return done
