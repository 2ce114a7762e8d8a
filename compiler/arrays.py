"""Array programs: the IR of layer-level graphs, one array op per node.

An :class:`ArrayProgram` is a list of array operations over 2-D float64
arrays whose sizes are integers or named runtime dimensions (the batch size
``n``): ``matmul``, ``ewise`` (a scalar SSA :class:`~compiler.ir.Function`
applied elementwise), ``reduce`` (row/column/total sums, column log-sum-exp),
``trace``, ``eye``, and the views ``transpose`` and ``bcast``. Printers turn
it into loop code: :mod:`compiler.llvmloops` (LLVM IR, BLAS for big
products) and :mod:`compiler.loopsource` (Numba source). Knows nothing
about SymPy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ArrayOp", "ArrayProgram", "resolve"]


@dataclass(frozen=True)
class ArrayOp:
    """One node: ``kind`` in input/const/dim/matmul/transpose/ewise/reduce/bcast/trace/eye.

    ``shape`` entries are ints or dimension names (identifiers). ``attr``:
    input -> argument position; const -> float; dim -> (int factor, tuple of
    dimension names); ewise -> scalar :class:`Function` of its arguments;
    reduce -> "all" | "rows" | "cols" | "lse_rows" (log-sum-exp down each column).
    """

    kind: str
    args: tuple
    shape: tuple
    attr: object = None


@dataclass
class ArrayProgram:
    """Array ops in dependency order; ``outputs`` are op ids.

    ``views`` (LLVM back end only) lets an ``input`` op read a block of a flat
    argument, ``{op id: (offset, row stride)}``, and ``out_views`` lets an
    output be written straight into a flat output vector,
    ``{op id: (output vector, offset, row stride)}`` (sized by ``out_sizes``):
    how a training step reads weights from, and writes gradients to,
    micrograd's flat parameter vector without copies.
    """

    ops: list
    outputs: list
    n_args: int
    dims: dict = field(default_factory=dict)   # name -> (argument position, axis)
    views: dict = field(default_factory=dict)
    out_views: dict = field(default_factory=dict)
    out_sizes: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ops)


def resolve(prog: ArrayProgram, i: int, r: str, c: str) -> tuple:
    """``(node, row, column)`` holding element (r, c) of node i: through
    transposes (swap), broadcasts (their source) and implicit broadcasting of
    rows, columns and scalars (index 0 along a dimension of size 1)."""
    while True:
        op = prog.ops[i]
        if op.shape[0] == 1:
            r = "0"
        if op.shape[1] == 1:
            c = "0"
        if op.kind == "transpose":
            i, r, c = op.args[0], c, r
        elif op.kind == "bcast":
            i = op.args[0]
        else:
            return i, r, c
