"""Role assignment and the bootstrap's config section, on plain data; the IMDS client
against the local IMDSv2 server."""
import pytest

from appliance.aws import imds
from appliance.aws.bootstrap import discover_roles, selectors
from appliance.config import ConfigError, load_config
from appliance.aws.interfaces import InterfaceError, Link, assign_roles
from awsfakes import FakeImds


def eni(dev, subnet="subnet-0a", mac=None):
    return imds.Eni(mac=mac or f"02:00:00:00:00:0{dev}", device_number=dev, eni_id=f"eni-0{dev}",
                    subnet_id=subnet, vpc_id="vpc-1", subnet_cidr="10.0.0.0/24",
                    vpc_cidrs=("10.0.0.0/16",), local_ipv4s=("10.0.0.5",))


ENIS = [eni(0, "subnet-0a"), eni(1, "subnet-0b"), eni(2, "subnet-0c")]
LINKS = {e.mac: Link(f"ens{5 + e.device_number}", e.mac, 2 + e.device_number, 9001) for e in ENIS}


def names(b):
    return {r: x.ifname for r, x in b.items()}


def test_default_roles_follow_device_index():
    assert names(assign_roles({}, ENIS, LINKS)) == {"outside": "ens5", "inside": "ens6", "management": "ens7"}
    assert names(assign_roles({}, ENIS[:2], LINKS)) == {"outside": "ens5", "inside": "ens6"}


def test_overrides_by_eni_subnet_and_name():
    sel = {"outside": "eni-02", "inside": "subnet-0a", "management": "ens6"}
    assert names(assign_roles(sel, ENIS, LINKS)) == {"outside": "ens7", "inside": "ens5", "management": "ens6"}
    assert "management" not in assign_roles({"management": None}, ENIS, LINKS)


@pytest.mark.parametrize("sel,msg", [
    ({"inside": "auto"}, "device index 1"),
    ({"outside": "eni-09"}, "eni-09 is not attached"),
    ({"inside": "subnet-0f"}, "subnet-0f has no ENI"),
    ({"inside": "wg0"}, "no local interface named 'wg0'"),
    ({"outside": "eni-00", "inside": "eni-00"}, "both select eni-00"),
])
def test_role_errors_name_what_was_looked_for(sel, msg):
    with pytest.raises(InterfaceError, match=msg):
        assign_roles(sel, ENIS[:1] if msg == "device index 1" else ENIS, LINKS)


def test_eni_without_local_link():
    with pytest.raises(InterfaceError, match="no local interface with that MAC"):
        assign_roles({}, ENIS, {k: v for k, v in LINKS.items() if v.name != "ens6"})


# The bootstrap's config is appliance/config.py's: every problem at once, each FILE:LINE.
@pytest.mark.parametrize("text,where", [
    ("interfaces:\n  outside: auto\n  inside: 'eth 1'\n", ":3: interfaces.inside"),
    ("interfaces:\n  inside: null\n", ":2: interfaces.inside cannot be null"),
    ("aws:\n  source_dest_check: off\n", ":2: aws.source_dest_check"),
    ("aws:\n  status_file: /tmp/x\n  tabel: 5\n", ":3: unknown key aws.'tabel'"),
    ("aws:\n  management_table: 254\n", ":2: aws.management_table"),
    ("interfaces: [1]\n", ":1: interfaces must be a mapping"),
    ("interfaces:\n  outside: [\n", ":3:"),
])
def test_config_errors_are_file_line(tmp_path, text, where):
    p = tmp_path / "appliance.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(str(p))
    assert any(x.startswith(str(p) + where) for x in e.value.problems), str(e.value)


def test_bootstrap_roles_from_the_config(tmp_path):
    p = tmp_path / "appliance.yaml"
    p.write_text("interfaces:\n  outside: ens5\n  inside: eni-0abc\n  management: null\n"
                 "aws:\n  source_dest_check: verify\n  status_file: /tmp/s.json\n")
    cfg = load_config(str(p))
    assert selectors(cfg) == {"outside": "ens5", "inside": "eni-0abc", "management": None}
    assert cfg.aws.source_dest_check == "verify" and cfg.aws.status_file == "/tmp/s.json"
    # a management role the file leaves out is discovered (device index 2, none without it)
    p.write_text("interfaces: {outside: auto, inside: subnet-0b}\n")
    assert selectors(load_config(str(p))) == {"outside": "auto", "inside": "subnet-0b", "management": "auto"}


@pytest.fixture
def fake_imds(monkeypatch):
    srv = FakeImds([{"mac": "02:00:00:aa:bb:01", "device_number": 1, "eni_id": "eni-1", "subnet_id": "subnet-b",
                     "vpc_id": "vpc-1", "subnet_cidr": "10.0.1.0/24", "vpc_cidrs": ["10.0.0.0/16", "10.1.0.0/16"],
                     "local_ipv4s": ["10.0.1.9", "10.0.1.10"]},
                    {"mac": "02:00:00:aa:bb:00", "device_number": 0, "eni_id": "eni-0", "subnet_id": "subnet-a",
                     "vpc_id": "vpc-1", "subnet_cidr": "10.0.0.0/24", "vpc_cidrs": ["10.0.0.0/16"],
                     "local_ipv4s": ["10.0.0.9"]}], region="eu-west-1")
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", srv.url + "/")   # the standard override
    yield srv
    srv.close()


def test_imds_client_reads_enis_with_a_token(fake_imds):
    c = imds.Imds()
    assert c.base == fake_imds.url
    assert c.region() == "eu-west-1"
    enis = c.enis()
    assert [e.eni_id for e in enis] == ["eni-0", "eni-1"]            # ordered by device number
    assert enis[1].vpc_cidrs == ("10.0.0.0/16", "10.1.0.0/16")
    assert enis[1].primary_ipv4 == "10.0.1.9"
    assert fake_imds.untokened_gets == 0 and len(fake_imds.tokens) == 1   # one token reused


def test_imds_client_refused_token_no_v1_fallback(fake_imds):
    fake_imds.token_mode = "refuse"
    with pytest.raises(imds.ImdsError, match="token PUT .* HTTP 403"):
        imds.Imds().region()
    assert fake_imds.untokened_gets == 0


def test_imds_unreachable_says_where(monkeypatch):
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9/")
    with pytest.raises(imds.ImdsError, match="127.0.0.1:9: unreachable"):
        imds.Imds(attempts=1).region()


def test_discover_roles_with_interface_names_in_this_namespace(fake_imds, tmp_path):
    # The root namespace has no ENI MACs: discovery must fail, naming the ENIs, not guess.
    p = tmp_path / "a.yaml"
    p.write_text("interfaces: {outside: auto, inside: auto}\naws:\n  interface_wait_seconds: 0\n")
    with pytest.raises(RuntimeError, match="interfaces: IMDS lists eni-0 .*no local interface"):
        discover_roles(load_config(p))


def test_run_config_auto_resolves_through_real_discovery(fake_imds, tmp_path):
    """`appliance run`'s config resolves auto/eni-/subnet- selectors through the same IMDS
    discovery as bootstrap; here no local interface carries the ENI MACs, so it fails clearly."""
    from appliance.config import ConfigError as RunConfigError, load_config as load_run_config, resolve_interfaces
    p = tmp_path / "appliance.yaml"
    p.write_text("interfaces: {outside: auto, inside: eni-0123abcd, management: null}\n"
                 "aws: {interface_wait_seconds: 0}\n")
    cfg = load_run_config(p)
    assert (cfg.outside, cfg.inside) == ("auto", "eni-0123abcd")
    with pytest.raises(RunConfigError) as e:
        resolve_interfaces(cfg, discover=discover_roles)
    assert "discovery failed: interfaces: IMDS lists eni-0" in e.value.problems[0]


def test_appliance_run_resolves_auto_through_bootstrap_discovery(fake_imds, tmp_path):
    """run.py hands config.resolve_interfaces the bootstrap's discovery (the same failure as above)."""
    import os, subprocess, sys
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    (tmp_path / "rules.yaml").write_text("rules:\n  - {id: 1, action: drop, proto: tcp, dst_port: 23}\n")
    p = tmp_path / "appliance.yaml"
    p.write_text("interfaces: {outside: auto, inside: auto}\nrules: rules.yaml\naws: {interface_wait_seconds: 0}\n")
    r = subprocess.run([sys.executable, "-m", "appliance.run", "--config", str(p)], capture_output=True,
                       text=True, cwd=repo, env={**os.environ, "PYTHONPATH": repo})
    assert r.returncode == 2
    assert f"{p}:1: interfaces: auto: discovery failed: interfaces: IMDS lists eni-0" in r.stderr, r.stderr

