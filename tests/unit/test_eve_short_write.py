"""A disk that fills in the middle of an EVE line, with two workers appending to one file: the
cut line is taken back out, so the other worker's next line is whole and every line in the file
is JSON (found by review: the fragment stayed, the other worker's line was glued to it and
counted written). RLIMIT_FSIZE stands for the full disk, in a child process of its own."""
import json
import os
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHILD = textwrap.dedent("""
    import json, os, resource, signal, sys
    from appliance.output.eve import EveWriter
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)              # a write past the limit: EFBIG, not a signal
    path = sys.argv[1]
    a, b = EveWriter(path), EveWriter(path)                    # two workers, one file
    a.write({"event_type": "flow", "n": 1})
    resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(path) + 20, resource.RLIM_INFINITY))
    a.write({"event_type": "alert", "n": 2, "pad": "x" * 100})   # 20 bytes fit: the disk fills mid-line
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    b.write({"event_type": "alert", "n": 3})
    a.write({"event_type": "flow", "n": 4})
    print(json.dumps({"a": [a.count, a.lost], "b": [b.count, b.lost]}))
""")


def test_a_line_cut_by_a_full_disk_is_taken_back(tmp_path):
    path = tmp_path / "eve.json"
    cp = subprocess.run([sys.executable, "-c", CHILD, str(path)], cwd=REPO, capture_output=True, text=True,
                        timeout=60, env={**os.environ, "PYTHONPATH": REPO})
    assert cp.returncode == 0, cp.stderr
    assert json.loads(cp.stdout) == {"a": [2, 1], "b": [1, 0]}
    lines = path.read_bytes().splitlines()
    assert [json.loads(x)["n"] for x in lines] == [1, 3, 4]    # whole lines only, the cut one gone
    assert "cannot write" in cp.stderr
    assert "writing again" not in cp.stderr                    # 2 writes in a row are no recovery yet
