"""Print an SSA :class:`~compiler.ir.Function` as LLVM IR text.

The llvm back end exists because Numba lowers long straight-line functions
superlinearly (see DESIGN.md); LLVM itself, fed IR directly, is close to
linear when each function stays bounded. So the kernel is split into chunk
functions of at most ``chunk`` statements (marked ``noinline`` so the
optimizer cannot glue them back together); a value defined in one chunk and
read in a later one goes through a scratch array owned by the entry function.

Every op has one template here that computes exactly what the Numba back end
computes for the same source (:mod:`compiler.codegen` + :mod:`compiler.nbruntime`):
the same libm functions or LLVM intrinsics Numba itself calls, the same
branches for the kinks, ``x * x`` for ``x**2`` and ``-x`` for ``-1 * x``, and
left-to-right additions. Constants are written as exact hexadecimal doubles.

Module interface (all ``ptr`` are ``double*``)::

    void NAME(ptr in, ptr out)                        one point
    void NAME_batch(ptr in, ptr out, i64 stride, i64 lo, i64 hi)
        points lo..hi-1 of column-major arrays: in[k * stride + i] is input
        k of point i (one contiguous row per input, as NumPy packs them)
"""

from __future__ import annotations

import struct
from typing import Callable

from compiler.ir import CONST, INPUT, Function

__all__ = ["llvm_module", "SUPPORTED_OPS", "DEFAULT_CHUNK"]

DEFAULT_CHUNK = 2000
_MAX_STACK_SLOTS = 32768   # scratch above 256 KiB goes to the heap (thread stacks are small)

_LIBM_UNARY = ("expm1", "log1p", "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh", "erf")
_INTRINSIC_UNARY = {"exp": "llvm.exp.f64", "log": "llvm.log.f64", "sin": "llvm.sin.f64",
                    "cos": "llvm.cos.f64", "abs_": "llvm.fabs.f64", "floor": "llvm.floor.f64",
                    "ceil": "llvm.ceil.f64"}
_CMP = {"lt": "olt", "le": "ole", "gt": "ogt", "ge": "oge", "eq": "oeq", "ne": "une"}

# helper functions defined once per module (only the ones a kernel uses)
_HELPERS = {
    "pow": """define internal double @sg_pow(double %a, double %b) alwaysinline {
  %az = fcmp oeq double %a, 0.0
  br i1 %az, label %zero, label %nonzero
zero:
  %bp = fcmp ogt double %b, 0.0
  %bz = fcmp oeq double %b, 0.0
  %r0 = select i1 %bz, double 1.0, double 0x7FF0000000000000
  %r1 = select i1 %bp, double 0.0, double %r0
  ret double %r1
nonzero:
  %an = fcmp olt double %a, 0.0
  %fb = call double @llvm.floor.f64(double %b)
  %frac = fcmp une double %b, %fb
  %bad = and i1 %an, %frac
  %p = call double @llvm.pow.f64(double %a, double %b)
  %isinv = fcmp oeq double %b, -1.0
  %inv = fdiv double 1.0, %a
  %ishalf = fcmp oeq double %b, 0.5
  %sq = call double @llvm.sqrt.f64(double %a)
  %p1 = select i1 %ishalf, double %sq, double %p
  %p2 = select i1 %isinv, double %inv, double %p1
  %r = select i1 %bad, double 0x7FF8000000000000, double %p2
  ret double %r
}""",
    "sigmoid": """define internal double @sg_sigmoid(double %a) alwaysinline {
  %pos = fcmp oge double %a, 0.0
  br i1 %pos, label %p, label %n
p:
  %na = fneg double %a
  %e = call double @llvm.exp.f64(double %na)
  %d = fadd double 1.0, %e
  %r = fdiv double 1.0, %d
  ret double %r
n:
  %z = call double @llvm.exp.f64(double %a)
  %d2 = fadd double 1.0, %z
  %r2 = fdiv double %z, %d2
  ret double %r2
}""",
    "softplus": """define internal double @sg_softplus(double %a) alwaysinline {
  %isnan = fcmp uno double %a, %a
  br i1 %isnan, label %nan, label %ok
nan:
  ret double %a
ok:
  %gt = fcmp ogt double %a, 0.0
  %m = select i1 %gt, double %a, double 0.0
  %ab = call double @llvm.fabs.f64(double %a)
  %nab = fneg double %ab
  %e = call double @llvm.exp.f64(double %nab)
  %l = call double @log1p(double %e)
  %r = fadd double %m, %l
  ret double %r
}""",
}
_HELPER_NEEDS = {"softplus": ("log1p",)}


def _hex(x: float) -> str:
    return "0x%016X" % struct.unpack("<Q", struct.pack("<d", x))[0]


def _select_chain(dst, conds_vals, default) -> list:
    """``dst = first value whose condition holds, else default`` (conds are i1 names)."""
    lines, cur = [], default
    for k, (cond, val) in enumerate(reversed(conds_vals)):
        name = dst if k == len(conds_vals) - 1 else f"{dst}.s{k}"
        lines.append(f"  {name} = select i1 {cond}, double {val}, double {cur}")
        cur = name
    return lines


def _t_add(d, a):
    if len(a) == 1:  # x + (-0.0) is x for every x, -0.0 included
        return [f"  {d} = fadd double -0.0, {a[0]}"]
    lines, cur = [], a[0]
    for k, x in enumerate(a[1:]):
        name = d if k == len(a) - 2 else f"{d}.a{k}"
        lines.append(f"  {name} = fadd double {cur}, {x}")
        cur = name
    return lines


def _t_relu(d, a):
    return [f"  {d}.c = fcmp ugt double {a[0]}, 0.0",
            f"  {d} = select i1 {d}.c, double {a[0]}, double 0.0"]


def _t_sign(d, a):
    return [f"  {d}.p = fcmp ogt double {a[0]}, 0.0", f"  {d}.n = fcmp olt double {a[0]}, 0.0",
            *_select_chain(d, [(f"{d}.p", "1.0"), (f"{d}.n", "-1.0")], a[0])]


def _t_heaviside(d, a):
    x, h0 = a
    return [f"  {d}.p = fcmp ogt double {x}, 0.0", f"  {d}.n = fcmp olt double {x}, 0.0",
            f"  {d}.z = fcmp oeq double {x}, 0.0",
            *_select_chain(d, [(f"{d}.p", "1.0"), (f"{d}.n", "0.0"), (f"{d}.z", h0)],
                           "0x7FF8000000000000")]


def _t_minmax(pred):
    def t(d, a):
        x, y = a
        return [f"  {d}.u = fcmp uno double {x}, {y}", f"  {d}.c = fcmp {pred} double {x}, {y}",
                f"  {d}.m = select i1 {d}.c, double {x}, double {y}",
                f"  {d} = select i1 {d}.u, double 0x7FF8000000000000, double {d}.m"]
    return t


def _t_piecewise(d, a):
    lines, pairs = [], []
    for k in range(0, len(a) - 1, 2):
        lines.append(f"  {d}.c{k} = fcmp une double {a[k + 1]}, 0.0")
        pairs.append((f"{d}.c{k}", a[k]))
    return lines + _select_chain(d, pairs, "0x7FF8000000000000")


def _t_cmp(pred):
    def t(d, a):
        return [f"  {d}.c = fcmp {pred} double {a[0]}, {a[1]}",
                f"  {d} = select i1 {d}.c, double 1.0, double 0.0"]
    return t


def _t_logic(is_and):
    def t(d, a):
        lines = [f"  {d}.c0 = fcmp une double {a[0]}, 0.0"]
        for k, x in enumerate(a[1:], 1):
            lines.append(f"  {d}.t{k} = fcmp une double {x}, 0.0")
            lines.append(f"  {d}.c{k} = {'and' if is_and else 'or'} i1 {d}.c{k - 1}, {d}.t{k}")
        return lines + [f"  {d} = select i1 {d}.c{len(a) - 1}, double 1.0, double 0.0"]
    return t


def _t_not(d, a):
    return [f"  {d}.c = fcmp oeq double {a[0]}, 0.0",
            f"  {d} = select i1 {d}.c, double 1.0, double 0.0"]


def _t_logsumexp(d, a):
    """Max-shifted, as ``runtime.logsumexp``: nan if any input is nan, +-inf if the max is."""
    lines, m, nan = [], "0xFFF0000000000000", None
    for k, x in enumerate(a):
        lines += [f"  {d}.n{k} = fcmp uno double {x}, {x}",
                  f"  {d}.g{k} = fcmp ogt double {x}, {m}",
                  f"  {d}.m{k} = select i1 {d}.g{k}, double {x}, double {m}"]
        if nan is None:
            nan = f"{d}.n{k}"
        else:
            lines.append(f"  {d}.o{k} = or i1 {nan}, {d}.n{k}")
            nan = f"{d}.o{k}"
        m = f"{d}.m{k}"
    total = "0.0"
    for k, x in enumerate(a):
        lines += [f"  {d}.d{k} = fsub double {x}, {m}",
                  f"  {d}.e{k} = call double @llvm.exp.f64(double {d}.d{k})",
                  f"  {d}.s{k} = fadd double {total}, {d}.e{k}"]
        total = f"{d}.s{k}"
    return lines + [
        f"  {d}.l = call double @llvm.log.f64(double {total})",
        f"  {d}.r = fadd double {m}, {d}.l",
        f"  {d}.a = call double @llvm.fabs.f64(double {m})",
        f"  {d}.i = fcmp oeq double {d}.a, 0x7FF0000000000000",
        f"  {d}.f = select i1 {d}.i, double {m}, double {d}.r",
        f"  {d} = select i1 {nan}, double 0x7FF8000000000000, double {d}.f"]


def _call(fname, n=1):
    def t(d, a):
        params = ", ".join(f"double {x}" for x in a[:n])
        return [f"  {d} = call double @{fname}({params})"]
    return t


_TEMPLATES: dict[str, Callable] = {
    "add": _t_add,
    "mul": lambda d, a: [f"  {d} = fmul double {a[0]}, {a[1]}"],
    "div": lambda d, a: [f"  {d} = fdiv double {a[0]}, {a[1]}"],
    "pow": _call("sg_pow", 2),
    "atan2": _call("atan2", 2),
    "relu": _t_relu,
    "sigmoid": _call("sg_sigmoid"),
    "softplus": _call("sg_softplus"),
    "sign": _t_sign,
    "heaviside": _t_heaviside,
    "max2": _t_minmax("oge"),
    "min2": _t_minmax("ole"),
    "piecewise": _t_piecewise,
    "logsumexp": _t_logsumexp,
    "and_": _t_logic(True),
    "or_": _t_logic(False),
    "not_": _t_not,
}
for _n in _LIBM_UNARY:
    _TEMPLATES[_n] = _call(_n)
for _n, _intr in _INTRINSIC_UNARY.items():
    _TEMPLATES[_n] = _call(_intr)
for _n, _p in _CMP.items():
    _TEMPLATES[_n] = _t_cmp(_p)

SUPPORTED_OPS = frozenset(_TEMPLATES)

_DECLS = {name: f"declare double @{name}(double)" for name in _LIBM_UNARY}
_DECLS["atan2"] = "declare double @atan2(double, double)"
_DECLS.update({intr: f"declare double @{intr}(double)" for intr in _INTRINSIC_UNARY.values()})
_DECLS["llvm.pow.f64"] = "declare double @llvm.pow.f64(double, double)"
_DECLS["llvm.sqrt.f64"] = "declare double @llvm.sqrt.f64(double)"


def preamble(used_ops: set) -> list:
    """Declarations and helper definitions the templates of ``used_ops`` call."""
    decls = set()
    for op in used_ops:
        if op in ("pow",):
            decls.update(("llvm.floor.f64", "llvm.pow.f64", "llvm.sqrt.f64"))
        if op in ("sigmoid", "softplus"):
            decls.add("llvm.exp.f64")
        if op == "softplus":
            decls.update(("llvm.fabs.f64", "log1p"))
        if op in _LIBM_UNARY or op == "atan2":
            decls.add(op)
        if op in _INTRINSIC_UNARY:
            decls.add(_INTRINSIC_UNARY[op])
        if op == "logsumexp":
            decls.update(("llvm.exp.f64", "llvm.log.f64", "llvm.fabs.f64"))
    return [_DECLS[d] for d in sorted(decls)] + [_HELPERS[h] for h in sorted(_HELPERS) if h in used_ops]


def scalar_op(op: str, dst: str, args: list) -> list:
    """IR lines computing ``dst = op(args)`` (operands are IR values or hex constants),
    exactly as the straight-line kernels do."""
    if op == "mul" and args[0] == _hex(-1.0):
        return [f"  {dst} = fneg double {args[1]}"]
    if op == "pow" and args[1] == _hex(2.0):
        return [f"  {dst} = fmul double {args[0]}, {args[0]}"]
    return _TEMPLATES[op](dst, args)


def hex_double(x: float) -> str:
    """An exact LLVM literal for a double."""
    return _hex(x)


def _chunks(fn: Function, chunk: int) -> list:
    """Statement index ranges, each with at most ``chunk`` non-trivial statements."""
    bounds, start, count = [], 0, 0
    for i, ins in enumerate(fn.instrs):
        if ins.op not in (INPUT, CONST):
            count += 1
            if count == chunk:
                bounds.append((start, i + 1))
                start, count = i + 1, 0
    if start < len(fn.instrs) or not bounds:
        bounds.append((start, len(fn.instrs)))
    return bounds


def llvm_module(fn: Function, name: str = "kernel", chunk: int = DEFAULT_CHUNK) -> str:
    """LLVM IR text of ``fn`` as ``void name(ptr in, ptr out)`` plus ``name_batch``.

    Examples
    --------
    >>> from compiler.ir import Builder
    >>> b = Builder(1)
    >>> ir = llvm_module(b.finish([b.op("tanh", b.input(0))]), "k")
    >>> "call double @tanh(double %v0)" in ir
    True
    """
    if not name.isidentifier():
        raise ValueError(f"kernel name {name!r} is not an identifier")
    unsupported = sorted({ins.op for ins in fn.instrs if ins.op not in (INPUT, CONST)}
                         - SUPPORTED_OPS)
    if unsupported:
        raise NotImplementedError(f"the llvm back end has no template for {unsupported}")
    instrs = fn.instrs
    const_text = {i: _hex(float(ins.args[0])) for i, ins in enumerate(instrs) if ins.op == CONST}
    bounds = _chunks(fn, chunk)
    owner = [0] * len(instrs)
    for c, (lo, hi) in enumerate(bounds):
        for i in range(lo, hi):
            owner[i] = c
    # values read in a later chunk than their own get a scratch slot
    slot: dict = {}
    for i, ins in enumerate(instrs):
        if ins.op in (INPUT, CONST):
            continue
        for a in ins.args:
            if instrs[a].op not in (INPUT, CONST) and owner[a] != owner[i] and a not in slot:
                slot[a] = len(slot)
    outputs_by_chunk: dict = {}
    for k, v in enumerate(fn.outputs):
        c = owner[v] if instrs[v].op not in (INPUT, CONST) else len(bounds) - 1
        outputs_by_chunk.setdefault(c, []).append((k, v))

    body: list = preamble({ins.op for ins in instrs})

    for c, (lo, hi) in enumerate(bounds):
        body.append(f"define internal void @{name}.c{c}(ptr noalias %in, ptr noalias %out, "
                    f"ptr noalias %tmp) noinline nounwind {{")
        local: dict = dict(const_text)
        loaded: set = set()

        def ref(a: int) -> str:
            if a in local:
                return local[a]
            ins = instrs[a]
            if ins.op == INPUT:
                body.append(f"  %in.p{a} = getelementptr inbounds double, ptr %in, i64 {int(ins.args[0])}")
                body.append(f"  %v{a} = load double, ptr %in.p{a}")
            else:  # defined in an earlier chunk
                body.append(f"  %t.p{a} = getelementptr inbounds double, ptr %tmp, i64 {slot[a]}")
                body.append(f"  %v{a} = load double, ptr %t.p{a}")
            loaded.add(a)
            local[a] = f"%v{a}"
            return local[a]

        for i in range(lo, hi):
            ins = instrs[i]
            if ins.op in (INPUT, CONST):
                continue
            args = [ref(a) for a in ins.args]
            dst = f"%v{i}"
            body.extend(scalar_op(ins.op, dst, args))
            local[i] = dst
            if i in slot:
                body.append(f"  %t.s{i} = getelementptr inbounds double, ptr %tmp, i64 {slot[i]}")
                body.append(f"  store double {dst}, ptr %t.s{i}")
        for k, v in outputs_by_chunk.get(c, []):
            body.append(f"  %o.p{k} = getelementptr inbounds double, ptr %out, i64 {k}")
            body.append(f"  store double {ref(v)}, ptr %o.p{k}")
        body.append("  ret void\n}")

    n_tmp = max(len(slot), 1)
    on_heap = n_tmp > _MAX_STACK_SLOTS
    body.append(f"define void @{name}(ptr noalias %in, ptr noalias %out) nounwind {{")
    if on_heap:
        body.insert(0, "declare ptr @malloc(i64)\ndeclare void @free(ptr)")
        body.append(f"  %tmp = call ptr @malloc(i64 {8 * n_tmp})")
    else:
        body.append(f"  %tmp = alloca double, i64 {n_tmp}, align 16")
    for c in range(len(bounds)):
        body.append(f"  call void @{name}.c{c}(ptr %in, ptr %out, ptr %tmp)")
    if on_heap:
        body.append("  call void @free(ptr %tmp)")
    body.append("  ret void\n}")
    return "\n".join(body) + "\n"
