"""One LLVM IR emitter for every generator in the back end.

The straight-line kernels, the SIMD batch kernels, the loop kernels, the
scalar batch loop and the Python call glue all write LLVM IR through
:class:`FunctionEmitter`: it hands out fresh value and label names, knows
the element type it computes in (``double`` for one point, ``<L x double>``
for L points of a SIMD batch), writes typed constants, selects, loads,
stores, GEPs, allocas, blocks, loops and calls, and records every
declaration a function uses in its :class:`Module`. Nothing is patched
after it is emitted: no placeholders, no regular expressions over IR text
(``tests/test_emitter.py`` checks that no other module writes IR by hand).

The op templates (:mod:`compiler.ops`) are written once against this class:
``e.fadd(a, b)`` is ``fadd double`` in a scalar kernel and ``fadd <8 x
double>`` in an 8-lane one, ``e.fabs(a)`` is ``llvm.fabs.f64`` or
``llvm.fabs.v8f64``, and ``e.libm("tanh", a)`` is a call to libm's ``tanh``
in a scalar kernel and, in a vector kernel, to glibc's libmvec variant
(``_ZGVeN8v_tanh``) when :class:`SimdMath` finds one, else ``tanh`` lane by
lane. So a template's vector strategy follows from what it calls.

Values are :class:`Val`: the operand text plus the float it holds when it is
a compile-time constant (templates specialise on constants, e.g. ``x**2``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

__all__ = ["Val", "SimdMath", "Module", "FunctionEmitter", "hex_double", "NAN_HEX", "INF_HEX"]

NAN_HEX = "0x7FF8000000000000"
INF_HEX = "0x7FF0000000000000"


def hex_double(x: float) -> str:
    """An exact LLVM literal for a double."""
    return "0x%016X" % struct.unpack("<Q", struct.pack("<d", float(x)))[0]


@dataclass(frozen=True)
class Val:
    """An operand: its IR text and, for compile-time constants, its float."""

    text: str
    const: Optional[float] = None

    def __str__(self) -> str:
        return self.text

    def is_const(self, x: float) -> bool:
        """True when this is the constant ``x`` (bit for bit: -0.0 is not 0.0)."""
        return self.const is not None and hex_double(self.const) == hex_double(x)


@dataclass(frozen=True)
class SimdMath:
    """The vector width of SIMD kernels and the libmvec functions they may
    call: ``table`` maps a libm function name to its symbol on ``lanes``
    lanes (``{"tanh": "_ZGVeN8v_tanh", ...}``); an empty table computes
    every libm function lane by lane."""

    lanes: int
    table: Mapping[str, str] = field(default_factory=dict)

    def symbol(self, name: str, n_args: int) -> Optional[str]:
        return self.table.get(name)


class Module:
    """Declarations and function definitions of one LLVM module."""

    def __init__(self) -> None:
        self._decls: dict = {}
        self._defs: list = []

    def declare(self, symbol: str, ret: str, params: Sequence[str], attrs: str = "") -> None:
        if symbol not in self._decls:
            tail = f" {attrs}" if attrs else ""
            self._decls[symbol] = f"declare {ret} @{symbol}({', '.join(params)}){tail}"

    def add(self, text: str) -> None:
        self._defs.append(text)

    def text(self) -> str:
        return "\n".join([*sorted(self._decls.values()), *self._defs]) + "\n"


class FunctionEmitter:
    """Writes the body of one LLVM function.

    ``lanes=None`` computes in ``double``; ``lanes=L`` in ``<L x double>``
    (with ``simd`` saying which libm functions have vector variants).
    ``ops`` resolves op names to templates (:func:`compiler.ops.get`), so a
    template can call another op's template with :meth:`op`.

    Every method that defines a value names it afresh (``%hint.N``) unless
    given ``name=`` (``"%in"``): an explicit name, for the values a function's
    interface or its callers' tests refer to. Fresh names always end in
    ``.N``, so an explicit name without that suffix never collides with one.
    """

    def __init__(self, module: Module, lanes: Optional[int] = None,
                 simd: Optional[SimdMath] = None, prefix: str = "") -> None:
        self.module = module
        self.lanes = lanes
        self.simd = simd if simd is not None else SimdMath(lanes or 1)
        self.lines: list = []
        self._n = 0
        self._prefix = prefix
        self._libm: set = set()
        self.block = "entry"

    # -- names and types -----------------------------------------------------
    @property
    def ty(self) -> str:
        return "double" if self.lanes is None else f"<{self.lanes} x double>"

    @property
    def mask_ty(self) -> str:
        return "i1" if self.lanes is None else f"<{self.lanes} x i1>"

    def fresh(self, hint: str = "t") -> str:
        self._n += 1
        return f"%{self._prefix}{hint}.{self._n}"

    def fresh_label(self, hint: str = "L") -> str:
        self._n += 1
        return f"{self._prefix}{hint}.{self._n}"

    def emit(self, text: str) -> None:
        self.lines.append("  " + text)

    def _def(self, hint: str, rhs: str, name: Optional[str] = None) -> Val:
        dst = name or self.fresh(hint)
        self.emit(f"{dst} = {rhs}")
        return Val(dst)

    # -- constants -----------------------------------------------------------
    def const(self, x: float) -> Val:
        """A typed constant: a hex double, splatted in vector code."""
        h = hex_double(x)
        return Val(h if self.lanes is None else f"splat (double {h})", float(x))

    def scalar_const(self, x: float) -> Val:
        return Val(hex_double(x), float(x))

    def as_operand(self, v: Val) -> Val:
        """A constant written for the element type of this emitter (scalar
        constants become splats in vector code)."""
        if v.const is not None:
            return self.const(v.const)
        return v

    # -- floating-point arithmetic -------------------------------------------
    def _fbin(self, opcode: str, a: Val, b: Val, name=None, flags: str = "") -> Val:
        a, b = self.as_operand(a), self.as_operand(b)
        fl = f" {flags}" if flags else ""
        return self._def(opcode, f"{opcode}{fl} {self.ty} {a}, {b}", name)

    def fadd(self, a: Val, b: Val, name=None, flags: str = "") -> Val:
        return self._fbin("fadd", a, b, name, flags)

    def fsub(self, a: Val, b: Val, name=None) -> Val:
        return self._fbin("fsub", a, b, name)

    def fmul(self, a: Val, b: Val, name=None, flags: str = "") -> Val:
        return self._fbin("fmul", a, b, name, flags)

    def fdiv(self, a: Val, b: Val, name=None) -> Val:
        return self._fbin("fdiv", a, b, name)

    def fneg(self, a: Val, name=None) -> Val:
        return self._def("fneg", f"fneg {self.ty} {self.as_operand(a)}", name)

    def fcmp(self, pred: str, a: Val, b: Val) -> Val:
        """An ``i1`` (``<L x i1>``) comparison: ``olt``, ``ugt``, ``uno``, ..."""
        a, b = self.as_operand(a), self.as_operand(b)
        return self._def("c", f"fcmp {pred} {self.ty} {a}, {b}")

    def select(self, cond: Val, a: Val, b: Val, name=None) -> Val:
        a, b = self.as_operand(a), self.as_operand(b)
        return self._def("s", f"select {self.mask_ty} {cond}, {self.ty} {a}, {self.ty} {b}", name)

    def mask_and(self, a: Val, b: Val) -> Val:
        return self._def("m", f"and {self.mask_ty} {a}, {b}")

    def mask_or(self, a: Val, b: Val) -> Val:
        return self._def("m", f"or {self.mask_ty} {a}, {b}")

    def bool_to_float(self, cond: Val, name=None) -> Val:
        """1.0 where ``cond`` holds, else 0.0."""
        return self.select(cond, self.const(1.0), self.const(0.0), name)

    # -- exact intrinsics and libm -------------------------------------------
    def _intrinsic(self, base: str, args: Sequence[Val], name=None) -> Val:
        suffix = "f64" if self.lanes is None else f"v{self.lanes}f64"
        sym = f"llvm.{base}.{suffix}"
        self.module.declare(sym, self.ty, [self.ty] * len(args))
        ops = ", ".join(f"{self.ty} {self.as_operand(a)}" for a in args)
        return self._def(base, f"call {self.ty} @{sym}({ops})", name)

    def fabs(self, a: Val, name=None) -> Val:
        return self._intrinsic("fabs", [a], name)

    def floor(self, a: Val, name=None) -> Val:
        return self._intrinsic("floor", [a], name)

    def ceil(self, a: Val, name=None) -> Val:
        return self._intrinsic("ceil", [a], name)

    def sqrt(self, a: Val, name=None) -> Val:
        return self._intrinsic("sqrt", [a], name)

    def libm(self, fname: str, *args: Val, intrinsic: bool = False, name=None) -> Val:
        """libm's ``fname`` (``intrinsic=True``: through ``llvm.<fname>.f64``,
        as Numba calls it). In vector code: libmvec's variant when there is
        one, else the scalar function lane by lane."""
        self._libm.add((fname, len(args)))
        if self.lanes is None:
            sym = f"llvm.{fname}.f64" if intrinsic else fname
            self.module.declare(sym, "double", ["double"] * len(args))
            ops = ", ".join(f"double {a}" for a in args)
            return self._def(fname, f"call double @{sym}({ops})", name)
        vsym = self.simd.symbol(fname, len(args))
        if vsym is not None:
            self.module.declare(vsym, self.ty, [self.ty] * len(args))
            ops = ", ".join(f"{self.ty} {self.as_operand(a)}" for a in args)
            return self._def(fname, f"call {self.ty} @{vsym}({ops})", name)
        return self.lane_by_lane(lambda s, xs: s.libm(fname, *xs, intrinsic=intrinsic), args, name)

    def libm_used(self) -> tuple:
        """``(name, n_args)`` of every libm function this emitter called."""
        return tuple(sorted(self._libm))

    def lane_by_lane(self, scalar: Callable, args: Sequence[Val], name=None) -> Val:
        """``scalar(scalar_emitter, lane_args)`` once per lane, the lanes put
        back together: a vector value computed with the single-point code."""
        assert self.lanes is not None
        sub = FunctionEmitter(self.module, None, self.simd)
        sub._n, sub._prefix, sub.lines, sub._libm = self._n, self._prefix, self.lines, self._libm
        results = []
        for j in range(self.lanes):
            lane = []
            for a in args:
                if a.const is not None:
                    lane.append(Val(hex_double(a.const), a.const))
                else:
                    lane.append(sub._def("x", f"extractelement {self.ty} {a}, i64 {j}"))
            results.append(scalar(sub, lane))
        self._n = sub._n
        prev = "poison"
        for j, r in enumerate(results):
            dst = name if (name and j == self.lanes - 1) else self.fresh("ins")
            self.emit(f"{dst} = insertelement {self.ty} {prev}, double {r}, i64 {j}")
            prev = dst
        return Val(prev)

    def op(self, name: str, *args: Val) -> Val:
        """The template of op ``name`` (:mod:`compiler.ops`) applied to ``args``."""
        from compiler import ops

        prim = ops.get(name)
        if prim.arity is not None and len(args) != prim.arity:
            raise ValueError(f"op {name!r} takes {prim.arity} arguments, got {len(args)}")
        if self.lanes is not None and prim.vector == "lanes":
            return self.lane_by_lane(lambda s, xs: prim.emit(s, list(xs)), args)
        return prim.emit(self, list(args))

    # -- integers, memory, control flow --------------------------------------
    def int_op(self, opcode: str, a, b, ty: str = "i64", hint: str = "i") -> Val:
        return self._def(hint, f"{opcode} {ty} {a}, {b}")

    def icmp(self, pred: str, a, b, ty: str = "i64") -> Val:
        return self._def("ic", f"icmp {pred} {ty} {a}, {b}")

    def gep(self, elem_ty: str, base, index, inbounds: bool = True, hint: str = "p",
            name: Optional[str] = None) -> Val:
        ib = " inbounds" if inbounds else ""
        return self._def(hint, f"getelementptr{ib} {elem_ty}, ptr {base}, i64 {index}", name)

    def load(self, ty: str, ptr, align: Optional[int] = None, hint: str = "ld",
             name: Optional[str] = None) -> Val:
        al = f", align {align}" if align else ""
        return self._def(hint, f"load {ty}, ptr {ptr}{al}", name)

    def alloca(self, ty: str, count=1, align: Optional[int] = None, hint: str = "buf",
               name: Optional[str] = None) -> Val:
        """``alloca ty, i64 count``: stack room for ``count`` values of ``ty``
        (a pointer, live until the function returns)."""
        al = f", align {align}" if align else ""
        return self._def(hint, f"alloca {ty}, i64 {count}{al}", name)

    def store(self, ty: str, value, ptr, align: Optional[int] = None) -> None:
        al = f", align {align}" if align else ""
        self.emit(f"store {ty} {value}, ptr {ptr}{al}")

    def call(self, ret: str, callee: str, args: Sequence[tuple], hint: str = "r",
             name: Optional[str] = None) -> Optional[Val]:
        """``call ret callee(ty a, ...)``; ``callee`` is ``@symbol`` or a pointer
        value (an indirect call through a loaded function pointer)."""
        text = ", ".join(f"{t} {v}" for t, v in args)
        if ret == "void":
            self.emit(f"call void {callee}({text})")
            return None
        return self._def(hint, f"call {ret} {callee}({text})", name)

    def label(self, name: str) -> None:
        self.lines.append(f"{name}:")
        self.block = name

    def br(self, target: str) -> None:
        self.emit(f"br label %{target}")

    def cbr(self, cond, if_true: str, if_false: str) -> None:
        self.emit(f"br i1 {cond}, label %{if_true}, label %{if_false}")

    def loop(self, lo, hi, body: Callable[[Val], None], step: int = 1, hint: str = "L") -> None:
        """``for i in range(lo, hi, step): body(i)`` over i64 (``step > 0``)."""
        FunctionEmitter.fold(self, lo, hi, None, lambda acc, i: body(i), step, hint)

    def fold(self, lo, hi, init, combine: Callable, step: int = 1, hint: str = "A",
             ty: str = "double"):
        """``acc = init; for i in range(lo, hi, step): acc = combine(acc, i)``;
        returns the final ``acc`` (``init=None``: no accumulator, returns None).

        The accumulator is a phi in the loop head; the value ``combine``
        returns reaches it through a named copy in the latch block (folded
        away by LLVM), so the phi is written before the body exists."""
        head, bodyl, latch, done = (self.fresh_label(f"{hint}.head"), self.fresh_label(f"{hint}.body"),
                                    self.fresh_label(f"{hint}.latch"), self.fresh_label(f"{hint}.exit"))
        pre = self.block
        var, nxt = self.fresh("i"), self.fresh("inext")
        acc = self.fresh("acc") if init is not None else None
        carried = self.fresh("accnext") if init is not None else None
        self.br(head)
        self.label(head)
        self.emit(f"{var} = phi i64 [{lo}, %{pre}], [{nxt}, %{latch}]")
        if acc is not None:
            self.emit(f"{acc} = phi {ty} [{init}, %{pre}], [{carried}, %{latch}]")
        self.cbr(self.icmp("slt", var, hi), bodyl, done)
        self.label(bodyl)
        new = combine(Val(acc) if acc is not None else None, Val(var))
        self.br(latch)
        self.label(latch)
        if acc is not None:
            self.emit(f"{carried} = select i1 true, {ty} {new}, {ty} {new}")
        self.emit(f"{nxt} = add i64 {var}, {int(step)}")
        self.br(head)
        self.label(done)
        return Val(acc) if acc is not None else None

    def ret(self, ty: str = "void", value=None) -> None:
        self.emit("ret void" if ty == "void" else f"ret {ty} {value}")

    def finish(self, signature: str) -> str:
        """The function's text: ``define <signature> { entry: ... }``."""
        return "\n".join([f"define {signature} {{", "entry:", *self.lines, "}"])
