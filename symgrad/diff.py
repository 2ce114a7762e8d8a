"""Reverse-mode differentiation over the DAG, and the public API built on it.

The driver (:func:`reverse_sweep`) is the textbook one (micrograd's
``backward``, with SymPy expressions instead of floats):

1. lower the outputs to a DAG (:mod:`symgrad.graph`);
2. name every op node: the forward steps ``t_k = op(children)``;
3. walk the nodes in reverse topological order; a node's adjoint is the sum
   of the contributions its parents pushed to it (fan-out accumulates), and
   it pushes ``adjoint * partial_i`` to each child, with the local partials
   taken from the op table. Only nodes that depend on a ``wrt`` symbol get
   adjoints, and a single-term adjoint that is already a name or a number is
   an alias, not a new step.

The same driver, with values kept as IR value ids instead of names, emits
SSA IR straight from the DAG for compiled functions (:mod:`symgrad.ssa`):
the SymPy program here is built only when someone asks for formulas.

Each node's rule runs once, and every step expression has a size bounded by
its op's rule, so building the program is linear in the DAG's size; there is
no ``sympy.diff`` of whole expressions and no ``sympy.cse``. Jacobians run one
reverse sweep per output over one shared DAG; Hessians are reverse-over-reverse
(a Jacobian of the gradient expressions, which share subexpressions in memory
and are hash-consed again by the lowering, so nothing swells).
"""

from __future__ import annotations

import gc
from typing import Sequence, Union

import sympy as sp

from symgrad.graph import OP, SYMBOL, Graph, lower
from symgrad.program import GradientProgram, Namer, Step

__all__ = ["gradient_program", "grad", "derivative", "jacobian", "hessian"]

S = sp.S
Scalar = Union[sp.Expr, int, float]


def _as_expr(f, what: str = "f") -> sp.Basic:
    # sp.Matrix (mutable) is not a Basic, so test for matrices first
    if isinstance(f, (sp.MatrixBase, sp.MatrixExpr)):
        raise TypeError(
            f"{what} is a matrix; grad/derivative/hessian take a scalar expression "
            f"(use sg.jacobian(list_of_expressions, wrt) for several outputs)")
    if isinstance(f, sp.Basic):
        return f
    if isinstance(f, bool) or not isinstance(f, (int, float)):
        if isinstance(f, str):
            raise TypeError(
                f"{what} is a string; build the expression with SymPy "
                f"(x = sympy.Symbol('x'); f = x**2) rather than passing text")
        raise TypeError(f"{what} must be a SymPy expression, got {type(f).__name__}")
    return sp.Float(f) if isinstance(f, float) else sp.Integer(f)


def _as_wrt(wrt) -> tuple:
    if isinstance(wrt, sp.Basic) or isinstance(wrt, str):
        raise TypeError(
            f"wrt must be a list of symbols, got {wrt!r}; write [x] for one variable "
            f"(or use sg.derivative(f, x))")
    try:
        items = tuple(wrt)
    except TypeError:
        raise TypeError(f"wrt must be a list of SymPy symbols, got {type(wrt).__name__}") from None
    for i, w in enumerate(items):
        if not isinstance(w, sp.Symbol):
            kind = type(w).__name__
            raise TypeError(
                f"wrt[{i}] is {w!r} ({kind}), not a SymPy Symbol; symgrad differentiates "
                f"with respect to symbols (substitute u = {w} with a new Symbol first)")
    return items


def _times(bar: sp.Basic, p: sp.Basic) -> sp.Basic:
    """``bar * p`` without SymPy's evaluation (assumption queries dominate
    the cost of building a program otherwise); inlining re-evaluates."""
    if p is S.One:
        return bar
    if bar is S.One:
        return p
    if p.is_Number:
        return sp.Mul(p, bar, evaluate=False)
    return sp.Mul(bar, p, evaluate=False)


def check_partials(op, parts, n_args: int) -> None:
    """A partials rule must return one entry per input (the driver's check)."""
    if len(parts) != n_args:
        raise ValueError(
            f"the partials rule of op {op.name!r} returned {len(parts)} entries "
            f"for {n_args} inputs; it must return one per input")


def reverse_sweep(graph: Graph, wrt: tuple, alg) -> list:
    """Reverse mode over ``graph``, with the values and adjoints kept by ``alg``.

    The one driver behind both products of reverse mode: the SymPy gradient
    program (:class:`_ProgramAlgebra`, named steps) and the SSA IR that
    :func:`symgrad.ssa.value_and_grad_ir` emits straight from the DAG. The
    algebra supplies

    * ``forward(node)``: the value of an op node (called in topological order);
    * ``begin(k)``: start the sweep of output ``k``; ``seed``: its adjoint term;
    * ``partials(node)``: one handle per input (``None``: no gradient flows);
    * ``term(p)``: a usable partial handle, or ``None`` if it is zero;
    * ``combine(terms)``: the adjoint from the ``(bar, partial)`` terms its
      parents pushed, left to right (fan-out accumulates);
    * ``name(i, bar)``: the adjoint of op node ``i`` as a value its children use;
    * ``gradient(w, bar)`` and ``zero``: the entry of the gradient row for ``w``.

    Returns one gradient row per output (entries from ``gradient`` or ``zero``).
    """
    nodes = graph.nodes
    n = len(nodes)
    for node in nodes:
        if node.kind == OP:
            alg.forward(node)

    # which nodes depend on a wrt symbol (and so need adjoints)
    wrt_ids = tuple(i for i in (graph.index_of(w) for w in wrt) if i is not None)
    needs = [False] * n
    for i in wrt_ids:
        needs[i] = True
    for node in nodes:
        if node.kind == OP:
            needs[node.index] = any(needs[c] for c in node.args)

    rows = []
    for k_out, out in enumerate(graph.outputs):
        alg.begin(k_out)
        contributions: list = [None] * n
        contributions[out] = [alg.seed]
        adjoint = [None] * n
        for i in range(out, -1, -1):
            terms = contributions[i]
            if terms is None or not needs[i]:
                continue
            node = nodes[i]
            if node.kind == SYMBOL:  # summed last, in the order of wrt
                adjoint[i] = terms
                continue
            bar = alg.name(i, alg.combine(terms))
            adjoint[i] = bar
            parts = alg.partials(node)
            check_partials(node.op, parts, len(node.args))
            for c, p in zip(node.args, parts):
                if p is None or not needs[c]:
                    continue
                p = alg.term(p)
                if p is None:
                    continue
                if contributions[c] is None:
                    contributions[c] = [(bar, p)]
                else:
                    contributions[c].append((bar, p))
        row = []
        named: dict = {}
        for w in wrt:
            idx = graph.index_of(w)
            if idx is None or adjoint[idx] is None:
                row.append(alg.zero)
            elif idx in named:  # w repeated in wrt
                row.append(named[idx])
            else:
                named[idx] = alg.gradient(w, alg.combine(adjoint[idx]))
                row.append(named[idx])
        rows.append(row)
    return rows


class _ProgramAlgebra:
    """Values as names and SymPy step expressions: the gradient program."""

    zero = S.Zero
    seed = (S.One, None)          # the output's adjoint: the term 1 (no partial)

    def __init__(self, graph: Graph, namer: Namer, multi: bool) -> None:
        self.graph, self.namer, self.multi = graph, namer, multi
        self.atom = [None if node.kind == OP else node.expr for node in graph.nodes]
        self.steps: list = []
        self.forward_exprs: dict = {}
        self.tprefix = namer.prefix("t")
        self.k = 0
        self.suffix = "_bar"

    def forward(self, node) -> None:
        atom = self.atom
        name = self.namer.fresh(f"{self.tprefix}{self.k}")
        self.k += 1
        atom[node.index] = name
        self.steps.append(Step(name, node.op.rebuild(*[atom[c] for c in node.args]), "forward"))
        self.forward_exprs[name] = node.expr

    def begin(self, k_out: int) -> None:
        self.suffix = f"_bar{k_out}" if self.multi else "_bar"

    def partials(self, node) -> tuple:
        atom = self.atom
        return node.op.partials(atom[node.index], *[atom[c] for c in node.args])

    @staticmethod
    def term(p):
        p = sp.sympify(p, strict=True)
        return None if p.is_Number and p.is_zero else p

    @staticmethod
    def combine(terms: list) -> sp.Basic:
        exprs = [bar if p is None else _times(bar, p) for bar, p in terms]
        return exprs[0] if len(exprs) == 1 else sp.Add(*exprs, evaluate=False)

    def name(self, i: int, bar: sp.Basic) -> sp.Basic:
        if bar.is_Atom:
            return bar
        name = self.namer.fresh(f"{self.atom[i]}{self.suffix}")
        self.steps.append(Step(name, bar, "adjoint"))
        return name

    def gradient(self, w: sp.Symbol, bar: sp.Basic) -> sp.Symbol:
        name = self.namer.fresh(f"{w}{self.suffix}")
        self.steps.append(Step(name, bar, "adjoint"))
        return name


def _reverse(graph: Graph, wrt: tuple, namer: Namer, multi: bool) -> GradientProgram:
    alg = _ProgramAlgebra(graph, namer, multi)
    gradients = reverse_sweep(graph, wrt, alg)
    outputs = [alg.atom[o] for o in graph.outputs]
    return GradientProgram(wrt, alg.steps, outputs, gradients, alg.forward_exprs, graph.n_nodes)


def _program(outputs: list, wrt: tuple, multi: bool) -> GradientProgram:
    # The build allocates millions of small objects and frees none of them:
    # Python's cyclic GC would rescan them again and again (superlinear).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        graph = lower(outputs)
        namer = Namer(str(s) for s in graph.symbols + wrt)
        return _reverse(graph, wrt, namer, multi)
    finally:
        if gc_was_enabled:
            gc.enable()


def gradient_program(f: Scalar, wrt: Sequence[sp.Symbol]) -> GradientProgram:
    """The shared-subexpression program computing ``f`` and its gradient.

    Parameters
    ----------
    f : sympy.Expr
        Scalar expression.
    wrt : sequence of Symbol
        Variables to differentiate with respect to.

    Returns
    -------
    GradientProgram
        Printable (one line per step: forward values, then adjoints ending in
        ``x_bar`` for each ``x`` in ``wrt``).

    Examples
    --------
    >>> import sympy as sp, symgrad as sg
    >>> x, y = sp.symbols("x y")
    >>> print(sg.gradient_program(x * sp.tanh(y), [x, y]))
    # forward: 2 steps
    t0 = tanh(y)
    t1 = t0*x
    # reverse: adjoints w.r.t. (x, y), output adjoint seeded with 1
    x_bar = t0
    y_bar = x*(1 - t0**2)
    return t1, (x_bar, y_bar)

    A loss over matrices (``MatrixSymbol``, ``W*x + b``, ``applyfunc``, ``Trace``,
    :func:`symgrad.msum`) gives the layer-level program instead: the backprop
    equations, one matrix step per line (:class:`symgrad.matrix.MatrixProgram`).
    """
    if _is_layer_level(f, wrt):
        from symgrad.matrix.diff import matrix_program

        return matrix_program(f, list(wrt))
    return _program([_as_expr(f)], _as_wrt(wrt), multi=False)


def _is_layer_level(f, wrt) -> bool:
    """Matrix variables (or a matrix-valued loss) select the layer-level path;
    a constant-time test, so scalar graphs of any depth are never walked here."""
    from symgrad.matrix.functions import msum

    try:
        items = list(wrt)
    except TypeError:
        items = []
    return any(isinstance(w, sp.MatrixSymbol) for w in items) or isinstance(
        f, (sp.MatrixExpr, sp.Trace, msum))


def grad(f: Scalar, wrt: Sequence[sp.Symbol]) -> list:
    """Gradient of a scalar expression, by reverse mode over its DAG.

    Parameters
    ----------
    f : sympy.Expr
        Scalar expression over the reals.
    wrt : sequence of Symbol
        Variables, in the order of the result.

    Returns
    -------
    list of sympy.Expr
        ``[df/dw for w in wrt]``, plain SymPy expressions (printable, LaTeX-able,
        ``.subs(...).evalf()`` gives numbers).

    Examples
    --------
    >>> import sympy as sp, symgrad as sg
    >>> x, y = sp.symbols("x y")
    >>> sg.grad(x * sp.tanh(y) + sg.relu(x - y), [x, y])
    [tanh(y) + Heaviside(x - y, 0), x*(1 - tanh(y)**2) - Heaviside(x - y, 0)]

    For a loss over matrices, ``wrt`` holds ``MatrixSymbol`` s and each
    gradient is a matrix expression of the same shape (the matrix chain rule;
    nothing is expanded to scalars):

    >>> W = sp.MatrixSymbol("W", 3, 2); v = sp.MatrixSymbol("v", 2, 1)
    >>> sg.grad(sg.sum_squares(W*v), [W])
    [2*W*v*v.T]
    """
    if _is_layer_level(f, wrt):
        from symgrad.matrix.diff import matrix_program

        return matrix_program(f, list(wrt)).gradient_expressions()
    _, grads = gradient_program(f, wrt).expressions()
    return grads[0]


def derivative(f: Scalar, x: sp.Symbol, order: int = 1) -> sp.Expr:
    """The derivative ``d^order f / dx^order`` (reverse mode, repeated).

    Examples
    --------
    >>> import sympy as sp, symgrad as sg
    >>> x = sp.Symbol("x")
    >>> sg.derivative(sp.log(1 + x**2), x)
    2*x/(x**2 + 1)
    >>> sg.derivative(x**3, x, order=2)
    6*x
    """
    if not isinstance(x, sp.Symbol):
        raise TypeError(f"derivative: x must be a SymPy Symbol, got {x!r} ({type(x).__name__})")
    if not isinstance(order, int) or order < 0:
        raise ValueError(f"derivative: order must be a non-negative integer, got {order!r}")
    result = _as_expr(f)
    for _ in range(order):
        result = grad(result, [x])[0]
    return result


def jacobian(fs: Sequence[Scalar], wrt: Sequence[sp.Symbol]) -> sp.Matrix:
    """Jacobian matrix ``J[i, j] = d fs[i] / d wrt[j]``.

    One reverse sweep per output over a single DAG shared by all outputs.

    Examples
    --------
    >>> import sympy as sp, symgrad as sg
    >>> x, y = sp.symbols("x y")
    >>> sg.jacobian([x * y, x + sp.sin(y)], [x, y])
    Matrix([
    [y,      x],
    [1, cos(y)]])
    """
    if isinstance(fs, sp.MatrixBase):
        fs = list(fs)
    elif isinstance(fs, sp.Basic) or not hasattr(fs, "__iter__"):
        raise TypeError("jacobian: fs must be a list of scalar expressions, e.g. [f, g]")
    outs = [_as_expr(f, f"fs[{i}]") for i, f in enumerate(fs)]
    w = _as_wrt(wrt)
    _, grads = _program(outs, w, multi=len(outs) > 1).expressions()
    return sp.Matrix(len(outs), len(w), lambda i, j: grads[i][j])


def hessian(f: Scalar, wrt: Sequence[sp.Symbol]) -> sp.Matrix:
    """Hessian matrix ``H[i, j] = d^2 f / (d wrt[i] d wrt[j])`` (reverse over reverse).

    Examples
    --------
    >>> import sympy as sp, symgrad as sg
    >>> x, y = sp.symbols("x y")
    >>> sg.hessian(x**2 * y, [x, y])
    Matrix([
    [2*y, 2*x],
    [2*x,   0]])
    """
    w = _as_wrt(wrt)
    return jacobian(grad(f, w), w)
