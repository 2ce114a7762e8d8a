"""SSA IR: the contract between symgrad and the back ends.

A :class:`Function` is a straight-line single-assignment program over
float64 values. Each :class:`Instr` applies one primitive, named as in
:mod:`compiler.runtime` (``"tanh"``, ``"add"``, ``"pow"``, ...), to earlier
values; ``input`` reads slot ``k`` of the flat input vector and ``const``
holds a number. Outputs are value ids written to the flat output vector.

:class:`Builder` constructs functions with, on the fly,

* CSE by hash-consing (the same op on the same values is one value),
* constant folding (an op on constants becomes a constant, computed with
  the runtime function, so folding gives the numbers the code would),

and :meth:`Builder.finish` removes dead code and renumbers values densely in
creation order, so one front-end program always gives byte-identical IR
(stable cache keys). The module knows nothing about SymPy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from compiler import runtime

__all__ = ["Instr", "Function", "Builder"]

INPUT, CONST = "input", "const"


@dataclass(frozen=True)
class Instr:
    """``v<id> = op(args)``; ``args`` are value ids, except for ``input``
    (the slot number) and ``const`` (the float value)."""

    op: str
    args: tuple

    def format(self, vid: int) -> str:
        if self.op == INPUT:
            return f"v{vid} = in[{self.args[0]}]"
        if self.op == CONST:
            return f"v{vid} = {self.args[0]!r}"
        return f"v{vid} = {self.op}({', '.join(f'v{a}' for a in self.args)})"


@dataclass(frozen=True)
class Function:
    """A finished SSA program: ``instrs[i]`` defines value ``i``."""

    n_inputs: int
    instrs: tuple
    outputs: tuple

    def __str__(self) -> str:
        lines = [ins.format(i) for i, ins in enumerate(self.instrs)]
        lines += [f"out[{k}] = v{v}" for k, v in enumerate(self.outputs)]
        return "\n".join(lines)

    def __len__(self) -> int:
        return len(self.instrs)

    @property
    def n_outputs(self) -> int:
        return len(self.outputs)

    def evaluate(self, inputs: Sequence[float]) -> list:
        """Run the program with :mod:`compiler.runtime` (the reference semantics)."""
        if len(inputs) != self.n_inputs:
            raise ValueError(f"expected {self.n_inputs} inputs, got {len(inputs)}")
        vals = [0.0] * len(self.instrs)
        for i, ins in enumerate(self.instrs):
            if ins.op == INPUT:
                vals[i] = float(inputs[ins.args[0]])
            elif ins.op == CONST:
                vals[i] = ins.args[0]
            else:
                vals[i] = runtime.lookup(ins.op)(*[vals[a] for a in ins.args])
        return [vals[v] for v in self.outputs]


def _const_key(x: float):
    # -0.0 and 0.0 (and nan payloads) must stay distinct constants
    return (CONST, math.copysign(1.0, x), x if x == x else "nan", repr(x))


class Builder:
    """Incrementally build a :class:`Function` with CSE and constant folding.

    Examples
    --------
    >>> from compiler.ir import Builder
    >>> b = Builder(n_inputs=1)
    >>> x = b.input(0)
    >>> t = b.op("tanh", x)
    >>> y = b.op("mul", t, b.op("tanh", x))     # the same tanh: reused
    >>> print(b.finish([y]))
    v0 = in[0]
    v1 = tanh(v0)
    v2 = mul(v1, v1)
    out[0] = v2
    """

    def __init__(self, n_inputs: int) -> None:
        self.n_inputs = n_inputs
        self._instrs: list = []
        self._memo: dict = {}

    def _emit(self, key, instr: Instr) -> int:
        vid = self._memo.get(key)
        if vid is None:
            vid = len(self._instrs)
            self._instrs.append(instr)
            self._memo[key] = vid
        return vid

    def input(self, slot: int) -> int:
        if not 0 <= slot < self.n_inputs:
            raise IndexError(f"input slot {slot} out of range 0..{self.n_inputs - 1}")
        return self._emit((INPUT, slot), Instr(INPUT, (slot,)))

    def const(self, value: float) -> int:
        value = float(value)
        return self._emit(_const_key(value), Instr(CONST, (value,)))

    def value_of(self, vid: int):
        """The constant a value holds, or ``None`` if it is not a constant."""
        ins = self._instrs[vid]
        return ins.args[0] if ins.op == CONST else None

    def op(self, name: str, *args: int) -> int:
        """``name(*args)``, reusing an identical earlier value or folding constants."""
        consts = [self.value_of(a) for a in args]
        if args and all(c is not None for c in consts):
            return self.const(runtime.lookup(name)(*consts))
        return self._emit((name, args), Instr(name, tuple(args)))

    def finish(self, outputs: Sequence[int]) -> Function:
        """Dead-code elimination and dense renumbering; returns the Function."""
        live = [False] * len(self._instrs)
        for v in outputs:
            live[v] = True
        for i in range(len(self._instrs) - 1, -1, -1):
            ins = self._instrs[i]
            if live[i] and ins.op not in (INPUT, CONST):
                for a in ins.args:
                    live[a] = True
        new_id = {}
        instrs = []
        for i, ins in enumerate(self._instrs):
            if not live[i]:
                continue
            new_id[i] = len(instrs)
            if ins.op in (INPUT, CONST):
                instrs.append(ins)
            else:
                instrs.append(Instr(ins.op, tuple(new_id[a] for a in ins.args)))
        return Function(self.n_inputs, tuple(instrs), tuple(new_id[v] for v in outputs))
