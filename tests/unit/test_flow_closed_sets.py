"""Flow.state, verdict, direction and reason are closed sets (flow.STATES, VERDICTS,
DIRECTIONS, REASONS): the compiled Flow holds each as a one-byte index behind a property,
so a value outside its set cannot be stored. These tests keep it impossible to write one:
every writer in the package is listed here with what it writes, and each listed value
round-trips through the compiled Flow (docs/performance.md, "Flow fields as bytes")."""
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
CONSTANTS = {"NEW": "new", "ESTABLISHED": "established", "CLOSING": "closing", "CLOSED": "closed"}

# Every assignment to an attribute of these names in the package, by (file, function, the
# assigned expression), and what it can write: a literal or constant is checked against its
# set below; an expression is named with why it stays inside (None: not a Flow).
WRITERS = {
    ("flow.py", "__init__", "None"): "literal",
    ("flow.py", "__init__", "'any'"): "literal",
    ("flow.py", "__init__", "''"): "literal",
    ("flow.py", "__init__", "NEW"): "literal",
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
    ("inspector.py", "_process", "self._direction(flow, pkt)"): "Inspector._direction returns literals (checked)",
    ("inspector.py", "_process", "rule.action"): "a MATCH rule decides: its action is in DECISIONS",
    ("inspector.py", "_process", "det.default_action"): "Detector refuses any other than DECISIONS (checked)",
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
}


def writers():
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if not isinstance(node, ast.Assign):
                    continue
                for target in node.targets:
                    pairs = []
                    if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                        pairs = list(zip(target.elts, node.value.elts))
                    else:
                        pairs = [(target, node.value)]
                    for t, v in pairs:
                        if isinstance(t, ast.Attribute) and t.attr in FIELDS:
                            key = (str(path.relative_to(PKG)), fn.name, ast.unparse(v))
                            out.setdefault(key, set()).add(t.attr)
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
    # CALLERS: the reasons FlowTable.remove and drain are given anywhere in the package
    given = set()
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("remove", "drain") and "flows" in ast.unparse(node.func.value)):
                given |= {ast.literal_eval(a) for a in node.args if isinstance(a, ast.Constant)}
    assert given and given <= set(REASONS)
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
