"""appliance/compiled.py: which build of the hot path runs, and falling back to the Python
source when the compiled twin is missing or older than it (fresh interpreters on a copy of
the package, so the choice made at import is the one under test)."""
import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import appliance
from appliance.compiled import MODULES, PURE_ENV

PKG = Path(appliance.__file__).parent


def module_dir(root, name):
    """appliance.applayer.dns -> root/appliance/applayer (twins live beside their sources)"""
    return Path(root, *name.split(".")[:-1])


def leaf(name):
    return name.rpartition(".")[2]


BUILT = all(any(module_dir(PKG.parent, m).glob(f"_c_{leaf(m)}.*.so")) for m in MODULES)
ALL_COMPILED = "compiled: " + ", ".join(sorted(leaf(m) for m in MODULES))
# An editable install (dev/setup.sh, CI) adds a meta-path finder that resolves appliance's
# submodules in its own checkout: the copy under test would find that checkout's builds.
PROBE = ("import logging, sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)];"
         "logging.basicConfig(level=logging.INFO, stream=sys.stdout, format='%(message)s');"
         "import appliance.inspector, appliance.source.nfqueue, appliance.compiled as c; print(c.describe())")


def probe(root, **env):
    env = {**{k: v for k, v in os.environ.items() if k != PURE_ENV}, **env, "PYTHONPATH": str(root)}
    cp = subprocess.run([sys.executable, "-c", PROBE], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, cp.stderr
    return cp.stdout


def copy_package(tmp_path, with_builds):
    shutil.copytree(PKG, tmp_path / "appliance",
                    ignore=shutil.ignore_patterns("__pycache__", *(() if with_builds else ("*.so",))))
    return tmp_path


def test_packet_declarations_match_slots():
    """_c_packet.pxd declares exactly Packet.__slots__: a field missing there would be an
    AttributeError in the compiled build only."""
    from appliance.packet import Packet
    pure = subprocess.run([sys.executable, "-c", "from appliance.packet import Packet; print(Packet.__slots__)"],
                          cwd=PKG.parent, env={**os.environ, PURE_ENV: "1"}, capture_output=True, text=True)
    declared = re.findall(r"cdef public object (\w+)", (PKG / "_c_packet.pxd").read_text())
    assert declared == list(ast.literal_eval(pure.stdout)) == list(Packet.__slots__)


def test_flow_declarations_match_slots():
    """_c_flow.pxd declares each slot of Flow, Queue and TcpReceiver once (ordered by size
    there, not by slot): a slot missing would be an AttributeError in the compiled build only."""
    code = "from appliance.flow import Flow, Queue, TcpReceiver as T; print([Flow.__slots__, Queue.__slots__, T.__slots__])"
    pure = subprocess.run([sys.executable, "-c", code], cwd=PKG.parent, env={**os.environ, PURE_ENV: "1"},
                          capture_output=True, text=True)
    pxd = (PKG / "_c_flow.pxd").read_text()
    for name, slots in zip(("Flow", "Queue", "TcpReceiver"), ast.literal_eval(pure.stdout)):
        block = re.search(rf"^cdef class {name}:\n((?:    .*\n)+)", pxd, re.M).group(1)
        declared = re.findall(r"cdef (?:public|readonly) (?:object|double|long long|int|bint|flag|short|unsigned short"
                              r"|unsigned char) (\w+)$", block, re.M)
        # the closed sets (flow.STATES, ...): a byte each, behind a property of the slot's name
        coded = re.findall(r"cdef unsigned char _(\w+)_code$", block, re.M)
        assert coded == (["state", "verdict", "direction", "reason"] if name == "Flow" else []), name
        declared += coded
        if name == "Flow":   # the pure Flow's key bytes: the compiled one's addresses (_addrs), or its bytes when rare
            assert "_long_key" in declared and "key" not in declared and "cdef unsigned short _addrs[4]" in block
            declared = [d for d in declared if d != "_long_key"] + ["key"]
        assert sorted(declared) == sorted(slots) and len(set(declared)) == len(declared), name


def test_missing_extension_runs_pure_python_and_says_so(tmp_path):
    out = probe(copy_package(tmp_path, with_builds=False))
    assert "appliance.packet: no compiled extension" in out
    assert out.strip().endswith("pure Python (appliance.packet runs as pure Python; not built "
                                "(No module named 'appliance._c_packet'))")


@pytest.mark.skipif(not BUILT, reason="compiled hot path not built (python3 setup.py build_ext --inplace)")
def test_stale_extension_is_not_used(tmp_path):
    """An edited source whose file time is older than the build (rsync -a, tar -x and cp -p
    keep the editor's time) still runs its source: the build is judged by content."""
    root = copy_package(tmp_path, with_builds=True)
    assert probe(root).strip() == ALL_COMPILED
    source = root / "appliance" / "decode.py"
    so = next((root / "appliance").glob("_c_decode.*.so"))
    source.write_text(source.read_text().replace('"ipraw.pkt_too_small"', '"ipraw.edited"'))
    os.utime(source, (so.stat().st_mtime - 3600,) * 2)          # edited "before" the build
    out = probe(root)
    assert "appliance.decode: compiled extension not built from" in out
    # decode runs its source; flow, after it, too (all or nothing past the first pure module)
    assert out.strip().splitlines()[-1] == "compiled: packet; pure: " + ", ".join(
        sorted(leaf(m) for m in MODULES if m != "appliance.packet"))


@pytest.mark.skipif(not BUILT, reason="compiled hot path not built (python3 setup.py build_ext --inplace)")
def test_edited_pxd_makes_the_build_stale(tmp_path):
    """The .pxd's types are part of what the extension runs (a typed field's width, say):
    an edit there alone, the source unchanged, must not keep the old build in use."""
    root = copy_package(tmp_path, with_builds=True)
    pxd = root / "appliance" / "_c_packet.pxd"      # decode and flow are compiled against it too
    pxd.write_text(pxd.read_text() + "\n# edited\n")
    out = probe(root)
    assert "appliance.packet: compiled extension not built from" in out
    assert out.strip().splitlines()[-1].startswith("pure Python")


@pytest.mark.skipif(not BUILT, reason="compiled hot path not built (python3 setup.py build_ext --inplace)")
def test_installed_extension_is_used_whatever_the_file_times(tmp_path):
    """pip (the AMI's provision.sh) writes a wheel's extensions before its .py files: each
    source is younger than its build, unchanged. The build is used."""
    root = copy_package(tmp_path, with_builds=True)
    for m in MODULES:
        where = module_dir(root, m)
        so = next(where.glob(f"_c_{leaf(m)}.*.so"))
        os.utime(where / f"{leaf(m)}.py", (so.stat().st_mtime + 10,) * 2)
    assert probe(root).strip() == ALL_COMPILED


def test_env_selects_pure_python(tmp_path):
    assert probe(PKG.parent, **{PURE_ENV: "1"}).strip() == f"pure Python ({PURE_ENV} is set)"


@pytest.mark.skipif(not BUILT, reason="compiled hot path not built (python3 setup.py build_ext --inplace)")
@pytest.mark.parametrize("entry", ["appliance.flow", "appliance.gwlb_offload", "appliance.source.gwlb",
                                   "appliance.fleet.supervisor"])
def test_import_order_does_not_leave_a_built_module_pure(entry):
    """flow imported before decode (gwlb_offload imports flow's timeouts; the GWLB worker and
    the fleet supervisor, whose forked workers inherit its modules, import it first) still
    runs compiled: the choice must not depend on which module some entry point imports first."""
    code = (f"import {entry}, appliance.decode, appliance.inspector, appliance.source.nfqueue, appliance.compiled as c;"
            " print(c.describe())")
    env = {k: v for k, v in os.environ.items() if k != PURE_ENV}
    cp = subprocess.run([sys.executable, "-c", code], cwd=PKG.parent, env=env, capture_output=True, text=True,
                        timeout=120)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.strip() == ALL_COMPILED


@pytest.mark.skipif(not BUILT, reason="compiled hot path not built (python3 setup.py build_ext --inplace)")
def test_stale_extension_is_reported_before_logging_is_set_up(tmp_path):
    """The build is chosen at import, before `appliance run` configures logging: a stale
    extension (a broken deployment: the hot path silently 3x slower) must still reach stderr."""
    root = copy_package(tmp_path, with_builds=True)
    source = root / "appliance" / "flow.py"
    source.write_text(source.read_text() + "\n# edited\n")
    env = {**{k: v for k, v in os.environ.items() if k != PURE_ENV}, "PYTHONPATH": str(root)}
    cp = subprocess.run([sys.executable, "-c", "import appliance.inspector"], cwd=root, env=env,
                        capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, cp.stderr
    assert "appliance.flow: compiled extension not built from" in cp.stderr
