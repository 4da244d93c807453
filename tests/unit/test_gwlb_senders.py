"""Who may send GENEVE (review of issue 14): `gwlb.listen: "::"` is a dual-stack socket, so an
IPv4 GWLB node's datagrams arrive from an IPv4-mapped address (::ffff:a.b.c.d). They are the
configured IPv4 sender's all the same: refused, every packet would be dropped as from a
stranger while the health check says 200."""
import socket
import threading

from scapy.layers.inet import IP, TCP
from scapy.packet import raw

from appliance import geneve, source
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings
from appliance.source.gwlb import GwlbSource, Senders, listen


def test_an_ipv4_gwlb_reaching_a_dual_stack_listener_is_a_known_sender(tmp_path):
    rules = tmp_path / "r.yaml"
    rules.write_text("default_action: pass\nrules: []\n")
    insp = Inspector(load_rules([str(rules)]), Settings(), None)
    gwlb = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    gwlb.bind(("127.0.0.1", 0))
    gwlb.settimeout(10)
    sock = listen("::", 0)
    src = GwlbSource(sock, Senders(["127.0.0.0/8"]), reply_port=gwlb.getsockname()[1], idle=lambda: None, wait=0.05)
    t = threading.Thread(target=source.run, args=(src, insp))
    t.start()
    try:
        d = geneve.encapsulate(1, 2, 3, raw(IP(src="10.1.0.2", dst="10.2.0.2") / TCP(dport=80, flags="S")))
        gwlb.sendto(d, ("127.0.0.1", sock.getsockname()[1]))
        assert gwlb.recv(65535) == d
        assert src.counters.malformed == {}
    finally:
        src.stop()
        t.join(5)
        sock.close()
        gwlb.close()


def test_mapped_and_plain_addresses_are_judged_alike():
    s = Senders(["10.0.1.0/28", "2001:db8::/64"])
    assert s.allowed("::ffff:10.0.1.5") and s.allowed("10.0.1.5")
    assert not s.allowed("::ffff:10.0.2.5")
    assert s.allowed("2001:db8::5") and not s.allowed("2001:db9::5")
