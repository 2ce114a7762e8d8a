"""Compile a layer-level loss and its gradient to loop code (Numba).

The matrix gradient program (:mod:`symgrad.matrix.diff`) becomes an
:class:`compiler.arrays.ArrayProgram`: one array op per node, elementwise
bodies lowered through the scalar op table to SSA functions. Code size and
compile time depend on the number of layers, not on their width; symbolic
dimensions (a batch size ``n``) are read from the arguments at run time, so
one compiled kernel serves every batch size.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import sympy as sp

from compiler import sourceload
from compiler.ir import Builder
from compiler.arrays import ArrayOp, ArrayProgram
from compiler.loopsource import loop_source
from symgrad.lowering import emit_expr
from symgrad.matrix.diff import matrix_program
from symgrad.matrix.graph import placeholder
from symgrad.matrix.program import MatrixProgram

__all__ = ["CompiledLayers", "compile_layers"]


def _ewise_function(expr: sp.Basic, n_args: int):
    b = Builder(n_args)
    slots = {placeholder(k): b.input(k) for k in range(n_args)}

    def value(sym):
        if sym in slots:
            return slots[sym]
        raise ValueError(f"unexpected symbol {sym} in an elementwise expression")
    return b.finish([emit_expr(b, expr, value)])


def to_array_program(prog: MatrixProgram, args: list, outputs: list,
                     arg_views: dict | None = None, out_views: dict | None = None,
                     out_sizes: list | None = None) -> tuple:
    """``(ArrayProgram, dims)`` for the nodes ``outputs`` need; ``dims`` maps each
    symbolic dimension to its generated name.

    ``arg_views`` maps a MatrixSymbol to ``(argument position, offset, row
    stride)``: a block of a flat argument; ``out_views`` maps an index into ``outputs`` to ``(vector,
    offset, row stride)`` in flat output vectors of sizes ``out_sizes``.
    """
    arg_views = arg_views or {}
    out_views = out_views or {}
    g = prog.graph
    position = {a: k for k, a in enumerate(args)}
    dims: dict = {}
    dim_names: dict = {}
    for k, a in enumerate(args):
        for axis, d in enumerate(a.shape):
            if isinstance(d, sp.Symbol) and d not in dim_names:
                dim_names[d] = f"n{len(dim_names)}"
                dims[dim_names[d]] = (k, axis)

    def size(d):
        if isinstance(d, (int, sp.Integer)):
            return int(d)
        if d in dim_names:
            return dim_names[d]
        raise ValueError(f"dimension {d} is not the size of any argument: pass an argument "
                         f"with that dimension (e.g. the data matrix)")

    order = g.reachable(outputs)
    fused, composite = _fuse_elementwise(g, order, outputs)
    new = {}
    ops = []
    missing = []
    for i in order:
        if i in fused:
            continue
        n = g.nodes[i]
        shape = tuple(size(d) for d in n.shape)
        node_args = n.args
        attr = None
        if n.op == "input":
            if n.attr in arg_views:
                attr = arg_views[n.attr][0]
            elif n.attr not in position:
                missing.append(n.attr)
                continue
            else:
                attr = position[n.attr]
        elif n.op == "const":
            attr = float(n.attr)
        elif n.op == "dim":
            coeff, factors = n.attr.as_coeff_mul()
            if not all(isinstance(f, sp.Symbol) for f in factors) or not coeff.is_Integer:
                raise ValueError(f"unsupported dimension expression {n.attr}")
            attr = (int(coeff), tuple(size(f) for f in factors))
        elif n.op == "ewise":
            expr, node_args = composite[i]
            attr = _ewise_function(expr, len(node_args))
        elif n.op == "reduce":
            attr = n.attr
        if missing:
            continue
        new[i] = len(ops)
        ops.append(ArrayOp(n.op, tuple(new[a] for a in node_args), shape, attr))
    if missing:
        raise ValueError(f"matrix symbols {', '.join(str(m) for m in missing)} are not in args; "
                         f"add them to args")
    views = {new[i]: tuple(arg_views[g.nodes[i].attr][1:]) for i in order
             if g.nodes[i].op == "input" and g.nodes[i].attr in arg_views}
    outs = [new[o] for o in outputs]
    oviews = {}
    for k, view in out_views.items():
        if outs[k] in oviews or outs[k] in views or outs.count(outs[k]) > 1:
            raise NotImplementedError("an output shared by two views")
        oviews[outs[k]] = view
    return ArrayProgram(ops, outs, len(args), dims, views, oviews, list(out_sizes or [])), dim_names


def _vector_math_op(expr: sp.Basic) -> bool:
    """Whether ``expr``'s head is one back-end primitive computed with libm
    (SIMD loops run it through libmvec; see :mod:`compiler.ops`)."""
    from compiler import ops
    from symgrad.ops.registry import lookup_op

    op = lookup_op(expr)
    return op is not None and isinstance(op.impl, str) and op.impl in ops.names() \
        and ops.get(op.impl).vector == "libmvec"


def _fuse_elementwise(g, order: list, outputs: list) -> tuple:
    """Merge each elementwise node used once, by an elementwise node of the same
    shape, into that consumer: one loop nest, no intermediate array.

    Returns the fused node ids and, per elementwise node, its composite
    ``(expr, leaf args)``.
    """
    uses = {i: 0 for i in order}
    consumer: dict = {}
    for i in order:
        for a in g.nodes[i].args:
            uses[a] += 1
            consumer[a] = i
    for o in outputs:
        uses[o] += 2
    fused, composite = set(), {}
    for i in order:
        n = g.nodes[i]
        if n.op != "ewise":
            continue
        expr, leaves, subs = n.attr, [], {}
        # f(u0) of a transcendental f stays its own loop: vector math can run it
        lone = len(n.args) == 1 and isinstance(expr, sp.Function) and expr.args == (placeholder(0),) \
            and _vector_math_op(expr)
        for k, a in enumerate(n.args):
            child = g.nodes[a]
            if a in composite and uses[a] == 1 and child.shape == n.shape and not lone:
                cexpr, cargs = composite[a]
                fused.add(a)
                ren = {}
                for j, leaf in enumerate(cargs):
                    if leaf not in leaves:
                        leaves.append(leaf)
                    ren[placeholder(j)] = _tmp(leaves.index(leaf))
                subs[placeholder(k)] = cexpr.xreplace(ren)
            else:
                if a not in leaves:
                    leaves.append(a)
                subs[placeholder(k)] = _tmp(leaves.index(a))
        expr = expr.xreplace(subs)
        expr = expr.xreplace({_tmp(j): placeholder(j) for j in range(len(leaves))})
        composite[i] = (expr, tuple(leaves))
    return fused, composite


def _tmp(j: int) -> sp.Symbol:
    return sp.Symbol(f"_leaf{j}")


def _pack_arrays(args: tuple, values) -> list:
    """Check and convert call arguments for the MatrixSymbols ``args``."""
    if len(values) != len(args):
        raise TypeError(f"expected {len(args)} arrays "
                        f"({', '.join(a.name for a in args)}), got {len(values)}")
    out, dims = [], {}
    for a, v in zip(args, values):
        if isinstance(v, (str, bytes)):
            raise TypeError(f"argument {a.name} must be a numeric array, got {v!r}")
        try:
            arr = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"argument {a.name} must be a numeric array, got {v!r}") from None
        if arr.ndim == 1 and a.shape[1] == 1:
            arr = arr.reshape(-1, 1)
        elif arr.ndim == 0 and a.shape == (1, 1):
            arr = arr.reshape(1, 1)
        if arr.ndim != 2:
            raise ValueError(f"argument {a.name} must be a 2-D array of shape {a.shape}, "
                             f"got shape {arr.shape}")
        for axis, d in enumerate(a.shape):
            got = arr.shape[axis]
            if isinstance(d, sp.Symbol):
                if dims.setdefault(d, got) != got:
                    raise ValueError(f"dimension {d} is {dims[d]} in one argument and {got} "
                                     f"in {a.name} (shape {arr.shape})")
            elif got != int(d):
                raise ValueError(f"argument {a.name} must have shape {a.shape}, got {arr.shape}")
        out.append(np.ascontiguousarray(arr))
    return out


class CompiledLayers:
    """A compiled layer-level loss: ``value_and_grad(*arrays) -> (float, [grads])``.

    Built by :func:`symgrad.compile` when the expression involves matrices.
    Arguments are 2-D float64 arrays in ``args`` order (a 1-D array is taken
    as a column for an ``(k, 1)`` argument); gradients have the shapes of the
    ``wrt`` matrices.
    """

    def __init__(self, loss, args: Sequence, wrt: Sequence | None = None,
                 backend: str = "llvm", program_only: bool = False) -> None:
        if backend not in ("llvm", "numba"):
            raise ValueError(f"layer-level code runs on backend 'llvm' (default) or 'numba', "
                             f"got {backend!r}")
        args = list(args)
        for a in args:
            if not isinstance(a, sp.MatrixSymbol):
                raise TypeError(f"args of a layer-level expression must be MatrixSymbols, got {a!r}")
        if len(set(args)) != len(args):
            raise ValueError("a matrix symbol appears twice in args")
        wrt = args if wrt is None else list(wrt)
        bad = [w for w in wrt if w not in args]
        if bad:
            raise ValueError(f"wrt matrices {bad} are not in args")
        self.loss, self.args, self.wrt = loss, tuple(args), tuple(wrt)
        self.program = matrix_program(loss, list(wrt))
        outputs = self.program.outputs + self.program.gradients
        self.array_program, self._dims = to_array_program(self.program, args, outputs)
        self.source = loop_source(self.array_program, "value_and_grad")
        fw_prog, _ = to_array_program(self.program, args, self.program.outputs)
        self.source_forward = loop_source(fw_prog, "forward")
        self._fw_prog = fw_prog
        self._backend = backend
        self._fw = None
        if program_only:        # the caller compiles its own variant of the program
            return
        if backend == "numba":
            mod, self.cache_path, self.cache_reused = sourceload.load_numba(
                self.source, "value_and_grad")
            self._vg = mod.value_and_grad
        else:
            from compiler.llvmjit import load_loops

            kernel = load_loops(self.array_program)
            self._vg, self.cache_path, self.cache_reused = kernel, kernel.path, kernel.reused
        self._backend = backend
        self._fw = None

    @property
    def backend(self) -> str:
        return self._backend

    def _pack(self, values) -> list:
        return _pack_arrays(self.args, values)

    def value_and_grad(self, *arrays) -> tuple:
        """``(loss, [gradient w.r.t. each wrt matrix])`` from one fused kernel."""
        res = self._vg(*self._pack(arrays))
        grads = [np.array([[g]]) if isinstance(g, float) else np.asarray(g) for g in res[1:]]
        return float(res[0]), grads

    def grad(self, *arrays) -> list:
        """The gradients only (one array per ``wrt`` matrix)."""
        return self.value_and_grad(*arrays)[1]

    def __call__(self, *arrays) -> float:
        """The loss value (a forward-only kernel, compiled on first use)."""
        if self._fw is None:
            if self._backend == "numba":
                self._fw = sourceload.load_numba(self.source_forward, "forward")[0].forward
            else:
                from compiler.llvmjit import load_loops

                self._fw = load_loops(self._fw_prog)
        return float(self._fw(*self._pack(arrays))[0])

    def __reduce__(self):
        return (CompiledLayers, (self.loss, self.args, self.wrt, self._backend))

    def __repr__(self) -> str:
        return (f"<CompiledLayers: args=({', '.join(a.name for a in self.args)}), "
                f"wrt=({', '.join(w.name for w in self.wrt)}), "
                f"{len(self.array_program)} array ops>")


def compile_layers(loss, args: Sequence, wrt: Sequence | None = None,
                   backend: str = "llvm") -> CompiledLayers:
    """Compile a scalar layer-level loss and its gradient (see :class:`CompiledLayers`)."""
    return CompiledLayers(loss, args, wrt, backend)


class CompiledForward:
    """Compiled matrix expressions (no gradient): ``fn(*arrays)`` -> tuple of results."""

    def __init__(self, exprs, args: Sequence) -> None:
        from compiler.llvmjit import load_loops
        from symgrad.matrix.graph import lower_matrix

        exprs = list(exprs) if isinstance(exprs, (list, tuple)) else [exprs]
        self.exprs, self.args = exprs, tuple(args)
        g = lower_matrix(exprs)
        self.program = MatrixProgram(g, list(g.outputs), [], [])
        self.array_program, _ = to_array_program(self.program, list(args), list(g.outputs))
        self.source = loop_source(self.array_program, "forward")
        self._kernel = load_loops(self.array_program)

    def __call__(self, *arrays) -> tuple:
        return self._kernel(*_pack_arrays(self.args, arrays))


def compile_forward(exprs, args: Sequence) -> CompiledForward:
    """Compile matrix expressions of ``args`` (MatrixSymbols) to loop code."""
    return CompiledForward(exprs, args)
