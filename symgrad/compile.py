"""``symgrad.compile``: expressions and their gradients as native functions.

The gradient program (:mod:`symgrad.diff`) is lowered to SSA IR
(:mod:`symgrad.lowering`), printed as Python source and compiled by a back
end (:mod:`compiler.backends`). One fused kernel computes the values and the
gradient together, sharing every intermediate; a second, forward-only kernel
serves plain calls.

Arguments: each entry of ``args`` is a Symbol (one float argument) or a
sequence of Symbols (one 1-D array argument). A call may pass 1-D arrays of
length n for scalar arguments (and 2-D ``(n, k)`` arrays for array arguments):
the kernel then runs over the n points in parallel.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import numpy as np
import sympy as sp

from compiler import backends
from compiler.codegen import batch_entry_source, entry_source, python_source
from compiler.llvmgen import SUPPORTED_OPS
from symgrad.diff import _as_expr, _program
from symgrad.graph import lower
from symgrad.ircache import front_end_ir

__all__ = ["compile", "CompiledFunction"]

_BACKENDS = ("auto", "numba", "llvm", "python")
AUTO_NUMBA_MAX = 400
"""Where the llvm call glue (:mod:`compiler.pyglue`) cannot be used (other
Python implementations, debug builds), SSA values up to which
``backend="auto"`` uses Numba: its dispatcher then gives the lowest call
overhead. Everywhere else ``"auto"`` means llvm: compiles in milliseconds,
~0.2 us a call, linear compile time at any size."""


def _flatten_args(args) -> tuple[list, list]:
    if isinstance(args, sp.Basic) or isinstance(args, str):
        raise TypeError("args must be a list, e.g. [x, y] or [w, x] with w a tuple of symbols")
    specs, flat = [], []
    for i, a in enumerate(args):
        if isinstance(a, sp.Symbol):
            specs.append(("scalar", a, len(flat)))
            flat.append(a)
        elif isinstance(a, (list, tuple)) and all(isinstance(s, sp.Symbol) for s in a) and len(a):
            specs.append(("array", tuple(a), len(flat)))
            flat.extend(a)
        else:
            raise TypeError(
                f"args[{i}] = {a!r}: each argument must be a SymPy Symbol or a non-empty "
                f"sequence of Symbols (one 1-D array argument)")
    if len(set(flat)) != len(flat):
        raise ValueError("a symbol appears twice in args")
    return specs, flat


class CompiledFunction:
    """A compiled expression (or list of expressions) with its derivatives.

    Built by :func:`symgrad.compile`. Call it like the formula: one float (or
    1-D array for an array argument) per entry of ``args``; pass 1-D arrays
    of length n for float arguments (``(n, k)`` for array arguments) to
    evaluate n points in parallel.
    """

    def __init__(self, exprs: list, args, wrt, backend: str) -> None:
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
        self.exprs = exprs
        self.args = tuple(args)
        self._specs, self._flat = _flatten_args(args)
        wrt_list = self._flat if wrt is None else _flatten_args(wrt)[1]
        bound = set(self._flat)
        missing_wrt = [w for w in wrt_list if w not in bound]
        if missing_wrt:
            raise ValueError(f"wrt symbols {missing_wrt} are not in args")
        self.wrt = tuple(wrt_list)
        self._requested = backend
        free = lower(exprs).symbols
        unbound = [s for s in free if s not in bound]
        if unbound:
            raise ValueError(
                f"free symbols {', '.join(map(str, unbound))} are not in args; "
                f"add them to args (or substitute numbers for them)")

        # the IR straight from the DAG (or the front-end cache); the SymPy program,
        # the Python source: built on first use (properties below)
        self.n_inputs = len(self._flat)
        self.n_outputs = len(exprs)
        self.ir, self.ir_forward = front_end_ir(exprs, self._flat, self.wrt)
        self._program = self._source = self._source_forward = None
        self.backend = backend if backend != "auto" else self._auto_backend()
        self._hessian_fn: Optional[CompiledFunction] = None
        self._load()

    @property
    def program(self):
        """The gradient program (:class:`~symgrad.program.GradientProgram`: the
        formulas), built on first use: compiling does not need it."""
        if self._program is None:
            self._program = _program(self.exprs, self.wrt, multi=len(self.exprs) > 1)
        return self._program

    @property
    def source(self) -> str:
        """Python source of the value-and-gradient kernel (built on first use)."""
        if self._source is None:
            self._source = python_source(self.ir, "value_and_grad")
        return self._source

    @property
    def source_forward(self) -> str:
        """Python source of the forward kernel (built on first use)."""
        if self._source_forward is None:
            self._source_forward = python_source(self.ir_forward, "forward")
        return self._source_forward

    def _auto_backend(self) -> str:
        from compiler import pyglue

        if not _llvm_supports(self.ir):
            return "numba"
        if len(self.ir) <= AUTO_NUMBA_MAX and not pyglue.supported():
            return "numba"
        return "llvm"

    def _load(self) -> None:
        layout = [(start, None if kind == "scalar" else len(sym)) for kind, sym, start in self._specs]
        single = self.n_outputs == 1
        self.cache_path, self.cache_reused = None, False
        self._modules = ()
        self._batch_entries = None
        self._simd: dict = {}
        fast_vg = fast_fw = None
        if self.backend == "python":
            vg = backends.load_python(self.source, "value_and_grad")
            fw = backends.load_python(self.source_forward, "forward")
            # plain Python floats in (not NumPy scalars): IEEE results, no warnings
            self._vg = _Kernel(lambda inp, out: vg(inp.tolist(), out), None)
            self._fw = _Kernel(lambda inp, out: fw(inp.tolist(), out), None)
        elif self.backend == "numba":
            width = len(self.ir.outputs)
            mod_vg, self.cache_path, self.cache_reused = backends.load_numba(
                self.source, "value_and_grad",
                entry=entry_source("value_and_grad", "entry", layout, self.n_inputs, width,
                                   "tuple" if single else "array")
                + batch_entry_source("value_and_grad", "entry_batch", layout, self.n_inputs, width))
            mod_fw, _, _ = backends.load_numba(
                self.source_forward, "forward",
                entry=entry_source("forward", "entry", layout, self.n_inputs, self.n_outputs,
                                   "scalar" if single else "array")
                + batch_entry_source("forward", "entry_batch", layout, self.n_inputs,
                                     self.n_outputs))
            entries = (mod_vg.entry_batch, mod_fw.entry_batch)
            self._batch_entries = lambda: entries
            self._modules = (mod_vg, mod_fw)
            self._vg = _Kernel(mod_vg.value_and_grad, mod_vg.batch)
            self._fw = _Kernel(mod_fw.forward, mod_fw.batch)
            if single:
                fast_vg, fast_fw = mod_vg.entry, mod_fw.entry
        else:
            from compiler.llvmjit import load_llvm

            kvg = load_llvm(self.ir)
            self.cache_path, self.cache_reused = kvg.path, kvg.reused
            self._vg = _Kernel(kvg.call, kvg.call_batch)
            self._fw = _LazyKernel(lambda: load_llvm(self.ir_forward))  # compiled on first call
            self.native = kvg
            self._modules = (kvg,)
            self._batch_entries = _NumbaGlue(self, layout, len(self.ir.outputs))
            if self._attach_glue(kvg, layout, single):
                return
            if single and all(kind == "scalar" for kind, _, _ in self._specs):
                fast_vg = kvg.point_caller("tuple")
                fast_fw = _LazyPoint(lambda: load_llvm(self.ir_forward).point_caller("scalar"))
        if fast_vg is not None:
            self.value_and_grad = _fast_dispatch(self._specs, fast_vg, self._value_and_grad,
                                                 CompiledFunction.value_and_grad.__doc__, True)
            self._call = _fast_dispatch(self._specs, fast_fw, self._forward, None, False)
            if self.backend == "llvm":
                _promote_when_hot(self.value_and_grad, lambda: self._numba_entry(
                    self.native, len(self.ir.outputs), "tuple", layout))
                _promote_when_hot(self._call, lambda: self._numba_entry(
                    load_llvm(self.ir_forward), self.n_outputs, "scalar", layout))
        else:
            self._call = self._forward

    def _attach_glue(self, kvg, layout: list, single: bool) -> bool:
        """Make ``value_and_grad``, ``grad`` and plain calls builtin functions that
        run the llvm kernels straight from Python (:mod:`compiler.pyglue`; ~0.2 us
        a call); anything they do not take goes to the checked Python paths.
        ``grad``, ``jacobian`` (so ``hessian``) and plain calls get theirs on
        first use (~25 ms of LLVM each)."""
        from compiler.llvmjit import load_glue, load_llvm

        if single:
            vg = load_glue(kvg, layout, "tuple", self._value_and_grad, "value_and_grad",
                           CompiledFunction.value_and_grad.__doc__, "(*args, reduce=None)")
            if vg is None:
                return False
            self.value_and_grad = vg

            def first_grad(*args, **kwargs):
                self.grad = load_glue(kvg, layout, "rest", self._grad, "grad",
                                      CompiledFunction.grad.__doc__, "(*args, reduce=None)")
                return self.grad(*args, **kwargs)
            self.grad = first_grad
        result = "scalar" if single else "array"

        def first_jacobian(*args, **kwargs):
            self.jacobian = load_glue(kvg, layout, "jacobian", self._jacobian, "jacobian",
                                      CompiledFunction.jacobian.__doc__, rows=self.n_outputs)
            return self.jacobian(*args, **kwargs)
        self.jacobian = first_jacobian

        def first_call(*args, **kwargs):   # the forward kernel is compiled on first use
            glue = load_glue(load_llvm(self.ir_forward), layout, result, self._forward, "forward")
            self._call = glue if glue is not None else self._forward
            return self._call(*args, **kwargs)
        self._call = first_call
        return True

    @staticmethod
    def _numba_entry(kernel, width: int, result: str, layout: list):
        """A Numba entry calling an llvm kernel by its registered symbol (~1 us a call,
        against ~3 us through ctypes); compiled once, then cached on disk."""
        from compiler.codegen import extern_kernel_source

        mod, _, _ = backends.load_numba(
            extern_kernel_source(kernel.symbol, "kernel"), "kernel", batch=False, extern=True,
            entry=entry_source("kernel", "entry", layout, kernel.n_inputs, width, result))
        return mod.entry

    # -- argument packing ----------------------------------------------------------
    def _pack(self, call_args) -> tuple[np.ndarray, Optional[int]]:
        if len(call_args) != len(self._specs):
            raise TypeError(f"expected {len(self._specs)} arguments "
                            f"({', '.join(_spec_name(s) for s in self._specs)}), got {len(call_args)}")
        n = None
        arrays = []
        for spec, value in zip(self._specs, call_args):
            kind, sym, _ = spec
            if isinstance(value, (str, bytes)) or value is None:
                raise TypeError(f"argument {_spec_name(spec)} must be numeric, got {value!r}")
            kind_of = getattr(value, "dtype", None)
            if kind_of is not None and kind_of.kind not in "biuf":
                raise TypeError(f"argument {_spec_name(spec)} must be numeric, got dtype {kind_of}")
            try:
                arr = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError):
                raise TypeError(f"argument {_spec_name(spec)} must be numeric, got {value!r}") from None
            if kind_of is None and np.asarray(value).dtype.kind not in "biuf":
                raise TypeError(f"argument {_spec_name(spec)} must be numeric, got {value!r}")
            want = 0 if kind == "scalar" else 1
            if kind == "array" and arr.ndim >= 1 and arr.shape[-1] != len(sym):
                raise ValueError(f"argument {_spec_name(spec)} must have length {len(sym)}, "
                                 f"got shape {arr.shape}")
            if arr.ndim == want + 1:
                if n is None:
                    n = arr.shape[0]
                elif arr.shape[0] != n:
                    raise ValueError(f"batched arguments disagree in length: {n} and "
                                     f"{arr.shape[0]} (argument {_spec_name(spec)})")
            elif arr.ndim != want:
                shape = "a number or a 1-D array" if kind == "scalar" else f"shape ({len(sym)},) or (n, {len(sym)})"
                raise ValueError(f"argument {_spec_name(spec)} must be {shape}, got shape {arr.shape}")
            arrays.append(arr)
        if n is not None and self._batch_entries is not None:
            return arrays, n                  # the batch entry reads the arrays themselves
        if n is None:
            flat = np.empty(self.n_inputs)
            for (kind, sym, start), arr in zip(self._specs, arrays):
                if kind == "scalar":
                    flat[start] = arr
                else:
                    flat[start:start + len(sym)] = arr
            return flat, None
        flat = np.empty((self.n_inputs, n))   # one row per input: points are columns
        for (kind, sym, start), arr in zip(self._specs, arrays):
            if kind == "scalar":
                flat[start] = arr
            else:
                flat[start:start + len(sym)] = arr.T if arr.ndim == 2 else arr[:, None]
        return flat, n

    def _run(self, call_args, with_grad: bool) -> tuple[np.ndarray, Optional[int]]:
        flat, n = self._pack(call_args)
        if n is not None:
            simd = self._simd_kernel(with_grad)
            if simd is not None:
                return simd(_columns(self._specs, flat), n), n
        if n is not None and self._batch_entries is not None:
            args = []
            for (kind, sym, _), arr in zip(self._specs, flat):
                shape = (n,) if kind == "scalar" else (n, len(sym))
                args.append(arr if arr.shape == shape else np.broadcast_to(arr, shape))
            entry = self._batch_entries()[0 if with_grad else 1]
            return entry(*args).T, n          # (width, n) view of the (n, width) result
        kernel = self._vg if with_grad else self._fw
        width = len(self.ir.outputs) if with_grad else self.n_outputs
        if n is None:
            out = np.empty(width)
            kernel.call(flat, out)
        else:
            out = np.empty((width, n))
            kernel.call_batch(flat, out)
        return out, n

    def _simd_kernel(self, with_grad: bool):
        """The SIMD batch kernel (:mod:`compiler.llvmvec`) for native back ends,
        compiled on the first batched call; None when there is none."""
        key = "vg" if with_grad else "fw"
        if key not in self._simd:
            kernel = None
            ir = self.ir if with_grad else self.ir_forward
            if self.backend != "python" and _llvm_supports(ir):
                from compiler.llvmjit import load_vector

                kernel = load_vector(ir)
            self._simd[key] = kernel
        return self._simd[key]

    # -- public calls -----------------------------------------------------------------
    @property
    def __call__(self) -> Callable[..., Union[float, np.ndarray]]:
        """Value(s) of the expression(s): a float, or ``(n,)`` batched
        (several outputs: ``(n_outputs,)``, batched ``(n, n_outputs)``).

        A property returning the entry point itself (the call glue's builtin
        function where there is one), so ``fn(x, y)`` adds no Python frame."""
        return self._call

    def _forward(self, *args):
        out, n = self._run(args, with_grad=False)
        if self.n_outputs == 1:
            return float(out[0]) if n is None else out[0]
        return out if n is None else out.T

    def value_and_grad(self, *args, reduce: Optional[str] = None) -> tuple:
        """``(value, gradient)`` from one fused kernel.

        Batched calls give values ``(n,)`` and gradients ``(n, len(wrt))``;
        ``reduce="sum"`` or ``"mean"`` reduces both over the batch (a float
        and a ``(len(wrt),)`` array).
        """
        return self._value_and_grad(*args, reduce=reduce)

    def _value_and_grad(self, *args, reduce: Optional[str] = None) -> tuple:
        self._need_scalar("value_and_grad")
        if reduce not in (None, "sum", "mean"):
            raise ValueError(f"reduce must be None, 'sum' or 'mean', got {reduce!r}")
        out, n = self._run(args, with_grad=True)
        if n is None:
            return float(out[0]), out[1:]
        if reduce is None:
            return out[0], out[1:].T
        total = out.sum(axis=1)
        if reduce == "mean":
            total /= max(n, 1)
        return float(total[0]), total[1:]

    def grad(self, *args, reduce: Optional[str] = None) -> np.ndarray:
        """Gradient w.r.t. ``wrt``: ``(len(wrt),)``, batched ``(n, len(wrt))``
        (``reduce="sum"``/``"mean"`` reduces over the batch)."""
        return self.value_and_grad(*args, reduce=reduce)[1]

    def _grad(self, *args, reduce: Optional[str] = None) -> np.ndarray:
        return self._value_and_grad(*args, reduce=reduce)[1]

    def jacobian(self, *args) -> np.ndarray:
        """Jacobian ``(n_outputs, len(wrt))`` (batched: ``(n, n_outputs, len(wrt))``)."""
        return self._jacobian(*args)

    def _jacobian(self, *args) -> np.ndarray:
        out, n = self._run(args, with_grad=True)
        m, k = self.n_outputs, len(self.wrt)
        if n is None:
            return out[m:].reshape(m, k)
        return out[m:].reshape(m, k, n).transpose(2, 0, 1)

    def hessian(self, *args) -> np.ndarray:
        """Hessian ``(len(wrt), len(wrt))`` of a scalar output (batched:
        ``(n, len(wrt), len(wrt))``). Compiled on first use: the gradient's
        own Jacobian, reverse over reverse, with the same back end."""
        self._need_scalar("hessian")
        if self._hessian_fn is None:
            _, grads = self.program.expressions()
            self._hessian_fn = CompiledFunction(list(grads[0]), self.args, list(self.wrt),
                                                self._requested)
        return self._hessian_fn.jacobian(*args)

    @property
    def cache_hits(self) -> int:
        """How many native functions this process loaded from the disk cache
        instead of compiling (Numba: jitted functions so far called; LLVM:
        kernel object files)."""
        hits = 0
        for mod in self._modules:
            if hasattr(mod, "reused"):
                hits += int(mod.reused)
                continue
            for f in ("value_and_grad", "forward", "batch", "entry"):
                disp = getattr(mod, f, None)
                if disp is not None:
                    hits += sum(disp.stats.cache_hits.values())
        return hits

    @property
    def llvm_ir(self) -> str:
        """The LLVM IR the llvm back end compiles for ``value_and_grad``."""
        from compiler.llvmgen import llvm_module

        return llvm_module(self.ir, "value_and_grad")

    def _need_scalar(self, what: str) -> None:
        if self.n_outputs != 1:
            raise ValueError(f"{what} needs a single scalar output; this function has "
                             f"{self.n_outputs} outputs: use jacobian()")

    def __reduce__(self):
        # rebuilt in the new process; the compiled code comes from the disk cache
        return (_rebuild, (self.exprs, self.args, self.wrt, self._requested))

    def __repr__(self) -> str:
        return (f"<CompiledFunction {self.backend}: {self.n_outputs} output(s), "
                f"args=({', '.join(_spec_name(s) for s in self._specs)}), "
                f"wrt={len(self.wrt)} vars, {len(self.ir)} SSA values>")


class _Kernel:
    """One back end's ``call(inp, out)`` and ``call_batch(inp2d, out2d)``."""

    __slots__ = ("call", "_batch")

    def __init__(self, call, batch) -> None:
        self.call = call
        self._batch = batch

    def call_batch(self, inp: np.ndarray, out: np.ndarray) -> None:
        """Points are columns: ``inp`` (n_inputs, n), ``out`` (n_outputs, n)."""
        if self._batch is not None:
            self._batch(inp, out)
        else:
            for i in range(inp.shape[1]):
                self.call(np.ascontiguousarray(inp[:, i]), out[:, i])


class _LazyKernel:
    """A kernel compiled on first use (the forward-only llvm kernel: models
    mostly need value_and_grad, so its compile is not paid up front)."""

    def __init__(self, load) -> None:
        self._load, self._kernel = load, None

    def _get(self):
        if self._kernel is None:
            self._kernel = self._load()
        return self._kernel

    def call(self, inp: np.ndarray, out: np.ndarray) -> None:
        self._get().call(inp, out)

    def call_batch(self, inp: np.ndarray, out: np.ndarray) -> None:
        self._get().call_batch(inp, out)


class _NumbaGlue:
    """Numba ``prange`` entries around llvm kernels (built on first batched call):
    batches read the user's arrays directly, no packing, no Python per point."""

    def __init__(self, fn: "CompiledFunction", layout: list, width: int) -> None:
        self._fn, self._layout, self._width, self._entries = fn, layout, width, None

    def __call__(self) -> tuple:
        if self._entries is None:
            from compiler.codegen import extern_kernel_source
            from compiler.llvmjit import load_llvm

            fn = self._fn
            mods = []
            for kernel, width in ((fn.native, self._width),
                                  (load_llvm(fn.ir_forward), fn.n_outputs)):
                mod, _, _ = backends.load_numba(
                    extern_kernel_source(kernel.symbol, "kernel"), "kernel", batch=False, extern=True,
                    entry=batch_entry_source("kernel", "entry_batch", self._layout, fn.n_inputs, width))
                mods.append(mod.entry_batch)
            self._entries = tuple(mods)
        return self._entries


class _LazyPoint:
    """``point_caller`` of a kernel compiled on first use."""

    def __init__(self, make) -> None:
        self._make, self._fn = make, None

    def __call__(self, *args):
        if self._fn is None:
            self._fn = self._make()
        return self._fn(*args)


def _llvm_supports(ir) -> bool:
    """Whether the llvm templates cover every op of an SSA function."""
    return {ins.op for ins in ir.instrs} <= SUPPORTED_OPS | {"input", "const"}


def _columns(specs, arrays) -> list:
    """``(array, offset, stride)`` of every flat input, in elements, reading the
    callers' float64 arrays in place (broadcast values have stride 0)."""
    cols = []
    for (kind, sym, _), arr in zip(specs, arrays):
        if any(s % 8 for s in arr.strides) or arr.ctypes.data % 8:
            arr = np.ascontiguousarray(arr)       # misaligned views: copy once
        if kind == "scalar":
            cols.append((arr, 0, arr.strides[0] // 8 if arr.ndim else 0))
        else:
            step = arr.strides[-1] // 8
            stride = arr.strides[0] // 8 if arr.ndim == 2 else 0
            cols.extend((arr, j * step, stride) for j in range(len(sym)))
    return cols


def _rebuild(exprs, args, wrt, backend) -> "CompiledFunction":
    return CompiledFunction(list(exprs), args, list(wrt), backend)


def _fast_dispatch(specs, fast, slow, doc, with_reduce: bool):
    """A Python function that sends single-point calls with exact float /
    float64-vector arguments straight to the native entry and everything
    else (batches, ints, lists, bad input, ``reduce=``) to ``slow``, which
    checks and packs.

    Generated from argument positions only (no user text); positional
    parameters with a sentinel default keep the fast path to a few type
    checks while wrong argument counts still reach ``slow``'s message.
    """
    names = [f"a{i}" for i in range(len(specs))]
    checks = []
    for (kind, sym, _), a in zip(specs, names):
        if kind == "scalar":
            checks.append(f"(type({a}) is float or type({a}) is NPF)")
        else:
            checks.append(f"type({a}) is ndarray and {a}.ndim == 1 and {a}.shape[0] == {len(sym)} "
                          f"and {a}.dtype is F64")
    if with_reduce:
        checks.append("reduce is None")
    params = ", ".join(f"{a}=MISSING" for a in names)
    kw = ", reduce=None" if with_reduce else ""
    src = (f"def dispatch({params}{', ' if names else ''}*more{kw}):\n"
           f"    if {' and '.join(checks) or 'True'} and not more:\n"
           f"        return fast({', '.join(names)})\n"
           f"    args = [a for a in ({', '.join(names)}{',' if len(names) == 1 else ''}) "
           f"if a is not MISSING]\n"
           f"    return slow(*args, *more{', reduce=reduce' if with_reduce else ''})\n")
    namespace = {"fast": fast, "slow": slow, "ndarray": np.ndarray, "F64": np.dtype(np.float64),
                 "NPF": np.float64,
                 "MISSING": _MISSING}
    exec(src, namespace)  # noqa: S102 - built from argument positions and lengths only
    dispatch = namespace["dispatch"]
    dispatch.__doc__ = doc
    return dispatch


_MISSING = object()
HOT_CALLS = 200
"""Single-point calls of an llvm kernel go through ctypes until this many have
been made; then a Numba entry (compiled once, ~0.3 s, cached) takes over:
a short script pays no Numba compile, a hot loop gets the fast path."""


def _promote_when_hot(dispatch, make_hot) -> None:
    """Swap the ``fast`` callable of a generated dispatcher for ``make_hot()``
    after :data:`HOT_CALLS` calls."""
    namespace = dispatch.__globals__
    cold = namespace["fast"]
    left = [HOT_CALLS]

    def counting(*args):
        left[0] -= 1
        if left[0] <= 0:
            namespace["fast"] = make_hot()
        return cold(*args)
    namespace["fast"] = counting


def _spec_name(spec) -> str:
    kind, sym, _ = spec
    return str(sym) if kind == "scalar" else f"[{sym[0]}..{sym[-1]}]"


def compile(exprs, args: Sequence, wrt: Optional[Sequence] = None, *,  # noqa: A001
            backend: str = "auto") -> CompiledFunction:
    """Compile an expression (or a list of them) and its gradient to native code.

    Parameters
    ----------
    exprs : sympy.Expr or list of sympy.Expr
    args : list
        Symbols (float arguments) or sequences of symbols (1-D array arguments),
        in call order. Every free symbol of ``exprs`` must appear.
    wrt : list, optional
        Variables to differentiate with respect to (same forms as ``args``);
        default: all of ``args``.
    backend : {"auto", "numba", "llvm", "python"}
        ``"auto"``: LLVM (IR emitted directly, compiled with llvmlite in
        bounded chunks; single-point calls enter it through a builtin-function
        glue, batches through SIMD kernels); Numba where the interpreter does
        not allow the glue (see :data:`AUTO_NUMBA_MAX`) or an op has no LLVM
        template. ``"python"`` runs the generated source in pure Python
        (debugging). Single-point calls give the same bits on every back end;
        batches use SIMD math (within a few ulp; see the README).

    Returns
    -------
    CompiledFunction

    Examples
    --------
    >>> import sympy as sp, symgrad as sg
    >>> x, y = sp.symbols("x y")
    >>> fn = sg.compile(x * sp.tanh(y) + sg.relu(x - y), [x, y], backend="python")
    >>> round(fn(1.5, 0.7), 12)
    1.706551665676
    >>> fn.grad(1.5, 0.7)
    array([ 1.60436778, -0.04789062])
    """
    if not isinstance(exprs, (list, tuple)) and any(isinstance(a, sp.MatrixSymbol) for a in args):
        from symgrad.matrix.compile import CompiledLayers

        if backend not in ("auto", "llvm", "numba"):
            raise ValueError(f"layer-level expressions compile to loop code with backend "
                             f"'llvm' (the default) or 'numba', not {backend!r}")
        return CompiledLayers(exprs, args, wrt, "llvm" if backend == "auto" else backend)
    outs = [_as_expr(e) for e in exprs] if isinstance(exprs, (list, tuple)) else [_as_expr(exprs)]
    return CompiledFunction(outs, args, wrt, backend)
