"""Policies enforced by the real appliance (`appliance run`) in the lab, checked with real clients."""
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates network namespaces")]

from appliance.lab import Lab, down, up                                        # noqa: E402
from appliance.lab.demo import start_appliance, stop_appliance, write_config  # noqa: E402
from appliance.lab.topology import alive                                      # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def namespaces():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


@pytest.fixture
def lab(request):
    lab = Lab(f"p{os.getpid() % 100000}-{request.node.name[5:12].strip('_').replace('_', '-')}")
    up(lab)
    yield lab
    down(lab)


@pytest.fixture
def appliance(lab, tmp_path):
    """Start `appliance run` in the lab's appliance namespace with the rules a test writes."""
    procs = []

    def start(rules_yaml: str):
        rules = tmp_path / "rules.yaml"
        rules.write_text(rules_yaml)
        config, eve = write_config(lab, rules)
        procs.append(start_appliance(lab, config))
        return eve

    yield start
    for proc in procs:
        assert stop_appliance(lab, proc) == "exit 0", "appliance did not stop cleanly on SIGTERM"


def client(lab, *cmd, input=None):
    return subprocess.run(["ip", "netns", "exec", lab.client, *cmd], capture_output=True, text=True,
                          input=input, timeout=30)


def curl_https(lab, name):
    return client(lab, "curl", "-sS", "-k", "-m", "4", "--resolve", f"{name}:443:10.10.2.20", f"https://{name}/")


def dig(lab, name, *opts):
    return client(lab, "dig", "@10.10.2.20", "+short", "+time=3", "+tries=1", *opts, name, "A")


SNI_ALLOWLIST = """
default_action: drop
rules:
  - id: 10
    msg: allowed server names
    action: pass
    proto: tcp
    dst_port: 443
    tls_sni: [www.example.com, "*.good.example"]
"""

DNS_BLOCKLIST = """
default_action: pass
rules:
  - id: 20
    msg: blocked name
    action: drop
    dns_query: [bad.example, "*.bad.example"]
    log: true
"""


def test_sni_allowlist_with_drop_by_default(lab, appliance):
    appliance(SNI_ALLOWLIST)
    allowed = curl_https(lab, "www.example.com")
    assert allowed.returncode == 0 and "host=www.example.com" in allowed.stdout, allowed.stderr
    sub = curl_https(lab, "api.good.example")
    assert sub.returncode == 0 and "host=api.good.example" in sub.stdout, sub.stderr
    for name in ("blocked.example.net", "www.example.com.evil.example", "good.example"):
        denied = curl_https(lab, name)
        assert denied.returncode != 0 and "host=" not in denied.stdout, f"{name}: {denied.stdout}"
    # Nothing but the allow-listed TLS gets through: plain TCP and ping are dropped by default.
    echo = client(lab, "nc", "-N", "-w", "3", "10.10.2.20", "7", input="lab-echo\n")
    assert "lab-echo" not in echo.stdout
    assert client(lab, "ping", "-c", "1", "-W", "2", "10.10.2.20").returncode != 0


def test_dns_query_blocking_udp(lab, appliance):
    eve = appliance(DNS_BLOCKLIST)
    assert dig(lab, "www.example.com").stdout.split() == ["10.10.2.20"]
    blocked = dig(lab, "bad.example")
    assert blocked.returncode == 9 and blocked.stdout.strip().startswith(";;"), blocked.stdout  # no reply
    assert dig(lab, "x.bad.example").returncode == 9
    assert dig(lab, "notbad.example").stdout.split() == ["10.10.2.20"]
    assert eve.exists()


def test_dns_query_blocking_tcp(lab, appliance):
    appliance(DNS_BLOCKLIST)
    assert dig(lab, "www.example.com", "+tcp").stdout.split() == ["10.10.2.20"]
    blocked = dig(lab, "bad.example", "+tcp")
    answers = [line for line in blocked.stdout.splitlines() if not line.startswith(";;")]
    assert blocked.returncode != 0 and not answers, blocked.stdout


def test_demo_passes_and_cleans_up():
    name = f"d{os.getpid() % 100000}"
    proc = subprocess.run([sys.executable, "-m", "appliance.lab.cli", "demo", "--name", name], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    lab = Lab(name)
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "12/12 probes as expected" in proc.stdout
        assert "MISMATCH" not in proc.stdout
        # the control server's view of the same run, through `appliance status`
        assert "appliance: ready" in proc.stdout, proc.stdout
        assert re.search(r"^\s+1000001\s+[1-9]\d*\s+", proc.stdout, re.M), proc.stdout     # a top rule
        assert not set(lab.namespaces) & namespaces()
        assert not lab.state_path.exists()
    finally:
        down(lab)


def test_demo_interrupted_cleans_up():
    name = f"i{os.getpid() % 100000}"
    lab = Lab(name)
    proc = subprocess.Popen([sys.executable, "-u", "-m", "appliance.lab.cli", "demo", "--name", name], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        pids = []
        for line in proc.stdout:                      # the first probe result: the appliance is running
            if line.startswith("  HTTP"):
                state = lab.read_state() or {}
                pids = [*state.get("pids", {}).values(), state.get("appliance_pid")]
                proc.send_signal(signal.SIGINT)
                break
        out, err = proc.communicate(timeout=120)
        assert pids, "demo never reported a probe:\n" + out + err
        assert proc.returncode == 128 + signal.SIGINT, out + err
        assert "cleaned up" in err
        assert not set(lab.namespaces) & namespaces()
        assert not any(alive(p) for p in pids), "the appliance or a service outlived the demo"
    finally:
        if proc.poll() is None:
            proc.kill()
        down(lab)


HEADER_RULE_AFTER_APP_RULE = """
default_action: pass
rules:
  - {id: 30, msg: blocked name, action: drop, dns_query: [bad.example]}
  - {id: 31, msg: telnet refused, action: reject, proto: tcp, dst_port: 23, log: true}
"""


def test_header_rule_after_an_app_rule_still_decides_a_server_first_flow(lab, appliance):
    """The telnet server speaks first and the client never sends a byte: the dns_query rule above
    can never match, so the reject rule must still refuse the connection."""
    appliance(HEADER_RULE_AFTER_APP_RULE)
    telnet = client(lab, "nc", "-v", "-w", "4", "10.10.2.20", "23", input="")
    assert "lab-telnet" not in telnet.stdout, "rule 31 matched this flow but the connection went through"
