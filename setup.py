"""Builds the compiled hot path (appliance/compiled.py says what and why); everything
else is in pyproject.toml. Without Cython, or when a module fails to compile, the
package installs as pure Python and says so at run time."""
import hashlib
import os
import shutil

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# (compiled twin, the pure-Python source it is built from); the order of appliance.compiled.MODULES
HOT_PATH = [
    ("appliance._c_packet", "appliance/packet.py"),
    ("appliance._c_decode", "appliance/decode.py"),
    ("appliance._c_checksum", "appliance/checksum.py"),     # replay: every client segment (flow's lookup)
    ("appliance._c_flow", "appliance/flow.py"),
    # round 2: the rest of the per-packet path (docs/performance-passes.md, "Round 2: compiled hot path")
    ("appliance._c_stream", "appliance/stream.py"),
    ("appliance.source._c_pcap", "appliance/source/pcap.py"),
    ("appliance.output._c_events", "appliance/output/events.py"),
    ("appliance.detect._c_index", "appliance/detect/index.py"),
    ("appliance.applayer._c_dns", "appliance/applayer/dns.py"),
    ("appliance.applayer._c_tls", "appliance/applayer/tls.py"),
    ("appliance.applayer._c_http", "appliance/applayer/http.py"),
    ("appliance.applayer._c_server", "appliance/applayer/server.py"),
    ("appliance.applayer._c_state", "appliance/applayer/state.py"),
    ("appliance.detect._c_engine", "appliance/detect/engine.py"),
    ("appliance._c_inspector", "appliance/inspector.py"),
    # the live worker's netlink read and verdicts (docs/performance.md, "Verdict I/O")
    ("appliance.source._c_nfqueue", "appliance/source/nfqueue.py"),
]


def sha256(path):
    """appliance.compiled.source_hash: the source, then every twin's .pxd of the package."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    for d, dirs, files in os.walk("appliance"):
        dirs.sort()
        for name in sorted(files):
            if name.startswith("_c_") and name.endswith(".pxd"):
                with open(os.path.join(d, name), "rb") as f:
                    h.update(b"\0" + name.encode() + b"\0" + f.read())
    return h.hexdigest()


# hashed before Cython reads them: an edit during the build leaves a record that does not
# match the source (pure Python at import, the safe side), never one that matches old code
SOURCE_HASHES = {name: sha256(source) for name, source in HOT_PATH}

try:
    from Cython.Build import cythonize
except ImportError:
    print("setup.py: Cython not installed; the hot path stays pure Python")
    ext_modules = []
else:
    ext_modules = cythonize(
        [Extension(name, [source], optional=True,
                   # a C function the build cannot see must fail its module, not return an int (flow.py's
                   # hash): the module is then left unbuilt (optional: pure Python, `--version` says so;
                   # CI's compiled-equivalence test fails)
                   extra_compile_args=["-Werror=implicit-function-declaration"])
         for name, source in HOT_PATH],
        # force: always from the source as it is; cythonize's own up-to-date test is by file
        # time, which an rsync -a'd or untarred edit can make older than the last generated C
        language_level=3, quiet=True, force=True,
        # the source is the reference: annotations must not change what a value may be
        # (`ts: float` would turn an int into a C double), so only the .pxd files type
        compiler_directives={"annotation_typing": False, "binding": True},
    )


RECORD = ".sha256"      # appliance.compiled.SOURCE_HASH_SUFFIX


class build_ext_recorded(build_ext):
    """Writes beside each built extension the SHA-256 of the source it was compiled from
    (appliance.compiled uses an extension only while its source still hashes the same)."""

    def build_extension(self, ext):
        super().build_extension(ext)            # an optional one that fails raises: no record
        with open(self.get_ext_fullpath(ext.name) + RECORD, "w") as f:
            f.write(SOURCE_HASHES[ext.name] + "\n")

    def copy_extensions_to_source(self):
        """--inplace (and pip install -e) builds under build/ and copies the extension into
        the package: its record goes with it, or the copy would run as pure Python."""
        super().copy_extensions_to_source()
        build_py = self.get_finalized_command("build_py")
        for ext in self.extensions:
            inplace, regular = self._get_inplace_equivalent(build_py, ext)
            if os.path.exists(regular + RECORD):
                shutil.copyfile(regular + RECORD, inplace + RECORD)


setup(ext_modules=ext_modules, cmdclass={"build_ext": build_ext_recorded})
