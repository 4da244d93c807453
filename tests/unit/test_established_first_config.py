"""`overload.established_first`: the config key, and the ruleset that queues a flow's first
packets on a second range of queues. The live behaviour (a spoofed flood of new flows while
an established connection keeps being inspected) is tests/netns/test_established_first.py."""
import pytest

from appliance import netfilter
from appliance.config import Overload
from appliance.control.kernel import rule_role

from test_overload_config import _load, _problems   # (tests/unit on the path: pytest's rootdir import)


def test_established_first_is_off_unless_configured_and_stands_alone(tmp_path):
    assert _load(tmp_path, "overload: {new_flows_per_source: 10}\n").overload.established_first is False
    assert _load(tmp_path, "overload: {established_first: true}\n").overload == Overload(None, None, None, True)
    assert _load(tmp_path, "overload: {established_first: false, new_flows_per_source: 5}\n").overload == Overload(5, 5)
    # false on its own: nothing in the section is on
    assert _load(tmp_path, "overload: {established_first: false}\n").overload is None


@pytest.mark.parametrize("text, line, words", [
    ("overload:\n  established_first: yes please\n", 3, "overload.established_first must be true or false"),
    ("overload:\n  established_first: 1\n", 3, "overload.established_first must be true or false"),
    # the second range must fit: 65533 + 2 workers = queues 65533-65534, new flows 65535-65536
    ("queue_base: 65533\noverload:\n  established_first: true\n", 4, "needs queues up to 65536"),
])
def test_bad_established_first_settings_are_file_line_problems(tmp_path, text, line, words):
    got = _problems(tmp_path, text)
    assert any(p.startswith(f"{tmp_path / 'appliance.yaml'}:{line}: ") and words in p for p in got), got


def test_the_last_range_that_fits_is_accepted(tmp_path):
    cfg = _load(tmp_path, "queue_base: 65532\nworkers: 2\noverload: {established_first: true}\n")
    assert list(netfilter.new_flow_queues(cfg.queues)) == [65534, 65535]


def test_the_second_range_follows_the_first_and_is_as_long():
    assert netfilter.new_flow_queues(range(0, 1)) == range(1, 2)
    assert netfilter.new_flow_queues(range(10, 14)) == range(14, 18)


@pytest.mark.parametrize("queues, new, rest", [
    (range(0, 2), "--queue-balance 2:3", "--queue-balance 0:1"),
    (range(7, 8), "--queue-num 8", "--queue-num 7"),
])
@pytest.mark.parametrize("fail_open", [True, False])
def test_new_flows_and_bare_syns_queue_on_the_second_range_everything_else_on_the_first(queues, new, rest, fail_open):
    for family in (4, 6):
        rules = netfilter.chains_text(family, "eth0", "eth1", queues, fail_open, 0x3000,
                                      overload=Overload(100, 100, None, True)).splitlines()
        queued = [r for r in rules if "NFQUEUE" in r]
        bypass = " --queue-bypass" if fail_open else ""
        assert queued == [f"-A APPLIANCE-INSPECT -m conntrack --ctstate NEW,RELATED -j NFQUEUE {new}{bypass}",
                          f"-A APPLIANCE-INSPECT -p tcp --tcp-flags SYN,ACK,FIN,RST SYN -j NFQUEUE {new}{bypass}",
                          f"-A APPLIANCE-INSPECT -j NFQUEUE {rest}{bypass}"]
        # after the source limit (a limited new flow is dropped, not queued), last in the chain
        assert rules.index(queued[0]) > max(i for i, r in enumerate(rules) if "hashlimit" in r)
        assert rules[rules.index(queued[-1]) + 1] == "COMMIT"
        assert [rule_role("APPLIANCE-INSPECT", q.split(" ", 2)[2]) for q in queued] == ["queued_new", "queued_new", "queued"]


def test_without_the_switch_or_when_not_inspecting_there_is_one_queue_rule():
    for overload in (None, Overload(100, 100), Overload(100, 100, None, False)):
        rules = netfilter.chains_text(4, "eth0", "eth1", range(0, 2), True, 0x3000, overload=overload)
        assert [r for r in rules.splitlines() if "NFQUEUE" in r] == ["-A APPLIANCE-INSPECT -j NFQUEUE --queue-balance 0:1 --queue-bypass"]
    stopped = netfilter.chains_text(4, "eth0", "eth1", range(0, 2), True, 0x3000, inspecting=False,
                                    overload=Overload(None, None, None, True))
    assert "NFQUEUE" not in stopped
