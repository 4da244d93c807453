"""aws.config_source: ssm against moto server (IAM auth on), through AWS_ENDPOINT_URL_SSM."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]

POLICY = json.loads((REPO / "deploy/iam-policy-ssm.json").read_text())
# moto authorizes SSM calls against resource "*" (not the parameter ARN), so the test checks the
# shipped policy's actions; its Resource (parameter/appliance/*) is for AWS to check.
assert POLICY["Statement"][0]["Resource"] == "arn:aws:ssm:*:*:parameter/appliance/*"
POLICY["Statement"][0]["Resource"] = "*"
RULES = (REPO / "rules/default.yaml").read_text()
CONFIG = "interfaces: {outside: ens5, inside: ens6}\nrules: rules\nworkers: 1\n"
PREFIX = "/appliance/t{n}"


@pytest.fixture(scope="module")
def ssm_user(cloud):
    iam = cloud.moto.client("iam", cloud.keys["setup"])
    iam.create_user(UserName="ssm-reader")
    iam.put_user_policy(UserName="ssm-reader", PolicyName="ssm", PolicyDocument=json.dumps(POLICY))
    k = iam.create_access_key(UserName="ssm-reader")["AccessKey"]
    return k["AccessKeyId"], k["SecretAccessKey"]


class Site:
    """A seed config naming an SSM path, the parameters under it, and `appliance ssm-fetch`."""
    _n = 0

    def __init__(self, cloud, key, tmp):
        Site._n += 1
        self.cloud, self.key, self.tmp = cloud, key, tmp
        self.path = PREFIX.format(n=Site._n)
        self.api = cloud.moto.client("ssm", cloud.keys["setup"])
        self.dir = tmp / "ssm"
        self.seed = tmp / "appliance.yaml"
        self.seed.write_text("interfaces: {outside: ens5, inside: ens6}\n"
                             f"aws:\n  config_source: ssm\n  ssm_path: {self.path}\n  ssm_dir: {self.dir}\n")

    def put(self, rel, value, secure=False):
        self.api.put_parameter(Name=f"{self.path}/{rel}", Value=value, Overwrite=True,
                               Type="SecureString" if secure else "String")

    def env(self, key=None):
        key = key or self.key
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID=key[0], AWS_SECRET_ACCESS_KEY=key[1], AWS_DEFAULT_REGION="us-east-1",
                   AWS_ENDPOINT_URL_SSM=self.cloud.moto.url, PYTHONPATH=str(REPO))
        return env

    def appliance(self, *args, key=None):
        return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True,
                              env=self.env(key), cwd=REPO, timeout=120)

    def fetch(self, key=None):
        return self.appliance("ssm-fetch", "--config", str(self.seed), key=key)


def _parts(text, size):
    return [text[i:i + size] for i in range(0, len(text), size)]


def test_config_and_split_rules_fetched_checked_and_run(cloud, ssm_user, tmp_path):
    site = Site(cloud, ssm_user, tmp_path)
    site.put("appliance.yaml", CONFIG, secure=True)
    chunks = _parts(RULES, 1000)        # parts of any size up to 4 KB (standard tier)
    assert len(chunks) >= 2
    for i, c in enumerate(chunks, 1):
        site.put(f"rules/default.yaml/{i}", c)
    r = site.fetch()
    assert r.returncode == 0, r.stderr
    assert "2 file(s)" in r.stdout
    assert (site.dir / "rules/default.yaml").read_text() == RULES
    assert (site.dir / "appliance.yaml").read_text() == CONFIG      # SecureString decrypted
    # `appliance run` reads the fetched copy, not the seed (which names no rules)
    r = site.appliance("run", "--check", "--config", str(site.seed))
    assert r.returncode == 0, r.stderr
    assert f"rule(s) from {site.dir}/rules" in r.stdout


def test_bad_rule_parameter_reported_and_previous_copy_kept(cloud, ssm_user, tmp_path):
    site = Site(cloud, ssm_user, tmp_path)
    site.put("appliance.yaml", CONFIG)
    site.put("rules/local.yaml", "rules:\n  - id: 1\n    action: drop\n    proto: tcp\n")
    assert site.fetch().returncode == 0
    good = os.path.realpath(site.dir)
    site.put("rules/local.yaml", "rules:\n  - id: 1\n    action: drop\n    proto: tcpp\n")
    r = site.fetch()
    assert r.returncode == 1
    assert f"ssm:{site.path}/rules/local.yaml:4:" in r.stderr, r.stderr
    assert "previous copy" in r.stderr
    assert os.path.realpath(site.dir) == good
    assert "proto: tcp\n" in (site.dir / "rules/local.yaml").read_text()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("ssm.")] == [pathlib.Path(good).name]


def test_missing_part_and_stray_names_are_problems(cloud, ssm_user, tmp_path):
    site = Site(cloud, ssm_user, tmp_path)
    site.put("appliance.yaml", CONFIG)
    site.put("rules/a.yaml/1", "rules: []\n")
    site.put("rules/a.yaml/3", "\n")
    site.put("rules/../../etc/x.yaml", "x")
    r = site.fetch()
    assert r.returncode == 1
    assert f"ssm:{site.path}/rules/a.yaml/2:1: part 2 of 3 is missing" in r.stderr
    assert f"ssm:{site.path}/rules/../../etc/x.yaml:1: not a file the appliance reads" in r.stderr
    assert not site.dir.exists()


def test_bad_config_parameter_is_file_line(cloud, ssm_user, tmp_path):
    site = Site(cloud, ssm_user, tmp_path)
    site.put("appliance.yaml", CONFIG + "worker: 2\n")
    r = site.fetch()
    assert r.returncode == 1
    assert f"ssm:{site.path}/appliance.yaml:4: unknown key 'worker'" in r.stderr, r.stderr


def test_role_without_ssm_permission_is_told_what_it_needs(cloud, tmp_path):
    site = Site(cloud, cloud.keys["describe-only"], tmp_path)
    site.put("appliance.yaml", CONFIG)
    r = site.fetch()
    assert r.returncode == 1
    assert "ssm:GetParametersByPath" in r.stderr and "AccessDenied" in r.stderr, r.stderr


def test_seed_config_keys_checked(tmp_path):
    from appliance.config import ConfigError, load_config
    p = tmp_path / "a.yaml"
    p.write_text("interfaces: {outside: a, inside: b}\naws:\n  config_source: smm\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert f"{p}:3: aws.config_source: 'smm' is not one of file, ssm" in e.value.problems
    p.write_text("interfaces: {outside: a, inside: b}\naws:\n  config_source: ssm\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert f"{p}:3: aws.config_source: ssm needs aws.ssm_path" in e.value.problems[0]


def test_copy_is_not_world_readable_and_belongs_to_the_directory_owner(cloud, ssm_user, tmp_path):
    """SecureString values land in the copy: 0640/0750, and a root `ssm-fetch` gives it to the
    owner of the directory (the appliance user on the AMI), who must read it."""
    if os.geteuid() != 0:
        pytest.skip("needs root (chown)")
    os.chown(tmp_path, 65534, 65534)
    site = Site(cloud, ssm_user, tmp_path)
    site.put("appliance.yaml", CONFIG, secure=True)
    site.put("rules/local.yaml", "rules: []\n")
    r = site.fetch()
    assert r.returncode == 0, r.stderr
    copy = pathlib.Path(os.path.realpath(site.dir))
    for p in (copy, copy / "rules", copy / "appliance.yaml", copy / "rules/local.yaml"):
        st = p.stat()
        assert (st.st_uid, st.st_gid) == (65534, 65534), p
        assert st.st_mode & 0o007 == 0, (p, oct(st.st_mode))
