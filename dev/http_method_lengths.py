"""Which vhost real servers serve for a request whose method is a long token.

Run as root from the repository root (needs nginx, apache2, golang-go from apt):
    python3 dev/http_method_lengths.py
Starts dev/http_host_servers.py's servers (vhosts good, evil, default) in a namespace of its
own and sends "<method> /x HTTP/1.1" with Host: evil.example for methods of 16 bytes to past
Go's limit; prints what each server answered (a vhost, or the status code). What it showed
(nginx 1.22, Apache 2.4, Go 1.19): nginx serves evil for an uppercase method up to ~8 KiB
(414 past its 8 KiB line buffer; 400 for lowercase), Apache answers 501 for any unknown
method (414 past 8190 bytes), Go serves evil for any token up to 1 MiB + 4 KiB in all
(DefaultMaxHeaderBytes + 4096: 431 past it), Python's http.server 501 (414 past 64 KiB). docs/rules.md, HTTP names, says what the
appliance does with them.
"""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path[:0] = [os.getcwd(), os.path.join(os.getcwd(), "dev")]
import http_host_servers as servers  # noqa: E402

GO_LIMIT = (1 << 20) + 4096


def request(method):
    return method + b" /x HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"


def main():
    cases = [(f"{case} {n}", request(letter * n)) for n in (16, 64, 100, 1000, 8000, 9000, 70000)
             for case, letter in (("upper", b"X"), ("lower", b"x"))]
    cases += [(f"upper {n}", request(b"X" * n)) for n in (GO_LIMIT - 200, GO_LIMIT)]
    d = tempfile.mkdtemp(prefix="methodprobe")
    procs = []
    try:
        procs = servers.start(d)
        print("| method | " + " | ".join(servers.PORTS) + " |")
        print("|---|" + "---|" * len(servers.PORTS))
        for name, data in cases:
            print(f"| {name} | " + " | ".join(servers.ask(p, data) for p in servers.PORTS.values()) + " |",
                  flush=True)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", servers.NS])
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
