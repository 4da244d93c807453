"""A fleet worker's SIGUSR1 stats line reaches the shared stderr in one write, newline
included: every worker writes to the supervisor's stderr at the same moment, and a line
written in two parts (print() under PYTHONUNBUFFERED) let two workers' lines run together."""
import json
import sys

from appliance.detect.loader import load_rules
from appliance.fleet.worker import Worker
from appliance.inspector import Inspector, Settings
from appliance.source.gwlb import GwlbSource, Senders


class Unbuffered:
    """What stderr is under PYTHONUNBUFFERED: every write() goes out as it is given."""
    def __init__(self):
        self.writes = []

    def write(self, text):
        self.writes.append(text)
        return len(text)

    def flush(self):
        pass


def test_the_stats_line_is_one_write_with_its_newline(tmp_path, monkeypatch):
    rules = tmp_path / "r.yaml"
    rules.write_text("default_action: pass\nrules: []\n")
    w = Worker(cfg=None, index=1, ruleset=None, sock=None, control=None, status=None)
    w.eve = None
    w.inspector = Inspector(load_rules([str(rules)]), Settings(), None)
    w.src = GwlbSource(None, Senders(["127.0.0.1/32"]))
    err = Unbuffered()
    monkeypatch.setattr(sys, "stderr", err)
    w.write_stats()
    assert len(err.writes) == 1 and err.writes[0].endswith("\n")
    line = json.loads(err.writes[0])
    assert line["gwlb_worker"] == 1 and "gwlb" in line and "verdicts" in line
