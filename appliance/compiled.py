"""The compiled hot path: Cython builds of the per-packet modules, chosen at import.

The profile (docs/performance-passes.md, "Round 2: compiled hot path") names the modules whose code every packet
runs; `setup.py` compiles each of them from its own, unchanged source into a sibling
extension module `_c_<name>` (the typed declarations live in `_c_<name>.pxd`). The
Python source stays the reference: a module ends with `use_compiled(globals())`, which
swaps its names for the compiled module's when one is built, and does nothing when
APPLIANCE_PURE_PYTHON=1 is set, or the extension is missing or was not compiled from the
source as it is now (a logged note, then pure Python: a clean clone without a compiler
still runs, only slower, and an edited module never runs its old compiled code).

"As it is now" is by content: setup.py writes the SHA-256 of the source it compiled beside
each extension (`<extension>.sha256`). File times cannot tell: pip writes a wheel's
extensions before its .py files (every installed source looks newer than its build), and
rsync -a, tar -x or cp -p give an edited source the editor's older time.
"""
import hashlib
import importlib
import logging
import os

PURE_ENV = "APPLIANCE_PURE_PYTHON"
# The modules setup.py compiles, dependencies first (a compiled module imports its
# neighbours by their pure names and gets their compiled contents through them).
MODULES = ("appliance.packet", "appliance.decode", "appliance.checksum", "appliance.flow",
           "appliance.stream", "appliance.source.pcap", "appliance.output.events", "appliance.detect.index",
           "appliance.applayer.dns", "appliance.applayer.tls", "appliance.applayer.http", "appliance.applayer.server",
           "appliance.applayer.state", "appliance.detect.engine", "appliance.inspector",
           "appliance.source.nfqueue")
SOURCE_HASH_SUFFIX = ".sha256"     # beside the extension: the hash of the source it was built from

log = logging.getLogger("appliance.compiled")
active = {}          # pure module name -> compiled module name, for bench and --version
missing = {}         # pure module name -> why it runs as pure Python


def pure_requested():
    return os.environ.get(PURE_ENV, "") not in ("", "0")


def twin_name(name):
    """appliance.decode -> appliance._c_decode"""
    package, _, leaf = name.rpartition(".")
    return f"{package}._c_{leaf}"


def source_hash(path):
    """The source's SHA-256, then every `.pxd` of the package's twins: the types a twin was
    compiled with are part of what it runs, its own and its neighbours' (decode and flow read
    Packet's fields at the offsets _c_packet.pxd lays out), so a `.pxd` edit must not leave an
    old build in use. setup.py computes the same."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    for pxd in package_pxds(os.path.dirname(os.path.abspath(__file__))):
        with open(pxd, "rb") as f:
            h.update(b"\0" + os.path.basename(pxd).encode() + b"\0" + f.read())
    return h.hexdigest()


def package_pxds(top):
    """The twins' declaration files under the package directory `top`, in a fixed order."""
    out = []
    for d, dirs, files in os.walk(top):
        dirs.sort()
        out += [os.path.join(d, f) for f in sorted(files) if f.startswith("_c_") and f.endswith(".pxd")]
    return out


def built_from(extension_path):
    """The hash of the source the extension was compiled from, or None when not recorded."""
    try:
        with open(extension_path + SOURCE_HASH_SUFFIX) as f:
            return f.read().strip() or None
    except OSError:
        return None


def use_compiled(namespace):
    """Replace the module's public and private names with its compiled twin's."""
    name = namespace["__name__"]
    package, _, leaf = name.rpartition(".")
    if leaf.startswith("_c_"):          # the compiled twin itself runs this line too
        return
    if pure_requested():
        missing[name] = f"{PURE_ENV} is set"
        return
    # all or nothing: a compiled module types its arguments as its compiled neighbours'
    # classes (decode's Packet), so it runs only when those run compiled too. They are
    # imported first: whichever module an entry point happens to import first (GWLB's
    # gwlb_offload imports flow before anything imports decode) must not decide the build
    earlier = MODULES[:MODULES.index(name)] if name in MODULES else ()
    for m in earlier:
        importlib.import_module(m)
    behind = [m for m in earlier if m not in active]
    if behind:
        missing[name] = f"{behind[0]} runs as pure Python"
        return
    try:
        twin = importlib.import_module(twin_name(name))
    except ImportError as e:
        missing[name] = f"not built ({e})"
        log.info("%s: no compiled extension (%s); running the pure-Python module", name, e)
        return
    source = namespace.get("__file__")
    built = built_from(twin.__file__)
    if built is None or not source or built != source_hash(source):
        # edited since the build (or built without the record): the twin would run other code.
        # A warning: this runs at import, before a command sets up logging, and a build that
        # is there but unusable is a deployment to fix (a missing one may be a choice)
        missing[name] = "stale build, not compiled from its source"
        log.warning("%s: compiled extension not built from %s as it is now; running the pure-Python "
                 "module (rebuild: python3 setup.py build_ext --inplace)", name, source)
        return
    namespace.update({k: v for k, v in vars(twin).items() if not (k.startswith("__") and k.endswith("__"))})
    active[name] = twin.__name__


def describe():
    """One line: which hot-path modules run compiled."""
    if not active:
        return "pure Python (" + ("; ".join(sorted(set(missing.values()))) or "nothing imported yet") + ")"
    return "compiled: " + ", ".join(sorted(n.rpartition(".")[2] for n in active)) + (
        "; pure: " + ", ".join(sorted(n.rpartition(".")[2] for n in missing)) if missing else "")
