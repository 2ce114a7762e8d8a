"""The matrix chain rule: reverse mode over a layer-level graph.

Same driver as the scalar core (:mod:`symgrad.diff`): adjoints accumulate in
reverse topological order, only nodes that depend on a ``wrt`` matrix get
one, and each node kind has one rule:

==========  =================================================================
matmul      ``A_bar += Z_bar * B.T``,  ``B_bar += A.T * Z_bar``
transpose   ``A_bar += Z_bar.T``
ewise       ``A_i_bar += reduce(Z_bar ∘ ∂f/∂u_i)``; ``∂f/∂u_i`` is the op
            table's partial (in terms of the output ``Z`` where the op
            gives it so: ``tanh`` -> ``1 - Z∘Z``) or the scalar reverse mode
            on the elementwise expression; ``reduce`` sums over the
            dimensions the argument was broadcast along
reduce      ``A_bar += broadcast(Z_bar)`` (sums); ``Z_bar ∘ exp(A - Z)`` for the
            column log-sum-exp (the softmax)
bcast       ``A_bar += reduce(Z_bar)``
trace       ``A_bar += Z_bar * I``
==========  =================================================================

Adjoints are nodes of the same hash-consed graph, so the gradient of a matrix
expression is a matrix expression of the same size class: nothing is
expanded to scalars.
"""

from __future__ import annotations

import sympy as sp

from symgrad.matrix.graph import MGraph, lower_matrix, placeholder
from symgrad.matrix.program import MatrixProgram
from symgrad.ops.registry import lookup_op

__all__ = ["matrix_program"]

_OUT = sp.Symbol("u_out")


def _partial(expr: sp.Basic, i: int, n_args: int) -> sp.Basic:
    """``∂expr/∂u_i``, in terms of ``u_0..`` and ``_OUT`` (the node's value)."""
    op = lookup_op(expr)
    holders = [placeholder(k) for k in range(n_args)]
    if op is not None and op.partials is not None and list(expr.args) == holders \
            and op.name not in ("add",):
        try:
            parts = op.partials(_OUT, *expr.args)
        except TypeError:
            parts = None
        if parts is not None and len(parts) == n_args:
            return sp.sympify(parts[i])
    from symgrad.diff import derivative

    return derivative(expr, placeholder(i))


def _reverse(g: MGraph, out: int, wrt_nodes: list) -> list:
    """Adjoint node of each ``wrt`` node for output ``out`` (a scalar node)."""
    nodes = g.nodes
    order = g.reachable([out])
    depends = [False] * len(nodes)
    targets = set(wrt_nodes)
    for i in order:
        n = nodes[i]
        depends[i] = i in targets or any(depends[a] for a in n.args)
    contribs: dict = {out: [g.const(1.0)]}
    adjoint: dict = {}
    for i in reversed(order):
        if not depends[i] or i not in contribs:
            continue
        parts = contribs.pop(i)
        bar = parts[0] if len(parts) == 1 else g.ewise(sp.Add(*[placeholder(k) for k in range(len(parts))]),
                                                        tuple(parts), nodes[i].shape)
        nodes = g.nodes
        bar = g.bcast(bar, nodes[i].shape) if nodes[bar].shape != nodes[i].shape else bar
        adjoint[i] = bar
        n = nodes[i]
        for k, a, part in _rules(g, n, bar):
            if depends[a]:
                contribs.setdefault(a, []).append(part)
        nodes = g.nodes
    return [adjoint.get(w) for w in wrt_nodes], adjoint


def _rules(g: MGraph, n, bar: int):
    """Yield ``(position, child, contribution)`` for node ``n`` with adjoint ``bar``."""
    if n.op == "matmul":
        a, b = n.args
        yield 0, a, g.matmul(bar, g.transpose(b))
        yield 1, b, g.matmul(g.transpose(a), bar)
    elif n.op == "transpose":
        yield 0, n.args[0], g.transpose(bar)
    elif n.op == "ewise":
        k = len(n.args)
        for i, a in enumerate(n.args):
            d = _partial(n.attr, i, k)
            # u0 = bar, u1 = this node's value, u2.. = its arguments
            shift = {placeholder(j): placeholder(j + 2) for j in range(k)}
            shift[_OUT] = placeholder(1)
            expr = placeholder(0) * d.xreplace(shift)
            c = g.ewise(expr, (bar, n.index, *n.args), n.shape)
            yield i, a, g.reduce_to(c, g.nodes[a].shape)
    elif n.op == "reduce" and n.attr == "lse_rows":
        a = n.args[0]   # the softmax down each column, times the adjoint
        soft = placeholder(0) * sp.exp(placeholder(1) - placeholder(2))
        yield 0, a, g.ewise(soft, (bar, a, n.index), g.nodes[a].shape)
    elif n.op == "reduce":
        a = n.args[0]
        yield 0, a, g.bcast(bar, g.nodes[a].shape)
    elif n.op == "bcast":
        a = n.args[0]
        yield 0, a, g.reduce_to(bar, g.nodes[a].shape)
    elif n.op == "trace":
        a = n.args[0]
        eye = g.add("eye", (), g.nodes[a].shape)
        yield 0, a, g.ewise(placeholder(0) * placeholder(1), (bar, eye), g.nodes[a].shape)


def matrix_program(loss, wrt: list) -> MatrixProgram:
    """Reverse mode for a scalar loss over matrix expressions.

    Parameters
    ----------
    loss : sympy.Expr
        A scalar built from traces / ``msum`` of matrix expressions.
    wrt : list of sympy.MatrixSymbol

    Examples
    --------
    >>> import sympy as sp, symgrad as sg
    >>> W = sp.MatrixSymbol("W", 3, 2); x = sp.MatrixSymbol("x", 2, 1)
    >>> print(sg.gradient_program(sg.sum_squares(W*x), [W]))
    t0 = W*x
    t1 = t0∘t0
    t2 = sum(t1)
    t0_bar = 2*t0
    W_bar = t0_bar*x.T
    """
    for w in wrt:
        if not isinstance(w, sp.MatrixSymbol):
            raise TypeError(f"wrt entries of a layer-level loss must be MatrixSymbols, got {w!r}")
    if isinstance(loss, sp.MatrixExpr) and loss.shape != (1, 1):
        raise ValueError(f"the loss must be a scalar (use sg.msum or Trace), got a {loss.shape} matrix")
    g = lower_matrix([loss])
    out = g.outputs[0]
    if g.nodes[out].shape != (1, 1):
        raise ValueError("the loss must be a scalar")
    wrt_nodes = [g.add("input", (), (w.rows, w.cols), w) for w in wrt]
    grads, adjoint = _reverse(g, out, wrt_nodes)
    grads = [gr if gr is not None else g.bcast(g.const(0.0), g.nodes[w].shape)
             for gr, w in zip(grads, wrt_nodes)]
    return MatrixProgram(g, [out], grads, list(wrt), adjoint)
