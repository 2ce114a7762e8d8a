"""User ops: from one :func:`symgrad.register_op` call to a back-end record.

:func:`symgrad.register_op` describes how to compute a new op in one of two
ways, and this module turns either into a :class:`compiler.ops.Primitive`
whose name becomes the op's ``impl``, so lowering, reverse mode, the tape
engine and every back end treat the op like a built-in one:

* ``decompose=lambda a: a / (1 + sp.Abs(a))``: a SymPy expression of
  placeholder arguments, lowered once through the op table
  (:func:`symgrad.lowering.emit_expr`) to a small SSA program, which
  :func:`compiler.ops.user.register_decomposition` makes a primitive (its
  template is the parts' templates: native and SIMD where they are). The
  decomposition also gives the partials (reverse mode on the placeholders,
  :func:`symgrad.diff.grad`) when none are given.
* ``forward=lambda a: a / (1 + abs(a))``: a Python function of floats;
  :func:`compiler.ops.user.register_forward` makes it a primitive that the
  native back ends compile with Numba.
"""

from __future__ import annotations

from typing import Callable, Sequence

import sympy as sp

from compiler.ir import Builder, Function
from symgrad.errors import UnsupportedOperation

__all__ = ["placeholders", "decomposition_program", "decomposition_partials"]


def placeholders(arity: int) -> tuple:
    """The symbols a decomposition is evaluated on: ``_u0, _u1, ...``."""
    return sp.symbols(f"_u0:{arity}") if arity else ()


def _decomposed(name: str, decompose: Callable, arity: int) -> sp.Expr:
    try:
        expr = sp.sympify(decompose(*placeholders(arity)))
    except (TypeError, ValueError, AttributeError, sp.SympifyError) as err:
        raise TypeError(f"decompose of op {name!r} must return a SymPy expression of its "
                        f"{arity} argument(s), e.g. decompose=lambda a: a / (1 + sympy.Abs(a)); "
                        f"calling it on symbols failed: {err}") from None
    if not isinstance(expr, sp.Expr) or isinstance(expr, sp.MatrixExpr):
        raise TypeError(f"decompose of op {name!r} must return a scalar SymPy expression, "
                        f"got {expr!r}")
    return expr


def decomposition_program(name: str, decompose: Callable, arity: int) -> Function:
    """The SSA program of ``decompose(u0, ..., u{arity-1})``: input ``k`` is argument ``k``.

    Examples
    --------
    >>> import sympy as sp
    >>> print(decomposition_program("softsign", lambda a: a / (1 + sp.Abs(a)), 1))
    v0 = in[0]
    v1 = 1.0
    v2 = abs_(v0)
    v3 = add(v1, v2)
    v4 = -1.0
    v5 = pow(v3, v4)
    v6 = mul(v0, v5)
    out[0] = v6
    """
    from symgrad.lowering import emit_expr   # late: lowering imports the op table

    expr = _decomposed(name, decompose, arity)
    b = Builder(arity)
    slots = {u: b.input(k) for k, u in enumerate(placeholders(arity))}

    def value(sym: sp.Symbol) -> int:
        if sym in slots:
            return slots[sym]
        raise ValueError(f"decompose of op {name!r} uses the symbol {sym}, which is not one of "
                         f"its arguments: a decomposition is a function of the op's inputs only")

    try:
        out = emit_expr(b, expr, value)
    except UnsupportedOperation as err:
        raise UnsupportedOperation(f"the decomposition of op {name!r} cannot be compiled: "
                                   f"{err}") from None
    return b.finish([out])


def decomposition_partials(name: str, decompose: Callable, arity: int) -> Callable:
    """``partials(out, *args)`` of the decomposition: its gradient w.r.t. the
    placeholders (reverse mode, once), with the arguments substituted.

    Examples
    --------
    >>> import sympy as sp
    >>> x = sp.Symbol("x")
    >>> partials = decomposition_partials("sq", lambda a: a * a, 1)
    >>> partials(None, sp.sin(x))
    (2*sin(x),)
    """
    from symgrad.diff import grad   # late: diff imports the op table

    holders = placeholders(arity)
    expr = _decomposed(name, decompose, arity)
    rules: Sequence[sp.Expr] = tuple(grad(expr, list(holders))) if arity else ()

    def partials(out, *args):
        env = dict(zip(holders, (sp.sympify(a) for a in args)))
        return tuple(r.xreplace(env) for r in rules)

    partials.__signature__ = _signature(arity)
    return partials


def _signature(arity: int):
    import inspect

    params = [inspect.Parameter("out", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [inspect.Parameter(f"a{k}", inspect.Parameter.POSITIONAL_OR_KEYWORD)
               for k in range(arity)]
    return inspect.Signature(params)
