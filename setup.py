"""Builds the C++ extension fastgan._loader; everything else is declared in pyproject.toml."""
import glob

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

VERSION = "0.1.0"

ext_modules = [
    Pybind11Extension(
        "fastgan._loader",
        sorted(glob.glob("csrc/*.cpp")),
        include_dirs=["csrc"],
        cxx_std=17,
        # -O3 vectorises the pixel loops with the baseline instruction set (no -march: the wheel must run
        # on any CPU of its architecture). -ffp-contract=off keeps x * scale + offset two roundings, as in
        # NumPy: compilers that fuse it into one FMA (clang by default, GCC wherever FMA is baseline) would
        # break bit-identity with the NumPy path.
        extra_compile_args=["-O3", "-ffp-contract=off"],
        define_macros=[("FASTGAN_VERSION", f'"{VERSION}"')],
    )
]

setup(ext_modules=ext_modules, cmdclass={"build_ext": build_ext})
