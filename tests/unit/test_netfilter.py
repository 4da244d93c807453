"""The owned ruleset's text and its command runner (the live behaviour is in tests/netns)."""
import re

import pytest

from appliance import netfilter


def test_offload_marks_are_the_two_bits_of_the_mask():
    assert netfilter.offload_marks(0x3000) == {"pass": 0x1000, "drop": 0x2000, "reject": 0x3000}
    assert netfilter.offload_marks(0x80000001) == {"pass": 0x1, "drop": 0x80000000, "reject": 0x80000001}


@pytest.mark.parametrize("mask", [0x3000, 0x300000, 0xC0000000])
def test_every_mark_rule_matches_and_saves_under_our_mask_only(mask):
    text = netfilter.chains_text(4, "eth0", "eth1", range(0, 2), True, mask)
    marks = re.findall(r"--(?:mark|set-xmark|nfmask|ctmask) (?:0x[0-9a-f]+/)?(0x[0-9a-f]+)", text)
    assert marks and set(marks) == {f"0x{mask:x}"}, text
    assert "--restore-mark" not in text and "--set-mark" not in text    # nothing overwrites others' bits


def test_a_wedged_iptables_is_a_netfilter_error_not_a_crash():
    with pytest.raises(netfilter.NetfilterError, match="did not finish within 0.2s"):
        netfilter._run(["sleep", "5"], timeout=0.2)


def test_the_stopped_ruleset_keeps_the_offloaded_verdicts_and_queues_nothing():
    running = netfilter.chains_text(4, "eth0", "eth1", range(0, 1), True, 0x3000)
    stopped = netfilter.chains_text(4, "eth0", "eth1", range(0, 1), True, 0x3000, inspecting=False)
    assert "NFQUEUE" in running and "NFQUEUE" not in stopped and "CONNMARK" not in stopped
    verdicts = [line for line in running.splitlines() if "-m connmark" in line and "-j CONNMARK" not in line]
    assert len(verdicts) == 4 and all(line in stopped.splitlines() for line in verdicts)


def test_a_bare_syn_on_a_marked_connection_loses_the_mark_before_the_verdict_rules():
    # conntrack keeps an aborted connection's entry (and mark) for the next one on its ports
    # (after the server's RST): every bare SYN goes to a worker (tests/netns/test_rst_port_reuse.py)
    rules = netfilter.chains_text(4, "eth0", "eth1", range(0, 1), True, 0x3000).splitlines()
    syn = [i for i, r in enumerate(rules) if "--tcp-flags SYN,ACK,FIN,RST SYN" in r]
    assert len(syn) == 1
    # not a NEW entry's: its mark is the kernel_decisions table's verdict on this very SYN
    assert rules[syn[0]] == ("-A APPLIANCE-INSPECT -p tcp --tcp-flags SYN,ACK,FIN,RST SYN -m conntrack ! --ctstate NEW "
                             "-m connmark ! --mark 0x0/0x3000 -j CONNMARK --set-xmark 0x0/0x3000")
    assert "--ctstate INVALID -j DROP" in rules[syn[0] - 1]      # only what conntrack accepted
    assert all("-m connmark --mark" not in r for r in rules[:syn[0]])
    # an open-mode stop queues nothing: a SYN there must not unmark an offloaded drop
    stopped = netfilter.chains_text(4, "eth0", "eth1", range(0, 1), True, 0x3000, inspecting=False)
    assert "--tcp-flags" not in stopped


def test_a_slow_drift_check_is_spaced_out_to_a_twentieth_of_the_time():
    from appliance.run import WATCH_INTERVAL, watch_interval
    assert watch_interval(0.05) == WATCH_INTERVAL              # the usual iptables listing: every 5 s
    assert watch_interval(2.4) == pytest.approx(48.0)           # a 10,000-rule decisions table: 5 % of the time
