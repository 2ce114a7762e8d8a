"""Scalar-valued functions of matrices that SymPy lacks."""

from __future__ import annotations

import sympy as sp

__all__ = ["msum", "sum_squares"]


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
