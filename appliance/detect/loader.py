"""Rule files (YAML, and Suricata `.rules` through suricata.py) -> a validated RuleSet.

Every problem is collected (never just the first) as "FILE:LINE: message",
LINE being the line of the offending key or list item. `load_rules` raises
RuleError with all of them; `check` returns them and never raises.
"""
from fnmatch import fnmatchcase
from pathlib import Path

from ..problems import Problems, Where, choice, did_you_mean, got
from ..yamlsource import LineDict, LineList, YamlError, loads
from . import suricata
from .keywords import Draft, read_rule
from .rule import DECISIONS, Rule, RuleError, RuleSet, default_home_net
from .variables import Variable, Variables

TOP_KEYS = ("vars", "default_action", "rules", "mode")
MODES = ("enforce", "monitor")
RULE_SUFFIXES = (".yaml", ".yml", ".rules")


class _SuricataRule(dict):
    """A .rules line read into YAML keys; `line` as a LineDict has, plus what YAML has no key for."""
    def __init__(self, parsed):
        super().__init__(parsed.mapping)
        self.line = parsed.line
        self.extra = parsed.extra


class _Loader:
    def __init__(self, home_net, skip_unsupported=False, modes=()):
        self.home_net = home_net
        self.modes = modes                 # ((glob, mode, (file, line)), ...): the config's rules_mode
        self.globs_used = set()
        self.monitored = set()             # files whose drop/reject rules only alert (monitor mode)
        self.skip_unsupported = skip_unsupported
        self.skipped = []                  # "FILE:LINE: unsupported keyword 'X' (sid N, skipped)"
        self.skipped_keywords = {}         # keyword -> rules skipped for it
        self.notes = []                    # "FILE:LINE: note: sid N: ...": loaded, read differently from Suricata
        self.suricata = False              # a .rules file was read: Suricata's default vars apply
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
                files = sorted(f for f in p.iterdir() if f.suffix in RULE_SUFFIXES and f.is_file())
                if not files:
                    self.problem(p, 1, "no rule files (*.yaml, *.yml, *.rules) in this directory")
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
        if self._mode_by_name(path) == "monitor":
            self.monitored.add(file)
        if path.suffix == ".rules":
            self.read_suricata(file, text)
            return
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
        if "mode" in doc:
            mode = doc["mode"]
            if mode not in MODES:
                self.problem(file, doc.line_of("mode"), f"mode must be enforce or monitor, got {got(mode)}")
            elif mode == "monitor":
                self.monitored.add(file)
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

    def _mode_by_name(self, path):
        """The config's rules_mode for this file: the last glob that matches its name (a glob
        without "/") or its absolute path; None when none does."""
        mode = None
        full = str(Path(path).absolute())
        for i, (glob, m, _) in enumerate(self.modes):
            if fnmatchcase(full if "/" in glob else Path(path).name, glob):
                mode = m
                self.globs_used.add(i)
        return mode

    def read_suricata(self, file, text):
        self.suricata = True
        for parsed in suricata.read_text(text):
            for msg in parsed.errors:
                self.problem(file, parsed.line, msg)
            if parsed.errors:
                continue
            if parsed.unsupported:
                if not self.skip_unsupported:
                    for _, msg in parsed.unsupported:
                        self.problem(file, parsed.line, msg)
                    continue
                kws = list(dict.fromkeys(kw for kw, _ in parsed.unsupported))
                for kw in kws:
                    self.skipped_keywords[kw] = self.skipped_keywords.get(kw, 0) + 1
                self.skipped.append((file, parsed.line, f"{file}:{parsed.line}: skipped sid {parsed.sid}: "
                                     + "; ".join(dict.fromkeys(msg for _, msg in parsed.unsupported))))
                continue
            self.notes.extend(f"{file}:{parsed.line}: note: sid {parsed.sid}: {msg}" for msg in parsed.notes)
            self.raw_rules.append((file, _SuricataRule(parsed)))

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
            # (monitored when the file that set it is: see run())

    # -------------------------------------------------- one rule

    def rule(self, file, m, order):
        fields = read_rule(m, self.where(file, m.line), Draft(m, self.variables, self.ids))
        if fields is None:
            return None
        extra = getattr(m, "extra", {})
        if "references" in extra:
            extra = {**extra, "references": tuple(extra["references"])}
        return Rule(file=file, line=m.line, order=order, monitor=file in self.monitored, **fields, **extra)

    # -------------------------------------------------- all of it

    @staticmethod
    def in_action_order(raw_rules):
        """Suricata sorts all its loaded rules by action (pass, drop, reject, alert), not each
        file's: the .rules rules of every file become one block in that order (file, then
        line, within an action), where the first .rules file's rules were. YAML rules keep
        their places (first match in file order)."""
        at = [i for i, (_, m) in enumerate(raw_rules) if isinstance(m, _SuricataRule)]
        if not at:
            return raw_rules
        block = sorted((raw_rules[i] for i in at),
                       key=lambda fm: suricata.ACTION_RANK.get(fm[1].get("action"), 3))
        rest = [fm for fm in raw_rules if not isinstance(fm[1], _SuricataRule)]
        first = at[0]                      # YAML rules before the first .rules rule stay before it
        return rest[:first] + block + rest[first:]

    def run(self, paths):
        self.read_paths(paths)
        for i, (glob, _, (cfg_file, line)) in enumerate(self.modes):
            if i not in self.globs_used:
                # a typo here would leave the rules it means enforcing: the roll-out's one risk
                self.problem(cfg_file, line, f"rules_mode: {glob!r} matches no rule file")
        if self.suricata:
            for name, value in suricata.DEFAULT_VARS.items():
                if name not in self.variables.defs:   # rule files (YAML vars) override them
                    self.variables.defs[name] = Variable(value, Where(self.problems, "<suricata default>", 0))
        self.variables.define_defaults(self.home_net)
        self.variables.check()
        self.raw_rules = self.in_action_order(self.raw_rules)
        rules = []
        for order, (file, m) in enumerate(self.raw_rules):
            r = self.rule(file, m, order)
            if r is not None:
                rules.append(r)
        # orders stay the global position among all rules written, valid or not
        rs = RuleSet(rules=rules, vars=self.variables.display(),
                     default_action=self.default_action[0] if self.default_action else "pass",
                     sources=tuple(self.sources),
                     home_net=self.variables.home_net() or default_home_net(),   # None: broken, reported
                     skipped=[s for _, _, s in sorted(self.skipped, key=lambda s: (self.sources.index(s[0]), s[1]))], skipped_keywords=dict(self.skipped_keywords),
                     notes=list(self.notes),
                     suricata=self.suricata,
                     default_monitor=bool(self.default_action) and self.default_action[1] in self.monitored)
        return rs, self.problems.sorted(self.sources)


def load_rules(paths, home_net=None, skip_unsupported=False, modes=()) -> RuleSet:
    """Load rule files/directories into a RuleSet; raises RuleError with every problem.
    skip_unsupported: .rules lines with unsupported keywords are left out and listed in
    RuleSet.skipped instead of being problems. modes: the config's rules_mode, ((glob,
    mode, (file, line)), ...): the files it puts in monitor mode (as a YAML file's `mode: monitor`);
    a glob that matches no file is a problem at its config line."""
    rs, problems = _Loader(home_net, skip_unsupported, modes).run(paths)
    if problems:
        raise RuleError(problems)
    return rs


def check(paths, home_net=None, skip_unsupported=False, modes=()) -> list:
    """Every problem in the rule files as "FILE:LINE: message"; empty when valid. Never raises."""
    try:
        return _Loader(home_net, skip_unsupported, modes).run(paths)[1]
    except Exception as e:                 # a loader bug must not take the CLI down; say where
        first = paths[0] if isinstance(paths, (list, tuple)) and paths else paths
        return [f"{first}:1: internal error while checking rules: {e!r}"]


def skip_report(rs) -> list:
    """The notes on loaded .rules lines (read differently from Suricata), one line per .rules
    line skipped for unsupported keywords, then a summary by keyword; empty when neither."""
    if not rs.skipped:
        return list(rs.notes)
    by_kw = ", ".join(f"{kw} ({n})" for kw, n in sorted(rs.skipped_keywords.items(), key=lambda x: (-x[1], x[0])))
    return [*rs.notes, *rs.skipped,
            f"{len(rs.rules)} rules loaded, {len(rs.skipped)} skipped; unsupported keywords: {by_kw}"]
