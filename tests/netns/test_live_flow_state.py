"""Live: a connection whose verdict depends on a flowbit is not offloaded while the bit
can still change it, and the drop rule that reads the bit stops the server's reply once
it is set (docs/rules.md "Flow state"). The replay side is tests/replay/test_flow_state.py.

A real TCP connection between the client and server namespaces through `appliance run`
with a `.rules` file: the client uploads (STOR sets the bit), the server's `150` passes
and leaves the connection in the kernel's hands unmarked (no PASS bit: still inspected),
its `226` is dropped. A connection without STOR gets its `226`.

Own topology (namespaces prefixed "fst-"), deleted at the end of the module.
"""
import subprocess
import sys

import pytest

from datapath import topology_fixture, appliances, wait_for
from appliance import netfilter
from appliance.config import DEFAULT_MARK_MASK as MARK_MASK

MARKS = netfilter.offload_marks(MARK_MASK)
pytestmark = pytest.mark.netns

RULES = """\
alert tcp any any -> any any (msg:"upload"; flow:to_server; content:"STOR "; flowbits:set,upload; flowbits:noalert; sid:1;)
drop tcp any any -> any any (msg:"upload completed"; flow:to_client; content:"226 "; flowbits:isset,upload; sid:2;)
"""

# One connection; each side sends hex on request and reports what it reads.
PEER = """
import socket, sys
role, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if role == 'server':
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, port)); ls.listen(1)
    print('listening', flush=True)
    s, _ = ls.accept()
else:
    s = socket.create_connection((host, port), timeout=5)
print('ready', s.getsockname()[1], flush=True)
for line in sys.stdin:
    if line.startswith('send'):
        s.send(bytes.fromhex(line.split()[1])); print('sent', flush=True)
    elif line.startswith('read'):
        s.settimeout(float(line.split()[1]))
        try:
            got = s.recv(65536)
        except OSError:
            got = b''
        print('got', got.hex() or '-', flush=True)
"""

topo = topology_fixture("fst")


class Peer:
    def __init__(self, ns, *args):
        self.p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", PEER, *args],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def ask(self, line, word):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        return self.expect(word)

    def expect(self, word):
        line = self.p.stdout.readline()
        assert line.startswith(word), (line, self.p.stderr.read() if self.p.poll() is not None else "")
        return line.split()[1:]

    def close(self):
        self.p.kill()
        self.p.wait()


@pytest.fixture
def appliance(topo, tmp_path):
    yield from appliances(topo, tmp_path, "")


@pytest.fixture
def connect(topo):
    made = []

    def make(port):
        server = Peer(topo.server, "server", "0.0.0.0", str(port))
        made.append(server)
        server.expect("listening")
        client = Peer(topo.client, "client", topo.server_ip, str(port))
        made.append(client)
        client.expect("ready")
        server.expect("ready")
        return client, server
    yield make
    for p in made:
        p.close()


def marks(topo, port):
    out = topo.ex(topo.fw, "conntrack", "-L", "-p", "tcp", "--dport", str(port)).stdout
    return [int(f[5:]) & MARK_MASK for line in out.splitlines() for f in line.split() if f.startswith("mark=")]


def exchange(client, server, command):
    """The client sends `command`, the server answers 150 then 226; what the client got of each."""
    client.ask("send " + command.hex(), "sent")
    assert bytes.fromhex(server.ask("read 3", "got")[0]) == command
    server.ask("send " + b"150 ok\r\n".hex(), "sent")
    first = client.ask("read 3", "got")[0]
    return first


def test_a_flow_whose_verdict_reads_a_flowbit_is_not_offloaded_until_decided(topo, appliance, connect, tmp_path):
    a = appliance(workers=1)
    (tmp_path / "flow.rules").write_text(RULES)
    a.config_text = a.config_text.replace("rules: rules.yaml", "rules: flow.rules")
    a.config.write_text(a.config_text)
    a.without_protocol_logs().start()

    client, server = connect(2121)
    assert exchange(client, server, b"STOR x.exe\r\n") == b"150 ok\r\n".hex()
    # the drop rule is pending on the bit: passed packet by packet, never marked PASS
    assert marks(topo, 2121) == [0]
    server.ask("send " + b"226 done\r\n".hex(), "sent")
    assert client.ask("read 2", "got") == ["-"]                          # dropped
    wait_for(lambda: MARKS["drop"] in marks(topo, 2121), what="the drop mark")
    wait_for(lambda: [e for e in a.events("alert") if e["alert"]["signature_id"] == 2], what="the alert")

    client, server = connect(2122)                                       # no STOR: no bit
    assert exchange(client, server, b"RETR x.exe\r\n") == b"150 ok\r\n".hex()
    server.ask("send " + b"226 done\r\n".hex(), "sent")
    assert client.ask("read 3", "got") == [b"226 done\r\n".hex()]
    assert MARKS["drop"] not in marks(topo, 2122)
    a.stop()
