"""Array programs (:mod:`compiler.arrays`: layer-level graphs) as Numba source.

The printer emits one Numba function of loops, so the code size depends on
the number of layers, never on their width:

* ``matmul``: loop order chosen from the operands' storage so the innermost
  loop runs over contiguous memory (``i,k,j`` for ``A*B``, ``k,i,j`` for
  ``A.T*B``, dot products for ``A*B.T``);
* ``ewise``: one loop nest per elementwise node, its body the scalar SSA
  function (:mod:`compiler.ir`) printed inline; broadcast arguments are read
  with a fixed index instead of being materialised;
* ``reduce`` (row/column/total sums), ``trace``, ``eye``;
* ``transpose`` and ``bcast`` are views: consumers index through them.

Values of shape (1, 1) are plain float locals. The module knows nothing
about SymPy.
"""

from __future__ import annotations

from compiler.arrays import ArrayOp, ArrayProgram, resolve  # noqa: F401 - ArrayOp: doctest
from compiler.pysource import _expr, _float_literal
from compiler.ir import CONST, INPUT, Function

__all__ = ["loop_source"]


def _size(d) -> str:
    return str(int(d)) if isinstance(d, int) else _ident(d)


def _ident(name: str) -> str:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"dimension name {name!r} is not an identifier")
    return f"d_{name}"


class _Printer:
    def __init__(self, prog: ArrayProgram) -> None:
        self.p = prog
        self.lines: list = []

    def emit(self, line: str, depth: int) -> None:
        self.lines.append("    " * depth + line)

    def is_scalar(self, i: int) -> bool:
        return tuple(self.p.ops[i].shape) == (1, 1)

    def var(self, i: int) -> str:
        op = self.p.ops[i]
        if op.kind == "input":
            return f"a{int(op.attr)}"
        if op.kind == "const":
            return _float_literal(float(op.attr))
        return f"s{i}" if self.is_scalar(i) else f"m{i}"

    def elem(self, i: int, r: str, c: str) -> str:
        """Text reading element (r, c) of node i through transposes and broadcasts."""
        i, r, c = resolve(self.p, i, r, c)
        op = self.p.ops[i]
        if self.is_scalar(i) and op.kind != "input":
            return self.var(i)
        return f"{self.var(i)}[{r}, {c}]"

    def storage(self, i: int) -> tuple:
        """(source node, transposed?) after peeling transposes."""
        t = False
        while self.p.ops[i].kind == "transpose":
            i, t = self.p.ops[i].args[0], not t
        return i, t

    def alloc(self, i: int, depth: int) -> None:
        r, c = (_size(d) for d in self.p.ops[i].shape)
        self.emit(f"m{i} = np.empty(({r}, {c}))", depth)

    # -- node kinds ------------------------------------------------------------------
    def node(self, i: int) -> None:
        op = self.p.ops[i]
        kind = op.kind
        if kind in ("input", "const", "transpose", "bcast"):
            return
        if kind == "dim":
            factor, names = op.attr
            self.emit(f"s{i} = float({' * '.join([str(int(factor))] + [_ident(n) for n in names])})", 1)
        elif kind == "eye":
            n = _size(op.shape[0])
            self.emit(f"m{i} = np.zeros(({n}, {n}))", 1)
            self.emit(f"for i in range({n}):", 1)
            self.emit(f"m{i}[i, i] = 1.0", 2)
        elif kind == "matmul":
            self.matmul(i)
        elif kind == "ewise":
            self.ewise(i)
        elif kind == "reduce":
            self.reduce(i)
        elif kind == "trace":
            a = op.args[0]
            n = _size(self.p.ops[a].shape[0])
            self.emit(f"s{i} = 0.0", 1)
            self.emit(f"for i in range({n}):", 1)
            self.emit(f"s{i} += {self.elem(a, 'i', 'i')}", 2)
        else:
            raise ValueError(f"unknown array op {kind!r}")

    def matmul(self, i: int) -> None:
        op = self.p.ops[i]
        a, b = op.args
        m, n = (_size(d) for d in op.shape)
        k = _size(self.p.ops[a].shape[1])
        (sa, ta), (sb, tb) = self.storage(a), self.storage(b)
        plain = {self.p.ops[sa].kind, self.p.ops[sb].kind} <= {"input", "matmul", "ewise", "reduce", "eye"}
        if self.is_scalar(i):          # row times column: a dot product
            self.emit(f"s{i} = 0.0", 1)
            self.emit(f"for k in range({k}):", 1)
            self.emit(f"s{i} += {self.elem(a, '0', 'k')} * {self.elem(b, 'k', '0')}", 2)
            return
        if plain and tb and not ta:    # A * B.T: contiguous dot products
            self.alloc(i, 1)
            self.emit(f"for i in range({m}):", 1)
            self.emit(f"for j in range({n}):", 2)
            self.emit("acc = 0.0", 3)
            self.emit(f"for k in range({k}):", 3)
            self.emit(f"acc += {self.elem(a, 'i', 'k')} * {self.elem(b, 'k', 'j')}", 4)
            self.emit(f"m{i}[i, j] = acc", 3)
            return
        self.emit(f"m{i} = np.zeros(({m}, {n}))", 1)
        if plain and ta and not tb:    # A.T * B: k, i, j
            self.emit(f"for k in range({k}):", 1)
            self.emit(f"for i in range({m}):", 2)
            self.emit(f"aik = {self.elem(a, 'i', 'k')}", 3)
            self.emit(f"for j in range({n}):", 3)
            self.emit(f"m{i}[i, j] += aik * {self.elem(b, 'k', 'j')}", 4)
            return
        self.emit(f"for i in range({m}):", 1)   # A * B: i, k, j
        self.emit(f"for k in range({k}):", 2)
        self.emit(f"aik = {self.elem(a, 'i', 'k')}", 3)
        self.emit(f"for j in range({n}):", 3)
        self.emit(f"m{i}[i, j] += aik * {self.elem(b, 'k', 'j')}", 4)

    def ewise(self, i: int) -> None:
        op = self.p.ops[i]
        fn: Function = op.attr
        if self.is_scalar(i):
            reads = [self.elem(a, "0", "0") for a in op.args]
            body, result = _inline(fn, reads, f"e{i}_")
            for line in body:
                self.emit(line, 1)
            self.emit(f"s{i} = {result}", 1)
            return
        r, c = (_size(d) for d in op.shape)
        self.alloc(i, 1)
        self.emit(f"for i in range({r}):", 1)
        self.emit(f"for j in range({c}):", 2)
        reads = [self.elem(a, "i", "j") for a in op.args]
        body, result = _inline(fn, reads, "e")
        for line in body:
            self.emit(line, 3)
        self.emit(f"m{i}[i, j] = {result}", 3)

    def reduce(self, i: int) -> None:
        op = self.p.ops[i]
        a = op.args[0]
        r, c = (_size(d) for d in self.p.ops[a].shape)
        if op.attr == "all":
            self.emit(f"s{i} = 0.0", 1)
            self.emit(f"for i in range({r}):", 1)
            self.emit(f"for j in range({c}):", 2)
            self.emit(f"s{i} += {self.elem(a, 'i', 'j')}", 3)
        elif op.attr == "lse_rows":  # log-sum-exp down each column -> (1, c): the record's
            self.emit(f"m{i} = np.empty((1, {c}))", 1)   # m + log1p(rest), as in llvmloops
            self.emit(f"for j in range({c}):", 1)
            self.emit(f"top = {self.elem(a, '0', 'j')}", 2)
            self.emit(f"for i in range(1, {r}):", 2)
            self.emit(f"top = max2(top, {self.elem(a, 'i', 'j')})", 3)
            self.emit("below = 0.0", 2)
            self.emit("equal = 0.0", 2)
            self.emit(f"for i in range({r}):", 2)
            self.emit(f"v = {self.elem(a, 'i', 'j')}", 3)
            self.emit("below += 0.0 if v == top else exp(v - top)", 3)
            self.emit(f"for i in range({r}):", 2)
            self.emit(f"equal += 1.0 if {self.elem(a, 'i', 'j')} == top else 0.0", 3)
            self.emit(f"m{i}[0, j] = top + log1p(below + (equal - 1.0))", 2)
        elif op.attr == "cols":      # sum over columns -> (r, 1)
            self.emit(f"m{i} = np.zeros(({r}, 1))", 1)
            self.emit(f"for i in range({r}):", 1)
            self.emit("acc = 0.0", 2)
            self.emit(f"for j in range({c}):", 2)
            self.emit(f"acc += {self.elem(a, 'i', 'j')}", 3)
            self.emit(f"m{i}[i, 0] = acc", 2)
        else:                        # sum over rows -> (1, c)
            self.emit(f"m{i} = np.zeros((1, {c}))", 1)
            self.emit(f"for i in range({r}):", 1)
            self.emit(f"for j in range({c}):", 2)
            self.emit(f"m{i}[0, j] += {self.elem(a, 'i', 'j')}", 3)

    def output(self, i: int) -> str:
        """An expression for output i: a float for scalars, a fresh array otherwise."""
        op = self.p.ops[i]
        if self.is_scalar(i):
            return self.elem(i, "0", "0")
        if op.kind in ("matmul", "ewise", "reduce", "eye"):
            return self.var(i)
        r, c = (_size(d) for d in op.shape)     # a view (input, transpose, broadcast): copy it
        self.emit(f"o{i} = np.empty(({r}, {c}))", 1)
        self.emit(f"for i in range({r}):", 1)
        self.emit(f"for j in range({c}):", 2)
        self.emit(f"o{i}[i, j] = {self.elem(i, 'i', 'j')}", 3)
        return f"o{i}"


def _inline(fn: Function, reads: list, prefix: str) -> tuple:
    """Statements computing a scalar SSA function with inputs read from ``reads``."""
    consts, ref, lines = {}, {}, []
    for k, ins in enumerate(fn.instrs):
        v = f"{prefix}{k}"
        if ins.op == INPUT:
            ref[v] = reads[int(ins.args[0])]
        elif ins.op == CONST:
            consts[v] = float(ins.args[0])
            ref[v] = _float_literal(float(ins.args[0]))
        else:
            if not ins.op.isidentifier():
                raise ValueError(f"op name {ins.op!r} is not an identifier")
            args = [f"{prefix}{int(a)}" for a in ins.args]
            lines.append(f"{v} = {_expr(ins.op, args, consts, ref)}")
    (out,) = fn.outputs
    name = f"{prefix}{int(out)}"
    return lines, ref.get(name, name)


def loop_source(prog: ArrayProgram, name: str = "kernel") -> str:
    """``def name(a0, a1, ...)`` returning the outputs (floats or 2-D arrays) as a tuple.

    Examples
    --------
    >>> from compiler.ir import Builder
    >>> b = Builder(1); sq = b.finish([b.op("mul", b.input(0), b.input(0))])
    >>> prog = ArrayProgram([ArrayOp("input", (), (3, "n"), 0), ArrayOp("ewise", (0,), (3, "n"), sq),
    ...                      ArrayOp("reduce", (1,), (1, 1), "all")], [2], 1, {"n": (0, 1)})
    >>> print(loop_source(prog), end="")
    def kernel(a0):
        d_n = a0.shape[1]
        m1 = np.empty((3, d_n))
        for i in range(3):
            for j in range(d_n):
                e1 = a0[i, j] * a0[i, j]
                m1[i, j] = e1
        s2 = 0.0
        for i in range(3):
            for j in range(d_n):
                s2 += m1[i, j]
        return (s2,)
    """
    if not name.isidentifier():
        raise ValueError(f"kernel name {name!r} is not an identifier")
    if prog.views or prog.out_views:
        raise NotImplementedError("strided views are supported by the llvm loop back end only")
    pr = _Printer(prog)
    params = ", ".join(f"a{k}" for k in range(prog.n_args))
    pr.lines.append(f"def {name}({params}):")
    for dim, (pos, axis) in sorted(prog.dims.items()):
        pr.emit(f"{_ident(dim)} = a{int(pos)}.shape[{int(axis)}]", 1)
    for i in range(len(prog.ops)):
        pr.node(i)
    outs = [pr.output(i) for i in prog.outputs]
    pr.emit(f"return ({', '.join(outs)},)", 1)
    return "\n".join(pr.lines) + "\n"
