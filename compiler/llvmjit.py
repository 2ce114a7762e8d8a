"""The llvm back end's loaded kernels: SSA functions as LLVM kernels, and the
objects Python calls them through.

The IR comes from the printers (:mod:`compiler.llvmscalar`,
:mod:`compiler.llvmsimd`, :mod:`compiler.llvmbatch`, :mod:`compiler.llvmloops`,
:mod:`compiler.pyglue`); :func:`compiler.llvmobject.load_object` compiles it
(or loads its cached object) and links it into the process-wide JIT.

Every kernel object holds the :class:`compiler.jit.JITLibrary` that owns its
machine code (``owner``), and so does every call-glue builtin built on it:
when the last of them is collected, the code is unloaded.

What is loaded, and how it is called:

* :class:`LLVMKernel`: the scalar kernel ``void NAME(ptr in, ptr out)`` of one
  point; from Python through ``ctypes`` (``call``; ``call_batch`` for points
  as columns), from Numba-jitted code through ``numba_function`` (an
  ``ExternalFunction`` bound to the kernel's registered symbol), and by
  ``address`` for anything else that speaks C.
* :class:`BatchKernel`: a batch function with the interface of
  :mod:`compiler.llvmsimd` (``ptrs, strides, out, ostride, lo, hi``), reading
  the callers' arrays in place: the SIMD kernel of a program
  (:func:`load_vector`), or the batch loop around a scalar kernel
  (:func:`load_batch_loop`, :mod:`compiler.llvmbatch`) for programs too big for
  one. Both run on :mod:`compiler.parallel`'s thread pool.
* :class:`LoopKernel`: an array program (layer-level models, :mod:`compiler.llvmloops`).
* :func:`load_glue`: the call glue's builtin-function entries (:mod:`compiler.pyglue`).

What the machine offers the generated code (SIMD width, libmvec, BLAS) is
found by :mod:`compiler.host`. Nothing here imports Numba unless ``numba_function`` is asked for.
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from compiler import jit, parallel
from compiler.host import blas_dgemm, simd_math, vector_math  # noqa: F401 - re-exported
from compiler.ir import Function
from compiler.llvmobject import PLACEHOLDER as _PLACEHOLDER, load_object, opt_level, structural_key
from compiler.llvmscalar import DEFAULT_CHUNK, llvm_module

__all__ = ["BatchKernel", "LLVMKernel", "LoopKernel", "load_batch_loop", "load_llvm", "load_llvm_group", "load_loops",
           "load_glue", "load_vector", "simd_math"]

_LOCK = threading.Lock()
_LOADED: "weakref.WeakValueDictionary[tuple, LLVMKernel]" = weakref.WeakValueDictionary()
# loaded objects are deduplicated (weakly) by compiler.jit.find(symbol)
_VOIDPP = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)
_BATCH_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                             ctypes.c_int64, ctypes.c_int64, ctypes.c_int64)


@dataclass
class LLVMKernel:
    """A loaded scalar kernel ``void symbol(ptr in, ptr out)``: one point."""

    symbol: str
    n_inputs: int
    n_outputs: int
    address: int
    path: Path | None
    reused: bool
    n_statements: int = 0
    _call: object = field(repr=False, default=None)
    _batch: object = field(repr=False, default=None)
    owner: jit.JITLibrary | None = field(repr=False, default=None)   # keeps the code loaded

    def __post_init__(self) -> None:
        self._call = _VOIDPP(self.address)

    def call(self, inp: np.ndarray, out: np.ndarray) -> None:
        """One point: contiguous float64 ``inp`` (n_inputs,) -> ``out`` (n_outputs,)."""
        if inp.dtype != np.float64 or out.dtype != np.float64 or inp.size < self.n_inputs \
                or out.size < self.n_outputs or not (inp.flags.c_contiguous and out.flags.c_contiguous):
            raise ValueError(f"call: inp and out must be C-contiguous float64 arrays of sizes "
                             f"{self.n_inputs} and {self.n_outputs}")
        self._call(inp.ctypes.data, out.ctypes.data)

    def batch_kernel(self) -> "BatchKernel":
        """The batch loop around this kernel (:func:`load_batch_loop`; compiled on first use)."""
        if self._batch is None:
            self._batch = load_batch_loop(self.symbol, self.n_inputs, self.n_outputs,
                                          self.n_statements, owner=self.owner)
        return self._batch

    def call_batch(self, inp: np.ndarray, out: np.ndarray, threads: int | None = None) -> None:
        """Points as columns: C-contiguous ``inp`` (n_inputs, n) -> ``out``
        (n_outputs, n), through :meth:`batch_kernel` (split over threads when
        the batch is big enough to pay for them)."""
        n = inp.shape[1] if inp.ndim == 2 else -1
        for name, arr, rows in (("inp", inp, self.n_inputs), ("out", out, self.n_outputs)):
            if arr.dtype != np.float64 or arr.ndim != 2 or arr.shape != (rows, n) \
                    or not arr.flags.c_contiguous or (name == "out" and not arr.flags.writeable):
                raise ValueError(f"call_batch: {name} must be a C-contiguous float64 array of "
                                 f"shape ({rows}, n) (one column per point), got {arr.dtype} "
                                 f"{arr.shape}")
        self.batch_kernel().into([(inp, k * n, 1) for k in range(self.n_inputs)], n, out, threads)

    @property
    def numba_function(self):
        """An ``ExternalFunction`` Numba-jitted code can call as ``f(inp.ctypes, out.ctypes)``.

        Registers the kernel's symbol for Numba and pins its code for the rest
        of the process (see :func:`compiler.jit.export_to_numba`)."""
        from numba import types

        jit.export_to_numba(self.owner.symbol if self.owner is not None else self.symbol)
        return types.ExternalFunction(self.symbol, types.void(types.voidptr, types.voidptr))


def load_llvm(fn: Function, chunk: int = DEFAULT_CHUNK) -> LLVMKernel:
    """Compile (or load from the disk cache) an SSA function with LLVM."""
    return load_llvm_group({"": fn}, chunk)[""]


def load_llvm_group(fns: dict, chunk: int = DEFAULT_CHUNK) -> dict:
    """Compile several SSA functions into one object file and one JIT library:
    ``{suffix: fn}`` -> ``{suffix: LLVMKernel}`` (kernel symbols are the
    library's symbol plus the suffix; suffix ``""`` must be one of them).

    A JIT library costs ~11 KB that ORC never returns, however small its code
    (:mod:`compiler.jit`): the two kernels of a compiled formula go in one.
    Each kernel holds the library, so the code lives while either does.
    """
    if "" not in fns or not all(s == "" or (s.startswith("_") and s[1:].isidentifier())
                                for s in fns):
        raise ValueError(f"suffixes must include '' and be '_name' identifiers, got {list(fns)}")
    also = tuple((f, _PLACEHOLDER + s) for s, f in fns.items() if s)
    size = sum(len(f) for f in fns.values())
    lib = load_object(lambda: llvm_module(fns[""], _PLACEHOLDER, chunk, also=also),
                      opt_level(size), tuple(fns), key=structural_key(fns, chunk))
    out = {}
    with _LOCK:
        for suffix, f in fns.items():
            symbol = lib.symbol + suffix
            key = (symbol, f.n_inputs, f.n_outputs)   # equal text, other input counts
            kernel = _LOADED.get(key)
            if kernel is None:
                kernel = LLVMKernel(symbol, f.n_inputs, f.n_outputs, lib.addresses[suffix],
                                    lib.path, lib.reused, len(f), owner=lib)
                _LOADED[key] = kernel
            out[suffix] = kernel
    return out


class BatchKernel:
    """A loaded batch function ``(ptrs, strides, out, ostride, lo, hi)``: evaluates
    a program at n points read in place from the callers' arrays.

    ``kind`` is ``"simd"`` (:mod:`compiler.llvmsimd`: L points per pass) or
    ``"scalar"`` (:mod:`compiler.llvmbatch`: the scalar kernel point by point).
    Batches of at least ``min_points`` points per thread are split over
    :mod:`compiler.parallel`'s pool, in ranges aligned to ``align`` points.
    ``owner`` keeps the machine code loaded.
    """

    def __init__(self, symbol: str, n_inputs: int, n_outputs: int, address: int,
                 path: Path | None, reused: bool, kind: str, align: int = 1, min_points: int = 1,
                 owner: jit.JITLibrary | None = None) -> None:
        self.symbol, self.n_inputs, self.n_outputs = symbol, n_inputs, n_outputs
        self.path, self.reused, self.kind = path, reused, kind
        self.align, self.min_points = align, min_points
        self.owner = owner
        self._raw = _BATCH_FN(address)

    def __repr__(self) -> str:
        return f"<BatchKernel {self.kind} {self.symbol}: {self.n_inputs} -> {self.n_outputs}>"

    def __call__(self, columns: list, n: int, threads: int | None = None) -> np.ndarray:
        """Evaluate at ``n`` points and return ``(n_outputs, n)``.

        ``columns[k] = (array, offset, stride)``: input k of point i is element
        ``offset + i * stride`` of float64 ``array`` counted from its data
        pointer (stride in elements; 0 broadcasts one value, negative walks back).
        """
        out = np.empty((self.n_outputs, n))
        self.into(columns, n, out, threads)
        return out

    def into(self, columns: list, n: int, out: np.ndarray, threads: int | None = None) -> None:
        """Like calling the kernel, into a C-contiguous float64 ``out`` of shape (n_outputs, n)."""
        if len(columns) != self.n_inputs:
            raise ValueError(f"expected {self.n_inputs} input columns, got {len(columns)}")
        if out.dtype != np.float64 or out.shape != (self.n_outputs, n) \
                or not out.flags.c_contiguous or not out.flags.writeable:
            raise ValueError(f"out must be a writeable C-contiguous float64 array of shape "
                             f"({self.n_outputs}, {n}), got {out.dtype} {out.shape}")
        ptrs = (ctypes.c_void_p * max(self.n_inputs, 1))()
        strides = (ctypes.c_int64 * max(self.n_inputs, 1))()
        base: dict = {}                     # one address lookup per array, not per column
        for k, (arr, offset, stride) in enumerate(columns):
            if arr.dtype != np.float64:
                raise ValueError(f"input column {k} must be float64, got {arr.dtype}")
            if id(arr) not in base:
                base[id(arr)] = (arr, arr.ctypes.data)
            ptrs[k] = base[id(arr)][1] + 8 * offset
            strides[k] = stride
        keep = (out, *(a for a, _ in base.values()))
        parallel.run_batch(self._raw, ptrs, strides, out.ctypes.data, n, n, keep=keep,
                           n_threads=threads, min_points=self.min_points, align=self.align)


def load_vector(fn: Function) -> BatchKernel | None:
    """The SIMD batch kernel of ``fn`` (compiled, or loaded from the disk cache),
    or None when ``fn`` is too big for one (see :mod:`compiler.llvmsimd`)."""
    from compiler.llvmsimd import VEC_MAX_STATEMENTS, vector_module

    if len(fn) > VEC_MAX_STATEMENTS:
        return None
    simd = simd_math()
    text = vector_module(fn, _PLACEHOLDER, simd)
    lib = load_object(text, opt_level(len(fn)), ("_vbatch",))
    return BatchKernel(lib.symbol, fn.n_inputs, fn.n_outputs, lib.addresses["_vbatch"], lib.path,
                       lib.reused, "simd", align=simd.lanes, min_points=SIMD_POINTS_PER_THREAD,
                       owner=lib)


SIMD_POINTS_PER_THREAD = 1024
"""SIMD batches split over threads in ranges of at least this many points."""
SCALAR_WORK_PER_THREAD = 200_000
"""Scalar batch loops split over threads in ranges of at least this many
statements' work (points times the program's statements)."""


def load_batch_loop(symbol: str, n_inputs: int, n_outputs: int, n_statements: int = 0,
                    owner: jit.JITLibrary | None = None, address: int | None = None) -> BatchKernel:
    """The batch loop (:mod:`compiler.llvmbatch`) around the scalar kernel ``symbol``
    (a live llvm kernel, linked by its library ``owner`` or found by symbol; or any
    C function ``void (double*, double*)`` at ``address``); compiled, or loaded from
    the disk cache. ``n_statements`` (the cost of one point) sizes the ranges
    handed to threads."""
    from compiler.llvmbatch import batch_loop_module

    text = batch_loop_module(symbol, _PLACEHOLDER, n_inputs, n_outputs)
    if owner is None:
        owner = jit.find(symbol)     # an llvm kernel: link against (and hold) its library
    imports = {symbol: address} if owner is None and address else None   # e.g. a Numba cfunc
    lib = load_object(text, (2, 2), ("_sbatch",), depends=(owner,) if owner is not None else (),
                      imports=imports)
    min_points = max(1, SCALAR_WORK_PER_THREAD // max(n_statements, 1))
    return BatchKernel(lib.symbol, n_inputs, n_outputs, lib.addresses["_sbatch"], lib.path,
                       lib.reused, "scalar", min_points=min_points, owner=lib)


def load_glue(layout: list, n_inputs: int, entries: list) -> tuple | None:
    """Call-glue functions (:mod:`compiler.pyglue`) for one argument layout, all in
    one module: ``({name: address}, owner)`` for ``entries = [(name, n_outputs,
    result, rows), ...]``; None where the interpreter does not allow the glue."""
    from compiler import pyglue

    if not pyglue.supported():
        return None
    named = [(f"{_PLACEHOLDER}_{name}", n_out, result, rows) for name, n_out, result, rows in entries]
    text = pyglue.glue_module(layout, n_inputs, named)
    lib = load_object(text, (2, 2), tuple(f"_{name}" for name, *_ in entries))
    return {name: lib.addresses[f"_{name}"] for name, *_ in entries}, lib


class LoopKernel:
    """A compiled array program: ``kernel(*arrays)`` returns its outputs
    (floats for scalars, fresh arrays otherwise; outputs with ``out_views``
    come back as the flat output vectors, after the other outputs).

    Built for repeated calls with the same shapes (training steps): the
    intermediate arrays and pointer tables are allocated once per set of
    runtime dimensions, and the data pointer of an argument is looked up
    once per argument object (NumPy never moves an array's data while a
    reference is held). Calls are serialised by a lock.
    """

    def __init__(self, prog, address: int, path: Path | None, reused: bool,
                 owner: jit.JITLibrary | None = None) -> None:
        from compiler.llvmloops import buffer_plan

        self.prog = prog
        self.path, self.reused = path, reused
        self.owner = owner             # keeps the code loaded
        self.buffers, self.scalars = buffer_plan(prog)
        self._dims = sorted(prog.dims)
        ptr = ctypes.c_void_p
        self._raw = ctypes.CFUNCTYPE(None, ptr, ptr, ptr, ptr, ptr)(address)
        self._scalar_slot = {i: k for k, i in enumerate(self.scalars)}
        self._buffer_slot = {i: k for k, i in enumerate(self.buffers)}
        self._fresh = [i for i in prog.outputs if i in self._buffer_slot]   # returned arrays
        self._state: dict = {}
        self._args = (ctypes.c_void_p * max(prog.n_args, 1))()
        self._arg_objs: list = [None] * prog.n_args
        self._lock = threading.Lock()

    def _setup(self, dims: dict) -> tuple:
        key = tuple(dims[d] for d in self._dims)
        state = self._state.get(key)
        if state is None:
            shapes = [tuple(d if isinstance(d, int) else dims[d] for d in self.prog.ops[i].shape)
                      for i in self.buffers]
            bufs = [np.empty(s) for s in shapes]
            buf_ptrs = (ctypes.c_void_p * max(len(bufs), 1))(*[b.ctypes.data for b in bufs])
            scal = np.zeros(max(len(self.scalars), 1))
            dim_vals = (ctypes.c_int64 * max(len(key), 1))(*key)
            outs = (ctypes.c_void_p * max(len(self.prog.out_sizes), 1))()
            state = (bufs, buf_ptrs, scal, scal.ctypes.data, dim_vals, outs, shapes)
            if len(self._state) > 8:
                self._state.clear()
            self._state[key] = state
        return state

    def __call__(self, *arrays: np.ndarray) -> tuple:
        prog = self.prog
        dims = {d: arrays[pos].shape[axis] for d, (pos, axis) in prog.dims.items()}
        with self._lock:
            bufs, buf_ptrs, scal, scal_ptr, dim_vals, outs, shapes = self._setup(dims)
            for k, a in enumerate(arrays):
                if self._arg_objs[k] is not a:
                    self._arg_objs[k] = a
                    self._args[k] = a.ctypes.data
            fresh = {}
            for i in self._fresh:          # returned arrays are new on every call
                slot = self._buffer_slot[i]
                arr = np.empty(shapes[slot])
                fresh[i] = arr
                buf_ptrs[slot] = arr.ctypes.data
            flat = [np.empty(size) for size in prog.out_sizes]
            for v, arr in enumerate(flat):
                outs[v] = arr.ctypes.data
            self._raw(self._args, dim_vals, buf_ptrs, scal_ptr, outs)
            out = []
            for i in prog.outputs:
                if i in prog.out_views:
                    continue
                if i in self._scalar_slot:
                    out.append(float(scal[self._scalar_slot[i]]))
                else:
                    out.append(fresh[i])
            return tuple(out) + tuple(flat)


def load_loops(prog) -> LoopKernel:
    """Compile (or load from the disk cache) an array program with LLVM
    (matrix products through BLAS when NumPy's OpenBLAS is available)."""
    from compiler.llvmloops import loop_module

    text = loop_module(prog, _PLACEHOLDER, blas_dgemm(), simd_math())
    # O2 without unrolling: loop bounds are often small constants (layer widths),
    # and full unrolling multiplied compile time by 20 (8 s for a 3-layer step)
    lib = load_object(text, (2, 2, False), ("",))
    return LoopKernel(prog, lib.addresses[""], lib.path, lib.reused, lib)
