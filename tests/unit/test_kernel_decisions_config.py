"""inspection.kernel_decisions: validated at its line, off by default, on only when asked; and
the nftables text the policy becomes (netfilter_decisions.table_text) keeps the policy's order,
guard and marks. The kernel's reading of that text: tests/netns/test_kernel_decisions.py."""
from appliance.config import ConfigError, load_config
from appliance.detect.kernel_policy import compile_policy
from appliance.detect.loader import load_rules
from appliance.inspector import settings_from_config
from appliance.netfilter import offload_marks
from appliance.netfilter_decisions import table_text


def write(tmp_path, text, name="appliance.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_kernel_decisions_key(tmp_path):
    base = "interfaces: {outside: eth0, inside: eth1}\n"
    assert load_config(write(tmp_path, base)).inspection.kernel_decisions is False
    cfg = load_config(write(tmp_path, base + "inspection:\n  kernel_decisions: true\n"))
    assert cfg.inspection.kernel_decisions is True
    assert settings_from_config(cfg).kernel_decisions is True       # replay --config follows it
    path = write(tmp_path, base + "inspection:\n  max_flows: 10\n  kernel_decisions: maybe\n")
    try:
        load_config(path)
        raise AssertionError("accepted")
    except ConfigError as e:
        assert f"{path}:4: inspection.kernel_decisions must be true or false, got 'maybe'" in e.problems


RULES = """\
default_action: reject
rules:
  - {id: 1, msg: a, action: alert, proto: tcp, dst_port: 22}
  - {id: 2, msg: b, action: pass, proto: tcp, src: "![10.0.0.0/8, 2001:db8::/32]", dst_port: [80, 81, "82-90"]}
  - {id: 3, msg: c, action: drop, proto: udp, dst: 10.1.0.0/16, direction: inbound, log: false}
  - {id: 4, msg: d, action: pass, tls_sni: a.example}
"""


def test_table_text_in_policy_order(tmp_path):
    rs = load_rules([write(tmp_path, RULES, "r.yaml")])
    text = table_text(compile_policy(rs), "eth0", "eth1", 0xC0000000)
    inbound = text[text.index("chain APPLIANCE-DECIDE-IN"):text.index("chain APPLIANCE-DECIDE-OUT")]
    outbound = text[text.index("chain APPLIANCE-DECIDE-OUT"):]
    order = [line.split('comment "rule ')[1].strip('" ') for line in inbound.splitlines() if 'comment "rule ' in line]
    # the alert rule first, both orientations (its reply is seen too), then the rules in order
    assert order[:2] == ["1", "1"] and order.index("2") < order.index("3") < order.index("4")
    assert 'th dport { 22 } goto APPLIANCE-DECIDE-QUEUE comment "rule 1"' in inbound \
        and 'th sport { 22 } goto APPLIANCE-DECIDE-QUEUE comment "rule 1"' in inbound
    pass_mark = offload_marks(0xC0000000)["pass"]
    assert "ip saddr != @e1_saddr4 meta l4proto tcp th dport { 80-90 } counter goto APPLIANCE-DECIDE-PASS" in inbound
    assert f"ct mark set ct mark & 0x3fffffff | 0x{pass_mark:08x} accept" in text   # the offload pass mark
    assert "ip6 saddr != @e1_saddr6" in inbound
    assert "rule 3" in inbound and "rule 3" not in outbound             # direction: inbound only
    assert "udp sport < 1024 udp dport >= 1024 goto APPLIANCE-DECIDE-QUEUE" in inbound   # the engine's first-packet guard
    assert "tcp flags & (syn | ack) != syn goto APPLIANCE-DECIDE-QUEUE" in inbound
    assert inbound.rstrip().endswith('counter goto APPLIANCE-DECIDE-REJECT comment "default action"\n  }')


LISTED = """table inet appliance_decide {
	set e0_saddr4 {
		type ipv4_addr
		flags interval
		elements = { 10.2.0.0/16 }
	}

	set flows_queued4 {
		type ipv4_addr . ipv4_addr . inet_proto . inet_service . inet_service
		size 262144
		flags dynamic,timeout
		elements = { 10.2.0.2 . 10.1.0.2 . udp . 9501 . 9700 timeout 30s expires 29s,
			     10.2.0.2 . 10.1.0.2 . udp . 9502 . 9700 timeout 30s expires 28s }
	}
	chain APPLIANCE-DECIDE-IN {
		meta nfproto ipv4 ip saddr @e0_saddr4 meta l4proto udp th dport { 9500 } counter packets 3 bytes 90 goto APPLIANCE-DECIDE-DROP comment "rule 1"
		meta l4proto tcp th dport { 22 } counter packets 2 bytes 80 goto APPLIANCE-DECIDE-REJECT comment "rule 3"
		counter packets 5 bytes 300 ct mark set ct mark & 0xffffcfff | 0x00001000 accept comment "default action"
	}
}
"""


def test_listing_ignores_the_flow_sets_traffic_fills_and_counts_each_verdict():
    from appliance.netfilter_decisions import _without_flows, counters
    kept = _without_flows(LISTED)
    assert "9501" not in kept and "expires" not in kept           # the traffic's flows are no drift
    assert "elements = { 10.2.0.0/16 }" in kept                    # a rule's addresses are
    assert kept.count("}") == LISTED.count("}") - 1
    assert counters(LISTED) == {("rule 1", "drop"): 3, ("rule 3", "reject"): 2, ("default action", "pass"): 5}


def _blocklist(n, extra=""):
    lines = ["default_action: pass", "rules:"]
    for i in range(n):
        lines.append(f"  - {{id: {i + 1}, msg: b{i}, action: drop, src: 100.{64 + i // 256}.{i % 256}.0/24, log: false}}")
    return "\n".join(lines) + "\n" + extra


def test_a_block_list_is_one_set_lookup_with_the_same_first_fit(tmp_path):
    """A chain walks its rules one by one (bench/kernel_chain.py: 10,000 block-list rules
    cost ~7 ms per new flow): adjacent entries differing in one address field are one rule."""
    import random
    from appliance.detect.kernel_policy import KernelPolicy
    from appliance.netfilter_decisions import merged
    extra = """\
  - {id: 9001, msg: x, action: drop, dst: "fd02::/64", log: false}
  - {id: 9002, msg: y, action: drop, dst: 10.2.0.0/16, log: false}
  - {id: 9003, msg: z, action: pass, proto: tcp, dst: 10.3.0.0/16}
  - {id: 9004, msg: w, action: drop, dst: 10.3.0.0/16, log: false}
  - {id: 9005, msg: v, action: drop, src: "!10.4.0.0/16", dst: 10.4.0.0/16, log: false}
  - {id: 9006, msg: u, action: drop, src: "!10.5.0.0/16", dst: 10.4.0.0/16, log: false}
"""
    policy = compile_policy(load_rules([write(tmp_path, _blocklist(1000, extra), "r.yaml")]))
    runs = merged(policy.entries)
    assert [label for _, label in runs] == ["rules 1-1000", "rules 9001-9002", "rule 9003", "rule 9004",
                                            "rule 9005", "rule 9006"]
    text = table_text(policy, "eth0", "eth1", 0x3000)
    inbound = text[text.index("chain APPLIANCE-DECIDE-IN"):text.index("chain APPLIANCE-DECIDE-OUT")]
    assert sum('comment "rules 1-1000"' in line for line in inbound.splitlines()) == 1
    # the merged walk's first fit is the original's, packet for packet
    flat = KernelPolicy(tuple(e for e, _ in runs), policy.default)
    rng = random.Random(5)
    addrs = ["100.64.3.9", "100.67.231.1", "100.68.0.1", "10.2.9.9", "10.3.1.1", "10.4.1.1", "10.5.1.1",
             "10.4.7.7", "8.8.8.8", "fd02::5", "fd01::2"]
    for _ in range(1000):
        v6 = rng.random() < 0.2
        pool = [a for a in addrs if (":" in a) == v6]
        args = (rng.choice((6, 17)), rng.choice(pool), rng.randrange(1024, 65536), rng.choice(pool),
                rng.choice((80, 443, 5000)), rng.choice(("inbound", "outbound")), 2)
        assert flat.decide(*args) == policy.decide(*args), args


def test_a_pcap_log_keeps_the_flows_it_records_queued(tmp_path):
    """Only a worker writes the pcap log: with `mode: alerts` (dropped and rejected flows
    recorded) the kernel decides passes only, with `mode: all` nothing (found by review: a
    kernel-dropped flow was missing from the pcap log the operator asked for)."""
    from appliance.detect.kernel_policy import QUEUE
    from appliance.inspector import Inspector, Settings
    from appliance.output.pcap_log import PcapLog, PcapLogConfig
    rs = load_rules([write(tmp_path, "default_action: reject\nrules:\n"
                           "  - {id: 1, action: pass, proto: tcp, dst_port: 80}\n"
                           "  - {id: 2, action: drop, proto: udp, dst_port: 9999, log: false}\n", "r.yaml")])
    web = (6, "192.0.2.1", 40000, "10.1.2.3", 80, "inbound", 0x02)             # rule 1 passes it
    dropped = (17, "192.0.2.1", 40000, "10.1.2.3", 9999, "inbound", 0)         # rule 2 drops it
    other = (17, "192.0.2.1", 40000, "10.1.2.3", 5000, "inbound", 0)           # the default rejects it
    def decide(pcap_mode):
        log = None if pcap_mode is None else PcapLog(PcapLogConfig(str(tmp_path / pcap_mode), pcap_mode), "q0")
        settings = Settings(kernel_decisions=True, eve_types=("alert",))     # no protocol log
        policy = Inspector(rs, settings, None, log).kernel_policy
        return [policy.decide(*k) for k in (web, dropped, other)]
    assert decide(None) == ["pass", "drop", "reject"]
    assert decide("alerts") == ["pass", QUEUE, QUEUE]
    assert decide("all") == [QUEUE, QUEUE, QUEUE]


def test_the_configs_pcap_log_reaches_the_kernels_policy(tmp_path):
    """`appliance run` compiles the table from its Config: a `pcap_log` there keeps the flows it
    records queued, as the Inspector's own policy does."""
    from appliance.detect.kernel_policy import QUEUE, policy_for
    rs = load_rules([write(tmp_path, "rules:\n  - {id: 2, action: drop, proto: udp, dst_port: 9999, log: false}\n",
                          "r.yaml")])
    dropped = (17, "192.0.2.1", 40000, "10.1.2.3", 9999, "inbound", 0)
    base = (f"interfaces: {{outside: eth0, inside: eth1}}\neve: {{path: {tmp_path / 'eve.json'}, types: [alert]}}\n"
            "inspection: {kernel_decisions: true}\n")
    plain = load_config(write(tmp_path, base))
    logged = load_config(write(tmp_path, base + f"pcap_log: {{dir: {tmp_path / 'pl'}}}\n", "logged.yaml"))
    assert policy_for(plain, rs).decide(*dropped) == "drop"
    assert policy_for(logged, rs).decide(*dropped) is QUEUE
