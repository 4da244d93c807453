"""Which mark/connmark bits a rule touches (appliance/marks.py), from iptables-save text and nft JSON."""
import pytest

from appliance import marks

META = {"meta": {"key": "mark"}}
CT = {"ct": {"key": "mark"}}


@pytest.mark.parametrize("rule,bits", [
    ("-m mark --mark 0x4000/0x4000 -j RETURN", 0x4000),
    ("-m mark ! --mark 0x1 -j ACCEPT", 0xFFFFFFFF),                  # no mask: all 32 bits compared
    ("-j MARK --set-xmark 0x1f0000/0xffff0000", 0xFFFF0000),
    ("-j MARK --set-xmark 0x80/0x0", 0x80),                          # --or-mark 0x80 as iptables-save prints it
    ("-j CONNMARK --save-mark --nfmask 0xff --ctmask 0xff00", 0xFFFF),
    ("-j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff", 0xFFFFFFFF),
    ("-j CONNMARK --restore-mark", 0xFFFFFFFF),
    ("-m connmark --mark 0x80/0x80 -j ACCEPT", 0x80),
    ("-m comment --comment \"--mark 0x1000\" -j ACCEPT", 0),
    ("-p tcp --dport 22 -j ACCEPT", 0),
])
def test_iptables_rule_bits(rule, bits):
    import shlex
    assert marks.iptables_rule_bits(shlex.split(rule)) == bits


@pytest.mark.parametrize("expr,bits", [
    ([{"match": {"op": "==", "left": {"&": [META, 0x2000]}, "right": 0x2000}}], 0x2000),
    ([{"match": {"op": "==", "left": CT, "right": 1}}], 0xFFFFFFFF),
    ([{"mangle": {"key": META, "value": {"|": [META, 0x10]}}}], 0x10),
    ([{"mangle": {"key": META, "value": {"&": [META, 0xFFFFFF0F]}}}], 0xF0),
    ([{"mangle": {"key": CT, "value": META}}], 0xFFFFFFFF),          # ct mark set meta mark: every bit
    ([{"mangle": {"key": META, "value": 5}}], 0xFFFFFFFF),
    ([{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 22}}], 0),
])
def test_nft_rule_bits(expr, bits):
    assert marks.nft_rule_bits(expr) == bits


def test_own_chains_and_iptables_tables_left_out():
    save = ["*filter", "-A APPLIANCE-INSPECT -m connmark --mark 0x1000/0x3000 -j ACCEPT",
            "-A FORWARD -m comment --comment appliance -j APPLIANCE-FWD",
            "*mangle", "-A PREROUTING -j MARK --set-xmark 0x1000/0x1000"]
    users, tables = marks.iptables_users(save, "iptables-nft-save")
    assert users == [("iptables-nft-save -t mangle -A PREROUTING -j MARK --set-xmark 0x1000/0x1000", 0x1000)]
    doc = {"nftables": [
        {"rule": {"family": "ip", "table": "mangle", "chain": "PREROUTING", "handle": 3,
                  "expr": [{"mangle": {"key": META, "value": 1}}]}},                  # iptables-nft's: read above
        {"rule": {"family": "inet", "table": "x", "chain": "c", "handle": 4,
                  "expr": [{"mangle": {"key": META, "value": 1}}]}}]}
    assert marks.nft_users(doc, {"ip": tables}) == [("nft inet x c handle 4", 0xFFFFFFFF)]


def test_collisions_and_a_free_mask():
    lines, _ = marks.collisions(0x3000, users=[("a", 0x1000), ("b", 0xC0000000), ("c", 0x4)])
    assert lines[0] == "mark_mask 0x3000: a  (bits 0x1000 of ours)" and len(lines) == 2
    assert "free here: 0x30000000" in lines[1]
    assert marks.collisions(0x3000, users=[("a", 0xC000)]) == ([], [])
