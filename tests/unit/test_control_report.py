"""What a worker reports to the control plane and how /metrics bounds it: real Inspector,
real packets, real rules, the real prometheus_client exposition."""
import pickle
import re

from scapy.all import IP, TCP, raw

from appliance.config import Config, Control
from appliance.control.board import Board
from appliance.control.metrics import generate_latest, registry
from appliance.control.report import channel, flow_table, snapshot, Reporter
from appliance.decode import decode_l3
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings
from appliance.source.nfqueue import Counters

N_RULES = 50


def _inspected(tmp_path, top=5, alerting=range(N_RULES), workers=1):
    rules = tmp_path / "rules.yaml"
    rules.write_text("default_action: pass\nrules:\n" + "".join(
        f"  - {{id: {2000 + i}, msg: 'port {10000 + i}', action: alert, proto: tcp, dst_port: {10000 + i}}}\n"
        for i in range(N_RULES)))
    rs = load_rules([str(rules)])
    ins = Inspector(rs, Settings())
    # rule i alerts on i+1 flows from 10.0.<i>.x: a different count for each sid
    t = 1.0
    for i in alerting:
        for j in range(i + 1):
            syn = IP(src=f"10.0.{i}.{j + 1}", dst="10.9.9.9") / TCP(sport=40000 + j, dport=10000 + i, flags="S")
            ins.process(decode_l3(raw(syn), t))
            t += 0.001
    cfg = Config(outside="a", inside="b", workers=workers, control=Control(top=top))
    return cfg, rs, ins


def test_alert_labels_are_the_top_sids_plus_other(tmp_path):
    cfg, rs, ins = _inspected(tmp_path, top=5)
    snap = snapshot(0, ins, Counters(), top=5)
    assert [sid for sid, _, _ in snap["rules_top"]] == [2049, 2048, 2047, 2046, 2045]
    board = Board(cfg, rs)
    board.latest[0] = snap
    text = generate_latest(registry(board)).decode()
    sids = dict(re.findall(r'^appliance_rule_alerts_total\{sid="(\w+)"\} (\S+)$', text, re.M))
    total = N_RULES * (N_RULES + 1) // 2
    top = sum(range(46, 51))
    assert set(sids) == {"2049", "2048", "2047", "2046", "2045", "other"}     # 6 series for 50 alerting sids
    assert float(sids["2049"]) == 50 and float(sids["other"]) == total - top
    assert re.search(r'^appliance_verdicts_total\{action="pass",queue="0"\} ' + f"{total}.0$", text, re.M)
    assert re.search(r"^appliance_flows_active\{queue=\"0\"\} " + f"{total}.0$", text, re.M)


def test_the_sids_of_several_workers_stay_within_the_top(tmp_path):
    """Each worker sends its own top; merged, /metrics still names `control.top` sids."""
    cfg, rs, ins_a = _inspected(tmp_path, top=5, workers=2)
    _, _, ins_b = _inspected(tmp_path, top=5, alerting=range(10), workers=2)   # other sids lead here
    board = Board(cfg, rs)
    board.latest = {0: snapshot(0, ins_a, Counters(), top=5), 1: snapshot(1, ins_b, Counters(), top=5)}
    text = generate_latest(registry(board)).decode()
    sids = re.findall(r'^appliance_rule_alerts_total\{sid="(\w+)"\}', text, re.M)
    assert len(sids) == 6 and sids[-1] == "other", sids


def test_a_snapshot_is_one_small_message(tmp_path):
    _, _, ins = _inspected(tmp_path, top=20)
    data = pickle.dumps(("snapshot", snapshot(0, ins, Counters(), top=20)), pickle.HIGHEST_PROTOCOL)
    assert len(data) < 4096, len(data)           # what a worker sends each second, whatever the traffic


def test_flow_table_answers_the_top_flows_and_talkers(tmp_path):
    _, _, ins = _inspected(tmp_path)
    table = flow_table(ins, 3)
    assert table["active"] == N_RULES * (N_RULES + 1) // 2
    assert len(table["flows"]) == 3 and len(table["talkers"]) == 3
    row = table["flows"][0]
    assert row["proto"] == 6 and row["dst"] == "10.9.9.9" and row["verdict"] in ("pass", "undecided")
    assert set(row) >= {"flow_id", "src", "sport", "dport", "state", "offloaded", "pkts", "bytes", "age"}


def test_requests_are_answered_at_the_tick_and_a_full_channel_never_blocks(tmp_path):
    cfg, rs, ins = _inspected(tmp_path)
    counters = Counters()
    sup, wrk = channel()
    rep = Reporter(wrk, 0, top=5)
    sup.send(pickle.dumps(("flows", 7, 2)))
    rep.tick(ins, counters)
    first, second = pickle.loads(sup.recv(1 << 20)), pickle.loads(sup.recv(1 << 20))
    assert first[:3] == ("flows", 7, 0) and len(first[3]["flows"]) == 2
    assert second[0] == "snapshot" and second[1]["queue"] == 0
    for _ in range(10000):                        # nobody reads: sends are skipped, not waited for
        rep.tick(ins, counters)
        if rep.skipped:
            break
    assert rep.skipped >= 1


def test_a_flows_reply_too_big_for_one_message_comes_with_fewer_rows(tmp_path):
    import socket
    _, _, ins = _inspected(tmp_path)
    sup, wrk = channel()
    wrk.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)   # a small buffer: 1000 rows do not fit
    rep = Reporter(wrk, 0)
    sup.send(pickle.dumps(("flows", 9, 1000)))
    rep.tick(ins, Counters())
    reply = pickle.loads(sup.recv(1 << 20))
    assert reply[:3] == ("flows", 9, 0) and 1 <= len(reply[3]["flows"]) < 1000


def test_a_large_table_is_walked_beside_the_packet_loop(tmp_path):
    """More flows than WALK_INLINE: the tick only takes a snapshot of the table and a thread
    walks it (a million flows would stall the queue for seconds on the loop); the answer is
    the one a walk in one go gives."""
    from appliance.control import report
    from scapy.all import UDP
    rules = tmp_path / "rules.yaml"
    rules.write_text("default_action: pass\nrules: []\n")
    ins = Inspector(load_rules([str(rules)]), Settings())
    for i in range(report.WALK_INLINE + 500):
        pkt = IP(src=f"10.{i >> 8 & 255}.{i & 255}.1", dst="10.9.9.9") / UDP(sport=1000, dport=53) / (b"x" * (i % 97))
        ins.process(decode_l3(raw(pkt), 1.0 + i * 1e-4))
    sup, wrk = channel()
    rep = Reporter(wrk, 0)
    sup.send(pickle.dumps(("flows", 3, 10)))
    rep.tick(ins, Counters())
    assert rep.walker is not None and rep.walker.name == "flows-q0"
    sup.settimeout(30)
    replies = [pickle.loads(sup.recv(1 << 20)) for _ in range(2)]
    flows = [m for m in replies if m[0] == "flows"]
    assert [m[:3] for m in flows] == [("flows", 3, 0)]
    got, want = flows[0][3], flow_table(ins, 10)
    for table in (got, want):
        for row in table["flows"]:
            row.pop("age"), row.pop("idle")
    assert got == want and got["active"] == report.WALK_INLINE + 500 and len(got["flows"]) == 10


def test_at_most_four_large_walks_wait(tmp_path):
    """Each waiting walk holds a snapshot of the table: more requests than WALKS_MAX in one
    tick are not answered (the supervisor's wait ends)."""
    from appliance.control import report
    from scapy.all import UDP
    rules = tmp_path / "rules.yaml"
    rules.write_text("default_action: pass\nrules: []\n")
    ins = Inspector(load_rules([str(rules)]), Settings())
    for i in range(report.WALK_INLINE + 10):
        pkt = IP(src=f"10.{i >> 8 & 255}.{i & 255}.1", dst="10.9.9.9") / UDP(sport=1000, dport=53)
        ins.process(decode_l3(raw(pkt), 1.0 + i * 1e-4))
    sup, wrk = channel()
    rep = Reporter(wrk, 0)
    for rid in range(2, 9):
        sup.send(pickle.dumps(("flows", rid, 5)))
    rep.tick(ins, Counters())
    rep.walker.join(30)
    sup.setblocking(False)
    got = []
    while True:
        try:
            got.append(pickle.loads(sup.recv(1 << 20)))
        except BlockingIOError:
            break
    assert sorted(m[1] for m in got if m[0] == "flows") == [2, 3, 4, 5]
