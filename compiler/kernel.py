"""The kernel interface: an SSA function compiled once, called two ways.

A :class:`Kernel` is built from an SSA :class:`~compiler.ir.Function`, a
:class:`~compiler.signature.Signature` and a back end, and has exactly one
single-point call and one batch call, fixed by what it was built from:

============  ===========================================  ==========================================
back end      one point (``point``)                        a batch (``batch``)
============  ===========================================  ==========================================
``llvm``      the LLVM kernel ``void f(ptr in, ptr out)``  its SIMD kernel (:mod:`compiler.llvmsimd`);
                                                           above ``VEC_MAX_STATEMENTS``, the batch
                                                           loop around the scalar kernel
                                                           (:mod:`compiler.llvmbatch`)
``numba``     the Numba kernel's C entry (a ``cfunc``)     the same SIMD kernel; else the batch loop
                                                           around the C entry
``python``    the generated source, plain Python floats    a Python loop over the points
============  ===========================================  ==========================================

Native batches run on :mod:`compiler.parallel`'s thread pool; nothing on the
llvm path imports Numba.

:meth:`Kernel.entry` gives the callables a front end exposes (``value_and_grad``,
``grad``, ``jacobian``, plain calls). Each is the *checked path*, a Python
function that checks and packs the arguments (:meth:`Signature.pack`), runs
``point`` or ``batch`` and shapes the result (:meth:`Signature.result`); where
the interpreter allows the call glue (:mod:`compiler.pyglue`), the entry is a
builtin function in front of the checked path, taking exact floats and
float64 vectors straight into the native kernel and handing everything else
to the checked path. The glue functions of one signature are one small
module, built with the first entry; they call the kernel through an address
cell, so a kernel compiled on first use (``lazy=True``: forward kernels) has
its entries, the same objects, from the start. Nothing is swapped or
rewritten after a call.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from compiler import sourceload
from compiler.pysource import CFUNC_SIGNATURE, cfunc_source, python_source
from compiler.ir import Function
from compiler.llvmscalar import unsupported_ops
from compiler.signature import KINDS, Signature

__all__ = ["Kernel", "BACKENDS", "GROUP_MAX_STATEMENTS", "build_kernels", "llvm_supports"]

BACKENDS = ("llvm", "numba", "python")

_NAMES = {"value_and_grad": "value_and_grad", "grad": "grad", "jacobian": "jacobian",
          "values": "forward"}
_TEXT_SIGNATURES = {"value_and_grad": "(*args, reduce=None)", "grad": "(*args, reduce=None)",
                    "jacobian": "(*args)", "values": "(*args)"}
_VOIDPP = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


def llvm_supports(fn: Function) -> bool:
    """Whether the llvm templates cover every op of an SSA function."""
    return not unsupported_ops(fn)


class _Loaded:
    """What a back end built: the single-point call and where it lives."""

    __slots__ = ("point", "address", "symbol", "native", "path", "reused", "hits")

    def __init__(self, point: Callable, address: Optional[int] = None, symbol: Optional[str] = None,
                 native=None, path: Optional[Path] = None, reused: bool = False,
                 hits: Callable[[], int] = lambda: 0) -> None:
        self.point, self.address, self.symbol, self.native = point, address, symbol, native
        self.path, self.reused, self.hits = path, reused, hits


class Kernel:
    """An SSA function compiled for one back end, called through a signature.

    Parameters
    ----------
    fn : compiler.ir.Function
        The program: ``signature.n_inputs`` inputs; its outputs are the layout
        of one kind of call (``signature.width(kind)`` values).
    signature : compiler.signature.Signature
    backend : {"llvm", "numba", "python"}
    lazy : bool
        Compile on first use instead of now (the entries exist either way).
    name : str
        The function's name in generated source (tracebacks, Numba's cache files).
    native : compiler.llvmjit.LLVMKernel, optional
        The llvm back end's kernel of ``fn``, already loaded (:func:`build_kernels`).

    Examples
    --------
    >>> from compiler.ir import Builder
    >>> b = Builder(2)
    >>> f = b.finish([b.op("mul", b.input(0), b.input(1))])
    >>> k = Kernel(f, Signature([None, None], n_values=1, n_wrt=0), "python")
    >>> call = k.entry("values")
    >>> call(3.0, 0.5), call([1.0, 2.0], 4.0)
    (1.5, array([4., 8.]))
    """

    def __init__(self, fn: Function, signature: Signature, backend: str, *,
                 lazy: bool = False, name: str = "kernel", native=None) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if fn.n_inputs != signature.n_inputs:
            raise ValueError(f"the program reads {fn.n_inputs} inputs, the signature has "
                             f"{signature.n_inputs}")
        if not name.isidentifier():
            raise ValueError(f"kernel name {name!r} is not an identifier")
        self.fn, self.signature, self.backend, self.name = fn, signature, backend, name
        self.n_outputs = fn.n_outputs
        self._lock = threading.Lock()
        self._loaded: Optional[_Loaded] = None
        self._batch_kernel = None
        self._cell = np.zeros(1, dtype=np.uint64)     # the glue's kernel address; 0: not loaded
        self._keep: list = []      # owners of the code the glue reaches (kept by each builtin)
        self._native = native
        if native is not None and (backend != "llvm" or native.n_inputs != fn.n_inputs
                                   or native.n_outputs != fn.n_outputs):
            raise ValueError("native= must be the llvm kernel of fn")
        if not lazy:
            self._load()

    def __repr__(self) -> str:
        state = "loaded" if self._loaded is not None else "not compiled yet"
        return (f"<Kernel {self.backend}: {self.signature.n_inputs} inputs -> "
                f"{self.n_outputs} outputs, {len(self.fn)} SSA values, {state}>")

    # -- compiling ----------------------------------------------------------------------
    def _load(self) -> _Loaded:
        loaded = self._loaded
        if loaded is None:
            with self._lock:
                if self._loaded is None:
                    loaded = getattr(self, "_load_" + self.backend)()
                    if loaded.address is not None:
                        self._keep.append(loaded)   # before the cell: builtins keep the code
                        self._cell[0] = loaded.address
                    self._loaded = loaded
                loaded = self._loaded
        return loaded

    def _load_python(self) -> _Loaded:
        run = sourceload.load_python(python_source(self.fn, self.name), self.name)
        # plain Python floats in (not NumPy scalars): IEEE results, no warnings
        return _Loaded(lambda inp, out: run(inp.tolist(), out))

    def _load_llvm(self) -> _Loaded:
        from compiler.llvmjit import load_llvm

        k = self._native if self._native is not None else load_llvm(self.fn)
        self._native = None
        raw = _VOIDPP(k.address)      # run() hands it fresh contiguous float64 vectors
        return _Loaded(lambda inp, out: raw(inp.ctypes.data, out.ctypes.data), k.address,
                       k.symbol, k, k.path, k.reused, lambda: int(k.reused))

    def _load_numba(self) -> _Loaded:
        source = python_source(self.fn, self.name) + cfunc_source(self.name, self.fn.n_inputs,
                                                                  self.n_outputs)
        mod, path, reused = sourceload.load_numba(source, self.name)
        c_entry = getattr(mod, "__symgrad_cfunc__", None)
        if c_entry is None:       # compiled after load_numba verified the module's caches
            from numba import cfunc

            c_entry = cfunc(CFUNC_SIGNATURE, error_model="numpy")(getattr(mod, f"{self.name}_c"))
            mod.__symgrad_cfunc__ = c_entry
        symbol = f"{path.stem}_c"     # batch loops import it under this name, by address
        raw = _VOIDPP(c_entry.address)
        return _Loaded(lambda inp, out: raw(inp.ctypes.data, out.ctypes.data), c_entry.address,
                       symbol, None, path, reused,
                       lambda: sum(getattr(mod, self.name).stats.cache_hits.values()))

    # -- calls ----------------------------------------------------------------------------
    @property
    def native(self):
        """The loaded :class:`compiler.llvmjit.LLVMKernel` (llvm back end), else None."""
        return self._load().native

    @property
    def library(self):
        """The :class:`compiler.jit.JITLibrary` holding the llvm code, once loaded
        (None before, and on the other back ends); loads nothing."""
        loaded = self._loaded
        return loaded.native.owner if loaded is not None and loaded.native is not None else None

    @property
    def cache_path(self) -> Optional[Path]:
        """The file the compiled code came from (None: pure Python)."""
        return self._load().path

    @property
    def cache_reused(self) -> bool:
        """Whether that file existed before this process asked for it."""
        return self._load().reused

    @property
    def cache_hits(self) -> int:
        """Machine code loaded from the disk cache instead of compiled (0 until loaded)."""
        return self._loaded.hits() if self._loaded is not None else 0

    def point(self, inp: np.ndarray, out: np.ndarray) -> None:
        """One point: C-contiguous float64 ``inp`` (n_inputs,) -> ``out`` (n_outputs,)."""
        for name, arr, size in (("inp", inp, self.fn.n_inputs), ("out", out, self.n_outputs)):
            if type(arr) is not np.ndarray or arr.dtype != np.float64 or arr.shape != (size,) \
                    or not arr.flags.c_contiguous or (name == "out" and not arr.flags.writeable):
                raise ValueError(f"point: {name} must be a C-contiguous float64 array of shape "
                                 f"({size},), got {getattr(arr, 'dtype', type(arr))} "
                                 f"{getattr(arr, 'shape', '')}")
        self._load().point(inp, out)

    def batch_kernel(self):
        """The native batch kernel (:class:`compiler.llvmjit.BatchKernel`: ``kind``
        ``"simd"`` or ``"scalar"``), compiled on first use; None for the python back end."""
        if self.backend == "python":
            return None
        if self._batch_kernel is None:
            loaded = self._load()
            with self._lock:
                if self._batch_kernel is None:
                    from compiler.llvmjit import load_batch_loop, load_vector

                    kernel = load_vector(self.fn) if llvm_supports(self.fn) else None
                    if kernel is None:
                        owner = loaded.native.owner if loaded.native is not None else None
                        kernel = load_batch_loop(loaded.symbol, self.fn.n_inputs, self.n_outputs,
                                                 len(self.fn), owner=owner, address=loaded.address)
                    self._batch_kernel = kernel
        return self._batch_kernel

    def batch(self, arrays: list, n: int) -> np.ndarray:
        """n points, from :meth:`Signature.pack`'s arrays: returns ``(n_outputs, n)``."""
        if self.backend != "python":
            return self.batch_kernel()(self.signature.columns(arrays), n)
        inp = self.signature.gather(arrays, n)
        out = np.empty((self.n_outputs, n))
        point = self._load().point
        for i in range(n):                            # (the python back end: any vectors)
            point(np.ascontiguousarray(inp[:, i]), out[:, i])
        return out

    def run(self, args) -> tuple:
        """Check and pack call arguments and run the kernel: ``(out, n)``, ``out`` of
        shape ``(n_outputs,)`` for one point (``n`` None), else ``(n_outputs, n)``."""
        sig = self.signature
        arrays, n = sig.pack(args)
        if n is not None:
            return self.batch(arrays, n), n
        out = np.empty(self.n_outputs)
        self._load().point(sig.flat(arrays), out)     # fresh vectors of the right sizes
        return out, None

    # -- entry points ----------------------------------------------------------------------
    def checked(self, kind: str, doc: Optional[str] = None) -> Callable:
        """The checked path of a ``kind`` call (see :data:`compiler.signature.KINDS`):
        a Python function taking the user's arguments."""
        self._check_kind(kind)
        sig, kernel = self.signature, self
        if kind in ("value_and_grad", "grad"):
            def call(*args, reduce=None):
                sig.check(kind, reduce)
                out, n = kernel.run(args)
                return sig.result(kind, out, n, reduce)
        else:
            def call(*args):
                out, n = kernel.run(args)
                return sig.result(kind, out, n)
        call.__name__ = call.__qualname__ = _NAMES[kind]
        call.__doc__ = doc
        return call

    def entry(self, kind: str, doc: Optional[str] = None) -> Callable:
        """The callable for ``kind`` calls: the glue's builtin function in front of
        :meth:`checked` where the interpreter allows it, else :meth:`checked` itself."""
        checked = self.checked(kind, doc)
        if self.backend == "python":
            return checked
        glue = _glue_addresses(self.signature)
        if glue is None or kind not in glue[0] or self.n_outputs != self.signature.width(kind):
            return checked                 # (the glue's buffers hold exactly width(kind) outputs)
        from compiler import pyglue

        addresses, owner = glue
        return pyglue.make_builtin(addresses[kind], checked, _NAMES[kind], self._cell, doc,
                                   _TEXT_SIGNATURES[kind], keep=(owner, self._keep))

    def _check_kind(self, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        need = self.signature.width(kind)
        if self.n_outputs != need and not (kind == "values" and self.n_outputs > need):
            raise ValueError(f"a {kind} call needs a kernel of {need} outputs; this one has "
                             f"{self.n_outputs}")


GROUP_MAX_STATEMENTS = 4000
"""Programs of at most this many statements in all are compiled together by
:func:`build_kernels` (one object file, one JIT library)."""


def build_kernels(fns: dict, signature: Signature, backend: str) -> dict:
    """Kernels of several programs with one signature: ``{name: fn}`` -> ``{name: Kernel}``.

    The first program is compiled now. On the llvm back end, when all of them
    together have at most :data:`GROUP_MAX_STATEMENTS` statements, the rest are
    compiled with it into one object and one JIT library (a formula compiled
    in a loop then costs one library, not one per kernel: :mod:`compiler.jit`);
    otherwise, and on the other back ends, the rest are compiled on first use.

    Examples
    --------
    >>> from compiler.ir import Builder
    >>> b = Builder(1)
    >>> sq = b.finish([b.op("mul", b.input(0), b.input(0))])
    >>> ks = build_kernels({"values": sq}, Signature([None], n_values=1, n_wrt=0), "llvm")
    >>> ks["values"].entry("values")(3.0)
    9.0
    """
    names = list(fns)
    if not names:
        raise ValueError("build_kernels needs at least one program")
    natives: dict = {}
    if backend == "llvm" and len(names) > 1 \
            and sum(len(f) for f in fns.values()) <= GROUP_MAX_STATEMENTS \
            and all(llvm_supports(f) for f in fns.values()):
        from compiler.llvmjit import load_llvm_group

        group = load_llvm_group({("" if k == 0 else f"_{n}"): fns[n] for k, n in enumerate(names)})
        natives = {n: group["" if k == 0 else f"_{n}"] for k, n in enumerate(names)}
    return {n: Kernel(fns[n], signature, backend, lazy=k > 0 and n not in natives, name=n,
                      native=natives.get(n)) for k, n in enumerate(names)}


def _glue_addresses(sig: Signature) -> Optional[tuple]:
    """The glue functions of every kind of call with this signature, in one module:
    ``{kind: address}``, or None without glue. The module depends on the
    signature's shape only: the loader's cache makes it once per process (and
    once per machine: the object is cached on disk)."""
    from compiler.llvmjit import load_glue

    m, width = sig.n_values, sig.width("value_and_grad")
    entries = [("jacobian", width, "jacobian", m),
               ("values", m, "scalar" if m == 1 else "array", 1)]
    if m == 1:
        entries += [("value_and_grad", width, "tuple", 1), ("grad", width, "rest", 1)]
    return load_glue(sig.layout, sig.n_inputs, entries)
