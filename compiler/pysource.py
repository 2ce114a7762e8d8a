"""Print an SSA :class:`~compiler.ir.Function` as Python source.

One statement per SSA value, locals for intermediates, one flat input array
and one flat output array (never many scalar parameters). Identifiers are
generated (``v12``), never taken from user names. Arithmetic is printed inline;
every other op calls the function of the same name in :mod:`compiler.runtime`
(under Numba, the jitted copy of it in :mod:`compiler.nbruntime`), so the
Python and native back ends compute the same numbers.
"""

from __future__ import annotations

import hashlib

from compiler.ir import CONST, INPUT, Function

__all__ = ["python_source", "source_hash", "cfunc_source", "CFUNC_SIGNATURE"]

CFUNC_SIGNATURE = "void(CPointer(float64), CPointer(float64))"
"""The C signature of :func:`cfunc_source`'s entry (``void (double*, double*)``)."""


_MAX_TERMS = 64


def _expr(op: str, args: list, consts: dict, ref: dict) -> str:
    text = [ref.get(a, a) for a in args]
    if op == "add":
        return " + ".join(text)
    if op == "mul":
        if consts.get(args[0]) == -1.0:
            return f"-{text[1]}"
        return f"{text[0]} * {text[1]}"
    if op == "pow":
        exponent = consts.get(args[1])
        if exponent == 2.0:
            return f"{text[0]} * {text[0]}"
        return f"pow_({text[0]}, {text[1]})"
    return f"{op}({', '.join(text)})"


def python_source(fn: Function, name: str = "kernel") -> str:
    """The body of ``def name(inp, out)`` computing ``fn``, as source text.

    Examples
    --------
    >>> from compiler.ir import Builder
    >>> b = Builder(2)
    >>> y = b.op("mul", b.input(0), b.op("tanh", b.input(1)))
    >>> print(python_source(b.finish([y])), end="")
    def kernel(inp, out):
        v0 = inp[0]
        v1 = inp[1]
        v2 = tanh(v1)
        v3 = v0 * v2
        out[0] = v3
    """
    if not name.isidentifier():
        raise ValueError(f"kernel name {name!r} is not an identifier")
    consts: dict = {}   # value name -> float (constants are printed inline)
    ref: dict = {}      # value name -> text used where the value is read
    lines = [f"def {name}(inp, out):"]
    for i, ins in enumerate(fn.instrs):
        v = f"v{i}"
        if ins.op == INPUT:
            lines.append(f"    {v} = inp[{int(ins.args[0])}]")
        elif ins.op == CONST:
            value = float(ins.args[0])
            consts[v] = value
            ref[v] = _float_literal(value)
        else:
            if not ins.op.isidentifier():
                raise ValueError(f"op name {ins.op!r} is not an identifier")
            args = [f"v{int(a)}" for a in ins.args]
            if ins.op == "add" and len(args) > _MAX_TERMS:
                # long sums in runs: still left to right, but no deeply nested
                # expression for Python's compiler (it recurses on a + b + ...)
                text = [ref.get(x, x) for x in args]
                lines.append(f"    {v} = {' + '.join(text[:_MAX_TERMS])}")
                for k in range(_MAX_TERMS, len(text), _MAX_TERMS):
                    lines.append(f"    {v} = {v} + {' + '.join(text[k:k + _MAX_TERMS])}")
                continue
            lines.append(f"    {v} = {_expr(ins.op, args, consts, ref)}")
    for k, v in enumerate(fn.outputs):
        lines.append(f"    out[{k}] = {ref.get(f'v{int(v)}', f'v{int(v)}')}")
    if len(lines) == 1:
        lines.append("    pass")
    return "\n".join(lines) + "\n"


def _float_literal(x: float) -> str:
    if x != x:
        return "NAN"
    if x in (float("inf"), float("-inf")):
        return "INF" if x > 0 else "(-INF)"
    return repr(x) if x >= 0 else f"({x!r})"


def source_hash(*parts: str) -> str:
    """A stable hex digest of source text and version strings (cache keys)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def cfunc_source(kernel: str, n_inputs: int, n_outputs: int) -> str:
    """Source of ``KERNEL_c(inp, out)`` on raw ``double*`` pointers, calling the
    Numba kernel ``KERNEL(inp, out)``, to append to the kernel's source. The
    loader compiles it as a C entry (``numba.cfunc`` with
    :data:`CFUNC_SIGNATURE`) once the module's caches are verified, so native
    callers (the call glue, batch loops) reach a Numba kernel the way they
    reach an llvm one, by address. Not cached on disk itself (the kernel it
    calls is; the wrapper costs ~0.25 s a process).

    Examples
    --------
    >>> print(cfunc_source("k", 3, 4), end="")
    <BLANKLINE>
    <BLANKLINE>
    from numba import carray
    <BLANKLINE>
    <BLANKLINE>
    def k_c(inp, out):
        k(carray(inp, (3,)), carray(out, (4,)))
    """
    if not kernel.isidentifier():
        raise ValueError(f"{kernel!r} is not an identifier")
    return ("\n\nfrom numba import carray\n\n\n"
            f"def {kernel}_c(inp, out):\n"
            f"    {kernel}(carray(inp, ({int(n_inputs)},)), carray(out, ({int(n_outputs)},)))\n")
