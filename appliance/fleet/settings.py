"""The `gwlb:` section of appliance.yaml: its presence is fleet mode (docs/gwlb.md,
"Running a fleet target"). Every problem FILE:LINE."""
from dataclasses import dataclass
import ipaddress

from appliance import yamlsource
from appliance.problems import at, did_you_mean, got, is_int

GENEVE_PORT = 6081
# GWLB's default deregistration delay: the flows it still sends a deregistered target for
# this long are the ones the drain must serve
DEREGISTRATION_DELAY = 300


@dataclass(frozen=True)
class Gwlb:
    senders: tuple = ()              # GWLB addresses / CIDRs (its subnets): nobody else is decapsulated
    listen: str = "0.0.0.0"          # the data address GENEVE arrives at (GWLB sends to the target's IP)
    port: int = GENEVE_PORT
    reply_port: int | None = GENEVE_PORT   # where GWLB listens; None: the sender's source port
    workers: int = 2                 # GENEVE worker processes, one SO_REUSEPORT socket each
    health_host: str = ""            # the target group's health check: ADDR ...
    health_port: int = 0             # ... and PORT
    drain: float = DEREGISTRATION_DELAY    # seconds served after SIGTERM with health failing
    offload: bool = True             # decided flows answered in the kernel (appliance.gwlb_offload)


GWLB_KEYS = ("listen", "senders", "reply_port", "workers", "health", "drain", "offload")


def parse_gwlb(doc, path, problems):
    """`doc["gwlb"]` -> Gwlb (None when the section is bad: its problems are in `problems`)."""
    from appliance.config import parse_listen
    g = doc["gwlb"]
    if not isinstance(g, yamlsource.LineDict):
        problems.append(at(path, doc.line_of("gwlb"), f"gwlb must be a mapping of {', '.join(GWLB_KEYS)}, "
                           f"got {got(g)}"))
        return None
    before = len(problems)
    for k in g:
        if k not in GWLB_KEYS:
            problems.append(at(path, g.line_of(k), f"unknown key gwlb.{k}{did_you_mean(k, GWLB_KEYS)}"))
    out = {}
    if "listen" in g:
        v = g["listen"]
        try:
            out["listen"] = str(ipaddress.ip_address(v if isinstance(v, str) else ""))
        except ValueError:
            hp = parse_listen(v)
            if hp is not None:
                out["listen"], out["port"] = hp
            else:
                problems.append(at(path, g.line_of("listen"), "gwlb.listen must be the data address (an IP "
                                   f"address, 0.0.0.0 for any, or ADDR:PORT; GENEVE is port 6081), got {got(v)}"))
    if "senders" not in g:
        problems.append(at(path, g.line, "gwlb.senders is required: the GWLB's addresses or its subnets' CIDRs "
                           "(a datagram from anyone else is not decapsulated)"))
    else:
        v = g["senders"]
        items = [v] if isinstance(v, str) else v
        if not isinstance(items, list) or not items:
            problems.append(at(path, g.line_of("senders"), f"gwlb.senders must be a CIDR or a list of CIDRs, got {got(v)}"))
        else:
            nets = []
            for i, item in enumerate(items):
                line = items.line_of(i) if isinstance(items, yamlsource.LineList) else g.line_of("senders")
                try:
                    nets.append(str(ipaddress.ip_network(str(item), strict=False)))
                except ValueError:
                    problems.append(at(path, line, f"gwlb.senders: {item!r} is not an IPv4/IPv6 address or CIDR"))
            out["senders"] = tuple(nets)
    if "reply_port" in g:
        v = g["reply_port"]
        if v is None:
            out["reply_port"] = None
        elif is_int(v) and 1 <= v <= 65535:
            out["reply_port"] = v
        else:
            problems.append(at(path, g.line_of("reply_port"), "gwlb.reply_port must be a port from 1 to 65535 "
                               f"(GWLB listens on 6081) or null (the sender's source port), got {got(v)}"))
    if "workers" in g:
        v = g["workers"]
        if is_int(v) and 1 <= v <= 64:
            out["workers"] = v
        else:
            problems.append(at(path, g.line_of("workers"), f"gwlb.workers must be an integer from 1 to 64, got {got(v)}"))
    if "health" not in g:
        problems.append(at(path, g.line, "gwlb.health is required: ADDR:PORT the target group's health check "
                           "asks (HTTP; the data or management address), e.g. 0.0.0.0:8080"))
    else:
        hp = parse_listen(g["health"])
        if hp is None:
            problems.append(at(path, g.line_of("health"), "gwlb.health must be ADDR:PORT with an IP address "
                               f"(the target group's health check port), got {got(g['health'])}"))
        else:
            out["health_host"], out["health_port"] = hp
    if "offload" in g:
        if isinstance(g["offload"], bool):
            out["offload"] = g["offload"]
        else:
            problems.append(at(path, g.line_of("offload"), f"gwlb.offload must be true or false, got {got(g['offload'])}"))
    if "drain" in g:
        v = g["drain"]
        if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 3600:
            out["drain"] = v
        else:
            problems.append(at(path, g.line_of("drain"), "gwlb.drain must be seconds from 0 to 3600 (the target "
                               f"group's deregistration delay, GWLB's default 300), got {got(v)}"))
    if len(problems) > before:
        return None
    return Gwlb(**out)


def fleet_conflicts(doc, path, problems):
    """Keys of the inline datapath that mean nothing (or something else) next to `gwlb:`."""
    line = doc.line_of
    ifaces = doc.get("interfaces")
    if isinstance(ifaces, yamlsource.LineDict):
        for role in ("outside", "inside"):
            if role in ifaces:
                problems.append(at(path, ifaces.line_of(role), f"interfaces.{role}: not used with gwlb: GENEVE "
                                   "arrives on one data interface, at gwlb.listen; which side is outside comes "
                                   "from home_net (docs/gwlb.md)"))
    for key, why in (("workers", "the GENEVE workers are gwlb.workers"),
                     ("queue_base", "fleet mode uses no NFQUEUE"),
                     ("mark_mask", "fleet mode uses no connmark"),
                     ("overload", "its limits sit before the NFQUEUE rule, which fleet mode does not have"),
                     ("ha", "behind a GWLB the target group replaces the HA pair"),
                     ("control", "not served in fleet mode yet; the health check is gwlb.health")):
        if key in doc:
            problems.append(at(path, line(key), f"{key}: not used with gwlb: {why}"))

