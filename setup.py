"""Builds the C++ extensions fastgan._loader and fastgan.fused._cpu_losses; the rest is in pyproject.toml."""
import glob
import os
import platform
import sys

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup

VERSION = "0.1.0"



def _libmvec() -> dict:
    """The AVX2 loop calls glibc's vector expf and log1pf (libmvec; log1pf from glibc 2.35): linked where they
    exist, else the extension computes one lane at a time."""
    libc = os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else ""
    try:
        version = tuple(int(v) for v in libc.split()[1].split(".")[:2]) if libc.startswith("glibc ") else ()
    except (IndexError, ValueError):
        version = ()
    if sys.platform.startswith("linux") and platform.machine() == "x86_64" and version >= (2, 35):
        return {"libraries": ["mvec"], "define_macros": [("FASTGAN_LIBMVEC", "1")]}
    return {}


ext_modules = [
    Pybind11Extension(
        "fastgan._loader",
        sorted(glob.glob("csrc/*.cpp")),
        include_dirs=["csrc"],
        cxx_std=17,
        # -O3 vectorises the pixel loops with the baseline instruction set (no -march: the wheel must run
        # on any CPU of its architecture); the float32 conversion's AVX2 and AVX-512 forms are compiled by
        # function attribute and picked at run time (csrc/pixels.cpp). -ffp-contract=off keeps x * scale + offset two roundings, as in
        # NumPy: compilers that fuse it into one FMA (clang by default, GCC wherever FMA is baseline) would
        # break bit-identity with the NumPy path.
        extra_compile_args=["-O3", "-ffp-contract=off"],
        define_macros=[("FASTGAN_VERSION", f'"{VERSION}"')],
    ),
    Pybind11Extension(
        "fastgan.fused._cpu_losses",
        ["csrc/cpu_losses/bce_with_logits.cpp"],
        cxx_std=17,
        # -ffp-contract=off: the AVX2 and the one-lane loops round alike (no FMA in one of them only).
        extra_compile_args=["-O3", "-ffp-contract=off"],
        **_libmvec(),
    ),
]

setup(ext_modules=ext_modules, cmdclass={"build_ext": build_ext})
