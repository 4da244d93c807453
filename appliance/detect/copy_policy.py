"""Handshake copies (inspection.handshake_copies): may the kernel pass a plain SYN or SYN/ACK
unjudged? Only when the engine's verdict on it is pass whatever the rule set: the kernel
passes it and the worker reads a copy (source/nflog.py), too late to drop it.

A payload-less handshake packet brings no name, no buffer and no content. With kernel
decisions on, a flow whose first applicable rule is a header-only verdict is judged by the
kernel table before the copy rule; what reaches it is a flow some rule leaves to the
queue. The engine then drops such a packet only through:

- a drop/reject rule that can match without a name or buffer: header-only (it decides at
  once even behind a pending pass rule: engine.decide), or with packet keywords (flags,
  dsize, flowbits, thresholds...), or `<>`;
- the default action drop/reject reached at once: a flow no verdict rule may match, queued
  because an alert rule (or a logging rule) watches it.

So the check refuses both, conservatively (rule by rule, not flow by flow); monitored rules
and monitor mode only ever pass. The worker still checks each copy's verdict
(nfqueue.Worker.read_copies: `copies_not_passed`).
"""
from .keywords import app_fields, per_packet


def copy_refusals(ruleset, monitor_all=False):
    """Why the kernel may not pass handshake packets for this rule set: ["rule N: ...", ...];
    empty when it may."""
    if monitor_all:
        return []
    why = []
    for r in ruleset.rules:
        if not r.decides or r.monitor or r.action not in ("drop", "reject"):
            continue
        if not app_fields(r):
            why.append(f"rule {r.id}: a {r.action} rule that needs no name or buffer may match a SYN")
        elif per_packet(r) or r.bidirectional:
            why.append(f"rule {r.id}: a {r.action} rule with packet keywords may match a SYN")
    if ruleset.default_action in ("drop", "reject") and not ruleset.default_monitor:
        for r in ruleset.rules:
            if not r.decides and not r.monitor:
                why.append(f"rule {r.id}: an alert rule queues flows the default ({ruleset.default_action}) "
                           "would refuse at their SYN")
                break
    return why
