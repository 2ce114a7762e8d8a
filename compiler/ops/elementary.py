"""Exponentials, logarithms, trigonometric and hyperbolic functions, erf.

Each is libm's function (C99 Annex F special values); the references guard
exactly the inputs where Python's :mod:`math` raises instead (overflow
thresholds are the largest doubles whose result is finite). ``exp``,
``log``, ``sin`` and ``cos`` go through LLVM's intrinsics, as Numba calls
them, so every native back end calls the same libm code.
"""

from __future__ import annotations

import math

from compiler.ops import register

NAN = float("nan")
INF = float("inf")
EXP_MAX = 709.782712893384      # exp(x), expm1(x) finite iff x <= EXP_MAX
SINH_MAX = 710.4758600739439    # sinh(x), cosh(x) finite iff |x| <= SINH_MAX


def exp(a: float) -> float:
    return INF if a > EXP_MAX else math.exp(a)


def expm1(a: float) -> float:
    return INF if a > EXP_MAX else math.expm1(a)


def log(a: float) -> float:
    if a > 0.0:
        return math.log(a)
    return -INF if a == 0.0 else NAN


def log1p(a: float) -> float:
    if a > -1.0:
        return math.log1p(a)
    return -INF if a == -1.0 else NAN


def sin(a: float) -> float:
    return math.sin(a) if math.isfinite(a) else NAN


def cos(a: float) -> float:
    return math.cos(a) if math.isfinite(a) else NAN


def tan(a: float) -> float:
    return math.tan(a) if math.isfinite(a) else NAN


def asin(a: float) -> float:
    return math.asin(a) if -1.0 <= a <= 1.0 else NAN


def acos(a: float) -> float:
    return math.acos(a) if -1.0 <= a <= 1.0 else NAN


def atan(a: float) -> float:
    return math.atan(a)


def atan2(a: float, b: float) -> float:
    return math.atan2(a, b)


def sinh(a: float) -> float:
    if a > SINH_MAX:
        return INF
    if a < -SINH_MAX:
        return -INF
    return math.sinh(a)


def cosh(a: float) -> float:
    return INF if abs(a) > SINH_MAX else math.cosh(a)


def tanh(a: float) -> float:
    return math.tanh(a)


def erf(a: float) -> float:
    return math.erf(a)


def _libm(fname, intrinsic=False):
    return lambda e, a: e.libm(fname, *a, intrinsic=intrinsic)


for _fn, _intr in ((exp, True), (log, True), (sin, True), (cos, True), (expm1, False),
                   (log1p, False), (tan, False), (asin, False), (acos, False), (atan, False),
                   (atan2, False), (sinh, False), (cosh, False), (tanh, False), (erf, False)):
    register(_fn.__name__, 2 if _fn is atan2 else 1, _fn, _libm(_fn.__name__, _intr), "libmvec",
             f"libm {_fn.__name__}")
