"""Graphviz drawings of expression DAGs and tape graphs, like micrograd's ``draw_dot``.

:func:`to_dot` writes DOT text (no Graphviz needed to produce it). A SymPy
expression is drawn as the DAG that symgrad differentiates
(:func:`symgrad.graph.lower`: every distinct subexpression once, so shared
subexpressions are visibly shared); a tape :class:`~symgrad.tape.Value` is
drawn from its ``_prev`` links. As in micrograd, each value is a record
``{ name | data ... | grad ... }`` and each op is a small node feeding it.
Op nodes of an expression are named ``t0, t1, ...`` like the forward steps
of :func:`symgrad.gradient_program`. With ``at=``, values and gradients
(d output / d node) come from the tape engine, replayed over the DAG.

Walks are iterative and in a fixed order, so the same input always gives
the same text. Every label is escaped: symbol names are user strings.
:func:`render` runs Graphviz's ``dot`` when it is installed, and the
returned :class:`Dot` text shows itself as SVG in Jupyter when it can.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Mapping, Sequence

import sympy as sp

from symgrad.evaluate import as_point
from symgrad.graph import CONST, OP, SYMBOL, constant_value, lower
from symgrad.program import Namer
from symgrad.tape import Value, apply

__all__ = ["Dot", "render", "to_dot"]


class Dot(str):
    """DOT text (a ``str``) that Jupyter displays as SVG when Graphviz is installed."""

    def _repr_svg_(self) -> str | None:
        data = render(self, "svg")
        return None if data is None else data.decode("utf-8")


def render(dot_text: str, fmt: str = "svg") -> bytes | None:
    """Render DOT text with Graphviz's ``dot`` program.

    Parameters
    ----------
    dot_text : str
        A graph, e.g. from :func:`to_dot`.
    fmt : str
        Any output format of ``dot -T``: ``"svg"``, ``"png"``, ``"pdf"``, ...

    Returns
    -------
    bytes or None
        The rendered file, or ``None`` when ``dot`` is not installed.

    Raises
    ------
    RuntimeError
        If ``dot`` fails.

    Examples
    --------
    >>> import sympy as sp, symgrad as sg
    >>> from symgrad.dot import render
    >>> svg = render(sg.to_dot(sp.Symbol("x") + 1))   # None without Graphviz
    >>> svg is None or svg.lstrip().startswith(b"<")
    True
    """
    exe = shutil.which("dot")
    if exe is None:
        return None
    proc = subprocess.run([exe, f"-T{fmt}"], input=dot_text.encode("utf-8"), check=False,
                          capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"dot -T{fmt} failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def to_dot(obj: sp.Basic | Sequence[sp.Basic] | Value, at: Mapping | None = None,
           wrt: Sequence[sp.Symbol] | None = None) -> Dot:
    """Graphviz DOT text of an expression's DAG or of a tape graph.

    Parameters
    ----------
    obj : sympy.Expr, list of sympy.Expr, or Value
        What to draw. A tape ``Value`` is drawn as it is (its ``data`` and
        ``grad``, after your ``backward()``).
    at : dict, optional
        ``{symbol: number}`` for every free symbol: each node then shows its
        value, and (for a single expression) its gradient d output / d node,
        computed by the tape engine.
    wrt : sequence of Symbol, optional
        The variables; gradients are shown only on nodes that depend on
        them (default: all symbols), and their leaves are drawn bold.

    Returns
    -------
    Dot
        The DOT text (a ``str``); render it with ``dot -Tsvg`` or
        :func:`render`.

    Examples
    --------
    >>> import sympy as sp, symgrad as sg
    >>> x, y = sp.symbols("x y")
    >>> print(sg.to_dot(x * sp.tanh(y), at={x: 2.0, y: 0.0}))
    digraph symgrad {
      rankdir=LR;
      node [shape=record];
      n0 [label="{ x | data 2.0000 | grad 0.0000 }", style=bold];
      n1 [label="{ y | data 0.0000 | grad 2.0000 }", style=bold];
      n2 [label="{ t0 | data 0.0000 | grad 2.0000 }"];
      n2_op [label="tanh", shape=ellipse];
      n1 -> n2_op;
      n2_op -> n2;
      n3 [label="{ t1 | data 0.0000 | grad 1.0000 }", peripheries=2];
      n3_op [label="*", shape=ellipse];
      n0 -> n3_op;
      n2 -> n3_op;
      n3_op -> n3;
    }
    """
    if isinstance(obj, Value):
        if at is not None or wrt is not None:
            raise TypeError("to_dot(value): at= and wrt= are for SymPy expressions; a Value "
                            "already holds its data and grad")
        return _value_dot(obj)
    return _expr_dot(obj, at, wrt)


def _expr_dot(obj, at, wrt) -> Dot:
    exprs = [obj] if isinstance(obj, sp.Basic) else list(obj)
    graph = lower(exprs)
    nodes = graph.nodes
    wrt = graph.symbols if wrt is None else tuple(wrt)
    data: list = [None] * len(nodes)
    grads: list = [None] * len(nodes)
    if at is not None:
        data, grads = _replay(graph, as_point(at, graph.symbols))

    wrt_ids = {graph.index_of(w) for w in wrt}
    needs = [False] * len(nodes)
    namer = Namer(str(s) for s in graph.symbols + wrt)
    prefix = namer.prefix("t")
    names: list = [None] * len(nodes)
    lines, k = [], 0
    for node in nodes:
        i = node.index
        attrs = []
        if node.kind == OP:
            needs[i] = any(needs[c] for c in node.args)
            names[i] = str(namer.fresh(f"{prefix}{k}"))
            k += 1
        elif node.kind == SYMBOL:
            needs[i] = i in wrt_ids
            names[i] = str(node.expr)
            if needs[i]:
                attrs.append("style=bold")
        else:
            names[i] = _short(node.expr)
        if i in graph.outputs:
            attrs.append("peripheries=2")
        fields = [names[i]]
        if data[i] is not None:
            fields.append(f"data {_num(data[i])}")
        if grads[i] is not None and needs[i] and node.kind != CONST:
            fields.append(f"grad {_num(grads[i])}")
        label = "{ " + " | ".join(_escape_record(f) for f in fields) + " }"
        lines.append(f'n{i} [label="{label}"{"".join(", " + a for a in attrs)}];')
        if node.kind == OP:
            lines.append(f'n{i}_op [label="{_escape(node.op.label)}", shape=ellipse];')
            lines.extend(f"n{c} -> n{i}_op;" for c in node.args)
            lines.append(f"n{i}_op -> n{i};")
    return _digraph(lines)


def _replay(graph, point: dict) -> tuple[list, list]:
    """Value and gradient (d output / d node, single output) of every node, on the tape."""
    vals: list = []
    for node in graph.nodes:
        if node.kind == OP:
            vals.append(apply(node.op, *[vals[c] for c in node.args]))
        elif node.kind == SYMBOL:
            vals.append(Value(point[node.expr]))
        else:
            vals.append(constant_value(node.expr))
    out = vals[graph.outputs[0]]
    single = len(graph.outputs) == 1 and isinstance(out, Value)
    if single:
        out.backward()
    data = [v.data if isinstance(v, Value) else v for v in vals]
    grads = [v.grad if single and isinstance(v, Value) else None for v in vals]
    return data, grads


def _value_dot(root: Value) -> Dot:
    order: list = []  # topological: children first, in the order of _prev
    index: dict = {}
    visited: set = set()
    stack = [(root, False)]
    while stack:
        v, expanded = stack.pop()
        if expanded:
            index[id(v)] = len(order)
            order.append(v)
            continue
        if id(v) in visited:
            continue
        visited.add(id(v))
        stack.append((v, True))
        stack.extend((c, False) for c in reversed(v._prev) if id(c) not in visited)
    lines = []
    for i, v in enumerate(order):
        fields = [v.label] if v.label else []
        fields += [f"data {_num(v.data)}", f"grad {_num(v.grad)}"]
        label = "{ " + " | ".join(_escape_record(f) for f in fields) + " }"
        extra = ", peripheries=2" if v is root else ""
        lines.append(f'v{i} [label="{label}"{extra}];')
        if v._prev:
            lines.append(f'v{i}_op [label="{_escape(v._op)}", shape=ellipse];')
            lines.extend(f"v{index[id(c)]} -> v{i}_op;" for c in v._prev)
            lines.append(f"v{i}_op -> v{i};")
    return _digraph(lines)


def _digraph(lines: list) -> Dot:
    body = "".join(f"  {line}\n" for line in lines)
    return Dot(f"digraph symgrad {{\n  rankdir=LR;\n  node [shape=record];\n{body}}}")


def _num(v: float) -> str:
    if math.isnan(v) or math.isinf(v):
        return str(v)
    return f"{v:.4f}" if v == 0.0 or 1e-4 <= abs(v) < 1e7 else f"{v:.4e}"


def _short(expr: sp.Basic, limit: int = 30) -> str:
    text = str(expr)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _escape(text: str) -> str:
    """Text for a double-quoted DOT string (a plain label)."""
    text = "".join(c if c.isprintable() else " " for c in text)
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _escape_record(text: str) -> str:
    """Text for one field of a record label, where ``{ } | < >`` are syntax."""
    text = _escape(text)
    for ch in "{}|<>":
        text = text.replace(ch, "\\" + ch)
    return text
