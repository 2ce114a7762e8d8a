"""A batch loop around a scalar kernel, as LLVM IR.

Programs too big for a SIMD batch kernel (:data:`compiler.llvmsimd.VEC_MAX_STATEMENTS`)
and kernels compiled elsewhere (the numba back end's C entry) batch through
this loop: one small function with the interface of the SIMD kernels, ::

    void NAME_sbatch(ptr ptrs, ptr strides, ptr out, i64 ostride, i64 lo, i64 hi)

that, for every point ``i`` in ``lo .. hi-1``, gathers input ``k`` from
``ptrs[k][i * strides[k]]`` (the callers' arrays in place; stride 0
broadcasts) into a buffer, calls the scalar kernel ``void KERNEL(ptr in,
ptr out)`` on it, and scatters output ``o`` to ``out[o * ostride + i]``. So a
batch computes, point for point, the bits of single-point calls, and runs on
the same thread pool (:mod:`compiler.parallel`) as the SIMD kernels.

The kernel is an external symbol: it resolves, when the loop's object is
loaded, to the kernel registered under that name (``llvmlite.binding.add_symbol``).
The loop depends only on the kernel's name and sizes, so it is tiny to
compile and cached like every other object. Buffers up to
:data:`MAX_STACK_DOUBLES` doubles live on the stack; bigger ones are
allocated once per call (not per point), and if that allocation fails every
output of the range is NaN.
"""

from __future__ import annotations

from compiler.emitter import NAN_HEX, FunctionEmitter, Module, Val

__all__ = ["batch_loop_module", "MAX_STACK_DOUBLES"]

MAX_STACK_DOUBLES = 8192
"""Gather/scatter buffers above this many doubles (64 KiB) go to the heap: pool
threads' stacks are not the main thread's."""


def batch_loop_module(kernel: str, name: str, n_inputs: int, n_outputs: int) -> str:
    """LLVM IR text of ``name_sbatch`` calling ``void kernel(ptr in, ptr out)`` per point,
    written through :class:`compiler.emitter.FunctionEmitter`.

    Examples
    --------
    >>> ir = batch_loop_module("k", "k2", 3, 2)
    >>> "define void @k2_sbatch(" in ir and "call void @k(ptr %in, ptr %res)" in ir
    True
    """
    for ident in (kernel, name):
        if not ident.isidentifier():
            raise ValueError(f"{ident!r} is not an identifier")
    if n_outputs < 1:
        raise ValueError(f"a kernel has at least one output, got {n_outputs}")
    n_in, n_out = max(int(n_inputs), 1), int(n_outputs)
    on_heap = n_in + n_out > MAX_STACK_DOUBLES
    mod = Module()
    mod.declare(kernel, "void", ["ptr", "ptr"])
    e = FunctionEmitter(mod)
    setup, done = e.fresh_label("setup"), e.fresh_label("done")
    e.cbr(e.icmp("sge", "%lo", "%hi"), done, setup)
    e.label(setup)
    nan = None
    if on_heap:
        mod.declare("malloc", "ptr", ["i64"])
        mod.declare("free", "void", ["ptr"])
        buf = e.call("ptr", "@malloc", [("i64", 8 * (n_in + n_out))], name="%in")
        nan, buffers = e.fresh_label("nan"), e.fresh_label("buffers")
        e.cbr(e.icmp("eq", buf, "null", ty="ptr"), nan, buffers)
        e.label(buffers)
        res = e.gep("double", buf, n_in, name="%res")
    else:
        buf = e.alloca("double", n_in, align=16, name="%in")
        res = e.alloca("double", n_out, align=16, name="%res")

    def gather(i: Val, k: Val) -> None:          # in[k] = ptrs[k][i * strides[k]]
        base = e.load("ptr", e.gep("ptr", "%ptrs", k, hint="pk.p"), hint="pk")
        stride = e.load("i64", e.gep("i64", "%strides", k, hint="sk.p"), hint="sk")
        x = e.load("double", e.gep("double", base, e.int_op("mul", i, stride), inbounds=False),
                   hint="xk")
        e.store("double", x, e.gep("double", buf, k, hint="ik.p"))

    def scatter(i: Val, o: Val) -> None:         # out[o * ostride + i] = res[o]
        r = e.load("double", e.gep("double", res, o, hint="ro.p"), hint="ro")
        e.store("double", r, _out_ptr(e, o, i))

    def point(i: Val) -> None:
        if n_inputs > 0:
            e.loop(0, int(n_inputs), lambda k: gather(i, k), hint="gather")
        e.call("void", f"@{kernel}", [("ptr", buf), ("ptr", res)])
        e.loop(0, n_out, lambda o: scatter(i, o), hint="scatter")

    e.loop("%lo", "%hi", point, hint="point")
    if on_heap:
        e.call("void", "@free", [("ptr", buf)])
        e.br(done)
        e.label(nan)                             # no buffer: every output of the range is NaN
        e.loop("%lo", "%hi", lambda i: e.loop(
            0, n_out, lambda o: e.store("double", NAN_HEX, _out_ptr(e, o, i)), hint="nan.o"),
            hint="nan")
    e.br(done)
    e.label(done)
    e.ret()
    mod.add(e.finish(f"void @{name}_sbatch(ptr noalias %ptrs, ptr noalias %strides, "
                     f"ptr noalias %out, i64 %ostride, i64 %lo, i64 %hi) nounwind"))
    return mod.text()


def _out_ptr(e: FunctionEmitter, o: Val, i: Val) -> Val:
    """``&out[o * ostride + i]``."""
    return e.gep("double", "%out", e.int_op("add", e.int_op("mul", o, "%ostride"), i),
                 inbounds=False, hint="oo.p")
