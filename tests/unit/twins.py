"""The pure-Python reference run beside the compiled twins in one test: a function of a test
module computed again in a process with APPLIANCE_PURE_PYTHON set."""
import json
import os
import subprocess
import sys
from pathlib import Path

from appliance.compiled import PURE_ENV

ROOT = Path(__file__).resolve().parents[2]


def in_pure_python(module, name, *args):
    """`module.name(*args)` in a pure-Python process, as JSON gives it back (paths and ints as arguments)."""
    call = ", ".join(f"Path({str(a)!r})" if isinstance(a, Path) else repr(a) for a in args)
    code = ("import json, sys; sys.path[:0] = ['.', 'tests/unit']; from pathlib import Path; "
            f"from {module} import {name}; print(json.dumps({name}({call})))")
    pure = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, PURE_ENV: "1"}, check=True)
    return json.loads(pure.stdout.strip().splitlines()[-1])
