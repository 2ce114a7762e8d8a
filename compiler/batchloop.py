"""A batch loop around a scalar kernel, as LLVM IR.

Programs too big for a SIMD batch kernel (:data:`compiler.llvmvec.VEC_MAX_STATEMENTS`)
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

__all__ = ["batch_loop_module", "MAX_STACK_DOUBLES"]

MAX_STACK_DOUBLES = 8192
"""Gather/scatter buffers above this many doubles (64 KiB) go to the heap: pool
threads' stacks are not the main thread's."""


def batch_loop_module(kernel: str, name: str, n_inputs: int, n_outputs: int) -> str:
    """LLVM IR text of ``name_sbatch`` calling ``void kernel(ptr in, ptr out)`` per point.

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
    lines = [f"declare void @{kernel}(ptr, ptr)"]
    if on_heap:
        lines += ["declare ptr @malloc(i64)", "declare void @free(ptr)"]
    lines += [f"define void @{name}_sbatch(ptr noalias %ptrs, ptr noalias %strides, "
              f"ptr noalias %out, i64 %ostride, i64 %lo, i64 %hi) nounwind {{",
              "entry:",
              "  %empty = icmp sge i64 %lo, %hi",
              "  br i1 %empty, label %done, label %setup",
              "setup:"]
    if on_heap:
        lines += [f"  %in = call ptr @malloc(i64 {8 * (n_in + n_out)})",
                  "  %nomem = icmp eq ptr %in, null",
                  "  br i1 %nomem, label %nan, label %buffers",
                  "buffers:",
                  f"  %res = getelementptr inbounds double, ptr %in, i64 {n_in}",
                  "  br label %point"]
    else:
        lines += [f"  %in = alloca double, i64 {n_in}, align 16",
                  f"  %res = alloca double, i64 {n_out}, align 16",
                  "  br label %point"]
    lines += [
        "point:",                                    # for i in lo .. hi-1
        "  %i = phi i64 [%lo, %" + ("buffers" if on_heap else "setup") + "], [%inext, %scatter]",
        "  br label %gather" if n_inputs > 0 else "  br label %call",
        "gather:",                                   # in[k] = ptrs[k][i * strides[k]]
        "  %k = phi i64 [0, %point], [%knext, %gather]",
        "  %pk.p = getelementptr inbounds ptr, ptr %ptrs, i64 %k",
        "  %pk = load ptr, ptr %pk.p",
        "  %sk.p = getelementptr inbounds i64, ptr %strides, i64 %k",
        "  %sk = load i64, ptr %sk.p",
        "  %xk.o = mul i64 %i, %sk",
        "  %xk.p = getelementptr double, ptr %pk, i64 %xk.o",
        "  %xk = load double, ptr %xk.p",
        "  %ik.p = getelementptr inbounds double, ptr %in, i64 %k",
        "  store double %xk, ptr %ik.p",
        "  %knext = add i64 %k, 1",
        f"  %kmore = icmp slt i64 %knext, {int(n_inputs)}",
        "  br i1 %kmore, label %gather, label %call"]
    if n_inputs <= 0:                                # nothing to gather
        lines = lines[:lines.index("gather:")]
    lines += [
        "call:",
        f"  call void @{kernel}(ptr %in, ptr %res)",
        "  br label %scatter.o",
        "scatter.o:",                                # out[o * ostride + i] = res[o]
        "  %o = phi i64 [0, %call], [%onext, %scatter.o]",
        "  %ro.p = getelementptr inbounds double, ptr %res, i64 %o",
        "  %ro = load double, ptr %ro.p",
        "  %oo.r = mul i64 %o, %ostride",
        "  %oo.k = add i64 %oo.r, %i",
        "  %oo.p = getelementptr double, ptr %out, i64 %oo.k",
        "  store double %ro, ptr %oo.p",
        "  %onext = add i64 %o, 1",
        f"  %omore = icmp slt i64 %onext, {int(n_outputs)}",
        "  br i1 %omore, label %scatter.o, label %scatter",
        "scatter:",
        "  %inext = add i64 %i, 1",
        "  %again = icmp slt i64 %inext, %hi",
        "  br i1 %again, label %point, label %finish",
        "finish:"]
    if on_heap:
        lines.append("  call void @free(ptr %in)")
    lines += ["  br label %done"]
    if on_heap:                                      # no buffer: every output of the range is NaN
        lines += ["nan:",
                  "  %ni = phi i64 [%lo, %setup], [%ninext, %nan.o.end]",
                  "  br label %nan.o",
                  "nan.o:",
                  "  %no = phi i64 [0, %nan], [%nonext, %nan.o]",
                  "  %no.r = mul i64 %no, %ostride",
                  "  %no.k = add i64 %no.r, %ni",
                  "  %no.p = getelementptr double, ptr %out, i64 %no.k",
                  "  store double 0x7FF8000000000000, ptr %no.p",
                  "  %nonext = add i64 %no, 1",
                  f"  %nomore = icmp slt i64 %nonext, {int(n_outputs)}",
                  "  br i1 %nomore, label %nan.o, label %nan.o.end",
                  "nan.o.end:",
                  "  %ninext = add i64 %ni, 1",
                  "  %nagain = icmp slt i64 %ninext, %hi",
                  "  br i1 %nagain, label %nan, label %done"]
    lines += ["done:", "  ret void", "}"]
    return "\n".join(lines) + "\n"
