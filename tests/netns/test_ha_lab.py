"""The HA pair in its lab (ha_lab.py): real datapaths, real `appliance ha` daemons, a VPC router
whose routes follow the moto route tables.

Each failure of the primary -- the instance killed (kill -9 of everything, forwarding off),
frozen (SIGSTOP), its data link down -- ends with the routes at the standby's ENI, read back
through the EC2 API, and new traffic from the client reaching the server through the new
primary's datapath. Cutting only the heartbeat link ends with no takeover. A flapping primary
moves the routes at most once per hold-down. Count-based assertions only: every wait is for
an event (a route change, a decision, a number of packets), never for a duration.
"""
import os
import signal
import time

import pytest

from ha_lab import Lab, can_run, wait_for

pytestmark = pytest.mark.netns

HOLD_DOWN = 2.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    why = can_run()
    if why:
        pytest.skip(why)
    lab = Lab(tmp_path_factory.mktemp("ha-lab"), hold_down=HOLD_DOWN).up()
    try:
        yield lab
    finally:
        lab.down()


def settled(lab):
    """(primary, standby) once the pair agrees, whoever is primary."""
    wait_for(lambda: lab.vpc.owner() is not None, 30, "one owner of both route tables")
    p = lab.vpc.owner()
    lab.wait_settled(p)
    return p, lab.peer_of(p)


def ec2_targets(lab):
    """The route tables' targets as the EC2 API says now (not the VPC thread's copy)."""
    return set(lab.vpc.read().values())


def queued(inst):
    """Packets the kernel has queued to `inst`'s workers so far."""
    lines = inst.ex("cat", "/proc/net/netfilter/nfnetlink_queue").stdout.splitlines()
    return sum(int(line.split()[7]) for line in lines)


def traffic_via(lab, inst):
    """A new flow (one ping) gets from the client to the server through `inst`'s datapath."""
    before = queued(inst)
    return lab.reaches_server() and queued(inst) > before


def takeover_by(lab, primary, standby, since):
    wait_for(lambda: lab.vpc.moved_to(standby, since), 30, f"the routes at {standby.name}'s ENI")
    assert ec2_targets(lab) == {standby.eni}
    wait_for(lambda: traffic_via(lab, standby), 10, f"traffic through {standby.name}")
    return standby.events("takeover")[-1]


def test_kill9_of_the_primary_instance(lab):
    p, s = settled(lab)
    assert traffic_via(lab, p)
    before = len(s.events("takeover"))
    since = time.monotonic()
    p.kill9()
    ev = takeover_by(lab, p, s, since)
    assert len(s.events("takeover")) == before + 1
    assert ev["code"] == "peer_dead" and "independent check failing" in ev["reason"], ev
    assert sorted(ev["routes"]) == sorted(f"{rtb} {lab.route_of[rtb][0]}" for rtb in lab.rtbs)
    p.restart()                    # a reboot: it comes back standby (no preemption)
    lab.wait_settled(s)


def test_frozen_primary(lab):
    p, s = settled(lab)
    since = time.monotonic()
    p.freeze()
    try:
        ev = takeover_by(lab, p, s, since)
    finally:
        p.thaw()
    assert ev["code"] == "peer_dead", ev
    lab.wait_settled(s)            # thawed, it reads the tables and stands by


def test_data_link_down_is_not_ready_and_taken_over(lab):
    p, s = settled(lab)
    since = time.monotonic()
    p.link_down()
    try:
        code, body = p.readyz()
        assert code == 503 and "links" in body["failed"], body
        ev = takeover_by(lab, p, s, since)
        assert ev["code"] == "peer_fault", ev           # its heartbeats said so: no dead_after wait
        assert any("links" in x for x in p.status()["ready_problems"]), p.status()
    finally:
        p.link_up()
    lab.wait_settled(s)


def test_cut_heartbeat_link_alone_is_no_takeover(lab):
    p, s = settled(lab)
    takeovers = s.status()["takeovers"]
    changes = len(lab.vpc.changes)
    p.cut_heartbeats()
    try:
        wait_for(lambda: s.decision() == "link_cut", 10, "the standby sees the cut")
        # the standby keeps deciding on probe replies alone: as many packets as 2 x
        # (dead_after + hold_down) of them, far past the point where a takeover would be
        accepted = s.status()["packets"]["accepted"]
        n = int(2 * (lab.dead_after + lab.hold_down) / lab.interval)
        wait_for(lambda: s.status()["packets"]["accepted"] >= accepted + n, 30, f"{n} probe replies")
        st = s.status()
        assert st["state"] == "standby" and st["takeovers"] == takeovers and st["last_decision"]["code"] == "link_cut"
        assert ec2_targets(lab) == {p.eni} and len(lab.vpc.changes) == changes
        assert traffic_via(lab, p)
    finally:
        p.mend_heartbeats()
    lab.wait_settled(p)


def test_slow_ec2_api_at_the_primary_is_no_takeover(lab):
    """Every EC2 answer to the primary 3 s late (throttling, a slow API: the client retries for
    up to 3 x 15 s). Its periodic route reads must not hold up its heartbeats and probe replies,
    or the standby would see it dead on both paths and take over from a healthy primary."""
    p, s = settled(lab)
    takeovers = s.status()["takeovers"]
    changes = len(lab.vpc.changes)
    seen = len(s.events("decision"))
    p.bridge.delay, p.bridge.delayed = 3.0, 0
    try:
        wait_for(lambda: p.bridge.delayed >= 3, 60, "three slow answers to the primary")
        assert s.status()["takeovers"] == takeovers and len(lab.vpc.changes) == changes, lab.explain()
        said = [e["code"] for e in s.events("decision")[seen:]]
        assert not {"peer_dead", "hold_down"} & set(said), (said, lab.explain())
        assert ec2_targets(lab) == {p.eni}
    finally:
        p.bridge.delay = 0.0
    lab.wait_settled(p)


def test_late_readyz_at_the_primary_is_no_takeover(lab):
    """The primary's supervisor (its control server's process) paused 0.4 s at a time: /readyz
    answers late, which says nothing about the datapath (its workers go on). Late answers
    within dead_after keep the last verdict; a 503 or a refused connection still counts at once.
    Paused again until an answer was late (a pause catches a request only when one starts
    early in it), 20 times at most, stopping at a takeover."""
    p, s = settled(lab)
    takeovers, changes = s.status()["takeovers"], len(lab.vpc.changes)
    supervisor = p.procs["run"].pid
    for _ in range(20):
        if p.status().get("readyz_late", 0) >= 1 or len(lab.vpc.changes) != changes:
            break
        os.kill(supervisor, signal.SIGSTOP)
        time.sleep(0.4)             # > the /readyz timeout (dead_after / 3), < dead_after
        os.kill(supervisor, signal.SIGCONT)
        wait_for(lambda: p.readyz()[0] == 200, 10, "the primary's /readyz again")
    accepted = s.status()["packets"]["accepted"]
    wait_for(lambda: s.status()["packets"]["accepted"] >= accepted + 10, 30, "10 more packets from the primary")
    assert s.status()["takeovers"] == takeovers and len(lab.vpc.changes) == changes, lab.explain()
    assert p.status()["readyz_late"] >= 1 and p.status()["state"] == "primary"
    lab.wait_settled(p)


def flap(lab, times):
    """The primary's data link goes down until the standby has decided (a takeover or a
    hold-down), then comes back; `times` times, each time to whoever is primary then.
    Returns (route owner changes, hold_down decisions seen, seconds it took)."""
    start = time.monotonic()
    held = 0
    for _ in range(times):
        p = lab.vpc.owner() or wait_for(lab.vpc.owner, 30, "an owner")
        s = lab.peer_of(p)
        # the standby has heard the primary healthy again (a new decision after the last flap's)
        wait_for(lambda: s.status().get("ready") and s.decision() == "peer_healthy", 30,
                 f"{s.name} ready to take over")
        seen = len(s.events("decision"))
        p.link_down()
        try:
            wait_for(lambda: lab.vpc.owner() is s or any(e.get("code") == "hold_down"
                                                           for e in s.events("decision")[seen:]),
                     30, f"{s.name} decides")
            held += lab.vpc.owner() is not s
        finally:
            p.link_up()
        wait_for(lambda: p.readyz()[0] == 200, 30, f"{p.name} ready again")
    return lab.vpc.owner_changes(start), held, time.monotonic() - start


def test_flapping_primary_bounded_by_hold_down(lab):
    """Without a hold-down every flap moves the routes; with one, at most one move per
    hold-down (docs/ha.md) and the flaps in between are `hold_down` decisions."""
    flaps = 6
    settled(lab)
    try:
        lab.set_ha(hold_down=0)
        settled(lab)
        moves, held, _ = flap(lab, flaps)
        assert (moves, held) == (flaps, 0)
        print(f"\nflapping x{flaps}, hold_down 0: {moves} route moves")

        lab.set_ha(hold_down=4.0)
        settled(lab)
        moves, held, took = flap(lab, flaps)
        assert 1 <= moves <= 1 + int(took / lab.hold_down), (moves, took)
        assert moves < flaps and held == flaps - moves, (moves, held)
        print(f"flapping x{flaps}, hold_down {lab.hold_down:g}s: {moves} route moves, {held} held down, {took:.1f}s")
    finally:
        lab.set_ha(hold_down=HOLD_DOWN)
    settled(lab)
