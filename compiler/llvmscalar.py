"""Print an SSA :class:`~compiler.ir.Function` as a straight-line LLVM kernel.

The llvm back end exists because Numba lowers long straight-line functions
superlinearly (see DESIGN.md); LLVM itself, fed IR directly, is close to
linear when each function stays bounded. So the kernel is split into chunk
functions of at most ``chunk`` statements (marked ``noinline`` so the
optimizer cannot glue them back together); a value defined in one chunk and
read in a later one goes through a scratch array owned by the entry function.

Each statement is its op's template (:mod:`compiler.ops`), written through
the shared emitter (:mod:`compiler.emitter`) in ``double``; constants are
exact hexadecimal doubles.

Module interface (all ``ptr`` are ``double*``)::

    void NAME(ptr in, ptr out)                        one point

(batches run the SIMD kernel of :mod:`compiler.llvmsimd`, or for programs
too big for it the batch loop of :mod:`compiler.llvmbatch` around this one).
"""

from __future__ import annotations

from compiler import ops
from compiler.emitter import FunctionEmitter, Module, Val, hex_double
from compiler.ir import CONST, INPUT, Function

__all__ = ["llvm_module", "supported_ops", "unsupported_ops", "DEFAULT_CHUNK", "hex_double"]

DEFAULT_CHUNK = 2000
_MAX_STACK_SLOTS = 32768   # scratch above 256 KiB goes to the heap (thread stacks are small)


def supported_ops() -> frozenset:
    """The ops the llvm back end compiles: every primitive record (each has a template)."""
    return ops.names()


def unsupported_ops(fn: Function) -> list:
    """The ops of ``fn`` without a primitive record, sorted."""
    have = ops.names()
    return sorted({ins.op for ins in fn.instrs if ins.op not in (INPUT, CONST)} - have)


def check_supported(fn: Function) -> None:
    missing = unsupported_ops(fn)
    if missing:
        raise NotImplementedError(f"the llvm back end has no template for {missing}: register "
                                  f"them with compiler.ops.register (or symgrad.register_op)")


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


def llvm_module(fn: Function, name: str = "kernel", chunk: int = DEFAULT_CHUNK,
                also: tuple = ()) -> str:
    """LLVM IR text of ``fn`` as ``void name(ptr in, ptr out)``.

    ``also`` adds more kernels to the same module, ``((fn, name), ...)``: one
    object file, one JIT library for all of them (a compiled formula's
    value-and-gradient and forward kernels: each library costs memory of
    its own, :mod:`compiler.jit`).

    Examples
    --------
    >>> from compiler.ir import Builder
    >>> b = Builder(1)
    >>> ir = llvm_module(b.finish([b.op("tanh", b.input(0))]), "k")
    >>> "call double @tanh(double %in.2)" in ir
    True
    """
    mod = Module()
    names = [name, *(n for _, n in also)]
    if len(set(names)) != len(names):
        raise ValueError(f"kernel names must differ, got {names}")
    for f, n in ((fn, name), *also):
        _add_kernel(mod, f, n, chunk)
    return mod.text()


def _add_kernel(mod: Module, fn: Function, name: str, chunk: int) -> None:
    if not name.isidentifier():
        raise ValueError(f"kernel name {name!r} is not an identifier")
    check_supported(fn)
    instrs = fn.instrs
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

    for c, (lo, hi) in enumerate(bounds):
        e = FunctionEmitter(mod)
        local: dict = {}

        def ref(a: int) -> Val:
            if a not in local:
                ins = instrs[a]
                if ins.op == CONST:
                    local[a] = e.scalar_const(ins.args[0])
                elif ins.op == INPUT:
                    local[a] = e.load("double", e.gep("double", "%in", int(ins.args[0])), hint="in")
                else:  # defined in an earlier chunk
                    local[a] = e.load("double", e.gep("double", "%tmp", slot[a]), hint="tmp")
            return local[a]

        for i in range(lo, hi):
            ins = instrs[i]
            if ins.op in (INPUT, CONST):
                continue
            local[i] = e.op(ins.op, *[ref(a) for a in ins.args])
            if i in slot:
                e.store("double", e.as_operand(local[i]), e.gep("double", "%tmp", slot[i]))
        for k, v in outputs_by_chunk.get(c, []):
            e.store("double", ref(v), e.gep("double", "%out", k))
        e.ret()
        mod.add(e.finish(f"internal void @{name}.c{c}(ptr noalias %in, ptr noalias %out, "
                         f"ptr noalias %tmp) noinline nounwind"))

    n_tmp = max(len(slot), 1)
    e = FunctionEmitter(mod)
    if n_tmp > _MAX_STACK_SLOTS:
        mod.declare("malloc", "ptr", ["i64"])
        mod.declare("free", "void", ["ptr"])
        tmp = e.call("ptr", "@malloc", [("i64", 8 * n_tmp)], name="%tmp")
    else:
        tmp = e.alloca("double", n_tmp, align=16, name="%tmp")
    for c in range(len(bounds)):
        e.call("void", f"@{name}.c{c}", [("ptr", "%in"), ("ptr", "%out"), ("ptr", tmp)])
    if n_tmp > _MAX_STACK_SLOTS:
        e.call("void", "@free", [("ptr", tmp)])
    e.ret()
    mod.add(e.finish(f"void @{name}(ptr noalias %in, ptr noalias %out) nounwind"))
