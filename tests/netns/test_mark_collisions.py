"""`appliance run` refuses a mark_mask whose bits other rules on the host already set or match
(iptables-nft rules in other tables, native nftables tables), in a namespace of its own."""
import pytest

from datapath import appliances, topology

pytestmark = pytest.mark.netns

RULES = "default_action: pass\nrules: []\n"


@pytest.fixture(scope="module")
def topo():
    yield from topology(prefix="i12o")


@pytest.fixture
def appliance(topo, tmp_path):
    yield from appliances(topo, tmp_path, RULES)


def test_overlapping_marks_refused_with_each_rule_named(topo, appliance):
    t = topo
    xt = ("-t", "mangle", "-A", "PREROUTING", "-i", "eth0", "-j", "MARK", "--set-xmark", "0x1000/0x1000")
    t.ex(t.fw, "iptables-nft", *xt, check=True)
    for cmd in (["add", "table", "inet", "i12o"],
                ["add", "chain", "inet", "i12o", "fw", "{ type filter hook forward priority 10; }"],
                ["add", "rule", "inet", "i12o", "fw", "ct", "mark", "and", "0x2000", "==", "0x2000", "accept"]):
        t.ex(t.fw, "nft", *cmd, check=True)
    try:
        a = appliance(workers=1).launch()
        assert a.proc.wait(60) == 2
        log = a.log_text()
        assert f"{a.config}:1: mark_mask 0x3000: " in log        # no mark_mask line: the default, line 1
        assert "mark_mask 0x3000: iptables-nft-save -t mangle -A PREROUTING -i eth0 -j MARK --set-xmark " \
               "0x1000/0x1000  (bits 0x1000 of ours)" in log, log
        assert "mark_mask 0x3000: nft inet i12o fw handle" in log and "(bits 0x2000 of ours)" in log, log
        assert "free here: 0xc0000000" in log, log
        assert "NFQUEUE" not in a.iptables_save()              # nothing installed

        # the same host with bits nobody uses: it starts
        b = appliance(workers=1, extra="mark_mask: 0xc0\n").start()
        assert "--mark 0x40/0xc0" in b.iptables_save()
        assert b.stop() == 0
    finally:
        t.ex(t.fw, "iptables-nft", *[x if x != "-A" else "-D" for x in xt])
        t.ex(t.fw, "nft", "delete", "table", "inet", "i12o")


def test_connmark_restore_without_masks_takes_every_bit(topo, appliance):
    t = topo
    r = ("-t", "mangle", "-A", "PREROUTING", "-j", "CONNMARK", "--restore-mark")
    t.ex(t.fw, "iptables-nft", *r, check=True)
    try:
        a = appliance(workers=1, extra="mark_mask: 0xc0\n").launch()
        assert a.proc.wait(60) == 2
        assert "--restore-mark --nfmask 0xffffffff --ctmask 0xffffffff  (bits 0xc0 of ours)" in a.log_text()
        assert "no two adjacent bits are free" in a.log_text()
    finally:
        t.ex(t.fw, "iptables-nft", *[x if x != "-A" else "-D" for x in r])
