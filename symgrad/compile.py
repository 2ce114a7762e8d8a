"""``symgrad.compile``: expressions and their gradients as native functions.

Reverse mode emits SSA IR straight from the expression DAG (:mod:`symgrad.ssa`),
through a front-end disk cache keyed on the DAG's structure
(:mod:`symgrad.ircache`: a second process skips differentiation), and the IR
is handed to the back end's kernel interface (:mod:`compiler.kernel`); the
SymPy gradient program and the Python source are built only when asked for
(``.program``, ``.source``). One fused kernel computes the values and the
gradient together, sharing every intermediate; a second, forward-only kernel
serves plain calls (compiled with the first into one library for small
programs, on first use for big ones: :func:`compiler.kernel.build_kernels`). :class:`CompiledFunction` is a
thin front end over the two: it turns ``args`` into a
:class:`compiler.signature.Signature` (which checks, packs and broadcasts
call arguments and shapes the results) and exposes the kernels' entry
points as its methods, fixed when it is built.

Arguments: each entry of ``args`` is a Symbol (one float argument) or a
sequence of Symbols (one 1-D array argument). A call may pass 1-D arrays of
length n for scalar arguments (and 2-D ``(n, k)`` arrays for array arguments):
the kernel then runs over the n points in parallel.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import numpy as np
import sympy as sp

from compiler.pysource import python_source
from compiler.kernel import build_kernels, llvm_supports
from compiler.signature import Signature
from symgrad.diff import _as_expr, _program
from symgrad.graph import lower
from symgrad.ircache import front_end_ir

__all__ = ["compile", "CompiledFunction"]

_BACKENDS = ("auto", "numba", "llvm", "python")


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
        graph = lower(exprs)          # once: the free-symbol check and the cache key use it
        free = graph.symbols
        unbound = [s for s in free if s not in bound]
        if unbound:
            raise ValueError(
                f"free symbols {', '.join(map(str, unbound))} are not in args; "
                f"add them to args (or substitute numbers for them)")

        # the IR straight from the DAG (or the front-end cache); the SymPy program,
        # the Python source: built on first use (properties below)
        self.n_inputs = len(self._flat)
        self.n_outputs = len(exprs)
        self.ir, self.ir_forward = front_end_ir(exprs, self._flat, self.wrt, graph=graph)
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
        return "llvm" if llvm_supports(self.ir) else "numba"

    def _load(self) -> None:
        """Build the signature and the two kernels, and take the entry points."""
        self.signature = Signature(
            [None if kind == "scalar" else len(sym) for kind, sym, _ in self._specs],
            self.n_outputs, len(self.wrt), [_spec_name(s) for s in self._specs])
        kernels = build_kernels({"value_and_grad": self.ir, "forward": self.ir_forward},
                                self.signature, self.backend)
        self._vg, self._fw = kernels["value_and_grad"], kernels["forward"]
        cls = CompiledFunction
        self.value_and_grad = self._vg.entry("value_and_grad", cls.value_and_grad.__doc__)
        self.grad = self._vg.entry("grad", cls.grad.__doc__)
        self.jacobian = self._vg.entry("jacobian", cls.jacobian.__doc__)
        self._call = self._fw.entry("values", cls.__call__.__doc__)
        self.native = self._vg.native
        self.cache_path, self.cache_reused = self._vg.cache_path, self._vg.cache_reused

    # -- public calls (instances hold their kernels' entry points under these names) --------
    @property
    def __call__(self) -> Callable[..., Union[float, np.ndarray]]:
        """Value(s) of the expression(s): a float, or ``(n,)`` batched
        (several outputs: ``(n_outputs,)``, batched ``(n, n_outputs)``).

        A property returning the entry point itself (the call glue's builtin
        function where there is one), so ``fn(x, y)`` adds no Python frame."""
        return self._call

    def value_and_grad(self, *args, reduce: Optional[str] = None) -> tuple:
        """``(value, gradient)`` from one fused kernel.

        Batched calls give values ``(n,)`` and gradients ``(n, len(wrt))``;
        ``reduce="sum"`` or ``"mean"`` reduces both over the batch (a float
        and a ``(len(wrt),)`` array).
        """
        return self._vg.checked("value_and_grad")(*args, reduce=reduce)

    def grad(self, *args, reduce: Optional[str] = None) -> np.ndarray:
        """Gradient w.r.t. ``wrt``: ``(len(wrt),)``, batched ``(n, len(wrt))``
        (``reduce="sum"``/``"mean"`` reduces over the batch)."""
        return self._vg.checked("grad")(*args, reduce=reduce)

    def jacobian(self, *args) -> np.ndarray:
        """Jacobian ``(n_outputs, len(wrt))`` (batched: ``(n, n_outputs, len(wrt))``)."""
        return self._vg.checked("jacobian")(*args)

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
        """How many native kernels this process loaded from the disk cache
        instead of compiling (LLVM: kernel object files; Numba: compiled
        kernel entries)."""
        shared = self._fw.library is not None and self._fw.library is self._vg.library
        return self._vg.cache_hits + (0 if shared else self._fw.cache_hits)

    @property
    def llvm_ir(self) -> str:
        """The LLVM IR of the ``value_and_grad`` kernel (for small programs the llvm
        back end compiles it in one module with the forward kernel)."""
        from compiler.llvmscalar import llvm_module

        return llvm_module(self.ir, "value_and_grad")

    def _need_scalar(self, what: str) -> None:
        self.signature.need_scalar(what)

    def __reduce__(self):
        # rebuilt in the new process; the compiled code comes from the disk cache
        return (_rebuild, (self.exprs, self.args, self.wrt, self._requested))

    def __repr__(self) -> str:
        return (f"<CompiledFunction {self.backend}: {self.n_outputs} output(s), "
                f"args=({', '.join(_spec_name(s) for s in self._specs)}), "
                f"wrt={len(self.wrt)} vars, {len(self.ir)} SSA values>")


def _rebuild(exprs, args, wrt, backend) -> "CompiledFunction":
    return CompiledFunction(list(exprs), args, list(wrt), backend)


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
        glue where the interpreter allows it, batches through SIMD kernels);
        Numba where an op has no LLVM template. ``"python"`` runs the generated source in pure Python
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
