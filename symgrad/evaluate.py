"""Numeric evaluation of expressions and gradient programs in float64.

A plain interpreter over the DAG using each op's numeric forward (the same
functions the tape engine and generated code use). It is the reference
evaluator behind :func:`symgrad.check_grad`; no SymPy ``subs``/``evalf``
recursion, so it handles graphs of any depth.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import sympy as sp

from symgrad.graph import OP, SYMBOL, Graph, constant_value, lower

__all__ = ["evaluate", "evaluate_graph", "evaluate_program", "as_point"]


def as_point(values: Mapping, needed: Sequence[sp.Symbol] = ()) -> dict:
    """Validate a ``{symbol: number}`` mapping and convert the numbers to float.

    Raises
    ------
    TypeError
        If a key is not a Symbol or a value is not a real number.
    ValueError
        If a symbol in ``needed`` has no value.
    """
    if not isinstance(values, Mapping):
        raise TypeError(f"values must be a dict {{symbol: number}}, got {type(values).__name__}")
    point = {}
    for key, v in values.items():
        if not isinstance(key, sp.Symbol):
            raise TypeError(
                f"values: key {key!r} is {type(key).__name__}, not a SymPy Symbol "
                f"(use the symbol objects, e.g. {{x: 1.5}})")
        if isinstance(v, (bool, complex)) or not isinstance(v, (int, float)) and not hasattr(v, "__float__"):
            raise TypeError(f"values[{key}] = {v!r} is not a real number")
        try:
            point[key] = float(v)
        except (TypeError, ValueError):
            raise TypeError(f"values[{key}] = {v!r} is not a real number") from None
    missing = [s for s in needed if s not in point]
    if missing:
        names = ", ".join(str(s) for s in missing)
        raise ValueError(f"no value given for {names}; pass values for every free symbol")
    return point


def evaluate_graph(graph: Graph, point: Mapping) -> list:
    """Float value of every node of ``graph`` at ``point`` ({symbol: float})."""
    vals = [0.0] * len(graph.nodes)
    for node in graph.nodes:
        if node.kind == OP:
            vals[node.index] = node.op.forward(*[vals[c] for c in node.args])
        elif node.kind == SYMBOL:
            vals[node.index] = point[node.expr]
        else:
            vals[node.index] = constant_value(node.expr)
    return vals


def evaluate(expr, values: Mapping):
    """Evaluate a SymPy expression (or a list of them) numerically in float64.

    Examples
    --------
    >>> import sympy as sp
    >>> from symgrad.evaluate import evaluate
    >>> x = sp.Symbol("x")
    >>> evaluate(sp.tanh(x) ** 2, {x: 0.5})
    0.21355226703407257
    """
    single = isinstance(expr, sp.Basic)
    graph = lower([expr] if single else list(expr))
    point = as_point(values, graph.symbols)
    vals = evaluate_graph(graph, point)
    outs = [vals[o] for o in graph.outputs]
    return outs[0] if single else outs


def evaluate_program(program, values: Mapping) -> tuple:
    """Run a :class:`~symgrad.program.GradientProgram` numerically.

    Returns
    -------
    (values, gradients)
        Floats: one value per output, and ``gradients[k][j]``.
    """
    env = as_point(values)
    for step in program.steps:
        graph = lower(step.expr)
        missing = [s for s in graph.symbols if s not in env]
        if missing:
            raise ValueError(f"no value given for {', '.join(map(str, missing))}")
        env[step.name] = evaluate_graph(graph, env)[graph.outputs[0]]

    def val(a):
        return env[a] if isinstance(a, sp.Symbol) else constant_value(a)

    return ([val(o) for o in program.outputs],
            [[val(g) for g in row] for row in program.gradients])
