"""`appliance rules convert`: Suricata rules (and what aws_nfw.py makes of an AWS Network
Firewall rule group) -> the project's YAML rule file.

The Suricata reader already maps each rule onto the plain dict of YAML keys that the
loader turns into a Rule; converting is printing that dict (plus rev/gid/references)
with the loader's own validation in front of it. Nothing here knows a keyword: a key
another reader adds flows through. The printed YAML is loaded back and must give the
same Rules as the source did, or the conversion fails (never a silently different policy).
"""
import dataclasses
import json
import re
import tempfile
from pathlib import Path

import yaml

from .keywords import RULE_KEYS
from .loader import _Loader, load_rules
from .rule import RuleError
from .variables import HOME_NET_SOURCE

_VAR_REF = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_PLAIN = re.compile(r"[A-Za-z0-9_$./][A-Za-z0-9_$./-]*\Z")   # no space, quote, comma, bracket, ':', '#'
_KEY_ORDER = {k: i for i, k in enumerate(RULE_KEYS)}
_UNPRINTABLE = re.compile("[\x7f-\x9f\ufffe\uffff]")


@dataclasses.dataclass
class Source:
    """Suricata text to convert, and what the caller knows about it."""
    file: str                              # for messages ("<stdin>" for -)
    text: str
    strict_order: bool = False             # keep the written order (AWS STRICT_ORDER), not the action order
    variables: tuple = ()                  # (name, value, line): definitions that come with the text
    header: tuple = ()                     # comment lines for the top of the YAML


@dataclasses.dataclass
class Result:
    yaml: str = ""
    problems: list = dataclasses.field(default_factory=list)    # "FILE:LINE: message"; non-empty = failed
    skipped: list = dataclasses.field(default_factory=list)     # skip_report lines (--skip-unsupported)
    rules: int = 0


class _TextLoader(_Loader):
    """The loader, fed one Suricata text instead of paths."""

    def __init__(self, source, skip_unsupported):
        super().__init__(None, skip_unsupported)
        self.source = source

    def read_paths(self, paths):
        src = self.source
        self.sources.append(src.file)
        self.texts[src.file] = src.text.splitlines()
        for name, value, line in src.variables:
            self.variables.define(name, value, self.where(src.file, line))
        self.read_suricata(src.file, src.text)
        if src.strict_order:
            self.raw_rules.sort(key=lambda fm: fm[1].line)     # read_text put them in action order

    def in_action_order(self, raw_rules):
        return raw_rules                   # one text: read_paths put it in the order it asks for


def convert(source, skip_unsupported=False) -> Result:
    """The YAML for `source`, or the problems that stop it (each "FILE:LINE: message")."""
    from .loader import skip_report
    loader = _TextLoader(source, skip_unsupported)
    rs, problems = loader.run([])
    if problems:
        return Result(problems=problems)
    mappings = [{**m, **m.extra} for _, m in loader.raw_rules]
    used = _vars_used(mappings, loader.variables.defs)
    doc = emit(source.header, {n: loader.variables.defs[n].value for n in used}, mappings)
    mismatch = _self_check(doc, rs.rules, loader.raw_rules)
    if mismatch:
        return Result(problems=[mismatch])
    return Result(yaml=doc, skipped=skip_report(rs), rules=len(rs.rules))


def order_comment(strict_order):
    if strict_order:
        return ("Order: as written (strict order). The first matching pass/drop/reject rule decides,",
                "as in every YAML file: keep this order.") + DEPTH
    return ("Order: Suricata's action order (all pass rules, then drop, then reject, then alert; written",
            "order within an action). YAML's first match then gives the same verdicts: keep this order.") + DEPTH


# The converted file is YAML-only, so it gets YAML's inspection depth unless the config says.
DEPTH = ("Depth: a set with .rules inspects every packet up to 1 MiB a direction (Suricata's);",
         "a YAML-only set 16 packets / 8 KiB. For the same depth, set the config's inspection: keys.")


def _vars_used(mappings, defs):
    """Names of the variables the rules refer to, directly or through other variables, that
    the YAML must define: all but HOME_NET/EXTERNAL_NET when they are the appliance's own."""
    todo, seen = [], set()

    def refs(v):
        if isinstance(v, str):
            todo.extend(_VAR_REF.findall(v))
        elif isinstance(v, (list, tuple)):
            for x in v:
                refs(x)
        elif isinstance(v, dict):
            for x in v.values():
                refs(x)

    refs(mappings)
    while todo:
        name = todo.pop()
        if name in seen or name not in defs:
            continue
        seen.add(name)
        refs(defs[name].value)
    own = ("<default>", HOME_NET_SOURCE)
    return sorted(n for n in seen if defs[n].where.file not in own)


def _self_check(doc, rules, raw_rules):
    """None when the YAML loads as the same Rules (but where they were written), else a problem."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "converted.yaml"
        p.write_text(doc, encoding="utf-8")
        try:
            back = load_rules(p).rules
        except RuleError as e:
            first = str(e.problems[0] if e.problems else e).replace(str(p), "the YAML")
            return f"{raw_rules[0][0] if raw_rules else '-'}:1: internal error: the YAML does not load: {first}"
    for a, b, (file, m) in zip(rules, back, raw_rules):
        if _comparable(a) != _comparable(b):
            diff = [f.name for f in dataclasses.fields(a) if getattr(a, f.name) != getattr(b, f.name)
                    and f.name not in ("file", "line", "order")]
            return f"{file}:{m.line}: internal error: sid {a.id} converts to a different YAML rule ({', '.join(diff)})"
    if len(back) != len(rules):
        return f"{raw_rules[0][0] if raw_rules else '-'}:1: internal error: {len(rules)} rules became {len(back)}"
    return None


def _comparable(r):
    return (dataclasses.replace(r, file="", line=0, order=0), r.metadata, r.references)


# ---------------------------------------------------------------- YAML out

def emit(header, variables, rules):
    """A rule file: comment header, vars (if any), rules, each key in KEYWORDS order."""
    out = [f"# {line}".rstrip() for line in header]
    if variables:
        out.append("vars:")
        out += [f"  {_scalar(k)}: {_flow(v)}" for k, v in variables.items()]
    if not rules:
        out.append("rules: []")
        return "\n".join(out) + "\n"
    out.append("rules:")
    for m in rules:
        keys = sorted(m, key=lambda k: _KEY_ORDER.get(k, len(_KEY_ORDER)))
        for i, k in enumerate(keys):
            out += _block(k, m[k], "  - " if i == 0 else "    ")
    return "\n".join(out) + "\n"


def _block(key, value, lead):
    pad = " " * len(lead)
    if isinstance(value, dict) and value:
        return [f"{lead}{_scalar(key)}:"] + [f"{pad}  {_scalar(k)}: {_flow(v)}" for k, v in value.items()]
    if isinstance(value, (list, tuple)) and any(isinstance(x, (dict, list, tuple)) for x in value):
        return [f"{lead}{_scalar(key)}:"] + [f"{pad}  - {_flow(x)}" for x in value]
    return [f"{lead}{_scalar(key)}: {_flow(value)}"]


def _flow(v):
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_scalar(k)}: {_flow(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_flow(x) for x in v) + "]"
    return _scalar(v)


def _scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    s = str(v)
    # plain only when any YAML reader (1.1 included: yes/no, 1_000, 1:20) reads back this string
    if _PLAIN.match(s) and yaml.safe_load(s) == s:
        return s
    # A JSON string is a YAML double-quoted scalar, but for the characters YAML does not allow
    # written out (DEL, C1 controls, U+FFFE/U+FFFF; NEL would fold into a space): escaped.
    return _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(s, ensure_ascii=False))
