"""Connection state across a takeover, for real (root): tests/aws/hasync_lab.py's two appliances
(`appliance run` with offload + `appliance ha`), a client and a server; the primary's datapath
is killed, the standby takes the moto route, the lab points the client's and server's routes
at it (the VPC's part). Namespaces hsy-*.

- sync on: the offloaded transfers' conntrack entries reach a2 with their PASS connmark (read
  with `conntrack -L` in a2 once the commit is done, before any packet of theirs reached a2),
  the commit ran before the route moved, and every transfer goes on; a connection still under
  inspection is picked up midstream by a2's Python (exception.midstream: dropped under the
  default exception_policy); a2's /metrics shows the HA state and the sync counters.
- sync off: a2's Python picks the offloaded transfers up midstream: exception.midstream, the
  name rule drops them, and the transfers stop (what ha.sync is for).
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from hasync_lab import HTTP_PORT, REPO, SINK_PORT, SyncLab, takeover_run, wait_for

pytestmark = pytest.mark.netns


def needs():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, NFQUEUE)")
    for tool in ("ip", "conntrack", "conntrackd", "curl", "iptables-nft-restore"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed (dev/setup.sh)")


@pytest.fixture
def lab(tmp_path, request):
    needs()
    lab = SyncLab(tmp_path, sync=request.param)
    try:
        yield lab.up()
    finally:
        lab.close()


def metric(text, name, labels=""):
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def midstream(app, port):
    return [e for e in app.events("anomaly") if e.get("src_port") == port
            and e["anomaly"]["event"] == "exception.midstream"]


@pytest.mark.parametrize("lab", [True], indirect=True)
def test_sync_carries_the_offload_mark_and_transfers_survive(lab):
    # 3. the standby's state in its /metrics (the real control server reading `appliance ha`'s status)
    m = wait_for(lambda: (lambda t: t if metric(t, "appliance_ha_sync_up") == 1 and metric(
        t, "appliance_ha_last_heartbeat_age_seconds") is not None else None)(lab.metrics(1)),
        10, "a2's /metrics with the HA figures")
    assert metric(m, "appliance_ha_state", '{state="standby"}') == 1
    assert metric(m, "appliance_ha_state", '{state="primary"}') == 0
    assert metric(m, "appliance_ha_route_owner", '{owner="peer"}') == 1
    assert 0 <= metric(m, "appliance_ha_last_heartbeat_age_seconds") < 2
    assert metric(m, "appliance_ha_sync_actions_total", '{action="request_resync",result="ok"}') >= 1
    out = subprocess.run([sys.executable, "-m", "appliance", "ha", "status", "--config", str(lab.apps[1].config)],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0 and "sync         conntrackd running (restarts 0)" in out.stdout, out

    r = takeover_run(lab)
    ports, passed = r["ports"], r["passed_mark"]
    # (a) the entries with the offload mark reached a2 and were committed before the switch
    assert r["a1_marks"] == {p: passed for p in ports}
    assert r["a2_marks_committed"] == {p: passed for p in ports}, r
    assert r["a2_marks_later"] == {p: passed for p in ports}, r
    ev = lab.ha_events(1)
    kinds = [(e["event"], e.get("action")) for e in ev]
    assert kinds.index(("sync", "commit")) < kinds.index(("takeover", None)), kinds
    assert all(e["ok"] for e in ev if e["event"] == "sync"), [e for e in ev if e["event"] == "sync"]
    wait_for(lambda: {("sync", a) for a in ("flush", "resync_kernel", "bulk_send")} <= set(
        (e["event"], e.get("action")) for e in lab.ha_events(1)), 10, "a2's primary steps")
    # (b) every offloaded transfer keeps going, nothing written is lost; a2 never queued them
    assert r["kept"] == len(ports) and r["bytes_stalled"] == 0, r
    assert not any(midstream(lab.apps[1], p) for p in ports)
    print(f"\nHA sync on: {r['kept']}/{len(ports)} offloaded transfers kept, longest pause "
          f"{r['longest_pause'] * 1000:.0f} ms, failure -> route {r['fail_to_route_s'] * 1000:.0f} ms")
    # (c) the connection still under inspection (no verdict yet, no mark) is a midstream
    # pickup for a2's Python: the name rules cannot know -> exception_policy drop
    assert r["http_mark_a1"] == 0
    assert not r["http"].startswith("HTTP/1.0 200"), r["http"]
    assert midstream(lab.apps[1], r["http_port"])
    assert [e for e in lab.apps[1].events("alert") if e.get("src_port") == r["http_port"]
            and e["dest_port"] == HTTP_PORT and e["alert"]["action"] == "blocked"]

    # 3. after the takeover
    m = wait_for(lambda: (lambda t: t if metric(t, "appliance_ha_state", '{state="primary"}') == 1 else None)(
        lab.metrics(1)), 10, "a2 primary in /metrics")
    assert metric(m, "appliance_ha_transitions_total") >= 1
    assert metric(m, "appliance_ha_takeovers_total") == 1
    assert metric(m, "appliance_ha_sync_actions_total", '{action="commit",result="ok"}') >= 1
    assert metric(m, "appliance_ha_status_age_seconds") < 5
    wait_for(lambda: (metric(lab.metrics(1), "appliance_ha_sync_entries", '{cache="internal"}') or 0) >= len(ports),
             10, "a2's own cache holding the transfers after -R")

    # a1's datapath back: a1 goes fault -> standby; the transfers' entries it kept from its time
    # as primary are zombies now (the flows go through a2) and would clash on a failback: -t
    # has conntrackd purge them after PURGE_TIMEOUT, then -n asks a2 for its table
    from appliance.ha.conntrackd import PURGE_TIMEOUT
    assert all(t > 3600 for t in lab.timeouts(0, SINK_PORT).values()) and lab.timeouts(0, SINK_PORT)
    lab.start_appliance(0, again=True)
    wait_for(lambda: lab.state(0) == "standby", 30, "a1 standby")
    wait_for(lambda: [e["action"] for e in lab.ha_events(0) if e["event"] == "sync"][-2:] == [
        "purge_timers", "request_resync"], 10, "a1's standby steps")
    assert all(e["ok"] for e in lab.ha_events(0) if e["event"] == "sync" and e["action"] == "purge_timers")
    wait_for(lambda: not lab.timeouts(0, SINK_PORT), PURGE_TIMEOUT + 5, "a1's zombie entries purged",
             lambda: lab.timeouts(0, SINK_PORT))

    # fault -> primary (the routes never left a2): no commit of the peer's older copy, no resync
    actions = lambda: [e["action"] for e in lab.ha_events(1) if e["event"] == "sync"]      # noqa: E731
    before = actions()
    # a1's `appliance ha` frozen meanwhile: a healthy standby would take a peer in fault over
    # (a race with a2's recovery on a loaded host); this step is about a2's own transition
    lab.procs[0].send_signal(signal.SIGSTOP)
    try:
        lab.apps[1].signal(signal.SIGSTOP)                 # a2's datapath stops answering /readyz
        try:
            wait_for(lambda: lab.state(1) == "fault", 15, "a2 in fault")
        finally:
            lab.apps[1].signal(signal.SIGCONT)
        wait_for(lambda: lab.state(1) == "primary", 15, "a2 primary again")
        time.sleep(1)
        assert actions() == before, actions()[len(before):]
        assert lab.route_target() == lab.enis[1]           # the routes never left a2
    finally:
        lab.procs[0].send_signal(signal.SIGCONT)
    wait_for(lambda: lab.state(0) == "standby", 15, "a1 standby again")

    # conntrackd killed: `appliance ha` starts it again (off its loop) and says so
    pid = int(re.search(r"pid (\d+)", [e for e in lab.ha_events(1) if e["event"] == "sync"
                                       and e["action"] in ("start", "restart")][-1]["detail"]).group(1))
    os.kill(pid, signal.SIGKILL)
    ev = wait_for(lambda: [e for e in lab.ha_events(1) if e["event"] == "sync" and e["action"] == "restart"],
                  20, "conntrackd restarted")
    assert ev[0]["ok"] and "had exited -9" in ev[0]["detail"], ev
    wait_for(lambda: metric(lab.metrics(1), "appliance_ha_sync_restarts_total") == 1
             and metric(lab.metrics(1), "appliance_ha_sync_up") == 1, 10, "the restart in /metrics")


@pytest.mark.parametrize("lab", [True], indirect=True)
def test_the_sync_guard_comes_back_when_input_is_flushed(lab):
    """conntrackd.py's guard (only the peer may feed the external cache,
    tests/aws/test_ha_sync_guard_netns.py) removed by a flush of INPUT, then pushed down by a
    rule put before it: `appliance ha` puts it back first, says so, counts it."""
    from appliance.ha.conntrackd import GUARD_CHAIN
    first = lambda: [ln for ln in lab.ex(lab.a[1], "iptables-nft", "-S", "INPUT").stdout.splitlines()  # noqa: E731
                     if ln.startswith("-A INPUT")][:1]
    assert GUARD_CHAIN in first()[0]
    guards = lambda: [e for e in lab.ha_events(1) if e["event"] == "sync" and e.get("action") == "guard"]  # noqa: E731
    lab.ex(lab.a[1], "iptables-nft", "-F", "INPUT")
    wait_for(lambda: first() and GUARD_CHAIN in first()[0], 10, "the guard back after a flush of INPUT")
    lab.ex(lab.a[1], "iptables-nft", "-I", "INPUT", "1", "-p", "udp", "-j", "ACCEPT")
    wait_for(lambda: GUARD_CHAIN in first()[0], 10, "the guard first again")
    ev = guards()
    assert len(ev) == 2 and all(e["ok"] for e in ev), ev
    wait_for(lambda: metric(lab.metrics(1), "appliance_ha_sync_actions_total", '{action="guard",result="ok"}') == 2,
             10, "the restorations in /metrics")


@pytest.mark.parametrize("lab", [False], indirect=True)
def test_without_sync_offloaded_transfers_are_picked_up_midstream_and_cut(lab):
    r = takeover_run(lab)
    ports = r["ports"]
    assert r["a1_marks"] == {p: r["passed_mark"] for p in ports}
    assert r["a2_marks_committed"] == {p: None for p in ports}        # nothing to commit
    # a2's Python sees each transfer begin mid-stream: it cannot know the names it never saw,
    # and the name rule takes the safe side (exception_policy: drop)
    # (anomaly events of one kind are rate-limited: the first is written, every one is counted)
    assert any(midstream(lab.apps[1], p) for p in ports)
    assert metric(lab.metrics(1), "appliance_anomalies_total", '{event="exception.midstream"}') >= len(ports)
    blocked = {e["src_port"] for e in lab.apps[1].events("alert") if e["alert"]["action"] == "blocked"}
    assert set(ports) <= blocked
    # ... and no entry is left in a2's kernel to carry a DROP mark: a dropped packet's new
    # entry is never confirmed, so each retransmission is queued to Python again and dropped
    assert r["a2_marks_later"] == {p: None for p in ports}, r
    assert r["kept"] == 0 and r["bytes_stalled"] > 0, r
    print(f"\nHA sync off: {r['kept']}/{len(ports)} offloaded transfers kept, {r['bytes_stalled']} bytes "
          "written and never delivered")
    assert "appliance_ha_sync_up" not in lab.metrics(1)

