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

:meth:`Function.to_bytes` / :meth:`Function.from_bytes` store a function
compactly and exactly (constants as their IEEE-754 bits: ``-0.0``, infinities
and NaN payloads survive), with no ``pickle`` or ``eval``: the reader parses a
fixed little-endian layout and rejects anything out of place (a value used
before it is defined, an input slot out of range, an op :mod:`compiler.runtime`
does not define or called with the wrong number of arguments, trailing bytes),
so bytes read back from a disk cache are data, never code.
"""

from __future__ import annotations

import gc
import inspect
import math
import struct
import sys
from array import array
from dataclasses import dataclass
from typing import NamedTuple, Sequence

from compiler import runtime

__all__ = ["Instr", "Function", "Builder", "FORMAT_VERSION"]

INPUT, CONST = "input", "const"

FORMAT_VERSION = 1
"""Version of the :meth:`Function.to_bytes` layout."""
_MAGIC = b"SGIR"
_HEAD = struct.Struct("<4sHHIIII")   # magic, version, n_names, n_inputs, n_instrs, n_outputs, n_words
_MAX_NAME = 64
_BIG_ENDIAN = sys.byteorder == "big"
assert array("I").itemsize == 4 and array("d").itemsize == 8


class Instr(NamedTuple):
    """``v<id> = op(args)``; ``args`` are value ids, except for ``input``
    (the slot number) and ``const`` (the float value).

    A named tuple (immutable, like a frozen dataclass, and built 5x faster:
    a 30k-statement program is parsed from the disk cache on every compile)."""

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

    def op_names(self) -> frozenset:
        """The op names the function uses (``input`` and ``const`` included)."""
        return frozenset(ins.op for ins in self.instrs)

    def to_bytes(self) -> bytes:
        """The function as bytes: exact, compact, and the same bytes for equal functions.

        Layout (little-endian): a header (magic ``SGIR``, format version, the
        number of op names, inputs, instructions, outputs and 32-bit words),
        the op names (length byte + ASCII), one 32-bit word stream (per
        instruction: op index, then the input slot, the constant's index, or
        the argument count and argument ids), the constants as float64 bits,
        then the output ids as 32-bit words.

        Examples
        --------
        >>> from compiler.ir import Builder, Function
        >>> b = Builder(1)
        >>> f = b.finish([b.op("mul", b.input(0), b.const(-0.0))])
        >>> Function.from_bytes(f.to_bytes()) == f
        True
        """
        names: dict = {}
        words = array("I")
        consts = array("d")
        for ins in self.instrs:
            k = names.setdefault(ins.op, len(names))
            words.append(k)
            if ins.op == INPUT:
                words.append(ins.args[0])
            elif ins.op == CONST:
                words.append(len(consts))
                consts.append(ins.args[0])
            else:
                words.append(len(ins.args))
                words.extend(ins.args)
        outs = array("I", self.outputs)
        table = b"".join(bytes([len(n)]) + n.encode("ascii") for n in names)
        if _BIG_ENDIAN:
            for a in (words, consts, outs):
                a.byteswap()
        head = _HEAD.pack(_MAGIC, FORMAT_VERSION, len(names), self.n_inputs, len(self.instrs),
                          len(self.outputs), len(words))
        return head + table + words.tobytes() + consts.tobytes() + outs.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Function":
        """Parse :meth:`to_bytes` output, validating everything.

        Raises
        ------
        ValueError
            If ``data`` is not exactly one well-formed function: wrong magic or
            version, a truncated or overlong buffer, an unknown op or a wrong
            argument count for it, an argument or output that is not an
            earlier value, an input slot out of range.
        """
        gc_was_enabled = gc.isenabled()
        gc.disable()     # tens of thousands of new tuples, none garbage: no collection passes
        try:
            return cls._parse(bytes(data))
        finally:
            if gc_was_enabled:
                gc.enable()

    @classmethod
    def _parse(cls, data: bytes) -> "Function":
        if len(data) < _HEAD.size:
            raise ValueError("IR bytes: truncated header")
        magic, version, n_names, n_inputs, n_instrs, n_outputs, n_words = _HEAD.unpack_from(data)
        if magic != _MAGIC:
            raise ValueError("IR bytes: not a symgrad IR function (bad magic)")
        if version != FORMAT_VERSION:
            raise ValueError(f"IR bytes: format version {version}, expected {FORMAT_VERSION}")
        pos = _HEAD.size
        names = []
        for _ in range(n_names):
            if pos >= len(data):
                raise ValueError("IR bytes: truncated op-name table")
            n = data[pos]
            name = data[pos + 1:pos + 1 + n]
            pos += 1 + n
            if len(name) != n or not n or n > _MAX_NAME:
                raise ValueError("IR bytes: bad op name")
            try:
                text = name.decode("ascii")
            except UnicodeDecodeError:
                raise ValueError("IR bytes: op name is not ASCII") from None
            if not text.isidentifier() or text in names:
                raise ValueError(f"IR bytes: bad op name {text!r}")
            names.append(text)
        arities = [_arity(n) for n in names]
        word_end = pos + 4 * n_words
        if word_end > len(data):
            raise ValueError("IR bytes: truncated instruction stream")
        words = array("I")
        words.frombytes(data[pos:word_end])
        rest = len(data) - word_end - 4 * n_outputs
        if rest < 0 or rest % 8:
            raise ValueError("IR bytes: truncated or overlong constants/outputs")
        consts = array("d")
        consts.frombytes(data[word_end:word_end + rest])
        outs = array("I")
        outs.frombytes(data[word_end + rest:])
        if _BIG_ENDIAN:
            for a in (words, consts, outs):
                a.byteswap()
        instrs: list = []
        append = instrs.append
        w, n_consts = 0, 0
        for i in range(n_instrs):
            if w + 2 > n_words:
                raise ValueError("IR bytes: instruction stream ends early")
            k, x = words[w], words[w + 1]
            w += 2
            if k >= n_names:
                raise ValueError(f"IR bytes: op index {k} out of range")
            op = names[k]
            if op == INPUT:
                if x >= n_inputs:
                    raise ValueError(f"IR bytes: input slot {x} out of range 0..{n_inputs - 1}")
                append(Instr(INPUT, (x,)))
            elif op == CONST:
                if x != n_consts or x >= len(consts):
                    raise ValueError("IR bytes: constants out of order")
                n_consts += 1
                append(Instr(CONST, (consts[x],)))
            else:
                if w + x > n_words:
                    raise ValueError("IR bytes: instruction stream ends early")
                args = tuple(words[w:w + x])
                w += x
                want = arities[k]
                if want is not None and x != want:
                    raise ValueError(f"IR bytes: {op} with {x} arguments")
                if args and max(args) >= i:
                    raise ValueError(f"IR bytes: value v{i} uses v{max(args)}, "
                                     f"not defined before it")
                append(Instr(op, args))
        if w != n_words or n_consts != len(consts):
            raise ValueError("IR bytes: trailing words or constants")
        for v in outs:
            if v >= n_instrs:
                raise ValueError(f"IR bytes: output v{v} out of range")
        return cls(n_inputs, tuple(instrs), tuple(outs))

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


_ARITY: dict = {}


def _arity(name: str):
    """Argument count of a runtime op (``None``: variadic); ValueError if unknown."""
    if name in (INPUT, CONST):
        return 1
    if name not in _ARITY:
        try:
            fn = runtime.lookup(name)
        except KeyError:
            raise ValueError(f"IR bytes: unknown op {name!r}") from None
        params = list(inspect.signature(fn).parameters.values())
        variadic = any(p.kind is p.VAR_POSITIONAL for p in params)
        _ARITY[name] = None if variadic else len(params)
    return _ARITY[name]


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
