"""Gradient checking: three independent derivatives must agree.

:func:`check_grad` evaluates, at one point,

* the symbolic gradient (the gradient program, run numerically),
* the tape engine (:func:`symgrad.tape.replay`), and
* central finite differences of the function itself,

and reports the worst disagreement. Central differences use the step
``h = eps**(1/3) * max(1, |x|)``, whose error is about 1e-10 relative for
smooth functions; near a kink (relu at 0, |x| at 0, a Max tie) finite
differences see the average slope and legitimately disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np
import sympy as sp

from symgrad.diff import _as_expr, _as_wrt, gradient_program
from symgrad.errors import GradientMismatch
from symgrad.evaluate import as_point, evaluate_graph, evaluate_program
from symgrad.graph import lower
from symgrad.tape import replay

__all__ = ["GradCheckReport", "check_grad", "finite_differences"]

_EPS = np.finfo(float).eps


@dataclass
class GradCheckReport:
    """Every number compared by :func:`check_grad`.

    Attributes
    ----------
    wrt : tuple of Symbol
    point : dict
    value : float
        The function's value at ``point``.
    gradients : dict of str -> ndarray
        ``"symbolic"``, ``"tape"``, ``"finite_diff"`` (and others, e.g.
        ``"compiled"``), each with one entry per ``wrt`` variable.
    max_abs_err, max_rel_err : float
        Worst disagreement of any source with the reference (``symbolic``).
    ok : bool
        Whether all agree within ``atol + rtol * |reference|``.
    """

    wrt: tuple
    point: dict
    value: float
    gradients: dict
    rtol: float
    atol: float
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0
    ok: bool = True
    worst: str = field(default="", repr=False)

    def __str__(self) -> str:
        names = list(self.gradients)
        head = f"{'var':>8} " + " ".join(f"{n:>22}" for n in names)
        rows = [f"check_grad at {{{', '.join(f'{k}: {v:g}' for k, v in self.point.items())}}}"
                f"  value = {self.value:.17g}", head]
        for j, w in enumerate(self.wrt):
            rows.append(f"{str(w):>8} " + " ".join(f"{self.gradients[n][j]:>22.15g}" for n in names))
        verdict = "OK" if self.ok else f"MISMATCH ({self.worst})"
        rows.append(f"max abs err {self.max_abs_err:.3g}, max rel err {self.max_rel_err:.3g} "
                    f"(rtol={self.rtol:g}, atol={self.atol:g}): {verdict}")
        return "\n".join(rows)


def finite_differences(f: sp.Expr, wrt: Sequence[sp.Symbol], point: Mapping) -> np.ndarray:
    """Central finite-difference gradient of ``f`` at ``point`` (float64).

    Examples
    --------
    >>> import sympy as sp
    >>> from symgrad.check import finite_differences
    >>> x = sp.Symbol("x")
    >>> round(float(finite_differences(x**3, [x], {x: 2.0})[0]), 6)
    12.0
    """
    graph = lower(_as_expr(f))
    pt = as_point(point, graph.symbols)
    out = graph.outputs[0]
    result = np.empty(len(wrt))
    for j, w in enumerate(wrt):
        x0 = pt.get(w, 0.0)
        h = _EPS ** (1.0 / 3.0) * max(1.0, abs(x0))
        hi, lo = dict(pt), dict(pt)
        hi[w], lo[w] = x0 + h, x0 - h
        result[j] = (evaluate_graph(graph, hi)[out] - evaluate_graph(graph, lo)[out]) / (2.0 * h)
    return result


def compare(report: GradCheckReport, reference: str = "symbolic") -> GradCheckReport:
    """Fill in the error fields of ``report`` against ``gradients[reference]``."""
    ref = np.asarray(report.gradients[reference], dtype=float)
    worst_excess = -math.inf
    for name, g in report.gradients.items():
        if name == reference:
            continue
        g = np.asarray(g, dtype=float)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            abs_err = np.abs(g - ref)
            both_nan = np.isnan(g) & np.isnan(ref)
            abs_err = np.where(both_nan | (g == ref), 0.0, abs_err)
            abs_err = np.where(np.isnan(abs_err), np.inf, abs_err)
            rel_err = abs_err / np.maximum(np.abs(ref), np.finfo(float).tiny)
        rel_err = np.where(abs_err == 0.0, 0.0, rel_err)
        if abs_err.size:
            report.max_abs_err = max(report.max_abs_err, float(abs_err.max()))
            report.max_rel_err = max(report.max_rel_err, float(rel_err.max()))
            excess = abs_err - (report.atol + report.rtol * np.abs(ref))
            j = int(np.argmax(excess))
            if excess[j] > 0 and excess[j] > worst_excess:
                worst_excess = excess[j]
                report.ok = False
                report.worst = (f"d/d{report.wrt[j]}: {name} {g[j]:.17g} vs "
                                f"{reference} {ref[j]:.17g}")
    return report


def check_grad(f, wrt, point: Optional[Mapping] = None, *,
               rtol: float = 1e-6, atol: float = 1e-8, raise_on_error: bool = True
               ) -> GradCheckReport:
    """Check a gradient three independent ways: symbolic, tape, finite differences.

    Parameters
    ----------
    f : sympy.Expr or CompiledFunction
        Scalar expression, or a compiled function (then call
        ``check_grad(fn, point)``: its ``wrt`` is used and the compiled
        gradient is checked against symbolic, tape and finite differences).
    wrt : sequence of Symbol
        Variables to differentiate with respect to.
    point : dict
        ``{symbol: number}`` for every free symbol of ``f``.
    rtol, atol : float
        Agreement required: ``|g - g_symbolic| <= atol + rtol * |g_symbolic|``.
    raise_on_error : bool
        Raise :class:`~symgrad.errors.GradientMismatch` on disagreement
        (otherwise return the report with ``ok=False``).

    Returns
    -------
    GradCheckReport

    Examples
    --------
    >>> import sympy as sp, symgrad as sg
    >>> x, y = sp.symbols("x y")
    >>> report = sg.check_grad(x * sp.tanh(y) + sp.log(1 + x**2) / y, [x, y], {x: 1.5, y: 0.7})
    >>> report.ok, report.max_rel_err < 1e-8
    (True, True)
    """
    from symgrad.compile import CompiledFunction

    if isinstance(f, CompiledFunction):
        if point is not None:
            raise TypeError("check_grad(fn, point): a compiled function takes only the point")
        return _check_compiled(f, wrt, rtol=rtol, atol=atol, raise_on_error=raise_on_error)
    if point is None:
        raise TypeError("check_grad(f, wrt, point): point {symbol: number} is required")
    expr = _as_expr(f)
    w = _as_wrt(wrt)
    graph = lower(expr)
    pt = as_point(point, graph.symbols + w)

    program = gradient_program(expr, w)
    (value,), (symbolic,) = evaluate_program(program, pt)
    _, tape_grads = replay(expr, pt)
    report = GradCheckReport(
        wrt=w, point=pt, value=value,
        gradients={
            "symbolic": np.array(symbolic, dtype=float),
            "tape": np.array([tape_grads[s] for s in w], dtype=float),
            "finite_diff": finite_differences(expr, w, pt),
        },
        rtol=rtol, atol=atol)
    compare(report)
    if raise_on_error and not report.ok:
        raise GradientMismatch(f"gradients disagree: {report.worst}\n{report}", report)
    return report


def _check_compiled(fn, point: Mapping, *, rtol: float, atol: float,
                    raise_on_error: bool) -> GradCheckReport:
    fn._need_scalar("check_grad")
    report = check_grad(fn.exprs[0], fn.wrt, point, rtol=rtol, atol=atol, raise_on_error=False)
    call_args = []
    for kind, sym, _ in fn._specs:
        if kind == "scalar":
            call_args.append(report.point[sym])
        else:
            call_args.append(np.array([report.point[s] for s in sym]))
    value, grads = fn.value_and_grad(*call_args)
    report.gradients = {"compiled": np.asarray(grads, dtype=float), **report.gradients}
    report.ok, report.worst, report.max_abs_err, report.max_rel_err = True, "", 0.0, 0.0
    compare(report, reference="compiled")
    if raise_on_error and not report.ok:
        raise GradientMismatch(f"gradients disagree: {report.worst}\n{report}", report)
    return report
