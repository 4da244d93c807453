"""deploy/*.yaml: cfn-lint clean, and wired the way docs/aws.md says (the single appliance, the
HA pair, the GWLB fleet); the appliance.yaml each writes through user-data loads as written."""
import json
import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "deploy/cloudformation.yaml"


class _CfnLoader(yaml.SafeLoader):
    pass


def _tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        v = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        v = loader.construct_sequence(node, deep=True)
    else:
        v = loader.construct_mapping(node, deep=True)
    return {suffix: v}


_CfnLoader.add_multi_constructor("!", _tag)


@pytest.fixture(scope="module")
def res():
    return yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)["Resources"]


TEMPLATES = sorted((REPO / "deploy").glob("*.yaml"))


@pytest.mark.skipif(not shutil.which("cfn-lint"), reason="cfn-lint not installed (pip install cfn-lint)")
@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_cfn_lint(template):
    r = subprocess.run(["cfn-lint", str(template)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_template_is_linted():
    assert {p.name for p in TEMPLATES} >= {"cloudformation.yaml", "ha-pair.yaml", "gwlb-fleet.yaml"}


def test_enis_and_instance(res):
    for eni in ("OutsideEni", "InsideEni"):
        assert res[eni]["Properties"]["SourceDestCheck"] is False
    nics = res["Appliance"]["Properties"]["NetworkInterfaces"]
    assert [(n["NetworkInterfaceId"], n["DeviceIndex"]) for n in nics] == [
        ({"Ref": "OutsideEni"}, "0"), ({"Ref": "InsideEni"}, "1")]     # matches interfaces: auto
    assert res["OutsideEipAssociation"]["Properties"]["NetworkInterfaceId"] == {"Ref": "OutsideEni"}
    md = res["ApplianceLaunchTemplate"]["Properties"]["LaunchTemplateData"]["MetadataOptions"]
    assert md["HttpTokens"] == "required"


def test_both_directions_route_through_the_appliance(res):
    out = res["ProtectedDefaultRoute"]["Properties"]
    assert out["DestinationCidrBlock"] == "0.0.0.0/0" and out["NetworkInterfaceId"] == {"Ref": "InsideEni"}
    assert res["ProtectedSubnetRoutes"]["Properties"]["RouteTableId"] == {"Ref": "ProtectedRouteTable"}
    edge = res["EdgeToProtectedRoute"]["Properties"]
    assert edge["DestinationCidrBlock"] == {"Ref": "ProtectedSubnetCidr"}
    assert edge["NetworkInterfaceId"] == {"Ref": "OutsideEni"}
    assoc = res["EdgeAssociation"]
    assert assoc["Type"] == "AWS::EC2::GatewayRouteTableAssociation"
    assert assoc["Properties"] == {"GatewayId": {"Ref": "InternetGateway"}, "RouteTableId": {"Ref": "EdgeRouteTable"}}


def test_role_policy_is_the_documented_minimal_policy(res):
    policy = json.loads((REPO / "deploy/iam-policy.json").read_text())
    inline = res["ApplianceRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    assert inline == policy
    doc = (REPO / "docs/aws.md").read_text()
    for action in policy["Statement"][0]["Action"]:
        assert action in doc


def _load(name):
    return yaml.load((REPO / "deploy" / name).read_text(), Loader=_CfnLoader)["Resources"]


def _user_data_config(user_data, tmp_path):
    """The appliance.yaml a template's cloud-config writes, with its ${...} filled by values of
    the right kind, loaded by the appliance's own config loader (what the instance will do)."""
    sub = user_data["Fn::Base64"]["Sub"]
    text = sub[0] if isinstance(sub, list) else sub
    values = {"VpcCidr": "10.0.0.0/16", "SendersA": "10.0.0.0/24", "SendersB": "10.0.1.0/24", "DrainSeconds": "300",
              "Preempt": "true", "ProtectedRouteTable": "rtb-0123456789abcdef0", "EdgeRouteTable": "rtb-0123456789abcdef1",
              "PeerInsideEni": "eni-0bbbbbbbbbbbbbbbb", "PeerOutsideEni": "eni-0cccccccccccccccc",
              "Mgmt": "10.0.4.10", "PeerMgmt": "10.0.5.10", "Inside": "10.0.2.10", "PeerInside": "10.0.3.10",
              "AWS::Region": "us-east-1", "HeartbeatSecret": "arn:aws:secretsmanager:us-east-1:1:secret:x"}
    filled = re.sub(r"\$\{([^}]+)\}", lambda m: values[m[1]], text)
    cloud = yaml.safe_load(filled)
    files = {f["path"]: f["content"] for f in cloud["write_files"]}
    cfg_path = tmp_path / "appliance.yaml"
    cfg_path.write_text(files["/etc/appliance/appliance.yaml"].replace("/etc/appliance/rules", str(REPO / "rules")))
    from appliance.config import load_config
    return load_config(str(cfg_path)), cloud


def test_ha_pair_two_azs_both_route_tables_at_the_primary(tmp_path):
    res = _load("ha-pair.yaml")
    assert res["PublicSubnetA"]["Properties"]["AvailabilityZone"] != res["PublicSubnetB"]["Properties"]["AvailabilityZone"]
    assert res["ProtectedDefaultRoute"]["Properties"]["NetworkInterfaceId"] == {"Ref": "InsideEniA"}
    for r in ("EdgeToProtectedARoute", "EdgeToProtectedBRoute"):
        assert res[r]["Properties"]["NetworkInterfaceId"] == {"Ref": "OutsideEniA"}
        assert res[r]["Properties"]["RouteTableId"] == {"Ref": "EdgeRouteTable"}
    assert res["EdgeAssociation"]["Properties"]["RouteTableId"] == {"Ref": "EdgeRouteTable"}
    for side in "AB":
        nics = res[f"Appliance{side}"]["Properties"]["NetworkInterfaces"]
        assert [(n["NetworkInterfaceId"]["Ref"], n["DeviceIndex"]) for n in nics] == [
            (f"OutsideEni{side}", "0"), (f"InsideEni{side}", "1"), (f"ManagementEni{side}", "2")]
        for eni in ("OutsideEni", "InsideEni"):
            assert res[f"{eni}{side}"]["Properties"]["SourceDestCheck"] is False


def test_ha_pair_role_is_the_documented_policies():
    res = _load("ha-pair.yaml")
    inline = {p["PolicyName"]: p["PolicyDocument"]["Statement"] for p in res["ApplianceRole"]["Properties"]["Policies"]}
    assert inline["appliance-source-dest-check"] == [{"Sid": "ApplianceSourceDestCheck", "Effect": "Allow",
                                                      "Action": "ec2:DescribeNetworkInterfaceAttribute", "Resource": "*"}]
    documented = json.loads((REPO / "deploy/ha-iam-policy.json").read_text())["Statement"]
    ha = {s["Sid"]: s for s in inline["appliance-ha-routes"]}
    for st in documented:                                   # same actions; ARNs of this stack's two tables
        assert ha[st["Sid"]]["Action"] == st["Action"]
    arns = ha["HaReplaceRoutesOfThePair"]["Resource"]
    assert [a["Sub"].rsplit("/", 1)[1] for a in arns] == ["${ProtectedRouteTable}", "${EdgeRouteTable}"]
    assert ha["HaReadTheHeartbeatKey"]["Resource"] == {"Ref": "HeartbeatSecret"}


def test_ha_pair_role_cannot_modify_network_interfaces(tmp_path):
    """ec2:ModifyNetworkInterfaceAttribute on "*" lets whoever holds the role's credentials
    (a compromised appliance) move any ENI of the account into any security group, or turn
    source/dest check off anywhere. The pair's template creates its ENIs with source/dest check
    off, so the bootstrap only has to verify it (Describe)."""
    res = _load("ha-pair.yaml")
    actions = [a for p in res["ApplianceRole"]["Properties"]["Policies"]
               for st in p["PolicyDocument"]["Statement"]
               for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])]
    assert "ec2:DescribeNetworkInterfaceAttribute" in actions
    assert not [a for a in actions if a.startswith("ec2:Modify") or a in ("ec2:*", "*")], actions
    for side in "AB":
        cfg, _ = _user_data_config(res[f"Appliance{side}"]["Properties"]["UserData"], tmp_path)
        assert cfg.aws.source_dest_check == "verify"


@pytest.mark.parametrize("side,peer", [("A", "B"), ("B", "A")])
def test_ha_pair_user_data_config_loads(tmp_path, side, peer):
    res = _load("ha-pair.yaml")
    props = res[f"Appliance{side}"]["Properties"]
    cfg, cloud = _user_data_config(props["UserData"], tmp_path)
    ha = cfg.ha
    assert (ha.method, ha.eni, ha.outside_eni) == ("routes", "auto", "auto")
    assert ha.route_tables == ("rtb-0123456789abcdef0", "rtb-0123456789abcdef1")
    assert ha.sync and ha.sync.interface == "auto"          # offloaded flows survive a takeover (conntrackd)
    assert ha.secret_file == "/etc/appliance/ha.key" and ha.readyz == "http://127.0.0.1:9900/readyz"
    names = props["UserData"]["Fn::Base64"]["Sub"][1]
    assert names["PeerInsideEni"] == {"Ref": f"InsideEni{peer}"} and names["PeerOutsideEni"] == {"Ref": f"OutsideEni{peer}"}
    assert names["Mgmt"] == {"GetAtt": f"ManagementEni{side}.PrimaryPrivateIpAddress"}
    assert ["systemctl", "enable", "appliance-ha.service"] in cloud["runcmd"]   # the AMI leaves it disabled


def test_gwlb_fleet_wiring():
    res = _load("gwlb-fleet.yaml")
    tg = res["Targets"]["Properties"]
    assert (tg["Protocol"], tg["Port"], tg["TargetType"], tg["HealthCheckProtocol"], tg["HealthCheckPort"]) == (
        "GENEVE", 6081, "instance", "HTTP", "8080")
    attrs = {a["Key"]: a["Value"] for a in tg["TargetGroupAttributes"]}
    assert attrs["deregistration_delay.timeout_seconds"] == {"Ref": "DrainSeconds"}
    assert res["Gwlb"]["Properties"]["Type"] == "gateway"
    assert res["EndpointService"]["Properties"]["GatewayLoadBalancerArns"] == [{"Ref": "Gwlb"}]
    for side in "AB":
        ep = res[f"Endpoint{side}"]["Properties"]
        assert ep["VpcEndpointType"] == "GatewayLoadBalancer" and ep["SubnetIds"] == [{"Ref": f"EndpointSubnet{side}"}]
        # both directions through the endpoint of the subnet's own AZ
        out = res[f"ProtectedDefaultRoute{side}"]["Properties"]
        assert out["DestinationCidrBlock"] == "0.0.0.0/0" and out["VpcEndpointId"] == {"Ref": f"Endpoint{side}"}
        assert res[f"ProtectedSubnet{side}Routes"]["Properties"]["RouteTableId"] == {"Ref": f"ProtectedRouteTable{side}"}
        edge = res[f"EdgeToProtected{side}"]["Properties"]
        assert edge["VpcEndpointId"] == {"Ref": f"Endpoint{side}"} and edge["RouteTableId"] == {"Ref": "EdgeRouteTable"}
        assert edge["DestinationCidrBlock"] == res[f"ProtectedSubnet{side}"]["Properties"]["CidrBlock"]
    assert res["EdgeAssociation"]["Type"] == "AWS::EC2::GatewayRouteTableAssociation"
    asg = res["Fleet"]["Properties"]
    assert asg["VPCZoneIdentifier"] == [{"Ref": "ApplianceSubnetA"}, {"Ref": "ApplianceSubnetB"}]
    assert asg["TargetGroupARNs"] == [{"Ref": "Targets"}] and asg["HealthCheckType"] == "ELB"
    assert res["ScaleOnCpu"]["Properties"]["AutoScalingGroupName"] == {"Ref": "Fleet"}
    lt = res["ApplianceLaunchTemplate"]["Properties"]["LaunchTemplateData"]
    assert lt["MetadataOptions"]["HttpTokens"] == "required" and lt["NetworkInterfaces"][0]["DeviceIndex"] == 0
    # deploy/iam-policy.json's actions, Modify only on the ENIs the launch template tags
    statements = res["ApplianceRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    actions = {a: st for st in statements for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])}
    assert set(actions) == set(json.loads((REPO / "deploy/iam-policy.json").read_text())["Statement"][0]["Action"])
    modify = actions["ec2:ModifyNetworkInterfaceAttribute"]
    assert modify["Resource"] != "*" and ":network-interface/" in modify["Resource"]["Sub"]
    tagged = [t for spec in lt["TagSpecifications"] if spec["ResourceType"] == "network-interface" for t in spec["Tags"]]
    assert modify["Condition"]["StringEquals"] == {f"aws:ResourceTag/{t['Key']}": t["Value"] for t in tagged}


def test_gwlb_fleet_user_data_config_loads(tmp_path):
    res = _load("gwlb-fleet.yaml")
    lt = res["ApplianceLaunchTemplate"]["Properties"]["LaunchTemplateData"]
    cfg, cloud = _user_data_config(lt["UserData"], tmp_path)
    g = cfg.gwlb
    # the unit's stop timeout outlasts the drain (systemd sums "300s 30s"), and systemd reads it
    dropin = {f["path"]: f["content"] for f in cloud["write_files"]}["/etc/systemd/system/appliance.service.d/drain.conf"]
    stop = re.search(r"TimeoutStopSec=(\d+)s (\d+)s", dropin)
    assert stop and int(stop[1]) + int(stop[2]) > g.drain
    assert ["systemctl", "daemon-reload"] in cloud["runcmd"]
    assert g is not None and g.senders == ("10.0.0.0/24", "10.0.1.0/24")
    assert (g.health_host, g.health_port, g.drain) == ("0.0.0.0", 8080, 300)
    assert cfg.aws.source_dest_check == "disable"
    # the senders are the subnets the GWLB lives in (its ENIs send the GENEVE)
    names = lt["UserData"]["Fn::Base64"]["Sub"][1]
    gwlb_subnets = res["Gwlb"]["Properties"]["Subnets"]
    cidrs = {s["Ref"]: res[s["Ref"]]["Properties"]["CidrBlock"] for s in gwlb_subnets}
    assert [names["SendersA"], names["SendersB"]] == list(cidrs.values())
    assert tg_port(res) == g.health_port


def tg_port(res):
    return int(res["Targets"]["Properties"]["HealthCheckPort"])
