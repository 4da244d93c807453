"""The bootstrap in fleet mode (a `gwlb:` section, docs/gwlb.md): one data ENI behind a GWLB.

What differs from the inline pair:
- one data ENI (device 0: GWLB sends to a target registered by instance id at the primary
  private IP of its primary ENI) and an optional management ENI (device 1);
- nothing is routed: GENEVE ends in the appliance and allowed packets go back to the GWLB as
  new datagrams from our address, so ip_forward is left as it is and no VPC route is added;
- source/dest check still goes off on the data ENI: gwlbtun users found that with it on, EC2
  silently drops what leaves decapsulated while the health checks keep passing, and a
  GENEVE design that ever forwards an inner packet natively would meet the same drop;
- the `gwlb` status entry: the config with every "any" resolved against this instance
  (where GENEVE and the health checks really arrive), checked against the data ENI's subnet,
  the VPC and its MTU. A listen address that is not on the data ENI, or senders outside the
  VPC, would pass health checks while no datagram is ever accepted: refused here.
"""
import ipaddress

from appliance.aws.hostconfig import Route, Sysctl, interface_addresses, management_routes, vpc_router

GENEVE_OVERHEAD = 68      # GWLB's outer IPv4 + UDP + GENEVE with AWS's options
GWLB_MTU = 8500           # the largest inner packet a GWLB carries


def plan(bindings, table, conntrack=None, mem_bytes=None):
    """(actions, notes) for fleet mode; bindings: data[, management]."""
    acts, notes = [], []
    if conntrack is not None:
        from appliance.aws import conntrack as ct_sizing
        ct_acts, ct_note = ct_sizing.plan(conntrack, mem_bytes or ct_sizing.mem_total())
        acts += ct_acts
        notes.append(ct_note)
    data, mgmt = bindings["data"], bindings.get("management")
    every = [data] + ([mgmt] if mgmt else [])
    for b in every:
        acts.append(Sysctl(("net", "ipv4", "conf", b.ifname, "rp_filter"), 1,
                           "strict: GENEVE and health checks arrive for this ENI's own address"))
    for scope in ("all", "default") + tuple(b.ifname for b in every):
        acts.append(Sysctl(("net", "ipv4", "conf", scope, "send_redirects"), 0, "the VPC router owns the path"))
        acts.append(Sysctl(("net", "ipv4", "conf", scope, "accept_redirects"), 0, "nobody steers our replies"))
    acts += interface_addresses(every)
    acts.append(Route("default", data.ifname, vpc_router(data.eni.subnet_cidr),
                      why="GENEVE replies and the EC2/SSM APIs through the data ENI's subnet router"))
    if mgmt:
        acts += management_routes(mgmt, table)
    notes.append("nothing is forwarded in fleet mode: ip_forward left as it is, no VPC route")
    return acts, notes


def resolve(gwlb, bindings):
    """The `gwlb` status entry: (doc, problems). Problems are what would make health checks
    pass while the GWLB's datagrams never reach a worker (or never come back whole)."""
    data, mgmt = bindings["data"], bindings.get("management")
    problems, notes = [], []
    ours = set(data.eni.local_ipv4s)
    primary = data.eni.primary_ipv4
    if gwlb.listen in ("0.0.0.0", "::"):
        listen = primary
        notes.append(f"gwlb.listen {gwlb.listen}: GENEVE arrives at {primary}, the data ENI's primary address")
    else:
        listen = gwlb.listen
        if listen not in ours:
            problems.append(f"gwlb.listen {listen} is not an address of the data ENI {data.eni.eni_id} "
                            f"({', '.join(sorted(ours)) or 'none'}): GWLB sends GENEVE to {primary}")
        elif listen != primary:
            problems.append(f"gwlb.listen {listen} is a secondary address of {data.eni.eni_id}: GWLB sends GENEVE "
                            f"to the primary address {primary} of a target registered by instance id")
    vpc = [ipaddress.ip_network(c, strict=False) for c in data.eni.vpc_cidrs]
    senders = [ipaddress.ip_network(s, strict=False) for s in gwlb.senders]
    outside = [str(s) for s in senders if not any(s.version == v.version and s.subnet_of(v) for v in vpc)]
    if outside:
        problems.append(f"gwlb.senders {', '.join(outside)} outside the VPC ({', '.join(data.eni.vpc_cidrs)}): a GWLB "
                        "sends from its own ENIs, in the VPC of its targets")
    health_addrs = {"0.0.0.0", "::", *ours, *(mgmt.eni.local_ipv4s if mgmt else ())}
    if gwlb.health_host not in health_addrs:
        problems.append(f"gwlb.health {gwlb.health_host}:{gwlb.health_port} is not an address of this instance's "
                        f"ENIs: the target group's health check would never connect")
    health = primary if gwlb.health_host in ("0.0.0.0", "::") else gwlb.health_host
    mtu = data.link.mtu
    need = GWLB_MTU + GENEVE_OVERHEAD
    if mtu < need:
        notes.append(f"warning: data ENI MTU {mtu} < {need} (GWLB's {GWLB_MTU} + {GENEVE_OVERHEAD}): the largest "
                     "datagrams a GWLB sends do not fit")
    doc = {"interface": data.ifname, "eni": data.eni.eni_id, "listen": f"{listen}:{gwlb.port}",
           "senders": list(gwlb.senders), "reply_port": gwlb.reply_port, "workers": gwlb.workers,
           "health": f"{health}:{gwlb.health_port}", "drain": gwlb.drain, "mtu": mtu, "notes": notes}
    return doc, problems
