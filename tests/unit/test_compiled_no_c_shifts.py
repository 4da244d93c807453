"""rvcompiled: a guard for the class of the (1 << len(rules)) bug. The untyped twins must do
no integer arithmetic in C that Python would do on unbounded ints: Cython types len(),
literals and range/enumerate counters over len() as C integers, and a C shift (or power)
wraps silently. This reads the C that `setup.py build_ext --inplace` left beside each source
(appliance/**/*.c, gitignored) and lists every shift whose operand is a C value, with the .py
line. Fails on 9436ca3^ (engine.py:136 `every = ((1 << __pyx_t_4) - 1)`)."""
import re
from pathlib import Path

import pytest

import appliance
from appliance.compiled import MODULES

PKG = Path(appliance.__file__).parent
SOURCE = re.compile(r'^\s*/\* "([^"]+)":(\d+)')
# a shift with a C temp/local on either side (Python-level shifts are PyNumber_Lshift /
# __Pyx_PyInt_LshiftObjC calls); Cython's utility code shifts `val`, `chunk_size`, sizeof()
C_SHIFT = re.compile(r"\(?-?\d+L?\)? ?(<<|>>) ?\(?__pyx_[tv]_\w+|__pyx_[tv]_\w+\)? ?(<<|>>) |__Pyx_pow_\w+\(")


def generated(module):
    path = PKG.parent / (module.replace(".", "/") + ".c")
    return path if path.exists() else None


@pytest.mark.parametrize("module", MODULES)
def test_no_c_integer_shift_in_the_twin(module):
    c = generated(module)
    if c is None:
        pytest.skip(f"{module}: no generated C (python3 setup.py build_ext --inplace)")
    where, found = None, []
    for line in c.read_text(errors="replace").splitlines():
        m = SOURCE.match(line)
        if m:
            where = f"{m.group(1)}:{m.group(2)}"
        elif line.startswith("  ") and C_SHIFT.search(line) and "sizeof" not in line:
            found.append(f"{where}: {line.strip()}")
    assert found == []
