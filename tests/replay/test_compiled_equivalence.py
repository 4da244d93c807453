"""The compiled hot path (appliance/compiled.py) against its pure-Python reference: the same
captures replayed both ways must give byte-identical EVE, the same exit code and the same
output. Whole shared corpus (when present), a generated mixed capture, and damaged frames
(cut and bit-flipped copies of real ones: compiled code must not crash on them either)."""
import importlib.util
import os
import random
import subprocess
import sys

import dpkt
import pytest

from replaykit import CORPUS, REPO, Capture
from appliance.compiled import MODULES, PURE_ENV, twin_name

sys.path.insert(0, str(REPO))
from bench import gen_pcap  # noqa: E402
from bench.rulegen import write_rules  # noqa: E402

CORPUS_FILES = sorted(str(p) for p in CORPUS.rglob("*") if p.name.endswith((".pcap", ".pcapng", ".pcap.gz"))) \
    if CORPUS.is_dir() else []


@pytest.fixture(scope="module", autouse=True)
def built():
    """The compiled twins must exist, or there is nothing to compare (CI builds them)."""
    absent = [m for m in MODULES if importlib.util.find_spec(twin_name(m)) is None]
    if absent:
        msg = f"compiled hot path not built ({', '.join(absent)}): python3 setup.py build_ext --inplace"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


def replay_both(tmp_path, paths, *args):
    """(pure, compiled) as (exit code, EVE bytes, stdout, stderr) of `appliance replay`."""
    out = []
    for pure in (True, False):
        env = {k: v for k, v in os.environ.items() if k != PURE_ENV}
        if pure:
            env[PURE_ENV] = "1"
        eve = tmp_path / f"eve-{'pure' if pure else 'compiled'}.json"
        cp = subprocess.run([sys.executable, "-m", "appliance", "replay", *map(str, paths), "--eve", str(eve), *args],
                            cwd=REPO, env=env, capture_output=True, timeout=900)
        out.append((cp.returncode, eve.read_bytes(), cp.stdout, cp.stderr))
    return out


def assert_identical(pure, compiled):
    assert pure[0] == compiled[0], (pure[3][-2000:], compiled[3][-2000:])
    assert pure[1] == compiled[1]          # EVE, byte for byte
    assert pure[2] == compiled[2]
    assert pure[3] == compiled[3]


def test_which_modules_run_compiled():
    code = "import appliance.inspector, appliance.source.nfqueue, appliance.compiled as c; print(c.describe())"
    env = {k: v for k, v in os.environ.items() if k != PURE_ENV}
    compiled = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    pure = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**env, PURE_ENV: "1"},
                          capture_output=True, text=True)
    assert compiled.stdout.strip() == ("compiled: checksum, decode, dns, engine, events, flow, http, index, inspector, nfqueue, packet, "
                                      "pcap, server, state, stream, tls")
    assert pure.stdout.strip() == f"pure Python ({PURE_ENV} is set)"


@pytest.mark.corpus
@pytest.mark.skipif(not CORPUS_FILES, reason="shared corpus absent")
def test_whole_corpus_shipped_rules(tmp_path):
    pure, compiled = replay_both(tmp_path, CORPUS_FILES, "--rules", REPO / "rules")
    assert pure[1].count(b"\n") > 500
    assert_identical(pure, compiled)


@pytest.mark.corpus
@pytest.mark.skipif(not CORPUS_FILES, reason="shared corpus absent")
def test_whole_corpus_thousand_rules_small_table(tmp_path):
    rules = write_rules(str(tmp_path), 1000)
    pure, compiled = replay_both(tmp_path, CORPUS_FILES, "--rules", rules, "--max-flows", "500")
    assert_identical(pure, compiled)


def test_generated_mixed_capture(tmp_path):
    cap = str(tmp_path / "mixed.pcap")
    gen_pcap.generate(cap, 20_000, seed=7)
    rules = write_rules(str(tmp_path), 1000)
    pure, compiled = replay_both(tmp_path, [cap], "--rules", rules, "--max-flows", "300")
    assert pure[1].count(b'"event_type":"alert"') > 0
    assert_identical(pure, compiled)


def _frames(path):
    with open(path, "rb") as f:
        r = dpkt.pcap.Reader(f)
        return r.datalink(), [buf for _ts, buf in r]


def test_damaged_frames(tmp_path):
    """Cut and bit-flipped copies of real frames (every link type the corpus has): both
    builds survive them and say the same about each."""
    rng = random.Random(15)
    sources = [p for p in CORPUS_FILES if p.endswith(".pcap")][:40]
    if not sources:                                  # no corpus: damage a generated capture
        sources = [str(tmp_path / "mixed.pcap")]
        gen_pcap.generate(sources[0], 2_000, seed=3)
    paths = []
    for i, src in enumerate(sources):
        try:
            linktype, frames = _frames(src)
        except (ValueError, dpkt.dpkt.NeedData):
            continue
        cap = Capture(linktype=linktype)
        for buf in frames[:300]:
            for _ in range(3):
                b = bytearray(buf)
                if b and rng.random() < 0.5:
                    del b[rng.randrange(len(b)):]                 # cut anywhere
                for _ in range(rng.randrange(1, 4)):
                    if b:
                        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
                cap.add(bytes(b))
        paths.append(cap.write(tmp_path / f"damaged-{i}.pcap"))
    pure, compiled = replay_both(tmp_path, paths, "--rules", REPO / "rules")
    assert pure[0] in (0, 1) and b"Traceback" not in pure[3]
    assert_identical(pure, compiled)


def test_generated_hostile_frames(tmp_path):
    """Boundary lengths, offsets, extension-header chains and VLAN stacks the corpus does not
    reach (hostile_frames.py): the same decoded fields, flow states and evictions both ways."""
    script = str(REPO / "tests" / "replay" / "hostile_frames.py")
    out = []
    for pure in (True, False):
        env = {k: v for k, v in os.environ.items() if k != PURE_ENV}
        if pure:
            env[PURE_ENV] = "1"
        cp = subprocess.run([sys.executable, script, "15", "30000"], cwd=REPO,
                            env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=600)
        assert cp.returncode == 0, cp.stderr
        out.append(cp.stdout.split())
    assert out[1][0] == "compiled:"
    assert out[0][-1] == out[1][-1]


def test_detector_masks_past_64_rules(tmp_path):
    """The Detector's rule masks are Python ints of any width, compiled too: a C-typed
    expression in the twin (`1 << len(rules)`, a C shift) wrapped from 64 rules on and made
    app-field rules match every flow."""
    rules = write_rules(str(tmp_path), 300)
    code = ("import sys; from appliance.detect.loader import load_rules; from appliance.detect.engine import Detector;"
            "from appliance import compiled; d = Detector(load_rules(sys.argv[1]));"
            "print(compiled.describe().split(':')[0]);"
            # (dir, not vars: compiled, the Detector is an extension type whose fields are not in a dict)
            "print(sorted((k, getattr(d, k)) for k in dir(d) if type(getattr(d, k)) is int))")
    out = []
    for pure in (True, False):
        env = {k: v for k, v in os.environ.items() if k != PURE_ENV}
        if pure:
            env[PURE_ENV] = "1"
        cp = subprocess.run([sys.executable, "-c", code, rules], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
        assert cp.returncode == 0, cp.stderr
        out.append(cp.stdout.splitlines())
    assert [out[0][0], out[1][0]] == ["pure Python (APPLIANCE_PURE_PYTHON is set)", "compiled"]
    assert out[0][1] == out[1][1]
