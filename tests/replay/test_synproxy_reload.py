"""A reload that changes `overload.synproxy.ports` reaches the flow table: new flows on a
port put behind the SYN proxy are read as proxied (their client ACKs count from the
cookie), and a port taken out of it is read as before. Was: Inspector.reload updated the
settings but the table kept the ports it was built with."""
from replaykit import Capture
from test_receiver_evasion import EVIL, HTTP_DROP, seg
from test_synproxy_flow import A, COOKIE, proxied

from appliance.config import load_config
from appliance.decode import decode_frame
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector
from appliance.source.nfqueue import _settings

BASE = "interfaces: {outside: eth0, inside: eth1}\n"


def _cfg(tmp_path, text):
    p = tmp_path / "appliance.yaml"
    p.write_text(BASE + text)
    return load_config(p)


def _proxied_request(insp):
    """A request behind the proxy (its ACKs in the cookie's numbers): the last verdict."""
    cap = Capture()
    proxied(cap)
    seg(cap, True, "PA", A + 1, COOKIE + 1, EVIL)
    v = [insp.process(decode_frame(buf, cap.linktype, ts)) for ts, buf in cap.frames]
    assert insp.counters.internal_errors == 0
    return v[-1]


def _reloaded(tmp_path, rules, before, after):
    """An Inspector built from config `before`, then swapped to `after` as a live worker
    does (Worker.swap: Inspector.reload with nfqueue._settings of the new config)."""
    ruleset = load_rules(rules)
    insp = Inspector(ruleset, _settings(_cfg(tmp_path, before)))
    insp.reload(ruleset, _settings(_cfg(tmp_path, after), insp.settings))
    return insp


def test_a_port_put_behind_the_proxy_by_a_reload_is_read_as_proxied(tmp_path, rules_file):
    insp = _reloaded(tmp_path, rules_file(HTTP_DROP), "", "overload:\n  synproxy: {ports: [80]}\n")
    v = _proxied_request(insp)
    # the client's ACK of the cookie is not an ACK of unsent data: the request is read, dropped
    assert v.action == "drop" and v.flow.tcp.ack_offset == (COOKIE - 1134466249) & 0xFFFFFFFF


def test_a_port_taken_out_of_the_proxy_by_a_reload_is_read_as_before(tmp_path, rules_file):
    insp = _reloaded(tmp_path, rules_file(HTTP_DROP), "overload:\n  synproxy: {ports: [80]}\n", "")
    v = _proxied_request(insp)
    # a first-seen SYN/ACK is a mid-handshake pickup again: ACKs in the server's numbers
    assert v.flow.tcp.ack_offset == 0
