"""The rule sets shipped in rules/ load cleanly, alone and per example file."""
from pathlib import Path

import pytest

from appliance.detect.loader import check, load_rules

RULES = Path(__file__).resolve().parents[2] / "rules"
EXAMPLES = sorted((RULES / "examples").glob("*.yaml"))


def test_default_directory_loads():
    assert check(RULES) == []
    rs = load_rules(RULES)
    assert rs.default_action == "pass"
    assert [Path(s).name for s in rs.sources] == ["default.yaml"]   # examples/ is not loaded
    assert len(rs.rules) >= 10
    assert {r.action for r in rs.rules} >= {"drop", "alert"}


def test_examples_exist():
    assert {p.name for p in EXAMPLES} >= {"sni-allowlist.yaml", "dns-blocklist.yaml", "http-host.yaml",
                                           "thresholds.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_each_example_loads(path):
    assert check(path) == []
    assert load_rules(path).rules


def test_ids_unique_across_all_shipped_files():
    seen = {}
    for path in [RULES / "default.yaml", *EXAMPLES]:
        for r in load_rules(path).rules:
            assert r.id not in seen, f"id {r.id} in {path} and {seen[r.id]}"
            seen[r.id] = path


def test_sni_allowlist_behaviour():
    rs = load_rules(RULES / "examples" / "sni-allowlist.yaml")
    assert rs.default_action == "drop"
    [tls] = [r for r in rs.rules if r.tls_sni]
    names = ("www.example.com", "example.com", "s3.amazonaws.com")
    assert all(any(p.matches(n) for p in tls.tls_sni) for n in names)
    assert not any(p.matches("example.com.evil.net") for p in tls.tls_sni)
    assert tls.action == "pass" and tls.order < rs.rules[-1].order and rs.rules[-1].action == "drop"


def test_default_rules_match_their_classic_triggers():
    by_id = {r.id: r for r in load_rules(RULES).rules}
    assert by_id[1101].content[0].value == b"uid=0(root)"
    assert by_id[1102].dst_port.contains(80)
    assert by_id[1201].tcp_flags.matches(0x02) and not by_id[1201].tcp_flags.matches(0x12)
    assert by_id[1002].dst.contains("10.0.0.5") and by_id[1002].src.contains("203.0.113.9")
    assert not by_id[1002].src.contains("10.0.0.5")
    assert by_id[1104].regex.search(b"GET /cgi-bin/../../etc/shadow HTTP/1.1")


def test_readme_rule_examples_are_valid(tmp_path):
    """The rule files shown in README.md load as they are written."""
    import re
    from appliance.detect.loader import check
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S) if "rules:" in b]
    assert blocks
    for i, block in enumerate(blocks):
        f = tmp_path / f"readme-{i}.yaml"
        f.write_text(block)
        assert check([str(f)]) == [], block
