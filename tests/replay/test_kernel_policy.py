"""Kernel pre-decision, proved against the engine in replay: for generated header-heavy rule sets,
the benchmark rule sets (bench/rulegen.py) and the shared corpus, every flow the compiled
kernel policy decides gets exactly the engine's verdict, flow by flow (detect/kernel_policy.py).

Two looks at each flow: the Inspector's own (a packet of a kernel-decided flow whose verdict
differs is a `kernel.policy_mismatch` anomaly and a counter), and this file's, which evaluates
the policy again on each flow record's header and compares it with the record's action.
"""
import random
from pathlib import Path

import pytest
from scapy.all import UDP as ScapyUDP, Raw

from replaykit import CORPUS, Capture, TcpConn, ip_of, l2
from appliance.detect.kernel_policy import KERNEL_DECIDED
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings
from appliance.output.eve import EveList
from appliance.packet import SYN
from appliance.replay import replay
from bench.rulegen import rules_yaml

HOME = ["10.0.0.0/8", "fd00::/8"]
V4 = ["10.1.2.3", "10.9.9.9", "192.0.2.10", "198.51.100.20", "203.0.113.7"]
V6 = ["fd00::1", "fd00:1::2", "2001:db8::5", "2001:db8:1::9"]
ADDRS = ["10.0.0.0/8", "10.1.0.0/16", "192.0.2.0/24", "198.51.100.0/24", "\"!10.0.0.0/8\"", "203.0.113.7",
         "fd00::/8", "\"!fd00::/8\"", "2001:db8::/32", "$HOME_NET", "$EXTERNAL_NET",
         "[10.0.0.0/8, \"!10.1.0.0/16\"]", "[192.0.2.0/24, \"2001:db8::/32\"]"]
PORTS = ["80", "[80, 443]", "\"1000-2000\"", "\"!53\"", "[22, \"8000-8099\"]", "53", "\"![80, 443]\""]
SPORTS, DPORTS = (40000, 1500, 53, 80), (80, 443, 53, 1500, 22, 8080, 9999)


def header_rules(seed, n=14):
    """A random rule set of mostly header-only verdict rules, with the things that keep a flow
    out of the kernel mixed in: logging verdicts, alert rules, names, content, flow keywords,
    `header: packet`, `<>`, ICMP rules."""
    rng = random.Random(seed)
    out = [f"default_action: {rng.choice(('pass', 'drop', 'reject'))}", "rules:"]
    for i in range(n):
        r = [f"  - id: {i + 1}", f"    msg: r{i + 1}"]
        kind = rng.random()
        action = rng.choice(("pass", "pass", "drop", "reject")) if kind > 0.12 else "alert"
        r.append(f"    action: {action}")
        proto = rng.choice(("tcp", "udp", "tcp", "ip", "icmp"))
        r.append(f"    proto: {proto}")
        if action in ("drop", "reject") and rng.random() < 0.8:
            r.append("    log: false")
        for key in ("src", "dst"):
            if rng.random() < 0.5:
                r.append(f"    {key}: {rng.choice(ADDRS)}")
        if proto in ("tcp", "udp"):
            for key in ("src_port", "dst_port"):
                if rng.random() < (0.3 if key == "src_port" else 0.7):
                    r.append(f"    {key}: {rng.choice(PORTS)}")
        if rng.random() < 0.3:
            r.append(f"    direction: {rng.choice(('inbound', 'outbound'))}")
        extra = rng.random()
        if extra < 0.06 and proto in ("tcp", "ip"):
            r.append("    http_host: a.example")
        elif extra < 0.10:
            r.append("    content: \"GET\"")
        elif extra < 0.13:
            r.append("    flow: [established]")
        elif extra < 0.16 and action != "alert":
            r.append("    header: packet")
        elif extra < 0.19:
            r.append("    bidirectional: true")
        out += r
    return "\n".join(out) + "\n"


def traffic(seed, flows=60):
    """TCP conversations and UDP exchanges between the address pools, v4 and v6."""
    rng = random.Random(seed)
    cap = Capture()
    for n in range(flows):
        pool = V4 if rng.random() < 0.7 else V6
        client, server = rng.sample(pool, 2)
        # (low source ports 53, 80: a UDP flow from one is read both ways, never kernel-decided)
        sport, dport = rng.choice(SPORTS) + n * 7 % 5, rng.choice(DPORTS)
        if rng.random() < 0.65:
            c = TcpConn(cap, client, sport, server, dport)
            c.handshake()
            c.send(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")
            c.recv(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            c.close()
        else:
            cap.add(l2(ip_of(client, server) / ScapyUDP(sport=sport, dport=dport) / Raw(b"query")))
            cap.add(l2(ip_of(server, client) / ScapyUDP(sport=dport, dport=sport) / Raw(b"answer")))
    return cap


def check_flows(res, policy, home):
    """Flow by flow: each flow the Inspector marked kernel-decided gets the policy's verdict again
    from its record's header, that verdict is the engine's action, and the engine wrote no
    alert and no protocol log for it (the kernel writes none). Returns the count."""
    decided = 0
    seen = {e["flow_id"] for e in res.events if e["event_type"] in ("alert", "dns", "tls", "http")}
    for e in res.of("flow"):
        if e["flow"].get("bypass") != KERNEL_DECIDED:
            continue
        decided += 1
        assert e["flow_id"] not in seen, [x for x in res.events if x.get("flow_id") == e["flow_id"]]
        proto = {"TCP": 6, "UDP": 17}[e["proto"]]
        s, d = home.contains(e["src_ip"]), home.contains(e["dest_ip"])
        way = "inbound" if d and not s else "outbound" if s and not d else "any"
        kv = policy.decide(proto, e["src_ip"], e["src_port"], e["dest_ip"], e["dest_port"], way, SYN)
        assert kv == e["flow"]["action"], (e, kv)
    return decided


def assert_equivalent(res):
    c = res.insp.counters
    mism = [e for e in res.of("anomaly") if e["anomaly"].get("event") == "kernel.policy_mismatch"]
    assert c.kernel_mismatch == 0 and not mism, mism[:3]
    stats = res.of("stats")[-1]["stats"]["appliance"]["kernel_decisions"]
    assert stats == {"flows": c.kernel_decided, "mismatch": 0}
    return check_flows(res, res.insp.kernel_policy, res.insp.ruleset.home_net)


@pytest.mark.parametrize("mode", ["enforce", "monitor"])
def test_generated_rule_sets_kernel_verdict_is_the_engines(run, rules_file, mode):
    decided = queued = 0
    for seed in range(16):
        rules = rules_file(header_rules(seed))
        res = run(traffic(seed), rules, home_net=HOME, kernel_decisions=True, mode=mode,
                  eve_types=("alert", "anomaly", "flow", "stats"))
        n = assert_equivalent(res)
        decided += n
        queued += len(res.of("flow")) - n
    # both sides of the policy were exercised: flows decided in the kernel and flows queued
    assert decided > 100 and queued > 100, (decided, queued)


def test_protocol_logs_keep_passed_flows_queued(run, rules_file):
    rules = rules_file("default_action: pass\nrules:\n"
                       "  - {id: 1, msg: a, action: drop, proto: tcp, dst_port: 22, log: false}\n")
    cap = Capture()
    for port in (22, 80):
        c = TcpConn(cap, "192.0.2.10", 40000 + port, "10.1.2.3", port)
        c.handshake()
        c.close()
    res = run(cap, rules, home_net=HOME, kernel_decisions=True)        # every EVE type: http/tls/dns logs on
    assert_equivalent(res)
    kernel = {e["dest_port"]: e["flow"].get("bypass") for e in res.of("flow")}
    assert kernel[22] == KERNEL_DECIDED and kernel[80] != KERNEL_DECIDED, kernel


def test_rulegen_rule_sets(run, rules_file):
    """The benchmark's rule sets (names and content everywhere): whatever the kernel takes, it
    takes with the engine's verdict."""
    for n in (10, 200):
        rules = rules_file(rules_yaml(n))
        res = run(traffic(n), rules, home_net=HOME, kernel_decisions=True, eve_types=("alert", "anomaly", "flow", "stats"))
        assert_equivalent(res)


def test_kernel_decisions_off_by_default_marks_nothing(run, rules_file):
    rules = rules_file(header_rules(3))
    res = run(traffic(3), rules, home_net=HOME, eve_types=("alert", "anomaly", "flow", "stats"))
    assert res.insp.kernel_policy is None
    assert not [e for e in res.of("flow") if e["flow"].get("bypass") == KERNEL_DECIDED]
    assert "kernel_decisions" not in res.of("stats")[-1]["stats"]["appliance"]


CAPTURES = sorted(p for p in CORPUS.rglob("*") if p.name.endswith((".pcap", ".pcapng", ".pcap.gz"))) \
    if CORPUS.is_dir() else []
CORRUPT = "truncated_dns_2.pcap"


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus absent")
@pytest.mark.parametrize("seed", [1, 5])
def test_corpus_kernel_verdict_is_the_engines(tmp_path, seed):
    """Every capture of the corpus, with a generated header rule set over the corpus's own
    addresses' space (any address, the rules' ports) and the shipped defaults."""
    text = header_rules(seed, n=20).replace("$HOME_NET", "any")
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    eve = EveList()
    ruleset = load_rules([str(path)])
    insp = Inspector(ruleset, Settings(kernel_decisions=True, eve_types=("alert", "anomaly", "flow", "stats")), eve)
    replay([str(p) for p in CAPTURES if p.name != CORRUPT], insp)
    insp.close()
    insp.stats_event()

    class Res:
        events = eve.events

        def of(self, t):
            return [e for e in self.events if e["event_type"] == t]
    res = Res()
    res.insp = insp
    n = assert_equivalent(res)
    assert n > 0


NO_LOGS = ("alert", "anomaly", "flow", "stats")


def http_flow(cap, client, cport, server, sport):
    c = TcpConn(cap, client, cport, server, sport)
    c.handshake()
    c.send(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")
    c.recv(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    c.close()


def test_passed_flow_with_a_protocol_log_on_stays_queued(run, rules_file):
    """A pass rule decides from the header, but the http log reads the flow's transactions:
    the flow is queued (the kernel would lose the log)."""
    rules = rules_file("default_action: drop\nrules:\n  - {id: 1, msg: a, action: pass, proto: tcp, dst_port: 80}\n")
    cap = Capture()
    http_flow(cap, "192.0.2.10", 40000, "10.1.2.3", 80)
    res = run(cap, rules, home_net=HOME, kernel_decisions=True)
    assert assert_equivalent(res) == 0 and res.of("http")
    res = run(cap, rules, home_net=HOME, kernel_decisions=True, eve_types=NO_LOGS)
    assert assert_equivalent(res) == 1


def test_bidirectional_rule_queues_both_orientations(run, rules_file):
    """`<>`: the rule also fits with the sides swapped, so a flow it fits only that way is
    queued (the engine drops it) instead of falling through to the default pass."""
    rules = rules_file("default_action: pass\nrules:\n"
                       "  - {id: 1, msg: a, action: drop, proto: tcp, src: 192.0.2.0/24, dst_port: 80,"
                       " bidirectional: true, log: false}\n")
    cap = Capture()
    http_flow(cap, "10.1.2.3", 80, "192.0.2.10", 40000)      # fits only swapped
    http_flow(cap, "10.1.2.3", 40001, "198.51.100.20", 443)   # fits neither way: the default, in the kernel
    res = run(cap, rules, home_net=HOME, kernel_decisions=True, eve_types=NO_LOGS)
    assert assert_equivalent(res) == 1
    assert res.flow_action(src_ip="10.1.2.3", src_port=80) == "drop"


def test_packet_header_rule_is_left_to_the_engine(run, rules_file):
    """`header: packet`: the rule judges each packet by its own header. One fitting only the
    reply is not the flow's verdict when a later rule decides on the first packet; alone, it
    drops the reply: either way the flow goes to the engine, never to the default in the kernel."""
    for later in ("  - {id: 2, msg: b, action: pass, proto: tcp}\n", ""):
        rules = rules_file("default_action: pass\nrules:\n"
                           "  - {id: 1, msg: a, action: drop, proto: tcp, src_port: 80, header: packet, log: false}\n"
                           + later)
        cap = Capture()
        http_flow(cap, "10.1.2.3", 40000, "192.0.2.10", 80)
        res = run(cap, rules, home_net=HOME, kernel_decisions=True, eve_types=NO_LOGS)
        assert assert_equivalent(res) == 0
        assert res.flow_action(src_port=40000) == ("pass" if later else "drop")


def test_monitored_rule_file_is_left_to_the_worker(run, rules_file):
    """A rule file in monitor mode: its drop and its default action only pass (would_drop) in
    the worker, which keeps those flows (a reload that enforces the file stops them there; a
    kernel pass would outlive it); an enforcing file's drop is still the kernel's."""
    rules_file("mode: monitor\ndefault_action: drop\nrules:\n"
               "  - {id: 1, msg: a, action: drop, proto: tcp, dst_port: 22, log: false}\n", name="a.yaml")
    rules = rules_file("rules:\n  - {id: 2, msg: b, action: drop, proto: tcp, dst_port: 23, log: false}\n",
                       name="b.yaml")
    cap = Capture()
    for port in (22, 23, 80):
        http_flow(cap, "192.0.2.10", 40000 + port, "10.1.2.3", port)
    res = run(cap, str(Path(rules).parent), home_net=HOME, kernel_decisions=True, eve_types=NO_LOGS)
    assert assert_equivalent(res) == 1                  # the kernel decides 23 only
    assert [res.flow_action(dest_port=p) for p in (22, 23, 80)] == ["pass", "drop", "pass"]


def test_cli_kernel_decisions_schema_valid(tmp_path, eve_validator):
    """`appliance replay --kernel-decisions`: the marks land in schema-valid EVE (flow.bypass
    is a string there; stats.appliance is the documented extension)."""
    from replaykit import cli, schema_errors
    import json
    rules = tmp_path / "r.yaml"
    rules.write_text(header_rules(5))
    cap = traffic(5, flows=20).write(tmp_path / "t.pcap")
    eve = tmp_path / "eve.json"
    r = cli("replay", cap, "--rules", rules, "--home-net", ",".join(HOME), "--eve", eve, "--kernel-decisions",
            "--eve-types", "alert,anomaly,flow,stats", "--quiet")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in eve.read_text().splitlines()]
    assert schema_errors(eve_validator, events) == []
    marked = [e for e in events if e["event_type"] == "flow" and e["flow"].get("bypass") == KERNEL_DECIDED]
    stats = [e for e in events if e["event_type"] == "stats"][-1]["stats"]["appliance"]["kernel_decisions"]
    assert marked and stats == {"flows": len(marked), "mismatch": 0}


def test_a_policy_that_disagrees_is_reported(tmp_path):
    """The Inspector's own check: a kernel policy giving another verdict than the engine (here a
    hand-built one that drops everything, for rules that pass it) is a `kernel.policy_mismatch`
    anomaly on the flow's packets and a count in the stats."""
    from appliance.detect.kernel_policy import KernelPolicy
    path = tmp_path / "r.yaml"
    path.write_text("default_action: pass\nrules: []\n")
    eve = EveList()
    insp = Inspector(load_rules([str(path)]), Settings(kernel_decisions=True, eve_types=NO_LOGS), eve)
    insp.kernel_policy = KernelPolicy((), "drop")
    cap = Capture()
    http_flow(cap, "192.0.2.10", 40000, "10.1.2.3", 80)
    replay([cap.write(tmp_path / "t.pcap")], insp)
    insp.stats_event()
    assert insp.counters.kernel_mismatch >= 1
    assert [e for e in eve.events if e["event_type"] == "anomaly"
            and e["anomaly"].get("event") == "kernel.policy_mismatch"]
