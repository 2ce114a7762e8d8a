"""From SymPy expressions and gradient programs (SymPy steps) to SSA IR.

:func:`emit_expr` lowers one expression through the op table: an op node
becomes ``builder.op(op.impl, ...)``, a symbol the IR value its caller gives.
The layer-level compiler (:mod:`symgrad.matrix.compile`) emits elementwise
bodies with it.

:func:`program_to_ir` lowers a printed :class:`~symgrad.program.GradientProgram`
step by step (SymPy -> DAG -> SymPy steps -> DAG -> IR). Compiled functions
do not go this way: :mod:`symgrad.ssa` emits their IR straight from the DAG
in one pass; this path stays as the IR of the formulas a user sees, and the
tests hold the two to the same numbers.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import sympy as sp

from compiler.ir import Builder
from symgrad.errors import UnsupportedOperation
from symgrad.graph import CONST, SYMBOL, constant_value, lower
from symgrad.program import GradientProgram

__all__ = ["program_to_ir", "emit_expr"]


def program_to_ir(program: GradientProgram, slots: Mapping[sp.Symbol, int], n_inputs: int,
                  *output_sets: Sequence[sp.Basic]) -> tuple:
    """One SSA function per output set (atoms of ``program``), from input slots.

    The program is lowered once; each function is the dead-code-eliminated
    slice of it that its outputs need.
    """
    b = Builder(n_inputs)
    env: dict = {}

    def value(atom: sp.Basic) -> int:
        if atom in env:
            return env[atom]
        if atom in slots:
            vid = b.input(slots[atom])
            env[atom] = vid
            return vid
        if isinstance(atom, sp.Symbol):
            raise ValueError(f"symbol {atom} has no value: add it to args")
        return b.const(constant_value(atom))

    for step in program.steps:
        env[step.name] = emit_expr(b, step.expr, value)
    return tuple(b.finish([value(o) for o in outputs]) for outputs in output_sets)


def emit_expr(b: Builder, expr: sp.Basic, value) -> int:
    """Emit ``expr`` into builder ``b``; ``value(symbol)`` gives a symbol's IR value."""
    graph = lower(expr)
    ids = [0] * len(graph.nodes)
    for node in graph.nodes:
        if node.kind == SYMBOL:
            ids[node.index] = value(node.expr)
        elif node.kind == CONST:
            ids[node.index] = b.const(constant_value(node.expr))
        else:
            impl = node.op.impl
            if not isinstance(impl, str):
                raise UnsupportedOperation(
                    f"op {node.op.name!r} has a Python forward only, so no back end can "
                    f"generate code for it; register it with impl=<name of a function in "
                    f"compiler.runtime>, or evaluate it with sg.tape / sg.check_grad")
            ids[node.index] = b.op(impl, *[ids[c] for c in node.args])
    return ids[graph.outputs[0]]
