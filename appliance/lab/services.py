"""The inside server's services, started in the server namespace by `lab up`.

One Python process (`python3 -m appliance.lab.services serve`) answers
  HTTP on 80 and HTTPS on 443 (body names the Host it was asked for; /testmyids answers like `id`),
  a TCP echo on 7, and a telnet-style banner on 23;
dnsmasq answers DNS on 53 (UDP and TCP) with the lab's names and nothing else.
All listen on both address families.
"""
import argparse
import http.server
import os
from pathlib import Path
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time

from .topology import Lab, LabError, SERVER_V4, SERVER_V6, ns_exec, run

# Names the lab DNS answers (and every name below them); everything points at the server.
DNS_DOMAINS = ["example.com", "example.net", "example"]
CERT_NAMES = ["www.example.com", "*.example.com", "blocked.example.net", "*.blocked.example.net",
              "*.example.net", "good.example", "bad.example"]
TCP_PORTS = (7, 23, 53, 80, 443)
TELNET_BANNER = b"lab-telnet: login disabled\r\n"
TESTMYIDS_BODY = b"uid=0(root) gid=0(root) groups=0(root)\n"
REPO_ROOT = Path(__file__).resolve().parents[2]


def make_certificate(workdir: Path) -> tuple:
    """A self-signed certificate for the lab names (made with openssl at `up`)."""
    cert, key = workdir / "server.crt", workdir / "server.key"
    san = ",".join([f"DNS:{n}" for n in CERT_NAMES] + [f"IP:{SERVER_V4}", f"IP:{SERVER_V6}"])
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "30", "-subj", "/CN=www.example.com", "-addext", f"subjectAltName={san}",
         "-keyout", str(key), "-out", str(cert)])
    return cert, key


def python_env() -> dict:
    """The environment for `python3 -m appliance...` children: this checkout first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    return env


def spawn(ns: str, cmd: list, log: Path) -> subprocess.Popen:
    """Start a long-lived process in `ns`, detached from our session so Ctrl-C never reaches it directly.
    `ip netns exec` execs the command, so the pid is the service's own."""
    with open(log, "ab") as out:
        return subprocess.Popen(ns_exec(ns, *cmd), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                cwd=REPO_ROOT, env=python_env(), start_new_session=True)


def start(lab: Lab) -> dict:
    """Start the services in the server namespace; returns {service: pid} once all of them listen."""
    workdir = lab.workdir
    cert, key = make_certificate(workdir)
    servers = spawn(lab.server, [sys.executable, "-m", "appliance.lab.services", "serve",
                                 "--cert", str(cert), "--key", str(key)], workdir / "services.log")
    dns_args = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                "--bind-interfaces", f"--listen-address={SERVER_V4}", f"--listen-address={SERVER_V6}",
                "--port=53", "--user=root", "--group=root", f"--pid-file={workdir / 'dnsmasq.pid'}",
                "--log-queries", f"--log-facility={workdir / 'dnsmasq.log'}"]
    for domain in DNS_DOMAINS:
        dns_args += [f"--address=/{domain}/{SERVER_V4}", f"--address=/{domain}/{SERVER_V6}"]
    dns = spawn(lab.server, dns_args, workdir / "dnsmasq.out")
    pids = {"servers": servers.pid, "dns": dns.pid}
    wait_listening(lab, {"servers": servers, "dns": dns})
    return pids


def listening(lab: Lab) -> tuple:
    """(TCP ports, UDP ports) with a listener in the server namespace."""
    def ports(flag):
        out = run(ns_exec(lab.server, "ss", "-H", "-n", "-l", flag)).stdout
        return {int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines() if line.strip()}
    return ports("-t"), ports("-u")


def wait_listening(lab: Lab, procs: dict, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise LabError(f"service {name} exited with {proc.returncode}; see {lab.workdir}/*.log")
        tcp, udp = listening(lab)
        missing = [f"{p}/tcp" for p in TCP_PORTS if p not in tcp] + ([] if 53 in udp else ["53/udp"])
        if not missing:
            return
        if time.monotonic() > deadline:
            raise LabError(f"services not listening after {timeout}s: {', '.join(missing)}; see {lab.workdir}")
        time.sleep(0.1)


# --- the servers themselves (run inside the server namespace) ---

class DualStack:
    """Listen on [::] with IPV6_V6ONLY off: one socket answers IPv4 and IPv6."""
    address_family = socket.AF_INET6
    allow_reuse_address = True
    daemon_threads = True

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class WebServer(DualStack, http.server.ThreadingHTTPServer):
    pass


class TCPServer(DualStack, socketserver.ThreadingTCPServer):
    pass


class LabPage(http.server.BaseHTTPRequestHandler):
    timeout = 15                     # a request the appliance dropped must not hold a thread forever
    server_version = "appliance-lab"

    def do_GET(self):
        if self.path.startswith("/testmyids"):
            body = TESTMYIDS_BODY
        else:
            body = f"appliance lab server: host={self.headers.get('Host', '')} path={self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stderr.write("http %s %s\n" % (self.client_address[0], fmt % args))


class Echo(socketserver.StreamRequestHandler):
    timeout = 15

    def handle(self):
        while chunk := self.request.recv(4096):
            self.request.sendall(chunk)


class Telnet(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.sendall(TELNET_BANNER)


def serve(cert: str, key: str) -> None:
    https = WebServer(("::", 443), LabPage)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    # Handshake in the request thread, not in accept(): a ClientHello the appliance dropped
    # would otherwise stall the listener for every later client.
    https.socket = context.wrap_socket(https.socket, server_side=True, do_handshake_on_connect=False)
    servers = [WebServer(("::", 80), LabPage), https,
               TCPServer(("::", 7), Echo), TCPServer(("::", 23), Telnet)]
    for s in servers[1:]:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    sys.stderr.write("lab services listening on 80, 443, 7, 23\n")
    sys.stderr.flush()
    servers[0].serve_forever()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m appliance.lab.services")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("serve", help="run HTTP/HTTPS/echo/telnet servers (inside the server namespace)")
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    args = parser.parse_args(argv)
    serve(args.cert, args.key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
