"""deploy/cloudformation.yaml: cfn-lint clean, and wired the way docs/aws.md says."""
import json
import pathlib
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


@pytest.mark.skipif(not shutil.which("cfn-lint"), reason="cfn-lint not installed (pip install cfn-lint)")
def test_cfn_lint():
    r = subprocess.run(["cfn-lint", str(TEMPLATE)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


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
