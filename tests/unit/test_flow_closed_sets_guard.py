"""Review (rvft): tests/unit/test_flow_closed_sets.py is the only guard that keeps a value outside
flow.STATES/VERDICTS/DIRECTIONS/REASONS from reaching the compiled Flow (where it is a ValueError,
and FlowTable.drain/expire/remove run outside Inspector.process's catch: close(), tick). Its
scanner sees only `x.attr = value` and calls `<...flows...>.remove/drain(<constant>)`: each
writer below passes it unseen. (It loads the guard as a module.)"""
import importlib
import shutil

import pytest

guard = importlib.import_module("test_flow_closed_sets")

HIDDEN = {
    "setattr": "    setattr(flow, 'verdict', rule.action)\n",
    "augassign": "    flow.reason += '!'\n",
    "annassign": "    flow.state: str = 'half-open'\n",
    "for-target": "    for flow.direction in ('sideways',):\n        pass\n",
    "remove-variable-reason": "    self.flows.remove(flow, why)\n",
    "drain-other-receiver": "    table.drain('flushed')\n",
}


@pytest.mark.parametrize("name", sorted(HIDDEN))
def test_a_hidden_writer_is_seen(name, tmp_path, monkeypatch):
    pkg = tmp_path / "appliance"
    shutil.copytree(guard.PKG, pkg, ignore=shutil.ignore_patterns("*.so", "*.c", "*.sha256", "__pycache__"))
    with open(pkg / "inspector.py", "a") as f:
        f.write(f"\n\ndef _rvft_hidden(self, flow, rule, why, table):\n{HIDDEN[name]}")
    monkeypatch.setattr(guard, "PKG", pkg)
    with pytest.raises(AssertionError):
        guard.test_every_writer_is_listed_and_writes_inside_its_set()
        guard.test_the_expressions_stay_inside()
