"""The JSON Schema of rule files: valid itself, accepts shipped files, rejects mistakes."""
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from appliance.detect.keywords import RULE_KEYS
from appliance.detect.loader import check
from appliance.detect.schema import rule_schema

RULES = Path(__file__).resolve().parents[2] / "rules"
SHIPPED = sorted(RULES.glob("*.yaml")) + sorted((RULES / "examples").glob("*.yaml"))


def validator():
    schema = rule_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(doc):
    """Every message, including those inside anyOf/oneOf branches."""
    out, todo = [], list(validator().iter_errors(doc))
    while todo:
        e = todo.pop()
        out.append(e.message)
        todo.extend(e.context)
    return out


def test_schema_is_valid_draft_2020_12():
    schema = rule_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_schema_knows_exactly_the_loader_keys_and_describes_each():
    props = rule_schema()["$defs"]["rule"]["properties"]
    assert tuple(props) == RULE_KEYS
    assert all(p.get("description") for p in props.values())
    assert all(p.get("description") for p in rule_schema()["properties"].values())


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_files_validate(path):
    assert SHIPPED and errors(yaml.safe_load(path.read_text())) == []


def test_committed_schema_file_is_current():
    # editors read rules/rules.schema.json (see the modeline in each shipped file)
    assert json.loads((RULES / "rules.schema.json").read_text()) == rule_schema()


@pytest.mark.parametrize("doc", [
    {"rules": [{"id": 1, "action": "alert", "dst_prot": 80}]},
    {"rules": [{"id": 1, "action": "alert", "content": {"valu": "x"}}]},
    {"rules": [{"id": 1, "action": "alert", "threshold": {"type": "limit", "track": "by_src", "count": 1,
                                                            "seconds": 1, "every": 2}}]},
    {"rulez": []},
])
def test_unknown_keys_rejected(doc):
    assert any("Additional properties are not allowed" in m for m in errors(doc))


@pytest.mark.parametrize("rule", [
    {"action": "alert"},                                   # no id
    {"id": 0, "action": "alert"},
    {"id": 1, "action": "drp"},
    {"id": 1, "action": "alert", "proto": "sctp"},
    {"id": 1, "action": "alert", "direction": "in"},
    {"id": 1, "action": "alert", "flow": ["established", "sideways"]},
    {"id": 1, "action": "alert", "threshold": {"type": "often", "track": "by_src", "count": 1, "seconds": 1}},
    {"id": 1, "action": "alert", "threshold": {"type": "limit", "track": "by_src"}},
    {"id": 1, "action": "alert", "content": {"value": "a", "hex": "41"}},
    {"id": 1, "action": "alert", "tcp_flags": "SX"},
    {"id": 1, "action": "alert", "severity": 5},
    {"id": 1, "action": "alert", "log": "yes please"},
])
def test_bad_rules_rejected(rule):
    assert errors({"rules": [rule]})


def test_schema_and_loader_agree_on_a_full_rule(tmp_path):
    text = """
vars: {HOME_NET: [10.0.0.0/8], WEB: [80, "8000-8099"]}
default_action: reject
rules:
  - id: 1
    msg: m
    action: pass
    proto: tcp
    src: "!$HOME_NET"
    src_port: any
    dst: [10.0.0.0/8, "!10.1.0.0/16"]
    dst_port: $WEB
    direction: outbound
    flow: established
    tcp_flags: "SA+,CE"
    content: [abc, {hex: "|41|", nocase: true, offset: 1, depth: 4}]
    regex: "x+"
    tls_sni: "*.example.com"
    threshold: {type: limit, track: by_flow, count: 1, seconds: 5}
    log: true
    severity: 1
    classtype: c
    metadata: {k: [v]}
"""
    p = tmp_path / "r.yaml"
    p.write_text(text)
    assert check(p) == []
    assert errors(yaml.safe_load(text)) == []


def test_schema_and_loader_agree_on_a_status_rule(tmp_path):
    text = ("rules:\n  - {id: 1, action: alert, proto: tcp, src_port: 80, content: "
            "[{value: '403', buffer: http.stat_code}, {pcre: '/^4/S'}], bsize: {http.stat_code: 3}}\n")
    p = tmp_path / "r.yaml"
    p.write_text(text)
    assert check(p) == []
    assert errors(yaml.safe_load(text)) == []
