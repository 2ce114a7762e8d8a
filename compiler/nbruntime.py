"""The runtime functions of :mod:`compiler.runtime`, compiled with Numba.

Generated kernels import their helpers from here. Most functions are jitted
unchanged; the few that guard Python's ``OverflowError`` get jit-friendly
twins (under Numba, ``math.exp`` & co. return ``inf`` instead of raising, which
is exactly what the guards emulate in pure Python).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from compiler import runtime as R

_jit = njit(cache=True, fastmath=False, error_model="numpy")

NAN = R.NAN
INF = R.INF


def _pow(a, b):
    if a == 0.0:
        if b > 0.0:
            return 0.0
        if b == 0.0:
            return 1.0
        return INF
    if a < 0.0 and math.isfinite(b) and b % 1.0 != 0.0:
        return NAN
    if b == -1.0:
        return 1.0 / a
    if b == 0.5:
        return math.sqrt(a)
    return math.pow(a, b)


def _floor(a):
    return np.floor(a)   # float in, float out: no int64 round trip


def _ceil(a):
    return np.ceil(a)


def _exp(a):
    return math.exp(a)


def _expm1(a):
    return math.expm1(a)


def _sinh(a):
    return math.sinh(a)


def _cosh(a):
    return math.cosh(a)


_TWINS = {"pow": _pow, "exp": _exp, "expm1": _expm1, "sinh": _sinh, "cosh": _cosh,
          "floor": _floor, "ceil": _ceil}

_NAMES = ["add", "mul", "div", "pow", "exp", "expm1", "log", "log1p", "sin", "cos", "tan",
          "asin", "acos", "atan", "atan2", "sinh", "cosh", "tanh", "erf", "relu", "sigmoid",
          "softplus", "logsumexp", "abs_", "sign", "heaviside", "max2", "min2", "floor", "ceil",
          "piecewise", "lt", "le", "gt", "ge", "eq", "ne", "and_", "or_", "not_"]

for _name in _NAMES:
    globals()[_name] = _jit(_TWINS.get(_name, getattr(R, _name)))

pow_ = globals()["pow"]
