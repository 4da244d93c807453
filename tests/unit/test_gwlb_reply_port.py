"""Where an allowed datagram goes back: the GWLB's port 6081 (gwlb.reply_port), or with
`reply_port: null` the port it came from; always from the appliance's GENEVE port."""
import select
import socket
import threading

from scapy.layers.inet import IP, TCP
from scapy.packet import raw

from appliance import geneve, source
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings
from appliance.source.gwlb import GwlbSource, Senders, listen


def one_round_trip(tmp_path, reply_port, listener_port=None):
    (tmp_path / "r.yaml").write_text("default_action: pass\nrules: []\n")
    insp = Inspector(load_rules([str(tmp_path / "r.yaml")]), Settings(), None)
    sock = listen("127.0.0.1", 0)
    gwlb_out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)     # the GWLB node's sending socket
    gwlb_out.bind(("127.0.0.1", 0))
    gwlb_out.settimeout(3)
    gwlb_in = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)      # where it listens
    gwlb_in.bind(("127.0.0.1", listener_port or 0))
    gwlb_in.settimeout(3)
    if reply_port == "listener":
        reply_port = gwlb_in.getsockname()[1]
    src = GwlbSource(sock, Senders(["127.0.0.1/32"]), reply_port=reply_port, idle=lambda: None, wait=0.05)
    t = threading.Thread(target=source.run, args=(src, insp))
    t.start()
    d = geneve.encapsulate(1, 2, 3, raw(IP(src="10.1.0.2", dst="10.2.0.2") / TCP(sport=1, dport=80, flags="S")))
    try:
        gwlb_out.sendto(d, sock.getsockname())
        ready, _, _ = select.select([gwlb_in, gwlb_out], [], [], 5)
        if not ready:
            return None
        data, peer = ready[0].recvfrom(65535)
        return ready[0] is gwlb_in, data == d, peer == sock.getsockname()
    finally:
        src.stop()
        t.join(5)
        for s in (sock, gwlb_out, gwlb_in):
            s.close()


def test_reply_goes_to_the_configured_port(tmp_path):
    assert one_round_trip(tmp_path, "listener") == (True, True, True)


def test_reply_port_none_mirrors_the_senders_port(tmp_path):
    assert one_round_trip(tmp_path, None) == (False, True, True)
