"""symgrad's back end: SSA IR, one record per primitive, code generation.

* :mod:`compiler.ir` — the SSA program (the contract with the front end);
* :mod:`compiler.ops` — one record per primitive: reference semantics, one
  LLVM template for scalar and SIMD code, vector strategy; every other list
  of ops is derived from it (:mod:`compiler.runtime` and
  :mod:`compiler.nbruntime` are its Python and Numba views);
* :mod:`compiler.emitter` — the one LLVM IR emitter every generator uses;
* generators: :mod:`compiler.llvmscalar` (straight-line kernels),
  :mod:`compiler.llvmsimd` (SIMD batches), :mod:`compiler.llvmloops` (array
  programs as loops), :mod:`compiler.pysource` (Python source);
* :mod:`compiler.llvmjit` — compiling LLVM IR and loading it as kernels;
  :mod:`compiler.jit` the process-wide JIT (code freed with its kernels),
  :mod:`compiler.objcache` the verified disk cache, :mod:`compiler.host` what
  the machine offers (SIMD width, libmvec, BLAS), :mod:`compiler.parallel`
  the batch thread pool, :mod:`compiler.llvmbatch` and :mod:`compiler.pyglue`
  the batch loop and the Python call glue.

The package never imports ``symgrad`` or ``sympy``: it knows primitive ops by
name (see :mod:`compiler.runtime`), nothing about expressions or networks.
Front ends reach it through :mod:`compiler.kernel`: a :class:`~compiler.kernel.Kernel`
built from an SSA program, a :class:`~compiler.signature.Signature` and a back end.
"""

from compiler import runtime

__all__ = ["runtime"]
