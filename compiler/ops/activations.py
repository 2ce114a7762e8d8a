"""relu, sigmoid, softplus, logsumexp, in numerically stable forms.

Their templates are built from the exp/log/log1p templates and selects
(branch-free), so the same code serves scalar and SIMD kernels; the
references compute the same steps in the same order.
"""

from __future__ import annotations

import math

from compiler.ops import register

NAN = float("nan")
INF = float("inf")


def relu(a: float) -> float:
    """``max(a, 0)``; nan stays nan; ``relu(-0.0)`` is 0.0."""
    return a if a > 0.0 else (a if a != a else 0.0)


def sigmoid(a: float) -> float:
    """``1/(1+e)`` for a >= 0 and ``e/(1+e)`` below, with ``e = exp(-|a|)``."""
    e = math.exp(-abs(a))
    d = 1.0 + e
    return 1.0 / d if a >= 0.0 else e / d


def softplus(a: float) -> float:
    """``max(a, 0) + log1p(exp(-|a|))``: no overflow for large |a|; nan for nan."""
    if a != a:
        return a
    return (a if a > 0.0 else 0.0) + math.log1p(math.exp(-abs(a)))


def logsumexp(*xs: float) -> float:
    """``log(sum(exp(x)))`` as ``m + log1p(sum of exp(x - m) over the other
    inputs)``, m the (first) maximum: finite for finite inputs, accurate when
    the result is small next to 1 (``logsumexp(-40, 1e-10)``), nan if any input
    is nan, the maximum itself when it is +-inf."""
    m = -INF
    k = -1
    for i in range(len(xs)):
        v = xs[i]
        if v != v:
            return NAN
        if v > m:
            m = v
            k = i
    if m == INF or m == -INF:
        return m
    s = 0.0
    for i in range(len(xs)):
        if i != k:
            s += math.exp(xs[i] - m)
    return m + math.log1p(s)


def _emit_relu(e, a):
    return e.select(e.fcmp("ugt", a[0], e.const(0.0)), a[0], e.const(0.0))


def _emit_sigmoid(e, args):
    (a,) = args
    ex = e.op("exp", e.fneg(e.fabs(a)))
    d = e.fadd(e.const(1.0), ex)
    return e.select(e.fcmp("oge", a, e.const(0.0)), e.fdiv(e.const(1.0), d), e.fdiv(ex, d))


def _emit_softplus(e, args):
    (a,) = args
    m = e.select(e.fcmp("ogt", a, e.const(0.0)), a, e.const(0.0))
    r = e.fadd(m, e.op("log1p", e.op("exp", e.fneg(e.fabs(a)))))
    return e.select(e.fcmp("uno", a, a), a, r)


def _emit_logsumexp(e, xs):
    m, nan = e.const(-INF), None
    for x in xs:
        isnan = e.fcmp("uno", x, x)
        nan = isnan if nan is None else e.mask_or(nan, isnan)
        m = e.select(e.fcmp("ogt", x, m), x, m)
    total, taken = e.const(0.0), None      # the first x equal to m is left out of the sum
    for x in xs:
        keep = e.fcmp("une", x, m)
        if taken is not None:
            keep = e.mask_or(keep, taken)
        total = e.fadd(total, e.select(keep, e.op("exp", e.fsub(x, m)), e.const(0.0)))
        hit = e.fcmp("oeq", x, m)
        taken = hit if taken is None else e.mask_or(taken, hit)
    r = e.fadd(m, e.op("log1p", total))
    r = e.select(e.fcmp("oeq", e.fabs(m), e.const(INF)), m, r)
    return e.select(nan, e.const(NAN), r)


register("relu", 1, relu, _emit_relu, "exact", relu.__doc__)
register("sigmoid", 1, sigmoid, _emit_sigmoid, "libmvec", sigmoid.__doc__)
register("softplus", 1, softplus, _emit_softplus, "libmvec", softplus.__doc__.split(";")[0])
register("logsumexp", None, logsumexp, _emit_logsumexp, "libmvec", logsumexp.__doc__.split(":")[0])
