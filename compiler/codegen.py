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

__all__ = ["python_source", "source_hash", "entry_source", "batch_entry_source", "extern_kernel_source"]


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


def entry_source(kernel: str, name: str, layout: list, n_inputs: int, n_outputs: int,
                 result: str) -> str:
    """A Numba entry point taking the user's arguments directly.

    ``layout`` gives, per argument, ``(start, length)`` in the flat input
    vector (``length`` None for a float argument). ``result`` is ``"tuple"``
    (``out[0], out[1:]``: value and gradient), ``"scalar"`` (``out[0]``) or
    ``"array"`` (``out``). Saves the Python-side packing on small calls.

    Examples
    --------
    >>> print(entry_source("k", "entry", [(0, None), (1, 3)], 4, 4, "tuple"), end="")
    def entry(a0, a1):
        inp = np.empty(4)
        inp[0] = a0
        for j in range(3):
            inp[1 + j] = a1[j]
        out = np.empty(4)
        k(inp, out)
        return out[0], out[1:]
    """
    for ident in (kernel, name):
        if not ident.isidentifier():
            raise ValueError(f"{ident!r} is not an identifier")
    params = ", ".join(f"a{i}" for i in range(len(layout)))
    lines = [f"def {name}({params}):", f"    inp = np.empty({int(n_inputs)})"]
    for i, (start, length) in enumerate(layout):
        if length is None:
            lines.append(f"    inp[{int(start)}] = a{i}")
        else:
            lines.append(f"    for j in range({int(length)}):")
            lines.append(f"        inp[{int(start)} + j] = a{i}[j]")
    lines.append(f"    out = np.empty({int(n_outputs)})")
    lines.append(f"    {kernel}(inp, out)")
    returns = {"tuple": "out[0], out[1:]", "scalar": "out[0]", "array": "out"}
    lines.append(f"    return {returns[result]}")
    return "\n".join(lines) + "\n"


def batch_entry_source(kernel: str, name: str, layout: list, n_inputs: int, n_outputs: int) -> str:
    """A Numba ``prange`` entry evaluating ``kernel`` at n points read straight
    from the user's arrays (no packing): ``a_k`` is ``(n,)`` for a float
    argument and ``(n, length)`` for an array argument (broadcasts with
    stride 0 are fine). Returns ``out`` of shape ``(n, n_outputs)``.

    Examples
    --------
    >>> print(batch_entry_source("k", "entry_batch", [(0, None), (1, 2)], 3, 2), end="")
    def entry_batch(a0, a1):
        n = a0.shape[0]
        out = np.empty((n, 2))
        for c in prange((n + 255) // 256):
            inp = np.empty(3)
            for i in range(c * 256, min(c * 256 + 256, n)):
                inp[0] = a0[i]
                for j in range(2):
                    inp[1 + j] = a1[i, j]
                k(inp, out[i])
        return out
    """
    for ident in (kernel, name):
        if not ident.isidentifier():
            raise ValueError(f"{ident!r} is not an identifier")
    params = ", ".join(f"a{i}" for i in range(len(layout)))
    lines = [f"def {name}({params}):", "    n = a0.shape[0]",
             f"    out = np.empty((n, {int(n_outputs)}))",
             "    for c in prange((n + 255) // 256):",
             f"        inp = np.empty({int(n_inputs)})",
             "        for i in range(c * 256, min(c * 256 + 256, n)):"]
    for i, (start, length) in enumerate(layout):
        if length is None:
            lines.append(f"            inp[{int(start)}] = a{i}[i]")
        else:
            lines.append(f"            for j in range({int(length)}):")
            lines.append(f"                inp[{int(start)} + j] = a{i}[i, j]")
    lines.append(f"            {kernel}(inp, out[i])")
    lines.append("    return out")
    return "\n".join(lines) + "\n"


def extern_kernel_source(symbol: str, name: str) -> str:
    """Numba glue for a kernel compiled elsewhere (the llvm back end): ``name(inp,
    out)`` calls the registered native symbol.

    Examples
    --------
    >>> print(extern_kernel_source("symgrad_ll_abc", "kernel"), end="")
    _ext_kernel = types.ExternalFunction("symgrad_ll_abc", types.void(types.voidptr, types.voidptr))
    <BLANKLINE>
    <BLANKLINE>
    def kernel(inp, out):
        _ext_kernel(inp.ctypes, out.ctypes)
    """
    if not symbol.isidentifier() or not name.isidentifier():
        raise ValueError("symbol and kernel names must be identifiers")
    return (f'_ext_{name} = types.ExternalFunction("{symbol}", '
            f"types.void(types.voidptr, types.voidptr))\n\n\n"
            f"def {name}(inp, out):\n    _ext_{name}(inp.ctypes, out.ctypes)\n")
