"""Scalar numeric implementations of the primitive ops, by name.

Every op in symgrad's op table names one function here (its ``impl``).  The
tape engine calls them on Python floats; the code generator will call the same
functions from generated code, so the tape engine and compiled code share one
definition of every number, kinks included.

Conventions (the IEEE/PyTorch ones, so that no input raises):

* out-of-domain inputs give ``nan`` (``log(-1)``, ``sqrt(-1)``, ``asin(2)``),
  poles give ``+-inf`` (``log(0) = -inf``), overflow gives ``inf``;
* kinks: ``relu'(0) = 0``, ``sign(0) = 0`` (so ``|x|'(0) = 0``), and
  ``heaviside(0, h0) = h0``;
* comparisons and logic return ``1.0`` / ``0.0`` so every value is a float64.

Functions take and return plain floats and use only :mod:`math`, so Numba can
compile them unchanged.
"""

from __future__ import annotations

import math

NAN = float("nan")
INF = float("inf")


# --- arithmetic -------------------------------------------------------------

def add(*xs: float) -> float:
    """Left to right, as generated code writes ``a + b + c`` (so ``-0.0 + -0.0`` is -0.0)."""
    if not xs:
        return 0.0
    s = xs[0]
    for v in xs[1:]:
        s += v
    return s


def mul(a: float, b: float) -> float:
    return a * b


def div(a: float, b: float) -> float:
    """``a / b`` with IEEE semantics (``1/0 = inf``, ``0/0 = nan``), never raising."""
    if b == 0.0:
        if a == 0.0 or a != a:
            return NAN
        return INF if (a > 0.0) == (math.copysign(1.0, b) > 0.0) else -INF
    return a / b


def pow(a: float, b: float) -> float:  # noqa: A001 - the op's name
    """``a**b``; ``0**b`` is 0, 1 or inf, a negative base with a non-integer
    finite exponent is nan; otherwise C99 ``pow`` (``(-2)**inf = inf``).
    ``b == -1`` and ``b == 0.5`` are computed as ``1/a`` and ``sqrt(a)``, as
    LLVM rewrites them in native code, so every back end gives the same bits."""
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
    try:
        return math.pow(a, b)
    except OverflowError:
        return INF if (a > 0.0 or b % 2.0 == 0.0) else -INF


# --- exponentials and logarithms --------------------------------------------

def exp(a: float) -> float:
    try:
        return math.exp(a)
    except OverflowError:
        return INF


def expm1(a: float) -> float:
    try:
        return math.expm1(a)
    except OverflowError:
        return INF


def log(a: float) -> float:
    if a > 0.0:
        return math.log(a)
    if a == 0.0:
        return -INF
    return NAN


def log1p(a: float) -> float:
    if a > -1.0:
        return math.log1p(a)
    if a == -1.0:
        return -INF
    return NAN


# --- trigonometric and hyperbolic ---------------------------------------------

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
    try:
        return math.sinh(a)
    except OverflowError:
        return INF if a > 0.0 else -INF


def cosh(a: float) -> float:
    try:
        return math.cosh(a)
    except OverflowError:
        return INF


def tanh(a: float) -> float:
    return math.tanh(a)


def erf(a: float) -> float:
    return math.erf(a)


# --- activations (numerically stable forms) ---------------------------------

def relu(a: float) -> float:
    return a if a > 0.0 else (a if a != a else 0.0)


def sigmoid(a: float) -> float:
    if a >= 0.0:
        return 1.0 / (1.0 + math.exp(-a))
    z = math.exp(a)
    return z / (1.0 + z)


def softplus(a: float) -> float:
    # max(a, 0) + log1p(exp(-|a|)): no overflow for large |a|
    if a != a:
        return a
    return max(a, 0.0) + math.log1p(math.exp(-abs(a)))


def logsumexp(*xs: float) -> float:
    """``log(sum(exp(x)))`` shifted by the maximum: finite for any finite inputs."""
    m = -INF
    for v in xs:
        if v != v:
            return NAN
        if v > m:
            m = v
    if m == INF or m == -INF:
        return m
    s = 0.0
    for v in xs:
        s += math.exp(v - m)
    return m + math.log(s)


# --- non-smooth ---------------------------------------------------------------

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
    """IEEE floor (``floor(-0.0)`` is -0.0), exact for any magnitude."""
    if not math.isfinite(a) or abs(a) >= 4503599627370496.0:   # 2**52: already integral
        return a
    r = float(math.floor(a))
    return math.copysign(r, a) if r == 0.0 else r


def ceil(a: float) -> float:
    """IEEE ceil (``ceil(-0.5)`` is -0.0), exact for any magnitude."""
    if not math.isfinite(a) or abs(a) >= 4503599627370496.0:
        return a
    r = float(math.ceil(a))
    return math.copysign(r, a) if r == 0.0 else r


def piecewise(*args: float) -> float:
    """``piecewise(e1, c1, e2, c2, ...)``: the first ``e_i`` whose ``c_i`` is true."""
    for i in range(0, len(args) - 1, 2):
        if args[i + 1] != 0.0:
            return args[i]
    return NAN


# --- comparisons and logic (1.0 / 0.0) ------------------------------------------

def lt(a: float, b: float) -> float:
    return 1.0 if a < b else 0.0


def le(a: float, b: float) -> float:
    return 1.0 if a <= b else 0.0


def gt(a: float, b: float) -> float:
    return 1.0 if a > b else 0.0


def ge(a: float, b: float) -> float:
    return 1.0 if a >= b else 0.0


def eq(a: float, b: float) -> float:
    return 1.0 if a == b else 0.0


def ne(a: float, b: float) -> float:
    return 1.0 if a != b else 0.0


def and_(*xs: float) -> float:
    for v in xs:
        if v == 0.0:
            return 0.0
    return 1.0


def or_(*xs: float) -> float:
    for v in xs:
        if v != 0.0:
            return 1.0
    return 0.0


def not_(a: float) -> float:
    return 1.0 if a == 0.0 else 0.0


def lookup(name: str):
    """Return the runtime function called ``name``.

    Raises
    ------
    KeyError
        If there is no such function.
    """
    fn = globals().get(name)
    if fn is None or not callable(fn) or name.startswith("_") or name == "lookup":
        raise KeyError(f"compiler.runtime has no function {name!r}")
    return fn
