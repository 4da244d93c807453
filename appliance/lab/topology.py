"""The lab's network: an outside client, the appliance and an inside server, each in its own namespace.

    appl-client-N          appl-fw-N                       appl-server-N
    eth0 10.10.1.10  <-->  eth0 10.10.1.1 | eth1 10.10.2.1  <-->  eth0 10.10.2.20
    fd00:10:1::10          fd00:10:1::1   | fd00:10:2::1          fd00:10:2::20

Every link is created from inside a lab namespace (`ip -n NS link add ... peer ... netns OTHER`),
so nothing is ever created, renamed or moved in the root namespace, and every sysctl is written
inside the appliance namespace only.
"""
from dataclasses import dataclass
import json
import os
from pathlib import Path
import re
import shutil
import signal
import subprocess
import time

STATE_DIR = Path("/run/appliance-lab")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,15}$")

CLIENT_V4, CLIENT_V6 = "10.10.1.10", "fd00:10:1::10"
OUTSIDE_V4, OUTSIDE_V6 = "10.10.1.1", "fd00:10:1::1"
INSIDE_V4, INSIDE_V6 = "10.10.2.1", "fd00:10:2::1"
SERVER_V4, SERVER_V6 = "10.10.2.20", "fd00:10:2::20"
HOME_NET = ["10.10.2.0/24", "fd00:10:2::/64"]


class LabError(Exception):
    """A lab step failed; the message says which command and why."""


def run(cmd: list, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
    """Run one command; on failure raise LabError naming the command and its stderr."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise LabError(f"{cmd[0]}: not installed")
    except subprocess.TimeoutExpired:
        raise LabError(f"{' '.join(cmd)}: timed out after {timeout}s")
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def ns_exec(ns: str, *cmd) -> list:
    return ["ip", "netns", "exec", ns, *cmd]


@dataclass(frozen=True)
class Lab:
    """One lab instance; `name` is the suffix of its namespaces and the key of its state file."""
    name: str = "lab"

    def __post_init__(self):
        if not NAME_RE.match(self.name):
            raise LabError(f"lab name {self.name!r}: use 1-16 of a-z, 0-9, '-' (starting with a letter or digit)")

    @property
    def client(self) -> str:
        return f"appl-client-{self.name}"

    @property
    def fw(self) -> str:
        return f"appl-fw-{self.name}"

    @property
    def server(self) -> str:
        return f"appl-server-{self.name}"

    @property
    def namespaces(self) -> list:
        return [self.client, self.fw, self.server]

    @property
    def state_path(self) -> Path:
        return STATE_DIR / f"{self.name}.json"

    @property
    def workdir(self) -> Path:
        """Certificates, service logs, the demo's config and EVE file."""
        return STATE_DIR / self.name

    # --- state file: written before anything is created, so `down` always finds what exists ---

    def read_state(self) -> dict | None:
        try:
            return json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return None
        except ValueError as e:
            raise LabError(f"{self.state_path}: not valid JSON ({e}); remove it or run `appliance lab down`")

    def write_state(self, **updates) -> dict:
        state = self.read_state() or {"name": self.name, "namespaces": self.namespaces, "pids": {}}
        state.update(updates)
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.state_path)
        return state

    def existing_namespaces(self) -> list:
        listed = run(["ip", "netns", "list"]).stdout
        present = {line.split()[0] for line in listed.splitlines() if line.strip()}
        return [ns for ns in self.namespaces if ns in present]

    def ns_pids(self, ns: str) -> list:
        """Processes living in one of our namespaces (only ours: we created the namespace)."""
        proc = run(["ip", "netns", "pids", ns], check=False)
        return [int(p) for p in proc.stdout.split() if p.isdigit()]


def create(lab: Lab) -> None:
    """Build the three namespaces, their links, addresses, routes and forwarding. Stops at the first error."""
    for ns in lab.namespaces:
        run(["ip", "netns", "add", ns])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
    # Both ends are created from inside lab namespaces: the root namespace never sees these links.
    run(["ip", "-n", lab.fw, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", lab.client])
    run(["ip", "-n", lab.fw, "link", "add", "eth1", "type", "veth", "peer", "name", "eth0", "netns", lab.server])

    for ns, dev, v4, v6 in ((lab.client, "eth0", CLIENT_V4, CLIENT_V6),
                            (lab.fw, "eth0", OUTSIDE_V4, OUTSIDE_V6),
                            (lab.fw, "eth1", INSIDE_V4, INSIDE_V6),
                            (lab.server, "eth0", SERVER_V4, SERVER_V6)):
        run(["ip", "-n", ns, "addr", "add", f"{v4}/24", "dev", dev])
        # nodad: the address is usable at once instead of after duplicate detection (~2 s)
        run(["ip", "-n", ns, "-6", "addr", "add", f"{v6}/64", "dev", dev, "nodad"])
        run(["ip", "-n", ns, "link", "set", dev, "up"])

    for ns, gw4, gw6 in ((lab.client, OUTSIDE_V4, OUTSIDE_V6), (lab.server, INSIDE_V4, INSIDE_V6)):
        run(["ip", "-n", ns, "route", "add", "default", "via", gw4])
        run(["ip", "-n", ns, "-6", "route", "add", "default", "via", gw6])

    # Forwarding on, reverse-path filter off: only inside the appliance namespace.
    sysctls = ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
               "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
               "net.ipv4.conf.eth0.rp_filter=0", "net.ipv4.conf.eth1.rp_filter=0"]
    run(ns_exec(lab.fw, "sysctl", "-q", "-w", *sysctls))


def stop_processes(lab: Lab, grace: float = 3.0) -> list:
    """SIGTERM every process in the lab's namespaces, SIGKILL what is left after `grace`. Returns pids seen."""
    pids = [p for ns in lab.existing_namespaces() for p in lab.ns_pids(ns)]
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if alive(pid):
            _signal(pid, signal.SIGKILL)
    return pids


def destroy(lab: Lab) -> list:
    """Remove everything the lab made: processes, namespaces (and with them links and routes), files.

    Returns the namespaces that were deleted. Safe to call on a half-built or absent lab."""
    stop_processes(lab)
    present = lab.existing_namespaces()
    errors = []
    for ns in present:
        proc = run(["ip", "netns", "del", ns], check=False)
        if proc.returncode != 0:
            errors.append(f"ip netns del {ns}: {proc.stderr.strip()}")
    if errors:
        raise LabError("; ".join(errors))
    shutil.rmtree(lab.workdir, ignore_errors=True)
    lab.state_path.unlink(missing_ok=True)
    return present


def _signal(pid: int, sig) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
