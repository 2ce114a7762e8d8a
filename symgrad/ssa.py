"""Reverse mode straight from the DAG to SSA IR: one pass, no SymPy program.

:func:`value_and_grad_ir` runs the reverse-mode driver of :mod:`symgrad.diff`
(:func:`~symgrad.diff.reverse_sweep`) with an algebra whose values are
:class:`compiler.ir.Builder` value ids: forward values are emitted with
``builder.op(impl, ...)`` in topological order, then the adjoints in reverse
topological order, each the left-to-right sum of what its parents pushed.

Local partials still come from the op table (``Op.partials`` returns SymPy
expressions in the op's inputs and output), but each rule runs once per
*template*, not once per node: it is called on placeholder symbols, the
results are lowered to small DAGs, and every node with the same op, arity
and argument pattern instantiates those DAGs into the builder with its own
IR values in place of the placeholders. The pattern holds what a rule may
look at: the exact value of a constant input (``x**2`` and ``x**y`` have
different rules), the assumptions of a symbol input, which inputs are the
same node. Nothing here depends on symbol *names*, so the IR is a function
of the DAG's structure and the argument layout (:mod:`symgrad.ircache`
keys its cache on exactly that).

The IR is what lowering the gradient program step by step
(:func:`symgrad.lowering.program_to_ir`) gives, up to the order of terms
inside n-ary sums and products of a partial (SymPy orders those by name),
and it is built in the same creation order (inputs and constants created
at first use, each partial emitted when its adjoint is), so numbering is
stable: the same DAG always gives byte-identical IR.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import sympy as sp

from compiler.ir import Builder, Function
from symgrad.diff import check_partials, reverse_sweep
from symgrad.errors import UnsupportedOperation
from symgrad.graph import CONST, OP, SYMBOL, Graph, constant_value, lower

__all__ = ["value_and_grad_ir", "stats"]

S = sp.S

stats = {"sweeps": 0, "templates": 0}
"""How often this process ran the emitter (``sweeps``) and built a partials
template (``templates``); :mod:`symgrad.ircache` tests read it."""

_ZERO = "zero"          # a gradient entry with no adjoint: 0.0, created at finish
_CONST_P, _GRAPH_P = 0, 1
_TEMPLATES: dict = {}   # (id(op), arg pattern) -> (op, handles); op kept alive for its id
_MAX_TEMPLATES = 100_000


def _impl(op) -> str:
    if not isinstance(op.impl, str):
        raise UnsupportedOperation(
            f"op {op.name!r} has a Python forward only, so no back end can "
            f"generate code for it; register it with impl=<name of a function in "
            f"compiler.runtime>, or evaluate it with sg.tape / sg.check_grad")
    return op.impl


def const_token(expr: sp.Basic) -> str:
    """An exact, unambiguous text for a constant (symbol-free) expression.

    Pre-order over the expression with each node's type and argument count
    (iterative); numbers exactly (``Float`` by its binary mantissa, exponent
    and precision), so ``0.5``, ``1/2`` and ``Float(0.5, 30)`` all differ.
    """
    out = []
    stack = [expr]
    while stack:
        e = stack.pop()
        if e.is_Integer:
            out.append(f"i{int(e)}")
        elif e.is_Rational:
            out.append(f"q{e.p}/{e.q}")
        elif e.is_Float:
            out.append(f"f{e._mpf_!r}@{e._prec}")
        elif not e.args:
            out.append(f"a{type(e).__name__}")
        else:
            out.append(f"n{type(e).__name__}/{len(e.args)}")
            stack.extend(reversed(e.args))
    return " ".join(out)


def assumptions_token(symbol: sp.Basic) -> tuple:
    """What a partials rule can learn about a symbol besides its name."""
    return (type(symbol).__name__,) + tuple(sorted(symbol.assumptions0.items()))


_PLAIN = assumptions_token(sp.Symbol("t"))   # forward values: plain symbols


def _template(node, nodes) -> tuple:
    """The partials of ``node``'s op for its argument pattern (built once)."""
    pattern = []
    first_at: dict = {}
    for j, c in enumerate(node.args):
        arg = nodes[c]
        first = first_at.setdefault(c, j)
        if first < j:
            pattern.append(("same", first))
        elif arg.kind == CONST:
            pattern.append(("const", const_token(arg.expr)))
        elif arg.kind == SYMBOL:
            pattern.append(("symbol", assumptions_token(arg.expr)))
        else:
            pattern.append(("symbol", _PLAIN))
    key = (id(node.op), tuple(pattern))
    hit = _TEMPLATES.get(key)
    if hit is not None:
        return hit[1]
    stats["templates"] += 1
    out = sp.Symbol("_sg_out")
    holders, args = {}, []
    for j, c in enumerate(node.args):
        kind = pattern[j][0]
        if kind == "same":
            args.append(args[pattern[j][1]])
        elif kind == "const":
            args.append(nodes[c].expr)
        else:
            ph = sp.Symbol(f"_sg_a{j}", **nodes[c].expr.assumptions0) \
                if nodes[c].kind == SYMBOL else sp.Symbol(f"_sg_a{j}")
            holders[ph] = j
            args.append(ph)
    holders[out] = -1
    parts = node.op.partials(out, *args)
    check_partials(node.op, parts, len(node.args))
    handles = []
    for p in parts:
        if p is None:
            handles.append(None)
            continue
        p = sp.sympify(p, strict=True)
        if p.is_Number and p.is_zero:
            handles.append(_ZERO)
        elif not _has_symbol(p):
            handles.append((_CONST_P, p))
        else:
            g = lower(p)
            leaves = []
            for tn in g.nodes:
                if tn.kind == SYMBOL:
                    if tn.expr not in holders:
                        raise ValueError(
                            f"the partials rule of op {node.op.name!r} returned {p}, which uses "
                            f"{tn.expr}: partials may use only the op's inputs and output")
                    leaves.append((SYMBOL, holders[tn.expr]))
                elif tn.kind == CONST:
                    leaves.append((CONST, constant_value(tn.expr)))
                else:
                    leaves.append((OP, _impl(tn.op), tn.args))
            handles.append((_GRAPH_P, tuple(leaves), g.outputs[0]))
    handles = tuple(handles)
    if len(_TEMPLATES) >= _MAX_TEMPLATES:   # one per distinct constant input: keep it bounded
        _TEMPLATES.clear()
    _TEMPLATES[key] = (node.op, handles)
    return handles


def _has_symbol(expr: sp.Basic) -> bool:
    stack = [expr]
    while stack:
        e = stack.pop()
        if e.is_Symbol:
            return True
        stack.extend(e.args)
    return False


class _IRAlgebra:
    """Values as IR value ids (ints), constant adjoints as SymPy constants."""

    zero = _ZERO
    seed = (S.One, None)

    def __init__(self, graph: Graph, slots: Mapping[sp.Symbol, int], n_inputs: int) -> None:
        self.b = Builder(n_inputs)
        self.nodes = graph.nodes
        self.slots = slots
        self.vid = [None] * len(graph.nodes)
        self.cval: dict = {}

    # values of nodes: inputs and constants are created at first use
    def val(self, i: int) -> int:
        v = self.vid[i]
        if v is not None:
            return v
        node = self.nodes[i]
        if node.kind == SYMBOL:
            slot = self.slots.get(node.expr)
            if slot is None:
                raise ValueError(f"symbol {node.expr} has no value: add it to args")
            return self.b.input(slot)
        value = self.cval.get(i)
        if value is None:
            value = self.cval[i] = constant_value(node.expr)
        return self.b.const(value)

    def const(self, expr: sp.Basic) -> int:
        return self.b.const(constant_value(expr))

    def forward(self, node) -> None:
        impl = _impl(node.op)
        self.vid[node.index] = self.b.op(impl, *[self.val(c) for c in node.args])

    def begin(self, k_out: int) -> None:
        pass

    def partials(self, node) -> tuple:
        return tuple(None if h is None else (h, node) for h in _template(node, self.nodes))

    @staticmethod
    def term(p):
        return None if p[0] is _ZERO else p

    def _emit(self, handle, node) -> int:
        """Instantiate a partial's DAG with ``node``'s values."""
        _, leaves, out = handle
        b, ids = self.b, [0] * len(leaves)
        for k, leaf in enumerate(leaves):
            kind = leaf[0]
            if kind == SYMBOL:
                j = leaf[1]
                ids[k] = self.vid[node.index] if j < 0 else self.val(node.args[j])
            elif kind == CONST:
                ids[k] = b.const(leaf[1])
            else:
                ids[k] = b.op(leaf[1], *[ids[c] for c in leaf[2]])
        return ids[out]

    @staticmethod
    def _is_const(bar, p) -> bool:
        """Whether :meth:`_term` of ``(bar, p)`` is a SymPy constant."""
        return (p is None or p[0][0] == _CONST_P) and not isinstance(bar, int)

    def _term(self, bar, p):
        """``bar * p``: an IR value, or a SymPy constant when both are constants."""
        if p is None:
            return bar
        handle, node = p
        if handle[0] == _CONST_P:
            pc = handle[1]
            if pc is S.One:
                return bar
            if bar is S.One:
                return pc
            if pc.is_Number:
                if not isinstance(bar, int):
                    return sp.Mul(pc, bar, evaluate=False)
                return self.b.op("mul", self.const(pc), bar)
            if not isinstance(bar, int):
                return sp.Mul(bar, pc, evaluate=False)
            return self.b.op("mul", bar, self.const(pc))
        if bar is S.One:
            return self._emit(handle, node)
        left = bar if isinstance(bar, int) else self.const(bar)
        return self.b.op("mul", left, self._emit(handle, node))

    def combine(self, terms: list):
        if len(terms) == 1:
            return self._term(*terms[0])
        if all(self._is_const(bar, p) for bar, p in terms):
            return sp.Add(*[self._term(bar, p) for bar, p in terms], evaluate=False)
        ids = []
        for bar, p in terms:
            t = self._term(bar, p)
            ids.append(t if isinstance(t, int) else self.const(t))
        return self.b.op("add", *ids)

    def name(self, i: int, bar):
        if isinstance(bar, int) or bar.is_Atom:
            return bar
        return self.const(bar)

    def gradient(self, w, bar) -> int:
        return bar if isinstance(bar, int) else self.const(bar)

    def finish(self, graph: Graph, rows: list) -> tuple:
        b = self.b
        values = [self.val(o) for o in graph.outputs]
        grads = [b.const(0.0) if g is _ZERO else g for row in rows for g in row]
        return b.finish(values + grads), b.finish(values)


def value_and_grad_ir(graph: Graph, slots: Mapping[sp.Symbol, int], n_inputs: int,
                      wrt: Sequence[sp.Symbol]) -> tuple[Function, Function]:
    """The value-and-gradient and forward SSA functions of ``graph``'s outputs.

    Parameters
    ----------
    graph : Graph
        The lowered outputs (:func:`symgrad.graph.lower`).
    slots : mapping
        Input slot of every symbol the outputs use.
    n_inputs : int
        Length of the flat input vector.
    wrt : sequence of Symbol
        Variables of the gradient, in order.

    Returns
    -------
    (value_and_grad, forward) : tuple of compiler.ir.Function
        ``value_and_grad`` outputs the values, then ``d out_k / d wrt_j`` row
        by row; ``forward`` is its dead-code-eliminated slice for the values.

    Examples
    --------
    >>> import sympy as sp
    >>> from symgrad.graph import lower
    >>> from symgrad.ssa import value_and_grad_ir
    >>> x, y = sp.symbols("x y")
    >>> vg, fw = value_and_grad_ir(lower(x * sp.tanh(y)), {x: 0, y: 1}, 2, [x, y])
    >>> print(vg)
    v0 = in[1]
    v1 = tanh(v0)
    v2 = in[0]
    v3 = mul(v2, v1)
    v4 = 1.0
    v5 = -1.0
    v6 = 2.0
    v7 = pow(v1, v6)
    v8 = mul(v5, v7)
    v9 = add(v4, v8)
    v10 = mul(v2, v9)
    out[0] = v3
    out[1] = v1
    out[2] = v10
    >>> vg.evaluate([2.0, 0.5])[2] == 2.0 * (1 - __import__("math").tanh(0.5) ** 2)
    True
    """
    stats["sweeps"] += 1
    alg = _IRAlgebra(graph, slots, n_inputs)
    rows = reverse_sweep(graph, tuple(wrt), alg)
    return alg.finish(graph, rows)
