"""inspection.handshake_copies: validated at its line, with what it needs; the copy rules'
place in our chain; the rule set check (detect/copy_policy.py); the NFLOG message reader's
packets and loss detection (source/nflog.py). The kernel's side and the worker:
tests/netns/test_handshake_copies.py."""
import struct

import pytest

from appliance.config import ConfigError, load_config
from appliance.detect.copy_policy import copy_refusals
from appliance.detect.loader import load_rules
from appliance.netfilter import COPY_CHAIN, chains_text, copy_rules
from appliance.source import nflog

BASE = "interfaces: {outside: eth0, inside: eth1}\nworkers: 1\n"


def write(tmp_path, text, name="appliance.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def problems(path):
    with pytest.raises(ConfigError) as e:
        load_config(path)
    return e.value.problems


def test_off_by_default_and_on_with_what_it_needs(tmp_path):
    assert load_config(write(tmp_path, BASE)).inspection.handshake_copies is False
    cfg = load_config(write(tmp_path, BASE + "inspection: {kernel_decisions: true, handshake_copies: true,"
                                             " copy_group: 17, copy_buffer: 4096}\n"))
    assert (cfg.inspection.handshake_copies, cfg.inspection.copy_group, cfg.inspection.copy_buffer) == (True, 17, 4096)


def test_bad_values_and_missing_needs_at_the_line(tmp_path):
    path = write(tmp_path, BASE + "inspection:\n  kernel_decisions: true\n  handshake_copies: yes please\n")
    assert f"{path}:5: inspection.handshake_copies must be true or false, got 'yes please'" in problems(path)
    path = write(tmp_path, "interfaces: {outside: eth0, inside: eth1}\nworkers: 2\n"
                           "inspection:\n  kernel_decisions: true\n  handshake_copies: true\n")
    assert any(p.startswith(f"{path}:5: inspection.handshake_copies needs workers: 1") for p in problems(path))
    path = write(tmp_path, BASE + "inspection:\n  handshake_copies: true\n")
    assert any(p.startswith(f"{path}:4: inspection.handshake_copies needs inspection.kernel_decisions: true")
               for p in problems(path))
    path = write(tmp_path, BASE + "offload: false\ninspection:\n  kernel_decisions: true\n  handshake_copies: true\n")
    assert any("needs inspection.kernel_decisions: true and offload: true" in p for p in problems(path))
    path = write(tmp_path, BASE + "inspection:\n  copy_group: 0\n")
    assert any(p.startswith(f"{path}:4: inspection.copy_group") for p in problems(path))


def test_copy_rules_sit_after_the_source_limits_and_before_the_queue():
    text = chains_text(4, "eth0", "eth1", range(0, 1), False, 0x30000000, copy_group=17)
    lines = text.splitlines()
    assert f":{COPY_CHAIN} - [0:0]" in lines
    jumps = [i for i, l in enumerate(lines) if l.endswith(f"-j {COPY_CHAIN}")]
    queue = next(i for i, l in enumerate(lines) if "-j NFQUEUE" in l)
    marks = max(i for i, l in enumerate(lines) if "--mark" in l)
    assert len(jumps) == 22 and marks < min(jumps) and max(jumps) < queue
    # a plain SYN (conntrack NEW) and the SYN/ACK of a connection conntrack saw (its reply)
    assert sum("--tcp-flags FIN,SYN,RST,PSH,ACK,URG SYN -m conntrack --ctstate NEW " in lines[i] for i in jumps) == 11
    assert sum("SYN,ACK -m conntrack --ctstate ESTABLISHED --ctdir REPLY" in lines[i] for i in jumps) == 11
    assert f"-A {COPY_CHAIN} -j NFLOG --nflog-group 17 --nflog-threshold 1" in lines
    assert lines.index(f"-A {COPY_CHAIN} -j NFLOG --nflog-group 17 --nflog-threshold 1") \
        < lines.index(f"-A {COPY_CHAIN} -j ACCEPT")           # copied first, then passed
    off = chains_text(4, "eth0", "eth1", range(0, 1), False, 0x30000000)
    assert COPY_CHAIN not in off and "NFLOG" not in off


def test_no_payload_tests_ask_for_the_exact_length():
    # IPv4: a 20-byte IP header, total length = 20 + the TCP header; IPv6: no extension header
    assert '"0>>22&0x3C=20&&0&0xFFFF=52&&0>>22&0x3C@12>>26&0x3C=32"' in " ".join(copy_rules(4, 1))
    assert '"4>>16&0xFFFF=32&&4>>8&0xFF=6&&52>>26&0x3C=32"' in " ".join(copy_rules(6, 1))


def rules(tmp_path, text):
    p = tmp_path / "rules.yaml"
    p.write_text(text)
    return load_rules(str(p))


NAMES = """default_action: drop
rules:
  - {id: 1, msg: web, action: pass, proto: tcp, dst_port: 8080, http_host: a.example}
  - {id: 2, msg: bad, action: drop, proto: tcp, http_host: evil.example}
  - {id: 3, msg: ok, action: pass, proto: tcp, dst_port: 22}
"""


def test_a_rule_set_that_can_only_pass_a_handshake_packet(tmp_path):
    assert copy_refusals(rules(tmp_path, NAMES)) == []


@pytest.mark.parametrize("extra, why", [
    # decides at once, even behind the pending name rule (engine.decide): a SYN it fits is dropped
    ("  - {id: 9, msg: x, action: drop, proto: tcp, dst_port: 8080, log: false}\n", "rule 9: a drop rule that needs no name"),
    ("  - {id: 9, msg: x, action: reject, proto: tcp, http_host: b.example, tcp_flags: S}\n", "rule 9: a reject rule with packet keywords"),
    # the alert rule queues flows no verdict rule may match: the default drops their SYN
    ("  - {id: 9, msg: x, action: alert, proto: tcp, dst_port: 9999}\n", "rule 9: an alert rule queues flows"),
])
def test_rule_sets_that_may_refuse_a_handshake_packet(tmp_path, extra, why):
    got = copy_refusals(rules(tmp_path, NAMES + extra))
    assert len(got) == 1 and got[0].startswith(why), got
    assert copy_refusals(rules(tmp_path, NAMES + extra), monitor_all=True) == []     # monitor only passes


def nlmsg(seq, payload, indev=3, outdev=4):
    attrs = b""
    for kind, value in ((4, struct.pack("!I", indev)), (5, struct.pack("!I", outdev)),
                        (12, struct.pack("!I", seq)), (9, payload)):
        n = 4 + len(value)
        attrs += struct.pack("=HH", n, kind) + value + b"\0" * (-n % 4)
    body = struct.pack("!BBH", 2, 0, 17) + attrs
    return struct.pack("=IHHII", 16 + len(body), (nflog.NFNL_SUBSYS_ULOG << 8) | nflog.NFULNL_MSG_PACKET, 0, 0, 0) + body


def test_copies_are_read_in_order_and_a_gap_is_a_loss():
    c, out = nflog.Copies(), []
    c.messages(nlmsg(7, b"\x45abc") + nlmsg(8, b"\x45de"), out)
    assert out == [(b"\x45abc", 3, 4), (b"\x45de", 3, 4)] and not c.lost()
    c.messages(nlmsg(11, b"\x45f"), out)                  # 9 and 10 never came
    assert c.missing == 2 and c.lost() and not c.lost()   # said once
    c.messages(nlmsg(12, b"\x45g")[:30], out)             # cut short: no packet, no crash
    assert out[-1] == (b"\x45f", 3, 4)
    c.overrun()
    assert c.lost() and c.overruns == 1
