"""The `eni` takeover method: a floating ENI (its addresses, MAC and security groups) moves.

Who is primary is read from EC2 (DescribeNetworkInterfaces): the floating ENI attached to
this instance is ours; attached to another instance, or to none, it is the peer's to lose.
A takeover reads it again, force-detaches it from the peer (a frozen or dead peer cannot
let go itself), waits until EC2 says `available`, and attaches it here at the device index
it had. This is the slow method: EC2 takes seconds for each of the two state changes, and
the guest must then see the hot-plugged interface (docs/ha.md, "Takeover methods"); the
service loop, heartbeats included, waits for it (bounded by `wait`).
IAM: ec2:DescribeNetworkInterfaces, ec2:DetachNetworkInterface and ec2:AttachNetworkInterface,
the last two scoped to the pair's instances and this ENI (deploy/ha-iam-policy-eni.json).
"""
import time

from appliance.aws.ec2 import Ec2Error, _call
from appliance.ha.machine import PEER, SELF


class FloatingEni:
    def __init__(self, ec2, eni, instance_id, device_index=None, wait=60.0, poll=0.5,
                 sleep=time.sleep, clock=time.monotonic):
        self.ec2, self.eni, self.instance_id = ec2, eni, instance_id
        self.device_index = device_index      # learnt from the attachment; config for a detached start
        self.wait, self.poll, self.sleep, self.clock = wait, poll, sleep, clock

    def describe(self):
        r = _call(self.ec2.describe_network_interfaces, "DescribeNetworkInterfaces", self.eni,
                  NetworkInterfaceIds=[self.eni])
        found = r.get("NetworkInterfaces") or []
        if len(found) != 1:
            raise Ec2Error(f"EC2 DescribeNetworkInterfaces on {self.eni} failed: {len(found)} interfaces returned")
        iface = found[0]
        att = iface.get("Attachment") or {}
        if att.get("Status") in ("attaching", "attached") and att.get("DeviceIndex") is not None:
            self.device_index = att["DeviceIndex"]
        return iface.get("Status"), att

    def owner(self):
        status, att = self.describe()
        where = att.get("InstanceId")
        if where == self.instance_id and att.get("Status") in ("attaching", "attached"):
            return SELF, f"{self.eni} is {att['Status']} here (device {att.get('DeviceIndex')})"
        if where and att.get("Status") in ("attaching", "attached", "detaching"):
            return PEER, f"{self.eni} is {att['Status']} at {where} (device {att.get('DeviceIndex')})"
        return PEER, f"{self.eni} is {status}, attached nowhere: taken on takeover"

    def _until_available(self):
        deadline = self.clock() + self.wait
        while True:
            status, att = self.describe()
            if status == "available":
                return
            if self.clock() >= deadline:
                raise Ec2Error(f"{self.eni} still {status} ({att.get('Status')}) {self.wait:g}s after "
                               "DetachNetworkInterface")
            self.sleep(self.poll)

    def take(self):
        """Detach from the peer (forced), wait, attach here at the same device index."""
        status, att = self.describe()
        if att.get("InstanceId") == self.instance_id and att.get("Status") in ("attaching", "attached"):
            return []
        changed = []
        if att.get("AttachmentId") and att.get("Status") in ("attaching", "attached"):
            _call(self.ec2.detach_network_interface, "DetachNetworkInterface", self.eni,
                  AttachmentId=att["AttachmentId"], Force=True)
            changed.append((self.eni, f"detached from {att.get('InstanceId')}"))
        if status != "available" or changed:
            self._until_available()
        if self.device_index is None:
            raise Ec2Error(f"{self.eni} is detached and its device index is unknown: set ha.floating_device_index")
        _call(self.ec2.attach_network_interface, "AttachNetworkInterface", self.eni,
              NetworkInterfaceId=self.eni, InstanceId=self.instance_id, DeviceIndex=self.device_index)
        changed.append((self.eni, f"attached to {self.instance_id} at device {self.device_index}"))
        return changed
