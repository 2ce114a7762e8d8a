"""Reductions over several inputs: ``logsumexp``.

``logsumexp(x_1, ..., x_n) = log(sum_i exp(x_i))``, the smooth maximum behind
softmax cross-entropy. Its partial derivative w.r.t. ``x_i`` is the softmax
weight ``exp(x_i - logsumexp(x))``, written in the op's own output so the
gradient reuses the forward value and never overflows. The numeric forward
(:func:`compiler.runtime.logsumexp`) shifts by the maximum first:
``m + log(sum_i exp(x_i - m))``, finite for inputs of any size.
"""

from __future__ import annotations

import sympy as sp

from compiler import runtime as R
from symgrad.ops.registry import register_op

__all__ = ["logsumexp"]


class logsumexp(sp.Function):
    """``log(exp(x_1) + ... + exp(x_n))`` of one or more arguments, stable.

    Its partial derivative w.r.t. ``x_i`` is ``exp(x_i - logsumexp(x))``
    (the softmax weight of ``x_i``). Numerically it is computed with the
    maximum shifted out, so ``logsumexp(1000, 0)`` is ``1000.0``, not ``inf``.

    Examples
    --------
    >>> import sympy as sp
    >>> from symgrad.ops.reductions import logsumexp
    >>> x, y = sp.symbols("x y")
    >>> logsumexp(x, y).diff(x)
    exp(x - logsumexp(x, y))
    >>> logsumexp(x)
    x
    >>> float(logsumexp(sp.Float(1000.0), sp.Float(0.0)))
    1000.0
    >>> import symgrad as sg
    >>> sg.tape.apply("logsumexp", 1000.0, 0.0).data
    1000.0
    """

    @classmethod
    def eval(cls, *args):
        if len(args) == 0:
            raise TypeError("logsumexp needs at least one argument")
        if len(args) == 1:
            return args[0]
        if all(a.is_Number for a in args) and any(a.is_Float for a in args):
            return sp.Float(R.logsumexp(*[float(a) for a in args]))
        return None

    def fdiff(self, argindex=1):
        return sp.exp(self.args[argindex - 1] - self)

    def _eval_rewrite_as_exp(self, *args, **kwargs):
        return sp.log(sp.Add(*[sp.exp(a) for a in args]))

    def _eval_rewrite_as_log(self, *args, **kwargs):
        return sp.log(sp.Add(*[sp.exp(a) for a in args]))

    def _eval_evalf(self, prec):
        args = self.args
        if not all(a.is_number for a in args):
            return None
        m = sp.Max(*args)
        return (m + sp.log(sp.Add(*[sp.exp(a - m) for a in args])))._eval_evalf(prec)

    def _eval_is_extended_real(self):
        if all(a.is_extended_real for a in self.args):
            return True
        return None

    def _latex(self, printer, exp=None):
        args = ", ".join(printer._print(a) for a in self.args)
        tex = r"\operatorname{logsumexp}{\left(%s \right)}" % args
        return tex if exp is None else r"%s^{%s}" % (tex, exp)


def _logsumexp_partials(out, *args):
    return tuple(sp.exp(a - out) for a in args)


def _logsumexp_tape(out, *args):
    return tuple(R.exp(a - out) for a in args)


register_op(logsumexp, name="logsumexp", impl="logsumexp", label="LSE",
            partials=_logsumexp_partials, tape_partials=_logsumexp_tape)
