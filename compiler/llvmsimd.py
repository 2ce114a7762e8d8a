"""Print an SSA :class:`~compiler.ir.Function` as a SIMD batch kernel.

The straight-line kernel of :mod:`compiler.llvmscalar` evaluates one point. A
batched call evaluates the same program at n points, and the points are
independent: here every SSA value becomes a ``<L x double>`` holding L
points (L = 8 with AVX-512, 4 otherwise; see
:func:`compiler.llvmjit.simd_math`), so one pass through the program
evaluates L points. Each statement is its op's template
(:mod:`compiler.ops`) written through the shared emitter in
``<L x double>`` — the same template the scalar kernel uses — so:

* arithmetic, comparisons, selects, ``abs``/``floor``/``ceil``/``sqrt`` are
  exact IEEE operations: lane for lane the bits the scalar kernel gives;
* libm functions (``exp``, ``log``, ``expm1``, ``log1p``, ``pow``, ``sin``,
  ``cos``, ``tan``, ``asin``, ``acos``, ``atan``, ``atan2``, ``sinh``,
  ``cosh``, ``tanh``, ``erf``, and the ops built on them: ``sigmoid``,
  ``softplus``, ``logsumexp``) call glibc's libmvec, L lanes at a time, when
  :func:`compiler.llvmjit.simd_math` finds it. libmvec is within 4 ulp of
  the true value (measured against libm: 3 ulp for exp/tanh/sin/cos/tan/sinh,
  2 for log/expm1/log1p/asin/acos/atan/cosh/erf, 1 for pow; sigmoid 4 and
  softplus 5, which round twice on top of exp), so these lanes can differ
  from a single-point call in the last bits, as NumPy's SIMD ufuncs differ
  from :mod:`math`. ``x**2``, ``x**0.5`` and ``x**-1`` stay exact (``x*x``,
  ``sqrt``, ``1/x``). Without libmvec (or with ``SYMGRAD_VECMATH=0``) these
  functions run lane by lane with libm, and batches equal single-point calls
  bit for bit;
* ops whose record says ``vector="lanes"`` run their scalar template once per lane.

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

from compiler.emitter import FunctionEmitter, Module, SimdMath, Val
from compiler.ir import CONST, INPUT, Function
from compiler.llvmscalar import check_supported

__all__ = ["SimdMath", "vector_module", "VEC_MAX_STATEMENTS"]

VEC_MAX_STATEMENTS = 4000
"""Programs up to this many statements get a SIMD batch kernel (one
function, compiled on the first batched call); bigger ones batch through
the scalar kernel."""


def vector_module(fn: Function, name: str, simd: SimdMath) -> str:
    """LLVM IR text of ``name_vbatch`` for ``fn`` (see the module docstring).

    Examples
    --------
    >>> from compiler.ir import Builder
    >>> b = Builder(2)
    >>> f = b.finish([b.op("mul", b.input(0), b.input(1))])
    >>> "fmul <4 x double>" in vector_module(f, "k", SimdMath(4))
    True
    """
    if not name.isidentifier():
        raise ValueError(f"kernel name {name!r} is not an identifier")
    check_supported(fn)
    L = simd.lanes
    mod = Module()
    e = FunctionEmitter(mod, L, simd)
    V = e.ty
    instrs = fn.instrs
    inputs = sorted({int(ins.args[0]) for ins in instrs if ins.op == INPUT})
    base, stride = {}, {}
    for k in inputs:
        base[k] = e.load("ptr", e.gep("ptr", "%ptrs", k), hint="base")
        stride[k] = e.load("i64", e.gep("i64", "%strides", k), hint="stride")
    last = e.int_op("sub", "%hi", "1")

    def group(i: Val) -> None:
        # lane j reads point min(i + j, hi - 1)
        points = [e.int_op("add", i, j) for j in range(L)]
        index = [e._def("idx", f"select i1 {e.icmp('sgt', p, last)}, i64 {last}, i64 {p}")
                 for p in points]
        value: dict = {}
        for v, ins in enumerate(instrs):
            if ins.op == CONST:
                value[v] = e.scalar_const(ins.args[0])
            elif ins.op == INPUT:
                k = int(ins.args[0])
                vec = "poison"
                for j in range(L):
                    x = e.load("double", e.gep("double", base[k], e.int_op("mul", index[j], stride[k]),
                                               inbounds=False))
                    vec = e._def("lanes", f"insertelement {V} {vec}, double {x}, i64 {j}").text
                value[v] = Val(vec)
            else:
                value[v] = e.op(ins.op, *[value[a] for a in ins.args])
        results = [e.as_operand(value[v]) for v in fn.outputs]
        full, partial, done = (e.fresh_label("store.all"), e.fresh_label("store.part"),
                               e.fresh_label("stored"))
        e.cbr(e.icmp("sle", e.int_op("add", i, L), "%hi"), full, partial)
        e.label(full)
        for o, r in enumerate(results):
            dst = e.gep("double", "%out", e.int_op("add", e.int_op("mul", o, "%ostride"), i),
                        inbounds=False)
            e.store(V, r, dst, align=8)
        e.br(done)
        e.label(partial)   # a partial group: lane 0 is always a real point
        for j in range(L):
            for o, r in enumerate(results):
                x = e._def("lane", f"extractelement {V} {r}, i64 {j}")
                dst = e.gep("double", "%out",
                            e.int_op("add", e.int_op("mul", o, "%ostride"), points[j]), inbounds=False)
                e.store("double", x, dst)
            if j + 1 < L:
                more = e.fresh_label("store.lane")
                e.cbr(e.icmp("slt", points[j + 1], "%hi"), more, done)
                e.label(more)
            else:
                e.br(done)
        e.label(done)

    e.loop("%lo", "%hi", group, step=L, hint="group")
    e.ret()
    mod.add(e.finish(f"void @{name}_vbatch(ptr noalias %ptrs, ptr noalias %strides, "
                     f"ptr noalias %out, i64 %ostride, i64 %lo, i64 %hi) nounwind"))
    return mod.text()
