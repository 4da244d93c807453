"""`appliance bootstrap`: make an EC2 instance with two or three ENIs an inline hop.

Runs once at boot (systemd oneshot) before `appliance run`. Steps, in order, each one
recorded in a status file (default /run/appliance/bootstrap.json) for the management plane:

  config             the appliance config, checked whole by appliance/config.py
  imds               IMDSv2 token, region, the attached ENIs
  interfaces         ENI -> Linux interface by MAC, roles outside/inside/management
  host               sysctls, addresses, routes, the management routing table
  gwlb               fleet mode only (a `gwlb:` section): one data ENI; where GENEVE and the
                     health checks arrive, checked against the ENI and the VPC (aws/fleet.py)
  source_dest_check  EC2 API: read it on each data ENI, turn it off

The first step that does not complete stops the bootstrap with a message naming the
step and the cause, and the exit status is non-zero: nothing after it runs on a guess.
"""
import argparse
import datetime
import json
import os
import sys
import time

from appliance import config
from appliance.aws import ec2, fleet, hostconfig, imds, interfaces

DEFAULT_CONFIG = "/etc/appliance/appliance.yaml"


class StepFailed(Exception):
    def __init__(self, step, message):
        super().__init__(f"{step}: {message}")
        self.step, self.message = step, message


def selectors(cfg):
    """role -> what the config names (an interface, eni-..., subnet-..., auto, or None: no
    such role). A management role the file leaves out is auto: a third ENI gets its table.
    Fleet mode (`gwlb:`): the data ENI is always device 0, where GWLB sends."""
    if is_fleet(cfg):
        return {"data": "auto", "management": cfg.management if cfg.management_set else "auto"}
    return {"outside": cfg.outside, "inside": cfg.inside,
            "management": cfg.management if cfg.management_set else "auto"}


def is_fleet(cfg):
    return getattr(cfg, "gwlb", None) is not None


def data_roles(cfg):
    return interfaces.FLEET_DATA_ROLES if is_fleet(cfg) else interfaces.DATA_ROLES


# --- discovery ----------------------------------------------------------------------

def _discover(selectors, wait, say=lambda s: None, at=lambda step: None, fleet=False):
    """IMDS + local links -> (client, region, enis, bindings). Raises StepFailed.

    at(step) is told which step is running, so an unexpected error is charged to it."""
    at("imds")
    client = imds.Imds()
    try:
        if os.environ.get("AWS_DEFAULT_REGION"):
            region = imds.check_region(os.environ["AWS_DEFAULT_REGION"], "AWS_DEFAULT_REGION")
        else:
            region = imds.check_region(client.region(), "IMDS placement/region")
        enis = client.enis()
    except imds.ImdsError as e:
        raise StepFailed("imds", str(e)) from None
    say(f"imds: region {region}, ENIs: " + ", ".join(
        f"{e.eni_id} device {e.device_number} {e.mac} {e.subnet_id}" for e in enis))

    at("interfaces")
    deadline = time.monotonic() + wait
    while True:
        links = interfaces.local_links()
        missing = interfaces.missing_links(enis, links)
        if not missing or time.monotonic() >= deadline:
            break
        time.sleep(1)
    if missing:
        raise StepFailed("interfaces", "; ".join(
            f"IMDS lists {e.eni_id} (MAC {e.mac}, device {e.device_number}) but no local interface "
            f"has that MAC after {wait}s; is the ENI attached and its driver loaded?" for e in missing))
    try:
        bindings = interfaces.assign_roles(selectors, enis, links, fleet=fleet)
    except interfaces.InterfaceError as e:
        raise StepFailed("interfaces", str(e)) from None
    return client, region, enis, bindings


def discover_roles(cfg):
    """role -> Linux interface name, for `appliance run` to resolve `auto`, `eni-...` and
    `subnet-...` (config.resolve_interfaces(cfg, discover=discover_roles)).

    Raises RuntimeError with a "step: message" text when discovery fails.
    """
    try:
        _, _, _, bindings = _discover(selectors(cfg), cfg.aws.interface_wait_seconds, fleet=is_fleet(cfg))
    except StepFailed as e:
        raise RuntimeError(str(e)) from None
    return {role: b.ifname for role, b in bindings.items()}


# --- status -------------------------------------------------------------------------

class Status:
    def __init__(self, path):
        self.path = path
        self.doc = {"ok": False, "can_forward": False, "error": None, "region": None,
                    "instance_id": None, "instance_type": None, "roles": {}, "steps": []}

    def step(self, name, ok, detail):
        self.doc["steps"].append({"name": name, "ok": ok, "detail": detail})

    def write(self):
        self.doc["time"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as f:
            json.dump(self.doc, f, indent=2)
            f.write("\n")
        os.replace(tmp, self.path)


def _write(status):
    try:
        status.write()
        return True
    except OSError as e:
        print(f"appliance bootstrap: cannot write status file {status.path}: {e}", file=sys.stderr)
        return False


def _roles_doc(bindings):
    return {role: {"interface": b.ifname, "eni": b.eni.eni_id, "mac": b.eni.mac,
                   "device_number": b.eni.device_number, "subnet": b.eni.subnet_id,
                   "ipv4": b.eni.primary_ipv4, "mtu": b.link.mtu}
            for role, b in bindings.items()}


# --- the run ------------------------------------------------------------------------

def _source_dest_check(mode, region, bindings, status, say, roles=interfaces.DATA_ROLES):
    data = [bindings[r] for r in roles]
    if mode == "ignore":
        status.step("source_dest_check", True, "ignored by config (aws.source_dest_check: ignore)")
        return None
    results = {}
    try:
        api = ec2.client(region)
        for b in data:
            eni = b.eni.eni_id
            on = ec2.source_dest_check(api, eni)
            if on and mode == "verify":
                raise StepFailed("source_dest_check",
                                 f"source/dest check is on for {b.role} ENI {eni} and aws.source_dest_check is "
                                 "verify: EC2 drops every forwarded packet; turn it off on the ENI")
            if on:
                ec2.disable_source_dest_check(api, eni)
                if ec2.source_dest_check(api, eni):
                    raise StepFailed("source_dest_check", f"{eni} still reports source/dest check on after "
                                     "ModifyNetworkInterfaceAttribute")
                results[eni] = "disabled"
            else:
                results[eni] = "already off"
            say(f"source_dest_check: {b.role} {eni}: {results[eni]}")
    except ec2.Ec2Denied as e:
        raise StepFailed("source_dest_check",
                         f"{e}. The instance role needs ec2:DescribeNetworkInterfaceAttribute and "
                         "ec2:ModifyNetworkInterfaceAttribute (docs/aws.md), or turn source/dest check off "
                         "on the ENIs yourself and set aws.source_dest_check: verify. "
                         "Until then EC2 drops forwarded traffic: the appliance cannot forward") from None
    except ec2.Ec2Error as e:
        raise StepFailed("source_dest_check", f"{e}; the appliance cannot forward until source/dest "
                         "check is known to be off") from None
    status.step("source_dest_check", True, results)
    return results


def run(config_path, dry_run=False, status_file=None, out=sys.stdout):
    def say(line):
        print(line, file=out, flush=True)

    # The status file exists before the config is read: a config error must replace the last
    # run's "ok": true, not leave it in place for the management plane to trust.
    status = Status(status_file or config.aws_status_file(config_path))
    try:
        cfg = config.load_config(config_path)
    except config.ConfigError as e:
        status.step("config", False, str(e))
        status.doc["error"] = f"config: {e}"
        for problem in e.problems:
            print(f"appliance bootstrap: {problem}", file=sys.stderr)
        if not dry_run:
            _write(status)
        return 2
    aws, roles = cfg.aws, selectors(cfg)
    if status_file is None:
        status.path = aws.status_file
    fleet_mode = is_fleet(cfg)
    if fleet_mode:
        status.doc["mode"] = "gwlb"
    status.step("config", True, {"path": config_path, "interfaces": roles,
                                 "source_dest_check": aws.source_dest_check})
    current = "imds"             # the step running now, for errors nobody anticipated

    def at(step):
        nonlocal current
        current = step

    try:
        client, region, enis, bindings = _discover(roles, aws.interface_wait_seconds, say, at, fleet=fleet_mode)
        status.doc["region"] = region
        status.step("imds", True, {"region": region, "enis": [e.eni_id for e in enis]})
        status.doc["roles"] = _roles_doc(bindings)
        status.step("interfaces", True, {r: b.ifname for r, b in bindings.items()})
        try:
            status.doc["instance_id"] = client.instance_id()
            status.doc["instance_type"] = (client.get("instance-type", optional=True) or "").strip() or None
        except imds.ImdsError:
            pass                                   # informational only
        for role, b in bindings.items():
            say(f"interfaces: {role} = {b.ifname} ({b.eni.eni_id}, {b.eni.mac}, device "
                f"{b.eni.device_number}, {b.eni.subnet_id}, mtu {b.link.mtu})")
        if "management" not in bindings:
            say(f"interfaces: management = none (no ENI at device index {2 - fleet_mode} or set to null)")
        if fleet_mode:
            at("gwlb")
            gdoc, gproblems = fleet.resolve(cfg.gwlb, bindings)
            status.doc["gwlb"] = gdoc
            if gproblems:
                raise StepFailed("gwlb", "; ".join(gproblems))
            say(f"gwlb: GENEVE at {gdoc['listen']} ({gdoc['interface']}, {gdoc['eni']}), health checks at "
                f"{gdoc['health']}, senders {', '.join(gdoc['senders'])}, MTU {gdoc['mtu']}")
            for n in gdoc["notes"]:
                say(f"gwlb: {n}")
            status.step("gwlb", True, gdoc)

        if aws.config_source == "ssm":
            at("config_source")
            if dry_run:
                say(f"api: ssm:GetParametersByPath {aws.ssm_path}/ (recursive, decrypted) -> {aws.ssm_dir}")
            else:
                from appliance.aws import ssm
                try:
                    summary = ssm.fetch_for(cfg, region)
                except ssm.SsmError as e:
                    raise StepFailed("config_source", "; ".join(e.problems)) from None
                say(f"config_source: {summary}")
                status.step("config_source", True, summary)

        at("host")
        try:
            if fleet_mode:
                actions, notes = fleet.plan(bindings, aws.management_table, conntrack=cfg.conntrack)
            else:
                actions, notes = hostconfig.plan(bindings, aws.management_table, conntrack=cfg.conntrack)
        except (ValueError, OSError) as e:
            raise StepFailed("host", str(e)) from None
        if dry_run:
            say("dry run: nothing below is changed")
            for a in actions:
                say(f"host: {a.describe()}")
            for n in notes:
                say(f"host: {n}")
            mode = aws.source_dest_check
            for r in data_roles(cfg):
                eni = bindings[r].eni.eni_id
                if mode != "ignore":
                    say(f"api: ec2:DescribeNetworkInterfaceAttribute {eni} sourceDestCheck (region {region})")
                if mode == "disable":
                    say(f"api: ec2:ModifyNetworkInterfaceAttribute {eni} SourceDestCheck=false  # if it is on")
            return 0
        try:
            done = hostconfig.apply(actions)
        except OSError as e:
            raise StepFailed("host", str(e)) from None
        for n in notes:
            say(f"host: {n}")
        status.step("host", True, {"actions": [f"{d} -> {r}" for d, r in done], "notes": notes})
        say(f"host: {len(done)} settings applied")

        at("source_dest_check")
        _source_dest_check(aws.source_dest_check, region, bindings, status, say, data_roles(cfg))
        status.doc["ok"] = True
        status.doc["can_forward"] = aws.source_dest_check != "ignore" or None
    except Exception as e:
        # A bug or an input nobody anticipated still ends as a failed, named step with a
        # status file and exit 1: never a traceback that leaves the last run's status behind.
        if not isinstance(e, StepFailed):
            e = StepFailed(current, f"unexpected {type(e).__name__}: {e}")
        status.step(e.step, False, e.message)
        status.doc["error"] = str(e)
        print(f"appliance bootstrap: {e}", file=sys.stderr)
    if not dry_run and not _write(status):
        return 1
    if status.doc["ok"]:
        say(f"bootstrap complete; status in {status.path}")
        return 0
    return 1


def main_bootstrap(args):
    p = argparse.ArgumentParser(prog="appliance bootstrap",
                                description="Discover ENIs, assign roles, prepare the host to forward (EC2).")
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"appliance config (default {DEFAULT_CONFIG})")
    p.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    p.add_argument("--status-file", help="where to write the per-step status JSON (overrides aws.status_file)")
    a = p.parse_args(args)
    return run(a.config, a.dry_run, a.status_file)


if __name__ == "__main__":
    sys.exit(main_bootstrap(sys.argv[1:]))
