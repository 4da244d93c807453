"""The HA state machine with a hand-turned clock: every transition, the split-brain rule,
hold-down and preemption, and the bound on takeovers under flapping."""
from appliance.ha.machine import FAULT, PEER, PRIMARY, SELF, STANDBY, Machine


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t

    def advance(self, s):
        self.t += s


def standby(dead_after=1.0, hold_down=10.0, preempt=False):
    c = Clock()
    m = Machine(dead_after, hold_down, preempt, clock=c)
    m.own_health(True)
    m.route_owner(PEER)
    m.heartbeat(PRIMARY, True)
    m.check_reply(PRIMARY, True)
    return m, c


def test_standby_with_a_healthy_peer_does_nothing():
    m, c = standby()
    d = m.decide()
    assert (d.state, d.takeover, d.code) == (STANDBY, False, "peer_healthy")


def test_fresh_start_waits_dead_after_before_calling_the_peer_dead():
    c = Clock()
    m = Machine(1.0, 10.0, clock=c)
    m.own_health(True)
    m.route_owner(PEER)
    assert m.decide().takeover is False          # nothing heard yet, but nothing could have been
    c.advance(1.5)
    assert m.decide().takeover is True


def test_peer_dead_on_both_paths_takes_over():
    m, c = standby()
    c.advance(1.01)
    d = m.decide()
    assert (d.takeover, d.code) == (True, "peer_dead")
    assert "heartbeats missing for 1.0s" in d.reason and "independent check failing" in d.reason


def test_cut_heartbeat_link_alone_is_no_takeover():
    m, c = standby()
    for _ in range(50):                           # 5 s with only the check answering
        c.advance(0.1)
        m.check_reply(PRIMARY, True)
        d = m.decide()
        assert d.takeover is False
    assert d.code == "link_cut" and "independent check answers" in d.reason


def test_check_failing_alone_is_no_takeover():
    m, c = standby()
    for _ in range(50):
        c.advance(0.1)
        m.heartbeat(PRIMARY, True)
        assert m.decide().takeover is False


def test_peer_reporting_not_ready_is_a_takeover():
    m, c = standby()
    m.heartbeat(FAULT, False)
    d = m.decide()
    assert (d.takeover, d.code) == (True, "peer_fault")


def test_not_ready_ourselves_is_fault_and_never_takes_over():
    m, c = standby()
    m.own_health(False, ["workers: queue 0 not bound"])
    c.advance(5)
    d = m.decide()
    assert (d.state, d.takeover, d.code) == (FAULT, False, "fault")
    assert "queue 0 not bound" in d.reason


def test_unknown_route_owner_is_no_action():
    m, c = standby()
    m.route_owner(None)
    c.advance(5)
    d = m.decide()
    assert (d.takeover, d.code) == (False, "owner_unknown")


def test_routes_at_us_make_us_primary():
    m, c = standby()
    m.route_owner(SELF)
    assert m.decide().state == PRIMARY and m.decide().takeover is False


def test_took_over_makes_primary_and_later_seeing_the_peer_own_routes_is_standby():
    m, c = standby()
    c.advance(2)
    assert m.decide().takeover
    m.took_over()
    assert m.state() == PRIMARY and m.takeovers == 1
    m.route_owner(PEER)                           # the peer took them back (preemption on its side)
    assert m.state() == STANDBY


def test_hold_down_after_an_owner_change_then_takeover():
    m, c = standby(hold_down=10)
    m.route_owner(SELF)
    c.advance(0.5)
    m.route_owner(PEER)                           # a change we saw: the hold-down starts now
    c.advance(2)                                  # peer dead by now
    d = m.decide()
    assert (d.takeover, d.code) == (False, "hold_down") and "s left" in d.reason
    c.advance(8.1)
    assert m.decide().takeover is True


def test_first_reading_of_the_tables_starts_no_hold_down():
    m, c = standby(hold_down=100)
    c.advance(1.5)
    assert m.decide().takeover is True


def test_preempt_takes_back_from_a_healthy_peer_after_hold_down():
    m, c = standby(hold_down=5, preempt=True)
    c.advance(1)
    m.heartbeat(PRIMARY, True)
    assert m.decide().takeover is False           # ready for 1 s only
    c.advance(4.5)
    m.heartbeat(PRIMARY, True)
    d = m.decide()
    assert (d.takeover, d.code) == (True, "preempt")


def test_without_preempt_a_healthy_peer_keeps_the_routes():
    m, c = standby(hold_down=5)
    c.advance(60)
    m.heartbeat(PRIMARY, True)
    assert m.decide().takeover is False


def flap(hold, seconds=60.0):
    """Two nodes whose readiness flaps out of phase every 0.2 s (each one's /readyz failing
    while the other's answers): each sees the routes' owner report "not ready". Returns how
    many times the routes moved."""
    c = Clock()
    a, b = Machine(1.0, hold, clock=c), Machine(1.0, hold, clock=c)
    owner, moves = "a", 0
    for step in range(int(seconds * 10)):
        c.advance(0.1)
        a_ready = (step // 2) % 2 == 0
        a.own_health(a_ready, [] if a_ready else ["rules: not loaded"])
        b.own_health(not a_ready, [] if not a_ready else ["rules: not loaded"])
        for me, peer in ((a, b), (b, a)):
            me.heartbeat(peer.state(), peer.ready)
            me.check_reply(peer.state(), peer.ready)
        a.route_owner(SELF if owner == "a" else PEER)
        b.route_owner(SELF if owner == "b" else PEER)
        for name, m in (("a", a), ("b", b)):
            if owner != name and m.decide().takeover:
                m.took_over()
                owner, moves = name, moves + 1
    return moves


def test_flapping_pair_bounded_by_hold_down():
    moves = flap(hold=5.0)
    assert 2 <= moves <= 60 / 5.0 + 1              # once per hold-down, not once per flap
    assert flap(hold=0.0) > 100                    # what the hold-down prevents: a move per flap
