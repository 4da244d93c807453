"""The bootstrap in fleet mode (a `gwlb:` section): one data ENI behind a GWLB. A subprocess in
a namespace whose ENIs are veths with the MACs the local IMDSv2 server reports; EC2 is moto."""
import json

import pytest

pytestmark = pytest.mark.netns

FLEET = "gwlb:\n  senders: [10.0.0.0/24]\n  health: 0.0.0.0:8080\n{extra}aws:\n  interface_wait_seconds: 0\n"


def _ip_json(app, *args):
    r = app.ns.exec("ip", "-j", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout or "[]")


def test_one_data_eni_source_dest_check_off_and_the_gwlb_entry(appliance2):
    app = appliance2
    data, mgmt = app.enis                                    # device 0 (10.0.0.x), device 1 (10.0.1.x)
    app.config.write_text(FLEET.format(extra=""))
    r = app.bootstrap()
    assert r.returncode == 0, r.stderr + r.stdout
    st = app.read_status()
    assert st["ok"] is True and st["can_forward"] is True and st["mode"] == "gwlb"
    assert {k: v["interface"] for k, v in st["roles"].items()} == {"data": "ens5", "management": "ens6"}
    assert [s["name"] for s in st["steps"]] == ["config", "imds", "interfaces", "gwlb", "host", "source_dest_check"]
    ip = data["local_ipv4s"][0]
    g = st["gwlb"]
    assert (g["interface"], g["eni"], g["listen"], g["health"]) == ("ens5", data["eni_id"], f"{ip}:6081", f"{ip}:8080")
    assert g["senders"] == ["10.0.0.0/24"] and g["mtu"] == 9001
    # Read back from EC2: off on the data ENI (gwlbtun's silent drop), untouched on management.
    assert app.cloud.source_dest_check(data["eni_id"]) is False
    assert app.cloud.source_dest_check(mgmt["eni_id"]) is True
    # Nothing is routed through a fleet target.
    assert app.ns.sysctl("net.ipv4.ip_forward") == "0"
    main = _ip_json(app, "-4", "route", "show", "table", "main")
    assert [(x["dev"], x["gateway"]) for x in main if x["dst"] == "default"] == [("ens5", "10.0.0.1")]
    assert not [x for x in main if x["dst"] == "10.0.0.0/16"]
    assert app.ns.sysctl("net.ipv4.conf.ens5.rp_filter") == "1"
    table = _ip_json(app, "-4", "route", "show", "table", "100")
    assert ("default", "10.0.1.1", "ens6") in {(x["dst"], x.get("gateway"), x["dev"]) for x in table}


@pytest.mark.parametrize("extra,senders,expect", [
    ("", "192.0.2.0/24", "gwlb.senders 192.0.2.0/24 outside the VPC (10.0.0.0/16)"),
    ("  listen: 10.0.0.250\n", "10.0.0.0/24", "gwlb.listen 10.0.0.250 is not an address of the data ENI"),
])
def test_a_target_that_would_pass_health_checks_and_drop_everything_is_refused(appliance2, extra, senders, expect):
    app = appliance2
    app.config.write_text(FLEET.format(extra=extra).replace("10.0.0.0/24", senders))
    r = app.bootstrap()
    assert r.returncode == 1
    assert f"appliance bootstrap: gwlb: {expect}" in r.stderr
    st = app.read_status()
    assert st["ok"] is False and st["steps"][-1]["name"] == "gwlb" and st["steps"][-1]["ok"] is False
    assert app.cloud.source_dest_check(app.enis[0]["eni_id"]) is True      # stopped before any change


def test_dry_run_names_only_the_data_eni(appliance2):
    app = appliance2
    app.config.write_text(FLEET.format(extra=""))
    r = app.bootstrap("--dry-run")
    assert r.returncode == 0, r.stderr
    assert "data = ens5" in r.stdout and "management = ens6" in r.stdout
    assert f"ec2:ModifyNetworkInterfaceAttribute {app.enis[0]['eni_id']}" in r.stdout
    assert app.enis[1]["eni_id"] not in r.stdout.split("dry run:")[1]
    assert "sysctl net.ipv4.ip_forward" not in r.stdout
