"""`appliance lab up|down|status`: real namespaces, real services, real clients, plain kernel forwarding.

Runs the lab CLI as a user would (`python3 -m appliance.lab.cli`), each test with its own lab name.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.lab import Lab
from appliance.lab.topology import alive

pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates network namespaces")]
ROOT = Path(__file__).resolve().parents[2]


def lab_cli(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "appliance.lab.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, f"lab {' '.join(args)}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}"
    return proc


def in_ns(ns, *cmd, input=None):
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True,
                          input=input, timeout=30)


def namespaces():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def root_links():
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


@pytest.fixture
def lab(request):
    """A unique lab name; whatever the test leaves behind is removed."""
    name = f"t{os.getpid() % 100000}-{request.node.name[5:13].strip('_').replace('_', '-')}"
    lab = Lab(name)
    yield lab
    lab_cli("down", "--name", lab.name, check=False)
    assert not set(lab.namespaces) & namespaces(), "teardown left namespaces behind"


def assert_gone(lab, pids=()):
    assert not set(lab.namespaces) & namespaces()
    assert not lab.state_path.exists()
    assert not lab.workdir.exists()
    for pid in pids:
        assert not alive(pid), f"pid {pid} outlived the lab"


def test_up_serves_through_the_appliance_namespace(lab):
    links_before = root_links()
    out = lab_cli("up", "--name", lab.name).stdout
    assert f"lab {lab.name} up" in out
    assert set(lab.namespaces) <= namespaces()
    assert root_links() == links_before, "lab up changed the root namespace's interfaces"

    # The appliance namespace has ENI-like names, forwarding on.
    fw_links = in_ns(lab.fw, "ip", "-o", "link", "show").stdout
    assert ": eth0@" in fw_links and ": eth1@" in fw_links
    assert in_ns(lab.fw, "sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "1"

    # Real clients in the client namespace reach the server's services via 10.10.1.1 -> 10.10.2.1.
    http = in_ns(lab.client, "curl", "-sS", "-m", "5", "-H", "Host: www.example.com", "http://10.10.2.20/")
    assert http.returncode == 0 and "host=www.example.com" in http.stdout, http.stderr
    https = in_ns(lab.client, "curl", "-sS", "-m", "5", "-k", "--resolve", "blocked.example.net:443:10.10.2.20",
                  "https://blocked.example.net/")
    assert https.returncode == 0 and "host=blocked.example.net" in https.stdout, https.stderr
    v6 = in_ns(lab.client, "curl", "-sS", "-m", "5", "-g", "http://[fd00:10:2::20]/")
    assert v6.returncode == 0 and "host=[fd00:10:2::20]" in v6.stdout, v6.stderr
    dig = in_ns(lab.client, "dig", "@10.10.2.20", "+short", "+time=3", "+tries=1", "www.example.com", "A")
    assert dig.stdout.split() == ["10.10.2.20"], dig.stdout + dig.stderr
    dig_tcp = in_ns(lab.client, "dig", "@fd00:10:2::20", "+tcp", "+short", "+time=3", "+tries=1", "bad.example", "AAAA")
    assert dig_tcp.stdout.split() == ["fd00:10:2::20"], dig_tcp.stdout + dig_tcp.stderr
    echo = in_ns(lab.client, "nc", "-N", "-w", "5", "10.10.2.20", "7", input="lab-echo\n")
    assert echo.stdout == "lab-echo\n", echo.stderr
    telnet = in_ns(lab.client, "nc", "-w", "5", "10.10.2.20", "23", input="")
    assert "lab-telnet" in telnet.stdout, telnet.stderr
    ping = in_ns(lab.client, "ping", "-6", "-c", "1", "-W", "5", "fd00:10:2::20")
    assert ping.returncode == 0, ping.stdout

    # The packets crossed the appliance namespace: its outside interface counted them.
    stats = json.loads(in_ns(lab.fw, "ip", "-j", "-s", "link", "show", "eth0").stdout)[0]
    assert stats["stats64"]["rx"]["packets"] > 10

    st = lab_cli("status", "--name", lab.name).stdout
    assert "up (phase: ready)" in st and "DEAD" not in st


def test_up_twice_is_idempotent(lab):
    lab_cli("up", "--name", lab.name)
    pids = json.loads(lab.state_path.read_text())["pids"]
    again = lab_cli("up", "--name", lab.name)
    assert "already up" in again.stdout
    assert json.loads(lab.state_path.read_text())["pids"] == pids
    assert all(alive(p) for p in pids.values())


def test_down_removes_namespaces_processes_and_files(lab):
    lab_cli("up", "--name", lab.name)
    pids = list(json.loads(lab.state_path.read_text())["pids"].values())
    assert pids and all(alive(p) for p in pids)
    out = lab_cli("down", "--name", lab.name).stdout
    assert "removed" in out
    assert_gone(lab, pids)
    assert "nothing was up" in lab_cli("down", "--name", lab.name).stdout
    assert lab_cli("status", "--name", lab.name, check=False).returncode == 3


def test_partly_built_lab_is_a_clear_error(lab):
    subprocess.run(["ip", "netns", "add", lab.fw], check=True)
    proc = lab_cli("up", "--name", lab.name, check=False)
    assert proc.returncode == 1
    assert "partly up" in proc.stderr and f"down --name {lab.name}" in proc.stderr
    lab_cli("down", "--name", lab.name)
    assert_gone(lab)


def test_bad_name_is_rejected_before_anything_is_made():
    proc = lab_cli("up", "--name", "Bad Name", check=False)
    assert proc.returncode == 1 and "lab name 'Bad Name'" in proc.stderr
    assert not any("Bad" in ns for ns in namespaces())


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_up_leaves_nothing_behind(lab, sig):
    """Signal `up` while it builds; it must remove what it made. `up` is fast, so a run that
    finishes before the signal lands is retried (those runs are taken down normally)."""
    for _ in range(10):
        proc = subprocess.Popen([sys.executable, "-m", "appliance.lab.cli", "up", "--name", lab.name],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while proc.poll() is None:
            try:
                phase = json.loads(lab.state_path.read_text()).get("phase")
            except (FileNotFoundError, ValueError):
                phase = None
            if phase in ("topology", "services"):
                proc.send_signal(sig)
                break
            time.sleep(0.002)
        out, err = proc.communicate(timeout=60)
        if proc.returncode == 0:                       # finished first: not an interruption
            lab_cli("down", "--name", lab.name)
            continue
        assert proc.returncode == 128 + sig, out + err
        assert "cleaned up" in err
        assert_gone(lab)
        return
    pytest.fail("could not signal `lab up` while it was building in 10 tries")
