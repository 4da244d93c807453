"""Finding 1 (rvflowcore): the compiled twin's functions that take the Flow typed (_c_flow.pxd:
`Flow flow`) accept None, as Cython does for any extension-type argument, and then read C
struct members of the None object: `_account(None, ...)` is a SIGSEGV (the worker dies, not
an exception), `confirmed(None)` silently returns False. The pure module (the reference)
raises AttributeError for both. Each call runs in its own process: a crash is a signal."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CALLS = {
    "confirmed": "flow.confirmed(None)",
    "_account": "flow._account(None, decode_l3(b''), False, 1)",
    "_file": "flow._file(({}, {}, {}), None)",
    "_tcp_state": "flow._tcp_state(None, decode_l3(b''), True)",
    "_reused": "flow._reused(None, decode_l3(b''), 1)",
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_none_for_a_flow_is_an_exception_in_both_builds(name):
    code = ("from appliance import flow\nfrom appliance.decode import decode_l3\n"
            f"try:\n    r = {CALLS[name]}\nexcept (AttributeError, TypeError) as e:\n    print('raised', type(e).__name__)\n"
            "else:\n    print('returned', repr(r))\n")
    cp = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                        env={**os.environ, "PYTHONPATH": REPO})
    assert cp.returncode == 0, f"{name}(None): died with {cp.returncode} (signal {-cp.returncode})"
    assert cp.stdout.startswith("raised"), f"{name}(None) {cp.stdout.strip()}: the pure module raises"
