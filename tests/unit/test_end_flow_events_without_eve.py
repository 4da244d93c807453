"""Review (rvhot3), a test gap: Inspector._end_flow builds the protocol events of a flow's
unanswered transactions only for an EVE writer; no test watched that half of the cut (flip:
build them always -> test_inspected_path_work still passes)."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

END_FLOW_CALLS = r"""
import json, sys
from scapy.all import IP, TCP, raw
from appliance import compiled
from appliance.decode import decode_l3
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector
from appliance.output import events
from appliance.output.eve import EveWriter
assert not compiled.active, compiled.active
insp = Inspector(load_rules(sys.argv[1]), eve=EveWriter(sys.argv[2]) if len(sys.argv) > 2 else None)
c, s = "10.0.0.1", "10.0.0.2"
pkts = [IP(src=c, dst=s) / TCP(sport=40000, dport=80, flags="S", seq=100),
        IP(src=s, dst=c) / TCP(sport=80, dport=40000, flags="SA", seq=500, ack=101),
        IP(src=c, dst=s) / TCP(sport=40000, dport=80, flags="A", seq=101, ack=501),
        IP(src=c, dst=s) / TCP(sport=40000, dport=80, flags="PA", seq=101, ack=501)
        / b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"]
for i, p in enumerate(pkts):
    insp.process(decode_l3(raw(p), ts=1.0 + i / 10))
built = []
watched = events.protocol.__code__
sys.setprofile(lambda f, e, a: built.append(1) if e == "call" and f.f_code is watched else None)
insp.close()                                   # the request was never answered: logged as the flow ends
sys.setprofile(None)
print(json.dumps(len(built)))
"""


def _built(rules, *eve):
    env = dict(os.environ, APPLIANCE_PURE_PYTHON="1")
    out = subprocess.run([sys.executable, "-c", END_FLOW_CALLS, str(rules), *map(str, eve)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_an_ending_flows_unanswered_transactions_build_no_event_without_eve(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {id: 1, action: pass, proto: tcp}\n")
    eve = tmp_path / "eve.json"
    assert _built(rules, eve) == 1
    assert [json.loads(x)["event_type"] for x in eve.read_text().splitlines()].count("http") == 1
    assert _built(rules) == 0
