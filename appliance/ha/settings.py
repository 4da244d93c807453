"""The `ha:` section of appliance.yaml (docs/ha.md, "Configuration"); every problem FILE:LINE."""
from dataclasses import dataclass, fields, replace
import ipaddress
import os
import re

from appliance import yamlsource
from appliance.problems import at, did_you_mean, got

METHODS = ("routes", "eip", "eni")
EIPALLOC = re.compile(r"eipalloc-[0-9a-f]{8,17}")
RTB = re.compile(r"rtb-[0-9a-f]{8,17}")
ENI = re.compile(r"eni-[0-9a-f]{8,17}")
MIN_SECRET = 16                    # bytes: an HMAC key shorter than this is guessable offline


@dataclass(frozen=True)
class Sync:
    """`ha.sync:`: conntrackd replicating conntrack (offload marks included) to the peer
    (docs/ha.md, "Connection state"). Addresses default to the hosts of ha.listen / ha.peer:
    the management link the heartbeats take."""
    enabled: bool = True
    address: str = ""              # our management address (conntrackd's UDP IPv4/IPv6_address)
    peer: str = ""                 # the peer's (IPv4/IPv6_Destination_Address)
    port: int = 3780               # conntrackd's default
    interface: str = ""            # the management interface (conntrackd's UDP channel needs its name)
    run_dir: str = "/run/appliance/conntrackd"   # generated conntrackd.conf, its control socket and lock
    conntrackd: str = "conntrackd"               # the binary (PATH lookup)


SYNC_KEYS = tuple(f.name for f in fields(Sync))


@dataclass(frozen=True)
class Ha:
    listen: str = ""               # ADDR:PORT on the management interface: heartbeats in
    peer: str = ""                 # the peer's listen: heartbeats out
    check_listen: str = ""         # ADDR:PORT on another network (inside): probes answered here
    check_peer: str = ""           # the peer's check_listen: the independent check
    secret: str | None = None
    secret_file: str | None = None
    interval: float = 0.2          # seconds between heartbeats
    dead_after: float = 1.0        # no heartbeat (and no probe reply) for this long: peer is gone
    hold_down: float = 10.0        # no takeover within this long of the last route change
    preempt: bool = False          # take the routes back from a healthy peer (set on one node)
    method: str = "routes"
    route_tables: tuple = ()       # rtb-... whose routes at peer_eni move to eni
    eni: str = ""                  # this instance's ENI the routes (or the EIP) should target; auto: bootstrap's
    peer_eni: str = ""             # auto (routes): the ENI holding the peer's check_peer address
    outside_eni: str = ""          # routes, optional: our outside ENI, for the IGW edge route table; auto: bootstrap's
    peer_outside_eni: str = ""     # ... and the peer's (edge routes at it move to outside_eni)
    eip: str = ""                  # method eip: the Elastic IP's allocation id (eipalloc-...)
    floating_eni: str = ""         # method eni: the ENI that moves between the two instances
    floating_device_index: int | None = None   # method eni: where to attach it when it is attached nowhere
    readyz: str | None = None      # this appliance's /readyz URL (default: from control:)
    status_file: str = "/run/appliance/ha.json"
    sync: Sync | None = None       # None: no connection state replication

    def addresses(self):
        from appliance.config import parse_listen
        return {k: parse_listen(getattr(self, k)) for k in ("listen", "peer", "check_listen", "check_peer")}


HA_KEYS = tuple(f.name for f in fields(Ha))
REQUIRED = ("listen", "peer", "check_listen", "check_peer")
# What each takeover method acts on; the others' keys would be silently unused, so they are refused.
METHOD_KEYS = {"routes": ("route_tables", "eni", "peer_eni"), "eip": ("eip", "eni", "peer_eni"),
               "eni": ("floating_eni",)}
METHOD_OPTIONAL = {"eni": ("floating_device_index",), "routes": ("outside_eni", "peer_outside_eni")}


def parse_ha(doc, path, problems, control=None, base="."):
    """`doc["ha"]` -> Ha (None when the section is bad: its problems are in `problems`)."""
    from appliance.config import parse_listen
    ha = doc["ha"]
    if not isinstance(ha, yamlsource.LineDict):
        problems.append(at(path, doc.line_of("ha"), f"ha must be a mapping of {', '.join(HA_KEYS)}"))
        return None
    before = len(problems)
    for k in ha:
        if k not in HA_KEYS:
            problems.append(at(path, ha.line_of(k), f"unknown key ha.{k}{did_you_mean(k, HA_KEYS)}"))
    line = ha.line_of
    out = {}
    for k in REQUIRED:
        if k not in ha:
            problems.append(at(path, doc.line_of("ha"), f"ha.{k} is required"))
    method = ha.get("method", "routes")
    if method in METHODS:
        out["method"] = method
        for k in METHOD_KEYS[method]:
            if k not in ha:
                problems.append(at(path, doc.line_of("ha"), f"ha.{k} is required with ha.method {method}"))
        mine = METHOD_KEYS[method] + METHOD_OPTIONAL.get(method, ())
        for k in sorted({k for ks in (*METHOD_KEYS.values(), *METHOD_OPTIONAL.values()) for k in ks}):
            if k in ha and k not in mine:
                problems.append(at(path, line(k), f"ha.{k} is not used by ha.method {method} (it takes "
                                   f"{', '.join(mine)})"))
    for k in ("listen", "peer", "check_listen", "check_peer"):
        if k in ha:
            hp = parse_listen(ha[k])
            if hp is None:
                problems.append(at(path, line(k), f"ha.{k} must be ADDRESS:PORT with an IP address, got {got(ha[k])}"))
            elif ipaddress.ip_address(hp[0]).is_unspecified:
                # heartbeats carry a hash of the sender's listen address as its id, and refuse
                # their own (reflected): two nodes on 0.0.0.0 would refuse each other's
                problems.append(at(path, line(k), f"ha.{k} must be a node's own address, not {hp[0]}: it is "
                                   "the heartbeats' sender id"))
            else:
                out[k] = f"[{hp[0]}]:{hp[1]}" if ":" in hp[0] else f"{hp[0]}:{hp[1]}"
    for mine, theirs in (("listen", "peer"), ("check_listen", "check_peer")):
        if out.get(mine) and out.get(mine) == out.get(theirs):
            problems.append(at(path, line(theirs), f"ha.{theirs} is ha.{mine}: the peer's heartbeats would be "
                               "refused as our own"))
    if out.get("listen") and out.get("listen") == out.get("check_listen"):
        problems.append(at(path, line("check_listen"), "ha.check_listen must differ from ha.listen: the check "
                           "is only independent over another network"))
    if out.get("peer") and out.get("peer") == out.get("check_peer"):
        problems.append(at(path, line("check_peer"), "ha.check_peer must differ from ha.peer: the check "
                           "is only independent over another network"))
    if ("secret" in ha) == ("secret_file" in ha):
        problems.append(at(path, doc.line_of("ha"), "ha needs exactly one of secret and secret_file"))
    elif "secret" in ha:
        v = ha["secret"]
        if not isinstance(v, str) or len(v.encode()) < MIN_SECRET:
            problems.append(at(path, line("secret"), f"ha.secret must be a string of at least {MIN_SECRET} "
                               "bytes (the HMAC key; e.g. `openssl rand -hex 32`)"))
        else:
            out["secret"] = v
    else:
        v = ha["secret_file"]
        if not isinstance(v, str) or not v.strip():
            problems.append(at(path, line("secret_file"), f"ha.secret_file must be a file path, got {got(v)}"))
        else:
            out["secret_file"] = os.path.normpath(os.path.join(base, os.path.expanduser(v)))
    timing_problems = len(problems)
    for k, lo, hi in (("interval", 0.05, 10.0), ("dead_after", 0.1, 60.0), ("hold_down", 0.0, 3600.0)):
        if k in ha:
            v = ha[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                problems.append(at(path, line(k), f"ha.{k} must be a number of seconds from {lo} to {hi}, "
                                   f"got {got(v)}"))
            else:
                out[k] = float(v)
    d = Ha()
    interval, dead = out.get("interval", d.interval), out.get("dead_after", d.dead_after)
    if dead < 3 * interval and len(problems) == timing_problems:
        problems.append(at(path, line("dead_after"),
                           f"ha.dead_after ({dead:g}s) must be at least 3 x ha.interval ({interval:g}s): "
                           "one lost datagram must not look like a dead peer"))
    if "preempt" in ha:
        if isinstance(ha["preempt"], bool):
            out["preempt"] = ha["preempt"]
        else:
            problems.append(at(path, line("preempt"), f"ha.preempt must be true or false, got {got(ha['preempt'])}"))
    if "method" in ha and ha["method"] not in METHODS:
        problems.append(at(path, line("method"), f"ha.method must be one of {', '.join(METHODS)}, got "
                           f"{got(ha['method'])}"))
    if "route_tables" in ha:
        v = ha["route_tables"]
        if not isinstance(v, list) or not v:
            problems.append(at(path, line("route_tables"), "ha.route_tables must be a list of route table ids "
                               "(rtb-...)"))
        else:
            for i, t in enumerate(v):
                if not isinstance(t, str) or not RTB.fullmatch(t):
                    problems.append(at(path, v.line_of(i), f"ha.route_tables: {got(t)} is not a route table id "
                                       "(rtb-...)"))
                elif t in v[:i]:
                    problems.append(at(path, v.line_of(i), f"ha.route_tables: {t} is listed twice"))
            out["route_tables"] = tuple(v)
    for k in ("eni", "peer_eni", "floating_eni", "outside_eni", "peer_outside_eni"):
        if k in ha:
            if ha[k] == "auto" and k in ("eni", "peer_eni", "outside_eni"):
                out[k] = "auto"              # resolved at start (appliance/ha/discover.py)
            elif not isinstance(ha[k], str) or not ENI.fullmatch(ha[k]):
                also = " or auto" if k in ("eni", "peer_eni", "outside_eni") else ""
                problems.append(at(path, line(k), f"ha.{k} must be an ENI id (eni-...){also}, got {got(ha[k])}"))
            else:
                out[k] = ha[k]
    if out.get("eni") and out.get("eni") != "auto" and out.get("eni") == out.get("peer_eni"):
        problems.append(at(path, line("peer_eni"), "ha.peer_eni is the same ENI as ha.eni"))
    if ("outside_eni" in ha) != ("peer_outside_eni" in ha):
        k = "outside_eni" if "outside_eni" in ha else "peer_outside_eni"
        problems.append(at(path, line(k), "ha.outside_eni and ha.peer_outside_eni go together: the IGW edge "
                           "route table's routes move from the peer's outside ENI to ours"))
    if out.get("method") == "eip" and out.get("peer_eni") == "auto":
        problems.append(at(path, line("peer_eni"), "ha.peer_eni: auto finds the peer's inside ENI (method "
                           "routes); with method eip name the peer's outside ENI"))
    if "eip" in ha:
        if not isinstance(ha["eip"], str) or not EIPALLOC.fullmatch(ha["eip"]):
            problems.append(at(path, line("eip"), f"ha.eip must be an Elastic IP allocation id (eipalloc-...), "
                               f"got {got(ha['eip'])}"))
        else:
            out["eip"] = ha["eip"]
    if "floating_device_index" in ha:
        v = ha["floating_device_index"]
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 15:
            problems.append(at(path, line("floating_device_index"), "ha.floating_device_index must be a device "
                               f"index from 1 to 15 (0 is the primary ENI, which never moves), got {got(v)}"))
        else:
            out["floating_device_index"] = v
    if "readyz" in ha:
        v = ha["readyz"]
        if not isinstance(v, str) or not re.fullmatch(r"http://[^\s/]+(/\S*)?", v):
            problems.append(at(path, line("readyz"), f"ha.readyz must be an http:// URL, got {got(v)}"))
        else:
            out["readyz"] = v
    elif control is not None:
        host = f"[{control.host}]" if ":" in control.host else control.host
        out["readyz"] = f"http://{host}:{control.port}/readyz"
    else:
        problems.append(at(path, doc.line_of("ha"), "ha.readyz is required without a control: section (the "
                           "health this instance reports is its datapath's /readyz)"))
    if "status_file" in ha:
        v = ha["status_file"]
        if not isinstance(v, str) or not v.strip():
            problems.append(at(path, line("status_file"), f"ha.status_file must be a file path, got {got(v)}"))
        else:
            out["status_file"] = os.path.normpath(os.path.join(base, v))
    if "sync" in ha:
        sync = parse_sync(ha, path, problems, base, out.get("listen"), out.get("peer"))
        if sync is not None and sync.enabled:
            out["sync"] = sync
    if len(problems) > before:
        return None
    return replace(d, **out)


def parse_sync(ha, path, problems, base, listen, peer):
    """`ha.sync` -> Sync (None with its problems appended)."""
    from appliance.config import is_ifname, IFNAME_RULE
    doc = ha["sync"]
    if not isinstance(doc, yamlsource.LineDict):
        problems.append(at(path, ha.line_of("sync"), f"ha.sync must be a mapping of {', '.join(SYNC_KEYS)}"))
        return None
    before, line, out = len(problems), doc.line_of, {}
    for k in doc:
        if k not in SYNC_KEYS:
            problems.append(at(path, line(k), f"unknown key ha.sync.{k}{did_you_mean(k, SYNC_KEYS)}"))
    if "enabled" in doc:
        if isinstance(doc["enabled"], bool):
            out["enabled"] = doc["enabled"]
        else:
            problems.append(at(path, line("enabled"), f"ha.sync.enabled must be true or false, got {got(doc['enabled'])}"))
    host = lambda hp: hp.rsplit(":", 1)[0].strip("[]") if hp else ""      # noqa: E731
    for k, default in (("address", host(listen)), ("peer", host(peer))):
        v = doc.get(k, default)
        try:
            out[k] = str(ipaddress.ip_address(v))
        except (ValueError, TypeError):
            if k in doc:
                problems.append(at(path, line(k), f"ha.sync.{k} must be an IP address, got {got(v)}"))
    if out.get("address") and out.get("peer"):
        a, b = ipaddress.ip_address(out["address"]), ipaddress.ip_address(out["peer"])
        if a.version != b.version:
            problems.append(at(path, line("peer") or ha.line_of("sync"), "ha.sync.address and ha.sync.peer must "
                               "both be IPv4 or both IPv6 (conntrackd's UDP channel is one family)"))
        elif a == b:
            problems.append(at(path, line("peer") or ha.line_of("sync"), "ha.sync.peer is ha.sync.address"))
    if "port" in doc:
        v = doc["port"]
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 65535:
            problems.append(at(path, line("port"), f"ha.sync.port must be a port number 1-65535, got {got(v)}"))
        else:
            out["port"] = v
    if "interface" not in doc:
        problems.append(at(path, ha.line_of("sync"), "ha.sync.interface is required (the management "
                           "interface: conntrackd's UDP channel will not start without its name)"))
    elif not is_ifname(doc["interface"]):
        problems.append(at(path, line("interface"), f"ha.sync.interface must be an interface name "
                           f"({IFNAME_RULE}), got {got(doc['interface'])}"))
    else:
        out["interface"] = doc["interface"]
    for k in ("run_dir", "conntrackd"):
        if k in doc:
            v = doc[k]
            if not isinstance(v, str) or not v.strip() or any(c.isspace() for c in v):
                problems.append(at(path, line(k), f"ha.sync.{k} must be a path without spaces, got {got(v)}"))
            else:
                out[k] = os.path.normpath(os.path.join(base, v)) if k == "run_dir" or "/" in v else v
    if len(problems) > before:
        return None
    return Sync(**out)


def read_secret(ha: Ha) -> bytes:
    """The HMAC key; raises ValueError naming the file when secret_file cannot be used."""
    if ha.secret is not None:
        return ha.secret.encode()
    try:
        with open(ha.secret_file, "rb") as f:
            key = f.read().strip()
    except OSError as e:
        raise ValueError(f"{ha.secret_file}: cannot read the HA secret: {e.strerror}") from None
    if len(key) < MIN_SECRET:
        raise ValueError(f"{ha.secret_file}: the HA secret must be at least {MIN_SECRET} bytes")
    return key
