"""Real local stand-ins for AWS: an IMDSv2 HTTP server, the moto server, network
namespaces with veths carrying ENI MACs, and a loopback bridge into a namespace."""
import http.server
import os
import secrets
import socket
import subprocess
import sys
import threading
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeImds:
    """IMDSv2 as EC2 serves it: PUT /latest/api/token with a TTL header, then GETs with
    X-aws-ec2-metadata-token; 401 without a valid token.

    token_mode: "ok" | "refuse" (PUT answers 403, as when the endpoint is disabled)
                | "reject" (tokens are issued but every GET answers 401).
    enis: list of dicts with mac, device_number, eni_id, subnet_id, vpc_id,
          subnet_cidr, vpc_cidrs (list), local_ipv4s (list).
    """

    def __init__(self, enis, region="us-east-1", instance_id="i-0123456789abcdef0"):
        self.enis, self.region, self.instance_id = enis, region, instance_id
        self.token_mode = "ok"
        self.tokens = set()
        self.untokened_gets = 0
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code, body="", headers=()):
                data = body.encode()
                self.send_response(code)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self):
                if self.path != "/latest/api/token":
                    return self._send(404, "Not Found")
                ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
                if not ttl or not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                    return self._send(400, "Bad Request")
                if fake.token_mode == "refuse":
                    return self._send(403, "Forbidden")
                tok = secrets.token_urlsafe(24)
                fake.tokens.add(tok)
                self._send(200, tok, [("X-aws-ec2-metadata-token-ttl-seconds", ttl)])

            def do_GET(self):
                tok = self.headers.get("X-aws-ec2-metadata-token")
                if not tok:
                    fake.untokened_gets += 1
                if fake.token_mode == "reject" or tok not in fake.tokens:
                    return self._send(401, "Unauthorized")
                body = fake.lookup(self.path)
                if body is None:
                    return self._send(404, "Not Found")
                self._send(200, body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def lookup(self, path):
        prefix = "/latest/meta-data/"
        if not path.startswith(prefix):
            return None
        p = path[len(prefix):]
        if p == "placement/region":
            return self.region
        if p == "instance-id":
            return self.instance_id
        if p == "instance-type":
            return "c6gn.large"
        macs = "network/interfaces/macs/"
        if p == macs:
            return "\n".join(e["mac"] + "/" for e in self.enis)
        if p.startswith(macs):
            mac, _, key = p[len(macs):].partition("/")
            eni = next((e for e in self.enis if e["mac"] == mac), None)
            if eni is None:
                return None
            return {
                "device-number": str(eni["device_number"]),
                "interface-id": eni["eni_id"],
                "subnet-id": eni["subnet_id"],
                "vpc-id": eni["vpc_id"],
                "subnet-ipv4-cidr-block": eni["subnet_cidr"],
                "vpc-ipv4-cidr-blocks": "\n".join(eni["vpc_cidrs"]),
                "local-ipv4s": "\n".join(eni["local_ipv4s"]),
                "mac": eni["mac"],
            }.get(key)
        return None

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class MotoServer:
    """`python3 -m moto.server` on a free loopback port, with IAM auth switched on after
    `no_auth_calls` requests (INITIAL_NO_AUTH_ACTION_COUNT): the setup calls run without
    credentials, everything after is signed and checked against IAM policies."""

    def __init__(self, no_auth_calls):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT=str(no_auth_calls))
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                      "-p", str(self.port)], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("moto server exited: " + self.proc.stderr.read().decode()[-2000:])
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.2)
        self.close()
        raise RuntimeError("moto server did not start within 30s")

    def client(self, service, key=None):
        import boto3
        kw = {"aws_access_key_id": key[0], "aws_secret_access_key": key[1]} if key else {
            "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        return boto3.client(service, region_name="us-east-1", endpoint_url=self.url, **kw)

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def sh(*cmd):
    """Run a command, raising with its stderr on failure (stop at the first error)."""
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
    return r.stdout


class Netns:
    """An appliance namespace `awst-<hex>` and a peer namespace `awst-<hex>-vpc`. Each
    ENI is a veth created directly inside them (never in the root namespace)."""

    def __init__(self):
        tag = secrets.token_hex(4)
        self.name, self.peer = f"awst-{tag}", f"awst-{tag}-vpc"
        self._made = []
        for ns in (self.name, self.peer):
            sh("ip", "netns", "add", ns)
            self._made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")

    def add_eni(self, ifname, mac, mtu=9001):
        peer = f"p-{ifname}"[:15]
        sh("ip", "link", "add", ifname, "netns", self.name, "address", mac, "mtu", str(mtu),
           "type", "veth", "peer", "name", peer, "netns", self.peer)
        sh("ip", "-n", self.peer, "link", "set", peer, "up")

    def exec(self, *cmd, **kw):
        return subprocess.run(["ip", "netns", "exec", self.name, *cmd], capture_output=True, text=True, **kw)

    def sysctl(self, key):
        return self.exec("cat", "/proc/sys/" + key.replace(".", "/")).stdout.strip()

    def close(self):
        for ns in reversed(self._made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


class LoopbackBridge:
    """Listen on 127.0.0.1:<port> inside a namespace and relay each connection to
    127.0.0.1:<target> in the root namespace: the bootstrap inside the namespace reaches the
    fake IMDS and moto without any interface between the namespaces."""

    def __init__(self, netns_name, target_port):
        from pyroute2.netns import popns, pushns
        self.target = target_port
        pushns(netns_name)                 # this thread only, just for socket()
        try:
            self.sock = socket.socket()
            self.sock.bind(("127.0.0.1", 0))
            self.sock.listen(16)
        finally:
            popns()
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                a, _ = self.sock.accept()
            except OSError:
                return
            try:
                b = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                a.close()
                continue
            for src, dst in ((a, b), (b, a)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self):
        self.sock.close()
