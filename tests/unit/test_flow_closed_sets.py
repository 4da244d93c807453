"""Flow.state, verdict, direction and reason are closed sets (flow.STATES, VERDICTS,
DIRECTIONS, REASONS): the compiled Flow holds each as a one-byte index behind a property,
so a value outside its set cannot be stored. These tests keep it impossible to write one:
every writer in the package is listed here with what it writes, and each listed value
round-trips through the compiled Flow (docs/performance-passes.md, "Flow fields as bytes")."""
import ast
import pathlib

import pytest

from appliance.decode import decode_l3
from appliance.detect.engine import Detector
from appliance.detect.rule import DECISIONS, RuleSet
from appliance.flow import DIRECTIONS, REASONS, STATES, VERDICTS, Flow, FlowTable

from test_flow_memory import syn

PKG = pathlib.Path(__file__).resolve().parents[2] / "appliance"
FIELDS = {"state": STATES, "verdict": VERDICTS, "direction": DIRECTIONS, "reason": REASONS}
# flow.py's setter functions, by the field each writes: `set_verdict(flow, X)` writes X
SETTERS = {"set_verdict": "verdict", "set_direction": "direction"}
CONSTANTS = {"NEW": "new", "ESTABLISHED": "established", "CLOSING": "closing", "CLOSED": "closed"}

# Every assignment to an attribute of these names in the package, by (file, function, the
# assigned expression), and what it can write: a literal or constant is checked against its
# set below; an expression is named with why it stays inside (None: not a Flow).
WRITERS = {
    ("flow.py", "_init_flow", "None"): "literal",
    ("flow.py", "_init_flow", "'any'"): "literal",
    ("flow.py", "_init_flow", "''"): "literal",
    ("flow.py", "_init_flow", "NEW"): "literal",
    ("flow.py", "lookup", "'closed'"): "literal",
    ("flow.py", "lookup", "'reused'"): "literal",
    ("flow.py", "_evict", "'evicted'"): "literal",
    ("flow.py", "expire", "'timeout'"): "literal",
    ("flow.py", "remove", "reason"): "the callers' literals (CALLERS)",
    ("flow.py", "drain", "reason"): "the callers' literals (CALLERS) or its default",
    ("flow.py", "_account", "ESTABLISHED"): "literal",
    ("flow.py", "_tcp_state", "CLOSED"): "literal",
    ("flow.py", "_tcp_state", "ESTABLISHED"): "literal",
    ("flow.py", "_tcp_state", "CLOSING"): "literal",
    ("inspector.py", "_process", "self._direction(pkt, not to_server, addrs)"): "Inspector._direction returns literals (checked)",
    ("inspector.py", "_process", "rule.action"): "a MATCH rule decides: its action is in DECISIONS",
    ("inspector.py", "_process", "det.default_action"): "Detector refuses any other than DECISIONS (checked)",
    # flow.py's setters (the compiled Inspector's C calls): a call is listed as its caller's write (SETTERS)
    ("flow.py", "set_verdict", "value"): "its callers' values, listed as their writes",
    ("flow.py", "set_direction", "value"): "its callers' values, listed as their writes",
    # not a Flow: a trace step, the detector's own tables, health and heartbeat states
    ("explain.py", "__init__", "(0, None)"): None,
    ("explain.py", "__init__", "None"): None,
    ("explain.py", "_record", "state"): None,
    ("explain.py", "_record", "'flowbits set: ' + (', '.join(bits) or 'none') + (f'; flowint: {state[1]}' if state[1] else '')"): None,
    ("detect/engine.py", "__init__", "{'inbound': 0, 'outbound': 0, 'any': 0}"): None,
    ("detect/engine.py", "__init__", "FlowState(rules)"): None,
    ("fleet/health.py", "__init__", "(False, ['starting'], time.monotonic())"): None,
    ("fleet/health.py", "set", "(ready, problems, time.monotonic())"): None,
    ("ha/heartbeat.py", "__init__", "state"): None,
    # setattr with a name from a variable: FlowRare's own fields, the queue's counters
    ("flow.py", "__init__", "setattr(self, name, value)"): None,
    ("flow.py", "_rare_set", "setattr(rare, field.name, value)"): None,
    ("source/nfqueue.py", "__init__", "setattr(self, k, 0)"): None,
}


def _stores(target):
    """The attributes a target stores to: itself, or inside a tuple/list/starred target
    (not the ones a subscript or call in it only reads)."""
    if isinstance(target, ast.Attribute):
        yield target
    elif isinstance(target, (ast.Tuple, ast.List)):
        for t in target.elts:
            yield from _stores(t)
    elif isinstance(target, ast.Starred):
        yield from _stores(target.value)


def writers():
    """Every write of an attribute named in FIELDS, in any form Python has: `=` (tuples too),
    `+=`, an annotated `=`, a for/comprehension target, setattr (any setattr whose name is not
    a constant is listed too: it could be one of them); module and class bodies as "<module>"."""
    out = {}

    def add(path, fn, expr, attr):
        out.setdefault((str(path.relative_to(PKG)), fn, expr), set()).add(attr)

    for path in sorted(PKG.rglob("*.py")):
        tree = ast.parse(path.read_text())
        owner = {}
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                for node in ast.walk(fn):
                    owner.setdefault(node, getattr(fn, "name", "<lambda>"))
        # ast.walk is breadth-first: the outermost function claims a node first; the innermost wins below
        for fn in sorted((n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))),
                         key=lambda n: n.lineno):
            for node in ast.walk(fn):
                owner[node] = fn.name
        for node in ast.walk(tree):
            fn = owner.get(node, "<module>")
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                        pairs = list(zip(target.elts, node.value.elts))
                    else:
                        pairs = [(target, node.value)]
                    for t, v in pairs:
                        for sub in _stores(t):   # starred and nested tuple targets too
                            if isinstance(sub, ast.Attribute) and sub.attr in FIELDS:
                                add(path, fn, ast.unparse(v) if sub is t else ast.unparse(node), sub.attr)
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                if isinstance(node.target, ast.Attribute) and node.target.attr in FIELDS:
                    add(path, fn, ast.unparse(node), node.target.attr)
            elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension, ast.withitem)):
                target = node.optional_vars if isinstance(node, ast.withitem) else node.target
                for sub in _stores(target) if target is not None else ():
                    if isinstance(sub, ast.Attribute) and sub.attr in FIELDS:
                        add(path, fn, ast.unparse(target), sub.attr)
            elif isinstance(node, ast.Call) and ast.unparse(node.func) in ("setattr", "object.__setattr__") \
                    and len(node.args) >= 2:
                name = node.args[1]
                if not isinstance(name, ast.Constant) or name.value in FIELDS:
                    add(path, fn, ast.unparse(node), getattr(name, "value", "?"))
            elif isinstance(node, ast.Call) and ast.unparse(node.func).split(".")[-1] in SETTERS:
                assert len(node.args) == 2 and not node.keywords, ast.unparse(node)
                add(path, fn, ast.unparse(node.args[1]), SETTERS[ast.unparse(node.func).split(".")[-1]])
    return out


def test_every_writer_is_listed_and_writes_inside_its_set():
    found = writers()
    assert set(found) == set(WRITERS), "a writer of Flow.state/verdict/direction/reason changed: list it here"
    for (path, fn, expr), why in WRITERS.items():
        if why != "literal":
            continue
        value = CONSTANTS[expr] if expr in CONSTANTS else ast.literal_eval(expr)
        assert all(value in FIELDS[name] for name in found[path, fn, expr]), (path, fn, expr)


def test_the_expressions_stay_inside():
    assert set(DECISIONS) <= set(VERDICTS)
    src = (PKG / "inspector.py").read_text()
    fn = next(n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.FunctionDef) and n.name == "_direction")
    returns = [ast.literal_eval(r.value) if not isinstance(r.value, ast.IfExp) else
               {ast.literal_eval(r.value.body), ast.literal_eval(r.value.orelse)} for r in ast.walk(fn)
               if isinstance(r, ast.Return)]
    flat = set().union(*(r if isinstance(r, set) else {r} for r in returns))
    assert flat <= set(DIRECTIONS) and len(returns) == 4
    # CALLERS: the reasons FlowTable.remove(flow, reason) and drain(reason) are given anywhere in
    # the package, whatever the table is called: a constant each, inside REASONS
    given = set()
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr == "drain" and (node.args or node.keywords):
                reasons = node.args[:1] + [k.value for k in node.keywords if k.arg == "reason"]
            elif node.func.attr == "remove" and len(node.args) + len(node.keywords) == 2:
                reasons = node.args[1:] + [k.value for k in node.keywords if k.arg == "reason"]
            else:
                continue
            for r in reasons:
                assert isinstance(r, ast.Constant), f"{path.name}:{node.lineno}: a flow's end reason must be a constant"
                given.add(r.value)
    assert given and given <= set(REASONS), given - set(REASONS)
    import inspect
    assert inspect.signature(FlowTable.drain).parameters["reason"].default in REASONS


@pytest.mark.parametrize("action", ["alert", "PASS", None, ""])
def test_a_default_action_outside_the_verdicts_is_refused_with_the_rules(action):
    with pytest.raises(ValueError, match="default_action"):
        Detector(RuleSet(rules=[], vars={}, default_action=action))


def test_each_member_round_trips_and_a_stranger_is_refused():
    flow, _, _ = FlowTable().lookup(decode_l3(syn(3), 1.0))
    for name, members in FIELDS.items():
        for value in members:
            setattr(flow, name, value)
            assert getattr(flow, name) == value and type(getattr(flow, name)) is type(value)
        if Flow.__module__ == "appliance._c_flow":       # the pure Flow keeps whatever it is given
            for stranger in ("unknown", 1, b"new", "NEW", ["new"]):
                with pytest.raises(ValueError, match=f"Flow.{name} is one of"):
                    setattr(flow, name, stranger)
                assert getattr(flow, name) == members[-1]    # unchanged


def test_a_new_flow_starts_at_each_sets_first_member():
    """The compiled Flow does not write them in __init__: its zeroed bytes are index 0."""
    flow, _, _ = FlowTable().lookup(decode_l3(syn(4), 1.0))
    assert (flow.state, flow.verdict, flow.direction, flow.reason) == ("new", None, "any", "")
    assert (STATES[0], VERDICTS[0], DIRECTIONS[0], REASONS[0]) == ("new", None, "any", "")
