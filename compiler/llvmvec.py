"""Print an SSA :class:`~compiler.ir.Function` as a SIMD batch kernel.

The straight-line kernel of :mod:`compiler.llvmgen` evaluates one point. A
batched call evaluates the same program at n points, and the points are
independent: here every SSA value becomes a ``<L x double>`` holding L
points (L = 8 with AVX-512, 4 otherwise; see
:func:`compiler.llvmjit.simd_math`), so one pass through the program
evaluates L points.

* Arithmetic, comparisons, selects, ``abs``/``floor``/``ceil`` are exact
  IEEE operations: lane for lane the vector instruction gives the bits the
  scalar kernel gives. Their vector lines are the scalar templates of
  :mod:`compiler.llvmgen` with the types widened (one template per op).
* The elementary functions (``exp``, ``log``, ``expm1``, ``log1p``, ``pow``,
  ``sin``, ``cos``, ``tan``, ``asin``, ``acos``, ``atan``, ``atan2``, ``sinh``,
  ``cosh``, ``tanh``, ``erf``, and the ``sigmoid``/``softplus`` built on exp)
  call glibc's libmvec, L lanes at a time, when
  :func:`compiler.llvmjit.simd_math` finds it. libmvec is within 4 ulp of
  the true value (measured against libm: 3 ulp for exp/tanh/sin/cos/tan/sinh,
  2 for log/expm1/log1p/asin/acos/atan/cosh/erf, 1 for pow; sigmoid 4 and
  softplus 5, which round twice on top of exp), so these lanes can differ
  from a single-point call in the last bits, as NumPy's SIMD ufuncs differ
  from :mod:`math`. ``x**2``, ``x**0.5`` and ``x**-1`` stay exact (``x*x``,
  ``sqrt``, ``1/x``). Without libmvec (or with ``SYMGRAD_VECMATH=0``) these
  functions run lane by lane with libm, and batches equal single-point calls
  bit for bit.
* Every other op (``logsumexp``; everything when libmvec is missing) runs
  lane by lane through its scalar template: the same bits as a single-point call.

Module interface::

    void NAME_vbatch(ptr ptrs, ptr strides, ptr out, i64 ostride, i64 lo, i64 hi)

``ptrs[k]`` (``double*``) and ``strides[k]`` (elements, may be 0 or
negative) locate input ``k`` of point ``i`` at ``ptrs[k][i * strides[k]]``,
so the user's arrays (and stride-0 broadcasts) are read in place; output
``o`` of point ``i`` goes to ``out[o * ostride + i]`` (one row per output).
Points ``lo .. hi-1`` are evaluated; a last group of fewer than L points
repeats the last point in the spare lanes and stores only the real ones, so
every point goes through the same instructions wherever it sits in a batch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from compiler.ir import CONST, INPUT, Function
from compiler.llvmgen import SUPPORTED_OPS, hex_double, preamble, scalar_op

__all__ = ["SimdMath", "vector_module", "vector_op", "VEC_MAX_STATEMENTS"]


@dataclass(frozen=True)
class SimdMath:
    """The vector width and the libmvec functions (op name -> symbol, taking and
    returning ``<lanes x double>``) a batch kernel may call; an empty table
    computes every elementary function lane by lane with libm."""

    lanes: int
    table: dict

VEC_MAX_STATEMENTS = 4000
"""Programs up to this many statements get a SIMD batch kernel (one
function, compiled on the first batched call); bigger ones batch through
the scalar kernel."""

BINARY = frozenset({"pow", "atan2"})   # libmvec functions of two vectors

# ops whose scalar template is only fadd/fmul/fdiv/fneg/fcmp/select/logic and
# the exact intrinsics below: widened textually, bit-identical per lane
_WIDEN = frozenset({"add", "mul", "div", "relu", "sign", "heaviside", "max2", "min2",
                    "piecewise", "lt", "le", "gt", "ge", "eq", "ne", "and_", "or_", "not_",
                    "abs_", "floor", "ceil"})
_EXACT_INTRINSICS = ("llvm.fabs", "llvm.floor", "llvm.ceil")
_NUMBER = re.compile(r"(?<![\w.%@])(-?\d+\.\d+(?:[eE][-+]?\d+)?|0x[0-9A-Fa-f]{16})(?![\w.])")


def _widen(line: str, L: int) -> str:
    """One scalar template line as the same operation on ``L`` lanes."""
    V = f"<{L} x double>"
    line = line.replace("select i1 ", f"select <{L} x i1> ")
    line = re.sub(r"= (and|or) i1 ", rf"= \1 <{L} x i1> ", line)
    line = line.replace("double", V)
    for intr in _EXACT_INTRINSICS:
        line = line.replace(f"@{intr}.f64(", f"@{intr}.v{L}f64(")
    return _NUMBER.sub(lambda m: f"splat (double {m.group(1)})", line)


def _is_const(operand: str) -> bool:
    return operand.startswith("0x")


def _vec_operand(operand: str) -> str:
    return f"splat (double {operand})" if _is_const(operand) else operand


def _vecmath_call(sym: str, dst: str, x: str, L: int, y: str | None = None) -> str:
    V = f"<{L} x double>"
    second = f", {V} {_vec_operand(y)}" if y is not None else ""
    return f"  {dst} = call {V} @{sym}({V} {_vec_operand(x)}{second})"


def _sigmoid(dst: str, a: str, vm: dict, L: int) -> list:
    """As ``sg_sigmoid``: ``1/(1+e)`` for a >= 0, ``e/(1+e)`` below, with e = exp(-|a|)."""
    a, V = _vec_operand(a), f"<{L} x double>"
    return [f"  {dst}.ab = call {V} @llvm.fabs.v{L}f64({V} {a})",
            f"  {dst}.na = fneg {V} {dst}.ab",
            _vecmath_call(vm["exp"], f"{dst}.e", f"{dst}.na", L),
            f"  {dst}.d = fadd {V} splat (double 1.0), {dst}.e",
            f"  {dst}.p = fdiv {V} splat (double 1.0), {dst}.d",
            f"  {dst}.n = fdiv {V} {dst}.e, {dst}.d",
            f"  {dst}.c = fcmp oge {V} {a}, zeroinitializer",
            f"  {dst} = select <{L} x i1> {dst}.c, {V} {dst}.p, {V} {dst}.n"]


def _softplus(dst: str, a: str, vm: dict, L: int) -> list:
    """As ``sg_softplus``: ``max(a, 0) + log1p(exp(-|a|))``, nan for nan."""
    a, V = _vec_operand(a), f"<{L} x double>"
    return [f"  {dst}.g = fcmp ogt {V} {a}, zeroinitializer",
            f"  {dst}.m = select <{L} x i1> {dst}.g, {V} {a}, {V} zeroinitializer",
            f"  {dst}.ab = call {V} @llvm.fabs.v{L}f64({V} {a})",
            f"  {dst}.na = fneg {V} {dst}.ab",
            _vecmath_call(vm["exp"], f"{dst}.e", f"{dst}.na", L),
            _vecmath_call(vm["log1p"], f"{dst}.l", f"{dst}.e", L),
            f"  {dst}.r = fadd {V} {dst}.m, {dst}.l",
            f"  {dst}.u = fcmp uno {V} {a}, {a}",
            f"  {dst} = select <{L} x i1> {dst}.u, {V} {a}, {V} {dst}.r"]


def _pow(dst: str, a: str, b: str, vm: dict, L: int) -> list:
    """As ``sg_pow``, with selects for its branches: ``0**b`` is 0, 1 or inf, a
    negative base with a non-integer exponent nan, ``b == -1`` and ``b == 0.5``
    exactly ``1/a`` and ``sqrt(a)``; otherwise libmvec's pow."""
    a, b, V, M = _vec_operand(a), _vec_operand(b), f"<{L} x double>", f"<{L} x i1>"
    return [f"  {dst}.p = call {V} @{vm['pow']}({V} {a}, {V} {b})",
            f"  {dst}.az = fcmp oeq {V} {a}, zeroinitializer",
            f"  {dst}.bp = fcmp ogt {V} {b}, zeroinitializer",
            f"  {dst}.bz = fcmp oeq {V} {b}, zeroinitializer",
            f"  {dst}.r0 = select {M} {dst}.bz, {V} splat (double 1.0), {V} splat (double 0x7FF0000000000000)",
            f"  {dst}.r1 = select {M} {dst}.bp, {V} zeroinitializer, {V} {dst}.r0",
            f"  {dst}.an = fcmp olt {V} {a}, zeroinitializer",
            f"  {dst}.fb = call {V} @llvm.floor.v{L}f64({V} {b})",
            f"  {dst}.frac = fcmp une {V} {b}, {dst}.fb",
            f"  {dst}.bad = and {M} {dst}.an, {dst}.frac",
            f"  {dst}.isinv = fcmp oeq {V} {b}, splat (double -1.0)",
            f"  {dst}.inv = fdiv {V} splat (double 1.0), {a}",
            f"  {dst}.ishalf = fcmp oeq {V} {b}, splat (double 0.5)",
            f"  {dst}.sq = call {V} @llvm.sqrt.v{L}f64({V} {a})",
            f"  {dst}.p1 = select {M} {dst}.ishalf, {V} {dst}.sq, {V} {dst}.p",
            f"  {dst}.p2 = select {M} {dst}.isinv, {V} {dst}.inv, {V} {dst}.p1",
            f"  {dst}.r = select {M} {dst}.bad, {V} splat (double 0x7FF8000000000000), {V} {dst}.p2",
            f"  {dst} = select {M} {dst}.az, {V} {dst}.r1, {V} {dst}.r"]


def _lane_by_lane(op: str, dst: str, args: list, L: int) -> list:
    """The scalar template once per lane (the single-point kernel's bits)."""
    V = f"<{L} x double>"
    lines = []
    for j in range(L):
        lane = []
        for k, a in enumerate(args):
            if _is_const(a):
                lane.append(a)
            else:
                name = f"{dst}.x{k}l{j}"
                lines.append(f"  {name} = extractelement {V} {a}, i64 {j}")
                lane.append(name)
        lines += scalar_op(op, f"{dst}.l{j}", lane)
    prev = "poison"
    for j in range(L):
        name = dst if j == L - 1 else f"{dst}.i{j}"
        lines.append(f"  {name} = insertelement {V} {prev}, double {dst}.l{j}, i64 {j}")
        prev = name
    return lines


def vector_op(op: str, dst: str, args: list, simd: SimdMath) -> list:
    """IR lines computing the ``<L x double>`` value ``dst = op(args)``
    (operands: vector values or hex constants)."""
    vm, L = simd.table, simd.lanes
    if op == "pow" and args[1] == hex_double(2.0):
        return [_widen(line, L) for line in scalar_op(op, dst, args)]   # x * x
    if op == "pow" and "pow" in vm:
        return _pow(dst, args[0], args[1], vm, L)
    if op in vm:
        return [_vecmath_call(vm[op], dst, args[0], L, args[1] if len(args) == 2 else None)]
    if op == "sigmoid" and "exp" in vm:
        return _sigmoid(dst, args[0], vm, L)
    if op == "softplus" and "exp" in vm and "log1p" in vm:
        return _softplus(dst, args[0], vm, L)
    if op in _WIDEN:
        return [_widen(line, L) for line in scalar_op(op, dst, args)]
    return _lane_by_lane(op, dst, args, L)


def vector_module(fn: Function, name: str, simd: SimdMath) -> str:
    """LLVM IR text of ``name_vbatch`` for ``fn`` (see the module docstring).

    Examples
    --------
    >>> from compiler.ir import Builder
    >>> b = Builder(2)
    >>> f = b.finish([b.op("mul", b.input(0), b.input(1))])
    >>> "fmul <4 x double>" in vector_module(f, "k", SimdMath(4, {}))
    True
    """
    L, V, vecmath = simd.lanes, f"<{simd.lanes} x double>", simd.table
    if not name.isidentifier():
        raise ValueError(f"kernel name {name!r} is not an identifier")
    instrs = fn.instrs
    unsupported = sorted({ins.op for ins in instrs if ins.op not in (INPUT, CONST)} - SUPPORTED_OPS)
    if unsupported:
        raise NotImplementedError(f"the llvm back end has no template for {unsupported}")
    used = {ins.op for ins in instrs}
    decls = set(preamble(used))
    for op in used & set(vecmath):
        decls.add(f"declare {V} @{vecmath[op]}({V}{', ' + V if op in BINARY else ''})")
    for op in used & {"sigmoid", "softplus"}:
        for helper in ("exp", "log1p"):
            if helper in vecmath:
                decls.add(f"declare {V} @{vecmath[helper]}({V})")
    for intr in (*_EXACT_INTRINSICS, "llvm.sqrt"):
        decls.add(f"declare {V} @{intr}.v{L}f64({V})")
    head = sorted(d for d in decls if d.startswith("declare"))
    helpers = sorted(d for d in decls if not d.startswith("declare"))

    inputs = sorted({int(ins.args[0]) for ins in instrs if ins.op == INPUT})
    body = [f"define void @{name}_vbatch(ptr noalias %ptrs, ptr noalias %strides, ptr noalias %out, "
            f"i64 %ostride, i64 %lo, i64 %hi) nounwind {{", "entry:"]
    for k in inputs:
        body += [f"  %pp{k} = getelementptr inbounds ptr, ptr %ptrs, i64 {k}",
                 f"  %p{k} = load ptr, ptr %pp{k}",
                 f"  %sp{k} = getelementptr inbounds i64, ptr %strides, i64 {k}",
                 f"  %s{k} = load i64, ptr %sp{k}"]
    body += ["  %last = sub i64 %hi, 1",
             "  %empty = icmp sge i64 %lo, %hi",
             "  br i1 %empty, label %done, label %group",
             "group:",
             "  %i = phi i64 [%lo, %entry], [%inext, %next]"]
    for j in range(L):   # lane j reads point min(i + j, hi - 1)
        body += [f"  %ij{j} = add i64 %i, {j}",
                 f"  %over{j} = icmp sgt i64 %ij{j}, %last",
                 f"  %idx{j} = select i1 %over{j}, i64 %last, i64 %ij{j}"]
    value: dict = {}
    for v, ins in enumerate(instrs):
        if ins.op == CONST:
            value[v] = hex_double(float(ins.args[0]))
        elif ins.op == INPUT:
            k = int(ins.args[0])
            prev = "poison"
            for j in range(L):
                body += [f"  %in{v}.o{j} = mul i64 %idx{j}, %s{k}",
                         f"  %in{v}.p{j} = getelementptr double, ptr %p{k}, i64 %in{v}.o{j}",
                         f"  %in{v}.x{j} = load double, ptr %in{v}.p{j}"]
                nxt = f"%v{v}" if j == L - 1 else f"%in{v}.v{j}"
                body.append(f"  {nxt} = insertelement {V} {prev}, double %in{v}.x{j}, i64 {j}")
                prev = nxt
            value[v] = f"%v{v}"
        else:
            body += vector_op(ins.op, f"%v{v}", [value[a] for a in ins.args], simd)
            value[v] = f"%v{v}"
    results = [_vec_operand(value[v]) for v in fn.outputs]
    body += [f"  %inext = add i64 %i, {L}",
             "  %full = icmp sle i64 %inext, %hi",
             "  br i1 %full, label %store.all, label %store.l0",
             "store.all:"]
    for o, r in enumerate(results):
        body += [f"  %sa.r{o} = mul i64 {o}, %ostride",
                 f"  %sa.k{o} = add i64 %sa.r{o}, %i",
                 f"  %sa.p{o} = getelementptr double, ptr %out, i64 %sa.k{o}",
                 f"  store {V} {r}, ptr %sa.p{o}, align 8"]
    body.append("  br label %next")
    for j in range(L):   # a partial group: lane 0 is always a real point
        body.append(f"store.l{j}:")
        for o, r in enumerate(results):
            body += [f"  %sl{j}.x{o} = extractelement {V} {r}, i64 {j}",
                     f"  %sl{j}.r{o} = mul i64 {o}, %ostride",
                     f"  %sl{j}.k{o} = add i64 %sl{j}.r{o}, %ij{j}",
                     f"  %sl{j}.p{o} = getelementptr double, ptr %out, i64 %sl{j}.k{o}",
                     f"  store double %sl{j}.x{o}, ptr %sl{j}.p{o}"]
        if j + 1 < L:
            body += [f"  %more{j} = icmp slt i64 %ij{j + 1}, %hi",
                     f"  br i1 %more{j}, label %store.l{j + 1}, label %next"]
        else:
            body.append("  br label %next")
    body += ["next:",
             "  %again = icmp slt i64 %inext, %hi",
             "  br i1 %again, label %group, label %done",
             "done:",
             "  ret void",
             "}"]
    return "\n".join(head + helpers + body) + "\n"
