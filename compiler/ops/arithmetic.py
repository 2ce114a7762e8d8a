"""add, mul, div, pow.

``pow(a, b)`` is C99 ``pow`` (Annex F special values: ``pow(-0.0, -1)`` is
-inf, ``pow(0, nan)`` nan, a negative base with a non-integer finite
exponent nan), except that the exponents 2, -1 and 0.5 are computed exactly
as ``a*a``, ``1/a`` and ``sqrt(a)`` (with pow's values at -0.0 and -inf).
Compilers substitute these for constant exponents, so defining them this
way makes a result independent of whether the exponent is a constant.
"""

from __future__ import annotations

import math

from compiler.ops import register

NAN = float("nan")
INF = float("inf")
_TWO52 = 4503599627370496.0      # doubles this large are integers
_TWO53 = 9007199254740992.0      # ... and even


# -- reference semantics ---------------------------------------------------------

def add(*xs: float) -> float:
    """Left to right, as generated code writes ``a + b + c`` (``-0.0 + -0.0`` is -0.0)."""
    if len(xs) == 0:
        return 0.0
    s = xs[0] + -0.0
    for v in xs[1:]:
        s += v
    return s


def mul(a: float, b: float) -> float:
    return a * b


def div(a: float, b: float) -> float:
    """IEEE division (``1/0 = inf``, ``1/-0.0 = -inf``, ``0/0 = nan``), never raising."""
    if b == 0.0:
        if a == 0.0 or a != a:
            return NAN
        return INF if (a > 0.0) == (math.copysign(1.0, b) > 0.0) else -INF
    return a / b


def pow(a: float, b: float) -> float:  # noqa: A001 - the op's name
    if b == 2.0:
        return a * a
    if b == -1.0:
        return 1.0 / a if a != 0.0 else math.copysign(INF, a)
    if b == 0.5:
        if a == -INF:
            return INF
        return abs(math.sqrt(a)) if a >= 0.0 else NAN
    if b == 0.0 or a == 1.0:
        return 1.0
    if a != a or b != b:
        return NAN
    odd = abs(b) < _TWO53 and b % 2.0 == 1.0
    if a == 0.0:
        if b < 0.0:
            return math.copysign(INF, a) if odd else INF
        return a if odd else 0.0
    if abs(a) == INF:
        if a > 0.0:
            return INF if b > 0.0 else 0.0
        if b < 0.0:
            return -0.0 if odd else 0.0
        return -INF if odd else INF
    if abs(b) == INF:
        if a == -1.0:
            return 1.0
        return INF if (abs(a) < 1.0) == (b < 0.0) else 0.0
    if a < 0.0 and abs(b) < _TWO52 and b != math.floor(b):
        return NAN
    try:                      # finite, in the domain: math.pow is libm's pow
        return math.pow(a, b)
    except Exception:         # (CPython raises on overflow; Numba never does)
        return -INF if (a < 0.0 and odd) else INF


# -- LLVM templates ----------------------------------------------------------------

def _emit_add(e, a):
    if not a:
        return e.const(0.0)
    acc = e.fadd(e.const(-0.0), a[0]) if len(a) == 1 else a[0]
    for x in a[1:]:
        acc = e.fadd(acc, x)
    return acc


def _emit_mul(e, a):
    if a[0].is_const(-1.0):
        return e.fneg(a[1])
    return e.fmul(a[0], a[1])


def _emit_pow(e, args):
    a, b = args
    square = lambda: e.fmul(a, a)                                    # noqa: E731
    inverse = lambda: e.fdiv(e.const(1.0), a)                        # noqa: E731
    root = lambda: e.select(e.fcmp("oeq", a, e.const(-INF)), e.const(INF),   # noqa: E731
                            e.fabs(e.sqrt(a)))
    if b.const is not None:
        special = {2.0: square, -1.0: inverse, 0.5: root}.get(b.const)
        if special is not None:
            return special()
        return e.libm("pow", a, b, intrinsic=True)
    r = e.libm("pow", a, b, intrinsic=True)
    r = e.select(e.fcmp("oeq", b, e.const(0.5)), root(), r)
    r = e.select(e.fcmp("oeq", b, e.const(-1.0)), inverse(), r)
    return e.select(e.fcmp("oeq", b, e.const(2.0)), square(), r)


register("add", None, add, _emit_add, "exact", "sum, left to right")
register("mul", 2, mul, _emit_mul, "exact", "product")
register("div", 2, div, lambda e, a: e.fdiv(a[0], a[1]), "exact", "IEEE quotient")
register("pow", 2, pow, _emit_pow, "libmvec", __doc__.split("\n\n")[1].replace("\n", " "))
