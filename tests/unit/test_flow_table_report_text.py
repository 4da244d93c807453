"""Review (rvmem): the control plane's flow table (report.flow_table, run on the worker's
datapath thread at its tick) made address text for every tracked flow once Flow.src became
a property: 3-4x the CPU of the base at 200k flows (a 1M-flow table stalls the worker ~2 s
per `appliance flows` request, and again per EMSGSIZE retry), and it flushes decode's
per-packet address cache on the way. Grouping talkers by the key's raw address and making
text only for the rows reported keeps decode's cache as it was."""
import struct
from pathlib import Path

from appliance import decode
from appliance.control.report import flow_table
from appliance.decode import decode_l3
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings
REPO = Path(__file__).resolve().parents[2]

N = 3000


def syn(i):
    src = struct.pack("!BBBB", 10, 7, (i >> 8) & 0xFF, i & 0xFF)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0x4000, 64, 6, 0, src, b"\xc6\x33\x64\x07")
    return ip + struct.pack("!HHIIBBHHH", 40000, 443, i, 0, 0x50, 0x02, 65535, 0, 0)


def test_flow_table_makes_text_only_for_the_rows_it_reports():
    insp = Inspector(load_rules(str(REPO / "rules" / "default.yaml")), Settings(max_flows=N + 10))
    for i in range(N):
        insp.process(decode_l3(syn(i), 1.0 + i * 1e-3))
    decode._V4_NAMES.clear()                   # as a flood past ADDRESS_CACHE_SIZE leaves it, at random
    table = flow_table(insp, 5)
    assert table["active"] == N and len(table["flows"]) == len(table["talkers"]) == 5
    assert {r["src"] for r in table["talkers"]} <= {f"10.7.{i >> 8}.{i & 255}" for i in range(N)}
    # 5 flows' two ends and 5 talkers: nothing else was turned into text
    assert len(decode._V4_NAMES) <= 15, len(decode._V4_NAMES)
