"""An AWS Network Firewall stateful rule group (the JSON of `aws network-firewall
describe-rule-group`, or its bare RuleGroup) -> Suricata rule text for convert.py.

Network Firewall itself turns each stateful rule group into Suricata rules (AWS Network
Firewall Developer Guide, "Options for stateful rules"): a domain list into pass/drop/
reject/alert rules on tls.sni and http.host, a 5-tuple StatefulRule into one rule line,
and RulesString is already Suricata. We do the same and hand the text to the Suricata
reader, so one mapping decides what a rule means here and what is not expressible.
Problems are reported at the JSON path they come from ("FILE: RuleGroup.RulesSource...: msg").
"""
import json
import re

from .convert import Source, convert, order_comment

GROUP_KEYS = ("RuleVariables", "ReferenceSets", "RulesSource", "StatefulRuleOptions")
TOP_KEYS = ("RuleGroup", "RuleGroupResponse", "UpdateToken")
SOURCE_KEYS = ("RulesString", "RulesSourceList", "StatefulRules", "StatelessRulesAndCustomActions")
LIST_KEYS = ("Targets", "TargetTypes", "GeneratedRulesType")
RULE_KEYS = ("Action", "Header", "RuleOptions")
HEADER_KEYS = ("Protocol", "Source", "SourcePort", "Direction", "Destination", "DestinationPort")
OPTION_KEYS = ("Keyword", "Settings")
ACTIONS = ("PASS", "DROP", "ALERT", "REJECT")
DIRECTIONS = {"FORWARD": "->", "ANY": "<>"}
ORDERS = ("DEFAULT_ACTION_ORDER", "STRICT_ORDER")
# GeneratedRulesType -> (action of the rules for the listed domains, word in their msg)
GENERATED = {"ALLOWLIST": ("pass", "allowlisted"), "DENYLIST": ("drop", "denylisted"),
             "REJECTLIST": ("reject", "rejectlisted"), "ALERTLIST": ("alert", "alertlisted")}
TARGET_TYPES = {"TLS_SNI": ("tls", "tls.sni", "TLS"), "HTTP_HOST": ("http", "http.host", "HTTP")}
_DOMAIN = re.compile(r"\.?(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class _Text:
    """Suricata lines being written, each remembering the JSON path it came from."""

    def __init__(self, file):
        self.file = file
        self.lines = []                    # text lines (variables take a placeholder comment line)
        self.paths = []                    # JSON path of each line
        self.problems = []
        self.essential = set()             # paths whose rules must not be skipped (an allowlist's drop)

    def add(self, line, path):
        self.lines.append(line)
        self.paths.append(path)
        return len(self.lines)

    def problem(self, path, msg):
        self.problems.append(f"{self.file}: {path}: {msg}")

    def relabel(self, problem):
        """"FILE:LINE: msg" from the Suricata reader -> "FILE: JSON-PATH: msg"."""
        head = f"{self.file}:"
        if problem.startswith(head):
            line_s, _, msg = problem[len(head):].partition(": ")
            if line_s.isdigit() and 0 < int(line_s) <= len(self.paths):
                return f"{self.file}: {self.paths[int(line_s) - 1]}: {msg}"
        return problem


def parse_json(text, file):
    """The rule group object, or (None, problem) for text that is not JSON."""
    try:
        return json.loads(text), None
    except json.JSONDecodeError as e:
        return None, f"{file}:{e.lineno}: not valid JSON: {e.msg} (line {e.lineno} column {e.colno})"
    except RecursionError:
        return None, f"{file}:1: not valid JSON: nested too deeply"


def to_source(text, file):
    """(Source, problems): the Suricata text of the rule group, or why not."""
    doc, msg = parse_json(text, file)
    if msg:
        return None, [msg]
    out = _Text(file)
    if not isinstance(doc, dict):
        out.problem("$", f"expected the JSON object of describe-rule-group ({{\"RuleGroup\": ...}}), got {_kind(doc)}")
        return None, out.problems
    if "RuleGroup" in doc:
        _unknown(out, doc, TOP_KEYS, "$")
        group, base = doc["RuleGroup"], "RuleGroup"
        response = doc.get("RuleGroupResponse") if isinstance(doc.get("RuleGroupResponse"), dict) else {}
    elif "RulesSource" in doc:
        group, base, response = doc, "RuleGroup", {}     # a bare RuleGroup: name paths the same way
    else:
        out.problem("$", "no RuleGroup (the output of `aws network-firewall describe-rule-group`) "
                         "and no RulesSource (a bare RuleGroup)")
        return None, out.problems
    if response.get("Type", "STATEFUL") != "STATEFUL":
        out.problem("RuleGroupResponse.Type", f"rule group type {response['Type']!r}: only STATEFUL rule "
                                              "groups are converted")
        return None, out.problems
    if not isinstance(group, dict):
        out.problem(base, f"expected an object, got {_kind(group)}")
        return None, out.problems
    _unknown(out, group, GROUP_KEYS, base)
    order = group.get("StatefulRuleOptions", {}) or {}
    order = order.get("RuleOrder", "DEFAULT_ACTION_ORDER") if isinstance(order, dict) else order
    if order not in ORDERS:
        out.problem(f"{base}.StatefulRuleOptions.RuleOrder", f"RuleOrder must be one of {', '.join(ORDERS)}, "
                                                             f"got {order!r}")
    if group.get("ReferenceSets"):
        out.problem(f"{base}.ReferenceSets", "unsupported: IP set references name VPC prefix lists and "
                                             "resource groups, which cannot be resolved here; write the "
                                             "addresses into RuleVariables")
    variables = _variables(out, group.get("RuleVariables"), f"{base}.RuleVariables")
    rs = group.get("RulesSource")
    spath = f"{base}.RulesSource"
    if not isinstance(rs, dict):
        out.problem(spath, f"expected an object with one of {', '.join(SOURCE_KEYS[:3])}, got {_kind(rs)}")
        return None, out.problems
    _unknown(out, rs, SOURCE_KEYS, spath)
    given = [k for k in SOURCE_KEYS if k in rs]
    if len(given) != 1:
        out.problem(spath, f"a rule group has exactly one of {', '.join(SOURCE_KEYS)}, this one has "
                           f"{', '.join(given) or 'none'}")
    elif given[0] == "StatelessRulesAndCustomActions":
        out.problem(f"{spath}.StatelessRulesAndCustomActions", "unsupported: stateless rules (only stateful "
                                                               "rule groups are converted)")
    elif given[0] == "RulesString":
        _rules_string(out, rs["RulesString"], f"{spath}.RulesString")
    elif given[0] == "RulesSourceList":
        _domain_list(out, rs["RulesSourceList"], f"{spath}.RulesSourceList")
    else:
        _stateful_rules(out, rs["StatefulRules"], f"{spath}.StatefulRules")
    if out.problems:
        return None, out.problems
    name = response.get("RuleGroupName")
    header = (f"Converted by `appliance rules convert --from aws-nfw` from {file}"
              + (f" (rule group {name})" if name else "") + ".",
              f"RuleOrder {order}.", *order_comment(order == "STRICT_ORDER"),
              "AWS's HOME_NET defaults to the VPC's CIDR; here to the config's home_net, else the HOME_NET",
              "of RuleVariables (vars: below), else private address space. The firewall policy's default",
              "action is not part of a rule group: set default_action in one of your rule files.")
    src = Source(file, "\n".join(out.lines) + "\n", strict_order=order == "STRICT_ORDER",
                 variables=tuple(variables), header=header)
    return (src, out), []


def convert_rule_group(text, file, skip_unsupported=False):
    """convert.Result for the rule group JSON `text`; problems name JSON paths."""
    from .convert import Result
    made, problems = to_source(text, file)
    if problems:
        return Result(problems=problems)
    src, out = made
    r = convert(src, skip_unsupported)
    r.problems = [out.relabel(p) for p in r.problems]
    r.skipped = [out.relabel(s) for s in r.skipped]
    # Skipping an allowlist's drop would leave only its pass rules: a policy that allows what
    # the allowlist was written to stop. That is never converted, --skip-unsupported or not.
    lost = [s for s in r.skipped if any(s.startswith(f"{file}: {p}: ") for p in out.essential)]
    if lost:
        return Result(problems=[s.replace(": skipped sid ", ": sid ", 1) + "; an allowlist cannot do without "
                                "this drop (its pass rules alone allow every request): not skipped" for s in lost])
    return r


# ---------------------------------------------------------------- parts of a rule group

def _variables(out, rv, path):
    """[(name, value, line)] from RuleVariables; each gets a comment line for its messages."""
    if rv is None:
        return []
    if not isinstance(rv, dict):
        out.problem(path, f"expected an object with IPSets/PortSets, got {_kind(rv)}")
        return []
    _unknown(out, rv, ("IPSets", "PortSets"), path)
    found = []
    for kind in ("IPSets", "PortSets"):
        sets = rv.get(kind) or {}
        if not isinstance(sets, dict):
            out.problem(f"{path}.{kind}", f"expected an object of NAME: {{Definition: [...]}}, got {_kind(sets)}")
            continue
        for name, body in sets.items():
            vpath = f"{path}.{kind}.{name}"
            if not _VAR_NAME.match(name):
                out.problem(vpath, f"bad variable name {name!r}")
                continue
            if not isinstance(body, dict) or set(body) != {"Definition"} or not isinstance(body["Definition"], list) \
                    or not body["Definition"] or not all(isinstance(x, str) for x in body["Definition"]):
                out.problem(vpath, "expected {\"Definition\": [strings]}")
                continue
            values = [_any(x) for x in body["Definition"]]
            line = out.add(f"# variable {name}", f"{vpath}.Definition")
            found.append((name, values, line))
    return found


def _rules_string(out, text, path):
    if not isinstance(text, str):
        out.problem(path, f"expected a string of Suricata rules, got {_kind(text)}")
        return
    for n, line in enumerate(text.splitlines(), 1):
        out.add(line, f"{path} line {n}")


def _domain_list(out, sl, path):
    if not isinstance(sl, dict):
        out.problem(path, f"expected an object with {', '.join(LIST_KEYS)}, got {_kind(sl)}")
        return
    _unknown(out, sl, LIST_KEYS, path)
    kind = sl.get("GeneratedRulesType")
    if kind not in GENERATED:
        out.problem(f"{path}.GeneratedRulesType", f"must be one of {', '.join(GENERATED)}, got {kind!r}")
        return
    types = sl.get("TargetTypes")
    if not isinstance(types, list) or not types or any(t not in TARGET_TYPES for t in types):
        out.problem(f"{path}.TargetTypes", f"must be a non-empty list of {', '.join(TARGET_TYPES)}, got {types!r}")
        return
    targets = sl.get("Targets")
    if not isinstance(targets, list) or not targets:
        out.problem(f"{path}.Targets", f"must be a non-empty list of domains, got {targets!r}")
        return
    action, word = GENERATED[kind]
    sid = 0
    # As Network Firewall generates them (Developer Guide, "Stateful domain list rule groups"):
    # one rule per target and protocol on the SNI / Host, from HOME_NET, requests only;
    # "abc.example.com" is that name, ".example.com" the name and every subdomain.
    names = []
    for i, t in enumerate(targets):
        name = t.strip().lower() if isinstance(t, str) else None
        if not name or not _DOMAIN.match(name):
            out.problem(f"{path}.Targets[{i}]", f"not a domain (\"abc.example.com\", or \".example.com\" for "
                                                f"the domain and its subdomains): {t!r}")
        names.append((f"{path}.Targets[{i}]", name))
    if out.problems:
        return
    for ttype in types:
        proto, buffer, label = TARGET_TYPES[ttype]
        for tpath, name in names:
            match = (f'dotprefix; content:"{name}"; nocase; endswith;' if name.startswith(".")
                     else f'content:"{name}"; nocase; startswith; endswith;')
            sid += 1
            out.add(f'{action} {proto} $HOME_NET any -> $EXTERNAL_NET any (msg:"matching {label} {word} FQDNs"; '
                    f'flow:to_server,established; {buffer}; {match} sid:{sid}; rev:1;)', tpath)
    if kind == "ALLOWLIST":
        # ... and an allowlist drops every other request of the protocol
        for ttype in types:
            proto, _, label = TARGET_TYPES[ttype]
            sid += 1
            out.add(f'drop {proto} $HOME_NET any -> $EXTERNAL_NET any (msg:"not matching any {label} allowlisted '
                    f'FQDNs"; flow:to_server,established; sid:{sid}; rev:1;)', f"{path}.GeneratedRulesType")
        out.essential.add(f"{path}.GeneratedRulesType")


def _stateful_rules(out, rules, path):
    if not isinstance(rules, list):
        out.problem(path, f"expected a list of rules, got {_kind(rules)}")
        return
    for i, r in enumerate(rules):
        rpath = f"{path}[{i}]"
        if not isinstance(r, dict):
            out.problem(rpath, f"expected an object with {', '.join(RULE_KEYS)}, got {_kind(r)}")
            continue
        before = len(out.problems)
        _unknown(out, r, RULE_KEYS, rpath)
        action, header, options = r.get("Action"), r.get("Header"), r.get("RuleOptions", [])
        if action not in ACTIONS:
            out.problem(f"{rpath}.Action", f"must be one of {', '.join(ACTIONS)}, got {action!r}")
        if not isinstance(header, dict):
            out.problem(f"{rpath}.Header", f"expected an object with {', '.join(HEADER_KEYS)}, got {_kind(header)}")
            continue
        _unknown(out, header, HEADER_KEYS, f"{rpath}.Header")
        for k in HEADER_KEYS:
            if not isinstance(header.get(k), str) or not header[k].strip():
                out.problem(f"{rpath}.Header.{k}", f"must be a non-empty string, got {header.get(k)!r}")
        if header.get("Direction") not in DIRECTIONS and isinstance(header.get("Direction"), str):
            out.problem(f"{rpath}.Header.Direction", f"must be FORWARD or ANY, got {header['Direction']!r}")
        text = _options(out, options, f"{rpath}.RuleOptions")
        if len(out.problems) > before:
            continue
        h = header
        out.add(f"{action.lower()} {h['Protocol'].lower()} {_any(h['Source'])} {_any(h['SourcePort'])} "
                f"{DIRECTIONS[h['Direction']]} {_any(h['Destination'])} {_any(h['DestinationPort'])} ({text})", rpath)


def _options(out, options, path):
    if not isinstance(options, list):
        out.problem(path, f"expected a list of {{Keyword, Settings}}, got {_kind(options)}")
        return ""
    parts = []
    for j, o in enumerate(options):
        opath = f"{path}[{j}]"
        if not isinstance(o, dict) or not isinstance(o.get("Keyword"), str) or not o["Keyword"].strip():
            out.problem(opath, "expected {\"Keyword\": \"...\", \"Settings\": [...]}")
            continue
        _unknown(out, o, OPTION_KEYS, opath)
        settings = o.get("Settings", [])
        if not isinstance(settings, list) or not all(isinstance(s, str) for s in settings):
            out.problem(f"{opath}.Settings", f"expected a list of strings, got {settings!r}")
            continue
        kw = o["Keyword"].strip()
        parts.append(f"{kw}:{','.join(settings)};" if settings else f"{kw};")
    return " ".join(parts)


def _any(v):
    return "any" if v.strip().upper() == "ANY" else v.strip()


def _unknown(out, obj, known, path):
    for k in obj:
        if k not in known:
            out.problem(f"{path}.{k}" if path != "$" else k,
                        f"unknown key '{k}' (known here: {', '.join(known)})")


def _kind(v):
    return {dict: "an object", list: "a list", str: "a string", type(None): "null",
            bool: "a boolean"}.get(type(v), "a number")
