"""EVE under pressure: a flood's events are bounded (anomalies per kind and source, one-
packet flows), the file is bounded on disk (rotation), and a full or failing disk never
changes a verdict, is said once, counted, and recovered from."""
import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap

import pytest
from scapy.all import IP, IPv6, IPv6ExtHdrDestOpt, TCP, UDP, Raw, raw

from replaykit import REPO, Capture, cli, l2
from appliance.decode import decode_l3
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings
from appliance.output import limits
from appliance.output.eve import EveList, EveWriter

RULES = "default_action: pass\nrules:\n  - {id: 1, action: alert, proto: udp, dst_port: 9999}\n"


def _bad_mss_syn(src, sport, ts):
    """44 bytes: a SYN whose MSS option claims 5 bytes (tcp.opt_invalid_len)."""
    return decode_l3(raw(IP(src=src, dst="10.0.0.80") / TCP(sport=sport, dport=443, flags="S",
                                                         options=[(2, b"\x05\xb4\x00")])), ts)


def test_anomalies_limited_per_kind_and_source(rules_file):
    insp = Inspector(load_rules(rules_file(RULES)), Settings(), EveList())
    for i in range(1000):                                  # one source, 1000 bad SYNs in 10 s
        insp.process(_bad_mss_syn("203.0.113.1", 1024 + i, 1000.0 + i / 100))
    for i in range(1000):                                  # 1000 spoofed sources in 1 s
        insp.process(_bad_mss_syn(f"198.18.{i >> 8}.{i & 255}", 2000, 2000.0 + i / 1000))
    anomalies = [e for e in insp.eve.events if e["event_type"] == "anomaly"]
    kinds = {e["anomaly"]["event"] for e in anomalies}
    assert len(kinds) == 1
    assert len(anomalies) == 1 + limits.ANOMALY_PER_SECOND
    st = insp.stats_event()["stats"]["appliance"]
    assert st["anomalies"] == {kinds.pop(): 2000} and st["anomalies_suppressed"] == 2000 - len(anomalies)


def test_one_event_per_anomaly_kind_per_packet(rules_file):
    """17 destination-options headers: the decoder used to report 15 events for one packet."""
    opts = IPv6ExtHdrDestOpt()
    for _ in range(16):
        opts = opts / IPv6ExtHdrDestOpt()
    pkt = decode_l3(raw(IPv6(src="2001:db8::1", dst="2001:db8::2") / opts / UDP(sport=1, dport=2)), 1.0)
    # the decoder reports a repeated header once; a kind repeated by another layer of it
    # (say a tunnel's inner header) must still make one event
    pkt.anomalies = list(pkt.anomalies) * 3
    insp = Inspector(load_rules(rules_file(RULES)), Settings(), EveList())
    insp.process(pkt)
    names = [e["anomaly"]["event"] for e in insp.eve.events if e["event_type"] == "anomaly"]
    assert sorted(names) == sorted(set(pkt.anomalies))
    st = insp.stats_event()["stats"]["appliance"]              # a kind counts once per packet
    assert st["anomalies"] == {name: 1 for name in set(pkt.anomalies)} and st["anomalies_suppressed"] == 0


def test_one_packet_flows_counted_not_each_logged(rules_file):
    """A spoofed SYN flood: 5,000 one-packet flows through a 100-flow table. Their flow
    events are bounded per second; the rest are counted in stats. Flows of more than one
    packet are all logged."""
    # protocol logs off: on, a SYN's flow waits for its first bytes (unconfirmed, not final)
    insp = Inspector(load_rules(rules_file(RULES)), Settings(max_flows=100, eve_types=("alert", "anomaly", "flow", "stats")), EveList())
    for i in range(5000):
        src = bytes((198, 18, i >> 8, i & 255))
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0x4000, 64, 6, 0, src, bytes((10, 0, 0, 80)))
        insp.process(decode_l3(ip + struct.pack("!HHIIBBHHH", 1024, 443, i, 0, 0x50, 0x02, 65535, 0, 0),
                               3000.0 + i / 1000))
    flows = [e for e in insp.eve.events if e["event_type"] == "flow"]
    assert len(flows) <= limits.UNCONFIRMED_FLOWS_PER_SECOND * 6
    st = insp.stats_event()["stats"]
    assert st["appliance"]["flows_unlogged"]["evicted"] == 4900 - len(flows)
    assert st["flow"]["mgr"]["flows_evicted"] == 4900
    assert st["appliance"]["flows_evicted"] == {"final": 4900, "unconfirmed": 0, "pending": 0}   # no rule for them


def test_answered_spoofed_syns_are_bounded_too(rules_file):
    """Live, the server answers each spoofed SYN (and retransmits its SYN/ACK): two-way
    flows whose client never completes the handshake are still a flood's, not each logged."""
    insp = Inspector(load_rules(rules_file(RULES)), Settings(max_flows=100), EveList())
    for i in range(3000):
        src = bytes((198, 18, i >> 8, i & 255))
        t = 3000.0 + i / 1000
        syn = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0x4000, 64, 6, 0, src, bytes((10, 0, 0, 80)))
        insp.process(decode_l3(syn + struct.pack("!HHIIBBHHH", 1024, 443, i, 0, 0x50, 0x02, 65535, 0, 0), t))
        synack = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0x4000, 64, 6, 0, bytes((10, 0, 0, 80)), src)
        insp.process(decode_l3(synack + struct.pack("!HHIIBBHHH", 443, 1024, 7, i + 1, 0x50, 0x12, 65535, 0, 0), t))
    flows = [e for e in insp.eve.events if e["event_type"] == "flow"]
    assert len(flows) <= limits.UNCONFIRMED_FLOWS_PER_SECOND * 4
    assert insp.stats_event()["stats"]["appliance"]["flows_unlogged"]["evicted"] == 2900 - len(flows)


def test_eve_rotates_at_max_bytes_and_keeps_keep_files(tmp_path):
    path = tmp_path / "eve.json"
    w = EveWriter(str(path), max_bytes=8192, keep=3)
    for i in range(2000):
        w.write({"event_type": "flow", "n": i, "pad": "x" * 60})
    w.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["eve.json", "eve.json.1", "eve.json.2", "eve.json.3"]
    slack = EveWriter.CHECK_EVERY * 100                     # checked every 64 lines of ~90 bytes
    for name in names:
        assert (tmp_path / name).stat().st_size <= 8192 + slack
        [json.loads(x) for x in (tmp_path / name).read_text().splitlines()]
    last = [json.loads(x)["n"] for x in path.read_text().splitlines()]
    assert last[-1] == 1999 and w.rotations > 3 and w.lost == 0


def test_second_writer_follows_a_rotation_by_another(tmp_path):
    """Workers share one file: the one that did not rotate reopens PATH on its next check."""
    path = str(tmp_path / "eve.json")
    a, b = EveWriter(path, max_bytes=4096, keep=2), EveWriter(path, max_bytes=4096, keep=2)
    for i in range(400):
        a.write({"w": "a", "i": i, "pad": "x" * 40})
        b.write({"w": "b", "i": i, "pad": "x" * 40})
    a.close(), b.close()
    current = [json.loads(x) for x in open(path)]
    assert {e["w"] for e in current} == {"a", "b"}                # both write into the new file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eve.json", "eve.json.1", "eve.json.2"]


def test_eve_to_dev_full_changes_no_verdict(tmp_path, rules_file):
    """Every write fails (ENOSPC): replay decides exactly as without EVE, says so once on
    stderr, counts the lost events, exits 0."""
    cap = Capture()
    for i in range(50):
        cap.add(l2(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1000 + i, dport=9999) / Raw(b"x")))
    pcap = cap.write(tmp_path / "a.pcap")
    rules = rules_file(RULES)
    full = cli("replay", pcap, "--rules", rules, "--eve", "/dev/full")
    plain = cli("replay", pcap, "--rules", rules)
    assert full.returncode == 0 and "Traceback" not in full.stderr, full.stderr
    verdicts = [x for x in full.stderr.splitlines() if x.startswith(("verdicts:", "packets:"))]
    assert verdicts == [x for x in plain.stderr.splitlines() if x.startswith(("verdicts:", "packets:"))]
    assert full.stderr.count("cannot write (No space left on device)") == 1


ENOSPC_CHILD = textwrap.dedent("""
    import json, os, struct, subprocess, sys
    d = sys.argv[1]
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", d], check=True)
    from appliance.decode import decode_l3
    from appliance.detect.loader import load_rules
    from appliance.inspector import Inspector, Settings
    from appliance.output.eve import EveWriter
    rules = load_rules(sys.argv[2])
    def packets(base, n):
        for i in range(n):
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 29, 0, 0x4000, 64, 17, 0, bytes((10, 0, i >> 8, i & 255)),
                             bytes((10, 9, 9, 9)))
            yield decode_l3(ip + struct.pack("!HHHH", 1000, 9999, 9, 0) + b"x", base + i / 100)
    path = os.path.join(d, "eve.json")
    eve = EveWriter(path)
    live, bare = Inspector(rules, Settings(), eve), Inspector(rules, Settings())
    out = {"same": True}
    for phase, base, n in (("full", 1000.0, 1500), ("freed", 5000.0, 50)):
        for p, q in zip(packets(base, n), packets(base, n)):
            a, b = live.process(p), bare.process(q)
            out["same"] &= (a.action, a.offload, [r.id for r in a.alerts]) == (b.action, b.offload, [r.id for r in b.alerts])
        live.tick(base + 400), bare.tick(base + 400)          # flow events from tick(), outside any packet
        out[phase] = {"written": eve.count, "lost": eve.lost}
        if phase == "full":
            os.truncate(path, 0)                               # space comes back
    out["stats"] = live.stats_event()["stats"]["appliance"]
    out["lines_ok"] = all(json.loads(x) is not None for x in open(path).read().splitlines() if x.strip())
    print(json.dumps(out))
""")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare(1)")
def test_real_enospc_changes_no_verdict_and_recovers(tmp_path, rules_file):
    """A real full file system: a 64 KiB tmpfs mounted in a private mount namespace (gone
    with the process). Verdicts equal a run without EVE; events lost are counted and said
    once; once space returns, events are written again; every line is JSON."""
    script = tmp_path / "child.py"
    script.write_text(ENOSPC_CHILD)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cp = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, str(script), str(mnt),
                         rules_file(RULES)], cwd=REPO, capture_output=True, text=True, timeout=300,
                        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert cp.returncode == 0, cp.stderr
    out = json.loads(cp.stdout)
    assert out["same"] and out["lines_ok"]
    assert out["full"]["lost"] > 0 and out["freed"]["written"] > out["full"]["written"]
    assert out["freed"]["lost"] == out["full"]["lost"]         # nothing lost after space came back
    assert out["stats"]["eve"]["lost"] == out["full"]["lost"] and out["stats"]["internal_errors"] == 0
    assert cp.stderr.count("cannot write (No space left on device)") == 1
    assert cp.stderr.count("writing again") == 1
    assert not any(mnt.iterdir())                              # the tmpfs was never ours to see
