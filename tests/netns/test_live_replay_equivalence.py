"""Live inspection and offline replay are one pipeline: the same traffic gives the same verdicts and alerts.

Real clients in the lab send a mix of traffic through `appliance run` (NFQUEUE, one worker, offload on,
the lab's own config from `write_config`) while tcpdump records the appliance's OUTSIDE interface
(eth0). The capture is then replayed with `appliance replay` and the same rules, and the two EVE files
are compared:

  flows   a multiset of (flow key, flow.action); the key is the 5-tuple initiator -> responder
          (ICMP echo: the two addresses, ports 0: the flow table keys echo flows by address + echo id)
  alerts  a multiset of (signature_id, direction to_server/to_client, alert.action, flow key)

What the outside capture can and cannot show, and why the comparison is still exact here:
  * client -> server packets are recorded as they ARRIVE on eth0, before the appliance judges them, so
    the capture has every packet the live appliance was asked about in that direction (and, for a
    dropped flow, the client's retransmissions the kernel dropped without asking Python again);
  * server -> client packets are recorded only if the appliance FORWARDED them. A flow the live
    appliance dropped on a server reply would look different in replay (the deciding reply is missing,
    so replay cannot decide the same way). None of the rules used here decides on a reply: every
    verdict rule (port, HTTP Host, TLS SNI, DNS query) decides on a client packet, and the one rule
    that looks at replies (1000011, response content) only alerts. That is on purpose: with a
    reply-dropping rule the outside capture is simply not the right input for replay. (Measured once
    with a rule `drop, flow: to_client, content: "uid=0(root)"` added last: live says drop and alerts
    1000011 + that rule on the /testmyids flow, replay says pass with no alert there, as it must.)
  * after a drop/reject the kernel drops the flow's later packets itself (offload); replay sees them in
    the capture but a decided flow's verdict is final (fast path, no alerts), so they change nothing.
  * offload: a passed flow leaves Python once nothing can fire any more (the inspector's own
    `_more_to_inspect`, in both modes). Replay inspects the same packets up to that point and fast-paths
    the rest, so content alerts (1000010 on the request, 1000011 on the response) fire in both.
  * only forwarded traffic is compared: the capture also holds the outside link's own chatter (ARP,
    IPv6 neighbour discovery and multicast listener reports between the client and the appliance),
    which the appliance never forwards and so never queues. Replay makes flows of those; they are
    excluded by address (not client <-> server) and the exclusion is listed when the test fails.

Interface semantics: live decides a flow's `direction` from the ingress interface (eth0 = outside),
replay from HOME_NET; replay gets `--home-net` equal to the lab config's `home_net`, so the client
(10.10.1.10, fd00:10:1::10) is outside and the server inside in both. Two test rules on top of
rules/lab make that visible: an alert for `direction: inbound` (must fire on the echo flow in both)
and one for `direction: outbound` (must fire nowhere). Replay also gets `--no-checksums`: the live
worker never checks checksums (the kernel did), so replay must not either.
"""
import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates network namespaces")]

from appliance.lab import Lab, down, up                                                # noqa: E402
from appliance.lab.demo import (DEFAULT_RULES, Probe, probes, read_events, send,     # noqa: E402
                                start_appliance, stop_appliance, write_config)
from appliance.lab.services import REPO_ROOT, python_env                              # noqa: E402
from appliance.lab.topology import (CLIENT_V4, CLIENT_V6, HOME_NET, SERVER_V4,        # noqa: E402
                                    SERVER_V6, ns_exec)

ROOT = Path(__file__).resolve().parents[2]

# Added to a copy of rules/lab (first in load order: header-only rules, as lab.yaml asks).
EXTRA_RULES = """\
# Test rules for the live/replay equivalence test (tests/netns/test_live_replay_equivalence.py).
rules:
  - id: 1900001
    msg: "EQUIV dropped port 8081"
    action: drop
    proto: tcp
    dst_port: 8081
    log: true

  - id: 1900002
    msg: "EQUIV inbound echo (direction from interface live, from HOME_NET in replay)"
    action: alert
    proto: tcp
    dst_port: 7
    direction: inbound

  - id: 1900003
    msg: "EQUIV outbound flow (the lab's client is outside: must never fire)"
    action: alert
    direction: outbound
"""

# The demo's probes (all of them) plus extra_probes().
EXPECTED_PROBES = 15
PAIRS = {frozenset((CLIENT_V4, SERVER_V4)), frozenset((CLIENT_V6, SERVER_V6))}


@pytest.fixture
def lab(request):
    """A lab with a unique name, always taken down (and checked gone) after the test."""
    lab = Lab(f"e{os.getpid() % 100000}-equiv")
    up(lab)
    try:
        yield lab
    finally:
        down(lab)
        assert not lab.existing_namespaces(), "teardown left namespaces behind"


# ------------------------------------------------------------------ capture

class Capture:
    """tcpdump on the appliance's outside interface, started before traffic, stopped (SIGINT) after."""

    def __init__(self, lab, pcap: Path):
        self.pcap, self.log = pcap, pcap.with_suffix(".tcpdump.log")
        # -Z root: tcpdump would otherwise drop to its own user and fail to write in pytest's tmp dir.
        # --immediate-mode: without it the kernel hands packets over in blocks (up to ~1 s late) and
        # SIGINT discards the block in flight: the capture silently lost its last probes (-U only
        # flushes what tcpdump already has). stop() checks that every packet received was written.
        self.proc = subprocess.Popen(ns_exec(lab.fw, "tcpdump", "-n", "-i", "eth0", "-U", "--immediate-mode",
                                             "-s", "0", "-Z", "root", "-w", str(pcap)),
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "wb"), start_new_session=True)
        deadline = time.monotonic() + 10
        while b"listening on" not in self.log.read_bytes():
            assert self.proc.poll() is None, f"tcpdump exited: {self.log.read_text()}"
            assert time.monotonic() < deadline, f"tcpdump not listening after 10 s: {self.log.read_text()}"
            time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stderr and self.proc.stderr.close()
        return self.log.read_text(errors="replace")


# ------------------------------------------------------------------ EVE -> comparable sets

def flow_key(ev: dict, initiator_is_src: bool = True) -> tuple:
    """(proto, initiator ip, port, responder ip, port); ICMP echo carries ports 0 (flow events already do)."""
    proto = ev.get("proto")
    a, b = (ev.get("src_ip"), ev.get("src_port", 0)), (ev.get("dest_ip"), ev.get("dest_port", 0))
    if proto in ("ICMP", "IPv6-ICMP", "ICMPv6") and ev.get("event_type") == "alert":
        if ev.get("icmp_type") in (0, 8, 128, 129):
            a, b = (a[0], 0), (b[0], 0)
    if not initiator_is_src:
        a, b = b, a
    return (proto, *a, *b)


def forwarded(ev: dict) -> bool:
    return frozenset((ev.get("src_ip"), ev.get("dest_ip"))) in PAIRS


def summarize(events: list) -> tuple:
    """(flows, alerts, excluded): multisets of comparable facts, and the events left out (with why)."""
    flows, alerts, excluded = collections.Counter(), collections.Counter(), []
    for ev in events:
        kind = ev.get("event_type")
        if kind not in ("flow", "alert"):
            continue                                # anomaly/stats: counters of the source, not verdicts
        if not forwarded(ev):
            excluded.append(("not client<->server: the appliance never forwards it, so never queues it",
                             kind, ev.get("proto"), ev.get("src_ip"), ev.get("dest_ip")))
            continue
        if kind == "flow":
            flows[(flow_key(ev), ev["flow"]["action"])] += 1
        else:
            a = ev["alert"]
            alerts[(a["signature_id"], ev.get("direction"), a["action"],
                    flow_key(ev, ev.get("direction") != "to_client"))] += 1
    return flows, alerts, excluded


def diff(name: str, live: collections.Counter, replay: collections.Counter) -> list:
    lines = []
    for item in sorted((live - replay).elements(), key=repr):
        lines.append(f"  {name} only LIVE:   {item}")
    for item in sorted((replay - live).elements(), key=repr):
        lines.append(f"  {name} only REPLAY: {item}")
    return lines


def differences(live_events: list, replay_events: list) -> list:
    lf, la, _ = summarize(live_events)
    rf, ra, _ = summarize(replay_events)
    return diff("flow", lf, rf) + diff("alert", la, ra)


def replay(pcap: Path, rules: Path, eve: Path) -> list:
    proc = subprocess.run([sys.executable, "-m", "appliance", "replay", str(pcap), "--rules", str(rules),
                           "--eve", str(eve), "--home-net", ",".join(HOME_NET), "--no-checksums"],
                          cwd=ROOT, env=python_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"appliance replay: exit {proc.returncode}\n{proc.stdout}{proc.stderr}"
    return read_events(eve)


def extra_probes() -> list:
    """Beyond the demo's probes: a port dropped by a header-only rule, and more IPv6 (UDP, TLS)."""
    return [
        Probe("TCP   port 8081 (dropped)", "blocked", ["nc", "-v", "-w", "2", SERVER_V4, "8081"], "", "nc", "tcp",
              8081, sids=(1900001,)),
        Probe("DNS   AAAA www.example.com over IPv6", "allowed",
              ["dig", f"@{SERVER_V6}", "+time=4", "+tries=1", "+short", "www.example.com", "AAAA"],
              SERVER_V6, "dig", "udp", 53),
        Probe("TLS   SNI www.example.com over IPv6", "allowed",
              ["curl", "-sS", "-m", "4", "-k", "--resolve", f"www.example.com:443:[{SERVER_V6}]",
               "https://www.example.com/"], "host=www.example.com", "curl", "tcp", 443),
    ]


# ------------------------------------------------------------------ the test

def test_live_and_replay_agree_per_flow_and_alert(lab, tmp_path):
    # The lab's children (`python3 -m appliance.run`, services) run from this checkout, as replay does.
    assert REPO_ROOT == ROOT, f"lab runs {REPO_ROOT}, the test is in {ROOT}"
    rules = tmp_path / "rules"
    rules.mkdir()
    shutil.copy(DEFAULT_RULES / "lab.yaml", rules / "lab.yaml")
    (rules / "00-equivalence.yaml").write_text(EXTRA_RULES)

    config, live_eve = write_config(lab, rules)
    assert f"home_net: [{', '.join(HOME_NET)}]" in config.read_text()   # what --home-net repeats
    pcap = tmp_path / "outside.pcap"
    appliance = start_appliance(lab, config)
    capture = None
    try:
        capture = Capture(lab, pcap)
        sent = probes() + extra_probes()
        for p in sent:
            send(lab, p)
        time.sleep(0.5)                             # the last FIN/ACKs land before the capture stops
    finally:
        tcpdump_log = capture.stop() if capture else ""
        shutdown = stop_appliance(lab, appliance)   # SIGTERM drains: every live flow gets its flow event
    if live_eve.exists():                           # lab.workdir goes with the lab: keep a copy for a post-mortem
        shutil.copy(live_eve, tmp_path / "live-eve.json")
    assert shutdown == "exit 0", (lab.workdir / "appliance.log").read_text()
    counts = {what: n for n, what in
              re.findall(r"^(\d+) packets? (captured|received by filter|dropped by kernel)", tcpdump_log, re.M)}
    assert counts.get("dropped by kernel") == "0" and counts.get("captured") == counts.get("received by filter"), \
        f"the capture lost packets:\n{tcpdump_log}"

    # The traffic really was the mix we meant (else an agreement would prove little).
    assert len(sent) == EXPECTED_PROBES
    wrong = [f"{p.name}: expected {p.expect}, got {p.observed} ({p.detail})" for p in sent if p.observed != p.expect]
    assert not wrong, "\n".join(wrong)

    live_events = read_events(live_eve)
    replay_events = replay(pcap, rules, tmp_path / "replay-eve.json")
    live_flows, live_alerts, _ = summarize(live_events)
    _, _, excluded = summarize(replay_events)

    # Non-vacuous: the live run decided every way and raised the alerts the probes were chosen for.
    actions = collections.Counter(action for (_, action) in live_flows.elements())
    assert {"pass", "drop", "reject"} <= set(actions), actions
    sids = {sid for (sid, *_rest) in live_alerts}
    assert {1000001, 1000002, 1000003, 1000004, 1000010, 1000011, 1900001, 1900002} <= sids, sids
    assert 1900003 not in sids                      # no outbound flow: the interface says so live
    keys = {k for (k, _) in live_flows}
    assert any(k[:2] == ("TCP", CLIENT_V6) for k in keys), f"no IPv6 TCP flow: {keys}"
    assert ("IPv6-ICMP", CLIENT_V6, 0, SERVER_V6, 0) in keys, f"no ICMPv6 echo flow: {keys}"
    assert ("ICMP", CLIENT_V4, 0, SERVER_V4, 0) in keys, f"no ICMP echo flow: {keys}"

    problems = differences(live_events, replay_events)
    assert not problems, ("live and replay disagree:\n" + "\n".join(problems)
                          + "\nexcluded from replay:\n" + "\n".join(f"  {e}" for e in excluded))

    # The comparison can fail: replay without the Host-blocking rule must disagree on that flow.
    weaker = tmp_path / "weaker"
    weaker.mkdir()
    shutil.copy(rules / "00-equivalence.yaml", weaker)
    (weaker / "lab.yaml").write_text(_without_rule((rules / "lab.yaml").read_text(), 1000001))
    broken = differences(live_events, replay(pcap, weaker, tmp_path / "weaker-eve.json"))
    assert any("only LIVE" in line and "1000001" in line for line in broken), broken
    assert any("only LIVE" in line and "'drop')" in line for line in broken), broken
    shutil.rmtree(tmp_path)                         # capture and EVE files are kept only when the test fails


def _without_rule(text: str, sid: int) -> str:
    """The rule file's text without the rule `- id: SID` (up to the next rule or the end)."""
    out, skipping = [], False
    for line in text.splitlines(keepends=True):
        if line.strip().startswith("- id:"):
            skipping = line.strip() == f"- id: {sid}"
        if not skipping:
            out.append(line)
    assert len(out) < len(text.splitlines()), f"rule {sid} not found"
    return "".join(out)
