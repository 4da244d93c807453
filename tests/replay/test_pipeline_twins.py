"""Review s16: the whole Inspector, pure vs compiled, on hostile TCP conversations (sequence
numbers at the 32-bit edges, overlapping retransmissions with other bytes, segments without
ACK, ACKs of unsent / very old data, RST/FIN/SYN mixes, port reuse, bad checksums, SYN-proxied
ports, server-first banners, literals cut over segments) with 90 rules of every kind
(header-only, content single/several/nocase, stream/both, flowbits, names, stat_code,
drop/reject/pass with hold true/false, header: packet), enforce and monitor mode, a reload half
way: per packet the verdict, offload, would, alerts, discard, anomalies, flow state, tcp_seen,
ISN, FlowRare's fields, the receiver's numbers; every EVE event and the counters
(tests/replay/pipeline_fuzz.py makes them, each build in its own process)."""
import json
import os
import subprocess
import sys

import pytest

from appliance import compiled

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

pytestmark = pytest.mark.skipif("pure" in compiled.describe(), reason="compiled hot path not (wholly) built")


def one(seed, n, kind, mode, reload, pure, rules_dir):
    env = {k: v for k, v in os.environ.items() if k != "APPLIANCE_PURE_PYTHON"}
    env["PYTHONPATH"] = ROOT
    env["FUZZ_DIR"] = str(rules_dir)
    if pure:
        env["APPLIANCE_PURE_PYTHON"] = "1"
    cp = subprocess.run([sys.executable, os.path.join(HERE, "pipeline_fuzz.py"), str(seed), str(n), kind, mode,
                         "1" if reload else "0"], cwd=ROOT, env=env, capture_output=True, text=True)
    if cp.returncode:
        return {"error": cp.stderr[-3000:]}
    return json.loads(cp.stdout)


def compare(seed, n, kind, mode, reload, rules_dir):
    p = one(seed, n, kind, mode, reload, True, rules_dir)
    c = one(seed, n, kind, mode, reload, False, rules_dir)
    if "error" in p or "error" in c:
        return f"error: pure={p.get('error')} compiled={c.get('error')}"
    assert p["describe"].startswith("pure") and c["describe"] == "compiled", (p["describe"], c["describe"])
    for a, b in zip(p["rows"], c["rows"]):
        if a != b:
            return f"row {a[0]}:\n pure     {a}\n compiled {b}"
    if p["eve"] != c["eve"]:
        for k, (a, b) in enumerate(zip(p["eve"], c["eve"])):
            if a != b:
                return f"eve {k}:\n pure     {a}\n compiled {b}"
        return f"eve lengths {len(p['eve'])} {len(c['eve'])}"
    if p["counters"] != c["counters"]:
        return f"counters {p['counters']} {c['counters']}"
    alerts = sum(len(r[4]) for r in p["rows"])
    discards = {r[5] for r in p["rows"]}
    return f"same ({alerts} alerts, {len(p['eve'])} events, actions {sorted({r[1] for r in p['rows']})}, " \
           f"discards {len(discards)}, errors {p['counters'][0]})"



@pytest.mark.parametrize("seed,kind,mode,reload", [
    (1, "rules", "enforce", False), (2, "yaml", "enforce", False), (9, "rules", "monitor", True),
    (41, "rules-alert", "enforce", True), (42, "yaml-alert", "monitor", False), (61, "yaml-sf", "monitor", True),
    (30, "yaml-sf", "enforce", False)])
def test_pipeline_pure_and_compiled_alike(seed, kind, mode, reload, tmp_path):
    got = compare(seed, 1500, kind, mode, reload, tmp_path)
    assert got.startswith("same"), got
