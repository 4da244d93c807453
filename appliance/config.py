"""appliance.yaml -> a typed, validated `Config`.

Every problem is reported at once as "FILE:LINE: message" (ConfigError.problems),
unknown keys come with a "did you mean" suggestion, and nothing here touches the
host: `auto` interfaces are resolved later by `resolve_interfaces()`, with the discovery
the caller hands in (this module imports nothing from appliance.aws).
"""
from dataclasses import dataclass, field, fields, replace
import difflib
import ipaddress
import os
import re

from appliance import yamlsource
from appliance.netfilter import new_flow_queues
from appliance.problems import at, did_you_mean, is_int
from appliance.output.eve import EVE_TYPES
from appliance.output.pcap_log import MODES as PCAP_LOG_MODES, PcapLogConfig

FAILURE_MODES = ("open", "closed")
# `mode`: enforce gives the rules' drop/reject verdicts; monitor passes those packets and
# marks their alerts (docs/operations.md: rolling out rules in monitor mode first)
MODES = ("enforce", "monitor")
# The two nfmark/connmark bits the offload verdicts live in (netfilter.offload_marks). Bits of
# another tool inside them would read as our verdicts, so the default stays clear of the known
# users: Calico 0xffff0000, Cilium 0xffff0f00, Tailscale 0x00ff0000, kube-router 0x30000,
# kube-proxy 0x4000 (masquerade) / 0x8000 (drop), AWS VPC CNI 0x80, Istio 0x539, wg-quick 0xca6c.
DEFAULT_MARK_MASK = 0x3000
KNOWN_MARK_USERS = {"Calico": 0xFFFF0000, "Cilium": 0xFFFF0F00, "Tailscale": 0x00FF0000, "kube-router": 0x30000,
                    "kube-proxy": 0xC000, "AWS VPC CNI": 0x80, "Istio": 0x539, "wg-quick": 0xCA6C}
# EVE on disk: at most (EVE_KEEP + 1) x EVE_MAX_BYTES per EVE path (output/eve.py rotates).
EVE_MAX_BYTES = 100 << 20
EVE_KEEP = 5
EVE_KEYS = ("path", "max_bytes", "keep", "types")
_SIZE = re.compile(r"(\d+)\s*([KMG]i?B?|B)?", re.IGNORECASE)
# One rule for interface names, `appliance run` and `appliance bootstrap` alike (aws/interfaces.py
# imports it). Linux (dev_valid_name, and `ip link`) takes 1-15 bytes (IFNAMSIZ is 16 with the
# NUL), not "." or "..", without "/", ":" or white space: ":" is refused because "eth0:1" is an
# address label on eth0 (the old alias syntax), not an interface. The names also go into
# iptables rules, where "+" is a wildcard and "!" a negation, so only the characters real names
# use are taken: a name here means exactly one interface everywhere.
IFNAME = re.compile(r"(?!\.\.?$)[A-Za-z0-9_.@-]{1,15}")
IFNAME_RULE = "1-15 characters of letters, digits, _ . @ -"


def is_ifname(value) -> bool:
    """True for a Linux interface name by the rule above."""
    return isinstance(value, str) and IFNAME.fullmatch(value) is not None


class ConfigError(Exception):
    """Every problem found; `.problems` holds "FILE:LINE: message" lines."""
    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Inspection:
    depth_packets: int | None = None  # packets within which content/packet conditions and alerts look
    depth_bytes: int | None = None    # (not names), and payload bytes; None: the rule set's defaults
                                      # (inspector.depth_of: 16 / 8 KiB for YAML, Suricata's with .rules)
    max_flows: int = 100_000     # flow table size per worker
    exception_policy: str = "drop"   # a name that cannot be known: drop | ignore (docs/rules.md)
    body_bytes: int = 100 * 1024     # file_data: decoded body bytes inspected per transaction
    body_ratio: int = 1000           # file_data: a coding inflating more than this is a bomb
    body_flow_bytes: int = 1 << 20   # file_data: decoded body bytes per flow (all its bodies)
    body_total_bytes: int = 64 << 20  # file_data: body bytes all flows hold at once (per worker)
    kernel_decisions: bool = False    # flows header-only rules decide are judged by nftables, never
                                      # queued (detect/kernel_policy.py; docs/performance.md)


@dataclass(frozen=True)
class Aws:
    """The `aws:` section: used by `appliance bootstrap` (appliance/aws/bootstrap.py)."""
    source_dest_check: str = "disable"   # disable | verify | ignore
    status_file: str = "/run/appliance/bootstrap.json"
    management_table: int = 100          # 253-255 are the kernel's (default, main, local)
    interface_wait_seconds: float = 30   # a hot-attached ENI may still be probing at boot
    config_source: str = "file"          # file | ssm: appliance.yaml and rules from SSM (aws/ssm.py)
    ssm_path: str | None = None          # the parameter path prefix, e.g. /appliance/prod
    ssm_dir: str = "/run/appliance/ssm"  # where the fetched copy lives (a symlink to the last good one)


@dataclass(frozen=True)
class Conntrack:
    """The `conntrack:` section, applied by `appliance bootstrap` (aws/conntrack.py). None: the
    figure from memory (max, buckets) or the kernel's own (the TCP timeouts but established)."""
    max: int | None = None
    buckets: int | None = None
    tcp_timeout_established: int | None = 7440
    tcp_timeout_syn_sent: int | None = None
    tcp_timeout_syn_recv: int | None = None
    tcp_timeout_fin_wait: int | None = None
    tcp_timeout_close_wait: int | None = None
    tcp_timeout_time_wait: int | None = None


@dataclass(frozen=True)
class Synproxy:
    """`overload.synproxy`: the kernel answers SYNs from outside to these inside ports with
    SYN cookies and opens the server connection only for a client that answered
    (netfilter.synproxy_rules; docs/performance.md "SYN proxy")."""
    ports: tuple                         # inside TCP ports it protects (at most 15: one multiport match)
    mss: int = 1460                      # the MSS offered to the client: the servers' own
    wscale: int = 7                      # the window scale offered to the client: the servers' own


@dataclass(frozen=True)
class Overload:
    """The `overload:` section: what the kernel drops before the queue so a flood from a few
    sources cannot fill it (netfilter.chains_text; docs/performance.md "Overload")."""
    new_flows_per_source: int | None     # new flows per second one source may open (IPv6: a /64 outside, an address inside)
    new_flows_burst: int | None          # ... and at once, before the rate applies
    synproxy: Synproxy | None = None     # None: SYNs are not proxied (a spoofed flood's SYNs reach the queue)
    established_first: bool = False      # new flows to a second range of queues, read after the first (established)


@dataclass(frozen=True)
class Cloudwatch:
    """`control.cloudwatch`: publish the /metrics figures to CloudWatch (control/cloudwatch.py)."""
    namespace: str = "Appliance"
    interval: int = 60                   # seconds; below 60 the metrics are high-resolution


@dataclass(frozen=True)
class Control:
    """The `control:` section: the control-plane HTTP server (appliance/control/, docs/operations.md)."""
    host: str = "127.0.0.1"
    port: int = 9900
    allow_any_address: bool = False      # listen on an address that is not loopback/management
    top: int = 20                        # sids in /metrics (bounded label cardinality), talkers/rules in /status
    cloudwatch: Cloudwatch | None = None # None: not published to CloudWatch


@dataclass(frozen=True)
class Config:
    outside: str                 # interface name or "auto"
    inside: str
    management: str | None = None
    rules: str = "/etc/appliance/rules"          # absolute file or directory
    eve: str | None = "/var/log/appliance/eve.json"
    eve_max_bytes: int = EVE_MAX_BYTES           # the EVE file is rotated past this size ...
    eve_keep: int = EVE_KEEP                     # ... keeping this many old files (PATH.1 .. PATH.<keep>)
    eve_types: tuple = EVE_TYPES                 # the event types written (Suricata's eve-log.types)
    home_net: tuple | None = None # None: the rule files' HOME_NET (or the loader's default, ULA included)
    workers: int = 2
    queue_base: int = 0
    failure_mode: str = "open"
    offload: bool = True
    rules_skip_unsupported: bool = False         # .rules lines with unsupported keywords: skip, not fail
    mark_mask: int = DEFAULT_MARK_MASK
    mode: str = "enforce"                        # enforce | monitor (every rule file)
    rules_mode: tuple = ()                       # ((glob, mode, (file, line)), ...): rule files' mode by name
    inspection: Inspection = field(default_factory=Inspection)
    aws: Aws = field(default_factory=Aws)
    control: Control | None = None               # None: no control server (the key is absent or null)
    pcap_log: PcapLogConfig | None = None        # None: no pcap log (output/pcap_log.py)
    conntrack: Conntrack = field(default_factory=Conntrack)
    ha: object = None                            # ha.settings.Ha; None: no `ha:` section (docs/ha.md)
    gwlb: object = None                          # fleet.settings.Gwlb; None: inline (NFQUEUE), docs/gwlb.md
    overload: Overload | None = None             # None: no per-source limit (every new flow is queued)
    path: str = ""               # the file it was read from
    # Whether the file has interfaces.management at all: missing, `appliance run` has no
    # management interface and `appliance bootstrap` takes it as auto (a third ENI, if any).
    management_set: bool = False

    @property
    def queues(self) -> range:
        return range(self.queue_base, self.queue_base + self.workers)

    @property
    def bound_queues(self) -> range:
        """Every queue the workers bind: `queues`, and with overload.established_first the
        new flows' range right after it (netfilter.new_flow_queues)."""
        if self.overload is not None and self.overload.established_first:
            return range(self.queue_base, new_flow_queues(self.queues).stop)
        return self.queues

    @property
    def fail_open(self) -> bool:
        return self.failure_mode == "open"


TOP_KEYS = ("interfaces", "rules", "eve", "home_net", "workers", "queue_base",
            "failure_mode", "offload", "rules_skip_unsupported", "mark_mask", "inspection", "aws", "control",
            "mode", "rules_mode", "pcap_log", "conntrack", "ha", "gwlb", "overload")
# Interface values resolved through EC2 discovery rather than used as names.
DISCOVERED = re.compile(r"^(auto|eni-[0-9a-f]+|subnet-[0-9a-f]+)$")
IFACE_KEYS = ("outside", "inside", "management")
INSPECTION_KEYS = ("depth_packets", "depth_bytes", "max_flows", "exception_policy",
                   "body_bytes", "body_ratio", "body_flow_bytes", "body_total_bytes", "kernel_decisions")
EXCEPTION_POLICIES = ("drop", "ignore")
AWS_KEYS = tuple(f.name for f in fields(Aws))
SOURCE_DEST_CHECK_MODES = ("disable", "verify", "ignore")
CONFIG_SOURCES = ("file", "ssm")
# SSM parameter names: "/" separated, letters, digits and _.- (AWS allows these and a few more)
SSM_PATH = re.compile(r"/[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*/?")


def _body_limits(insp, d, path, problems):
    """inspection.body_*: the file_data limits (docs/rules.md, "HTTP bodies")."""
    return {"body_bytes": _int(insp, "body_bytes", 1, 64 << 20, d.body_bytes, path, problems, "inspection."),
            "body_ratio": _int(insp, "body_ratio", 2, 1_000_000, d.body_ratio, path, problems, "inspection."),
            "body_flow_bytes": _int(insp, "body_flow_bytes", 1, 1 << 30, d.body_flow_bytes, path, problems,
                                    "inspection."),
            "body_total_bytes": _int(insp, "body_total_bytes", 1, 1 << 40, d.body_total_bytes, path, problems,
                                     "inspection.")}


def _unknown(where, doc, allowed, path, problems):
    for key in doc:
        if key not in allowed:
            extra = did_you_mean(key, allowed, fold_case=False) or f" (known: {', '.join(allowed)})"
            problems.append(at(path, doc.line_of(key), f"unknown key {where}{key!r}{extra}"))


def _int(doc, key, lo, hi, default, path, problems, where=""):
    if key not in doc:
        return default
    v = doc[key]
    if not is_int(v) or not lo <= v <= hi:
        problems.append(at(path, doc.line_of(key), f"{where}{key} must be an integer from {lo} to {hi}, got {v!r}"))
        return default
    return v


def load_config(path) -> Config:
    """Parse and validate appliance.yaml; raises ConfigError with every problem found."""
    path = str(path)
    try:
        doc = yamlsource.load(path)
    except yamlsource.YamlError as e:
        raise ConfigError([str(e)]) from None
    if doc is None:
        doc = yamlsource.LineDict()
        doc.line = 1
    if not isinstance(doc, yamlsource.LineDict):
        raise ConfigError([f"{path}:1: expected a mapping of settings at the top level"])
    problems = []
    _unknown("", doc, TOP_KEYS, path, problems)
    base = os.path.dirname(os.path.abspath(path))
    out = {}

    fleet = doc.get("gwlb") is not None          # fleet mode: one data interface, no outside/inside
    ifaces = doc.get("interfaces")
    if fleet and ifaces is None:
        ifaces = yamlsource.LineDict()
    if not isinstance(ifaces, yamlsource.LineDict):
        problems.append(f"{path}:{doc.line_of('interfaces')}: interfaces must be a mapping with "
                        "outside and inside (interface names or auto)")
        ifaces = yamlsource.LineDict()
    _unknown("interfaces.", ifaces, IFACE_KEYS, path, problems)
    out["management_set"] = "management" in ifaces
    for role in IFACE_KEYS:
        v = ifaces.get(role)
        if v is None:
            if role != "management" and not fleet:
                what = "cannot be null" if role in ifaces else "is required"
                problems.append(f"{path}:{ifaces.line_of(role) or doc.line_of('interfaces') or 1}: interfaces.{role} {what} "
                                "(an interface name or auto)")
            out[role] = None
        elif isinstance(v, str) and DISCOVERED.match(v):
            out[role] = v
        elif not is_ifname(v):
            problems.append(f"{path}:{ifaces.line_of(role)}: interfaces.{role}: {v!r} is not an "
                            f"interface name ({IFNAME_RULE}) or auto")
        else:
            out[role] = v
    named = [(r, out.get(r)) for r in IFACE_KEYS if out.get(r) is not None and not DISCOVERED.match(out[r])]
    for i, (r1, n1) in enumerate(named):
        for r2, n2 in named[i + 1:]:
            if n1 == n2:
                problems.append(f"{path}:{ifaces.line_of(r2)}: interfaces.{r2} is the same interface "
                                f"as interfaces.{r1} ({n1})")

    for key in ("rules", "eve"):
        if key not in doc:
            continue
        v = doc[key]
        if key == "eve" and isinstance(v, yamlsource.LineDict):
            v = _eve(v, path, problems, out)
            if v is _BAD:
                continue
        if v is None and key == "eve":
            out["eve"] = None
        elif not isinstance(v, str) or not v.strip():
            problems.append(f"{path}:{doc.line_of(key)}: {key} must be a path, got {v!r}")
        else:
            out[key] = os.path.normpath(os.path.join(base, os.path.expanduser(v)))

    if "home_net" in doc:
        v = doc["home_net"]
        items = [v] if isinstance(v, str) else v
        if not isinstance(items, list) or not items:
            problems.append(f"{path}:{doc.line_of('home_net')}: home_net must be a CIDR or a list of CIDRs")
        else:
            nets = []
            for i, item in enumerate(items):
                line = items.line_of(i) if isinstance(items, yamlsource.LineList) else doc.line_of("home_net")
                try:
                    nets.append(str(ipaddress.ip_network(str(item), strict=False)))
                except ValueError:
                    problems.append(f"{path}:{line}: home_net: {item!r} is not an IPv4/IPv6 address or CIDR")
            out["home_net"] = tuple(nets)

    out["workers"] = _int(doc, "workers", 1, 64, 2, path, problems)
    out["queue_base"] = _int(doc, "queue_base", 0, 65535 - out["workers"] + 1, 0, path, problems)
    if "failure_mode" in doc:
        v = doc["failure_mode"]
        if v not in FAILURE_MODES:
            hint = difflib.get_close_matches(str(v), FAILURE_MODES, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            problems.append(f"{path}:{doc.line_of('failure_mode')}: failure_mode must be open or closed, "
                            f"got {v!r}{extra}")
        else:
            out["failure_mode"] = v
    if "offload" in doc:
        if not isinstance(doc["offload"], bool):
            problems.append(f"{path}:{doc.line_of('offload')}: offload must be true or false, got {doc['offload']!r}")
        else:
            out["offload"] = doc["offload"]
    if "rules_skip_unsupported" in doc:
        v = doc["rules_skip_unsupported"]
        if not isinstance(v, bool):
            problems.append(f"{path}:{doc.line_of('rules_skip_unsupported')}: rules_skip_unsupported must be "
                            f"true or false, got {v!r}")
        else:
            out["rules_skip_unsupported"] = v

    if "mark_mask" in doc:
        v = doc["mark_mask"]
        if not is_int(v) or not 0 < v <= 0xFFFFFFFF or bin(v).count("1") != 2:
            problems.append(f"{path}:{doc.line_of('mark_mask')}: mark_mask must be a 32-bit mask with exactly two "
                            f"bits set (pass, drop, reject), e.g. 0x{DEFAULT_MARK_MASK:x}, got {v!r}")
        else:
            out["mark_mask"] = v

    _modes(doc, path, problems, out)

    if "inspection" in doc:
        insp = doc["inspection"]
        if not isinstance(insp, yamlsource.LineDict):
            problems.append(f"{path}:{doc.line_of('inspection')}: inspection must be a mapping of "
                            f"{', '.join(INSPECTION_KEYS)}")
        else:
            _unknown("inspection.", insp, INSPECTION_KEYS, path, problems)
            d = Inspection()
            policy = insp.get("exception_policy", d.exception_policy)
            if policy not in EXCEPTION_POLICIES:
                problems.append(f"{path}:{insp.line_of('exception_policy')}: inspection.exception_policy: "
                                f"{policy!r} is not one of {', '.join(EXCEPTION_POLICIES)}")
                policy = d.exception_policy
            kernel = insp.get("kernel_decisions", d.kernel_decisions)
            if not isinstance(kernel, bool):
                problems.append(f"{path}:{insp.line_of('kernel_decisions')}: inspection.kernel_decisions must be "
                                f"true or false, got {kernel!r}")
                kernel = d.kernel_decisions
            out["inspection"] = Inspection(
                kernel_decisions=kernel,
                exception_policy=policy,
                depth_packets=_int(insp, "depth_packets", 1, 1_000_000, d.depth_packets, path, problems, "inspection."),
                depth_bytes=_int(insp, "depth_bytes", 1, 1 << 30, d.depth_bytes, path, problems, "inspection."),
                max_flows=_int(insp, "max_flows", 1, 100_000_000, d.max_flows, path, problems, "inspection."),
                **_body_limits(insp, d, path, problems))

    if doc.get("aws") is not None:
        out["aws"] = _aws(doc, path, problems)
    if doc.get("control") is not None:
        out["control"] = _control(doc, path, problems)
    if doc.get("pcap_log") is not None:
        pl = _pcap_log(doc, path, problems, base)
        if pl is not None:
            out["pcap_log"] = pl
    if doc.get("conntrack") is not None:
        out["conntrack"] = _conntrack(doc, path, problems)
    if doc.get("overload") is not None:
        first_range = range(out["queue_base"] or 0, (out["queue_base"] or 0) + (out["workers"] or 2))
        out["overload"] = _overload(doc, path, problems, first_range)
    if doc.get("ha") is not None:
        from appliance.ha.settings import parse_ha
        ha = parse_ha(doc, path, problems, out.get("control"), base)
        if ha is not None:
            out["ha"] = ha

    if fleet:
        from appliance.fleet.settings import fleet_conflicts, parse_gwlb
        fleet_conflicts(doc, path, problems)
        gwlb = parse_gwlb(doc, path, problems)
        if gwlb is not None:
            out["gwlb"] = gwlb

    if problems:
        raise ConfigError(problems)
    return Config(path=os.path.abspath(path), **out)


def _modes(doc, path, problems, out):
    """`mode: enforce|monitor` and `rules_mode: {GLOB: monitor, ...}`. A glob without "/" is
    matched against a rule file's name, one with "/" against its path (relative globs from
    the config's directory): .rules files have no key of their own to say it."""
    if "mode" in doc:
        v = doc["mode"]
        if v not in MODES:
            hint = difflib.get_close_matches(str(v), MODES, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            problems.append(at(path, doc.line_of("mode"), f"mode must be enforce or monitor, got {v!r}{extra}"))
        else:
            out["mode"] = v
    if doc.get("rules_mode") is None:
        return
    rm = doc["rules_mode"]
    if not isinstance(rm, yamlsource.LineDict):
        problems.append(at(path, doc.line_of("rules_mode"), "rules_mode must be a mapping of a rule file glob "
                           f"to enforce or monitor (e.g. \"et-*.rules\": monitor), got {rm!r}"))
        return
    base = os.path.dirname(os.path.abspath(path))
    pairs = []
    for glob, v in rm.items():
        if not isinstance(glob, str) or not glob.strip():
            problems.append(at(path, rm.line_of(glob), f"rules_mode: {glob!r} is not a file name glob"))
        elif v not in MODES:
            problems.append(at(path, rm.line_of(glob), f"rules_mode: {glob}: mode must be enforce or monitor, "
                               f"got {v!r}"))
        else:
            pairs.append((os.path.normpath(os.path.join(base, glob)) if "/" in glob else glob, v,
                          (path, rm.line_of(glob))))
    out["rules_mode"] = tuple(pairs)


def mark_mask_clashes(mask: int) -> list:
    """Known tools whose mark bits `mask` shares ("Calico (0xffff0000)"): not an error (the
    host may not run them), a warning at start; their marks would read as offload verdicts."""
    return [f"{name} (0x{m:x})" for name, m in KNOWN_MARK_USERS.items() if mask & m]
_BAD = object()


def _size(v):
    """Bytes from an integer or "100M" / "64KiB" / "1G"; None if it is neither."""
    if is_int(v):
        return v
    m = _SIZE.fullmatch(v.strip()) if isinstance(v, str) else None
    if not m:
        return None
    unit = (m.group(2) or "B")[0].upper()
    return int(m.group(1)) << {"B": 0, "K": 10, "M": 20, "G": 30}[unit]


def _eve_types(v, path, line, problems):
    """`eve.types`: a list of event types from EVE_TYPES (Suricata's eve-log.types); None if bad."""
    if not isinstance(v, list) or not all(isinstance(t, str) for t in v):
        problems.append(at(path, line, f"eve.types must be a list of event types ({', '.join(EVE_TYPES)}), "
                                       f"got {v!r}"))
        return None
    bad = False
    for i, t in enumerate(v):
        if t not in EVE_TYPES:
            where = v.line_of(i) if isinstance(v, yamlsource.LineList) else line
            problems.append(at(path, where, f"eve.types: unknown event type {t!r} "
                                            f"(known: {', '.join(EVE_TYPES)})"))
            bad = True
    return None if bad else tuple(dict.fromkeys(v))


def _eve(eve, path, problems, out):
    """`eve: {path: FILE, max_bytes: SIZE, keep: N}`: fills out's rotation keys and returns
    the path (None for `path: null`), or _BAD."""
    _unknown("eve.", eve, EVE_KEYS, path, problems)
    if "max_bytes" in eve:
        n = _size(eve["max_bytes"])
        if n is None or not 4096 <= n <= 1 << 40:
            problems.append(at(path, eve.line_of("max_bytes"), "eve.max_bytes must be a size from 4096 bytes to "
                               f"1 TiB (an integer, or like 100M / 1G), got {eve['max_bytes']!r}"))
        else:
            out["eve_max_bytes"] = n
    out["eve_keep"] = _int(eve, "keep", 1, 1000, EVE_KEEP, path, problems, "eve.")
    if "types" in eve:
        types = _eve_types(eve["types"], path, eve.line_of("types"), problems)
        if types is not None:
            out["eve_types"] = types
    if "path" not in eve:
        problems.append(at(path, eve.line, "eve.path is required (the EVE JSON file, or null for none)"))
        return _BAD
    v = eve["path"]
    if v is None:
        out["eve"] = None
        return _BAD
    if not isinstance(v, str) or not v.strip():
        problems.append(at(path, eve.line_of("path"), f"eve.path must be a path, got {v!r}"))
        return _BAD
    return v


def _aws(doc, path, problems) -> Aws:
    """The `aws:` section (null or missing: the defaults)."""
    aws, d = doc["aws"], Aws()
    if not isinstance(aws, yamlsource.LineDict):
        problems.append(f"{path}:{doc.line_of('aws')}: aws must be a mapping of {', '.join(AWS_KEYS)}")
        return d
    _unknown("aws.", aws, AWS_KEYS, path, problems)
    out = {}
    if "source_dest_check" in aws:
        v = aws["source_dest_check"]
        if v in SOURCE_DEST_CHECK_MODES:
            out["source_dest_check"] = v
        else:
            hint = difflib.get_close_matches(str(v), SOURCE_DEST_CHECK_MODES, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            problems.append(f"{path}:{aws.line_of('source_dest_check')}: aws.source_dest_check: {v!r} is not "
                            f"one of {', '.join(SOURCE_DEST_CHECK_MODES)}{extra}")
    if "status_file" in aws:
        v = aws["status_file"]
        if isinstance(v, str) and v.strip():
            out["status_file"] = v
        else:
            problems.append(f"{path}:{aws.line_of('status_file')}: aws.status_file must be a file path, got {v!r}")
    # 253-255 are the kernel's own tables (default, main, local)
    out["management_table"] = _int(aws, "management_table", 1, 252, d.management_table, path, problems, "aws.")
    if "interface_wait_seconds" in aws:
        v = aws["interface_wait_seconds"]
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0:
            out["interface_wait_seconds"] = v
        else:
            problems.append(f"{path}:{aws.line_of('interface_wait_seconds')}: aws.interface_wait_seconds must be "
                            f"a number of seconds >= 0, got {v!r}")
    _config_source(aws, path, problems, out)
    return replace(d, **out)


PCAP_LOG_KEYS = tuple(f.name for f in fields(PcapLogConfig))


def _pcap_log(doc, path, problems, base):
    """`pcap_log: {dir: DIR, mode: alerts|all, max_bytes: SIZE, keep: N, snaplen: N,
    ring_packets: N, ring_bytes: SIZE}` (null or missing: no pcap log); None when bad."""
    pl = doc["pcap_log"]
    if not isinstance(pl, yamlsource.LineDict):
        problems.append(at(path, doc.line_of("pcap_log"), f"pcap_log must be a mapping of {', '.join(PCAP_LOG_KEYS)}"))
        return None
    _unknown("pcap_log.", pl, PCAP_LOG_KEYS, path, problems)
    before = len(problems)
    out = {}
    v = pl.get("dir")
    if "dir" not in pl:
        problems.append(at(path, doc.line_of("pcap_log"), "pcap_log.dir is required (the directory of the "
                           "pcapng files)"))
    elif not isinstance(v, str) or not v.strip():
        problems.append(at(path, pl.line_of("dir"), f"pcap_log.dir must be a directory path, got {v!r}"))
    else:
        out["dir"] = os.path.normpath(os.path.join(base, os.path.expanduser(v)))
    if "mode" in pl:
        if pl["mode"] in PCAP_LOG_MODES:
            out["mode"] = pl["mode"]
        else:
            problems.append(at(path, pl.line_of("mode"), f"pcap_log.mode must be one of "
                               f"{', '.join(PCAP_LOG_MODES)}, got {pl['mode']!r}"))
    for key, lo, hi in (("max_bytes", 64 << 10, 1 << 40), ("ring_bytes", 0, 1 << 30)):
        if key in pl:
            n = _size(pl[key])
            if n is None or not lo <= n <= hi:
                problems.append(at(path, pl.line_of(key), f"pcap_log.{key} must be a size from {lo} bytes to "
                                   f"{hi >> 30} GiB (an integer, or like 100M / 1G), got {pl[key]!r}"))
            else:
                out[key] = n
    for key, lo, hi in (("keep", 1, 1000), ("snaplen", 64, 262144), ("ring_packets", 1, 1024)):
        if key in pl:
            out[key] = _int(pl, key, lo, hi, None, path, problems, "pcap_log.")
    if len(problems) > before:
        return None
    return PcapLogConfig(**out)


def _config_source(aws, path, problems, out):
    """aws.config_source / ssm_path / ssm_dir (appliance/aws/ssm.py)."""
    if "config_source" in aws:
        v = aws["config_source"]
        if v in CONFIG_SOURCES:
            out["config_source"] = v
        else:
            problems.append(at(path, aws.line_of("config_source"), f"aws.config_source: {v!r} is not one of "
                               f"{', '.join(CONFIG_SOURCES)}"))
    if "ssm_path" in aws:
        v = aws["ssm_path"]
        if isinstance(v, str) and SSM_PATH.fullmatch(v):
            out["ssm_path"] = v.rstrip("/")
        else:
            problems.append(at(path, aws.line_of("ssm_path"), "aws.ssm_path must be an SSM parameter path "
                               f"like /appliance/prod, got {v!r}"))
    if "ssm_dir" in aws:
        v = aws["ssm_dir"]
        if isinstance(v, str) and os.path.isabs(v) and v.rstrip("/") != "":
            out["ssm_dir"] = os.path.normpath(v)
        else:
            problems.append(at(path, aws.line_of("ssm_dir"), f"aws.ssm_dir must be an absolute path, got {v!r}"))
    if out.get("config_source") == "ssm" and "ssm_path" not in out and "ssm_path" not in aws:
        problems.append(at(path, aws.line_of("config_source"), "aws.config_source: ssm needs aws.ssm_path "
                           "(the parameter path, e.g. /appliance/prod)"))


CONNTRACK_KEYS = tuple(f.name for f in fields(Conntrack))


def _conntrack(doc, path, problems) -> Conntrack:
    """`conntrack: {max: auto|N, buckets: auto|N, tcp_timeout_<state>: SECONDS}`."""
    ct, d = doc["conntrack"], Conntrack()
    if not isinstance(ct, yamlsource.LineDict):
        problems.append(at(path, doc.line_of("conntrack"), f"conntrack must be a mapping of {', '.join(CONNTRACK_KEYS)}"))
        return d
    _unknown("conntrack.", ct, CONNTRACK_KEYS, path, problems)
    out = {}
    for key in ("max", "buckets"):
        if ct.get(key, "auto") == "auto":
            continue
        # the kernel's own bounds: below 1024 a busy hop drops at once; 2^26 entries is ~32 GiB
        out[key] = _int(ct, key, 1024, 1 << 26, None, path, problems, "conntrack.")
        if out[key] is None:
            problems[-1] += " (or auto)"
    for key in CONNTRACK_KEYS[2:]:
        out[key] = _int(ct, key, 1, 30 * 86400, getattr(d, key), path, problems, "conntrack.")
    return replace(d, **out)


OVERLOAD_KEYS = ("new_flows_per_source", "new_flows_burst", "synproxy", "established_first")
SYNPROXY_KEYS = ("ports", "mss", "wscale")
SYNPROXY_MAX_PORTS = 15                  # iptables' multiport match takes 15


def _overload(doc, path, problems, queues):
    """`overload: {new_flows_per_source: N, new_flows_burst: N, synproxy: {...},
    established_first: BOOL}` (burst: N by default); any of the per-source limit, the SYN
    proxy and established_first. `queues`: the workers' range (Config.queues)."""
    ov = doc["overload"]
    if not isinstance(ov, yamlsource.LineDict) or not any(k in ov for k in ("new_flows_per_source", "synproxy",
                                                                           "established_first")):
        problems.append(at(path, doc.line_of("overload"), "overload must be a mapping with new_flows_per_source "
                           "(new flows per second per source address, optionally new_flows_burst), "
                           "synproxy and/or established_first"))
        return None
    _unknown("overload.", ov, OVERLOAD_KEYS, path, problems)
    if "new_flows_burst" in ov and "new_flows_per_source" not in ov:
        problems.append(at(path, ov.line_of("new_flows_burst"), "overload.new_flows_burst needs new_flows_per_source"))
    # the kernel's hashlimit takes up to 1,000,000/s; a burst beyond that is no limit at all
    rate = _int(ov, "new_flows_per_source", 1, 1_000_000, None, path, problems, "overload.")
    burst = _int(ov, "new_flows_burst", 1, 1_000_000, rate, path, problems, "overload.")
    proxy = _synproxy(ov, path, problems) if "synproxy" in ov else None
    first = _established_first(ov, path, problems, queues)
    if (rate is None or burst is None) and proxy is None and not first:
        return None
    return Overload(rate, burst, proxy, first)


def _established_first(ov, path, problems, queues):
    """`overload.established_first: true`: a flow's first packets go to a second range of
    queues right after `queues`, as many (netfilter.new_flow_queues); it must fit in 65535."""
    if "established_first" not in ov:
        return False
    v = ov["established_first"]
    if not isinstance(v, bool):
        problems.append(at(path, ov.line_of("established_first"),
                           f"overload.established_first must be true or false, got {v!r}"))
        return False
    last = new_flow_queues(queues)[-1]
    if v and last > 65535:
        problems.append(at(path, ov.line_of("established_first"),
                           f"overload.established_first needs queues up to {last} (a second range of "
                           f"{len(queues)} after the workers' own): queue_base {65535 - 2 * len(queues) + 1} at most"))
        return False
    return v


def _synproxy(ov, path, problems):
    """`overload.synproxy: {ports: [80, 443], mss: 1460, wscale: 7}`."""
    sp = ov["synproxy"]
    if not isinstance(sp, yamlsource.LineDict) or "ports" not in sp:
        problems.append(at(path, ov.line_of("synproxy"), "overload.synproxy must be a mapping with ports "
                           "(the inside TCP ports whose SYNs from outside the kernel answers with cookies)"))
        return None
    _unknown("overload.synproxy.", sp, SYNPROXY_KEYS, path, problems)
    ports = sp["ports"]
    line = sp.line_of("ports")
    if (not isinstance(ports, list) or not 1 <= len(ports) <= SYNPROXY_MAX_PORTS
            or not all(is_int(p) and 1 <= p <= 65535 for p in ports)):
        problems.append(at(path, line, f"overload.synproxy.ports must be a list of 1 to {SYNPROXY_MAX_PORTS} "
                           f"TCP ports (1-65535), got {ports!r}"))
        return None
    # the cookie carries one of four MSS values (536, 1300, 1440, 1460) whatever is offered;
    # the offer itself is what the client sizes its segments by until the server's ACKs
    mss = _int(sp, "mss", 536, 65495, 1460, path, problems, "overload.synproxy.")
    wscale = _int(sp, "wscale", 0, 14, 7, path, problems, "overload.synproxy.")
    return Synproxy(tuple(sorted(set(ports))), mss, wscale)


CONTROL_KEYS = ("listen", "allow_any_address", "top", "cloudwatch")
CLOUDWATCH_KEYS = ("namespace", "interval")
# CloudWatch namespaces: 1-255 of these characters, not starting with ':' nor "AWS/" (AWS's own)
CW_NAMESPACE = re.compile(r"(?!AWS/)[A-Za-z0-9.\-_/#:]{1,255}")


def _cloudwatch(ctl, path, problems):
    cw, d = ctl["cloudwatch"], Cloudwatch()
    if cw is True:
        return d
    if not isinstance(cw, yamlsource.LineDict):
        problems.append(at(path, ctl.line_of("cloudwatch"), "control.cloudwatch must be true or a mapping of "
                           f"{', '.join(CLOUDWATCH_KEYS)}, got {cw!r}"))
        return None
    _unknown("control.cloudwatch.", cw, CLOUDWATCH_KEYS, path, problems)
    out = {"interval": _int(cw, "interval", 1, 3600, d.interval, path, problems, "control.cloudwatch.")}
    if "namespace" in cw:
        v = cw["namespace"]
        if isinstance(v, str) and CW_NAMESPACE.fullmatch(v) and not v.startswith(":"):
            out["namespace"] = v
        else:
            problems.append(at(path, cw.line_of("namespace"), "control.cloudwatch.namespace must be 1-255 of "
                               f"letters, digits and . - _ / # :, not starting with AWS/, got {v!r}"))
    return replace(d, **out)


def _control(doc, path, problems) -> Control:
    """`control: {listen: ADDRESS:PORT, allow_any_address: false, top: 20}`. The address is an
    IP literal; the wildcard (0.0.0.0, ::) is refused unless allow_any_address says so, because
    it would serve /metrics and /status on the data interfaces too. Whether a non-loopback
    address belongs to the management interface is checked at start (control.server.check_bind)."""
    ctl, d = doc["control"], Control()
    if not isinstance(ctl, yamlsource.LineDict):
        problems.append(at(path, doc.line_of("control"), f"control must be a mapping of {', '.join(CONTROL_KEYS)}"))
        return d
    _unknown("control.", ctl, CONTROL_KEYS, path, problems)
    out = {}
    if "allow_any_address" in ctl:
        if isinstance(ctl["allow_any_address"], bool):
            out["allow_any_address"] = ctl["allow_any_address"]
        else:
            problems.append(at(path, ctl.line_of("allow_any_address"), "control.allow_any_address must be true "
                               f"or false, got {ctl['allow_any_address']!r}"))
    out["top"] = _int(ctl, "top", 1, 1000, d.top, path, problems, "control.")
    if ctl.get("cloudwatch") not in (None, False):
        out["cloudwatch"] = _cloudwatch(ctl, path, problems)
    if "listen" in ctl:
        hp = parse_listen(ctl["listen"])
        line = ctl.line_of("listen")
        if hp is None:
            problems.append(at(path, line, "control.listen must be ADDRESS:PORT with an IP address "
                               f"(127.0.0.1:9900, [::1]:9900, the management address), got {ctl['listen']!r}"))
        else:
            out["host"], out["port"] = hp
            if ipaddress.ip_address(hp[0]).is_unspecified and not out.get("allow_any_address"):
                problems.append(at(path, line, f"control.listen: {hp[0]} listens on every interface, the data "
                                   "interfaces included; use 127.0.0.1 or the management interface's address "
                                   "(or set control.allow_any_address: true on purpose)"))
    return replace(d, **out)


def parse_listen(v):
    """"ADDR:PORT" / "[V6]:PORT" -> (addr, port), or None when it is not that."""
    if not isinstance(v, str):
        return None
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d{1,5})|([0-9.]+):(\d{1,5})", v.strip())
    if not m:
        return None
    host, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        return None
    port = int(port)
    return (host, port) if 1 <= port <= 65535 else None


def aws_status_file(path) -> str:
    """aws.status_file as far as the file can be read, valid or not: where `appliance
    bootstrap` records that load_config refused the file."""
    try:
        aws = (yamlsource.load(path) or {}).get("aws")
        v = aws.get("status_file") if isinstance(aws, dict) else None
    except Exception:           # any config error: load_config reports it, this only finds the file
        v = None
    return v if isinstance(v, str) and v.strip() else Aws().status_file


def resolve_interfaces(cfg: Config, discover=None) -> Config:
    """Replace `auto` / `eni-...` / `subnet-...` interfaces by the names `discover(cfg)`
    returns (role -> interface name). The caller passes the discovery in (on EC2:
    appliance.aws.bootstrap.discover_roles), so reading the config needs nothing from AWS.

    Raises ConfigError when there is no discovery, it fails, or it does not name a role.
    """
    wanted = [r for r in IFACE_KEYS if getattr(cfg, r) is not None and DISCOVERED.match(getattr(cfg, r))]
    if not wanted:
        return cfg
    if discover is None:
        raise ConfigError([f"{cfg.path}:1: interfaces.{r}: {getattr(cfg, r)} needs ENI discovery, "
                           "which this command does not do" for r in wanted])
    try:
        roles = discover(cfg)
    except Exception as e:     # discovery reports "step: message"; keep it whole
        raise ConfigError([f"{cfg.path}:1: interfaces: auto: discovery failed: {e}"]) from None
    found, problems = {}, []
    for role in wanted:
        name = roles.get(role)
        if not name and role == "management" and cfg.management == "auto":
            found[role] = None             # auto: the management ENI is optional (a 2-ENI instance)
            continue
        if not name:
            problems.append(f"{cfg.path}:1: interfaces.{role}: auto: discovery found no {role} interface "
                            f"(found: {', '.join(f'{k}={v}' for k, v in roles.items()) or 'none'})")
        found[role] = name
    if problems:
        raise ConfigError(problems)
    return replace(cfg, **found)


# What SIGHUP may change in a running appliance, and what needs a restart (the kernel
# ruleset, the queues and the worker processes are built from these).
RELOADABLE = ("rules", "eve", "eve_max_bytes", "eve_keep", "eve_types", "home_net", "offload", "inspection",
              "rules_skip_unsupported", "mode", "rules_mode", "pcap_log")
RESTART_ONLY = ("outside", "inside", "management", "workers", "queue_base", "failure_mode", "mark_mask", "control",
                "gwlb", "overload")


def reload_config(running: Config, raw_running: Config) -> tuple[Config, list]:
    """Re-read the running config's file for SIGHUP. Returns the config to run with (the
    reloadable keys from the file, the rest as running) and the restart-only keys the
    file changed, which are kept as they are. Raises ConfigError for a bad file.
    `raw_running` is the config as read at start, before `auto` interfaces were resolved."""
    new = load_config(running.path)
    changed = [k for k in RESTART_ONLY if getattr(new, k) != getattr(raw_running, k)]
    if new.inspection.max_flows != running.inspection.max_flows:   # the flow tables are built once
        changed.append("inspection.max_flows")
        new = replace(new, inspection=replace(new.inspection, max_flows=running.inspection.max_flows))
    return replace(running, **{k: getattr(new, k) for k in RELOADABLE}), changed

