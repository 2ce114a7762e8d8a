"""Interpreting layer-level graphs: NumPy evaluation and scalar expansion.

Both walk the lowered DAG (:mod:`symgrad.matrix.graph`) node by node; they
differ in what a value is. :func:`evaluate_layers` uses NumPy arrays (a
reference independent of the code generator); :func:`expand_scalars` uses
SymPy matrices of scalar expressions, turning a small layer-level model into
the micrograd-style scalar graph, so the matrix chain rule can be checked
against the scalar reverse mode, the tape engine and finite differences.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import sympy as sp

from symgrad.matrix.graph import MGraph, lower_matrix, placeholder

__all__ = ["expand_scalars", "evaluate_layers", "scalar_symbols"]


def scalar_symbols(m: sp.MatrixSymbol, dims: Mapping | None = None) -> sp.ImmutableMatrix:
    """The scalar symbols standing for the entries of ``m``: ``W_0_1`` for ``W[0, 1]``.

    Examples
    --------
    >>> import sympy as sp
    >>> scalar_symbols(sp.MatrixSymbol("b", 2, 1))
    Matrix([
    [b_0_0],
    [b_1_0]])
    """
    rows, cols = (_concrete(d, dims) for d in m.shape)
    return sp.ImmutableMatrix(rows, cols, lambda i, j: sp.Symbol(f"{m.name}_{i}_{j}"))


def _concrete(d, dims) -> int:
    if isinstance(d, (int, sp.Integer)):
        return int(d)
    value = sp.sympify(sp.sympify(d).xreplace({k: sp.Integer(v) for k, v in dict(dims or {}).items()}))
    if not value.is_Integer:
        raise ValueError(f"dimension {d} has no value: pass dims={{{d}: ...}}")
    return int(value)


def _run(g: MGraph, leaf, ops) -> list:
    vals: list = [None] * len(g.nodes)
    for n in g.nodes:
        a = [vals[k] for k in n.args]
        vals[n.index] = leaf(n) if not n.args and n.op != "ewise" else ops(n, a)
    return vals


def _symbolic_ops(g: MGraph, dims):
    def shape_of(n):
        return tuple(_concrete(d, dims) for d in n.shape)

    def leaf(n):
        if n.op == "input":
            return scalar_symbols(n.attr, dims)
        if n.op == "const":
            v = n.attr
            return sp.ImmutableMatrix([[sp.Integer(int(v)) if v == int(v) else sp.Float(v)]])
        if n.op == "dim":
            return sp.ImmutableMatrix([[sp.Integer(_concrete(n.attr, dims))]])
        if n.op == "eye":
            return sp.ImmutableMatrix(sp.eye(shape_of(n)[0]))
        raise ValueError(n.op)

    def ops(n, a):
        r, c = shape_of(n)
        if n.op == "matmul":
            x, y = a
            return sp.ImmutableMatrix(r, c, lambda i, j: sp.Add(*[x[i, k] * y[k, j] for k in range(x.cols)]))
        if n.op == "transpose":
            return a[0].T
        if n.op == "ewise":
            return sp.ImmutableMatrix(r, c, lambda i, j: n.attr.xreplace(
                {placeholder(k): _at(v, i, j) for k, v in enumerate(a)}))
        if n.op in ("bcast",):
            return sp.ImmutableMatrix(r, c, lambda i, j: _at(a[0], i, j))
        if n.op == "reduce":
            x = a[0]
            if n.attr == "all":
                return sp.ImmutableMatrix([[sp.Add(*list(x))]])
            if n.attr == "cols":
                return sp.ImmutableMatrix(x.rows, 1, lambda i, j: sp.Add(*[x[i, k] for k in range(x.cols)]))
            if n.attr == "lse_rows":
                return sp.ImmutableMatrix(1, x.cols, lambda i, j: sp.log(sp.Add(
                    *[sp.exp(x[k, j]) for k in range(x.rows)])))
            return sp.ImmutableMatrix(1, x.cols, lambda i, j: sp.Add(*[x[k, j] for k in range(x.rows)]))
        if n.op == "trace":
            return sp.ImmutableMatrix([[sp.Add(*[a[0][k, k] for k in range(a[0].rows)])]])
        raise ValueError(n.op)
    return leaf, ops


def _at(m, i, j):
    return m[0 if m.rows == 1 else i, 0 if m.cols == 1 else j]


def expand_scalars(expr, dims: Mapping | None = None):
    """The scalar (micrograd-style) graph of a layer-level expression.

    Every ``MatrixSymbol`` ``M`` becomes a matrix of scalar symbols
    (:func:`scalar_symbols`); a scalar loss becomes one scalar SymPy
    expression, a matrix expression an ``ImmutableMatrix``. Symbolic
    dimensions need values: ``dims={n: 4}``.

    Examples
    --------
    >>> import sympy as sp, symgrad as sg
    >>> W = sp.MatrixSymbol("W", 1, 2); x = sp.MatrixSymbol("x", 2, 1)
    >>> sg.expand_scalars(sg.sum_squares(W*x))
    (W_0_0*x_0_0 + W_0_1*x_1_0)**2
    """
    g = lower_matrix([expr])
    leaf, ops = _symbolic_ops(g, dims)
    out = _run(g, leaf, ops)[g.outputs[0]]
    if isinstance(expr, sp.MatrixExpr) and not g.nodes[g.outputs[0]].scalar:
        return out
    return out[0, 0]


def evaluate_layers(expr, values: Mapping) -> float | np.ndarray:
    """Evaluate a layer-level expression with NumPy (a reference for compiled code).

    ``values`` maps each ``MatrixSymbol`` to an array of its shape, and each
    symbolic dimension to an int (or it is inferred from the arrays).

    Examples
    --------
    >>> import numpy as np, sympy as sp, symgrad as sg
    >>> from symgrad.matrix.expand import evaluate_layers
    >>> W = sp.MatrixSymbol("W", 1, 2); x = sp.MatrixSymbol("x", 2, 1)
    >>> evaluate_layers(sg.sum_squares(W*x), {W: np.array([[1.0, 2.0]]), x: np.array([[3.0], [4.0]])})
    121.0
    """
    from symgrad.evaluate import evaluate

    g = lower_matrix([expr])
    dims = {k: v for k, v in values.items() if isinstance(k, sp.Symbol)}
    arrays = {k: np.asarray(v, dtype=float) for k, v in values.items() if isinstance(k, sp.MatrixSymbol)}
    arrays = {k: (v.reshape(-1, 1) if v.ndim == 1 else v) for k, v in arrays.items()}
    for m, arr in arrays.items():
        for d, size in zip(m.shape, arr.shape):
            if isinstance(d, sp.Symbol):
                dims.setdefault(d, size)

    def leaf(n):
        if n.op == "input":
            return arrays[n.attr]
        if n.op == "const":
            return np.array([[n.attr]])
        if n.op == "dim":
            return np.array([[float(_concrete(n.attr, dims))]])
        if n.op == "eye":
            return np.eye(_concrete(n.shape[0], dims))
        raise ValueError(n.op)

    def ops(n, a):
        shape = tuple(_concrete(d, dims) for d in n.shape)
        if n.op == "matmul":
            return a[0] @ a[1]
        if n.op == "transpose":
            return a[0].T
        if n.op == "bcast":
            return np.broadcast_to(a[0], shape).copy()
        if n.op == "reduce" and n.attr == "lse_rows":
            m = a[0].max(axis=0, keepdims=True)
            return m + np.log(np.exp(a[0] - m).sum(axis=0, keepdims=True))
        if n.op == "reduce":
            axis = {"all": None, "cols": 1, "rows": 0}[n.attr]
            return np.asarray(a[0].sum(axis=axis)).reshape(shape)
        if n.op == "trace":
            return np.array([[np.trace(a[0])]])
        if n.op == "ewise":
            out = np.empty(shape)
            syms = [placeholder(k) for k in range(len(a))]
            for i in range(shape[0]):
                for j in range(shape[1]):
                    point = {s: float(v[0 if v.shape[0] == 1 else i, 0 if v.shape[1] == 1 else j])
                             for s, v in zip(syms, a)}
                    out[i, j] = evaluate(n.attr, point)
            return out
        raise ValueError(n.op)
    out = _run(g, leaf, ops)[g.outputs[0]]
    node = g.nodes[g.outputs[0]]
    return float(out[0, 0]) if node.scalar or node.shape == (1, 1) else out
