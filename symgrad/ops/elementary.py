"""Smooth elementary functions: exponentials, logarithms, trigonometric and
hyperbolic functions, their inverses, and erf."""

from __future__ import annotations

import math

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p

from compiler import runtime as R
from symgrad.ops.registry import register_op

_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)

register_op(sp.exp, name="exp", impl="exp",
            partials=lambda out, a: (out,),
            tape_partials=lambda out, a: (out,))

register_op(sp.log, name="log", impl="log",
            partials=lambda out, a: (1 / a,),
            tape_partials=lambda out, a: (R.div(1.0, a),))

register_op(log1p, name="log1p", impl="log1p",
            partials=lambda out, a: (1 / (1 + a),),
            tape_partials=lambda out, a: (R.div(1.0, 1.0 + a),))

register_op(expm1, name="expm1", impl="expm1",
            partials=lambda out, a: (out + 1,),
            tape_partials=lambda out, a: (out + 1.0,))

register_op(sp.sin, name="sin", impl="sin",
            partials=lambda out, a: (sp.cos(a),),
            tape_partials=lambda out, a: (R.cos(a),))

register_op(sp.cos, name="cos", impl="cos",
            partials=lambda out, a: (-sp.sin(a),),
            tape_partials=lambda out, a: (-R.sin(a),))

register_op(sp.tan, name="tan", impl="tan",
            partials=lambda out, a: (1 + out**2,),
            tape_partials=lambda out, a: (1.0 + out * out,))

register_op(sp.asin, name="asin", impl="asin",
            partials=lambda out, a: (1 / sp.sqrt(1 - a**2),),
            tape_partials=lambda out, a: (R.div(1.0, R.pow(1.0 - a * a, 0.5)),))

register_op(sp.acos, name="acos", impl="acos",
            partials=lambda out, a: (-1 / sp.sqrt(1 - a**2),),
            tape_partials=lambda out, a: (-R.div(1.0, R.pow(1.0 - a * a, 0.5)),))

register_op(sp.atan, name="atan", impl="atan",
            partials=lambda out, a: (1 / (1 + a**2),),
            tape_partials=lambda out, a: (1.0 / (1.0 + a * a),))


def _atan2_tape(out, y, x):
    r2 = x * x + y * y
    return (R.div(x, r2), R.div(-y, r2))


register_op(sp.atan2, name="atan2", impl="atan2",
            partials=lambda out, y, x: (x / (x**2 + y**2), -y / (x**2 + y**2)),
            tape_partials=_atan2_tape)

register_op(sp.sinh, name="sinh", impl="sinh",
            partials=lambda out, a: (sp.cosh(a),),
            tape_partials=lambda out, a: (R.cosh(a),))

register_op(sp.cosh, name="cosh", impl="cosh",
            partials=lambda out, a: (sp.sinh(a),),
            tape_partials=lambda out, a: (R.sinh(a),))

register_op(sp.tanh, name="tanh", impl="tanh",
            partials=lambda out, a: (1 - out**2,),
            tape_partials=lambda out, a: (1.0 - out * out,))

register_op(sp.erf, name="erf", impl="erf",
            partials=lambda out, a: (2 * sp.exp(-a**2) / sp.sqrt(sp.pi),),
            tape_partials=lambda out, a: (_TWO_OVER_SQRT_PI * R.exp(-a * a),))
