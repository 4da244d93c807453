"""The `routes` method against the moto server (IAM checks on), and the service's takeover
path driven tick by tick: the tables read again before acting, a denied ReplaceRoute reported
and retried after ROUTE_POLL, not every tick. Real UDP sockets and a real /readyz over HTTP."""
import http.server
import io
import json
import threading
import time

import pytest

from awsfakes import MotoServer, free_port
from appliance.aws.ec2 import Ec2Denied
from appliance.ha.machine import PEER, SELF
from appliance.ha.routes import RouteTables
from appliance.ha.service import ROUTE_POLL, Service
from appliance.ha.settings import Ha

USERS = {"ha": [("ec2:DescribeRouteTables", "*"), ("ec2:ReplaceRoute", "*")],
         "readonly": [("ec2:DescribeRouteTables", "*")]}


class Aws:
    def __init__(self):
        self.moto = MotoServer(no_auth_calls=11 + 3 * len(USERS))    # the calls below, exactly
        ec2 = self.setup = self.moto.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        sub = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
        self.me, self.peer, self.other = (ec2.create_network_interface(SubnetId=sub)["NetworkInterface"]
                                          ["NetworkInterfaceId"] for _ in range(3))
        self.rtbs = [ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"] for _ in range(2)]
        for rtb, dest, eni in ((self.rtbs[0], "0.0.0.0/0", self.peer), (self.rtbs[0], "10.9.0.0/16", self.peer),
                               (self.rtbs[0], "10.8.0.0/16", self.other), (self.rtbs[1], "0.0.0.0/0", self.peer)):
            ec2.create_route(RouteTableId=rtb, DestinationCidrBlock=dest, NetworkInterfaceId=eni)
        iam = self.moto.client("iam")
        self.keys = {}
        for user, grants in USERS.items():
            iam.create_user(UserName=user)
            iam.put_user_policy(UserName=user, PolicyName=user, PolicyDocument=json.dumps(
                {"Version": "2012-10-17",
                 "Statement": [{"Effect": "Allow", "Action": a, "Resource": r} for a, r in grants]}))
            k = iam.create_access_key(UserName=user)["AccessKey"]
            self.keys[user] = (k["AccessKeyId"], k["SecretAccessKey"])
        self.setup = self.moto.client("ec2", self.keys["ha"])

    def routes(self, user="ha"):
        return RouteTables(self.moto.client("ec2", self.keys[user]), self.rtbs, self.me, self.peer)

    def targets(self):
        out = {}
        for t in self.setup.describe_route_tables(RouteTableIds=self.rtbs)["RouteTables"]:
            for r in t["Routes"]:
                if r.get("NetworkInterfaceId"):
                    out[(t["RouteTableId"], r["DestinationCidrBlock"])] = r["NetworkInterfaceId"]
        return out

    def point_all(self, eni):
        for (rtb, dest), target in self.targets().items():
            if target in (self.me, self.peer):
                self.setup.replace_route(RouteTableId=rtb, DestinationCidrBlock=dest, NetworkInterfaceId=eni)


@pytest.fixture
def aws():
    a = Aws()
    yield a
    a.moto.close()


@pytest.fixture
def readyz(tmp_path):
    (tmp_path / "readyz").write_text("{}")
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path))  # noqa: E731
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/readyz"
    srv.shutdown()
    srv.server_close()


def test_owner_and_take_only_the_pairs_routes(aws):
    rt = aws.routes()
    assert rt.owner()[0] == PEER
    changed = rt.take()
    assert sorted(changed) == sorted([(aws.rtbs[0], "0.0.0.0/0"), (aws.rtbs[0], "10.9.0.0/16"),
                                      (aws.rtbs[1], "0.0.0.0/0")])
    t = aws.targets()
    assert t[(aws.rtbs[0], "10.8.0.0/16")] == aws.other                 # not ours: untouched
    assert {v for k, v in t.items() if k[1] != "10.8.0.0/16"} == {aws.me}
    assert rt.owner() == (SELF, f"3 route(s) point at {aws.me}")
    assert rt.take() == []                                               # nothing left to do
    aws.setup.replace_route(RouteTableId=aws.rtbs[1], DestinationCidrBlock="0.0.0.0/0", NetworkInterfaceId=aws.peer)
    owner, note = rt.owner()
    assert owner == PEER and "split" in note                             # a half-done move: finish it
    assert rt.take() == [(aws.rtbs[1], "0.0.0.0/0")]


def test_no_managed_route_is_unknown(aws):
    rt = RouteTables(aws.moto.client("ec2", aws.keys["ha"]), aws.rtbs, "eni-00000000000000001", "eni-00000000000000002")
    owner, note = rt.owner()
    assert owner is None and "no route in" in note


def test_denied_replace_route_names_the_call(aws):
    with pytest.raises(Ec2Denied, match="ReplaceRoute on rtb-.*UnauthorizedOperation|ReplaceRoute on rtb-.*AccessDenied"):
        aws.routes("readonly").take()


class Clock:
    t = 500.0

    def __call__(self):
        return self.t


def service(aws, readyz, tmp_path, user="ha"):
    ports = [free_port() for _ in range(4)]
    ha = Ha(listen=f"127.0.0.1:{ports[0]}", peer=f"127.0.0.1:{ports[1]}", check_listen=f"127.0.0.1:{ports[2]}",
            check_peer=f"127.0.0.1:{ports[3]}", interval=0.2, dead_after=1.0, hold_down=10.0,
            route_tables=tuple(aws.rtbs), eni=aws.me, peer_eni=aws.peer, readyz=readyz,
            status_file=str(tmp_path / "ha.json"))
    clock, out = Clock(), io.StringIO()
    svc = Service(ha, b"k" * 32, aws.routes(user), out=out, clock=clock)
    events = lambda: [json.loads(l)["ha"] for l in out.getvalue().splitlines()]   # noqa: E731
    return svc, clock, events


def test_silent_peer_taken_over_with_status_and_events(aws, readyz, tmp_path):
    svc, clock, events = service(aws, readyz, tmp_path)
    svc.tick()
    assert events()[-1]["code"] == "peer_healthy" and svc.machine.state() == "standby"
    clock.t += 1.1
    svc.tick()
    take = [e for e in events() if e["event"] == "takeover"]
    assert len(take) == 1 and take[0]["code"] == "peer_dead" and len(take[0]["routes"]) == 3
    st = json.loads((tmp_path / "ha.json").read_text())
    assert st["state"] == "primary" and st["route_owner"] == "self" and st["takeovers"] == 1
    assert st["last_decision"]["code"] == "peer_dead" and st["last_decision"]["takeover"] is True


def test_tables_read_again_before_acting(aws, readyz, tmp_path):
    """The peer (or an operator) moved the routes to us after our last read: no takeover,
    no takeover logged; we are primary because the tables say so."""
    svc, clock, events = service(aws, readyz, tmp_path)
    svc.tick()
    aws.point_all(aws.me)
    clock.t += 1.1
    svc.route_read = clock.t                   # the periodic read is not due: only the re-read can see it
    svc.tick()
    assert not [e for e in events() if e["event"] == "takeover"]
    assert svc.machine.takeovers == 0 and svc.machine.state() == "primary"


def test_denied_takeover_reported_and_retried_after_route_poll(aws, readyz, tmp_path):
    svc, clock, events = service(aws, readyz, tmp_path, user="readonly")
    svc.tick()
    clock.t += 1.1
    svc.tick()
    failed = [e for e in events() if e["event"] == "takeover_failed"]
    assert len(failed) == 1 and "ReplaceRoute" in failed[0]["error"]
    for _ in range(int(ROUTE_POLL / 0.2) - 1):
        clock.t += 0.2
        svc.tick()
    assert len([e for e in events() if e["event"] == "takeover_failed"]) == 1
    assert events()[-1]["code"] == "takeover_retry"
    clock.t += 0.3
    svc.tick()
    assert len([e for e in events() if e["event"] == "takeover_failed"]) == 2
    assert aws.targets()[(aws.rtbs[1], "0.0.0.0/0")] == aws.peer      # nothing changed


def test_only_a_reply_to_our_own_outstanding_probe_counts(aws, readyz, tmp_path):
    """The independent check counts a probe reply only for a nonce we sent and have not had
    answered: an old or made-up reply (a replay, or a peer answering someone else's probe)
    says nothing about the peer now (review "fleet": nothing tested the nonce check)."""
    import socket
    from appliance.ha import heartbeat as hb
    svc, clock, events = service(aws, readyz, tmp_path)
    peer = hb.Codec(b"k" * 32, svc.ha.peer)                      # the peer's own sender id
    svc.send()                                                  # our probe: one nonce outstanding
    nonce = svc.nonces[-1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        def reply(n):
            s.sendto(peer.encode(hb.PROBE_REPLY, "primary", True, n), svc.check_sock.getsockname())
            time.sleep(0.2)
            svc.receive(svc.check_sock)
            return svc.peer_wall["check"]
        assert reply(nonce ^ 1) is None                         # not a nonce we sent
        assert reply(nonce) is not None                         # ours: the check heard the peer
        svc.peer_wall["check"] = None
        assert reply(nonce) is None                             # the same reply again: used up
    svc.hb_sock.close()
    svc.check_sock.close()
