"""The bootstrap as it runs on an instance: a subprocess inside a network namespace whose
ENIs are veths with the MACs the local IMDSv2 server reports, EC2 answered by moto."""
import json

import pytest

pytestmark = pytest.mark.netns


def _ip_json(app, *args):
    r = app.ns.exec("ip", "-j", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout or "[]")


def test_three_enis_roles_host_and_source_dest_check(appliance3):
    app = appliance3
    out, ins, mgmt = app.enis
    assert app.cloud.source_dest_check(out["eni_id"]) is True

    r = app.bootstrap()
    assert r.returncode == 0, r.stderr + r.stdout

    st = app.read_status()
    assert st["ok"] is True and st["can_forward"] is True
    assert st["region"] == "us-east-1"           # from IMDS placement/region
    assert {k: v["interface"] for k, v in st["roles"].items()} == {
        "outside": "ens5", "inside": "ens6", "management": "ens7"}
    assert st["roles"]["inside"]["eni"] == ins["eni_id"]
    assert [s["name"] for s in st["steps"]] == ["config", "imds", "interfaces", "host", "source_dest_check"]

    # Read back from the EC2 API (moto), not from our own status.
    assert app.cloud.source_dest_check(out["eni_id"]) is False
    assert app.cloud.source_dest_check(ins["eni_id"]) is False
    assert app.cloud.source_dest_check(mgmt["eni_id"]) is True    # management is not a data ENI

    # Read back from inside the namespace.
    assert app.ns.sysctl("net.ipv4.ip_forward") == "1"
    assert app.ns.sysctl("net.ipv4.conf.all.rp_filter") == "0"
    assert app.ns.sysctl("net.ipv4.conf.ens5.rp_filter") == "2"
    assert app.ns.sysctl("net.ipv4.conf.ens6.rp_filter") == "2"
    assert app.ns.sysctl("net.ipv4.conf.ens7.rp_filter") == "1"
    for scope in ("all", "ens5", "ens6"):
        assert app.ns.sysctl(f"net.ipv4.conf.{scope}.send_redirects") == "0"
        assert app.ns.sysctl(f"net.ipv4.conf.{scope}.accept_redirects") == "0"
    assert app.ns.sysctl("net.ipv6.conf.all.forwarding") == "1"

    main = _ip_json(app, "-4", "route", "show", "table", "main")
    default = [x for x in main if x["dst"] == "default"]
    assert default == [d for d in default if d["dev"] == "ens5" and d["gateway"] == "10.0.0.1"] and default
    vpc = [x for x in main if x["dst"] == "10.0.0.0/16"]
    assert vpc and vpc[0]["dev"] == "ens6" and vpc[0]["gateway"] == "10.0.1.1"

    table = _ip_json(app, "-4", "route", "show", "table", "100")
    assert {(x["dst"], x.get("gateway"), x["dev"]) for x in table} == {
        ("default", "10.0.2.1", "ens7"), ("10.0.2.0/24", None, "ens7")}
    rules = [x for x in _ip_json(app, "-4", "rule") if x.get("table") == "100"]
    assert [(x["priority"], x["src"]) for x in rules] == [(1000, mgmt["local_ipv4s"][0])]

    links = {x["ifname"]: x for x in _ip_json(app, "link")}
    assert links["ens5"]["mtu"] == 9001          # MTU left as AWS set it

    # Idempotent: a second run changes nothing and adds no duplicate rule.
    r = app.bootstrap()
    assert r.returncode == 0, r.stderr
    assert len([x for x in _ip_json(app, "-4", "rule") if x.get("table") == "100"]) == 1
    assert "ModifyNetworkInterfaceAttribute" not in r.stdout
    sdc = next(s for s in app.read_status()["steps"] if s["name"] == "source_dest_check")
    assert set(sdc["detail"].values()) == {"already off"}


def test_two_enis_no_management(appliance2):
    app = appliance2
    r = app.bootstrap()
    assert r.returncode == 0, r.stderr
    st = app.read_status()
    assert set(st["roles"]) == {"outside", "inside"}
    assert not [x for x in _ip_json(app, "-4", "rule") if x.get("table") == "100"]
    for e in app.enis:
        assert app.cloud.source_dest_check(e["eni_id"]) is False


def test_dry_run_prints_plan_and_changes_nothing(appliance3):
    app = appliance3
    before = app.ns.sysctl("net.ipv4.ip_forward")
    r = app.bootstrap("--dry-run")
    assert r.returncode == 0, r.stderr
    for text in ("outside = ens5", "inside = ens6", "management = ens7",
                 "sysctl net.ipv4.ip_forward=1", "sysctl net.ipv4.conf.ens5.rp_filter=2",
                 "ip route replace default via 10.0.0.1 dev ens5",
                 "ip rule add from " + app.enis[2]["local_ipv4s"][0] + " lookup 100",
                 "ec2:ModifyNetworkInterfaceAttribute " + app.enis[0]["eni_id"]):
        assert text in r.stdout, text
    assert app.ns.sysctl("net.ipv4.ip_forward") == before == "0"
    assert not app.status.exists()
    assert app.cloud.source_dest_check(app.enis[0]["eni_id"]) is True
    assert "table does not exist" in app.ns.exec("ip", "-4", "route", "show", "table", "100").stderr
    assert not [x for x in _ip_json(app, "-4", "rule") if x.get("table") == "100"]


def test_imds_without_token_fails_clearly(appliance2):
    app = appliance2
    app.imds.token_mode = "refuse"
    r = app.bootstrap()
    assert r.returncode == 1
    assert "imds: IMDSv2 token PUT" in r.stderr and "HTTP 403" in r.stderr
    assert app.imds.untokened_gets == 0          # never falls back to IMDSv1
    st = app.read_status()
    assert st["ok"] is False and st["can_forward"] is False
    assert st["steps"][-1]["name"] == "imds" and st["steps"][-1]["ok"] is False
    assert app.ns.sysctl("net.ipv4.ip_forward") == "0"


def test_imds_rejecting_token_fails_with_401(appliance2):
    app = appliance2
    app.imds.token_mode = "reject"
    r = app.bootstrap()
    assert r.returncode == 1
    assert "HTTP 401" in r.stderr


def test_missing_eni_fails_and_names_it(appliance2, cloud):
    app = appliance2
    ghost = cloud.enis(1)[0]                      # attached per IMDS, absent on the host
    ghost["device_number"] = 2
    app.imds.enis.append(ghost)
    r = app.bootstrap()
    assert r.returncode == 1
    assert ghost["eni_id"] in r.stderr and ghost["mac"] in r.stderr and "no local interface" in r.stderr
    assert app.read_status()["steps"][-1]["name"] == "interfaces"
    assert app.ns.sysctl("net.ipv4.ip_forward") == "0"


def test_api_denied_reports_cannot_forward(appliance2):
    app = appliance2
    r = app.bootstrap(user="describe-only")
    assert r.returncode == 1
    assert "ModifyNetworkInterfaceAttribute" in r.stderr and "AccessDenied" in r.stderr
    assert "cannot forward" in r.stderr
    st = app.read_status()
    assert st["ok"] is False and st["can_forward"] is False
    assert st["steps"][-1]["name"] == "source_dest_check" and not st["steps"][-1]["ok"]
    assert [s["ok"] for s in st["steps"][:-1]] == [True] * 4      # host config done before the API
    assert app.cloud.source_dest_check(app.enis[0]["eni_id"]) is True


def test_verify_mode_fails_when_check_is_on(appliance2):
    app = appliance2
    app.config.write_text("interfaces: {outside: auto, inside: auto}\naws:\n  source_dest_check: verify\n  interface_wait_seconds: 0\n")
    r = app.bootstrap(user="describe-only")
    assert r.returncode == 1
    assert "source/dest check is on" in r.stderr
    assert app.cloud.source_dest_check(app.enis[1]["eni_id"]) is True


def test_conntrack_sizing_timeouts_in_namespace_global_values_reported(appliance2):
    """The TCP timeouts are per network namespace: set here and read back. nf_conntrack_max and
    _buckets are global (writable from the initial namespace only): planned, and reported as
    left as they are -- this test cannot write them without changing the host's conntrack."""
    app = appliance2
    app.config.write_text(app.config.read_text() + "conntrack:\n  max: 300000\n"
                          "  tcp_timeout_established: 3600\n  tcp_timeout_time_wait: 30\n")
    r = app.bootstrap("--dry-run")
    assert r.returncode == 0, r.stderr
    assert "sysctl net.netfilter.nf_conntrack_max=300000" in r.stdout
    assert "sysctl net.netfilter.nf_conntrack_buckets=300000" in r.stdout     # auto follows max
    assert "sysctl net.netfilter.nf_conntrack_tcp_timeout_established=3600" in r.stdout
    r = app.bootstrap()
    assert r.returncode == 0, r.stderr + r.stdout
    assert app.ns.sysctl("net.netfilter.nf_conntrack_tcp_timeout_established") == "3600"
    assert app.ns.sysctl("net.netfilter.nf_conntrack_tcp_timeout_time_wait") == "30"
    st = app.read_status()
    assert st["instance_type"] == "c6gn.large"
    host = next(s for s in st["steps"] if s["name"] == "host")["detail"]
    mx = next(a for a in host["actions"] if "nf_conntrack_max=300000" in a)
    assert "read-only in this network namespace" in mx
    assert any(n.startswith("conntrack: MemTotal ") and "config: max 300000" in n for n in host["notes"])


def test_conntrack_default_established_timeout(appliance2):
    app = appliance2
    r = app.bootstrap()
    assert r.returncode == 0, r.stderr
    assert app.ns.sysctl("net.netfilter.nf_conntrack_tcp_timeout_established") == "7440"


def test_bootstrap_as_the_unit_user_with_cap_net_admin_only(appliance2):
    """ami/appliance-bootstrap.service runs as the appliance user with CAP_NET_ADMIN alone and
    MemoryDenyWriteExecute: here as nobody with that one ambient capability (setpriv), under
    the kernel's PR_SET_MDWE. A Python under /root (pyenv) is
    reached through a private mount namespace where /root is a 0755 directory holding only it."""
    import os
    import pathlib
    import shutil
    import subprocess
    import sys
    import tempfile
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is missing")
    app = appliance2
    work = pathlib.Path(tempfile.mkdtemp(prefix="i12b-"))
    try:
        os.chmod(work, 0o777)
        config, status = work / "appliance.yaml", work / "bootstrap.json"
        config.write_text(app.config.read_text())
        mounts = []
        if sys.executable.startswith("/root/"):
            top = "/root/" + sys.executable.split("/")[2]
            shell = work / "root"
            (shell / os.path.basename(top)).mkdir(parents=True)
            os.chmod(shell, 0o755)
            mounts = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                      f"mount --bind {top} {shell}/{os.path.basename(top)} && mount --rbind {shell} /root && "
                      'exec "$@"', "sh"]
        r = subprocess.run(["ip", "netns", "exec", app.ns.name, *mounts, "setpriv", "--reuid=nobody",
                            "--regid=nogroup", "--clear-groups", "--inh-caps=-all,+net_admin",
                            "--ambient-caps=-all,+net_admin", "--bounding-set=-all,+net_admin", "--no-new-privs",
                            # MemoryDenyWriteExecute as the kernel applies it (PR_SET_MDWE, Linux >= 6.3)
                            sys.executable, "-c", "import ctypes, os, sys; ctypes.CDLL(None).prctl(65, 1, 0, 0, 0) "
                            "and sys.exit('PR_SET_MDWE failed'); os.execv(sys.argv[1], sys.argv[1:])",
                            sys.executable, "-m", "appliance.aws.bootstrap", "--config", str(config),
                            "--status-file", str(status)],
                           env=app.env(), cwd=REPO_DIR, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr + r.stdout
        assert os.stat(status).st_uid == 65534
        assert json.loads(status.read_text())["ok"] is True
        assert app.ns.sysctl("net.ipv4.ip_forward") == "1"
        assert app.ns.sysctl("net.ipv4.conf.ens5.rp_filter") == "2"
        assert app.ns.sysctl("net.netfilter.nf_conntrack_tcp_timeout_established") == "7440"
        default = [x for x in _ip_json(app, "-4", "route", "show", "table", "main") if x["dst"] == "default"]
        assert default and default[0]["dev"] == "ens5" and default[0]["gateway"] == "10.0.0.1"
    finally:
        shutil.rmtree(work, ignore_errors=True)


REPO_DIR = __import__("pathlib").Path(__file__).resolve().parents[2]
