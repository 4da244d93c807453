"""Rule files (YAML) -> a validated RuleSet.

Every problem is collected (never just the first) as "FILE:LINE: message",
LINE being the line of the offending key or list item. `load_rules` raises
RuleError with all of them; `check` returns them and never raises.
"""
import re
from pathlib import Path

from ..problems import Problems, Where, choice, did_you_mean, got, is_int
from ..yamlsource import LineDict, LineList, YamlError, loads
from .rule import (ACTIONS, DECISIONS, DIRECTIONS, FLOW_KEYWORDS, PROTOS, TCP_FLAG_LETTERS,
                   Content, NamePattern, Rule, RuleError, RuleSet, TcpFlags, Threshold)
from .variables import Variables

TOP_KEYS = ("vars", "default_action", "rules")
RULE_KEYS = ("id", "msg", "action", "proto", "src", "src_port", "dst", "dst_port", "direction",
             "flow", "tcp_flags", "icmp_type", "icmp_code", "content", "regex", "dns_query",
             "tls_sni", "http_host", "threshold", "log", "severity", "classtype", "metadata")
CONTENT_KEYS = ("value", "hex", "nocase", "offset", "depth")
THRESHOLD_KEYS = ("type", "track", "count", "seconds")
THRESHOLD_TYPES = ("limit", "threshold", "both")
THRESHOLD_TRACKS = ("by_src", "by_dst", "by_flow", "by_rule")
APP_FIELDS = {"dns_query": ("ip", "tcp", "udp"), "tls_sni": ("ip", "tcp"), "http_host": ("ip", "tcp")}

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")


class _Loader:
    def __init__(self, home_net):
        self.home_net = home_net
        self.problems = Problems()
        self.variables = Variables(self.problems)
        self.texts = {}                    # file -> its lines, for hints about how YAML read a line
        self.sources = []
        self.default_action = None         # (value, file, line)
        self.raw_rules = []                # (file, LineDict)
        self.ids = {}                      # id -> "file:line"

    def where(self, file, line):
        return Where(self.problems, file, line, self.texts.get(str(file), ()))

    def problem(self, file, line, msg):
        self.problems.add(file, line, msg)

    # -------------------------------------------------- files

    def read_paths(self, paths):
        if isinstance(paths, (str, Path)):
            paths = [paths]
        for p in paths:
            p = Path(p)
            if p.is_dir():
                files = sorted(f for f in p.iterdir() if f.suffix in (".yaml", ".yml") and f.is_file())
                if not files:
                    self.problem(p, 1, "no rule files (*.yaml, *.yml) in this directory")
                for f in files:
                    self.read_file(f)
            elif p.exists():
                self.read_file(p)
            else:
                self.problem(p, 1, "no such file or directory")

    def read_file(self, path):
        file = str(path)
        self.sources.append(file)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            self.problem(file, 1, f"cannot read: {e}")
            return
        self.texts[file] = text.splitlines()
        try:
            doc = loads(text, file)
        except YamlError as e:
            # str(e) is already "FILE:LINE: message"; keep it apart so problems sort by line
            line_s, _, msg = str(e)[len(file) + 1:].partition(": ")
            self.problem(file, int(line_s) if line_s.isdigit() else 1, msg)
            return
        if doc is None:
            return                         # an empty file holds no rules
        if not isinstance(doc, LineDict):
            self.problem(file, getattr(doc, "line", 1) or 1,
                         f"a rule file must be a mapping with vars/default_action/rules, got {got(doc)}")
            return
        for key in doc:
            if key not in TOP_KEYS:
                self.problem(file, doc.line_of(key), f"unknown key '{key}'{did_you_mean(key, TOP_KEYS)}")
        if "vars" in doc:
            self.read_vars(file, doc, doc["vars"])
        if "default_action" in doc:
            self.read_default_action(file, doc.line_of("default_action"), doc["default_action"])
        rules = doc.get("rules")
        if rules is None:
            return
        if not isinstance(rules, LineList):
            self.problem(file, doc.line_of("rules"), f"rules must be a list, got {got(rules)}")
            return
        for i, r in enumerate(rules):
            if isinstance(r, LineDict):
                self.raw_rules.append((file, r))
            else:
                self.problem(file, rules.line_of(i), f"a rule must be a mapping (id: ..., action: ...), got {got(r)}")

    def read_vars(self, file, doc, vars_):
        if vars_ is None:
            return
        if not isinstance(vars_, LineDict):
            self.problem(file, doc.line_of("vars"), f"vars must be a mapping of NAME: value, got {got(vars_)}")
            return
        for name, value in vars_.items():
            self.variables.define(name, value, self.where(file, vars_.line_of(name)))

    def read_default_action(self, file, line, value):
        msg = choice("default_action", value, DECISIONS)
        if msg:
            self.problem(file, line, msg)
            return
        if self.default_action and self.default_action[0] != value:
            first = self.default_action
            self.problem(file, line, f"default_action '{value}' conflicts with '{first[0]}' "
                                     f"set at {first[1]}:{first[2]}")
        elif not self.default_action:
            self.default_action = (value, file, line)

    # -------------------------------------------------- one rule

    def rule(self, file, m, order):
        bad = []

        def err(key, msg, line=None):
            bad.append(key)
            self.problem(file, line or m.line_of(key), msg)

        for key in m:
            if key not in RULE_KEYS:
                err(key, f"unknown key '{key}'{did_you_mean(key, RULE_KEYS)}")
        kw = {"msg": ""}

        # id, action: required
        if "id" not in m:
            err(None, "rule has no id (a unique positive integer)", m.line)
        elif not is_int(m["id"]) or m["id"] <= 0:
            err("id", f"id must be a positive integer, got {got(m['id'])}")
        elif m["id"] in self.ids:
            err("id", f"duplicate id {m['id']} (first used at {self.ids[m['id']]})")
        else:
            self.ids[m["id"]] = f"{file}:{m.line_of('id')}"
            kw["id"] = m["id"]
        action = m.get("action")
        if "action" not in m:
            err(None, f"rule has no action ({', '.join(ACTIONS)})", m.line)
        elif msg := choice("action", action, ACTIONS):
            err("action", msg)
            action = None
        else:
            kw["action"] = action
        if "msg" in m:
            if isinstance(m["msg"], str):
                kw["msg"] = m["msg"]
            else:
                err("msg", f"msg must be a string, got {got(m['msg'])}")
        proto = m.get("proto", "ip")
        if msg := choice("proto", proto, tuple(PROTOS)):
            err("proto", msg)
            proto = None
        else:
            kw["proto"] = proto
        proto_said = f"proto is {proto}" if "proto" in m else "proto defaults to ip"

        # header
        for key in ("src", "dst"):
            if key in m:
                val, ok = self.variables.addr_set(m[key], self.where(file, m.line_of(key)), key)
                (kw.__setitem__(key, val) if ok else bad.append(key))
        for key in ("src_port", "dst_port"):
            if key not in m:
                continue
            if proto is not None and proto not in ("tcp", "udp"):
                err(key, f"{key} needs proto tcp or udp ({proto_said})")
                continue
            val, ok = self.variables.port_set(m[key], self.where(file, m.line_of(key)), key)
            (kw.__setitem__(key, val) if ok else bad.append(key))
        if "direction" in m:
            if msg := choice("direction", m["direction"], DIRECTIONS):
                err("direction", msg)
            else:
                kw["direction"] = m["direction"]

        # packet conditions
        if "flow" in m:
            self.flow(m, kw, err)
        if "tcp_flags" in m:
            if proto is not None and proto != "tcp":
                err("tcp_flags", f"tcp_flags needs proto tcp ({proto_said})")
            else:
                flags, msg = _parse_tcp_flags(m["tcp_flags"])
                (err("tcp_flags", msg) if msg else kw.__setitem__("tcp_flags", flags))
        for key in ("icmp_type", "icmp_code"):
            if key not in m:
                continue
            v = m[key]
            if proto is not None and proto not in ("icmp", "icmpv6"):
                err(key, f"{key} needs proto icmp or icmpv6 ({proto_said})")
            elif not is_int(v) or not 0 <= v <= 255:
                err(key, f"{key} must be an integer 0-255, got {got(v)}")
            else:
                kw[key] = v
        if "content" in m:
            contents = self.contents(file, m, err)
            if contents is not None:
                kw["content"] = contents
        if "regex" in m:
            self.regex(m, kw, err)

        # app-layer names
        used = [k for k in APP_FIELDS if k in m]
        if len(used) > 1:
            err(used[1], f"a rule can use only one of dns_query, tls_sni, http_host "
                         f"(a flow carries one protocol); this one has {', '.join(used)}")
        for key in used:
            if proto is not None and proto not in APP_FIELDS[key]:
                err(key, f"{key} needs proto {' or '.join(APP_FIELDS[key])} ({proto_said})")
                continue
            names = self.names(file, m, key, err)
            if names is not None:
                kw[key] = names

        # output
        if "threshold" in m:
            t = self.threshold(file, m, err)
            if t is not None:
                kw["threshold"] = t
        if "log" in m:
            if not isinstance(m["log"], bool):
                err("log", f"log must be true or false, got {got(m['log'])}")
            elif action == "alert":
                err("log", "log applies to pass/drop/reject rules (alert rules always emit alerts)")
            else:
                kw["log"] = m["log"]
        if "threshold" in m and action in DECISIONS and not kw.get("log"):
            err("threshold", f"threshold limits alerts: a {action} rule needs log: true for it to apply")
        if "severity" in m:
            v = m["severity"]
            if not is_int(v) or not 1 <= v <= 4:
                err("severity", f"severity must be an integer 1 (high) to 4 (low), got {got(v)}")
            else:
                kw["severity"] = v
        if "classtype" in m:
            v = m["classtype"]
            if not isinstance(v, str) or not v.strip():
                err("classtype", f"classtype must be a non-empty string, got {got(v)}")
            else:
                kw["classtype"] = v
        if "metadata" in m:
            md = self.metadata(file, m, err)
            if md is not None:
                kw["metadata"] = md

        if bad or "id" not in kw or "action" not in kw:
            return None
        return Rule(file=file, line=m.line, order=order, **kw)

    def flow(self, m, kw, err):
        v = m["flow"]
        items = [v] if isinstance(v, str) else v
        if not isinstance(items, list) or not items:
            err("flow", f"flow must be one of {', '.join(FLOW_KEYWORDS)} or a list of them, got {got(v)}")
            return
        seen = set()
        for i, item in enumerate(items):
            line = items.line_of(i) if isinstance(items, LineList) else None
            if msg := choice("flow", item, FLOW_KEYWORDS):
                err("flow", msg, line)
                return
            seen.add(item)
        for a, b in (("established", "not_established"), ("to_server", "to_client")):
            if {a, b} <= seen:
                err("flow", f"flow cannot be both {a} and {b}")
                return
        kw["flow"] = frozenset(seen)

    def regex(self, m, kw, err):
        v = m["regex"]
        if not isinstance(v, str) or not v:
            err("regex", f"regex must be a non-empty string, got {got(v)}")
            return
        try:
            kw["regex"] = re.compile(v.encode())
        except (re.error, OverflowError, RecursionError, ValueError) as e:   # "a{99999999999}" overflows
            err("regex", f"bad regex {v!r}: {e}")

    def contents(self, file, m, err):
        v = m["content"]
        items = v if isinstance(v, list) else [v]
        if not items:
            err("content", "content is an empty list")
            return None
        out, ok = [], True
        for i, item in enumerate(items):
            line = items.line_of(i) if isinstance(items, LineList) else m.line_of("content")
            c = self.content(file, line, item, err)
            ok = ok and c is not None
            out.append(c)
        return tuple(out) if ok else None

    def content(self, file, line, item, err):
        if isinstance(item, str):
            if not item:
                err("content", "content is empty", line)
                return None
            return Content(item.encode("utf-8"))
        if not isinstance(item, LineDict):
            err("content", f"content must be a string or a mapping (value or hex, nocase, offset, depth), "
                           f"got {got(item)}", line)
            return None
        ok = True
        for key in item:
            if key not in CONTENT_KEYS:
                err("content", f"unknown content key '{key}'{did_you_mean(key, CONTENT_KEYS)}", item.line_of(key))
                ok = False
        if ("value" in item) == ("hex" in item):
            if ok:                         # else a misspelt value/hex was just reported
                err("content", "content needs exactly one of value or hex", line)
            return None
        value = None
        if "value" in item:
            v = item["value"]
            if not isinstance(v, str) or not v:
                err("content", f"content value must be a non-empty string, got {got(v)}", item.line_of("value"))
            else:
                value = v.encode("utf-8")
        else:
            value, msg = _parse_hex(item["hex"])
            if msg:
                err("content", msg, item.line_of("hex"))
        kw = {}
        if "nocase" in item:
            if isinstance(item["nocase"], bool):
                kw["nocase"] = item["nocase"]
            else:
                err("content", f"nocase must be true or false, got {got(item['nocase'])}", item.line_of("nocase"))
                ok = False
        if "offset" in item:
            o = item["offset"]
            if is_int(o) and o >= 0:
                kw["offset"] = o
            else:
                err("content", f"offset must be an integer >= 0, got {got(o)}", item.line_of("offset"))
                ok = False
        if "depth" in item:
            d = item["depth"]
            if not is_int(d) or d <= 0:
                err("content", f"depth must be an integer > 0, got {got(d)}", item.line_of("depth"))
                ok = False
            elif value is not None and d < len(value):
                err("content", f"depth {d} is shorter than the content ({len(value)} bytes): it can never match",
                    item.line_of("depth"))
                ok = False
            else:
                kw["depth"] = d
        if value is None or not ok:
            return None
        return Content(value, **kw)

    def names(self, file, m, key, err):
        v = m[key]
        items = [v] if isinstance(v, str) else v
        if not isinstance(items, list) or not items:
            err(key, f"{key} must be a name or a list of names, got {got(v)}")
            return None
        out, ok = [], True
        for i, item in enumerate(items):
            line = items.line_of(i) if isinstance(items, LineList) else m.line_of(key)
            pat, msg = _parse_name(item)
            if msg:
                err(key, f"{key}: {msg}", line)
                ok = False
            else:
                out.append(pat)
        return tuple(out) if ok else None

    def threshold(self, file, m, err):
        t = m["threshold"]
        if not isinstance(t, LineDict):
            err("threshold", f"threshold must be a mapping (type, track, count, seconds), got {got(t)}")
            return None
        ok = True
        for key in t:
            if key not in THRESHOLD_KEYS:
                err("threshold", f"unknown threshold key '{key}'{did_you_mean(key, THRESHOLD_KEYS)}", t.line_of(key))
                ok = False
        missing = [k for k in THRESHOLD_KEYS if k not in t]
        if missing:
            err("threshold", f"threshold needs {', '.join(missing)}")
            ok = False
        for key, options in (("type", THRESHOLD_TYPES), ("track", THRESHOLD_TRACKS)):
            if key in t and (msg := choice(f"threshold {key}", t[key], options)):
                err("threshold", msg, t.line_of(key))
                ok = False
        for key in ("count", "seconds"):
            if key in t and (not is_int(t[key]) or t[key] < 1):
                err("threshold", f"threshold {key} must be a positive integer, got {got(t[key])}", t.line_of(key))
                ok = False
        return Threshold(t["type"], t["track"], t["count"], t["seconds"]) if ok else None

    def metadata(self, file, m, err):
        md = m["metadata"]
        if not isinstance(md, LineDict):
            err("metadata", f"metadata must be a mapping of name: [strings], got {got(md)}")
            return None
        out, ok = {}, True
        for k, v in md.items():
            line = md.line_of(k)
            if not isinstance(k, str):
                err("metadata", f"metadata key must be a string, got {got(k)}", line)
                ok = False
            elif not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                err("metadata", f"metadata {k} must be a list of strings (quote numbers and yes/no), "
                                f"got {got(v)}", line)
                ok = False
            else:
                out[k] = list(v)
        return out if ok else None

    # -------------------------------------------------- all of it

    def run(self, paths):
        self.read_paths(paths)
        self.variables.define_defaults(self.home_net)
        self.variables.check()
        rules = []
        for order, (file, m) in enumerate(self.raw_rules):
            r = self.rule(file, m, order)
            if r is not None:
                rules.append(r)
        # orders stay the global position among all rules written, valid or not
        rs = RuleSet(rules=rules, vars=self.variables.display(),
                     default_action=self.default_action[0] if self.default_action else "pass",
                     sources=tuple(self.sources))
        return rs, self.problems.sorted(self.sources)


def _parse_tcp_flags(v):
    """Suricata-style "S", "SA", "S+", "S,CE", "0" -> (TcpFlags, None) or (None, message)."""
    if not isinstance(v, str):
        return None, f"tcp_flags must be a string like \"S\" or \"SA+\", got {got(v)}"
    main, _, ignore = v.replace(" ", "").upper().partition(",")
    plus = main.endswith("+")
    main = main.rstrip("+")
    if main[:1] in ("*", "!") or main.endswith(("*", "!")):
        return None, f"tcp_flags '{v}': only exact (\"SA\") and at-least (\"SA+\") are supported"

    def bits(letters, what):
        b = 0
        for ch in letters:
            i = TCP_FLAG_LETTERS.find(ch)
            if i < 0:
                return None, f"tcp_flags '{v}': '{ch}' is not a flag; use letters from {TCP_FLAG_LETTERS}"
            if b & (1 << i):
                return None, f"tcp_flags '{v}': {what} repeats '{ch}'"
            b |= 1 << i
        return b, None

    if main == "0":
        required, msg = 0, None
    elif not main:
        return None, f"tcp_flags '{v}' names no flags"
    else:
        required, msg = bits(main, "flags")
    if msg:
        return None, msg
    ignored, msg = bits(ignore, "ignore list")
    if msg:
        return None, msg
    if required & ignored:
        return None, f"tcp_flags '{v}': a flag cannot be both required and ignored"
    return TcpFlags(required=required, exact=not plus, mask=0xFF & ~ignored), None


def _parse_hex(v):
    """"41 42|43", "|41 42|", "414243" -> (bytes, None) or (None, message)."""
    if not isinstance(v, str):
        return None, f"hex must be a quoted string of hex digits, got {got(v)} (unquoted digits are read as a number)"
    digits = re.sub(r"[\s|]", "", v)
    if not digits:
        return None, "hex content is empty"
    if not re.fullmatch(r"[0-9A-Fa-f]+", digits):
        return None, f"hex {v!r} has characters other than hex digits, spaces and |"
    if len(digits) % 2:
        return None, f"hex {v!r} has an odd number of digits"
    return bytes.fromhex(digits), None


def _parse_name(v):
    """A DNS/TLS/HTTP name or "*.suffix" -> (NamePattern, None) or (None, message)."""
    if not isinstance(v, str):
        return None, f"expected a name, got {got(v)}"
    name = v.strip().lower()
    wildcard = name.startswith("*.")
    if wildcard:
        name = name[2:]
    name = name.rstrip(".")                # a trailing root dot is the same name
    if not name:
        return None, f"'{v}' is empty"
    if any(c.isspace() for c in name):
        return None, f"'{v}' contains whitespace"
    if "*" in name:
        return None, f"'{v}': a wildcard is only allowed as a leading \"*.\""
    labels = name.split(".")
    if "" in labels:
        return None, f"'{v}' has an empty label"
    if len(name) > 253:
        return None, f"'{v}' is longer than 253 characters"
    for label in labels:
        if not _LABEL.match(label):
            return None, f"'{v}': label '{label}' is not a valid name label (letters, digits, - and _; 1-63 long)"
    return NamePattern(name, wildcard), None


def load_rules(paths, home_net=None) -> RuleSet:
    """Load rule files/directories into a RuleSet; raises RuleError with every problem."""
    rs, problems = _Loader(home_net).run(paths)
    if problems:
        raise RuleError(problems)
    return rs


def check(paths, home_net=None) -> list:
    """Every problem in the rule files as "FILE:LINE: message"; empty when valid. Never raises."""
    try:
        return _Loader(home_net).run(paths)[1]
    except Exception as e:                 # a loader bug must not take the CLI down; say where
        first = paths[0] if isinstance(paths, (list, tuple)) and paths else paths
        return [f"{first}:1: internal error while checking rules: {e!r}"]
