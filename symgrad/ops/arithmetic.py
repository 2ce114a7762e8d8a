"""Add, Mul and Pow: the closed core that subtraction, division, negation,
square roots and reciprocals desugar to (SymPy already writes ``x - y`` as
``x + (-1)*y`` and ``x/y`` as ``x*y**-1``)."""

from __future__ import annotations

import sympy as sp

from compiler import runtime as R
from symgrad.ops.registry import register_op

S = sp.S


def _add_partials(out, *args):
    return (S.One,) * len(args)


def _add_tape(out, *args):
    return (1.0,) * len(args)


register_op(sp.Add, name="add", impl="add", label="+",
            partials=_add_partials, tape_partials=_add_tape)


def _mul_children(expr):
    # Binary products give the cheapest gradient (n-1 products per factor
    # otherwise): x*y*z is lowered as (x*y)*z.
    args = expr.args
    if len(args) > 2:
        return (sp.Mul._from_args(args[:-1]), args[-1])
    return args


register_op(sp.Mul, name="mul", impl="mul", label="*",
            partials=lambda out, a, b: (b, a),
            tape_partials=lambda out, a, b: (b, a),
            children=_mul_children)


def _pow_partials(out, a, b):
    if b.is_Number:
        if b == S.Half:  # sqrt
            da = 1 / (2 * out)
        elif b == -1:  # reciprocal
            da = -out**2
        elif b == 2:
            da = 2 * a
        else:
            da = b * a**(b - 1)
        return (da, None)
    return (b * a**(b - 1), out * sp.log(a))


def _pow_tape(out, a, b):
    da = b * R.pow(a, b - 1.0)
    # d(a**b)/db = a**b * log(a); PyTorch's convention gives 0 where a**b == 0.
    if a > 0.0:
        db = out * R.log(a)
    elif out == 0.0 and b >= 0.0:
        db = 0.0
    else:
        db = R.NAN
    return (da, db)


register_op(sp.Pow, name="pow", impl="pow", label="**",
            partials=_pow_partials, tape_partials=_pow_tape)
