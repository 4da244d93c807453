"""Live: a SYN flood spoofed from random sources (hping3 --rand-source: every SYN its own
source, so no per-source limit can tell it from real clients) against a port behind the
kernel's SYN proxy (`overload.synproxy`), while real clients fetch through the same worker.
The flood's SYNs are answered by the kernel with cookies and never reach the queue nor
conntrack's table; the clients' connections, which reach the worker with their ACKs in
cookie numbers, are read correctly: a name rule still blocks, also when the request is
split across segments. Counts only, nothing timed.

Own topology (namespaces prefixed "spx-").
"""
import shutil
import signal
import subprocess

import pytest

from datapath import appliances, curl, http_servers, topology_fixture, wait_for

pytestmark = pytest.mark.netns

topo = topology_fixture("spx")

RULES = """\
default_action: pass
rules:
  - {id: 1, action: drop, proto: tcp, http_host: blocked.example}
"""
SYNS = 300_000                         # at up to 10,000/s (hping3 -i u100): outlasts the fetches
FETCHES = 40
PROXY = "overload:\n  synproxy: {ports: [80]}\n"

# A request whose Host header is split over two segments (TCP_NODELAY, a pause between):
# prints the status line, or "none" when the connection was dropped.
SPLIT = """
import socket, sys, time
s = socket.create_connection(("10.2.0.2", 80), timeout=3)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.send(b"GET /hello HTTP/1.1\\r\\nHost: " + sys.argv[1][:4].encode())
time.sleep(0.2)
s.send(sys.argv[1][4:].encode() + b"\\r\\nConnection: close\\r\\n\\r\\n")
try:
    print((s.recv(100).split(b"\\r\\n")[0] or b"none").decode())
except OSError:
    print("none")
"""


@pytest.fixture
def appliance(topo, tmp_path):
    yield from appliances(topo, tmp_path, RULES)


def _proxied(a):
    """Packets the SYNPROXY rule took (SYNs answered with a cookie, cookie ACKs)."""
    out = a.topo.ex(a.topo.fw, "iptables-nft-save", "-c").stdout
    return sum(int(line[1:].split(":")[0]) for line in out.splitlines()
               if line.startswith("[") and "-j SYNPROXY" in line)


def _entries(topo):
    return int(topo.ex(topo.fw, "cat", "/proc/sys/net/netfilter/nf_conntrack_count").stdout)


def _split(topo, host):
    return topo.ex(topo.client, "python3", "-c", SPLIT, host).stdout.strip()


def test_a_spoofed_flood_is_answered_by_the_kernel_and_the_clients_are_read_right(topo, tmp_path, appliance):
    if not shutil.which("hping3"):
        pytest.skip("hping3 is not installed (dev/setup.sh)")
    # the cookie SYN/ACKs to the spoofed sources take the default route, as on an appliance
    # whose outside has it (without a route they would die unsent: not the real case)
    topo.ex(topo.fw, "ip", "route", "add", "default", "via", "10.1.0.2", check=True)
    a = appliance(workers=1, extra=PROXY).start()
    assert "-j SYNPROXY" in a.iptables_save()
    raw = topo.ex(topo.fw, "iptables-nft-save", "-t", "raw").stdout
    assert "-A PREROUTING -m comment --comment appliance -j APPLIANCE-SYNPROXY" in raw, raw
    workers = a.worker_pids()
    with http_servers(topo, tmp_path, [80]):
        assert curl(topo, "http://10.2.0.2/hello").stdout == "200"
        # names behind the proxy: the worker reads the client's bytes (ACKs in cookie numbers)
        assert curl(topo, "http://10.2.0.2/hello", max_time=2).stdout == "200"
        blocked = topo.ex(topo.client, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2",
                          "-H", "Host: blocked.example", "http://10.2.0.2/hello").stdout
        assert blocked == "000"
        assert _split(topo, "good.example").startswith("HTTP/1.0 200")
        assert _split(topo, "blocked.example") == "none"
        q0 = a.queued()
        assert all(curl(topo, "http://10.2.0.2/hello").stdout == "200" for _ in range(10))
        per_fetch = (a.queued() - q0) / 10
        proxied0, queued0, entries0 = _proxied(a), a.queued(), _entries(topo)
        flood = subprocess.Popen(["ip", "netns", "exec", topo.client, "hping3", "-q", "-S", "-p", "80",
                                  "--rand-source", "-i", "u100", "-c", str(SYNS), "10.2.0.2"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: _proxied(a) - proxied0 > 1000, what="the flood reaching the proxy")
            codes = [curl(topo, "http://10.2.0.2/hello", max_time=5).stdout for _ in range(FETCHES)]
            during = flood.poll() is None
        finally:
            if flood.poll() is None:
                flood.kill()
            flood.wait()
        queued = a.queued() - queued0
        proxied = _proxied(a) - proxied0
        entries = _entries(topo) - entries0
    ok = codes.count("200")
    print(f"proxied {proxied}, queued {queued} ({per_fetch} a fetch), fetches {ok}/{len(codes)}, "
          f"conntrack entries {entries}, flood still running after the fetches: {during}")
    assert during, "the flood ended before the fetches did: nothing was shown"
    assert ok >= 0.95 * len(codes), codes
    # the flood's SYNs never reached the worker: what was queued is the fetches' own packets
    # (twice what a quiet fetch costs: retransmissions under load; the flood is > 2,000)
    assert proxied > 2000 and queued <= 2 * per_fetch * len(codes), (proxied, queued, per_fetch)
    # ... nor conntrack's table (... entry each SYN's cookie SYN/ACK would confirm were the SYN tracked)
    assert entries <= 2 * len(codes), entries
    assert a.worker_pids() == workers
    # the worker's own count: every flow it ever made is one of the clients' (16 before, 40 during)
    a.signal(signal.SIGUSR1)
    stats = wait_for(lambda: a.events("stats"), what="the worker's stats event")
    assert stats[-1]["stats"]["flow"]["total"] <= 2 * (16 + len(codes)), stats[-1]["stats"]["flow"]
    wait_for(lambda: "running:" in a.log_text())
    assert "re-installing" not in a.log_text()


def test_ipv6_connections_go_through_the_proxy_and_are_read(topo, tmp_path, appliance):
    """The same rules for IPv6 (ip6tables' SYNPROXY, the raw chain in ip6tables' raw table)."""
    a = appliance(workers=1, extra=PROXY).start()
    assert "-j SYNPROXY" in a.iptables_save(v6=True)
    with http_servers(topo, tmp_path, [80], bind="::"):
        assert curl(topo, f"http://[{topo.server_ip6}]/hello", v6=True).stdout == "200"
        blocked = topo.ex(topo.client, "curl", "-6", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2",
                          "-H", "Host: blocked.example", f"http://[{topo.server_ip6}]/hello").stdout
        assert blocked == "000"
    out = topo.ex(topo.fw, "ip6tables-nft-save", "-c").stdout
    taken = sum(int(line[1:].split(":")[0]) for line in out.splitlines() if line.startswith("[") and "SYNPROXY" in line)
    assert taken >= 4                          # two SYNs and two cookie ACKs: both went through the proxy


@pytest.mark.parametrize("edit", [
    ["-D", "PREROUTING", "-m", "comment", "--comment", "appliance", "-j", "APPLIANCE-SYNPROXY"],
    ["-I", "APPLIANCE-SYNPROXY", "1", "-j", "ACCEPT"],
], ids=["jump-deleted", "rule-added"])
def test_the_raw_chain_is_owned_like_the_others(topo, tmp_path, appliance, edit):
    """Someone edits our raw PREROUTING state: the watch notices and re-installs it, and a
    stop removes it (never anybody else's raw rules)."""
    a = appliance(workers=1, extra=PROXY).start()
    topo.ex(topo.fw, "iptables-nft", "-w", "-t", "raw", "-A", "PREROUTING", "-p", "udp", "--dport", "9",
            "-j", "CT", "--notrack", check=True)                      # not ours: stays
    topo.ex(topo.fw, "iptables-nft", "-w", "-t", "raw", *edit, check=True)
    wait_for(lambda: "re-installing" in a.log_text(), timeout=20, what="the watch to re-install")
    want = "-A PREROUTING -m comment --comment appliance -j APPLIANCE-SYNPROXY"
    wait_for(lambda: topo.ex(topo.fw, "iptables-nft", "-t", "raw", "-S").stdout.count("-j APPLIANCE-SYNPROXY") == 1
             and "-j ACCEPT" not in topo.ex(topo.fw, "iptables-nft", "-t", "raw", "-S", "APPLIANCE-SYNPROXY").stdout,
             what="our raw chain back as installed")
    raw = topo.ex(topo.fw, "iptables-nft", "-t", "raw", "-S", "PREROUTING").stdout.splitlines()
    assert raw[1] == want, raw
    a.stop()                                  # open mode: the proxy stays (it needs no worker) ...
    assert "-j SYNPROXY" in a.iptables_save() and want in topo.ex(topo.fw, "iptables-nft-save", "-t", "raw").stdout
    a.remove()                                # ... until the chains are removed
    raw = topo.ex(topo.fw, "iptables-nft-save", "-t", "raw").stdout
    assert "APPLIANCE" not in raw and "--dport 9 -j CT --notrack" in raw, raw


def test_a_reject_resets_the_client_through_the_proxy(topo, tmp_path, appliance):
    """The worker's RST answers the client's segment with the client's own ACK number (the
    cookie's numbers): the client takes it and gives up at once (curl exit 56), it does not
    wait out its timeout (28)."""
    rules = "default_action: pass\nrules:\n  - {id: 1, action: reject, proto: tcp, http_host: blocked.example}\n"
    appliance(workers=1, extra=PROXY, rules=rules).start()
    with http_servers(topo, tmp_path, [80]):
        r = topo.ex(topo.client, "curl", "-sS", "-o", "/dev/null", "--max-time", "3",
                    "-H", "Host: blocked.example", "http://10.2.0.2/hello")
        assert r.returncode == 56 and "reset" in r.stderr, (r.returncode, r.stderr)
        assert curl(topo, "http://10.2.0.2/hello").stdout == "200"
