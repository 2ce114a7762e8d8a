"""Lowering SymPy expressions to a DAG of primitive ops.

Each distinct subexpression becomes one :class:`Node` (hash-consing on the
op and the child node indices, so equal subtrees that are different Python
objects still share a node). Nodes are stored in a deterministic topological
order (children before parents, post-order over ``args``), found with an
explicit stack: no recursion, so a 100,000-deep chain lowers fine, and the
same expression always gives the same node order (and so byte-identical
programs and generated code).

:func:`lower` remembers its last result: SymPy expressions are immutable, so
the same expression objects (checked by identity, together with the op
table) give the same graph, and compiling, which lowers its outputs once to
check the arguments and once to build the IR, walks the expression once.

Subtrees without free symbols (``sqrt(2)``, ``pi/4``) are folded into single
constant leaves; symbols are variable leaves; everything else must have an
entry in the op table (:mod:`symgrad.ops`) or lowering raises
:class:`~symgrad.errors.UnsupportedOperation`.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import sympy as sp

from symgrad.errors import UnsupportedOperation
from symgrad.ops.registry import Op, all_ops, lookup_op, unsupported

__all__ = ["Node", "Graph", "lower", "constant_value"]

SYMBOL, CONST, OP = "symbol", "const", "op"


class Node:
    """One node of the DAG: a symbol, a constant, or an op applied to nodes."""

    __slots__ = ("index", "kind", "expr", "op", "args")

    def __init__(self, index: int, kind: str, expr: sp.Basic,
                 op: Optional[Op] = None, args: tuple = ()) -> None:
        self.index = index
        self.kind = kind
        self.expr = expr
        self.op = op
        self.args = args

    def __repr__(self) -> str:
        if self.kind == OP:
            return f"Node({self.index}: {self.op.name}{self.args})"
        return f"Node({self.index}: {self.kind} {self.expr})"


class Graph:
    """A DAG of nodes in topological order, with one or more outputs.

    Attributes
    ----------
    nodes : list of Node
        Children always precede their parents.
    outputs : tuple of int
        Node index of each output expression.
    """

    __slots__ = ("nodes", "outputs", "_by_symbol")

    def __init__(self, nodes: list, outputs: tuple) -> None:
        self.nodes = nodes
        self.outputs = outputs
        self._by_symbol = {n.expr: n.index for n in nodes if n.kind == SYMBOL}

    @property
    def symbols(self) -> tuple:
        """The free symbols, in order of first appearance."""
        return tuple(self._by_symbol)

    def index_of(self, symbol: sp.Symbol) -> Optional[int]:
        """Node index of ``symbol``, or ``None`` if the graph does not use it."""
        return self._by_symbol.get(symbol)

    @property
    def n_nodes(self) -> int:
        """Number of non-constant nodes (symbols and ops)."""
        return sum(1 for n in self.nodes if n.kind != CONST)

    def __len__(self) -> int:
        return len(self.nodes)


_COMPLEX_ATOMS = (sp.core.numbers.ImaginaryUnit, sp.core.numbers.ComplexInfinity)


def _leaf_kind(expr: sp.Basic) -> Optional[str]:
    if expr.is_Symbol:
        return SYMBOL
    if isinstance(expr, _COMPLEX_ATOMS):
        raise UnsupportedOperation(
            f"{expr} is complex; symgrad differentiates real-valued expressions only")
    if expr.is_Number or expr.is_NumberSymbol or isinstance(expr, sp.logic.boolalg.BooleanAtom):
        return CONST
    if expr.is_Atom:
        raise UnsupportedOperation(
            f"cannot differentiate through {expr!r} ({type(expr).__name__}): "
            f"only symbols, numbers and op-table functions are supported")
    return None


def constant_value(expr: sp.Basic) -> float:
    """The float value of a constant (symbol-free) expression.

    Raises
    ------
    UnsupportedOperation
        If the constant is not real (e.g. ``sqrt(-1)``).
    """
    if expr is sp.true:
        return 1.0
    if expr is sp.false:
        return 0.0
    try:
        return float(expr)
    except TypeError:
        value = complex(expr.evalf())
        if value.imag != 0.0:
            raise UnsupportedOperation(
                f"constant {expr} = {value} is complex; symgrad is real-valued") from None
        return value.real


def lower(outputs: Sequence[sp.Basic] | sp.Basic) -> Graph:
    """Lower one or several SymPy expressions to one shared :class:`Graph`.

    Parameters
    ----------
    outputs : Expr or sequence of Expr
        The expressions; subexpressions shared between them become one node.

    Returns
    -------
    Graph

    Examples
    --------
    >>> import sympy as sp
    >>> from symgrad.graph import lower
    >>> x = sp.Symbol("x")
    >>> g = lower(sp.tanh(x) * sp.tanh(x) + sp.tanh(x))   # tanh(x) is one node
    >>> [n.op.name for n in g.nodes if n.op is not None]
    ['tanh', 'pow', 'add']
    """
    roots = [outputs] if isinstance(outputs, sp.Basic) else list(outputs)
    for i, r in enumerate(roots):
        if not isinstance(r, sp.Basic):
            raise TypeError(f"output {i} is {type(r).__name__}, not a SymPy expression")
    ops = all_ops()
    if _LAST:
        last_roots, last_ops, last_graph = _LAST
        if (len(last_roots) == len(roots) and all(a is b for a, b in zip(roots, last_roots))
                and len(last_ops) == len(ops) and all(a is b for a, b in zip(ops, last_ops))):
            return last_graph
    graph = _lower(roots)
    _LAST[:] = (tuple(roots), ops, graph)   # strong references: the ids stay unique
    return graph


_LAST: list = []   # (roots, op table, graph) of the last call


def _lower(roots: list) -> Graph:

    nodes: list[Node] = []
    by_key: dict = {}
    by_id: dict[int, int] = {}
    keepalive: list = []  # synthetic subexpressions (binarised products) must outlive by_id

    def add(kind, expr, op=None, args=()):
        key = (kind, expr) if kind != OP else (op.name, args)
        idx = by_key.get(key)
        if idx is None:
            idx = len(nodes)
            nodes.append(Node(idx, kind, expr, op, args))
            by_key[key] = idx
        by_id[id(expr)] = idx
        return idx

    for root in roots:
        stack: list = [(root, None, None)]
        while stack:
            expr, op, kids = stack[-1]
            if id(expr) in by_id:
                stack.pop()
                continue
            if kids is None:
                kind = _leaf_kind(expr)
                if kind is not None:
                    stack.pop()
                    add(kind, expr)
                    continue
                op = lookup_op(expr)
                kids = op.inputs_of(expr) if op is not None else expr.args
                if op is not None and op.children is not None:
                    keepalive.append(kids)
                stack[-1] = (expr, op, kids)
                for k in reversed(kids):
                    if id(k) not in by_id:
                        stack.append((k, None, None))
                continue
            stack.pop()
            child_ids = tuple(by_id[id(k)] for k in kids)
            if all(nodes[c].kind == CONST for c in child_ids):
                add(CONST, expr)
            elif op is None:
                raise unsupported(expr)
            else:
                add(OP, expr, op, child_ids)

    out_ids = tuple(by_id[id(r)] for r in roots)
    return _compact(nodes, out_ids)


def _compact(nodes: list, outputs: tuple) -> Graph:
    """Drop nodes no longer reachable (children of folded constants); renumber."""
    live = [False] * len(nodes)
    for o in outputs:
        live[o] = True
    for node in reversed(nodes):
        if live[node.index] and node.kind == OP:
            for c in node.args:
                live[c] = True
    if all(live):
        return Graph(nodes, outputs)
    new_index = {}
    kept = []
    for node in nodes:
        if live[node.index]:
            new_index[node.index] = len(kept)
            kept.append(Node(len(kept), node.kind, node.expr, node.op,
                             tuple(new_index[c] for c in node.args)))
    return Graph(kept, tuple(new_index[o] for o in outputs))


def symbols_in(exprs: Iterable[sp.Basic]) -> tuple:
    """Free symbols of ``exprs`` in order of first appearance (no recursion)."""
    return lower(list(exprs)).symbols
