"""What real servers serve for odd HTTP Host values, against what the rules read.

Run as root from the repository root (needs nginx, apache2, golang-go from apt):
    python3 dev/http_host_servers.py > table.md
It creates a network namespace, starts nginx, Apache, a Go net/http ServeMux and Python's
http.server in it (vhosts good.example, evil.example and a default), sends each raw request
over a socket, and prints a markdown table: which vhost answered, the http.host readings
the appliance gives the rules and what two drop rules on evil.example do (docs/rules.md,
HTTP names). Everything it starts or creates is removed at the end.
"""
import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path[:0] = [os.getcwd(), os.path.join(os.getcwd(), "tests", "replay")]

from replaykit import Capture, TcpConn  # noqa: E402
from appliance.applayer.http import RequestReader  # noqa: E402
from appliance.decode import decode_frame  # noqa: E402
from appliance.detect.loader import load_rules  # noqa: E402
from appliance.inspector import Inspector, Settings  # noqa: E402

NS = f"hostprobe{os.getpid()}"
G = b"good.example"


def req(host, target=b"/x", extra=b""):
    return b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\n" + extra + b"Connection: close\r\n\r\n"


CASES = [
    ("plain", req(b"evil.example")),
    ("trailing backslash", req(b"evil.example\\")),
    ("two backslashes", req(b"evil.example\\\\")),
    ("backslash + port", req(b"evil.example\\:80")),
    ("backslash inside", req(b"evil\\.example")),
    ("trailing dot", req(b"evil.example.")),
    ("uppercase + trailing dot", req(b"EVIL.example.")),
    ("allowed name + trailing dot", req(b"good.example.")),
    ("two trailing dots", req(b"evil.example..")),
    ("dot + port", req(b"evil.example.:80")),
    ("leading dot", req(b".evil.example")),
    ("port 80", req(b"evil.example:80")),
    ("empty port", req(b"evil.example:")),
    ("port abc", req(b"evil.example:abc")),
    ("two ports", req(b"evil.example:80:80")),
    ("uppercase", req(b"EVIL.EXAMPLE")),
    ("spaces around", req(b"  evil.example  ")),
    ("tabs around", req(b"\tevil.example\t")),
    ("space inside", req(b"evil.example x")),
    ("percent-encoded dot", req(b"evil%2eexample")),
    ("trailing slash", req(b"evil.example/")),
    ("trailing ?", req(b"evil.example?")),
    ("trailing #", req(b"evil.example#")),
    ("trailing ;", req(b"evil.example;")),
    ("trailing comma", req(b"evil.example,")),
    ("userinfo in Host", req(b"good@evil.example")),
    ("userinfo in target", req(G, b"http://good@evil.example/x")),
    ("userinfo in target (Host evil)", req(b"evil.example", b"http://good.example@/x")),
    ("absolute target evil, Host good", req(G, b"http://evil.example/x")),
    ("absolute target good, Host evil", req(b"evil.example", b"http://good.example/x")),
    ("absolute target, trailing backslash", req(G, b"http://evil.example\\/x")),
    ("absolute target, trailing dot", req(G, b"http://evil.example./x")),
    ("IPv6 literal", req(b"[::1]")),
    ("IPv6 literal + port", req(b"[::1]:80")),
    ("IPv6 unclosed", req(b"[::1")),
    ("IPv6 bare", req(b"::1")),
    ("NUL at end", req(b"evil.example\x00")),
    ("NUL inside", req(b"evil\x00.example")),
    ("CR inside", req(b"evil.example\rx")),
    ("CR at end", req(b"evil.example\r")),
    ("two Hosts good, evil", req(G, extra=b"Host: evil.example\r\n")),
    ("two Hosts evil, good", req(b"evil.example", extra=b"Host: good.example\r\n")),
    ("empty Host", req(b"")),
]

NGINX = """daemon off; pid {d}/nginx.pid; error_log {d}/nginx.err;
events {{}}
http {{
  access_log off; client_body_temp_path {d}/t1; proxy_temp_path {d}/t2; fastcgi_temp_path {d}/t3;
  uwsgi_temp_path {d}/t4; scgi_temp_path {d}/t5;
  server {{ listen 8081 default_server; server_name _; location / {{ return 200 "vhost=default\\n"; }} }}
  server {{ listen 8081; server_name good.example; location / {{ return 200 "vhost=good\\n"; }} }}
  server {{ listen 8081; server_name evil.example; location / {{ return 200 "vhost=evil\\n"; }} }}
}}
"""
APACHE = """ServerRoot /etc/apache2
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
PidFile {d}/apache.pid
ErrorLog {d}/apache.err
Listen 8082
ServerName default.invalid
User www-data
Group www-data
<Directory {d}>
  Require all granted
</Directory>
<VirtualHost *:8082>
  ServerName default.invalid
  DocumentRoot {d}/default
</VirtualHost>
<VirtualHost *:8082>
  ServerName good.example
  DocumentRoot {d}/good
</VirtualHost>
<VirtualHost *:8082>
  ServerName evil.example
  DocumentRoot {d}/evil
</VirtualHost>
"""
GO = """package main

import (
	"fmt"
	"net/http"
)

func vhost(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "vhost=%s\\n", name) }
}

func main() {
	mux := http.NewServeMux()
	mux.Handle("/", vhost("default"))
	mux.Handle("good.example/", vhost("good"))
	mux.Handle("evil.example/", vhost("evil"))
	http.ListenAndServe(":8083", mux)
}
"""
PYTHON = """import http.server
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = ("host=%r\\n" % self.headers.get("Host")).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(("", 8084), H).serve_forever()
"""
CLIENT = """import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3)
s.sendall(sys.stdin.buffer.read())
out = b""
try:
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
except OSError:
    pass
sys.stdout.buffer.write(out)
"""
PORTS = {"nginx": 8081, "Apache": 8082, "Go": 8083, "Python http.server (Host an app reads)": 8084}


def in_ns(*argv):
    return ["ip", "netns", "exec", NS, *argv]


def start(d):
    for v in ("good", "evil", "default"):
        os.makedirs(f"{d}/{v}")
        with open(f"{d}/{v}/x", "w") as f:
            f.write(f"vhost={v}\n")
    for name, text in (("nginx.conf", NGINX), ("apache.conf", APACHE), ("srv.go", GO), ("srv.py", PYTHON)):
        with open(f"{d}/{name}", "w") as f:
            f.write(text.format(d=d) if name.endswith(".conf") else text)
    os.chmod(d, 0o755)
    subprocess.run(["go", "build", "-o", f"{d}/srv-go", f"{d}/srv.go"], check=True, cwd=d,
                   env={**os.environ, "GOCACHE": f"{d}/gocache", "HOME": d})
    subprocess.run(["ip", "netns", "add", NS], check=True)
    subprocess.run(["ip", "-n", NS, "link", "set", "lo", "up"], check=True)
    procs = [subprocess.Popen(in_ns(*argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for argv in (
        ["nginx", "-c", f"{d}/nginx.conf"], ["apache2", "-X", "-f", f"{d}/apache.conf"],
        [f"{d}/srv-go"], [sys.executable, f"{d}/srv.py"])]
    for port in PORTS.values():
        for _ in range(50):
            if subprocess.run(in_ns("python3", "-c", f"import socket; socket.create_connection(('127.0.0.1', {port}))"),
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
    return procs


def ask(port, data):
    out = subprocess.run(in_ns(sys.executable, "-c", CLIENT, str(port)), input=data, capture_output=True,
                         timeout=10).stdout
    status = out.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
    code = status[1] if len(status) > 1 else "closed"
    body = out.partition(b"\r\n\r\n")[2]
    if code != "200":
        return code
    m = re.search(rb"host=(.*)", body)
    if port == PORTS["Python http.server (Host an app reads)"]:
        return show(ast.literal_eval(m.group(1).decode("latin-1")).encode("latin-1"))
    m = re.search(rb"vhost=(\w+)", body)
    return m.group(1).decode() if m else code


def show(b):
    t = "".join(chr(c) if 0x20 <= c < 0x7F else {9: "\\t", 13: "\\r", 10: "\\n"}.get(c, "\\x%02x" % c) for c in b)
    return "`" + t.replace("|", "\\|") + "`"


RULES = {
    "name": "rules:\n  - {id: 1, action: drop, proto: tcp, http_host: evil.example}\n",
    "ends": 'rules:\n  - {id: 1, action: drop, proto: tcp, content: [{value: "evil.example", endswith: true, '
            'buffer: http.host}]}\n',
}


def verdict(rules, data):
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 40000, "10.0.0.80", 80)
    c.handshake()
    n = c.send(data)
    insp = Inspector(rules, Settings())
    return [insp.process(decode_frame(b, cap.linktype, ts)) for ts, b in cap.frames][n - 1].action


def readings(data):
    _, reqs, _ = RequestReader().feed(bytearray(data), False)
    return reqs[0].hosts if reqs else []


def main():
    d = tempfile.mkdtemp(prefix="hostprobe")
    procs = []
    try:
        rules = {}
        for k, text in RULES.items():
            with open(f"{d}/{k}.yaml", "w") as f:
                f.write(text)
            rules[k] = load_rules(f"{d}/{k}.yaml")
        procs = start(d)
        print("| case | request (Host line / target) | " + " | ".join(PORTS)
              + " | http.host readings | `http_host` rule | `http.host` endswith rule |")
        print("|---|---|" + "---|" * len(PORTS) + "---|---|---|")
        for name, data in CASES:
            line0, _, rest = data.split(b"\r\nConnection")[0].partition(b"\r\n")
            target = line0.split(b" ")[1]
            shown = show(rest) + ("" if target == b"/x" else ", target " + show(target))
            hosts = ", ".join(show(h.encode()) for h in readings(data)) or "-"
            print(f"| {name} | {shown} | " + " | ".join(ask(p, data) for p in PORTS.values())
                  + f" | {hosts} | {verdict(rules['name'], data)} | {verdict(rules['ends'], data)} |")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", NS])
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
