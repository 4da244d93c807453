"""The local lab: client, appliance and server namespaces on one machine (`appliance lab up|down|demo|status`).

    from appliance.lab import Lab, up, down, status
    lab = Lab("mylab"); up(lab); ...; down(lab)
"""
from contextlib import contextmanager
import signal

from . import services, topology
from .topology import Lab, LabError


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; raised where the program was so `finally` blocks clean up."""
    def __init__(self, signum):
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


@contextmanager
def interruptible():
    """Turn SIGINT/SIGTERM into `Interrupted` for the duration of the block."""
    def raise_interrupted(signum, frame):
        raise Interrupted(signum)
    old = {s: signal.signal(s, raise_interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextmanager
def shielded():
    """Ignore SIGINT/SIGTERM while cleaning up: a second Ctrl-C must not leave namespaces behind."""
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def is_up(lab: Lab) -> bool:
    """Up means: state says ready, all namespaces exist and every recorded service is alive."""
    state = lab.read_state()
    if not state or state.get("phase") != "ready":
        return False
    if lab.existing_namespaces() != lab.namespaces:
        return False
    return all(topology.alive(pid) for pid in state.get("pids", {}).values())


def up(lab: Lab) -> bool:
    """Build the lab and start its services. Returns False when it was already up (nothing done).

    Raises LabError when a half-built lab is in the way; on any failure or interruption,
    whatever this call created is removed before the exception propagates."""
    if is_up(lab):
        return False
    leftovers = lab.existing_namespaces()
    if leftovers or lab.state_path.exists():
        raise LabError(f"lab {lab.name!r} is partly up ({', '.join(leftovers) or lab.state_path}); "
                       f"run `appliance lab down --name {lab.name}` first")
    try:
        # State first: if we die half way, `down` still knows what to remove.
        lab.write_state(phase="topology")
        lab.workdir.mkdir(parents=True, exist_ok=True)
        topology.create(lab)
        lab.write_state(phase="services")
        pids = services.start(lab)
        lab.write_state(phase="ready", pids=pids)
    except BaseException:
        with shielded():
            topology.destroy(lab)
        raise
    return True


def down(lab: Lab) -> list:
    """Stop the lab's processes and delete its namespaces and files; returns the namespaces removed."""
    with shielded():
        return topology.destroy(lab)


def status(lab: Lab) -> dict:
    state = lab.read_state() or {}
    present = lab.existing_namespaces()
    tcp, udp = services.listening(lab) if lab.server in present else (set(), set())
    return {
        "name": lab.name,
        "up": is_up(lab),
        "phase": state.get("phase"),
        "namespaces": {ns: ns in present for ns in lab.namespaces},
        "services": {name: (pid, topology.alive(pid)) for name, pid in state.get("pids", {}).items()},
        "listening": {"tcp": sorted(tcp), "udp": sorted(udp)},
    }


__all__ = ["Lab", "LabError", "Interrupted", "interruptible", "shielded", "up", "down", "status", "is_up"]
