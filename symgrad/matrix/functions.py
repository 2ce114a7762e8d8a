"""Scalar-valued functions of matrices that SymPy lacks."""

from __future__ import annotations

import sympy as sp

__all__ = ["msum", "sum_squares", "column_logsumexp"]


class msum(sp.Function):  # noqa: N801 - reads like sympy's functions
    """The sum of all entries of a matrix expression (a scalar).

    Examples
    --------
    >>> import sympy as sp, symgrad as sg
    >>> h = sp.MatrixSymbol("h", 3, 1)
    >>> sg.msum(h)
    msum(h)
    """

    nargs = 1
    is_commutative = True

    @classmethod
    def eval(cls, arg):
        if not isinstance(arg, sp.MatrixExpr):
            raise TypeError(f"msum takes a matrix expression, got {arg!r}")
        return None

    def _latex(self, printer):
        return r"\operatorname{sum}\left(" + printer._print(self.args[0]) + r"\right)"


def sum_squares(a: sp.MatrixExpr) -> sp.Expr:
    """``msum(a∘a)``: the squared Frobenius norm of ``a`` (a scalar).

    Examples
    --------
    >>> import sympy as sp, symgrad as sg
    >>> h = sp.MatrixSymbol("h", 3, 1)
    >>> sg.sum_squares(h)
    msum(HadamardPower(h, 2))
    """
    return msum(sp.HadamardPower(a, 2))


class column_logsumexp(sp.MatrixExpr):  # noqa: N801
    """``log(sum(exp(S[i, j]) for i))`` for each column j of ``S``: a ``(1, n)`` row.

    With classes as rows and samples as columns, this is the normaliser of a
    softmax, computed stably (shifted by each column's maximum) by compiled
    code. Its derivative is the softmax: ``S_bar = Z_bar ∘ exp(S - Z)``.

    Examples
    --------
    >>> import sympy as sp, symgrad as sg
    >>> S = sp.MatrixSymbol("S", 3, 5)
    >>> sg.column_logsumexp(S).shape
    (1, 5)
    """

    def __new__(cls, arg):
        if not isinstance(arg, sp.MatrixExpr):
            raise TypeError(f"column_logsumexp takes a matrix expression, got {arg!r}")
        return sp.Basic.__new__(cls, arg)

    @property
    def arg(self):
        return self.args[0]

    @property
    def shape(self):
        return (sp.Integer(1), self.args[0].shape[1])

    def _sympystr(self, printer):
        return f"column_logsumexp({printer._print(self.arg)})"

    def _latex(self, printer):
        return r"\operatorname{lse}_{\downarrow}\left(" + printer._print(self.arg) + r"\right)"
