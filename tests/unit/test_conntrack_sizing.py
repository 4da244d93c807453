"""Conntrack sizing figures (appliance/aws/conntrack.py) and the table in docs/aws.md agree."""
import pathlib
import re

import pytest

from appliance.aws.conntrack import figures, plan
from appliance.config import ConfigError, Conntrack, load_config

DOC = (pathlib.Path(__file__).resolve().parents[2] / "docs/aws.md").read_text()


def test_documented_figures_per_instance_size():
    rows = re.findall(r"^\| [^|]+ \| (\d+) GiB \| (\d+) \|$", DOC, re.M)
    assert len(rows) == 6
    for gib, n in rows:
        assert figures(int(gib) << 30) == (int(n), int(n))


def test_bounds():
    assert figures(256 << 20) == (65536, 65536)
    assert figures(1 << 40) == (4194304, 4194304)


def test_overrides_and_kernel_defaults():
    acts, note = plan(Conntrack(max=200000, tcp_timeout_established=None, tcp_timeout_fin_wait=30), 4 << 30)
    got = {a.parts[-1]: a.value for a in acts}
    assert got == {"nf_conntrack_max": 200000, "nf_conntrack_buckets": 200000,
                   "nf_conntrack_tcp_timeout_fin_wait": 30}
    acts, note = plan(Conntrack(), 4 << 30)
    assert {a.parts[-1]: a.value for a in acts} == {"nf_conntrack_max": 1048576, "nf_conntrack_buckets": 1048576,
                                                    "nf_conntrack_tcp_timeout_established": 7440}


@pytest.mark.parametrize("text,msg", [
    ("conntrack: {max: 10}", "2: conntrack.max must be an integer from 1024 to 67108864, got 10 (or auto)"),
    ("conntrack: {bucket: 1}", "2: unknown key conntrack.'bucket'"),
    ("conntrack: {tcp_timeout_established: -1}", "2: conntrack.tcp_timeout_established must be an integer"),
    ("conntrack: 5", "2: conntrack must be a mapping"),
])
def test_config_problems_are_file_line(tmp_path, text, msg):
    p = tmp_path / "a.yaml"
    p.write_text("interfaces: {outside: a, inside: b}\n" + text + "\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert any(x.startswith(f"{p}:{msg}") for x in e.value.problems), e.value.problems
