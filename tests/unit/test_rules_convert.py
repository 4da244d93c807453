"""`appliance rules convert`: a .rules file becomes a YAML rule file that loads as the SAME
rules (but where they were written), in the order that keeps Suricata's verdicts."""
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from appliance.detect.convert import Source, _scalar, _self_check, convert
from appliance.detect.loader import _Loader, check, load_rules

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests/data/suricata/et-style.rules"


def cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "appliance", "rules", "convert", *map(str, args)], cwd=REPO,
                          input=stdin, capture_output=True, text=True, timeout=120)


def comparable(rules):
    return [(dataclasses.replace(r, file="", line=0, order=0), r.metadata, r.references) for r in rules]


def converted_equals_source(tmp_path, rules_text, skip=False):
    """Convert, load both, compare; returns the YAML text."""
    src = tmp_path / "src.rules"
    src.write_text(rules_text)
    r = convert(Source(str(src), rules_text), skip_unsupported=skip)
    assert not r.problems, r.problems
    out = tmp_path / "out.yaml"
    out.write_text(r.yaml)
    assert comparable(load_rules(out).rules) == comparable(load_rules(src, skip_unsupported=skip).rules)
    return r.yaml


def test_fixture_converts_to_the_same_rules_through_the_cli(tmp_path):
    out = tmp_path / "et.yaml"
    p = cli("--skip-unsupported", FIXTURE, "-o", out)
    assert p.returncode == 0, p.stderr
    assert p.stdout == ""
    source = load_rules(FIXTURE, skip_unsupported=True)
    assert comparable(load_rules(out).rules) == comparable(source.rules)
    assert len(source.rules) == 51
    # the skip report as `rules check` prints it, then the count
    assert "51 rules loaded, 3 skipped; unsupported keywords:" in p.stderr
    assert p.stderr.strip().endswith("51 rules converted")
    doc = yaml.safe_load(out.read_text())
    assert doc["vars"] == {"HTTP_PORTS": "80"}          # Suricata's default, used by sid 9100019/9100044
    assert "action order" in out.read_text().split("vars:")[0]


def test_unsupported_fails_without_skip_at_file_line():
    p = cli(FIXTURE)
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.splitlines() == check([str(FIXTURE)])          # the loader's own messages
    assert f"{FIXTURE}:21: unsupported keyword 'tls.cert_subject'" in p.stderr.splitlines()


def _fixture_rules():
    return [(n, line) for n, line in enumerate(FIXTURE.read_text().splitlines(), 1)
            if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("n,line", _fixture_rules(), ids=[f"line{n}" for n, _ in _fixture_rules()])
def test_every_fixture_rule_alone(tmp_path, n, line):
    src = tmp_path / "one.rules"
    src.write_text(line + "\n")
    problems = check([str(src)])
    r = convert(Source(str(src), line + "\n"))
    if problems:
        assert r.problems == problems and r.yaml == ""
    else:
        converted_equals_source(tmp_path, line + "\n")


def test_stdin_dash_prints_yaml():
    p = cli("-", stdin='drop tls $HOME_NET any -> any 443 (msg:"x"; tls.sni; content:"evil.example"; nocase; '
                       'startswith; endswith; sid:7; rev:3; gid:2; reference:url,example.org/a;)\n')
    assert p.returncode == 0, p.stderr
    doc = yaml.safe_load(p.stdout)
    assert doc["rules"] == [{"id": 7, "action": "drop", "msg": "x", "proto": "tcp", "src": "$HOME_NET",
                             "dst_port": "443", "tls_sni": ["evil.example"], "log": True, "rev": 3, "gid": 2,
                             "references": ["url,example.org/a"]}]


def test_error_fails_even_with_skip_unsupported():
    p = cli("--skip-unsupported", "-", stdin="alert tcp any any -> any any (msg:\"no sid\";)\n")
    assert p.returncode == 1
    assert p.stderr.strip() == "<stdin>:1: rule has no sid"


def test_action_order_is_kept_and_said(tmp_path):
    text = ("alert tcp any any -> any any (sid:1;)\n"
            "drop tcp any any -> any 23 (flow:to_server; sid:2;)\n"
            "pass tcp any any -> any any (sid:3;)\n")
    doc = converted_equals_source(tmp_path, text)
    assert [r["id"] for r in yaml.safe_load(doc)["rules"]] == [3, 2, 1]


def test_variables_defined_only_by_suricata_defaults_are_written(tmp_path):
    # FILE_DATA_PORTS = [$HTTP_PORTS,110,143]: both must come along; HOME_NET stays the config's
    doc = converted_equals_source(tmp_path, "alert tcp $HOME_NET any -> $HTTP_SERVERS $FILE_DATA_PORTS (sid:1;)\n")
    assert yaml.safe_load(doc)["vars"] == {"FILE_DATA_PORTS": "[$HTTP_PORTS,110,143]", "HTTP_PORTS": "80",
                                           "HTTP_SERVERS": "$HOME_NET"}


def test_no_vars_key_without_variables(tmp_path):
    assert "vars:" not in converted_equals_source(tmp_path, "alert tcp $HOME_NET any -> $EXTERNAL_NET any (sid:1;)\n")


def test_empty_input_is_an_empty_rule_file(tmp_path):
    assert yaml.safe_load(converted_equals_source(tmp_path, "# nothing\n")) == {"rules": []}


@pytest.mark.parametrize("s", ["yes", "no", "on", "null", "~", "2026_01_01", "1:20", "0x1f", "1e3", "80", "*.a.example",
                               "!80", "[a,b]", "a: b", "a #b", "-1", "&x", "'", '"', "é", "a\nb", "", " x", "1_0",
                               "a\x7fb", "a\x85b", "a\x9bb", "\uffff", "\u2028", "\U0001f600"])
def test_scalars_read_back_as_the_same_string(s):
    assert yaml.safe_load(f"k: {_scalar(s)}") == {"k": s}
    assert yaml.safe_load(f"k: [{_scalar(s)}]") == {"k": [s]}


def test_control_characters_in_a_msg_convert(tmp_path):
    # written out, DEL and C1 controls make YAML unloadable: they are escaped
    converted_equals_source(tmp_path, 'alert tcp any any -> any any (msg:"del\x7f csi\x9b \uffff"; sid:1;)\n')


def test_self_check_refuses_yaml_that_loads_differently(tmp_path):
    text = "alert tcp any any -> any 80 (sid:1;)\n"
    loader = _Loader(None)
    p = tmp_path / "a.rules"
    p.write_text(text)
    rs, _ = loader.run([p])
    good = "rules:\n  - {id: 1, action: alert, proto: tcp, dst_port: 80}\n"
    assert _self_check(good, rs.rules, loader.raw_rules) is None
    msg = _self_check(good.replace("80", "81"), rs.rules, loader.raw_rules)
    assert msg == f"{p}:1: internal error: sid 1 converts to a different YAML rule (dst_port)"


# ---------------------------------------------------------------- round trip, generated rules

_ADDR = st.sampled_from(["any", "$HOME_NET", "$EXTERNAL_NET", "10.0.0.0/8", "!192.168.0.0/16",
                         "[10.0.0.0/8,!10.1.0.0/16]", "2001:db8::/32", "$HTTP_SERVERS"])
_PORT = st.sampled_from(["any", "80", "!80", "1024:", ":1023", "[80,443,8000:8099]", "$HTTP_PORTS", "$SSH_PORTS"])
_NAME = st.from_regex(r"[a-z0-9]{1,8}(\.[a-z0-9]{1,8}){0,2}\.example", fullmatch=True)
_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126, blacklist_characters='";\\|'), min_size=1, max_size=12)


@st.composite
def suricata_rule(draw, sid):
    action = draw(st.sampled_from(["alert", "pass", "drop", "reject", "rejectsrc"]))
    kind = draw(st.sampled_from(["tcp", "udp", "ip", "dns", "tls", "http", "icmpv4"]))
    opts = [f'msg:"{draw(_TEXT)}"']
    if kind in ("dns", "tls", "http"):
        buf = {"dns": "dns.query", "tls": "tls.sni", "http": "http.host"}[kind]
        name = draw(_NAME)
        opts += [buf] + draw(st.sampled_from([
            [f'content:"{name}"', "nocase", "startswith", "endswith"],
            [f'content:".{name}"', "nocase", "endswith"],
            ["dotprefix", f'content:".{name}"', "nocase", "endswith"],
            [f'content:"{name}"', "nocase", f"bsize:{len(name)}"]]))
        opts.append("flow:to_server")
    elif kind in ("tcp", "udp"):
        if draw(st.booleans()):
            opts += [f'content:"{draw(_TEXT)}"'] + draw(st.sampled_from([[], ["nocase"], ["depth:20"], ["offset:1"]]))
        opts.append(draw(st.sampled_from(["flow:to_server", "flow:established,to_client", "flow:from_client"])))
        if kind == "tcp" and draw(st.booleans()):
            opts.append(draw(st.sampled_from(["flags:S", "flags:SA+", "flags:0", "flags:S,CE"])))
    elif kind == "icmpv4":
        opts += [f"itype:{draw(st.integers(0, 255))}", f"icode:{draw(st.integers(0, 255))}"]
    else:
        opts.append("flow:to_server")
    if draw(st.booleans()):
        opts.append(f"classtype:{draw(st.sampled_from(['trojan-activity', 'misc-activity', 'my-class']))}")
    if draw(st.booleans()):
        opts.append(f"priority:{draw(st.integers(1, 4))}")
    if draw(st.booleans()):
        opts.append(f"metadata:created_at {draw(st.sampled_from(['2026_01_01', 'yes', '1:20']))}, tag {draw(_NAME)}")
    if draw(st.booleans()):
        opts.append(f"reference:url,{draw(_NAME)}/x")
    if action == "alert" and draw(st.booleans()):
        opts.append(f"threshold:type limit, track by_src, count {draw(st.integers(1, 9))}, seconds 60")
    opts += [f"sid:{sid}", f"rev:{draw(st.integers(0, 20))}"]
    if draw(st.booleans()):
        opts.append(f"gid:{draw(st.integers(0, 5))}")
    ports = kind in ("tcp", "udp")
    return (f"{action} {kind} {draw(_ADDR)} {draw(_PORT) if ports else 'any'} -> "
            f"{draw(_ADDR)} {draw(_PORT) if ports else 'any'} ({'; '.join(opts)};)")


@st.composite
def rules_files(draw):
    n = draw(st.integers(1, 6))
    return "".join(draw(suricata_rule(sid)) + "\n" for sid in range(1, n + 1))


@settings(max_examples=60, deadline=None)
@given(text=rules_files())
def test_round_trip_property(tmp_path_factory, text):
    tmp = tmp_path_factory.mktemp("rt")
    src = tmp / "g.rules"
    src.write_text(text)
    problems = check([str(src)])
    r = convert(Source(str(src), text))
    if problems:                           # what the reader refuses, convert refuses the same way
        assert r.problems == problems
        return
    assert not r.problems
    out = tmp / "g.yaml"
    out.write_text(r.yaml)
    assert comparable(load_rules(out).rules) == comparable(load_rules(src).rules)


# ---------------------------------------------------------------- the YAML keys .rules-only fields got

def test_rev_gid_references_yaml_keys(tmp_path):
    p = tmp_path / "a.yaml"
    p.write_text("rules:\n  - {id: 1, action: alert, rev: 4, gid: 2, references: 'url,example.org/a'}\n"
                 "  - {id: 2, action: alert}\n")
    a, b = load_rules(p).rules
    assert (a.rev, a.gid, a.references) == (4, 2, ("url,example.org/a",))
    assert (b.rev, b.gid, b.references) == (0, 1, ())


@pytest.mark.parametrize("kv,msg", [
    ("rev: -1", "rev must be an integer >= 0, got number -1"),
    ("gid: 'x'", "gid must be an integer >= 0, got 'x'"),
    ("references: [1]", 'references must be a string or a list of strings ("url,example.org/x"), got a list'),
    ("references: []", 'references must be a string or a list of strings ("url,example.org/x"), got a list'),
])
def test_rev_gid_references_problems(tmp_path, kv, msg):
    p = tmp_path / "a.yaml"
    p.write_text(f"rules:\n  - id: 1\n    action: alert\n    {kv}\n")
    assert check([str(p)]) == [f"{p}:4: {msg}"]


def test_cli_input_and_usage_problems(tmp_path):
    p = cli(tmp_path / "missing.rules")
    assert p.returncode == 1 and p.stderr.startswith(f"{tmp_path / 'missing.rules'}:1: cannot read: ")
    bad = tmp_path / "latin1.rules"
    bad.write_bytes(b"alert tcp any any -> any any (msg:\"\xe9\"; sid:1;)\n")
    p = cli(bad)
    assert p.returncode == 1 and p.stderr.startswith(f"{bad}:1: cannot read: 'utf-8' codec can't decode")
    for args, msg in (((), "give one FILE, or - for stdin"), (("a", "b"), "give one FILE, or - for stdin"),
                      (("--from", "pf", "a"), "--from must be one of suricata, aws-nfw, got 'pf'"),
                      (("-o",), "-o needs a value"), (("--bogus", "a"), "unknown option --bogus")):
        p = cli(*args)
        assert (p.returncode, p.stderr.splitlines()[0]) == (2, f"appliance rules convert: {msg}")
    p = cli("-", "-o", tmp_path / "no-such-dir" / "x.yaml", stdin="alert tcp any any -> any any (sid:1;)\n")
    assert p.returncode == 1 and "x.yaml:1: cannot write: " in p.stderr


@settings(max_examples=150, deadline=None)
@given(text=st.lists(st.sampled_from('alert drop pass tcp dns any $HOME_NET -> <> ( ) ; : " | ! , [ ] \\ \n '
                                     'sid:1 content msg 10.0.0.0/8 80 nocase tls.sni endswith \x7f é'.split(" ") + [" "]),
                     max_size=40).map("".join))
def test_mangled_input_never_crashes(text):
    r = convert(Source("m.rules", text), skip_unsupported=True)
    assert bool(r.problems) != bool(r.yaml)
    assert all(p.startswith("m.rules:") for p in r.problems)
