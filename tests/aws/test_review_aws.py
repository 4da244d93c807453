"""Review of the AWS bootstrap, the AMI units and the docs around them.

Every test that runs the bootstrap does so as the instance would: `python3 -m
appliance.aws.bootstrap` inside an `awst-` namespace (conftest fixtures), IMDS answered by
the local IMDSv2 server, EC2 by moto. Tests marked xfail(strict) demonstrate a bug.
"""
import json
import os
import pathlib
import re
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]

netns = pytest.mark.netns


def _ip_json(app, *args):
    r = app.ns.exec("ip", "-j", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout or "[]")


def _failed_step(st):
    bad = [s for s in st["steps"] if not s["ok"]]
    return bad[-1]["name"] if bad else None


def _patch_imds(app, fn):
    """Wrap the fake IMDS's answers: fn(path, original_answer) -> new answer (None = 404)."""
    orig = app.imds.lookup

    def lookup(path):
        return fn(path[len("/latest/meta-data/"):], orig(path))
    app.imds.lookup = lookup


def _assert_host_untouched(app):
    assert app.ns.sysctl("net.ipv4.ip_forward") == "0"
    assert not [x for x in _ip_json(app, "-4", "route", "show", "table", "main") if x["dst"] == "default"]
    for e in app.enis:
        assert app.cloud.source_dest_check(e["eni_id"]) is True


# --- bugs -------------------------------------------------------------------------------

@netns
def test_config_error_is_recorded_in_the_status_file(appliance2):
    app = appliance2
    r = app.bootstrap()
    assert r.returncode == 0, r.stderr
    assert app.read_status()["ok"] is True

    # The documented way to change config at runtime is to rewrite it and restart the bootstrap.
    app.config.write_text("interfaces: {outside: auto, inside: auto}\naws:\n  source_dest_check: off\n")
    r = app.bootstrap()
    assert r.returncode == 2 and ":3: aws.source_dest_check" in r.stderr
    st = app.read_status()
    assert st["ok"] is False and st["can_forward"] is False
    assert _failed_step(st) == "config" and "source_dest_check" in (st["error"] or "")


@netns
def test_empty_region_fails_at_a_named_step(appliance2):
    app = appliance2
    app.imds.region = ""
    r = app.bootstrap()
    assert r.returncode == 1
    assert "Traceback" not in r.stderr, r.stderr[-600:]
    st = app.read_status()
    assert st["ok"] is False and st["error"], st
    assert _failed_step(st) == "imds"
    assert app.ns.sysctl("net.ipv4.ip_forward") == "0"        # nothing runs on a guess


@netns
def test_invalid_region_is_a_failed_step_not_a_traceback(appliance2):
    app = appliance2
    app.imds.region = "us east 1"
    r = app.bootstrap()
    assert r.returncode == 1
    assert "Traceback" not in r.stderr, r.stderr[-600:]
    st = app.read_status()
    assert st["error"] and "us east 1" in st["error"] and _failed_step(st) is not None


@netns
def test_malformed_vpc_cidr_fails_cleanly(appliance2):
    app = appliance2
    app.imds.enis[1]["vpc_cidrs"] = ["10.0.0.0/16x"]
    r = app.bootstrap()
    assert r.returncode == 1
    assert "Traceback" not in r.stderr, r.stderr[-600:]
    st = app.read_status()
    assert st["error"] and "10.0.0.0/16x" in st["error"]
    assert _failed_step(st) in ("imds", "host")
    dry = app.bootstrap("--dry-run")
    assert dry.returncode != 0, "dry run accepted a VPC CIDR the real run cannot apply"


@netns
def test_empty_vpc_cidrs_fail_hard(appliance2):
    app = appliance2
    for e in app.imds.enis:
        e["vpc_cidrs"] = []
    r = app.bootstrap()
    assert r.returncode == 1, r.stdout
    assert _failed_step(app.read_status()) == "imds"


@netns
def test_two_enis_with_the_same_device_number_fail(appliance3):
    app = appliance3
    app.imds.enis[2]["device_number"] = 1               # inside and management both claim device 1
    r = app.bootstrap()
    assert r.returncode == 1, r.stdout
    assert "device" in r.stderr and app.enis[2]["eni_id"] in r.stderr
    assert _failed_step(app.read_status()) == "interfaces"


class _HtmlErrorServer:
    """An EC2 endpoint that answers every request with an HTML 500 page (a proxy or a captive
    portal in the way): botocore cannot parse it. 127.0.0.1 only."""

    def __init__(self):
        import http.server
        import threading

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = b"<!doctype html><title>500</title><h1>Internal Server Error</h1>"
                self.send_response(500)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@netns
def test_ec2_garbage_answer_is_a_failed_step(appliance2):
    app = appliance2
    bad = _HtmlErrorServer()
    try:
        port = app._bridge(bad.port)
        env = app.env()
        env["AWS_ENDPOINT_URL_EC2"] = f"http://127.0.0.1:{port}"
        r = app.ns.exec("python3", "-m", "appliance.aws.bootstrap", "--config", str(app.config),
                        "--status-file", str(app.status), env=env, cwd=REPO, timeout=120)
    finally:
        bad.close()
    assert r.returncode == 1
    assert "Traceback" not in r.stderr, r.stderr[-600:]
    st = app.read_status()
    assert _failed_step(st) == "source_dest_check" and "cannot forward" in (st["error"] or "")


def test_documented_sudo_appliance_command_is_on_path(tmp_path):
    """docs/aws.md tells the operator to run `sudo appliance bootstrap --dry-run` on the instance;
    provision.sh installs the console script only into /opt/appliance/venv/bin."""
    doc = (REPO / "docs/aws.md").read_text()
    assert "sudo appliance bootstrap --dry-run" in doc
    script = (REPO / "ami/provision.sh").read_text()
    on_path = re.search(r"(/usr/local/bin|/usr/bin|/usr/sbin|/usr/local/sbin)/appliance", script)
    if on_path is None:
        pytest.xfail("BUG: provision.sh puts `appliance` only in /opt/appliance/venv/bin, not on sudo's "
                     "secure_path: `sudo appliance bootstrap --dry-run` (docs/aws.md) is 'command not found'")


# --- verified behaviour: every partial step fails hard, names itself, changes nothing ---

@netns
def test_empty_interface_list_fails_at_imds(appliance2):
    app = appliance2
    _patch_imds(app, lambda p, a: "" if p == "network/interfaces/macs/" else a)
    r = app.bootstrap()
    assert r.returncode == 1
    assert "imds: IMDS lists no network interfaces" in r.stderr
    st = app.read_status()
    assert st["ok"] is False and st["can_forward"] is False and _failed_step(st) == "imds"
    assert st["error"].startswith("imds: ")
    _assert_host_untouched(app)


@netns
@pytest.mark.parametrize("answer,msg", [(None, "HTTP 404"), ("one", "device-number is not a number"),
                                        ("", "device-number is not a number")])
def test_missing_or_bad_device_number_fails_at_imds(appliance2, answer, msg):
    app = appliance2
    _patch_imds(app, lambda p, a: answer if p.endswith("/device-number") else a)
    r = app.bootstrap()
    assert r.returncode == 1 and msg in r.stderr, r.stderr
    assert _failed_step(app.read_status()) == "imds"
    _assert_host_untouched(app)


@netns
def test_garbage_in_the_mac_listing_fails_at_imds(appliance2):
    app = appliance2
    _patch_imds(app, lambda p, a: a + "\nnot-a-mac/" if p == "network/interfaces/macs/" else a)
    r = app.bootstrap()
    assert r.returncode == 1 and "not-a-mac" in r.stderr
    assert _failed_step(app.read_status()) == "imds"
    _assert_host_untouched(app)


@netns
def test_uppercase_mac_in_imds_matches_the_local_link(appliance2):
    """IMDS paths are served for the MAC as listed; the client lower-cases before asking,
    and the fake answers both spellings, so an upper-case listing still maps by MAC."""
    app = appliance2
    _patch_imds(app, lambda p, a: a.upper() if p == "network/interfaces/macs/" else a)
    r = app.bootstrap("--dry-run")
    assert r.returncode == 0, r.stderr
    assert "outside = ens5" in r.stdout and "inside = ens6" in r.stdout


@netns
@pytest.mark.parametrize("selector,msg", [
    ("eni-0000000000deadbeef", "eni-0000000000deadbeef is not attached"),
    ("subnet-0000000000deadbeef", "subnet-0000000000deadbeef has no ENI"),
    ("wg0", "no local interface named 'wg0'"),
])
def test_config_naming_something_absent_fails_at_interfaces(appliance2, selector, msg):
    app = appliance2
    app.config.write_text(f"interfaces:\n  outside: auto\n  inside: {selector}\naws:\n  interface_wait_seconds: 0\n")
    r = app.bootstrap()
    assert r.returncode == 1 and msg in r.stderr, r.stderr
    st = app.read_status()
    assert _failed_step(st) == "interfaces" and st["error"].startswith("interfaces: ")
    _assert_host_untouched(app)


@netns
def test_ec2_unreachable_says_cannot_forward(appliance2):
    app = appliance2
    env = app.env()
    env["AWS_ENDPOINT_URL_EC2"] = "http://127.0.0.1:9"          # nothing listens (inside the namespace)
    r = app.ns.exec("python3", "-m", "appliance.aws.bootstrap", "--config", str(app.config),
                    "--status-file", str(app.status), env=env, cwd=REPO, timeout=120)
    assert r.returncode == 1
    assert "source_dest_check:" in r.stderr and "cannot forward" in r.stderr
    st = app.read_status()
    assert st["can_forward"] is False and _failed_step(st) == "source_dest_check"
    for e in app.enis:
        assert app.cloud.source_dest_check(e["eni_id"]) is True


@netns
def test_dry_run_changes_nothing_anywhere(appliance3):
    app = appliance3

    def snapshot():
        sysctls = {k: app.ns.sysctl(k) for k in (
            "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding", "net.ipv4.conf.all.rp_filter",
            "net.ipv4.conf.ens5.rp_filter", "net.ipv4.conf.ens6.rp_filter", "net.ipv4.conf.ens7.rp_filter",
            "net.ipv4.conf.all.send_redirects", "net.ipv4.conf.ens5.accept_redirects",
            "net.ipv6.conf.ens5.accept_ra")}
        # IPv4 only: IPv6 link-local state changes on its own (DAD) and is not what the bootstrap owns.
        return (sysctls, _ip_json(app, "-4", "addr"), _ip_json(app, "-4", "route", "show", "table", "all"),
                _ip_json(app, "rule"), [app.cloud.source_dest_check(e["eni_id"]) for e in app.enis])

    before = snapshot()
    r = app.bootstrap("--dry-run")
    assert r.returncode == 0, r.stderr
    assert "dry run: nothing below is changed" in r.stdout
    assert snapshot() == before
    assert not app.status.exists()


@netns
def test_aws_default_region_wins_and_run_twice_is_stable(appliance2):
    app = appliance2
    env = app.env()
    env["AWS_DEFAULT_REGION"] = "eu-west-1"
    cmd = ("python3", "-m", "appliance.aws.bootstrap", "--config", str(app.config), "--status-file", str(app.status))
    r = app.ns.exec(*cmd, env=env, cwd=REPO, timeout=120)
    # moto keeps ENIs per region: eu-west-1 does not know them, and that is reported, not guessed around.
    assert r.returncode == 1, r.stdout
    st = app.read_status()
    assert st["region"] == "eu-west-1"
    assert _failed_step(st) == "source_dest_check" and "cannot forward" in st["error"]

    r1 = app.bootstrap()
    assert r1.returncode == 0, r1.stderr
    routes1 = _ip_json(app, "-4", "route", "show", "table", "all")
    rules1 = _ip_json(app, "-4", "rule")
    r2 = app.bootstrap()
    assert r2.returncode == 0, r2.stderr
    assert _ip_json(app, "-4", "route", "show", "table", "all") == routes1
    assert _ip_json(app, "-4", "rule") == rules1


@netns
def test_management_table_setting_is_used(appliance3):
    app = appliance3
    app.config.write_text("interfaces: {outside: auto, inside: auto}\naws:\n  management_table: 42\n  interface_wait_seconds: 0\n")
    r = app.bootstrap()
    assert r.returncode == 0, r.stderr
    table = _ip_json(app, "-4", "route", "show", "table", "42")
    assert {(x["dst"], x.get("gateway"), x["dev"]) for x in table} == {
        ("default", "10.0.2.1", "ens7"), ("10.0.2.0/24", None, "ens7")}
    main = _ip_json(app, "-4", "route", "show", "table", "main")
    assert not [x for x in main if x["dst"] == "default" and x["dev"] == "ens7"]
    rules = [x for x in _ip_json(app, "-4", "rule") if x.get("table") == "42"]
    assert [x["src"] for x in rules] == [app.enis[2]["local_ipv4s"][0]]


@netns
def test_imds_token_put_goes_to_the_override_endpoint_only(appliance2):
    """IMDSv2 only: with the token refused there is never a GET without a token."""
    app = appliance2
    app.imds.token_mode = "refuse"
    r = app.bootstrap("--dry-run")
    assert r.returncode == 1 and "IMDSv2 token PUT" in r.stderr
    assert f"127.0.0.1:{app.imds_port}" in r.stderr
    assert app.imds.untokened_gets == 0


# --- the units ------------------------------------------------------------------------------

def _unit(name):
    import configparser
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    cp.optionxform = str
    cp.read(REPO / "ami" / name)
    return cp


def test_units_order_and_privileges():
    boot, run = _unit("appliance-bootstrap.service"), _unit("appliance.service")
    assert boot["Service"]["Type"] == "oneshot" and boot["Service"]["RemainAfterExit"] == "yes"
    assert "appliance.service" in boot["Unit"]["Before"]
    assert run["Unit"]["Requires"] == "appliance-bootstrap.service"
    assert "appliance-bootstrap.service" in run["Unit"]["After"]
    assert run["Service"]["Restart"] == "on-failure"
    caps = set(run["Service"]["CapabilityBoundingSet"].split())
    assert caps == {"CAP_NET_ADMIN", "CAP_NET_RAW"} == set(run["Service"]["AmbientCapabilities"].split())
    # The datapath writes only its logs (it reads the bootstrap's /run/appliance files).
    assert set(run["Service"]["ReadWritePaths"].split()) >= {"/var/log/appliance"}
    # The bootstrap writes /proc/sys/net: it must not be made read-only; the datapath only reads it.
    assert "ProtectKernelTunables" not in boot["Service"] and run["Service"]["ProtectKernelTunables"] == "yes"
    assert "/run/appliance" in boot["Service"]["ReadWritePaths"]
    # EVE goes where the unit lets it write.
    from appliance.config import load_config
    eve = load_config(str(REPO / "ami/appliance.yaml")).eve
    assert eve.startswith("/var/log/appliance/")


def test_packer_template_comment_validate_command_works_with_packer_166():
    """The validate command packer.pkr.hcl's header gives for Debian's packer 1.6.6 works with it
    (it once gave `packer validate packer.pkr.hcl`, which 1.6.6 rejects)."""
    import shutil
    if not shutil.which("packer"):
        pytest.skip("packer not installed")
    v = subprocess.run(["packer", "version"], capture_output=True, text=True).stdout
    if not v.startswith("Packer v1.6."):
        pytest.skip("the claim is about packer 1.6.x")
    head = "".join((REPO / "packer.pkr.hcl").read_text().splitlines(keepends=True)[:6])
    m = re.search(r"^#\s+(packer validate .*packer\.pkr\.hcl)\s*$", head, re.M)
    assert m and "1.6.6" in head, head
    r = subprocess.run(m.group(1).split(), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"{m.group(1)}: " + (r.stdout + r.stderr).strip()
