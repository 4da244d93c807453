"""`appliance rules convert --from aws-nfw`: an AWS Network Firewall stateful rule group (the
JSON of describe-rule-group) becomes YAML that means what Network Firewall makes of it.

moto (5.x) has no network-firewall rule groups, so the fixtures in tests/data/aws_nfw were
written by hand from the API reference; test_fixtures_are_the_api_shape checks them against
botocore's model of the service, so they are the shape the real API returns."""
import copy
import json
import subprocess
import sys
from pathlib import Path

import botocore.session
import pytest
import yaml
from botocore.validate import ParamValidator

from appliance.detect.aws_nfw import convert_rule_group, to_source
from appliance.detect.convert import Source, convert
from appliance.detect.loader import load_rules

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests/data/aws_nfw"
FIXTURES = sorted(DATA.glob("*.json"))


def cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "appliance", "rules", "convert", "--from", "aws-nfw",
                           *map(str, args)], cwd=REPO, input=stdin, capture_output=True, text=True, timeout=120)


def fixture(name):
    return json.loads((DATA / name).read_text())


def rules_of(doc_text):
    return yaml.safe_load(doc_text)["rules"]


def convert_json(doc, skip=False):
    return convert_rule_group(json.dumps(doc), "g.json", skip)


@pytest.mark.parametrize("path", FIXTURES, ids=[p.name for p in FIXTURES])
def test_fixtures_are_the_api_shape(path):
    model = botocore.session.get_session().get_service_model("network-firewall")
    doc = json.loads(path.read_text())
    assert set(doc) <= set(model.operation_model("DescribeRuleGroup").output_shape.members)
    report = ParamValidator().validate(
        {"RuleGroupName": "g", "Type": "STATEFUL", "Capacity": 100, "RuleGroup": doc["RuleGroup"]},
        model.operation_model("CreateRuleGroup").input_shape)
    assert not report.has_errors(), report.generate_report()


def test_domain_denylist_tls_and_http(tmp_path):
    out = tmp_path / "deny.yaml"
    p = cli(DATA / "domain-denylist.json", "-o", out)
    assert p.returncode == 0, p.stderr
    rules = rules_of(out.read_text())
    # one rule per target and protocol, as Network Firewall generates them
    assert [(r["action"], r.get("tls_sni"), r.get("http_host")) for r in rules] == [
        ("drop", ["denied-corp.example", "*.denied-corp.example"], None), ("drop", ["evil.example"], None),
        ("drop", None, ["denied-corp.example", "*.denied-corp.example"]), ("drop", None, ["evil.example"])]
    for r in rules:
        assert (r["src"], r["dst"], r["flow"], r["proto"], r["log"]) == \
            ("$HOME_NET", "$EXTERNAL_NET", ["to_server", "established"], "tcp", True)
    rs = load_rules(out)
    assert [str(n) for n in rs.home_net.networks] == ["10.0.0.0/16"]      # RuleVariables' HOME_NET


@pytest.mark.parametrize("kind,action", [("DENYLIST", "drop"), ("REJECTLIST", "reject"), ("ALERTLIST", "alert")])
def test_generated_rules_type(kind, action):
    doc = fixture("domain-denylist.json")
    doc["RuleGroup"]["RulesSource"]["RulesSourceList"].update(GeneratedRulesType=kind, TargetTypes=["HTTP_HOST"])
    r = convert_json(doc)
    assert not r.problems
    assert [(x["action"], x["http_host"]) for x in rules_of(r.yaml)] == [
        (action, ["denied-corp.example", "*.denied-corp.example"]), (action, ["evil.example"])]


def test_domain_allowlist_converts_with_its_catch_all_drop():
    # An allowlist passes the listed names and drops every other TLS/HTTP request: the drop is
    # on the protocol alone (app_proto), after every pass rule
    p = cli(DATA / "domain-allowlist.json")
    assert p.returncode == 0, p.stderr
    rules = rules_of(p.stdout)
    drops = [r for r in rules if r["action"] == "drop"]
    assert [(r["app_proto"], r.get("tls_sni"), r.get("http_host")) for r in drops] == \
        [("tls", None, None), ("http", None, None)]
    assert [r["action"] for r in rules].index("drop") == len(rules) - 2      # after every pass rule


def test_domain_allowlist_pass_rules_are_the_documented_ones():
    doc = fixture("domain-allowlist.json")
    made, problems = to_source(json.dumps(doc), "g.json")
    assert not problems
    lines = [x for x in made[0].text.splitlines() if not x.startswith("#")]
    assert lines == [
        'pass tls $HOME_NET any -> $EXTERNAL_NET any (msg:"matching TLS allowlisted FQDNs"; '
        'flow:to_server,established; tls.sni; dotprefix; content:".allowed-corp.example"; nocase; endswith; '
        'sid:1; rev:1;)',
        'pass tls $HOME_NET any -> $EXTERNAL_NET any (msg:"matching TLS allowlisted FQDNs"; '
        'flow:to_server,established; tls.sni; content:"good.example"; nocase; startswith; endswith; sid:2; rev:1;)',
        'pass http $HOME_NET any -> $EXTERNAL_NET any (msg:"matching HTTP allowlisted FQDNs"; '
        'flow:to_server,established; http.host; dotprefix; content:".allowed-corp.example"; nocase; endswith; '
        'sid:3; rev:1;)',
        'pass http $HOME_NET any -> $EXTERNAL_NET any (msg:"matching HTTP allowlisted FQDNs"; '
        'flow:to_server,established; http.host; content:"good.example"; nocase; startswith; endswith; sid:4; rev:1;)',
        'drop tls $HOME_NET any -> $EXTERNAL_NET any (msg:"not matching any TLS allowlisted FQDNs"; '
        'flow:to_server,established; sid:5; rev:1;)',
        'drop http $HOME_NET any -> $EXTERNAL_NET any (msg:"not matching any HTTP allowlisted FQDNs"; '
        'flow:to_server,established; sid:6; rev:1;)']


def test_stateful_5tuple_rules_and_variables(tmp_path):
    p = cli(DATA / "stateful-5tuple.json")
    assert p.returncode == 0, p.stderr
    doc = yaml.safe_load(p.stdout)
    assert doc["vars"] == {"HOME_NET": ["10.0.0.0/16", "10.1.0.0/16"], "MAIL_PORTS": ["25", "465", "587"],
                           "MAIL_SERVERS": ["198.51.100.10/32", "198.51.100.11/32"]}
    # DEFAULT_ACTION_ORDER: pass, drop, reject, alert
    assert [(r["id"], r["action"]) for r in doc["rules"]] == [(102, "pass"), (103, "pass"), (101, "drop"),
                                                               (104, "reject"), (100, "alert")]
    out = tmp_path / "g.yaml"
    out.write_text(p.stdout)
    rs = load_rules(out)
    assert rs.rules[0].dst_port.ranges == ((25, 25), (465, 465), (587, 587))
    assert rs.rules[3].dst_port.ranges == ((8000, 8099), (9000, 9000))
    assert (rs.rules[4].msg, rs.rules[4].rev) == ("outbound mail", 2)


def test_5tuple_is_the_suricata_line_network_firewall_writes(tmp_path):
    """A StatefulRule converts exactly as the Suricata rule it stands for."""
    doc = fixture("stateful-5tuple.json")
    line = ('drop tcp any any -> $HOME_NET 23 (msg:"telnet in"; flow:to_server; sid:101;)\n'
            'pass ip 10.0.0.0/16 any <> 10.0.0.0/16 any (msg:"inside the VPC, both ways"; sid:103;)\n')
    rules = doc["RuleGroup"]["RulesSource"]["StatefulRules"]
    doc["RuleGroup"]["RulesSource"]["StatefulRules"] = [rules[1], rules[3]]
    doc["RuleGroup"]["RuleVariables"] = {"IPSets": {"HOME_NET": {"Definition": ["10.0.0.0/16"]}}}
    from_aws = convert_json(doc)
    from_rules = convert(Source("x.rules", line, variables=(("HOME_NET", ["10.0.0.0/16"], 0),)))
    assert not from_aws.problems and not from_rules.problems
    assert rules_of(from_aws.yaml) == rules_of(from_rules.yaml)


def test_any_direction_with_different_sides_matches_both_ways():
    # Direction ANY is Suricata's `<>`: one rule, both directions (bidirectional)
    doc = fixture("stateful-5tuple.json")
    r0 = doc["RuleGroup"]["RulesSource"]["StatefulRules"][0]
    r0["Header"]["Direction"] = "ANY"
    r = convert_json(doc)
    assert r.problems == []
    sid = int(next(o["Settings"][0] for o in r0["RuleOptions"] if o["Keyword"] == "sid"))
    assert next(x for x in rules_of(r.yaml) if x["id"] == sid).get("bidirectional") is True


def test_a_deciding_5tuple_without_flow_judges_each_packet():
    # Suricata's header describes each packet: such a rule becomes `header: packet`, not an
    # approximation by the connection's orientation
    doc = fixture("stateful-5tuple.json")
    r1 = doc["RuleGroup"]["RulesSource"]["StatefulRules"][1]
    del r1["RuleOptions"][1]     # flow:to_server
    r = convert_json(doc)
    assert r.problems == []
    sid = int(next(o["Settings"][0] for o in r1["RuleOptions"] if o["Keyword"] == "sid"))
    assert next(x for x in rules_of(r.yaml) if x["id"] == sid).get("header") == "packet"


def test_rules_string_strict_order_keeps_the_written_order():
    p = cli("-", stdin=(DATA / "rules-string-strict.json").read_text())
    assert p.returncode == 0, p.stderr
    assert [(r["id"], r["action"]) for r in rules_of(p.stdout)] == [(1, "drop"), (2, "pass"), (3, "alert")]
    assert "RuleOrder STRICT_ORDER" in p.stdout


def test_rules_string_default_order_is_the_action_order():
    doc = fixture("rules-string-strict.json")
    del doc["RuleGroup"]["StatefulRuleOptions"]                # DEFAULT_ACTION_ORDER is the default
    r = convert_json(doc)
    assert [(x["id"], x["action"]) for x in rules_of(r.yaml)] == [(2, "pass"), (1, "drop"), (3, "alert")]


def test_rules_string_problem_names_its_line():
    doc = fixture("rules-string-strict.json")
    doc["RuleGroup"]["RulesSource"]["RulesString"] += 'alert tcp any any -> any any (msg:"x"; ja3.hash; sid:4;)\n'
    r = convert_json(doc)
    assert r.problems == ["g.json: RuleGroup.RulesSource.RulesString line 5: unsupported keyword 'ja3.hash'"]


def test_bare_rule_group_is_accepted():
    full = fixture("domain-denylist.json")
    assert rules_of(convert_json(full["RuleGroup"]).yaml) == rules_of(convert_json(full).yaml)


def test_bad_json_says_where():
    p = cli("-", stdin='{"RuleGroup": {"RulesSource": }\n}')
    assert p.returncode == 1
    assert p.stderr.strip() == "<stdin>:1: not valid JSON: Expecting value (line 1 column 31)"


@pytest.mark.parametrize("edit,problem", [
    (lambda d: d["RuleGroup"]["RulesSource"]["RulesSourceList"].update(Target=["x.example"]),
     "RuleGroup.RulesSource.RulesSourceList.Target: unknown key 'Target' (known here: Targets, TargetTypes, "
     "GeneratedRulesType)"),
    (lambda d: d.update(Extra=1), "Extra: unknown key 'Extra' (known here: RuleGroup, RuleGroupResponse, UpdateToken)"),
    (lambda d: d["RuleGroup"]["RulesSource"]["RulesSourceList"].update(TargetTypes=["SNI"]),
     "RuleGroup.RulesSource.RulesSourceList.TargetTypes: must be a non-empty list of TLS_SNI, HTTP_HOST, got ['SNI']"),
    (lambda d: d["RuleGroup"]["RulesSource"]["RulesSourceList"].update(Targets=["*.bad.example"]),
     "RuleGroup.RulesSource.RulesSourceList.Targets[0]: not a domain (\"abc.example.com\", or \".example.com\" "
     "for the domain and its subdomains): '*.bad.example'"),
    (lambda d: d["RuleGroup"]["RulesSource"].update(RulesString="x"),
     "RuleGroup.RulesSource: a rule group has exactly one of RulesString, RulesSourceList, StatefulRules, "
     "StatelessRulesAndCustomActions, this one has RulesString, RulesSourceList"),
    (lambda d: d["RuleGroupResponse"].update(Type="STATELESS"),
     "RuleGroupResponse.Type: rule group type 'STATELESS': only STATEFUL rule groups are converted"),
    (lambda d: d["RuleGroup"].update(ReferenceSets={"IPSetReferences": {"X": {"ReferenceArn": "arn:x"}}}),
     "RuleGroup.ReferenceSets: unsupported: IP set references name VPC prefix lists and resource groups, which "
     "cannot be resolved here; write the addresses into RuleVariables"),
    (lambda d: d["RuleGroup"]["StatefulRuleOptions"].update(RuleOrder="FIRST"),
     "RuleGroup.StatefulRuleOptions.RuleOrder: RuleOrder must be one of DEFAULT_ACTION_ORDER, STRICT_ORDER, "
     "got 'FIRST'"),
    (lambda d: d["RuleGroup"]["RuleVariables"]["IPSets"].update(BAD={"Definition": ["not-an-address"]}),
     None),   # checked below: an unusable variable is reported at its JSON path
])
def test_problems_name_the_json_path(edit, problem):
    doc = fixture("domain-denylist.json")
    edit(doc)
    r = convert_json(doc)
    if problem is None:
        assert r.problems and r.problems[0].startswith("g.json: RuleGroup.RuleVariables.IPSets.BAD.Definition: ")
    else:
        assert r.problems == [f"g.json: {problem}"]


def test_stateful_rule_shape_problems():
    doc = fixture("stateful-5tuple.json")
    rules = doc["RuleGroup"]["RulesSource"]["StatefulRules"]
    rules[0]["Action"] = "ALLOW"
    rules[1]["Header"]["Direction"] = "BACKWARD"
    rules[2]["RuleOptions"].append({"Keyword": "flow", "Settings": "established"})
    r = convert_json(doc)
    assert r.problems == [
        "g.json: RuleGroup.RulesSource.StatefulRules[0].Action: must be one of PASS, DROP, ALERT, REJECT, got 'ALLOW'",
        "g.json: RuleGroup.RulesSource.StatefulRules[1].Header.Direction: must be FORWARD or ANY, got 'BACKWARD'",
        "g.json: RuleGroup.RulesSource.StatefulRules[2].RuleOptions[2].Settings: expected a list of strings, "
        "got 'established'"]


@pytest.mark.parametrize("text", ["", "[]", "null", "12", '"x"', "{}", '{"RuleGroup": []}',
                                  '{"RuleGroup": {"RulesSource": {"StatefulRules": [null, 1, {"Header": 3}]}}}',
                                  '{"RuleGroup": {"RulesSource": {"RulesSourceList": {"Targets": [1]}}}}',
                                  "[" * 100000])
def test_malformed_never_crashes(text):
    r = convert_rule_group(text, "g.json")
    assert r.problems and r.yaml == ""
    assert all(p.startswith("g.json") for p in r.problems)
