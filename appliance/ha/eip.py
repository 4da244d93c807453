"""The `eip` takeover method: an Elastic IP names the active instance.

Who is primary is read from EC2 (DescribeAddresses), never remembered: the address's
association is at our outside ENI (`ha.eni`), at the peer's (`ha.peer_eni`), or elsewhere.
A takeover reads it again and, only if it is still the peer's, associates it with our ENI
(AssociateAddress with AllowReassociation: one call, the peer's association is replaced in
place; without it EC2 refuses an address that is associated). Traffic *to the EIP* then
reaches us; routes inside the VPC are untouched, so this fits a design whose inbound path is
the EIP (docs/ha.md, "Takeover methods").
IAM: ec2:DescribeAddresses and ec2:AssociateAddress on the address and the pair's ENIs.
"""
from appliance.aws.ec2 import Ec2Error, _call
from appliance.ha.machine import PEER, SELF


class ElasticIp:
    def __init__(self, ec2, allocation_id, eni, peer_eni):
        self.ec2, self.allocation_id, self.eni, self.peer_eni = ec2, allocation_id, eni, peer_eni

    def association(self):
        """(eni id or None, public ip); raises Ec2Error (also when the address does not exist)."""
        r = _call(self.ec2.describe_addresses, "DescribeAddresses", self.allocation_id,
                  AllocationIds=[self.allocation_id])
        found = r.get("Addresses") or []
        if len(found) != 1:
            raise Ec2Error(f"EC2 DescribeAddresses on {self.allocation_id} failed: {len(found)} addresses returned")
        return found[0].get("NetworkInterfaceId") or None, found[0].get("PublicIp")    # "" = none, too

    def owner(self):
        eni, ip = self.association()
        if eni == self.eni:
            return SELF, f"{self.allocation_id} ({ip}) is at {self.eni}"
        if eni == self.peer_eni:
            return PEER, f"{self.allocation_id} ({ip}) is at the peer's {self.peer_eni}"
        if eni is None:
            # Nobody has it (released by an operator, or never associated): the peer is not
            # carrying the traffic either, so a takeover (peer dead or faulty) may claim it.
            return PEER, f"{self.allocation_id} ({ip}) is not associated: taken on takeover"
        # Someone outside the pair: acting on it would steal an address we do not manage.
        return None, f"{self.allocation_id} ({ip}) is at {eni}, neither {self.eni} nor {self.peer_eni}: no action"

    def take(self):
        """Associate the address with our ENI unless it is already there (read first)."""
        eni, ip = self.association()
        if eni == self.eni:
            return []
        if eni not in (self.peer_eni, None):
            raise Ec2Error(f"{self.allocation_id} moved to {eni} (not the pair's): not taken")
        _call(self.ec2.associate_address, "AssociateAddress", self.allocation_id,
              AllocationId=self.allocation_id, NetworkInterfaceId=self.eni, AllowReassociation=True)
        return [(self.allocation_id, f"{ip} -> {self.eni}")]
