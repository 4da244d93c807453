"""Replay every capture of the shared corpus through the shipped rules (skipped when absent):
no crash, no internal error, exit 0 except the known-corrupt file, schema-valid EVE, and
spot checks from MANIFEST.md."""
import json

import pytest

from replaykit import CORPUS, REPO, cli, schema_errors
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings
from appliance.output.eve import EveList
from appliance.replay import replay

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus absent")

CAPTURES = sorted(p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob("*")
                  if p.name.endswith((".pcap", ".pcapng", ".pcap.gz"))) if CORPUS.is_dir() else []
# Corrupt at the file level (the record header of its only packet is cut short after the packet).
CORRUPT = {"dpkt/examples/data/truncated_dns_2.pcap": "corrupt after packet 1"}
BIG = "stopddos-packet-captures/pkt.TCP.synflood.spoofed.pcap"     # 37,841 packets


def replay_api(paths, rules, **settings):
    eve = EveList()
    insp = Inspector(load_rules(rules), Settings(**settings), eve)
    res = replay([str(CORPUS / p) for p in paths], insp)
    insp.stats_event()
    return eve.events, res, insp


def test_corpus_is_there():
    assert len(CAPTURES) >= 60
    assert set(CORRUPT) <= set(CAPTURES)


@pytest.mark.parametrize("name", CAPTURES)
def test_replay_capture_with_shipped_rules(name, eve_validator):
    events, res, insp = replay_api([name], str(REPO / "rules"))
    assert res.packets > 0
    assert insp.counters.internal_errors == 0, [e for e in events if e["event_type"] == "anomaly"
                                                 and e["anomaly"]["layer"] == "engine"]
    if name in CORRUPT:
        assert len(res.errors) == 1 and CORRUPT[name] in res.errors[0]
    else:
        assert res.errors == []
    assert events[-1]["event_type"] == "stats"
    # (fragments held for reassembly are not counted yet: see test_stats_count_every_frame_including_fragments)
    assert events[-1]["stats"]["decoder"]["pkts"] == res.packets   # every frame, held fragments too
    sample = events if len(events) <= 3000 else events[:1500] + events[-1500:]
    assert schema_errors(eve_validator, sample) == []
    for e in events[:-1]:
        assert e["pcap_filename"] == name.rsplit("/", 1)[1]
        assert 1 <= e["pcap_cnt"] <= res.packets


def test_cli_exit_codes_over_the_corpus(tmp_path):
    rules = str(REPO / "rules")
    good = [str(CORPUS / n) for n in CAPTURES if n not in CORRUPT and n != BIG]
    eve = tmp_path / "eve.json"
    cp = cli("replay", *good, "--rules", rules, "--eve", eve)
    assert cp.returncode == 0, cp.stderr[-2000:]
    assert "error" not in cp.stderr
    lines = eve.read_text().splitlines()
    assert json.loads(lines[-1])["event_type"] == "stats"
    bad = [str(CORPUS / n) for n in CORRUPT]
    cp = cli("replay", *bad, good[0], "--rules", rules, "--eve", eve)
    assert cp.returncode == 2
    errs = [x for x in cp.stderr.splitlines() if x.startswith("error:")]
    assert len(errs) == len(CORRUPT) and all(any(n in e for n in CORRUPT) for e in errs)


def alerts(events, sid=None):
    return [e for e in events if e["event_type"] == "alert" and (sid is None or e["alert"]["signature_id"] == sid)]


def test_flowbit_oring_uid_root(rules_file):
    events, _, _ = replay_api(["suricata-verify/tests/flowbit-oring/input.pcap"], str(REPO / "rules"))
    [a] = alerts(events)
    assert a["alert"]["signature_id"] == 1101
    assert a["src_ip"] == "82.165.177.154" and a["direction"] == "to_client"


def test_tls_client_hello_over_several_segments(rules_file):
    rules = rules_file("rules:\n  - {id: 9, action: alert, proto: tcp, tls_sni: www.google.com}\n")
    events, _, _ = replay_api(["suricata-verify/tests/tls/tls-client-hello-frag-01/dump_mtu300.pcap"], rules)
    [a] = alerts(events, 9)
    assert a["tls"]["sni"] == "www.google.com" and a["app_proto"] == "tls"
    [f] = [e for e in events if e["event_type"] == "flow"]
    assert f["app_proto"] == "tls" and f["flow_id"] == a["flow_id"] and f["flow"]["alerted"]


def test_tls_sni_on_raw_link_type(rules_file):
    rules = rules_file("default_action: drop\nrules:\n  - {id: 9, action: pass, tls_sni: ftp.nluug.nl}\n")
    events, res, _ = replay_api(["suricata-verify/tests/bug-5758/input.pcap"], rules)
    [f] = [e for e in events if e["event_type"] == "flow"]
    assert f["flow"]["action"] == "pass" and f["metadata"] == {"flowbits": ["verdict_rule:9"]}
    assert res.verdicts == {"pass": 41}


def test_sofacy_dns_name(rules_file):
    rules = rules_file("rules:\n  - {id: 7, action: drop, dns_query: '*.info', log: true}\n")
    events, _, _ = replay_api(["suricata-verify/tests/bug-2158/public-ex1_section8_Sofacy.pcap"], rules)
    names = [q["rrname"] for a in alerts(events, 7) for q in a["dns"]["queries"]]
    assert any("drivres-update" in n for n in names)
    assert all(a["alert"]["action"] == "blocked" and a["src_ip"] == "192.168.35.10" for a in alerts(events, 7))


def test_no_3whs_is_not_established(rules_file):
    rules = rules_file("""
rules:
  - {id: 1, action: alert, proto: tcp, flow: established, content: "MATCH?"}
  - {id: 2, action: alert, proto: tcp, flow: not_established, content: "MATCH?"}
""")
    events, _, _ = replay_api(["suricata-verify/tests/alert-no-3whs-established/no-3whs.pcap"], rules)
    sids = {a["alert"]["signature_id"] for a in alerts(events)}
    assert sids == {2}


def test_dns_over_tcp_every_transaction(rules_file):
    rules = rules_file("rules:\n  - {id: 1, action: alert, proto: tcp, dns_query: ['google.com', 'aol.com']}\n")
    events, _, _ = replay_api(["suricata-verify/tests/issues/issue-4759.1/tcpdns.pcap"], rules)
    assert sorted(a["dns"]["queries"][0]["rrname"] for a in alerts(events, 1)) == ["aol.com", "google.com"]


def test_http_host_in_corpus_and_pcapng(rules_file):
    rules = rules_file("rules:\n  - {id: 1, action: alert, http_host: bro.org}\n")
    for name in ("zeek/testing/btest/Traces/http/get.pcap", "local/http-get.pcapng",
                 "zeek/testing/btest/Traces/http-vlan-0.pcap"):
        events, _, _ = replay_api([name], rules)
        [a] = alerts(events, 1)
        assert a["http"]["hostname"] == "bro.org", name
