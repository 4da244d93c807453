"""Finding 3 (rvflowcore): test_flow_fields' flow_id check runs in whichever build is here;
the compiled Flow stores start as a C double, so with `float()` removed from Flow.id
(flow.py, Flow.id) it still passes wherever the twin is built (the fast suite, CI). The
pure module is the one that can hold an int start: ask it, in its own process."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CODE = """
import struct
from appliance.decode import decode_l3
from appliance.flow import FlowTable
ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 40, 0, 0x4000, 64, 6, 0, bytes([10,0,0,1]), bytes([10,0,0,2]))
ip += struct.pack('!HHIIBBHHH', 1024, 443, 7, 0, 0x50, 0x02, 65535, 0, 0)
print(FlowTable().lookup(decode_l3(ip, %r))[0].id)
"""


def flow_id(ts, pure):
    env = {**os.environ, "PYTHONPATH": REPO}
    env.pop("APPLIANCE_PURE_PYTHON", None)
    if pure:
        env["APPLIANCE_PURE_PYTHON"] = "1"
    cp = subprocess.run([sys.executable, "-c", CODE % ts], cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=60)
    assert cp.returncode == 0, cp.stderr
    return int(cp.stdout)


def test_pure_flow_id_of_an_int_start_is_the_float_one():
    assert flow_id(5, pure=True) == flow_id(5.0, pure=True) == flow_id(5.0, pure=False)
