"""The `eip` and `eni` takeover methods against the moto server with IAM checks on, each user
holding exactly the actions of its deploy/ha-iam-policy-*.json; results read back through EC2.
And `auto` ENIs resolved from the bootstrap status file or the local IMDSv2 server."""
import io
import json
import pathlib

import pytest

from awsfakes import FakeImds, MotoServer, free_port
from appliance.aws.ec2 import Ec2Denied, Ec2Error
from appliance.aws.imds import Imds
from appliance.ha import discover, methods
from appliance.ha.eip import ElasticIp
from appliance.ha.eni import FloatingEni
from appliance.ha.machine import PEER, SELF
from appliance.ha.service import Service
from appliance.ha.settings import Ha

REPO = pathlib.Path(__file__).resolve().parents[2]


def actions(policy_file):
    """The actions a policy file grants, with Resource "*": moto checks actions, not ARNs."""
    doc = json.loads((REPO / "deploy" / policy_file).read_text())
    acts = set()
    for st in doc["Statement"]:
        acts.update([st["Action"]] if isinstance(st["Action"], str) else st["Action"])
    return sorted(acts)


USERS = {"admin": ["*"], "eip": actions("ha-iam-policy-eip.json"), "eni": actions("ha-iam-policy-eni.json"),
         "describe": ["ec2:DescribeAddresses", "ec2:DescribeNetworkInterfaces"]}


class Aws:
    def __init__(self):
        self.moto = MotoServer(no_auth_calls=3 * len(USERS))
        iam = self.moto.client("iam")
        self.keys = {}
        for user, acts in USERS.items():
            iam.create_user(UserName=user)
            iam.put_user_policy(UserName=user, PolicyName=user, PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": acts, "Resource": "*"}]}))
            k = iam.create_access_key(UserName=user)["AccessKey"]
            self.keys[user] = (k["AccessKeyId"], k["SecretAccessKey"])
        ec2 = self.admin = self.client("admin")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        self.subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        self.me, self.peer, self.other = (
            ec2.create_network_interface(SubnetId=self.subnet, PrivateIpAddress=f"10.0.1.{n}")["NetworkInterface"]
            ["NetworkInterfaceId"] for n in (11, 12, 13))

    def client(self, user):
        return self.moto.client("ec2", self.keys[user])

    def instances(self, n):
        image = self.admin.describe_images()["Images"][0]["ImageId"]
        r = self.admin.run_instances(ImageId=image, MinCount=n, MaxCount=n, SubnetId=self.subnet)
        return [i["InstanceId"] for i in r["Instances"]]

    def eni(self, eni_id):
        return self.admin.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]


@pytest.fixture(scope="module")
def aws():
    a = Aws()
    yield a
    a.moto.close()


# --- eip ----------------------------------------------------------------------------------

@pytest.fixture
def eip(aws):
    alloc = aws.admin.allocate_address(Domain="vpc")["AllocationId"]
    aws.admin.associate_address(AllocationId=alloc, NetworkInterfaceId=aws.peer)
    return alloc


def at(aws, alloc):
    return aws.admin.describe_addresses(AllocationIds=[alloc])["Addresses"][0].get("NetworkInterfaceId")


def test_eip_moves_from_the_peer_with_reassociation(aws, eip):
    m = ElasticIp(aws.client("eip"), eip, aws.me, aws.peer)
    assert m.owner()[0] == PEER
    changed = m.take()
    assert len(changed) == 1 and changed[0][0] == eip
    assert at(aws, eip) == aws.me                           # read back through EC2
    assert m.owner()[0] == SELF and m.take() == []          # nothing left to do: no second call


def test_eip_unassociated_is_taken_elsewhere_is_refused(aws, eip):
    m = ElasticIp(aws.client("eip"), eip, aws.me, aws.peer)
    aws.admin.disassociate_address(AssociationId=aws.admin.describe_addresses(
        AllocationIds=[eip])["Addresses"][0]["AssociationId"])
    owner, note = m.owner()
    assert owner == PEER and "not associated" in note
    m.take()
    assert at(aws, eip) == aws.me
    aws.admin.associate_address(AllocationId=eip, NetworkInterfaceId=aws.other, AllowReassociation=True)
    owner, note = m.owner()
    assert owner is None and aws.other in note              # not the pair's: no action
    with pytest.raises(Ec2Error, match="not the pair's"):
        m.take()
    assert at(aws, eip) == aws.other


def test_eip_denied_names_the_call(aws, eip):
    with pytest.raises(Ec2Denied, match="AssociateAddress on eipalloc-"):
        ElasticIp(aws.client("describe"), eip, aws.me, aws.peer).take()
    assert at(aws, eip) == aws.peer


def test_service_takes_the_eip_from_a_silent_peer(aws, eip, tmp_path):
    class Clock:
        t = 100.0

        def __call__(self):
            return self.t
    (tmp_path / "readyz").write_text("{}")
    import http.server
    import threading
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path))  # noqa: E731
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        ports = [free_port() for _ in range(4)]
        ha = Ha(listen=f"127.0.0.1:{ports[0]}", peer=f"127.0.0.1:{ports[1]}", check_listen=f"127.0.0.1:{ports[2]}",
                check_peer=f"127.0.0.1:{ports[3]}", method="eip", eip=eip, eni=aws.me, peer_eni=aws.peer,
                readyz=f"http://127.0.0.1:{srv.server_address[1]}/readyz", status_file=str(tmp_path / "ha.json"))
        clock, out = Clock(), io.StringIO()
        svc = Service(ha, b"k" * 32, ElasticIp(aws.client("eip"), eip, aws.me, aws.peer), out=out, clock=clock)
        svc.tick()
        assert svc.machine.state() == "standby" and at(aws, eip) == aws.peer
        clock.t += 1.1
        svc.tick()
        take = [json.loads(l)["ha"] for l in out.getvalue().splitlines() if '"takeover"' in l]
        assert len(take) == 1 and take[0]["code"] == "peer_dead"
        assert at(aws, eip) == aws.me and svc.machine.state() == "primary"
    finally:
        srv.shutdown()
        srv.server_close()


# --- eni ----------------------------------------------------------------------------------

@pytest.fixture
def floating(aws):
    me, peer = aws.instances(2)
    eni = aws.admin.create_network_interface(SubnetId=aws.subnet)["NetworkInterface"]["NetworkInterfaceId"]
    aws.admin.attach_network_interface(NetworkInterfaceId=eni, InstanceId=peer, DeviceIndex=2)
    return eni, me, peer


def test_eni_moves_keeping_its_device_index(aws, floating):
    eni, me, peer = floating
    m = FloatingEni(aws.client("eni"), eni, me, poll=0.05, wait=5)
    owner, note = m.owner()
    assert owner == PEER and peer in note
    changed = m.take()
    assert [c[1] for c in changed] == [f"detached from {peer}", f"attached to {me} at device 2"]
    att = aws.eni(eni)["Attachment"]                         # read back through EC2
    assert (att["InstanceId"], att["DeviceIndex"], att["Status"]) == (me, 2, "attached")
    assert m.owner()[0] == SELF and m.take() == []


def test_eni_attached_nowhere(aws, floating):
    eni, me, peer = floating
    aws.admin.detach_network_interface(AttachmentId=aws.eni(eni)["Attachment"]["AttachmentId"])
    m = FloatingEni(aws.client("eni"), eni, me, poll=0.05, wait=5)
    owner, note = m.owner()
    assert owner == PEER and "attached nowhere" in note
    with pytest.raises(Ec2Error, match="device index is unknown"):
        m.take()
    m = FloatingEni(aws.client("eni"), eni, me, device_index=3, poll=0.05, wait=5)
    assert m.take() == [(eni, f"attached to {me} at device 3")]
    assert aws.eni(eni)["Attachment"]["DeviceIndex"] == 3


def test_eni_denied_names_the_call(aws, floating):
    eni, me, peer = floating
    with pytest.raises(Ec2Denied, match=f"DetachNetworkInterface on {eni}"):
        FloatingEni(aws.client("describe"), eni, me).take()
    assert aws.eni(eni)["Attachment"]["InstanceId"] == peer


# --- auto: the bootstrap status file, the local IMDSv2 server, EC2 for the peer ------------

@pytest.fixture
def imds():
    enis = [{"mac": f"0a:00:00:00:00:0{d}", "device_number": d, "eni_id": f"eni-0000000000000000{d}",
             "subnet_id": "subnet-00000001", "vpc_id": "vpc-1", "subnet_cidr": "10.0.1.0/24",
             "vpc_cidrs": ["10.0.0.0/16"], "local_ipv4s": [f"10.0.{d}.11"]} for d in (0, 1, 2)]
    f = FakeImds(enis, instance_id="i-0fedcba9876543210")
    yield f
    f.close()


def ha_auto(method="routes", **kw):
    return Ha(listen="10.0.2.11:7400", peer="10.0.2.12:7400", check_listen="10.0.1.11:7401",
              check_peer="10.0.1.12:7401", method=method, eni="auto", **kw)


def test_eni_auto_from_the_bootstrap_status(tmp_path, imds):
    st = tmp_path / "bootstrap.json"
    st.write_text(json.dumps({"ok": True, "instance_id": "i-0123456789abcdef0", "roles": {
        "outside": {"eni": "eni-0aaaaaaaaaaaaaaaa"}, "inside": {"eni": "eni-0bbbbbbbbbbbbbbbb"}}}))
    ha, notes = discover.resolve(ha_auto(peer_eni="eni-0ccccccccccccccc1"), str(st), Imds(imds.url), None)
    assert ha.eni == "eni-0bbbbbbbbbbbbbbbb" and "bootstrap status (inside role)" in notes[0]
    ha, _ = discover.resolve(ha_auto("eip", peer_eni="eni-0ccccccccccccccc1", eip="eipalloc-12345678"), str(st),
                             Imds(imds.url), None)
    assert ha.eni == "eni-0aaaaaaaaaaaaaaaa"                 # eip lands on the outside ENI
    assert discover.instance_id(discover.bootstrap_status(str(st)), Imds(imds.url)) == "i-0123456789abcdef0"


def test_eni_auto_from_imds_when_the_bootstrap_did_not_complete(tmp_path, imds):
    st = tmp_path / "bootstrap.json"
    st.write_text(json.dumps({"ok": False, "roles": {"inside": {"eni": "eni-0bbbbbbbbbbbbbbbb"}}}))
    for path in (st, tmp_path / "missing.json"):
        ha, notes = discover.resolve(ha_auto(peer_eni="eni-0ccccccccccccccc1"), str(path), Imds(imds.url), None)
        assert ha.eni == "eni-00000000000000001" and "IMDS (device index 1)" in notes[0]
    assert discover.instance_id(None, Imds(imds.url)) == "i-0fedcba9876543210"
    imds.enis = imds.enis[:1]
    with pytest.raises(ValueError, match="IMDS lists 0 ENIs at device index 1"):
        discover.resolve(ha_auto(peer_eni="eni-0ccccccccccccccc1"), str(st), Imds(imds.url), None)


def test_peer_eni_auto_by_the_check_peer_address(aws, tmp_path, imds):
    ha = Ha(listen="10.0.2.11:7400", peer="10.0.2.12:7400", check_listen="10.0.1.11:7401",
            check_peer="10.0.1.12:7401", eni=aws.me, peer_eni="auto")
    got, notes = discover.resolve(ha, str(tmp_path / "none.json"), Imds(imds.url), aws.client("eni"))
    assert got.peer_eni == aws.peer and "10.0.1.12" in notes[0]
    ha = Ha(listen="10.0.2.11:7400", peer="10.0.2.12:7400", check_listen="10.0.1.11:7401",
            check_peer="10.0.1.99:7401", eni=aws.me, peer_eni="auto")
    with pytest.raises(ValueError, match="0 ENIs hold the peer's check_peer address 10.0.1.99"):
        discover.resolve(ha, str(tmp_path / "none.json"), Imds(imds.url), aws.client("eni"))


def test_methods_build_picks_the_method(aws, floating, tmp_path, imds):
    eni, me, _ = floating
    st = tmp_path / "bootstrap.json"
    st.write_text(json.dumps({"ok": True, "instance_id": me, "roles": {}}))
    ha = Ha(listen="10.0.2.11:7400", peer="10.0.2.12:7400", check_listen="10.0.1.11:7401",
            check_peer="10.0.1.12:7401", method="eni", floating_eni=eni)
    m, _, notes = methods.build(ha, aws.client("eni"), str(st), Imds(imds.url))
    assert isinstance(m, FloatingEni) and m.instance_id == me and notes == [f"instance {me}"]


# --- routes with the IGW edge route table: each route moves to our ENI of its pair ----------

def test_routes_move_inside_and_edge_routes_to_their_counterparts(aws):
    ec2 = aws.admin
    vpc = ec2.describe_subnets(SubnetIds=[aws.subnet])["Subnets"][0]["VpcId"]
    out_me, out_peer = (ec2.create_network_interface(SubnetId=aws.subnet)["NetworkInterface"]["NetworkInterfaceId"]
                        for _ in range(2))
    protected, edge = (ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"] for _ in range(2))
    ec2.create_route(RouteTableId=protected, DestinationCidrBlock="0.0.0.0/0", NetworkInterfaceId=aws.peer)
    ec2.create_route(RouteTableId=edge, DestinationCidrBlock="10.0.1.0/24", NetworkInterfaceId=out_peer)
    from appliance.ha.routes import RouteTables
    rt = RouteTables(aws.client("admin"), [protected, edge], aws.me, aws.peer, out_me, out_peer)
    assert rt.owner()[0] == PEER
    assert sorted(rt.take()) == sorted([(protected, "0.0.0.0/0"), (edge, "10.0.1.0/24")])

    def target(rtb):
        r = [r for r in ec2.describe_route_tables(RouteTableIds=[rtb])["RouteTables"][0]["Routes"]
             if r.get("NetworkInterfaceId")]
        return r[0]["NetworkInterfaceId"]
    assert (target(protected), target(edge)) == (aws.me, out_me)        # read back: each to its counterpart
    assert rt.owner()[0] == SELF and rt.take() == []


def test_outside_eni_auto_from_the_bootstrap_status(tmp_path, imds):
    st = tmp_path / "bootstrap.json"
    st.write_text(json.dumps({"ok": True, "roles": {"outside": {"eni": "eni-0aaaaaaaaaaaaaaaa"},
                                                     "inside": {"eni": "eni-0bbbbbbbbbbbbbbbb"}}}))
    ha, notes = discover.resolve(ha_auto(peer_eni="eni-0ccccccccccccccc1", outside_eni="auto",
                                         peer_outside_eni="eni-0ccccccccccccccc2"), str(st), Imds(imds.url), None)
    assert (ha.eni, ha.outside_eni) == ("eni-0bbbbbbbbbbbbbbbb", "eni-0aaaaaaaaaaaaaaaa")


def test_sync_interface_auto_is_the_management_role_from_the_bootstrap_status(tmp_path, imds):
    from dataclasses import replace
    from appliance.ha.settings import Sync
    st = tmp_path / "bootstrap.json"
    st.write_text(json.dumps({"ok": True, "roles": {"inside": {"eni": "eni-0bbbbbbbbbbbbbbbb"},
                                                     "management": {"eni": "eni-0dddddddddddddddd", "interface": "ens7"}}}))
    ha = replace(ha_auto(peer_eni="eni-0ccccccccccccccc1"), sync=Sync(interface="auto"))
    got, notes = discover.resolve(ha, str(st), Imds(imds.url), None)
    assert got.sync.interface == "ens7" and any("sync.interface ens7" in n for n in notes)
    st.write_text(json.dumps({"ok": False, "roles": {"management": {"interface": "ens7"}}}))   # failed run: not trusted
    with pytest.raises(ValueError, match="ha.sync.interface: auto"):
        discover.resolve(ha, str(st), Imds(imds.url), None)
