"""The `routes` takeover method: the VPC route tables name the active instance.

Who is primary is read from the tables (DescribeRouteTables), never remembered: the routes
managed are those in `route_tables` whose target is one of the pair's ENIs. A takeover re-reads
the tables first and replaces only the routes that still point at the peer (ReplaceRoute,
one call per route), so two decisions in a row, or a peer that got there first, change nothing.
Two pairs of ENIs may be managed: the inside ENIs (the protected subnets' routes) and, for the
IGW edge route table (ingress routing), the outside ENIs; each route moves to our ENI of the same
pair.
IAM: ec2:DescribeRouteTables and ec2:ReplaceRoute on those tables (docs/ha.md).
"""
from appliance.aws.ec2 import Ec2Error, _call
from appliance.ha.machine import PEER, SELF

DEST_KEYS = ("DestinationCidrBlock", "DestinationIpv6CidrBlock", "DestinationPrefixListId")


class RouteTables:
    def __init__(self, ec2, tables, eni, peer_eni, outside_eni="", peer_outside_eni=""):
        self.ec2, self.tables, self.eni, self.peer_eni = ec2, tuple(tables), eni, peer_eni
        self.ours = {peer_eni: eni}                 # the peer's ENI -> ours, for each managed pair
        if outside_eni and peer_outside_eni:
            self.ours[peer_outside_eni] = outside_eni
        self.mine = set(self.ours.values())

    def managed(self):
        """[(table, dest_key, dest, target_eni)] for every route at either ENI; raises Ec2Error."""
        r = _call(self.ec2.describe_route_tables, "DescribeRouteTables", ",".join(self.tables),
                  RouteTableIds=list(self.tables))
        out = []
        for t in r.get("RouteTables", []):
            for route in t.get("Routes", []):
                target = route.get("NetworkInterfaceId")
                if target not in self.ours and target not in self.mine:
                    continue
                key = next((k for k in DEST_KEYS if route.get(k)), None)
                if key:
                    out.append((t["RouteTableId"], key, route[key], target))
        return out

    def owner(self):
        """SELF / PEER by where the managed routes point; None when they are split or absent
        (say so: a half-done takeover is finished by the next one, an empty set is a config error)."""
        routes = self.managed()
        targets = {r[3] for r in routes}
        ours, peers = ", ".join(sorted(self.mine)), ", ".join(sorted(self.ours))
        if not routes:
            return None, f"no route in {', '.join(self.tables)} points at {ours} or {peers}"
        if targets <= self.mine:
            return SELF, f"{len(routes)} route(s) point at {ours}"
        if targets <= set(self.ours):
            return PEER, f"{len(routes)} route(s) point at the peer's {peers}"
        return PEER, f"routes split between {ours} and {peers}: the rest are taken on takeover"

    def take(self):
        """Point every managed route at our ENI; returns the routes changed (re-read first)."""
        changed = []
        for table, key, dest, target in self.managed():
            if target in self.mine:
                continue
            _call(self.ec2.replace_route, "ReplaceRoute", table, RouteTableId=table,
                  NetworkInterfaceId=self.ours[target], **{key: dest})
            changed.append((table, dest))
        return changed


__all__ = ["RouteTables", "Ec2Error"]
