"""Rules on `file_data`: HTTP bodies (applayer/body.py), read on the server's packets.

A file_data rule is an HTTP rule (its name key and other buffers fit the same
transaction) whose body comes later than its request: it is judged on the packets that
bring body bytes, against the transaction whose body they are.
- A verdict rule stays pending while a body it could read may still come (the request's
  response, up to the inspect depth): it holds back later rules as a pending name does.
  It decides on the packet whose bytes make it match: that packet is dropped, so the
  client never gets the rest of the body (what came before it did get through).
- An alert rule fires once per transaction, on the packet whose bytes make it match.
- A body the appliance could not read as the client does (body.unknown) matches every
  drop/reject rule on file_data under exception_policy "drop", no pass rule; under
  "ignore" only the bytes read count.
"""
from . import index as ix
from ..applayer.state import Unknown
from ..packet import TCP

BUFFER = "file_data"


def mask(rules):
    """The rules that read file_data (a program or a bsize on it)."""
    m = 0
    for i, r in enumerate(rules):
        if any(b == BUFFER for b, _ in r.buffers) or any(b == BUFFER for b, _ in r.bsize):
            m |= 1 << i
    return m


def body_open(flow):
    """A body a rule could read may still come on this flow: a request waits for its
    response, or the response being read has a body not inspected to its end."""
    app = flow.app
    server = app.server if app is not None else None
    if server is None or server.done:
        return False
    req = getattr(server.reader, "req", None)
    if req is not None and (req.body is None or not req.body.complete):
        return True
    return bool(server.waiting)


def may_come(flow):
    """A later packet may bring body bytes for a rule: a body is open, or a later request
    of a keep-alive connection may get one."""
    app = flow.app
    if app is None:
        return flow.proto == TCP           # its protocol is not known yet (its first bytes tell)
    return body_open(flow) or (app.proto == "http" and app.multi_tx)


def _fits(det, i, txs, block, policy_drop):
    prog = det.app_program[i]
    for tx in txs:
        b = tx.body
        if b is None:
            continue
        if b.unknown is not None and policy_drop:
            if block:
                return True        # any body: the client may get bytes no rule saw
            continue
        if prog.fits_tx("http", tx, any if block else all, {}, det.limits):   # the packet's bounds
            return True
    return False


def decide_mask(det, body, flow, txs):
    """Of the file_data verdict rules `body` (candidates), those still in the walk: the
    ones that fit the body read (-> det.body_fit, they match) and those pending. A flow
    whose names the appliance cannot know: block rules fit under policy "drop"."""
    app = flow.app
    det.body_fit = 0
    if app is None or app.names.get("http") is None:
        return body                # the request is not read yet: pending like a name
    policy_drop = det.exception_policy == "drop"
    if type(app.names["http"]) is Unknown and policy_drop:
        det.body_fit = body & det.block
        return det.body_fit
    pending = body_open(flow)
    keep = 0
    for i in ix.bits(body):
        bit = 1 << i
        if _fits(det, i, txs, bool(bit & det.block), policy_drop):
            det.body_fit |= bit
            keep |= bit
        elif pending:
            keep |= bit
    return keep


def alerts(det, pkt, flow, to_server, cand, txs, scan):
    """file_data alert rules that fire on this packet: they fit a transaction whose body
    grew here and have not fired on it yet."""
    a = cand & det.alert & det.body_rules
    out = []
    if not a:
        return out
    for i in ix.bits(a):
        r = det.rules[i]
        if det.per_packet[i] and not det.packet_match(r, pkt, flow, to_server, scan):
            continue
        for tx in txs:
            if tx.body_fired is not None and r.id not in tx.body_fired and \
                    _fits(det, i, [tx], True, False):
                tx.body_fired.add(r.id)
                out.append(r)
                break
    return out
