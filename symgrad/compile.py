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

from typing import Optional, Sequence, Union

import numpy as np
import sympy as sp

from compiler import backends
from compiler.codegen import python_source
from symgrad.diff import _as_expr, _program
from symgrad.graph import lower
from symgrad.lowering import program_to_ir

__all__ = ["compile", "CompiledFunction"]

_BACKENDS = ("auto", "numba", "python")


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
    1-D array for an array argument) per entry of ``args``.
    """

    def __init__(self, exprs: list, args, wrt, backend: str) -> None:
        self.exprs = exprs
        self.args = tuple(args)
        self._specs, self._flat = _flatten_args(args)
        wrt_list = self._flat if wrt is None else _flatten_args(wrt)[1]
        missing_wrt = [w for w in wrt_list if w not in self._flat]
        if missing_wrt:
            raise ValueError(f"wrt symbols {missing_wrt} are not in args")
        self.wrt = tuple(wrt_list)
        free = lower(exprs).symbols
        unbound = [s for s in free if s not in set(self._flat)]
        if unbound:
            raise ValueError(
                f"free symbols {', '.join(map(str, unbound))} are not in args; "
                f"add them to args (or substitute numbers for them)")
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
        self.backend = "numba" if backend == "auto" else backend

        self.program = _program(exprs, self.wrt, multi=len(exprs) > 1)
        slots = {s: i for i, s in enumerate(self._flat)}
        self.n_inputs = len(self._flat)
        self.n_outputs = len(exprs)
        grads = [g for row in self.program.gradients for g in row]
        values = list(self.program.outputs)
        self.ir, self.ir_forward = program_to_ir(self.program, slots, self.n_inputs,
                                                 values + grads, values)
        self.source = python_source(self.ir, "value_and_grad")
        self.source_forward = python_source(self.ir_forward, "forward")
        self._load()

    def _load(self) -> None:
        if self.backend == "python":
            self._vg = backends.load_python(self.source, "value_and_grad")
            self._fw = backends.load_python(self.source_forward, "forward")
            self._vg_batch = self._fw_batch = None
            self.cache_path, self.cache_reused = None, False
        else:
            self._vg, self._vg_batch, self.cache_path, self.cache_reused = \
                backends.load_numba(self.source, "value_and_grad")
            self._fw, self._fw_batch, _, _ = backends.load_numba(self.source_forward, "forward")

    # -- argument packing ----------------------------------------------------------
    def _pack(self, call_args) -> tuple[np.ndarray, Optional[int]]:
        if len(call_args) != len(self._specs):
            raise TypeError(f"expected {len(self._specs)} arguments "
                            f"({', '.join(_spec_name(s) for s in self._specs)}), got {len(call_args)}")
        n = None
        arrays = []
        for spec, value in zip(self._specs, call_args):
            kind, sym, _ = spec
            try:
                arr = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError):
                raise TypeError(f"argument {_spec_name(spec)} must be numeric, got {value!r}") from None
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
        if n is None:
            flat = np.empty(self.n_inputs)
            for (kind, sym, start), arr in zip(self._specs, arrays):
                if kind == "scalar":
                    flat[start] = arr
                else:
                    flat[start:start + len(sym)] = arr
            return flat, None
        flat = np.empty((n, self.n_inputs))
        for (kind, sym, start), arr in zip(self._specs, arrays):
            if kind == "scalar":
                flat[:, start] = arr
            else:
                flat[:, start:start + len(sym)] = arr
        return flat, n

    def _run(self, call_args, with_grad: bool) -> tuple[np.ndarray, Optional[int]]:
        flat, n = self._pack(call_args)
        kernel, batch = (self._vg, self._vg_batch) if with_grad else (self._fw, self._fw_batch)
        width = len(self.ir.outputs) if with_grad else self.n_outputs
        if n is None:
            out = np.empty(width)
            kernel(flat, out)
        else:
            out = np.empty((n, width))
            if batch is not None:
                batch(flat, out)
            else:
                for i in range(n):
                    kernel(flat[i], out[i])
        return out, n

    # -- public calls -----------------------------------------------------------------
    def __call__(self, *args) -> Union[float, np.ndarray]:
        """Value(s) of the expression(s)."""
        out, n = self._run(args, with_grad=False)
        if self.n_outputs == 1:
            return float(out[0]) if n is None else out[:, 0]
        return out

    def value_and_grad(self, *args) -> tuple:
        """``(value, gradient)`` from one fused kernel; batched calls give
        values ``(n,)`` and gradients ``(n, len(wrt))``."""
        self._need_scalar("value_and_grad")
        out, n = self._run(args, with_grad=True)
        if n is None:
            return float(out[0]), out[1:]
        return out[:, 0], out[:, 1:]

    def grad(self, *args) -> np.ndarray:
        """Gradient w.r.t. ``wrt`` (shape ``(len(wrt),)``, or ``(n, len(wrt))`` batched)."""
        return self.value_and_grad(*args)[1]

    def jacobian(self, *args) -> np.ndarray:
        """Jacobian ``(n_outputs, len(wrt))`` (batched: ``(n, n_outputs, len(wrt))``)."""
        out, n = self._run(args, with_grad=True)
        m, k = self.n_outputs, len(self.wrt)
        if n is None:
            return out[m:].reshape(m, k)
        return out[:, m:].reshape(n, m, k)

    def _need_scalar(self, what: str) -> None:
        if self.n_outputs != 1:
            raise ValueError(f"{what} needs a single scalar output; this function has "
                             f"{self.n_outputs} outputs: use jacobian()")

    def __repr__(self) -> str:
        return (f"<CompiledFunction {self.backend}: {self.n_outputs} output(s), "
                f"args=({', '.join(_spec_name(s) for s in self._specs)}), "
                f"wrt={len(self.wrt)} vars, {len(self.ir)} SSA values>")


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
    backend : {"auto", "numba", "python"}
        ``"python"`` runs the generated source in pure Python (debugging).

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
    outs = [_as_expr(e) for e in exprs] if isinstance(exprs, (list, tuple)) else [_as_expr(exprs)]
    return CompiledFunction(outs, args, wrt, backend)
