"""ENIs (from IMDS) -> Linux interfaces (by MAC) -> roles: outside, inside, management.

Defaults follow the device index EC2 assigns at attach time (0 outside, 1 inside,
2 management); the appliance config can name an ENI id, a subnet id or an interface
instead. Every failure names the role and what was looked for: the boot script must
never carry on with an empty interface name.
"""
import dataclasses
import re

from appliance.config import is_ifname

ROLES = ("outside", "inside", "management")
DATA_ROLES = ("outside", "inside")
DEFAULT_DEVICE = {"outside": 0, "inside": 1, "management": 2}
# Fleet mode (a `gwlb:` section): one data ENI. GWLB sends to a target registered by instance id
# at the primary private IP of its primary ENI, so the data ENI is device 0; management is 1.
FLEET_ROLES = ("data", "management")
FLEET_DATA_ROLES = ("data",)
FLEET_DEVICE = {"data": 0, "management": 1}


class InterfaceError(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class Link:
    name: str
    mac: str
    index: int
    mtu: int


@dataclasses.dataclass(frozen=True)
class Binding:
    role: str
    link: Link
    eni: object        # imds.Eni

    @property
    def ifname(self):
        return self.link.name


def local_links():
    """Links of the current network namespace by lower-case MAC."""
    from pyroute2 import IPRoute
    out = {}
    with IPRoute() as ipr:
        for msg in ipr.get_links():
            mac = msg.get_attr("IFLA_ADDRESS")
            name = msg.get_attr("IFLA_IFNAME")
            if not mac or mac == "00:00:00:00:00:00":
                continue
            out.setdefault(mac.lower(), Link(name, mac.lower(), msg["index"], msg.get_attr("IFLA_MTU")))
    return out


def selector_kind(value):
    """'auto' | 'eni' | 'subnet' | 'ifname' | 'none', or None when the value is not valid."""
    if value is None:
        return "none"
    if not isinstance(value, str):
        return None
    if value == "auto":
        return "auto"
    if re.fullmatch(r"eni-[0-9a-f]+", value):
        return "eni"
    if re.fullmatch(r"subnet-[0-9a-f]+", value):
        return "subnet"
    return "ifname" if is_ifname(value) else None


def missing_links(enis, links):
    return [e for e in enis if e.mac not in links]


def _describe(enis):
    return ", ".join(f"{e.eni_id} (device {e.device_number}, {e.subnet_id})" for e in enis) or "none"


def _pick(role, value, enis, links, defaults=DEFAULT_DEVICE, data_roles=DATA_ROLES):
    kind = selector_kind(value)
    if kind == "none":
        if role in data_roles:
            raise InterfaceError(f"interfaces.{role} cannot be null: the appliance needs an {role} ENI")
        return None
    if kind == "auto":
        found = [e for e in enis if e.device_number == defaults[role]]
        if not found:
            if role == "management":
                return None          # two ENIs: no dedicated management ENI
            raise InterfaceError(f"interfaces.{role}: auto wants the ENI at device index "
                                 f"{defaults[role]}, IMDS lists {_describe(enis)}; attach one or name it")
        if len(found) > 1:       # e.g. one ENI per network card: never pick one of them silently
            raise InterfaceError(f"interfaces.{role}: auto wants the ENI at device index {defaults[role]}, "
                                 f"IMDS lists {len(found)}: {_describe(found)}; name the ENI (eni-...) instead")
        return found[0]
    if kind == "eni":
        found = [e for e in enis if e.eni_id == value]
        if not found:
            raise InterfaceError(f"interfaces.{role}: {value} is not attached; IMDS lists {_describe(enis)}")
        return found[0]
    if kind == "subnet":
        found = [e for e in enis if e.subnet_id == value]
        if len(found) != 1:
            what = "no ENI" if not found else f"{len(found)} ENIs ({_describe(found)}); name the ENI instead"
            raise InterfaceError(f"interfaces.{role}: {value} has {what}; IMDS lists {_describe(enis)}")
        return found[0]
    if kind == "ifname":
        link = next((l for l in links.values() if l.name == value), None)
        if link is None:
            raise InterfaceError(f"interfaces.{role}: no local interface named {value!r}")
        found = [e for e in enis if e.mac == link.mac]
        if not found:
            raise InterfaceError(f"interfaces.{role}: {value} ({link.mac}) is not an ENI IMDS knows; "
                                 f"IMDS lists {_describe(enis)}")
        return found[0]
    raise InterfaceError(f"interfaces.{role}: {value!r} is not auto, an ENI id, a subnet id, "
                         "an interface name or null")


def assign_roles(selectors, enis, links, fleet=False):
    """selectors: role -> config value. Returns role -> Binding (management may be absent).
    fleet: the roles of fleet mode (data, management) instead of outside, inside, management."""
    out = {}
    roles, defaults, data = (FLEET_ROLES, FLEET_DEVICE, FLEET_DATA_ROLES) if fleet else (ROLES, DEFAULT_DEVICE,
                                                                                           DATA_ROLES)
    for role in roles:
        eni = _pick(role, selectors.get(role, "auto"), enis, links, defaults, data)
        if eni is None:
            continue
        link = links.get(eni.mac)
        if link is None or not link.name:
            raise InterfaceError(f"interfaces.{role}: {eni.eni_id} (MAC {eni.mac}, device "
                                 f"{eni.device_number}) has no local interface with that MAC")
        for other, b in out.items():
            if b.eni.eni_id == eni.eni_id:
                raise InterfaceError(f"interfaces.{role} and interfaces.{other} both select "
                                     f"{eni.eni_id} ({link.name}); each role needs its own ENI")
        out[role] = Binding(role, link, eni)
    return out
