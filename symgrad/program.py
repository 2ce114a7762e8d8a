"""The gradient program: forward values and adjoints as named steps.

A :class:`GradientProgram` is a straight-line, single-assignment program
whose steps are small SymPy expressions over earlier names: first one step per
op node of the DAG (``t3 = tanh(t2)``), then one step per adjoint that is not
trivially an alias (``t2_bar = t3_bar*(1 - t3**2)``), ending with ``x_bar``
for every variable differentiated. Each intermediate is named once; nothing is
recomputed. It is what ``print`` shows and what :func:`symgrad.grad` inlines into
plain SymPy expressions; compiled functions build theirs only on request
(their IR comes straight from the DAG: :mod:`symgrad.ssa`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

import sympy as sp

__all__ = ["Step", "GradientProgram", "Namer"]


@dataclass(frozen=True)
class Step:
    """One assignment ``name = expr`` of a program.

    ``kind`` is ``"forward"`` (a value) or ``"adjoint"`` (a cotangent).
    """

    name: sp.Symbol
    expr: sp.Basic
    kind: str

    def __str__(self) -> str:
        return f"{self.name} = {self.expr}"


class Namer:
    """Fresh, readable names that never collide with the user's symbols."""

    def __init__(self, taken: Iterable[str]) -> None:
        self._taken = set(taken)

    def fresh(self, base: str) -> sp.Symbol:
        name, k = base, 1
        while name in self._taken:
            name = f"{base}_{k}"
            k += 1
        self._taken.add(name)
        return sp.Symbol(name)

    def prefix(self, base: str) -> str:
        """A prefix ``p`` such that no user name looks like ``p<digits>...``."""
        p = base
        while any(re.match(rf"{re.escape(p)}\d", t) for t in self._taken):
            p = "_" + p
        return p


def _count_ops(expr: sp.Basic) -> int:
    consts = {}
    stack = [expr]
    while stack:
        e = stack.pop()
        if e.is_Atom:
            continue
        if not e.free_symbols:
            consts[e] = sp.Dummy()
        else:
            stack.extend(e.args)
    return int(sp.count_ops(expr.xreplace(consts) if consts else expr))


def _inline(expr: sp.Basic, env: dict) -> sp.Basic:
    """Substitute ``env`` into a (small) step expression, rebuilding every node
    with SymPy's evaluation so the result is in SymPy's canonical form."""
    if expr in env:
        return env[expr]
    if not expr.args:
        return expr
    return expr.func(*[_inline(a, env) for a in expr.args])


class GradientProgram:
    """Forward values and reverse-mode adjoints as one straight-line program.

    Built by :func:`symgrad.gradient_program`; see there for an example.

    Attributes
    ----------
    wrt : tuple of Symbol
        The variables differentiated, in order.
    steps : tuple of Step
        Forward steps, then adjoint steps.
    outputs : tuple of Expr
        Atom (name, symbol or constant) holding each output's value.
    gradients : tuple of tuple of Expr
        ``gradients[k][j]``: atom holding d outputs[k] / d wrt[j].
    n_nodes : int
        Size of the differentiated DAG (symbols and op nodes).
    """

    def __init__(self, wrt: Sequence[sp.Symbol], steps: Sequence[Step],
                 outputs: Sequence[sp.Basic], gradients: Sequence[Sequence[sp.Basic]],
                 forward_exprs: dict, n_nodes: int) -> None:
        self.wrt = tuple(wrt)
        self.steps = tuple(steps)
        self.outputs = tuple(outputs)
        self.gradients = tuple(tuple(g) for g in gradients)
        self.n_nodes = n_nodes
        self._forward_exprs = forward_exprs  # forward name -> original subexpression

    @property
    def forward_steps(self) -> tuple:
        return tuple(s for s in self.steps if s.kind == "forward")

    @property
    def adjoint_steps(self) -> tuple:
        return tuple(s for s in self.steps if s.kind == "adjoint")

    @property
    def num_ops(self) -> int:
        """Arithmetic operations in the program, counted as ``sympy.count_ops``
        counts them (``1 - t**2`` is SUB + POW = 2), summed over the steps.
        Symbol-free subexpressions (``sqrt(pi)``) count as constants, since
        code generation folds them."""
        return sum(_count_ops(s.expr) for s in self.steps)

    def expressions(self) -> tuple[list, list]:
        """Inline the program into plain SymPy expressions.

        Returns
        -------
        values : list of Expr
            One expression per output.
        gradients : list of list of Expr
            ``gradients[k][j]`` = d outputs[k] / d wrt[j], as SymPy expressions
            in the original symbols, sharing subexpressions in memory.
        """
        env = dict(self._forward_exprs)
        try:
            for step in self.steps:
                if step.kind == "adjoint":
                    env[step.name] = _inline(step.expr, env)
        except RecursionError:
            raise RecursionError(
                "the derivative is too deep to build as one nested SymPy expression "
                "(SymPy's constructors recurse on deep arguments); use "
                "sg.gradient_program(f, wrt), which handles any depth, or sg.compile") from None
        sub = lambda a: env.get(a, a)  # noqa: E731
        return ([sub(o) for o in self.outputs],
                [[sub(g) for g in row] for row in self.gradients])

    def __str__(self) -> str:
        lines = []
        wrt = ", ".join(str(w) for w in self.wrt)
        lines.append(f"# forward: {len(self.forward_steps)} steps")
        lines.extend(str(s) for s in self.forward_steps)
        lines.append(f"# reverse: adjoints w.r.t. ({wrt}), output adjoint seeded with 1")
        lines.extend(str(s) for s in self.adjoint_steps)
        if len(self.outputs) == 1:
            grads = ", ".join(str(g) for g in self.gradients[0])
            lines.append(f"return {self.outputs[0]}, ({grads}{',' if len(self.wrt) == 1 else ''})")
        else:
            for k, (o, row) in enumerate(zip(self.outputs, self.gradients)):
                grads = ", ".join(str(g) for g in row)
                lines.append(f"return[{k}] {o}, ({grads})")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"<GradientProgram: {len(self.forward_steps)} forward + "
                f"{len(self.adjoint_steps)} adjoint steps, {self.n_nodes} DAG nodes, "
                f"wrt=({', '.join(str(w) for w in self.wrt)})>")

    def _repr_latex_(self) -> str:
        rows = []
        for s in self.steps:
            rows.append(rf"{sp.latex(s.name)} &= {sp.latex(s.expr)}")
        return r"$\begin{aligned}" + r"\\ ".join(rows) + r"\end{aligned}$"
