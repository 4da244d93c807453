"""Builds the compiled hot path (appliance/compiled.py says what and why); everything
else is in pyproject.toml. Without Cython, or when a module fails to compile, the
package installs as pure Python and says so at run time."""
from setuptools import Extension, setup

# (compiled twin, the pure-Python source it is built from); the order of appliance.compiled.MODULES
HOT_PATH = [
    ("appliance._c_packet", "appliance/packet.py"),
    ("appliance._c_decode", "appliance/decode.py"),
    ("appliance._c_flow", "appliance/flow.py"),
]

try:
    from Cython.Build import cythonize
except ImportError:
    print("setup.py: Cython not installed; the hot path stays pure Python")
    ext_modules = []
else:
    ext_modules = cythonize(
        [Extension(name, [source], optional=True) for name, source in HOT_PATH],
        language_level=3, quiet=True,
        # the source is the reference: annotations must not change what a value may be
        # (`ts: float` would turn an int into a C double), so only the .pxd files type
        compiler_directives={"annotation_typing": False, "binding": True},
    )

setup(ext_modules=ext_modules)
