"""Live protocol logs: with no rule about names, every DNS query, TLS ClientHello and HTTP
request through the appliance is logged (dns/tls/http EVE events), and a drop rule without
`log` emits a blocked alert."""
import struct
import sys

import pytest

from datapath import appliances, curl, wait_for
from test_datapath import servers, url  # noqa: F401  (fixtures)

pytestmark = pytest.mark.netns

RULES = """\
default_action: pass
rules:
  - {id: 2001, msg: "block tcp 8081", action: drop, proto: tcp, dst_port: 8081}
"""

CLIENT = r"""
import socket, struct, sys
server = sys.argv[1]
q = struct.pack("!HHHHHH", 77, 0x0100, 1, 0, 0, 0) + b"\x04live\x07example\x00" + struct.pack("!HH", 1, 1)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.sendto(q, (server, 53))
name = b"sni.example"
ext = struct.pack("!HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
body = b"\x03\x03" + b"\x11" * 32 + b"\x00" + struct.pack("!HH", 2, 0x1301) + b"\x01\x00" + struct.pack("!H", len(ext)) + ext
hello = b"\x01" + struct.pack("!I", len(body))[1:] + body
t = socket.create_connection((server, 8082), timeout=3)
t.sendall(b"\x16\x03\x01" + struct.pack("!H", len(hello)) + hello)
try:
    t.recv(100)
except OSError:
    pass
t.close()
"""


@pytest.fixture
def appliance(dp_topo, servers, tmp_path):  # noqa: F811
    yield from appliances(dp_topo, tmp_path, RULES)


def test_live_dns_tls_http_logs_and_blocked_alert(dp_topo, appliance):
    t = dp_topo
    a = appliance().start()
    # two requests on one keep-alive connection: both logged
    r = t.ex(t.client, "curl", "-sS", "-o", "/dev/null", "-o", "/dev/null", "--max-time", "4",
             url(t, 8080), url(t, 8080, "missing"))
    assert r.returncode == 0, r.stderr
    assert t.ex(t.client, sys.executable, "-c", CLIENT, t.server_ip).returncode == 0
    assert curl(t, url(t, 8081), max_time=2).returncode == 28      # dropped
    http = wait_for(lambda: len(a.events("http")) >= 2 and a.events("http"), what="two http events")
    assert sorted(e["http"]["url"] for e in http) == ["/hello", "/missing"]
    assert all(e["http"]["hostname"] == t.server_ip and e["http"]["http_method"] == "GET" for e in http)
    [dns] = wait_for(lambda: a.events("dns"), what="a dns event")
    assert dns["dns"]["queries"] == [{"rrname": "live.example", "rrtype": "A"}] and dns["dns"]["id"] == 77
    [tls] = wait_for(lambda: a.events("tls"), what="a tls event")
    assert tls["tls"]["sni"] == "sni.example" and tls["tls"]["ja3"]["string"] == "771,4865,0,,"
    alerts = wait_for(lambda: a.events("alert"), what="the blocked alert")
    assert {(e["alert"]["signature_id"], e["alert"]["action"]) for e in alerts} == {(2001, "blocked")}
    assert a.stop() == 0
