"""Who should carry the traffic: primary, standby or fault, decided from what was observed.

Pure and clock-injected: the service feeds observations (own readiness, the peer's heartbeats
and probe replies, who the route tables point at) and asks `decide()`; nothing here does I/O.

Rules (docs/ha.md, "Decisions"):
- the route tables are the truth: routes at our ENI make us primary, at the peer's make us
  standby; unknown owner (tables unreadable) -> no action;
- not ready ourselves -> fault: never take the traffic;
- take over only when the peer says it is not ready (an authenticated heartbeat) or when its
  heartbeats are missing AND the independent check (probes over another network) fails too:
  a cut heartbeat link alone must not cause a takeover (split brain);
- hold-down: no takeover within `hold_down` seconds of the last owner change we saw, so a
  flapping pair moves the routes at most once per hold-down per node;
- preemption (optional, set on one node): take back from a healthy peer once we have been
  ready for `hold_down`.
"""
from dataclasses import dataclass

PRIMARY, STANDBY, FAULT = "primary", "standby", "fault"
SELF, PEER = "self", "peer"          # route owners; None: unknown (tables unreadable)
NEVER = float("-inf")


@dataclass(frozen=True)
class Decision:
    state: str
    takeover: bool
    code: str        # what kind of decision (logged when it changes): see CODES
    reason: str      # the same in words, with the figures


CODES = ("fault", "owner_unknown", "primary", "peer_healthy", "link_cut", "peer_fault", "preempt", "peer_dead",
         "hold_down")


class Machine:
    def __init__(self, dead_after, hold_down, preempt=False, clock=None):
        if clock is None:
            import time
            clock = time.monotonic
        self.clock = clock
        self.dead_after, self.hold_down, self.preempt = dead_after, hold_down, preempt
        self.owner = None                    # SELF, PEER or None: unknown right now
        self.known_owner = None              # the last owner the tables showed
        self.owner_since = NEVER             # when we saw it change (the first reading is no change)
        self.ready, self.ready_since, self.ready_problems = False, NEVER, ["not checked yet"]
        # Counted from our start: a standby just started has not had the time to hear its peer.
        self.peer_seen = clock()             # last authenticated heartbeat
        self.peer_state, self.peer_ready = None, None
        self.check_seen = self.peer_seen     # last authenticated probe reply (the independent path)
        self.takeovers = 0

    # -- observations -------------------------------------------------------------------
    def own_health(self, ready, problems=()):
        now = self.clock()
        if ready and not self.ready:
            self.ready_since = now
        self.ready, self.ready_problems = bool(ready), list(problems)

    def heartbeat(self, state, ready):
        self.peer_seen, self.peer_state, self.peer_ready = self.clock(), state, bool(ready)

    def check_reply(self, state, ready):
        # A probe reply is also the peer's word on its health: same fields as a heartbeat.
        self.check_seen, self.peer_state, self.peer_ready = self.clock(), state, bool(ready)

    def route_owner(self, owner):
        """SELF, PEER or None (unknown). A change starts the hold-down."""
        if owner is not None and owner != self.known_owner:
            if self.known_owner is not None:
                self.owner_since = self.clock()
            self.known_owner = owner
        self.owner = owner

    def took_over(self):
        self.takeovers += 1
        self.owner, self.known_owner, self.owner_since = SELF, SELF, self.clock()

    # -- the decision -------------------------------------------------------------------
    def state(self):
        if not self.ready:
            return FAULT
        return PRIMARY if self.owner == SELF else STANDBY

    def decide(self) -> Decision:
        now = self.clock()
        state = self.state()
        if not self.ready:
            return Decision(FAULT, False, "fault",
                            "not ready: " + "; ".join(self.ready_problems or ["readyz failed"]))
        if self.owner is None:
            return Decision(state, False, "owner_unknown",
                            "route owner unknown (tables unreadable or not yet read): no action")
        if self.owner == SELF:
            return Decision(PRIMARY, False, "primary", "routes point at this instance")
        hb_fresh = now - self.peer_seen <= self.dead_after
        check_fresh = now - self.check_seen <= self.dead_after
        if hb_fresh or check_fresh:
            if self.peer_ready is False:
                code, why = "peer_fault", "peer reports it is not ready"
            elif self.preempt and now - self.ready_since >= self.hold_down:
                code, why = "preempt", "preempt: ready for the hold-down and configured to be primary"
            elif not hb_fresh:
                return Decision(STANDBY, False, "link_cut",
                                f"peer heartbeats missing for {now - self.peer_seen:.1f}s but the independent "
                                "check answers: heartbeat link cut, no takeover")
            elif self.peer_state is None:
                return Decision(STANDBY, False, "peer_healthy", f"routes at the peer; no word from it yet "
                                f"(dead after {self.dead_after:g}s of silence on both paths)")
            else:
                return Decision(STANDBY, False, "peer_healthy", "peer is primary and healthy")
        else:
            code, why = "peer_dead", (f"peer heartbeats missing for {now - self.peer_seen:.1f}s and the "
                                      f"independent check failing for {now - self.check_seen:.1f}s")
        held = self.hold_down - (now - self.owner_since)
        if held > 0:
            return Decision(STANDBY, False, "hold_down",
                            f"{why}; hold-down: {held:.1f}s left since the last route change")
        return Decision(STANDBY, True, code, why)
