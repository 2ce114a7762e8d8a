"""The layer-level gradient program: backprop equations as named matrix steps."""

from __future__ import annotations

import sympy as sp
from sympy.printing.str import StrPrinter

from symgrad.matrix.functions import column_logsumexp, msum
from symgrad.matrix.graph import MGraph, placeholder

__all__ = ["MatrixProgram"]

_INLINE = ("input", "const", "dim", "transpose", "bcast", "eye")


class _HadamardPrinter(StrPrinter):
    """Elementwise expressions with ``∘`` between matrices (``*`` with scalars)."""

    def __init__(self, matrices: set) -> None:
        super().__init__()
        self.matrices = matrices

    def _print_Mul(self, expr):
        if expr.could_extract_minus_sign() and expr.args[0] == -1:
            return "-" + self._print(-expr)
        mats, scal = [], []
        for f in expr.as_ordered_factors():
            text = self.parenthesize(f, 50) if isinstance(f, sp.Add) else self._print(f)
            (mats if f.free_symbols & self.matrices else scal).append(text)
        return "*".join(scal + (["∘".join(mats)] if mats else []))

    def _print_Pow(self, expr):
        base, exp = expr.as_base_exp()
        if exp == 2 and base in self.matrices:
            return f"{base}∘{base}"
        return super()._print_Pow(expr)


class MatrixProgram:
    """Forward steps, then adjoints, of a scalar loss over matrix expressions.

    Attributes
    ----------
    graph : MGraph
        The hash-consed DAG (forward and adjoint nodes).
    outputs, gradients : list of int
        Node ids of the loss and of each ``wrt`` gradient.
    wrt : list of sympy.MatrixSymbol
    """

    def __init__(self, graph: MGraph, outputs: list, gradients: list, wrt: list,
                 adjoints: dict | None = None) -> None:
        self.graph = graph
        self.adjoints = dict(adjoints or {})
        self.outputs = list(outputs)
        self.gradients = list(gradients)
        self.wrt = list(wrt)
        self.order = self._order()
        self.names = self._names()

    def _order(self) -> list:
        return self.graph.reachable(self.outputs + self.gradients)

    def _names(self) -> dict:
        g = self.graph
        names: dict = {}
        taken = {str(n.attr) for n in g.nodes if n.op == "input"}
        grads = {}
        for w, gid in zip(self.wrt, self.gradients):
            if g.nodes[gid].op not in _INLINE and gid not in grads:
                grads[gid] = f"{w.name}_bar"
        bar_of = {}
        for fwd, bar in sorted(self.adjoints.items(), reverse=True):   # nearest the loss first
            if g.nodes[fwd].op not in _INLINE and bar not in bar_of:
                bar_of[bar] = fwd
        k = 0
        for i in self.order:
            n = g.nodes[i]
            if n.op in _INLINE:
                names[i] = self._inline(i, names)
            elif i in bar_of and bar_of[i] in names:
                names[i] = f"{names[bar_of[i]]}_bar"
            elif i in grads:
                names[i] = grads[i]
            else:
                while f"t{k}" in taken:
                    k += 1
                names[i] = f"t{k}"
                k += 1
        return names

    def _inline(self, i: int, names: dict) -> str:
        n = self.graph.nodes[i]
        if n.op == "input":
            return n.attr.name
        if n.op == "const":
            v = n.attr
            return str(int(v)) if v == int(v) else repr(v)
        if n.op == "dim":
            return str(n.attr)
        if n.op == "eye":
            return "I"
        if n.op == "transpose":
            a = names[n.args[0]]
            return f"{a}.T" if a.isidentifier() else f"({a}).T"
        return names[n.args[0]]            # bcast: broadcasting is implicit in the notation

    def step_text(self, i: int) -> str:
        """The right-hand side of node ``i``'s step."""
        g, nm = self.graph, self.names
        n = g.nodes[i]
        a = [nm[x] for x in n.args]
        if n.op == "matmul":
            return "*".join(x if (x.isidentifier() or x.endswith(".T")) else f"({x})" for x in a)
        if n.op == "ewise":
            subs = {placeholder(k): sp.Symbol(name) for k, name in enumerate(a)}
            mats = {sp.Symbol(name) for x, name in zip(n.args, a) if not _is_scalar(g, x)}
            return _HadamardPrinter(mats).doprint(n.attr.xreplace(subs))
        if n.op == "reduce":
            return {"all": "sum", "cols": "rowsum", "rows": "colsum",
                    "lse_rows": "column_logsumexp"}[n.attr] + f"({a[0]})"
        if n.op == "trace":
            return f"tr({a[0]})"
        return self._inline(i, nm)

    def steps(self) -> list:
        """``(name, text, node id)`` for every printed step, in order."""
        out = []
        for i in self.order:
            n = self.graph.nodes[i]
            if n.op in _INLINE:
                continue
            out.append((self.names[i], self.step_text(i), i))
        # gradients that are aliases (an input, another gradient, a broadcast constant)
        for w, gid in zip(self.wrt, self.gradients):
            name = f"{w.name}_bar"
            if self.names.get(gid) != name:
                out.append((name, self.names[gid], gid))
        return out

    def __str__(self) -> str:
        return "\n".join(f"{name} = {text}" for name, text, _ in self.steps())

    def __repr__(self) -> str:
        return f"<MatrixProgram: {len(self.steps())} steps, wrt {[w.name for w in self.wrt]}>"

    def _repr_latex_(self) -> str:
        rows = []
        for name, _, i in self.steps():
            body = sp.latex(self.expression(i, named=True))
            rows.append(rf"{_latex_name(name)} &= {body}")
        return r"$\begin{aligned}" + r"\\ ".join(rows) + r"\end{aligned}$"

    # -- SymPy expressions ----------------------------------------------------------------
    def expression(self, i: int, named: bool = False, memo: dict | None = None):
        """Node ``i`` as a SymPy (matrix) expression; ``named=True`` refers to
        earlier steps by name instead of inlining them."""
        memo = {} if memo is None else memo
        g = self.graph
        for j in self._topo(i):
            if j in memo:
                continue
            n = g.nodes[j]
            if named and j != i and n.op not in _INLINE:
                memo[j] = (sp.MatrixSymbol(self.names[j], *n.shape) if not n.scalar
                           else sp.Symbol(self.names[j]))
                continue
            memo[j] = _rebuild(g, n, [memo[a] for a in n.args])
        return memo[i]

    def _topo(self, i: int) -> list:
        return self.graph.reachable([i])

    def gradient_expressions(self) -> list:
        """The gradient w.r.t. each ``wrt`` as one SymPy matrix expression."""
        memo: dict = {}
        return [self.expression(gid, memo=memo) for gid in self.gradients]


def _is_scalar(g: MGraph, i: int) -> bool:
    while g.nodes[i].op == "bcast":       # a broadcast scalar still prints as a scalar
        i = g.nodes[i].args[0]
    return g.nodes[i].scalar


def _latex_name(name: str) -> str:
    if name.endswith("_bar"):
        return rf"\bar{{{name[:-4]}}}"
    return name


def _rebuild(g: MGraph, n, args: list):
    """A SymPy expression for node ``n`` given its arguments' expressions."""
    rows, cols = n.shape
    if n.op == "input":
        return n.attr
    if n.op == "const":
        v = n.attr
        return sp.Integer(int(v)) if v == int(v) else sp.Float(v)
    if n.op == "dim":
        return n.attr
    if n.op == "eye":
        return sp.Identity(rows)
    if n.op == "matmul":
        return args[0] * args[1]
    if n.op == "transpose":
        return args[0].T
    if n.op == "bcast":
        return _broadcast(g.nodes[n.args[0]], args[0], n.shape)
    if n.op == "reduce":
        a = args[0]
        if n.attr == "all":
            return msum(a)
        src = g.nodes[n.args[0]]
        if n.attr == "cols":
            return a * sp.OneMatrix(src.cols, 1)
        if n.attr == "lse_rows":
            return column_logsumexp(a)
        return sp.OneMatrix(1, src.rows) * a
    if n.op == "trace":
        return sp.Trace(args[0])
    if n.op == "ewise":
        vals = {}
        for k, (a, e) in enumerate(zip(n.args, args)):
            src = g.nodes[a]
            vals[placeholder(k)] = e if src.scalar or src.shape == n.shape else _broadcast(src, e, n.shape)
        if n.scalar or n.shape == (1, 1) and all(g.nodes[a].scalar for a in n.args):
            return n.attr.xreplace(vals)
        return _elementwise(n.attr, vals, n.shape)
    raise ValueError(f"unknown node kind {n.op}")


def _broadcast(src, e, shape):
    rows, cols = shape
    if src.scalar:
        return e * sp.OneMatrix(rows, cols)
    if src.shape == shape:
        return e
    if src.cols == 1 and src.rows == rows:
        return e * sp.OneMatrix(1, cols)
    if src.rows == 1 and src.cols == cols:
        return sp.OneMatrix(rows, 1) * e
    return e * sp.OneMatrix(1, cols) if src.cols == 1 else sp.OneMatrix(rows, 1) * e


def _is_mat(e) -> bool:
    return isinstance(e, sp.MatrixExpr)


def _elementwise(expr, vals: dict, shape):
    """Translate an elementwise scalar expression into SymPy matrix operations."""
    if expr in vals:
        return vals[expr]
    if expr.is_number:
        return expr
    args = [_elementwise(a, vals, shape) for a in expr.args]
    if not any(_is_mat(a) for a in args):
        return expr.func(*args)
    if isinstance(expr, sp.Add):
        terms = [a if _is_mat(a) else a * sp.OneMatrix(*shape) for a in args]
        return sp.MatAdd(*terms)
    if isinstance(expr, sp.Mul):
        scal = [a for a in args if not _is_mat(a)]
        mats = [a for a in args if _is_mat(a)]
        m = mats[0] if len(mats) == 1 else sp.HadamardProduct(*mats)
        return sp.Mul(*scal) * m if scal else m
    if isinstance(expr, sp.Pow) and not _is_mat(args[1]):
        return sp.HadamardPower(args[0], args[1])
    if len(args) == 1:
        return args[0].applyfunc(expr.func)
    raise TypeError(f"cannot express {expr} elementwise on matrices")
