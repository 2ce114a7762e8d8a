"""Array programs (:mod:`compiler.arrays`) as LLVM IR loops.

The same loop nests the Numba printer writes, emitted as LLVM IR and
compiled with llvmlite: compile time stays a fraction of a second whatever
the layer sizes (Numba needs seconds for a three-layer training step), and
LLVM vectorises the contiguous inner loops. Dot-product accumulations carry
the ``reassoc`` flag so they vectorise too (the only place where the order of
floating-point additions is left to the compiler); elementwise bodies use the
scalar templates of :mod:`compiler.llvmscalar`, so they compute exactly what the
straight-line kernels compute.

Kernel interface (the caller allocates every array)::

    void NAME(ptr args, ptr dims, ptr bufs, ptr scal, ptr outs)

``args[k]``: data pointer of argument k (C-contiguous float64); ``dims[d]``:
value of runtime dimension d (i64); ``bufs[b]``: pointer to the buffer of the
b-th array-valued node (see :func:`buffer_plan`); ``scal[s]``: slot of the
s-th scalar-valued node; ``outs[v]``: flat output vector v (``out_views``).
"""

from __future__ import annotations

from compiler.ir import CONST, INPUT
from compiler import ops
from compiler.emitter import FunctionEmitter, Module, SimdMath, Val, hex_double
from compiler.llvmscalar import check_supported
from compiler.arrays import ArrayProgram, resolve

__all__ = ["loop_module", "buffer_plan"]

_VIEWS = ("input", "const", "transpose", "bcast")


def buffer_plan(prog: ArrayProgram) -> tuple:
    """``(buffers, scalars)``: node ids holding an array buffer, and node ids
    holding a scalar slot, in slot order."""
    buffers, scalars = [], []
    for i, op in enumerate(prog.ops):
        if op.kind in _VIEWS or (i in prog.out_views and tuple(op.shape) != (1, 1)):
            continue
        if tuple(op.shape) == (1, 1):
            scalars.append(i)
        else:
            buffers.append(i)
    for i in prog.outputs:          # views returned to the caller get a buffer of their own
        op = prog.ops[i]
        if op.kind in _VIEWS and tuple(op.shape) != (1, 1) and i not in buffers \
                and i not in prog.out_views:
            buffers.append(i)
        if tuple(op.shape) == (1, 1) and i not in scalars:
            scalars.append(i)
    return buffers, scalars


class _Emitter(FunctionEmitter):
    """The loop printer: node kinds dispatch to ``n_<kind>`` methods; loops,
    folds, names and op templates come from the shared emitter."""

    def __init__(self, prog: ArrayProgram, module: Module, blas: str | None,
                 simd: SimdMath) -> None:
        super().__init__(module)
        self.p = prog
        self.blas, self.used_blas = blas, False
        self.simd = simd
        self.vfe = FunctionEmitter(module, simd.lanes, simd, prefix="w")   # SIMD elementwise loops
        self.vfe.lines = self.lines
        self.buffers, self.scalars = buffer_plan(prog)
        self.dim_index = {name: k for k, name in enumerate(sorted(prog.dims))}
        self.dim_value: dict = {}
        self.ptr: dict = {}

    def tmp(self, base: str = "t") -> str:
        return self.fresh(base)

    # -- sizes, pointers, elements ----------------------------------------------------
    def size(self, d) -> str:
        if isinstance(d, int):
            return str(d)
        return self.dim_value[d]

    def rows_cols(self, i: int) -> tuple:
        r, c = self.p.ops[i].shape
        return self.size(r), self.size(c)

    def ld(self, i: int) -> str:
        """Row stride of node i's storage."""
        if i in self.p.views:
            return str(int(self.p.views[i][1]))
        if i in self.p.out_views:
            return str(int(self.p.out_views[i][2]))
        return self.rows_cols(i)[1]

    def base(self, i: int) -> str:
        """Pointer to node i's storage (arguments and buffers)."""
        return self.ptr[i]

    def scalar_slot(self, i: int) -> str:
        return self.ptr[("s", i)]

    def elem_ptr(self, i: int, r: str, c: str) -> str:
        i, r, c = resolve(self.p, i, r, c)
        op = self.p.ops[i]
        if tuple(op.shape) == (1, 1) and op.kind != "input":
            return self.scalar_slot(i)
        return self.address(self.base(i), r, c, self.ld(i))

    def address(self, base: str, r: str, c: str, ld: str) -> str:
        """Pointer to element (r, c) of row-major storage at ``base`` with row stride ``ld``."""
        return self.gep("double", base, self.int_op("add", self.int_op("mul", r, ld), c)).text

    def load_elem(self, i: int, r: str, c: str) -> str:
        op = self.p.ops[i]
        if op.kind == "const":
            return hex_double(float(op.attr))
        if op.kind == "bcast" and self.p.ops[op.args[0]].kind == "const":
            return hex_double(float(self.p.ops[op.args[0]].attr))
        p = self.elem_ptr(i, r, c)
        v = self.tmp("x")
        self.emit(f"{v} = load double, ptr {p}")
        return v

    def store_elem(self, i: int, r: str, c: str, value: str) -> None:
        self.emit(f"store double {value}, ptr {self.elem_ptr(i, r, c)}")

    # -- loops ----------------------------------------------------------------------
    def loop(self, bound, body, start="0", step: int = 1) -> None:
        """``for var in range(start, bound, step): body(var)`` (var as text)."""
        super().loop(start, bound, lambda v: body(v.text), step)

    def accumulate(self, bound: str, term, reassoc: bool = True) -> str:
        """``sum(term(k) for k in range(bound))`` in a register (phi)."""
        flag = "reassoc " if reassoc else ""

        def combine(acc, var):
            value = term(var)
            new = self.tmp("acn")
            self.emit(f"{new} = fadd {flag}double {acc}, {value}")
            return new
        return self.fold(bound, "0.0", combine)

    def fold(self, bound: str, init: str, combine, start: str = "0") -> str:
        """``acc = init; for k in range(start, bound): acc = combine(acc, k)`` (text values)."""
        return super().fold(start, bound, init, lambda acc, k: combine(acc.text, k.text)).text

    # -- node kinds -----------------------------------------------------------------
    def node(self, i: int) -> None:
        op = self.p.ops[i]
        if op.kind in _VIEWS:
            return
        getattr(self, "n_" + op.kind)(i)

    def n_dim(self, i: int) -> None:
        factor, names = self.p.ops[i].attr
        cur = str(int(factor))
        for name in names:
            t = self.tmp("dm")
            self.emit(f"{t} = mul i64 {cur}, {self.dim_value[name]}")
            cur = t
        f = self.tmp("df")
        self.emit(f"{f} = sitofp i64 {cur} to double")
        self.emit(f"store double {f}, ptr {self.scalar_slot(i)}")

    def n_eye(self, i: int) -> None:
        n = self.rows_cols(i)[0]
        self.loop(n, lambda r: self.loop(n, lambda c: self._eye_elem(i, r, c)))

    def _eye_elem(self, i, r, c):
        eq = self.tmp("eq")
        self.emit(f"{eq} = icmp eq i64 {r}, {c}")
        v = self.tmp("ev")
        self.emit(f"{v} = select i1 {eq}, double 1.0, double 0.0")
        self.store_elem(i, r, c, v)

    def n_trace(self, i: int) -> None:
        a = self.p.ops[i].args[0]
        n = self.rows_cols(a)[0]
        acc = self.accumulate(n, lambda k: self.load_elem(a, k, k), reassoc=False)
        self.emit(f"store double {acc}, ptr {self.scalar_slot(i)}")

    def n_reduce(self, i: int) -> None:
        op = self.p.ops[i]
        a = op.args[0]
        r, c = self.rows_cols(a)
        if op.attr == "all":
            slot = self.scalar_slot(i)
            self.emit(f"store double 0.0, ptr {slot}")

            def row(rr):
                s = self.accumulate(c, lambda cc: self.load_elem(a, rr, cc), reassoc=False)
                old = self.tmp("o")
                self.emit(f"{old} = load double, ptr {slot}")
                new = self.tmp("nw")
                self.emit(f"{new} = fadd double {old}, {s}")
                self.emit(f"store double {new}, ptr {slot}")
            self.loop(r, row)
        elif op.attr == "lse_rows":   # (r, c) -> (1, c): log-sum-exp per column
            self.loop(c, lambda cc: self.store_elem(i, "0", cc, self._lse_column(a, r, cc)))
        elif op.attr == "cols":       # (r, c) -> (r, 1)
            self.loop(r, lambda rr: self.store_elem(
                i, rr, "0", self.accumulate(c, lambda cc: self.load_elem(a, rr, cc), reassoc=False)))
        else:                          # (r, c) -> (1, c)
            self.loop(c, lambda cc: self.store_elem(
                i, "0", cc, self.accumulate(r, lambda rr: self.load_elem(a, rr, cc), reassoc=False)))

    def _lse_column(self, a: int, r: str, cc: str) -> str:
        """The logsumexp record's formula down column ``cc``: ``m + log1p(rest)``,
        m the maximum, rest the sum of ``exp(x - m)`` over the other entries (the
        entries equal to m count 1 each, less one for m itself): accurate when the
        result is small next to 1, m itself when m is +-inf, nan for any nan."""
        top = _operand(self.fold(r, self.load_elem(a, "0", cc), lambda acc, rr: self._op(
            "max2", [acc, self.load_elem(a, rr, cc)]), start="1"))

        def below(rr):              # exp(x - m) for x != m (nan stays nan), 0 for x == m
            x = _operand(self.load_elem(a, rr, cc))
            return self.select(self.fcmp("oeq", x, top), self.const(0.0),
                               self.op("exp", self.fsub(x, top))).text

        def equal(rr):
            x = _operand(self.load_elem(a, rr, cc))
            return self.select(self.fcmp("oeq", x, top), self.const(1.0), self.const(0.0)).text
        rest = self.fadd(_operand(self.accumulate(r, below, reassoc=False)),
                         self.fsub(_operand(self.accumulate(r, equal, reassoc=False)),
                                   self.const(1.0)))
        return self.as_operand(self.fadd(top, self.op("log1p", rest))).text

    def n_matmul(self, i: int) -> None:
        op = self.p.ops[i]
        a, b = op.args
        m, n = self.rows_cols(i)
        k = self.rows_cols(a)[1]
        ta = self._transposed(a)
        tb = self._transposed(b)
        if tuple(op.shape) == (1, 1):
            acc = self.accumulate(k, lambda kk: self._mul(self.load_elem(a, "0", kk), self.load_elem(b, kk, "0")))
            self.emit(f"store double {acc}, ptr {self.scalar_slot(i)}")
            return
        if self.blas and self._blas_matmul(i, a, b, m, n, k):
            return
        if tb and not ta:     # A * B.T: contiguous dot products
            self.loop(m, lambda ii: self.loop(n, lambda jj: self.store_elem(i, ii, jj, self.accumulate(
                k, lambda kk: self._mul(self.load_elem(a, ii, kk), self.load_elem(b, kk, jj))))))
            return
        self.loop(m, lambda ii: self.loop(n, lambda jj: self.store_elem(i, ii, jj, "0.0")))
        # k in blocks of 4: each pass over a row of the result adds four products
        # (one load and store of C per four multiply-adds), then the remainder
        if k.isdigit():
            k4 = str(int(k) - int(k) % 4)
        else:
            k4 = self.tmp("k4")
            self.emit(f"{k4} = and i64 {k}, -4")
        if ta and not tb:     # A.T * B: k, i, j
            self.loop(k4, lambda kk: self.loop(m, lambda ii: self._axpy(i, a, b, ii, kk, n, 4)), step=4)
            self.loop(k, lambda kk: self.loop(m, lambda ii: self._axpy(i, a, b, ii, kk, n, 1)), start=k4)
        else:                 # A * B: i, k, j
            def row(ii):
                self.loop(k4, lambda kk: self._axpy(i, a, b, ii, kk, n, 4), step=4)
                self.loop(k, lambda kk: self._axpy(i, a, b, ii, kk, n, 1), start=k4)
            self.loop(m, row)

    def _blas_matmul(self, i, a, b, m, n, k) -> bool:
        """``C = op(A) op(B)`` through BLAS dgemm when the product is big enough and
        every operand is plain row-major storage (an argument, view or buffer)."""
        def plain(node):
            src, t = node, False
            while self.p.ops[src].kind == "transpose":
                src, t = self.p.ops[src].args[0], not t
            kind = self.p.ops[src].kind
            ok = kind in ("input", "matmul", "ewise", "reduce", "eye") and tuple(
                self.p.ops[src].shape) != (1, 1)
            return ok, src, t
        (oka, sa, ta), (okb, sb, tb) = plain(a), plain(b)
        sizes = [int(x) for x in (m, n, k) if x.isdigit()]
        if not (oka and okb) or (len(sizes) == 3 and sizes[0] * sizes[1] * sizes[2] < 32768):
            return False
        if i not in self.ptr or tuple(self.p.ops[i].shape) == (1, 1):
            return False
        self.used_blas = True
        self.emit(f"call void @{self.blas}(i32 101, i32 {112 if ta else 111}, i32 {112 if tb else 111}, "
                  f"i64 {m}, i64 {n}, i64 {k}, double 1.0, ptr {self.base(sa)}, i64 {self.ld(sa)}, "
                  f"ptr {self.base(sb)}, i64 {self.ld(sb)}, double 0.0, ptr {self.base(i)}, "
                  f"i64 {self.ld(i)})")
        return True

    def _axpy(self, i, a, b, ii, kk, n, width: int) -> None:
        """``C[ii, :] += sum(A[ii, kk+q] * B[kk+q, :] for q < width)``, fused multiply-adds."""
        ks = [kk]
        for q in range(1, width):
            t = self.tmp("kq")
            self.emit(f"{t} = add i64 {kk}, {q}")
            ks.append(t)
        coef = [self.load_elem(a, ii, kq) for kq in ks]

        def body(jj):
            acc = self.load_elem(i, ii, jj)
            for c, kq in zip(coef, ks):
                prod = self.tmp("mu")
                self.emit(f"{prod} = fmul contract double {c}, {self.load_elem(b, kq, jj)}")
                new = self.tmp("ax")
                self.emit(f"{new} = fadd contract double {acc}, {prod}")
                acc = new
            self.store_elem(i, ii, jj, acc)
        self.loop(n, body)

    def _op(self, name: str, args: list) -> str:
        vals = [_operand(a) for a in args]
        if name == "sub":
            return self.fsub(*vals).text
        return self.as_operand(self.op(name, *vals)).text

    def _mul(self, x: str, y: str) -> str:
        t = self.tmp("mu")
        self.emit(f"{t} = fmul double {x}, {y}")
        return t

    def _transposed(self, i: int) -> bool:
        t = False
        while self.p.ops[i].kind == "transpose":
            i, t = self.p.ops[i].args[0], not t
        return t

    def n_ewise(self, i: int) -> None:
        op = self.p.ops[i]
        if tuple(op.shape) == (1, 1):
            self.emit(f"store double {self._body(i, '0', '0')}, ptr {self.scalar_slot(i)}")
            return
        r, c = self.rows_cols(i)
        vec = self._vector_function(i)
        if vec is None:
            self.loop(r, lambda rr: self.loop(c, lambda cc: self.store_elem(i, rr, cc, self._body(i, rr, cc))))
            return
        # f applied to a contiguous array: L lanes at a time through the vector
        # math library, the remainder of each row one by one
        src = op.args[0]
        L = self.simd.lanes
        V = f"<{L} x double>"
        vfe = self.vfe

        def row(rr):
            if c.isdigit():
                c4 = str(int(c) - int(c) % L)
            else:
                c4 = self.tmp("c4")
                self.emit(f"{c4} = and i64 {c}, -{L}")

            def lanes(cc):
                v = self.tmp("vx")
                self.emit(f"{v} = load {V}, ptr {self.elem_ptr(src, rr, cc)}, align 8")
                vals = {}
                for k, ins in enumerate(vec.instrs):
                    if ins.op == INPUT:
                        vals[k] = Val(v)
                    elif ins.op == CONST:
                        vals[k] = Val(hex_double(ins.args[0]), float(ins.args[0]))
                    else:
                        vals[k] = vfe.op(ins.op, *[vals[a] for a in ins.args])
                y = vfe.as_operand(vals[vec.outputs[0]])
                self.emit(f"store {V} {y}, ptr {self.elem_ptr(i, rr, cc)}, align 8")
            self.loop(c4, lanes, step=L)
            self.loop(c, lambda cc: self.store_elem(i, rr, cc, self._body(i, rr, cc)), start=c4)
        self.loop(r, row)

    def _vector_function(self, i: int):
        """Node i's elementwise function when it is one libm-based op of a
        same-shape contiguous array whose libm calls libmvec has: then it runs
        L lanes at a time."""
        op = self.p.ops[i]
        fn = op.attr
        real = [ins for ins in fn.instrs if ins.op not in (INPUT, CONST)]
        if not self.simd.table or len(real) != 1 or len(op.args) != 1:
            return None
        prim = ops.get(real[0].op)
        if prim.vector != "libmvec" or \
                not all(f in self.simd.table for f, _ in ops.libm_calls(prim.name)):
            return None
        src = self.p.ops[op.args[0]]
        if src.kind not in ("input", "matmul", "ewise", "reduce") or tuple(src.shape) != tuple(op.shape):
            return None
        return fn

    def _body(self, i: int, r: str, c: str) -> str:
        op = self.p.ops[i]
        fn = op.attr
        reads = [self.load_elem(a, r, c) for a in op.args]
        vals: dict = {}
        for k, ins in enumerate(fn.instrs):
            if ins.op == INPUT:
                vals[k] = reads[int(ins.args[0])]
            elif ins.op == CONST:
                vals[k] = hex_double(float(ins.args[0]))
            else:
                vals[k] = self._op(ins.op, [vals[a] for a in ins.args])
        return vals[fn.outputs[0]]

    def output_copy(self, i: int) -> None:
        """Outputs that are views are copied into their own buffer (or their out view)."""
        op = self.p.ops[i]
        if i in self.p.out_views:
            if tuple(op.shape) == (1, 1):
                self.emit(f"store double {self.load_elem(i, '0', '0')}, ptr {self.ptr[('out', i)]}")
                return
            if op.kind not in _VIEWS:
                return
        if op.kind not in _VIEWS or tuple(op.shape) == (1, 1):
            if tuple(op.shape) == (1, 1) and op.kind in _VIEWS:
                self.emit(f"store double {self.load_elem(i, '0', '0')}, ptr {self.scalar_slot(i)}")
            return
        r, c = self.rows_cols(i)
        dst = self.ptr[("out", i)]
        ld = str(int(self.p.out_views[i][2])) if i in self.p.out_views else c

        def body(rr, cc):
            v = self.load_elem(i, rr, cc)
            self.emit(f"store double {v}, ptr {self.address(dst, rr, cc, ld)}")
        self.loop(r, lambda rr: self.loop(c, lambda cc: body(rr, cc)))


def loop_module(prog: ArrayProgram, name: str = "kernel", blas: str | None = None,
                simd: SimdMath | None = None) -> str:
    """LLVM IR text of ``void name(ptr args, ptr dims, ptr bufs, ptr scal, ptr outs)``.

    ``simd`` gives the vector width and libmvec functions elementwise loops of
    one libm-based op may use (none: every element through the scalar templates).

    Examples
    --------
    >>> from compiler.ir import Builder
    >>> from compiler.arrays import ArrayOp, ArrayProgram
    >>> b = Builder(1); sq = b.finish([b.op("mul", b.input(0), b.input(0))])
    >>> prog = ArrayProgram([ArrayOp("input", (), (3, "n"), 0), ArrayOp("ewise", (0,), (3, "n"), sq),
    ...                      ArrayOp("reduce", (1,), (1, 1), "all")], [2], 1, {"n": (0, 1)})
    >>> "define void @k(" in loop_module(prog, "k")
    True
    """
    if not name.isidentifier():
        raise ValueError(f"kernel name {name!r} is not an identifier")
    module = Module()
    e = _Emitter(prog, module, blas, simd if simd is not None else SimdMath(4, {}))
    for op in prog.ops:
        if op.kind == "ewise":
            check_supported(op.attr)
    for dim, k in e.dim_index.items():
        p = e.tmp("dp")
        e.emit(f"{p} = getelementptr inbounds i64, ptr %dims, i64 {k}")
        v = e.tmp("dim")
        e.emit(f"{v} = load i64, ptr {p}")
        e.dim_value[dim] = v
    for i, op in enumerate(prog.ops):
        if op.kind == "input":
            p = e.tmp("ap")
            e.emit(f"{p} = getelementptr inbounds ptr, ptr %args, i64 {int(op.attr)}")
            v = e.tmp("arg")
            e.emit(f"{v} = load ptr, ptr {p}")
            if i in prog.views:
                w = e.tmp("view")
                e.emit(f"{w} = getelementptr inbounds double, ptr {v}, i64 {int(prog.views[i][0])}")
                v = w
            e.ptr[i] = v
    for i, (vec, offset, _) in prog.out_views.items():
        p = e.tmp("op")
        e.emit(f"{p} = getelementptr inbounds ptr, ptr %outs, i64 {int(vec)}")
        v = e.tmp("out")
        e.emit(f"{v} = load ptr, ptr {p}")
        w = e.tmp("oview")
        e.emit(f"{w} = getelementptr inbounds double, ptr {v}, i64 {int(offset)}")
        if prog.ops[i].kind in _VIEWS or tuple(prog.ops[i].shape) == (1, 1):
            e.ptr[("out", i)] = w
        else:
            e.ptr[i] = w
    for slot, i in enumerate(e.buffers):
        p = e.tmp("bp")
        e.emit(f"{p} = getelementptr inbounds ptr, ptr %bufs, i64 {slot}")
        v = e.tmp("buf")
        e.emit(f"{v} = load ptr, ptr {p}")
        if prog.ops[i].kind in _VIEWS:
            e.ptr[("out", i)] = v
        else:
            e.ptr[i] = v
    for slot, i in enumerate(e.scalars):
        p = e.tmp("sp")
        e.emit(f"{p} = getelementptr inbounds double, ptr %scal, i64 {slot}")
        e.ptr[("s", i)] = p
    for i in range(len(prog.ops)):
        e.node(i)
    for i in prog.outputs:
        e.output_copy(i)
    e.emit("ret void")
    if e.used_blas:
        e.module.declare(blas, "void", ["i32", "i32", "i32", "i64", "i64", "i64", "double", "ptr",
                                        "i64", "ptr", "i64", "double", "ptr", "i64"])
    e.module.add(e.finish(f"void @{name}(ptr noalias %args, ptr noalias %dims, ptr noalias %bufs, "
                          f"ptr noalias %scal, ptr noalias %outs) nounwind"))
    return e.module.text()


def _operand(text: str) -> Val:
    """An operand of the loop printer as an emitter value (hex literals are constants)."""
    if text.startswith("0x"):
        import struct

        return Val(text, struct.unpack("<d", struct.pack("<Q", int(text, 16)))[0])
    return Val(text)
