"""What this machine offers native code: SIMD width, glibc's libmvec, BLAS.

Found once per process (and after :func:`set_simd_math`, as told):

* :func:`simd_math`: the widest SIMD batch kernels the CPU runs and the
  libmvec function of every libm function an op template calls
  (:func:`compiler.ops.libm_calls`): 8 lanes with AVX-512, else 4 with AVX2,
  else 4 lanes computed with libm lane by lane; ``SYMGRAD_VECMATH=0`` keeps libm;
* :func:`vector_math`: the 4-lane AVX2 table (for kernels pinned to 4 lanes);
* :func:`blas_dgemm`: the CBLAS ``dgemm`` of NumPy's bundled OpenBLAS, for
  large matrix products in loop kernels; ``SYMGRAD_BLAS=0`` turns it off.

Libraries found here are loaded into the process, where the JIT resolves
their symbols (:mod:`compiler.jit`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["simd_math", "set_simd_math", "vector_math", "blas_dgemm"]

_STATE: dict = {}


def _llvm():
    import llvmlite.binding as llvm

    if "init" not in _STATE:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        _STATE["init"] = True
    return llvm


def blas_dgemm() -> str | None:
    """The symbol of a CBLAS ``dgemm`` with 64-bit integers, or None.

    NumPy's wheels bundle OpenBLAS (``scipy_cblas_dgemm64_``); it is loaded
    into the process when found. ``SYMGRAD_BLAS=0`` turns BLAS off.
    """
    if "blas" in _STATE:
        return _STATE["blas"]
    symbol = None
    if os.environ.get("SYMGRAD_BLAS", "1") != "0":
        import glob

        llvm = _llvm()
        libdir = Path(np.__file__).resolve().parent.parent / "numpy.libs"
        for lib in sorted(glob.glob(str(libdir / "libscipy_openblas64_*.so*"))):
            try:
                llvm.load_library_permanently(lib)
            except RuntimeError:
                continue
            if llvm.address_of_symbol("scipy_cblas_dgemm64_"):
                symbol = "scipy_cblas_dgemm64_"
                break
    _STATE["blas"] = symbol
    return symbol


def _libmvec_table(lanes: int, isa: str, feature: str) -> dict:
    """``{libm name: libmvec symbol}`` for every libm function an op template
    calls (:func:`compiler.ops.libm_calls`) that glibc's libmvec has at this
    width, when the CPU has ``feature``."""
    from compiler import ops

    llvm = _llvm()
    if os.environ.get("SYMGRAD_VECMATH", "1") == "0" or \
            feature not in llvm.get_host_cpu_features().flatten():
        return {}
    if not _STATE.get("libmvec_loaded"):
        for lib in ("libmvec.so.1", "libmvec.so"):
            try:
                llvm.load_library_permanently(lib)
                break
            except RuntimeError:
                continue
        _STATE["libmvec_loaded"] = True
    wanted = sorted({c for p in ops.all_primitives() for c in ops.libm_calls(p.name)})
    table = {}
    for name, n_args in wanted:
        sym = f"_ZGV{isa}N{lanes}{'v' * n_args}_{name}"
        if llvm.address_of_symbol(sym):
            table[name] = sym
    return table


def vector_math() -> dict:
    """glibc's libmvec AVX2 functions, when the library and the CPU have them:
    ``{"tanh": "_ZGVdN4v_tanh", ...}`` (within 4 ulp of libm). ``SYMGRAD_VECMATH=0``
    turns them off."""
    if "vecmath" not in _STATE:
        _STATE["vecmath"] = _libmvec_table(4, "d", "+avx2")
    return _STATE["vecmath"]


def simd_math():
    """The widest SIMD batch kernels this machine runs (a
    :class:`compiler.emitter.SimdMath`): 8 lanes with glibc's AVX-512 libmvec
    functions (``_ZGVeN8v_tanh``, ``_ZGVeN8vv_pow``, ...), else 4 lanes with its AVX2 ones, else
    4 lanes with libm lane by lane. ``SYMGRAD_VECMATH=0`` keeps libm (batches
    then equal single-point calls bit for bit)."""
    if "simd" in _STATE:
        return _STATE["simd"]
    from compiler.emitter import SimdMath

    simd = SimdMath(4, {})
    for lanes, isa, feature in ((8, "e", "+avx512f"), (4, "d", "+avx2")):
        table = _libmvec_table(lanes, isa, feature)
        if table:
            simd = SimdMath(lanes, table)
            break
    _STATE["simd"] = simd
    return simd


def set_simd_math(simd) -> None:
    """Make SIMD kernels built from now on use ``simd`` (a
    :class:`compiler.emitter.SimdMath`, e.g. ``SimdMath(lanes, {})`` for libm
    lane by lane); None finds the machine's again. Kernels already built keep theirs."""
    if simd is None:
        _STATE.pop("simd", None)
    else:
        _STATE["simd"] = simd
