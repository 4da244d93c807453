"""One long TCP connection exchanging small messages: an established flow under a flood.

    python3 -m bench.echo_exchange server PORT
    python3 -m bench.echo_exchange client HOST PORT EXCHANGES INTERVAL_S

The server echoes every byte back and, when the client closes, prints its own socket's
retransmissions as JSON. The client connects, makes one exchange, prints "ready" and waits
for a line on stdin; then it makes EXCHANGES exchanges (64 bytes each way, 5 s to answer),
one every INTERVAL_S, and prints JSON: exchanges answered, failed, and its socket's
retransmissions (TCP_INFO tcpi_total_retrans: each is a segment of this flow lost on the
way, here to a full queue). Run each inside a namespace (bench.lab_flood, tests/netns).
"""
import json
import socket
import struct
import sys
import time

TCPI_TOTAL_RETRANS = 100          # struct tcp_info's offset of tcpi_total_retrans (u32)
MESSAGE = b"x" * 64
ANSWER_WITHIN = 5.0


def retransmissions(sock) -> int:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return struct.unpack_from("I", info, TCPI_TOTAL_RETRANS)[0]


def server(port: int) -> None:
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(1)
    print("listening", flush=True)
    while True:
        conn, _ = ls.accept()
        with conn:
            try:
                while data := conn.recv(4096):
                    conn.sendall(data)
            except OSError:               # reset: the client gave up (its own report says why)
                pass
            print(json.dumps({"server_retransmissions": retransmissions(conn)}), flush=True)


def _exchange(sock) -> bool:
    try:
        sock.sendall(MESSAGE)
        got = b""
        while len(got) < len(MESSAGE):
            chunk = sock.recv(len(MESSAGE) - len(got))
            if not chunk:
                return False
            got += chunk
        return True
    except OSError:                   # socket.timeout included: not answered within ANSWER_WITHIN
        return False


def client(host: str, port: int, exchanges: int, interval: float) -> None:
    sock = socket.create_connection((host, port), timeout=ANSWER_WITHIN)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if not _exchange(sock):
        print(json.dumps({"error": "the first exchange failed"}), flush=True)
        return
    print("ready", flush=True)
    sys.stdin.readline()
    ok = failed = 0
    for _ in range(exchanges):
        if _exchange(sock):
            ok += 1
        else:
            failed += 1
            if failed > 3:
                break                 # the connection is lost for good: stop, report
        time.sleep(interval)
    retrans = retransmissions(sock)
    sock.close()
    print(json.dumps({"answered": ok, "failed": failed, "retransmissions": retrans}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(int(sys.argv[2]))
    else:
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
