"""Fleet mode: a worker killed while its flows are in the kernel fast path's sets.

The restarted worker never learns the dead one's elements, so their connection's FIN or RST
would delete nothing and the next connection on the same ports (a new ClientHello, another
SNI) would be passed by the kernel, uninspected. The supervisor installs the table again
(empty) when it restarts a worker, and tells the live workers to forget theirs: their final
flows go back in at their next packet.

Found by a review (reviewer "fleet"); the control run shows the rules drop the SNI.
"""
import os
import signal
import subprocess
import sys
import time

import pytest

from appliance.lab.services import make_certificate
from tests.netns.datapath import wait_for
from tests.netns.test_gwlb_fleet import Fleet, sim   # noqa: F401  (sim: the GWLB simulator's namespaces)

pytestmark = pytest.mark.netns

RULES = """\
default_action: drop
rules:
  - {id: 3, action: pass, proto: tcp, dst_port: 8443, tls_sni: [good.example]}
"""
# a TLS client from a fixed source port: `once` sends and closes; `hold` waits for a line on
# stdin ("again": one more round trip; anything else: close with an RST, no FIN_WAIT left)
CLIENT = r"""
import socket, ssl, struct, sys
sni, source, port, hold = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "hold"
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((source, port)); s.settimeout(8)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
try:
    s.connect(("10.2.0.2", 8443))
    t = ctx.wrap_socket(s, server_hostname=sni)
    t.sendall(b"hello")
    print("answer", t.recv(12), flush=True)
    while hold and sys.stdin.readline().strip() == "again":
        t.sendall(b"again")
        print("answer", t.recv(12), flush=True)
except Exception as e:
    print("failed", repr(e), flush=True); sys.exit()
t.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
t.close()
"""
SERVER = r"""
import socket, ssl, sys, threading
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv = socket.create_server(("0.0.0.0", 8443))
def serve(c):
    try:
        with ctx.wrap_socket(c, server_side=True) as t:
            while (d := t.recv(100)):
                t.sendall(d)
    except Exception:
        pass
while True:
    threading.Thread(target=serve, args=(srv.accept()[0],), daemon=True).start()
"""


def pass_set(b):
    return b.ex(b.a, "nft", "list", "set", "netdev", "appliance_gwlb", "pass4_tcp", check=False).stdout


def client(b, sni, source, port, hold=False):
    return subprocess.Popen(["ip", "netns", "exec", b.c, sys.executable, "-c", CLIENT, sni, source, str(port),
                             "hold" if hold else "once"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


@pytest.fixture
def tls_fleet(sim):
    b = sim
    (b.tmp / "rules.yaml").write_text(RULES)
    b.ex(b.c, "sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1")
    cert_dir = b.tmp / "tls8443"
    cert_dir.mkdir(exist_ok=True)
    cert, key = make_certificate(cert_dir)
    server = b.spawn(b.s, [sys.executable, "-c", SERVER, str(cert), str(key)], b.tmp / "tls8443.log")
    wait_for(lambda: b.ex(b.s, "ss", "-Hltn", "sport = :8443").stdout.strip(), what="tls echo server")
    f = Fleet(b)
    try:
        wait_for(lambda: f.health()[0] == 200, timeout=30, what="healthy")
        yield f
    finally:
        for sig in (signal.SIGINT, signal.SIGINT):     # the second one: no drain
            f.proc.send_signal(sig)
        try:
            f.proc.wait(20)
        except subprocess.TimeoutExpired:
            f.proc.kill()
        server.kill()


@pytest.mark.parametrize("kill", [False, True], ids=["control", "worker-killed"])
def test_a_new_connection_on_a_dead_workers_ports_is_inspected(tls_fleet, kill):
    f, b = tls_fleet, tls_fleet.b
    port, other = 41000 + kill, 43000 + kill      # 10.1.0.2 steers to worker 1, 10.1.0.5 to worker 0
    assert client(b, "evil.example", "10.1.0.2", 42000 + kill).communicate(timeout=20)[0].startswith("failed")
    c = client(b, "good.example", "10.1.0.2", port, hold=True)
    live = client(b, "good.example", "10.1.0.5", other, hold=True)
    assert c.stdout.readline().startswith("answer") and live.stdout.readline().startswith("answer")
    wait_for(lambda: f"0x{port:04x}" in pass_set(b) and f"0x{other:04x}" in pass_set(b), what="both flows offloaded")
    if kill:
        pids, _ = f.workers()
        os.kill(pids[1], signal.SIGKILL)
        wait_for(lambda: "died (exit -9); restarting" in f.log.read_text(), what="the supervisor saw the death")
        wait_for(lambda: f.health()[0] == 200, timeout=15, what="healthy again")
        assert f.workers()[0][1] != pids[1]
        assert f"0x{port:04x}" not in pass_set(b)                  # the dead worker's elements are gone
        live.stdin.write("again\n"); live.stdin.flush()            # the live worker's flow goes in again
        assert live.stdout.readline().startswith("answer")
        wait_for(lambda: f"0x{other:04x}" in pass_set(b), what="the live worker's flow offloaded again")
    c.communicate("\n", timeout=20)                                # RST: the flow ends
    live.communicate("\n", timeout=20)
    time.sleep(1.0)
    again = client(b, "evil.example", "10.1.0.2", port).communicate(timeout=20)[0].strip()
    assert again.startswith("failed"), f"a dropped SNI on the old connection's ports was served: {again}"
