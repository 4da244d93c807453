"""`auto` in the `ha:` section, resolved once at start from what this instance already knows.

- `eni: auto`: the ENI of the role the method moves traffic to -- inside for `routes` (the
  protected subnets' routes target it), outside for `eip` (where the address lands). Read from
  the bootstrap's status file (its roles follow the config's `interfaces:` selectors); when that
  file is missing or failed, from IMDS by the bootstrap's default device index (0 outside,
  1 inside).
- `outside_eni: auto` (routes, for the IGW edge route table): the outside role's ENI, the same way.
- `peer_eni: auto` (routes): the ENI holding the peer's `check_peer` address (the probes go to
  the peer's inside address, so that ENI is the one the routes point at when it is primary).
  One ec2:DescribeNetworkInterfaces; exactly one match or an error.
- `sync.interface: auto`: the management role's interface name from the bootstrap status (a
  name is the guest's, IMDS cannot say it; without a completed bootstrap, an error).
- the instance id (`eni` method attaches the floating ENI to it): status file, else IMDS.
Every failure is a ValueError naming what was looked for.
"""
import json
from dataclasses import replace

from appliance.aws.ec2 import _call
from appliance.aws.interfaces import DEFAULT_DEVICE

ROLE = {"routes": "inside", "eip": "outside"}


def bootstrap_status(path):
    """The bootstrap's status doc when it completed, else None (a failed run's roles are not trusted)."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("ok") is True else None


def own_eni(role, status, imds):
    """(eni id, where it was found)."""
    eni = ((status or {}).get("roles") or {}).get(role, {}).get("eni")
    if isinstance(eni, str) and eni.startswith("eni-"):
        return eni, f"bootstrap status ({role} role)"
    dev = DEFAULT_DEVICE[role]
    found = [e for e in imds.enis() if e.device_number == dev]
    if len(found) != 1:
        raise ValueError(f"ha.eni: auto: no completed bootstrap status and IMDS lists {len(found)} ENIs at device "
                         f"index {dev} (the {role} role's default): name the ENI")
    return found[0].eni_id, f"IMDS (device index {dev})"


def peer_eni(ec2, address):
    r = _call(ec2.describe_network_interfaces, "DescribeNetworkInterfaces", f"private-ip-address {address}",
              Filters=[{"Name": "addresses.private-ip-address", "Values": [address]}])
    found = [i["NetworkInterfaceId"] for i in r.get("NetworkInterfaces", [])]
    if len(found) != 1:
        raise ValueError(f"ha.peer_eni: auto: {len(found)} ENIs hold the peer's check_peer address {address} "
                         f"({', '.join(found) or 'none'}): name the peer's ENI")
    return found[0]


def instance_id(status, imds):
    iid = (status or {}).get("instance_id")
    return iid if isinstance(iid, str) and iid.startswith("i-") else imds.instance_id()


def resolve(ha, status_path, imds, ec2):
    """Ha with eni/peer_eni resolved, and notes saying where each came from. Raises ValueError
    (and the EC2/IMDS errors) rather than starting with a guess."""
    status = bootstrap_status(status_path)
    notes = []
    if ha.eni == "auto":
        eni, where = own_eni(ROLE[ha.method], status, imds)
        ha = replace(ha, eni=eni)
        notes.append(f"eni {eni} from {where}")
    if ha.outside_eni == "auto":
        eni, where = own_eni("outside", status, imds)
        ha = replace(ha, outside_eni=eni)
        notes.append(f"outside_eni {eni} from {where}")
    if ha.peer_eni == "auto":
        address = ha.addresses()["check_peer"][0]
        ha = replace(ha, peer_eni=peer_eni(ec2, address))
        notes.append(f"peer_eni {ha.peer_eni} holds check_peer {address}")
    if ha.sync and ha.sync.interface == "auto":
        name = ((status or {}).get("roles") or {}).get("management", {}).get("interface")
        if not isinstance(name, str) or not name:
            raise ValueError("ha.sync.interface: auto: no completed bootstrap status with a management interface "
                             "(the ENI at device index 2): name the interface")
        ha = replace(ha, sync=replace(ha.sync, interface=name))
        notes.append(f"sync.interface {name} from bootstrap status (management role)")
    if ha.eni and ha.eni == ha.peer_eni:
        raise ValueError(f"ha.eni and ha.peer_eni both resolve to {ha.eni}")
    return ha, notes
