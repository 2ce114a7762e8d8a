"""Loss functions as scalar SymPy expressions.

Each loss takes SymPy expressions (a model's output scores, usually) and
numbers or expressions for the targets, and returns one scalar SymPy
expression built from op-table functions, so it differentiates, compiles and
replays on the tape engine like any other formula:

* :func:`mse`        ``(score - target)**2``
* :func:`hinge`      ``relu(1 - label*score)``, labels in {-1, +1} (micrograd's loss)
* :func:`logistic`   ``softplus(-label*score)``, labels in {-1, +1}
* :func:`softmax_cross_entropy` ``logsumexp(scores) - scores[label]``, class index labels
* :func:`l2`         ``coef * sum(p**2)``

The logistic and cross-entropy losses are written with ``softplus`` and
``logsumexp``, whose numeric forms (and derivatives, ``sigmoid`` and
softmax) are stable: value and gradient stay finite for scores of size
1e3 and beyond, where ``log(1 + exp(s))`` would overflow.

The expressions are built with unevaluated binary nodes where SymPy's
automatic simplification would distribute a number over a whole model
output (``-1*(a + b + ...)`` into ``-a - b - ...``) and so double the graph.
:data:`LOSSES` maps the names used by :mod:`symgrad.nn` to the functions.
"""

from __future__ import annotations

from typing import Sequence, Union

import sympy as sp

from symgrad.functions import relu, softplus
from symgrad.ops.reductions import logsumexp

__all__ = ["mse", "hinge", "logistic", "softmax_cross_entropy", "l2", "logsumexp", "LOSSES"]

ExprLike = Union[sp.Expr, int, float]


def _sym(value: ExprLike, what: str) -> sp.Expr:
    """A SymPy number or expression; integral floats become Integers (exact labels)."""
    if isinstance(value, sp.Basic):
        if not isinstance(value, sp.Expr):
            raise TypeError(f"{what} must be a SymPy expression or a number, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise TypeError(f"{what} must be a SymPy expression or a number, got {value!r}")
    v = float(value)
    if v.is_integer():
        return sp.Integer(int(v))
    return sp.Float(v)


def _times(a: sp.Expr, b: sp.Expr) -> sp.Expr:
    """``a*b`` as one binary node (``a`` a label or coefficient)."""
    if a == 1:
        return b
    return sp.Mul(a, b, evaluate=False)


def mse(score: ExprLike, target: ExprLike) -> sp.Expr:
    """Squared error ``(score - target)**2`` of one output.

    The mean over a batch (as :func:`symgrad.nn.scalar_loss` takes it) is the
    mean squared error.

    Examples
    --------
    >>> import sympy as sp
    >>> from symgrad.losses import mse
    >>> s = sp.Symbol("s")
    >>> mse(s, 2)
    (s - 2)**2
    >>> float(mse(s, 2).subs(s, 3.5))
    2.25
    """
    diff = sp.Add(_sym(score, "score"), -_sym(target, "target"), evaluate=False)
    return sp.Pow(diff, 2, evaluate=False)


def hinge(score: ExprLike, label: ExprLike) -> sp.Expr:
    """Hinge loss ``relu(1 - label*score)`` for a label in {-1, +1}.

    micrograd's loss for the moons demo: zero once the score has the label's
    sign with margin 1. ``relu'(0) = 0`` at the kink (PyTorch's convention).

    Examples
    --------
    >>> import sympy as sp
    >>> from symgrad.losses import hinge
    >>> s = sp.Symbol("s")
    >>> hinge(s, -1), hinge(s, 1)
    (relu(s + 1), relu(1 - s))
    >>> [float(hinge(v, 1)) for v in (0.25, 2.0, -1.0)]
    [0.75, 0.0, 2.0]
    """
    neg_margin = _times(-_sym(label, "label"), _sym(score, "score"))
    return relu(sp.Add(sp.S.One, neg_margin, evaluate=False), evaluate=False)


def logistic(score: ExprLike, label: ExprLike) -> sp.Expr:
    """Logistic loss ``softplus(-label*score) = log(1 + exp(-label*score))``,
    label in {-1, +1}.

    Stable for any score: ``softplus`` is computed as
    ``max(x, 0) + log1p(exp(-|x|))`` and its derivative is ``sigmoid``.

    Examples
    --------
    >>> import sympy as sp
    >>> from symgrad.losses import logistic
    >>> s = sp.Symbol("s")
    >>> logistic(s, 1)
    softplus(-s)
    >>> from symgrad.evaluate import evaluate
    >>> evaluate(logistic(s, -1), {s: 1000.0})
    1000.0
    """
    return softplus(_times(-_sym(label, "label"), _sym(score, "score")), evaluate=False)


def softmax_cross_entropy(scores: Sequence[ExprLike], label_index: int) -> sp.Expr:
    """Softmax cross-entropy ``logsumexp(scores) - scores[label_index]``.

    ``-log(softmax(scores)[label_index])`` written stably: the derivative
    w.r.t. ``scores[i]`` is ``softmax_i - [i == label_index]``.

    Parameters
    ----------
    scores : sequence of expressions
        One score (logit) per class.
    label_index : int
        The true class, ``0 <= label_index < len(scores)``.

    Examples
    --------
    >>> import sympy as sp
    >>> from symgrad.losses import softmax_cross_entropy
    >>> a, b, c = sp.symbols("a b c")
    >>> softmax_cross_entropy([a, b, c], 1)
    -b + logsumexp(a, b, c)
    >>> from symgrad.evaluate import evaluate
    >>> round(evaluate(softmax_cross_entropy([a, b], 0), {a: 0.0, b: 0.0}), 12)   # log 2
    0.69314718056
    """
    if isinstance(scores, (sp.Basic, str)) or not hasattr(scores, "__len__"):
        raise TypeError("scores must be a list of expressions, one per class")
    if len(scores) == 0:
        raise ValueError("scores is empty: softmax_cross_entropy needs one score per class")
    if isinstance(label_index, bool) or not float(label_index).is_integer():
        raise ValueError(f"label_index must be an integer class index, got {label_index!r}")
    k = int(label_index)
    if not 0 <= k < len(scores):
        raise ValueError(f"label_index {k} is out of range for {len(scores)} classes")
    s = [_sym(v, f"scores[{i}]") for i, v in enumerate(scores)]
    return sp.Add(logsumexp(*s, evaluate=False), _times(sp.S.NegativeOne, s[k]), evaluate=False)


def l2(params: Sequence[sp.Expr], coef: ExprLike) -> sp.Expr:
    """L2 penalty ``coef * sum(p**2 for p in params)`` (micrograd's ``alpha``).

    Examples
    --------
    >>> import sympy as sp
    >>> from symgrad.losses import l2
    >>> w = sp.symbols("w0:3")
    >>> l2(w, 0.5)
    0.5*(w0**2 + w1**2 + w2**2)
    """
    c = _sym(coef, "coef")
    total = sp.Add(*[sp.Pow(_sym(p, "param"), 2) for p in params])
    if c == 0 or total == 0:
        return sp.S.Zero
    return _times(c, total)


LOSSES = {"mse": mse, "hinge": hinge, "logistic": logistic,
          "softmax_cross_entropy": softmax_cross_entropy}
"""Loss name -> per-sample loss function (the names :func:`symgrad.nn.scalar_loss` takes)."""
