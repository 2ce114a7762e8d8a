"""Layer-level graphs: SymPy matrix expressions lowered to a DAG of array ops.

Users write SymPy's own matrix expressions (``MatrixSymbol``, ``W*x + b``,
``.T``, ``HadamardProduct``, ``applyfunc``, ``Trace``) plus symgrad's
``msum``; this module lowers them to a small DAG whose node kinds are:

``input``      a ``MatrixSymbol``
``const``      a number (shape (1, 1), broadcasts)
``dim``        a symbolic dimension such as the batch size ``n`` (1, 1)
``matmul``     ``A*B``
``transpose``  ``A.T``
``ewise``      an elementwise scalar expression of its arguments, with
               broadcasting of (r,1), (1,c) and (1,1) arguments: ``W*x + b``
               is ``ewise(u0 + u1)``, ``tanh`` applied elementwise is
               ``ewise(tanh(u0))``, ``h∘h`` is ``ewise(u0**2)``. The scalar
               expression uses placeholder symbols ``u0, u1, ...``.
``reduce``     sum over rows, columns or everything (``msum``, bias gradients)
``bcast``      broadcast to a shape (``b*OneMatrix(1, n)``, gradients of sums)
``trace``      trace of a square matrix; ``eye``: the identity

Representation choice: one generic elementwise node instead of one node kind
per SymPy class keeps the matrix chain rule to five rules (matmul,
transpose, ewise, reduce, bcast); the elementwise derivatives come from the
scalar op table. SymPy pushes transposes inward (``(f.(A)).T`` becomes
``f.(A.T)``); the lowering pulls them back out, so ``h`` and ``h.T`` share
one node and ``Trace(h.T*h)`` is recognised as the sum of squares of ``h``.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy.matrices.expressions.applyfunc import ElementwiseApplyFunction

from symgrad.matrix.functions import column_logsumexp, msum

__all__ = ["MNode", "MGraph", "lower_matrix", "placeholder"]


def placeholder(i: int) -> sp.Symbol:
    """The i-th argument of an elementwise expression."""
    return sp.Symbol(f"u{i}")


@dataclass(frozen=True)
class MNode:
    index: int
    op: str
    args: tuple
    shape: tuple
    attr: object = None
    scalar: bool = False   # a scalar quantity (sum, trace, number, dim), not a 1x1 matrix

    @property
    def rows(self):
        return self.shape[0]

    @property
    def cols(self):
        return self.shape[1]


def broadcast_shape(shapes: list) -> tuple:
    """Result shape of an elementwise op: each dimension is 1 or the common size."""
    out = []
    for d in range(2):
        sizes = [s[d] for s in shapes if s[d] != 1]
        size = sizes[0] if sizes else 1
        for s in sizes[1:]:
            if s != size:
                raise ValueError(f"shapes {shapes} do not broadcast: dimension {d} is "
                                 f"{size} in one argument and {s} in another")
        out.append(size)
    return tuple(out)


class MGraph:
    """A hash-consed DAG of :class:`MNode` (children before parents)."""

    def __init__(self) -> None:
        self.nodes: list = []
        self._memo: dict = {}
        self.outputs: list = []

    def add(self, op: str, args: tuple, shape: tuple, attr=None, scalar: bool = False) -> int:
        key = (op, args, shape, attr, scalar)
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        node = MNode(len(self.nodes), op, tuple(args), tuple(shape), attr, scalar)
        self.nodes.append(node)
        self._memo[key] = node.index
        return node.index

    def reachable(self, roots) -> list:
        """Ids of the nodes ``roots`` depend on (themselves included), in graph order."""
        seen = [False] * len(self.nodes)
        stack = list(roots)
        while stack:
            i = stack.pop()
            if not seen[i]:
                seen[i] = True
                stack.extend(self.nodes[i].args)
        return [i for i in range(len(self.nodes)) if seen[i]]

    # -- constructors with local simplification ------------------------------------
    def const(self, value: float) -> int:
        return self.add("const", (), (1, 1), float(value), True)

    def const_value(self, i: int):
        node = self.nodes[i]
        if node.op == "const":
            return node.attr
        if node.op == "bcast" and self.nodes[node.args[0]].op == "const":
            return self.nodes[node.args[0]].attr
        return None

    def transpose(self, i: int) -> int:
        node = self.nodes[i]
        if node.op == "transpose":
            return node.args[0]
        if node.shape == (1, 1):
            return i
        if node.op == "bcast" and self.const_value(i) is not None:
            return self.bcast(node.args[0], (node.cols, node.rows))
        return self.add("transpose", (i,), (node.cols, node.rows))

    def matmul(self, a: int, b: int) -> int:
        na, nb = self.nodes[a], self.nodes[b]
        if na.cols != nb.rows:
            raise ValueError(f"matrix product of shapes {na.shape} and {nb.shape}: "
                             f"inner dimensions differ")
        if na.shape == (1, 1) and na.scalar:
            return self.ewise(placeholder(0) * placeholder(1), (a, b))
        if nb.shape == (1, 1) and nb.scalar:
            return self.ewise(placeholder(0) * placeholder(1), (a, b))
        return self.add("matmul", (a, b), (na.rows, nb.cols))

    def ewise(self, expr: sp.Basic, args: tuple, shape: tuple | None = None) -> int:
        """Elementwise ``expr(u0, u1, ...)`` of ``args``; folds constant arguments,
        drops unused ones and returns an argument itself for ``expr == u_i``."""
        expr = sp.sympify(expr)
        shapes = [self.nodes[a].shape for a in args]
        out_shape = broadcast_shape(shapes) if shape is None else shape
        subs, keep = {}, []
        for i, a in enumerate(args):
            c = self.const_value(a)
            if c is not None:
                subs[placeholder(i)] = sp.Float(c) if c != int(c) else sp.Integer(int(c))
            else:
                keep.append((i, a))
        if subs:
            expr = expr.xreplace(subs)
        # renumber the remaining placeholders, merging repeated arguments
        ren, new_args = {}, []
        for i, a in keep:
            if placeholder(i) not in expr.free_symbols:
                continue
            if a in new_args:
                ren[placeholder(i)] = placeholder(new_args.index(a))
            else:
                ren[placeholder(i)] = placeholder(len(new_args))
                new_args.append(a)
        expr = expr.xreplace(ren)
        if not new_args:
            value = float(expr)
            c = self.const(value)
            return c if out_shape == (1, 1) else self.add("bcast", (c,), out_shape)
        if expr == placeholder(0) and len(new_args) == 1 and self.nodes[new_args[0]].shape == out_shape:
            return new_args[0]
        scalar = out_shape == (1, 1) and all(self.nodes[a].scalar for a in new_args)
        return self.add("ewise", tuple(new_args), out_shape, expr, scalar)

    def reduce_to(self, i: int, shape: tuple) -> int:
        """Sum ``i`` over the dimensions in which ``shape`` is 1 (the adjoint of broadcasting)."""
        node = self.nodes[i]
        if node.shape == shape:
            return i
        rows = shape[0] == 1 and node.rows != 1
        cols = shape[1] == 1 and node.cols != 1
        c = self.const_value(i)
        if c is not None:   # sum of a constant matrix: the constant times the count
            count = (node.rows if rows else 1) * (node.cols if cols else 1)
            total = self.ewise(sp.Float(c) * placeholder(0), (self.dim_of(count),))
            return self.bcast(total, shape)
        out_shape = (1 if rows else node.rows, 1 if cols else node.cols)
        axis = "all" if out_shape == (1, 1) else ("cols" if cols else "rows")
        return self.add("reduce", (i,), out_shape, axis, out_shape == (1, 1))

    def dim_of(self, d) -> int:
        """A scalar node holding the dimension (or product of dimensions) ``d``."""
        if not _has_sym(d):
            return self.const(float(d))
        return self.add("dim", (), (1, 1), sp.sympify(d), True)

    def bcast(self, i: int, shape: tuple) -> int:
        if self.nodes[i].shape == shape:
            return i
        return self.add("bcast", (i,), shape)


def _has_sym(d) -> bool:
    return isinstance(d, sp.Basic) and bool(d.free_symbols)


# --------------------------------------------------------------------------------------------
# lowering
# --------------------------------------------------------------------------------------------

class _Lowerer:
    def __init__(self, graph: MGraph) -> None:
        self.g = graph
        self.memo: dict = {}

    def node(self, e) -> int:
        """Lower ``e`` and materialise a pending transpose."""
        i, t = self.lower(e)
        return self.g.transpose(i) if t else i

    def lower(self, e) -> tuple:
        """``(node, transposed)``: ``e`` is ``node`` or ``node.T``."""
        hit = self.memo.get(e)
        if hit is None:
            hit = self._lower(e)
            self.memo[e] = hit
        return hit

    def _lower(self, e) -> tuple:
        g = self.g
        if isinstance(e, sp.MatrixSymbol):
            return g.add("input", (), (e.rows, e.cols), e), False
        if isinstance(e, sp.Transpose):
            i, t = self.lower(e.arg)
            return i, not t
        if isinstance(e, sp.OneMatrix):
            return g.bcast(g.const(1.0), (e.rows, e.cols)), False
        if isinstance(e, sp.ZeroMatrix):
            return g.bcast(g.const(0.0), (e.rows, e.cols)), False
        if isinstance(e, sp.Identity):
            return g.add("eye", (), (e.rows, e.cols)), False
        if isinstance(e, column_logsumexp):
            i = self.node(e.arg)
            n = g.nodes[i]
            return g.add("reduce", (i,), (1, n.cols), "lse_rows"), False
        if isinstance(e, sp.MatMul):
            return self._matmul(e)
        if isinstance(e, sp.MatAdd):
            return self._elementwise(sp.Add, e.args)
        if isinstance(e, sp.HadamardProduct):
            return self._elementwise(sp.Mul, e.args)
        if isinstance(e, sp.HadamardPower):
            i, t = self.lower(e.base)
            return g.ewise(placeholder(0) ** self.number(e.exp), (i,)), t
        if isinstance(e, ElementwiseApplyFunction):
            lam = e.function
            (var,) = lam.variables
            i, t = self.lower(e.expr)
            return g.ewise(lam.expr.xreplace({var: placeholder(0)}), (i,)), t
        if isinstance(e, sp.Function) and len(e.args) == 1 and isinstance(e.args[0], sp.MatrixExpr) \
                and not isinstance(e, (msum, sp.Trace)):
            i, t = self.lower(e.args[0])
            return g.ewise(e.func(placeholder(0)), (i,)), t
        if isinstance(e, (sp.MatrixBase, sp.MatrixExpr)):
            raise TypeError(
                f"{type(e).__name__} is not supported in layer-level graphs; use MatrixSymbol, "
                f"matrix products/sums, .T, HadamardProduct, applyfunc, Trace and sg.msum")
        return self.scalar(e), False

    def number(self, e) -> sp.Basic:
        if not (isinstance(e, sp.Basic) and e.is_number):
            raise TypeError(f"elementwise exponent must be a number, got {e}")
        return e

    def _matmul(self, e) -> tuple:
        g = self.g
        coeff = [a for a in e.args if not isinstance(a, sp.MatrixExpr)]
        mats = [a for a in e.args if isinstance(a, sp.MatrixExpr)]
        lowered = [self.lower(m) for m in mats]
        if len(lowered) > 1 and all(t for _, t in lowered) and not any(
                isinstance(m, sp.OneMatrix) for m in mats):
            # (A.T B.T) = (B A).T: keep the untransposed product
            cur = lowered[-1][0]
            for i, _ in reversed(lowered[:-1]):
                cur = self._product(cur, i)
            result, transposed = cur, True
        else:
            # a run of transposed factors A.T*B.T is (B*A).T: one product, one transpose
            cur, k = None, 0
            while k < len(lowered):
                i, t = lowered[k]
                if t and not isinstance(mats[k], sp.OneMatrix):
                    run = [i]
                    while k + 1 < len(lowered) and lowered[k + 1][1] and not isinstance(
                            mats[k + 1], sp.OneMatrix):
                        k += 1
                        run.append(lowered[k][0])
                    prod = run[-1]
                    for j in reversed(run[:-1]):
                        prod = self._product(prod, j)
                    factor = g.transpose(prod)
                else:
                    factor = g.transpose(i) if t else i
                cur = factor if cur is None else self._product(cur, factor)
                k += 1
            result, transposed = cur, False
        if coeff:
            c = self.scalar(sp.Mul(*coeff))
            result = g.ewise(placeholder(0) * placeholder(1), (c, result))
        return result, transposed

    def _product(self, a: int, b: int) -> int:
        """``a*b``, where a product with a matrix of ones is a broadcast or a sum."""
        g = self.g
        na, nb = g.nodes[a], g.nodes[b]
        if g.const_value(b) == 1.0 and nb.op == "bcast":
            if na.cols == 1:                       # b * OneMatrix(1, n): broadcast columns
                return g.bcast(a, (na.rows, nb.cols))
            return g.bcast(g.reduce_to(a, (na.rows, 1)), (na.rows, nb.cols))   # A * ones: row sums
        if g.const_value(a) == 1.0 and na.op == "bcast":
            if nb.rows == 1:
                return g.bcast(b, (na.rows, nb.cols))
            return g.bcast(g.reduce_to(b, (1, nb.cols)), (na.rows, nb.cols))   # ones * A: column sums
        return g.matmul(a, b)

    def _elementwise(self, head, args) -> tuple:
        lowered = [self.lower(a) for a in args]
        g = self.g
        if all(t for _, t in lowered):
            nodes, transposed = [i for i, _ in lowered], True
        else:
            nodes, transposed = [g.transpose(i) if t else i for i, t in lowered], False
        expr = head(*[placeholder(k) for k in range(len(nodes))])
        return g.ewise(expr, tuple(nodes)), transposed

    def scalar(self, e) -> int:
        """A scalar expression over traces, sums, numbers and dimensions: one ewise node."""
        g = self.g
        if isinstance(e, (int, float)):
            e = sp.sympify(e)
        if e.is_number:
            return g.const(float(e))
        if isinstance(e, sp.Symbol):
            return g.dim_of(e)
        if isinstance(e, sp.Trace):
            return self.trace(e.arg)
        if isinstance(e, msum):
            i = self.node(e.args[0])
            return g.reduce_to(i, (1, 1)) if g.nodes[i].shape != (1, 1) else _as_scalar(g, i)
        if isinstance(e, (sp.Add, sp.Mul, sp.Pow, sp.Function)):
            atoms = []
            subs = {}
            for a in _scalar_atoms(e):
                subs[a] = placeholder(len(atoms))
                atoms.append(self.scalar(a))
            return g.ewise(e.xreplace(subs), tuple(atoms))
        raise TypeError(f"cannot use {e!r} ({type(e).__name__}) in a layer-level expression")

    def trace(self, a) -> int:
        g = self.g
        if isinstance(a, sp.MatMul) and all(isinstance(f, sp.MatrixExpr) for f in a.args):
            # Trace(X.T*X) (SymPy flattens it to F1*..*Fk with F_j == F_(k+1-j).T):
            # the sum of squares of X, without forming X.T*X
            f, k = a.args, len(a.args)
            if k % 2 == 0 and all(f[j] == f[k - 1 - j].T for j in range(k // 2)):
                x = sp.MatMul(*f[k // 2:]) if k > 2 else f[1]
                return g.reduce_to(g.ewise(placeholder(0) ** 2, (self.node(x),)), (1, 1))
        i = self.node(a)
        node = g.nodes[i]
        if node.rows != node.cols:
            raise ValueError(f"Trace of a non-square {node.shape} matrix")
        if node.op == "matmul":
            x, y = node.args
            nx, ny = g.nodes[x], g.nodes[y]
            if nx.op == "transpose" and nx.args[0] == y or ny.op == "transpose" and ny.args[0] == x:
                base = y if nx.op == "transpose" and nx.args[0] == y else x
                return g.reduce_to(g.ewise(placeholder(0) ** 2, (base,)), (1, 1))
        if node.shape == (1, 1):
            return _as_scalar(g, i)
        return g.add("trace", (i,), (1, 1), None, True)


def _as_scalar(g: MGraph, i: int) -> int:
    if g.nodes[i].scalar:
        return i
    return g.add("ewise", (i,), (1, 1), placeholder(0), True)


def _scalar_atoms(e) -> list:
    """Maximal non-arithmetic subterms (traces, sums, symbols) of a scalar expression."""
    out, seen, stack = [], set(), [e]
    while stack:
        x = stack.pop()
        if isinstance(x, (sp.Trace, msum, sp.Symbol)):
            if x not in seen:
                seen.add(x)
                out.append(x)
        elif isinstance(x, sp.Basic) and not x.is_number:
            stack.extend(reversed(x.args))
    return out


def lower_matrix(outputs: list) -> MGraph:
    """Lower scalar losses / matrix expressions to an :class:`MGraph`.

    Examples
    --------
    >>> import sympy as sp
    >>> W = sp.MatrixSymbol("W", 3, 2); x = sp.MatrixSymbol("x", 2, 1)
    >>> g = lower_matrix([sp.Trace((W*x).T * (W*x))])
    >>> [n.op for n in g.nodes]
    ['input', 'input', 'matmul', 'ewise', 'reduce']
    """
    g = MGraph()
    low = _Lowerer(g)
    for e in outputs:
        if isinstance(e, sp.MatrixExpr):
            g.outputs.append(low.node(e))
        else:
            g.outputs.append(low.scalar(sp.sympify(e)))
    return g
