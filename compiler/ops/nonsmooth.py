"""abs, sign, heaviside, max, min, floor, ceil, piecewise.

Conventions (PyTorch's): ``sign(0) = 0`` (signed zeros kept, so
``|x|'(0) = 0``), ``heaviside(0, h0) = h0``, max/min of a nan is nan;
``piecewise(e1, c1, e2, c2, ...)`` is the first ``e_i`` whose ``c_i`` is
nonzero, nan when none is.
"""

from __future__ import annotations

import math

from compiler.ops import register

NAN = float("nan")
INF = float("inf")
_TWO52 = 4503599627370496.0     # doubles at least this large are integers


def abs_(a: float) -> float:
    return abs(a)


def sign(a: float) -> float:
    if a > 0.0:
        return 1.0
    if a < 0.0:
        return -1.0
    return a  # 0.0, -0.0 or nan


def heaviside(a: float, h0: float) -> float:
    if a > 0.0:
        return 1.0
    if a < 0.0:
        return 0.0
    if a == 0.0:
        return h0
    return NAN


def max2(a: float, b: float) -> float:
    if a != a or b != b:
        return NAN
    return a if a >= b else b


def min2(a: float, b: float) -> float:
    if a != a or b != b:
        return NAN
    return a if a <= b else b


def floor(a: float) -> float:
    """IEEE floor (``floor(-0.0)`` is -0.0, ``floor(-0.5)`` is -1.0), exact at any magnitude."""
    if not math.isfinite(a) or abs(a) >= _TWO52:
        return a
    r = float(math.floor(a))
    return math.copysign(r, a) if r == 0.0 else r


def ceil(a: float) -> float:
    """IEEE ceil (``ceil(-0.5)`` is -0.0), exact at any magnitude."""
    if not math.isfinite(a) or abs(a) >= _TWO52:
        return a
    r = float(math.ceil(a))
    return math.copysign(r, a) if r == 0.0 else r


def piecewise(*args: float) -> float:
    for i in range(0, len(args) - 1, 2):
        if args[i + 1] != 0.0:
            return args[i]
    return NAN


def _first(e, pairs, default):
    """The value of the first (condition, value) pair that holds, else ``default``."""
    r = default
    for cond, val in reversed(pairs):
        r = e.select(cond, val, r)
    return r


def _emit_sign(e, args):
    (a,) = args
    return _first(e, [(e.fcmp("ogt", a, e.const(0.0)), e.const(1.0)),
                      (e.fcmp("olt", a, e.const(0.0)), e.const(-1.0))], a)


def _emit_heaviside(e, args):
    x, h0 = args
    return _first(e, [(e.fcmp("ogt", x, e.const(0.0)), e.const(1.0)),
                      (e.fcmp("olt", x, e.const(0.0)), e.const(0.0)),
                      (e.fcmp("oeq", x, e.const(0.0)), h0)], e.const(NAN))


def _emit_minmax(pred):
    def emit(e, args):
        x, y = args
        m = e.select(e.fcmp(pred, x, y), x, y)
        return e.select(e.fcmp("uno", x, y), e.const(NAN), m)
    return emit


def _emit_piecewise(e, a):
    pairs = [(e.fcmp("une", a[k + 1], e.const(0.0)), a[k]) for k in range(0, len(a) - 1, 2)]
    return _first(e, pairs, e.const(NAN))


register("abs_", 1, abs_, lambda e, a: e.fabs(a[0]), "exact", "|a|")
register("sign", 1, sign, _emit_sign, "exact", "sign, 0 at 0 (signed zeros and nan kept)")
register("heaviside", 2, heaviside, _emit_heaviside, "exact", "step, h0 at 0")
register("max2", 2, max2, _emit_minmax("oge"), "exact", "max, nan if either is nan")
register("min2", 2, min2, _emit_minmax("ole"), "exact", "min, nan if either is nan")
register("floor", 1, floor, lambda e, a: e.floor(a[0]), "exact", floor.__doc__)
register("ceil", 1, ceil, lambda e, a: e.ceil(a[0]), "exact", ceil.__doc__)
register("piecewise", None, piecewise, _emit_piecewise, "exact", "first e_i whose c_i != 0")
