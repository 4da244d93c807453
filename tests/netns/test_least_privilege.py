"""The datapath as ami/appliance.service runs it: not root, a user with the ambient
capabilities CAP_NET_ADMIN and CAP_NET_RAW only, and no writable+executable memory
(MemoryDenyWriteExecute, here through the kernel's PR_SET_MDWE, which systemd uses too and
which is inherited by the workers). What this cannot cover without systemd as PID 1: the
seccomp filter (SystemCallFilter=) and the mount sandbox; the units' scores are read in
tests/aws/test_ami.py."""
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

from datapath import appliances, curl, http_servers, topology, wait_for

pytestmark = pytest.mark.netns

RULES = """\
default_action: pass
rules:
  - {id: 1001, msg: "block tcp 8081", action: drop, proto: tcp, dst_port: 8081}
  - {id: 1002, msg: "reject tcp 8082", action: reject, proto: tcp, dst_port: 8082}
"""
# PR_SET_MDWE = 65, PR_MDWE_REFUSE_EXEC_GAIN = 1 (Linux >= 6.3)
MDWE = ("import ctypes, os, sys; libc = ctypes.CDLL(None, use_errno=True); "
        "sys.exit('PR_SET_MDWE: errno %d' % ctypes.get_errno()) if libc.prctl(65, 1, 0, 0, 0) else "
        "os.execv(sys.argv[1], sys.argv[1:])")
SETPRIV = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
           "--inh-caps=-all,+net_admin,+net_raw", "--ambient-caps=-all,+net_admin,+net_raw",
           "--bounding-set=-all,+net_admin,+net_raw", "--no-new-privs"]


@pytest.fixture(scope="module")
def topo(tmp_path_factory):
    bench = topology(prefix="i12p")
    t = next(bench)
    try:
        with http_servers(t, tmp_path_factory.mktemp("i12pwww"), (8080, 8081, 8082)):
            yield t
    finally:
        bench.close()


@pytest.fixture
def appliance(topo):
    # pytest's tmp_path (/tmp/pytest-of-root, 0700) is not the unprivileged user's to enter
    work = pathlib.Path(tempfile.mkdtemp(prefix="i12p-"))
    os.chmod(work, 0o777)
    try:
        yield from appliances(topo, work, RULES)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _as_unit_user(a, caps=True, mdwe=True):
    """`a.cmd()` run as nobody. A Python under /root (pyenv) is reached through a private
    mount namespace where /root is a 0755 directory holding only that Python: nothing of it is
    visible outside the command."""
    cmd = a.cmd()
    ns, rest = cmd[:4], cmd[4:]                # ip netns exec NS | python -m appliance.run ...
    priv = SETPRIV if caps else [x for x in SETPRIV if "caps" not in x and "bounding" not in x]
    wrap = [sys.executable, "-c", MDWE] if mdwe else []
    mounts = []
    if sys.executable.startswith("/root/"):
        top = "/root/" + sys.executable.split("/")[2]              # /root/.pyenv
        shell = pathlib.Path(a.tmp) / "root"
        (shell / os.path.basename(top)).mkdir(parents=True, exist_ok=True)
        os.chmod(shell, 0o755)
        script = (f"mount --bind {top} {shell}/{os.path.basename(top)} && mount --rbind {shell} /root && "
                  'exec "$@"')
        mounts = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh"]
    a.cmd = lambda *extra: ns + mounts + priv + wrap + rest + list(extra)
    return a


def test_datapath_runs_as_a_user_with_two_ambient_capabilities(topo, appliance):
    t = topo
    if subprocess.run(["setpriv", "--help"], capture_output=True).returncode != 0:
        pytest.skip("setpriv (util-linux) is missing")
    a = _as_unit_user(appliance(workers=2)).start()
    pids = [a.proc.pid, *a.worker_pids()]
    for pid in pids[1:]:                       # the workers, as the supervisor: not root, MDWE on
        status = open(f"/proc/{pid}/status").read()
        assert "\nUid:\t65534\t65534\t65534\t65534" in status, status
        assert int(status.split("CapEff:")[1].split()[0], 16) == (1 << 12) | (1 << 13)
    assert curl(t, f"http://{t.server_ip}:8080/hello").stdout == "200"
    assert curl(t, f"http://{t.server_ip}:8081/hello", max_time=2).returncode == 28
    r = curl(t, f"http://{t.server_ip}:8082/hello", max_time=4)
    assert r.returncode == 7, r                 # refused at once: the RST through a raw socket
    wait_for(lambda: len(a.events("alert")) >= 2, what="alerts in the EVE file")
    assert os.stat(a.eve).st_uid == 65534
    assert a.stop() == 0


def test_without_the_capabilities_it_says_which_are_missing(topo, appliance):
    a = _as_unit_user(appliance(workers=1), caps=False, mdwe=False).launch()
    assert a.proc.wait(60) == 1
    assert "needs CAP_NET_ADMIN and CAP_NET_RAW" in a.log_text(), a.log_text()
