"""symgrad's own SymPy functions: ``relu``, ``sigmoid`` and ``softplus``.

They are ordinary SymPy functions: they print, pretty-print and LaTeX-print,
``sympy.diff`` knows their derivatives, and they evaluate to numbers with
``.subs(...)`` / ``.evalf()`` everywhere, kinks included (``relu'(0) = 0``,
the convention PyTorch uses, written as ``Heaviside(x, 0)``).

Numerically they are computed in stable forms by the op table
(:mod:`symgrad.ops.activations`) and the code generator; the rewrites below
(``rewrite(sp.exp)``, ``rewrite(sp.Max)``) are the textbook definitions.
"""

from __future__ import annotations

import sympy as sp

__all__ = ["relu", "sigmoid", "softplus"]


class relu(sp.Function):
    """Rectified linear unit, ``relu(x) = max(x, 0)``.

    Its derivative is ``Heaviside(x, 0)``: 1 for x > 0, 0 for x <= 0.

    Examples
    --------
    >>> import sympy as sp, symgrad as sg
    >>> x = sp.Symbol("x")
    >>> sg.relu(x).diff(x)
    Heaviside(x, 0)
    >>> sg.relu(x).subs(x, -1.5)
    0
    """

    nargs = 1

    @classmethod
    def eval(cls, x):
        if isinstance(x, sp.MatrixExpr):   # applied to a matrix: elementwise, like applyfunc
            return x.applyfunc(cls)
        if x.is_Number:
            return sp.Max(x, 0)
        if x.is_extended_nonnegative:
            return x
        if x.is_extended_nonpositive:
            return sp.S.Zero
        return None

    def fdiff(self, argindex=1):
        return sp.Heaviside(self.args[0], 0)

    def _eval_rewrite_as_Max(self, x, **kwargs):
        return sp.Max(x, 0)

    def _eval_rewrite_as_Piecewise(self, x, **kwargs):
        return sp.Piecewise((x, x > 0), (0, True))

    def _eval_evalf(self, prec):
        return sp.Max(self.args[0], 0)._eval_evalf(prec)

    def _eval_is_extended_real(self):
        return self.args[0].is_extended_real

    def _eval_is_extended_nonnegative(self):
        if self.args[0].is_extended_real:
            return True
        return None

    def _latex(self, printer, exp=None):
        arg = printer._print(self.args[0])
        tex = r"\operatorname{relu}{\left(%s \right)}" % arg
        return tex if exp is None else r"%s^{%s}" % (tex, exp)


class sigmoid(sp.Function):
    """Logistic sigmoid, ``sigmoid(x) = 1 / (1 + exp(-x))``.

    Its derivative is ``sigmoid(x) * (1 - sigmoid(x))``.

    Examples
    --------
    >>> import sympy as sp, symgrad as sg
    >>> x = sp.Symbol("x")
    >>> sg.sigmoid(x).diff(x)
    (1 - sigmoid(x))*sigmoid(x)
    >>> sg.sigmoid(0)
    1/2
    """

    nargs = 1

    @classmethod
    def eval(cls, x):
        if isinstance(x, sp.MatrixExpr):   # applied to a matrix: elementwise, like applyfunc
            return x.applyfunc(cls)
        if x.is_zero:
            return sp.S.Half
        if x is sp.S.Infinity:
            return sp.S.One
        if x is sp.S.NegativeInfinity:
            return sp.S.Zero
        if x.is_Float:
            return sp.Float(1, x._prec) / (1 + sp.exp(-x))
        return None

    def fdiff(self, argindex=1):
        return self * (1 - self)

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return 1 / (1 + sp.exp(-x))

    def _eval_evalf(self, prec):
        return (1 / (1 + sp.exp(-self.args[0])))._eval_evalf(prec)

    def _eval_is_extended_real(self):
        return self.args[0].is_extended_real

    def _eval_is_positive(self):
        if self.args[0].is_extended_real:
            return True
        return None

    def _latex(self, printer, exp=None):
        arg = printer._print(self.args[0])
        tex = r"\sigma{\left(%s \right)}" % arg
        return tex if exp is None else r"%s^{%s}" % (tex, exp)


class softplus(sp.Function):
    """Softplus, ``softplus(x) = log(1 + exp(x))``, a smooth relu.

    Its derivative is ``sigmoid(x)``.

    Examples
    --------
    >>> import sympy as sp, symgrad as sg
    >>> x = sp.Symbol("x")
    >>> sg.softplus(x).diff(x)
    sigmoid(x)
    >>> sg.softplus(0)
    log(2)
    """

    nargs = 1

    @classmethod
    def eval(cls, x):
        if isinstance(x, sp.MatrixExpr):   # applied to a matrix: elementwise, like applyfunc
            return x.applyfunc(cls)
        if x.is_zero:
            return sp.log(2)
        if x is sp.S.Infinity:
            return sp.S.Infinity
        if x is sp.S.NegativeInfinity:
            return sp.S.Zero
        if x.is_Float:
            # stable: max(x, 0) + log(1 + exp(-|x|))
            return sp.Max(x, 0) + sp.log(1 + sp.exp(-abs(x)))
        return None

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return sp.log(1 + sp.exp(x))

    def _eval_rewrite_as_log(self, x, **kwargs):
        return sp.log(1 + sp.exp(x))

    def _eval_evalf(self, prec):
        return sp.log(1 + sp.exp(self.args[0]))._eval_evalf(prec)

    def _eval_is_extended_real(self):
        return self.args[0].is_extended_real

    def _eval_is_positive(self):
        if self.args[0].is_extended_real:
            return True
        return None
