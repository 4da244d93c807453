import json
import os
import pathlib
import shutil

import pytest

from awsfakes import FakeImds, LoopbackBridge, MotoServer, Netns

REPO = pathlib.Path(__file__).resolve().parents[2]
POLICY = json.loads((REPO / "deploy/iam-policy.json").read_text())
DESCRIBE_ONLY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "ec2:DescribeNetworkInterfaceAttribute", "Resource": "*"}]}
ADMIN = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
USERS = {"setup": ADMIN, "appliance": POLICY, "describe-only": DESCRIBE_ONLY}
SUBNETS = {"outside": "10.0.0.0/24", "inside": "10.0.1.0/24", "management": "10.0.2.0/24"}


class Cloud:
    """moto server with IAM auth on: users whose keys carry the policies above, one VPC
    with three subnets; `enis(n)` makes fresh ENIs (source/dest check on) every call."""

    def __init__(self):
        # Exactly these 3 x 3 IAM calls run before moto starts checking signatures.
        self.moto = MotoServer(no_auth_calls=3 * len(USERS))
        iam = self.moto.client("iam")
        self.keys = {}
        for user, policy in USERS.items():
            iam.create_user(UserName=user)
            iam.put_user_policy(UserName=user, PolicyName=user, PolicyDocument=json.dumps(policy))
            k = iam.create_access_key(UserName=user)["AccessKey"]
            self.keys[user] = (k["AccessKeyId"], k["SecretAccessKey"])
        self.ec2 = self.moto.client("ec2", self.keys["setup"])
        self.vpc = self.ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        self.subnets = {role: self.ec2.create_subnet(VpcId=self.vpc, CidrBlock=c)["Subnet"]["SubnetId"]
                        for role, c in SUBNETS.items()}
        self._n = 10

    def enis(self, count):
        """IMDS-shaped descriptions of `count` new ENIs: outside, inside[, management]."""
        out = []
        self._n += 1
        for dev, role in enumerate(list(SUBNETS)[:count]):
            ip = SUBNETS[role].replace("0/24", str(self._n))
            e = self.ec2.create_network_interface(SubnetId=self.subnets[role],
                                                  PrivateIpAddress=ip)["NetworkInterface"]
            out.append({"mac": e["MacAddress"], "device_number": dev, "eni_id": e["NetworkInterfaceId"],
                        "subnet_id": self.subnets[role], "vpc_id": self.vpc, "subnet_cidr": SUBNETS[role],
                        "vpc_cidrs": ["10.0.0.0/16"], "local_ipv4s": [ip]})
        return out

    def source_dest_check(self, eni_id):
        r = self.ec2.describe_network_interface_attribute(NetworkInterfaceId=eni_id, Attribute="sourceDestCheck")
        return r["SourceDestCheck"]["Value"]


@pytest.fixture(scope="session")
def cloud():
    c = Cloud()
    yield c
    c.moto.close()


def _need_netns():
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("needs root and iproute2 for network namespaces")


class Appliance:
    """One simulated instance: a namespace whose ENIs are veths with the MACs IMDS reports,
    IMDS and EC2 bridged onto the namespace's loopback."""

    def __init__(self, cloud, tmp, count, ifnames=("ens5", "ens6", "ens7")):
        self.cloud, self.tmp = cloud, tmp
        self.enis = cloud.enis(count)
        self.imds = FakeImds(self.enis)
        self.ns = Netns()
        self.bridges = []
        try:
            for eni, ifname in zip(self.enis, ifnames):
                self.ns.add_eni(ifname, eni["mac"])
            self.imds_port = self._bridge(self.imds.port)
            self.ec2_port = self._bridge(cloud.moto.port)
        except Exception:
            self.close()
            raise
        self.status = tmp / "bootstrap.json"
        self.config = tmp / "appliance.yaml"
        self.config.write_text("interfaces:\n  outside: auto\n  inside: auto\n  management: auto\n"
                               "aws:\n  interface_wait_seconds: 0\n")

    def _bridge(self, port):
        b = LoopbackBridge(self.ns.name, port)
        self.bridges.append(b)
        return b.port

    def env(self, user="appliance"):
        key = self.cloud.keys[user]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID=key[0], AWS_SECRET_ACCESS_KEY=key[1],
                   AWS_EC2_METADATA_SERVICE_ENDPOINT=f"http://127.0.0.1:{self.imds_port}/",
                   AWS_ENDPOINT_URL_EC2=f"http://127.0.0.1:{self.ec2_port}",
                   PYTHONPATH=str(REPO))
        return env

    def bootstrap(self, *args, user="appliance"):
        return self.ns.exec("python3", "-m", "appliance.aws.bootstrap", "--config", str(self.config),
                            "--status-file", str(self.status), *args, env=self.env(user), cwd=REPO, timeout=120)

    def read_status(self):
        return json.loads(self.status.read_text())

    def close(self):
        for b in self.bridges:
            b.close()
        self.imds.close()
        self.ns.close()


@pytest.fixture
def appliance3(cloud, tmp_path):
    _need_netns()
    a = Appliance(cloud, tmp_path, 3)
    yield a
    a.close()


@pytest.fixture
def appliance2(cloud, tmp_path):
    _need_netns()
    a = Appliance(cloud, tmp_path, 2)
    yield a
    a.close()
