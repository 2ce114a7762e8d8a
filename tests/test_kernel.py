"""The kernel interface (compiler/kernel.py, signature.py, llvmbatch.py, parallel.py).

What must hold: a kernel's entry points are fixed when it is built (same
objects whatever the call history); without the call glue every call takes
the checked path and gives the numbers of the python back end; programs too
big for a SIMD kernel batch through the LLVM batch loop with the bits of
single-point calls, with no Numba anywhere on the llvm path; a batched call
interrupted by a signal never leaves threads writing into freed memory; a
forked process pool runs batches. References are independent: the python
back end, hand-derived derivatives, NumPy formulas.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import sysconfig
import textwrap
import time
import types

import numpy as np
import pytest
import sympy as sp

import symgrad as sg
from compiler import llvmbatch, parallel, pyglue
from compiler.ir import Builder
from compiler.kernel import Kernel
from compiler.llvmjit import load_batch_loop, load_llvm
from compiler.signature import Signature

x, y = sp.symbols("x y")
w = sp.symbols("w0:3")


def same(a, b) -> bool:
    """Bit-level equality of floats or arrays (nan == nan, signs of zero)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=True) and \
        np.array_equal(np.signbit(a[~np.isnan(a)]), np.signbit(b[~np.isnan(b)]))


# ===================================================================================
# Signature: argument slots, packing, result layout (no SymPy, no compiled code)
# ===================================================================================

def test_signature_slots_and_packing():
    sig = Signature([None, 3, None], n_values=1, n_wrt=4, names=["x", "w", "y"])
    assert sig.layout == [(0, None), (1, 3), (4, None)] and sig.n_inputs == 5
    assert sig.width("value_and_grad") == 5 and sig.width("values") == 1
    arrays, n = sig.pack((1, [2.0, 3, 4], np.float32(5)))
    assert n is None and list(sig.flat(arrays)) == [1.0, 2.0, 3.0, 4.0, 5.0]
    W = np.arange(6.0).reshape(2, 3)
    arrays, n = sig.pack((np.array([1.0, 2.0]), W, 7.0))       # y broadcast over the batch
    assert n == 2
    assert np.array_equal(sig.gather(arrays, n), [[1, 2], [0, 3], [1, 4], [2, 5], [7, 7]])
    cols = sig.columns(arrays)
    assert [(off, stride) for _, off, stride in cols] == [(0, 1), (0, 3), (1, 3), (2, 3), (0, 0)]


@pytest.mark.parametrize("args, exc, match", [
    ((1.0, [1, 2, 3]), TypeError, r"expected 3 arguments \(x, w, y\), got 2"),
    ((1.0, [1, 2], 3.0), ValueError, "argument w must have length 3"),
    (("a", [1, 2, 3], 3.0), TypeError, "argument x must be numeric"),
    ((1.0, np.array(["a", "b", "c"]), 3.0), TypeError, "argument w must be numeric, got dtype"),
    ((np.ones(3), [1, 2, 3], np.ones(4)), ValueError, "disagree in length: 3 and 4"),
    ((np.ones((2, 2)), [1, 2, 3], 1.0), ValueError, "x must be a number or a 1-D array"),
    ((1.0, 2.0, 3.0), ValueError, r"w must be shape \(3,\) or \(n, 3\)"),
])
def test_signature_errors_name_the_argument(args, exc, match):
    sig = Signature([None, 3, None], n_values=1, n_wrt=4, names=["x", "w", "y"])
    with pytest.raises(exc, match=match):
        sig.pack(args)


def test_signature_results():
    sig = Signature([None, None], n_values=2, n_wrt=2)
    out = np.array([1.0, 2.0, 10.0, 11.0, 20.0, 21.0])            # 2 values, then J by rows
    assert np.array_equal(sig.result("values", out[:2], None), [1.0, 2.0])
    assert np.array_equal(sig.result("jacobian", out, None), [[10, 11], [20, 21]])
    batch = np.stack([out, 2 * out], axis=1)                       # (width, n=2)
    assert sig.result("jacobian", batch, 2).shape == (2, 2, 2)
    assert np.array_equal(sig.result("jacobian", batch, 2)[1], [[20, 22], [40, 42]])
    assert np.array_equal(sig.result("values", batch, 2), [[1, 2], [2, 4]])
    with pytest.raises(ValueError, match="single scalar output.*use jacobian"):
        sig.check("value_and_grad")
    one = Signature([None], n_values=1, n_wrt=1)
    b = np.array([[1.0, 3.0], [10.0, 30.0]])
    assert one.result("value_and_grad", b, 2, "mean") == (2.0, pytest.approx(np.array([20.0])))
    assert one.result("grad", b, 2, "sum")[0] == 40.0
    v, g = one.result("value_and_grad", b, 2)
    assert np.array_equal(v, [1, 3]) and g.shape == (2, 1)
    with pytest.raises(ValueError, match="reduce must be"):
        one.check("grad", "max")


def test_split_ranges():
    for n in (0, 1, 7, 100, 1001):
        for parts in (1, 2, 3, 8):
            for align in (1, 4, 8):
                ranges = parallel.split(n, parts, min_points=3, align=align)
                assert ranges[0][0] == 0 and ranges[-1][1] == max(n, 0)
                assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
                assert len(ranges) <= parts and all(lo % align == 0 for lo, _ in ranges)


class _Interrupt(BaseException):
    """Stands in for KeyboardInterrupt (a BaseException, like it)."""


def test_run_batch_waits_for_every_range_when_the_caller_is_interrupted():
    done = []

    def fn(ptrs, strides, out, ostride, lo, hi):
        if lo == 0:                       # the calling thread's range
            raise _Interrupt()
        time.sleep(0.2)
        done.append((lo, hi))
    with pytest.raises(_Interrupt):
        parallel.run_batch(fn, None, None, 0, 0, 90, n_threads=3)
    assert sorted(done) == [(30, 60), (60, 90)]   # finished before the exception went on


# ===================================================================================
# Kernels built from SSA programs (no SymPy)
# ===================================================================================

def _program():
    """f(a, w) = (a * w0 + tanh(w1), w0 - a): two outputs, a float and a 2-vector."""
    b = Builder(3)
    a, w0, w1 = b.input(0), b.input(1), b.input(2)
    f0 = b.op("add", b.op("mul", a, w0), b.op("tanh", w1))
    f1 = b.op("add", w0, b.op("mul", b.const(-1.0), a))
    return b.finish([f0, f1])


@pytest.mark.parametrize("backend", ["python", "llvm", "numba"])
def test_kernel_from_an_ssa_program(backend):
    sig = Signature([None, 2], n_values=2, n_wrt=1, names=["a", "w"])
    k = Kernel(_program(), sig, backend, lazy=True)
    call = k.entry("values")
    assert k._loaded is None                           # lazy: nothing compiled yet
    assert np.array_equal(call(2.0, np.array([3.0, 0.5])), [6.0 + math.tanh(0.5), 1.0])
    batch = call(np.array([1.0, 2.0, -1.0]), np.array([3.0, 0.5]))
    ref = [[3 + math.tanh(0.5), 2.0], [6 + math.tanh(0.5), 1.0], [-3 + math.tanh(0.5), 4.0]]
    np.testing.assert_allclose(batch, ref, rtol=1e-15)
    assert k.entry("values")(1.0, [3, 0.5]).tolist() == batch[0].tolist()
    if backend != "python":
        assert k.batch_kernel().kind == "simd"
    out = np.empty(2)
    k.point(np.array([2.0, 3.0, 0.5]), out)
    assert np.array_equal(out, [6.0 + math.tanh(0.5), 1.0])
    for inp, out in ((np.zeros(2), np.empty(2)), (np.zeros(3), np.empty(1)),
                     (np.zeros(6)[::2], np.empty(2)), ([0.0, 0.0, 0.0], np.empty(2))):
        with pytest.raises(ValueError, match="point: (inp|out) must be a C-contiguous"):
            k.point(inp, out)                          # never a write past a buffer
    with pytest.raises(ValueError, match="needs a kernel of"):
        k.entry("jacobian")
    with pytest.raises(ValueError, match="kind must be"):
        k.entry("hessian")
    with pytest.raises(ValueError, match="reads 3 inputs"):
        Kernel(_program(), Signature([None], n_values=2, n_wrt=0), backend)


def _two_inputs(op):
    b = Builder(2)
    u, v = b.input(0), b.input(1)
    return b.finish([b.op("add", b.op("mul", u, u), b.op(op, v))])


@pytest.mark.parametrize("limit", [4000, 3])
def test_build_kernels_shares_one_library_for_small_programs(monkeypatch, limit):
    """Below GROUP_MAX_STATEMENTS the kernels of one signature are one JIT library
    (one object, one cache file); above it the rest compile on first use. Either
    way each kernel computes its own program (hand-computed values)."""
    import gc

    from compiler import kernel as kmod

    monkeypatch.setattr(kmod, "GROUP_MAX_STATEMENTS", limit)
    sig = Signature([None, None], n_values=1, n_wrt=0)
    ks = kmod.build_kernels({"values": _two_inputs("sin"), "other": _two_inputs("cos")}, sig,
                            "llvm")
    together = limit >= 4000
    assert ks["values"]._loaded is not None
    assert (ks["other"]._loaded is not None) == together
    assert ks["values"].entry("values")(3.0, 0.5) == 9.0 + math.sin(0.5)
    assert ks["other"].entry("values")(-2.0, 1.0) == 4.0 + math.cos(1.0)
    assert (ks["values"].native.owner is ks["other"].native.owner) == together
    other = ks.pop("other")
    del ks
    gc.collect()            # one library: dropping one kernel keeps the other's code alive
    assert other.entry("values")(1.5, -0.25) == 2.25 + math.cos(-0.25)
    assert np.array_equal(other.entry("values")(np.array([1.5, 0.0]), 2.0),
                          [2.25 + math.cos(2.0), math.cos(2.0)])


def test_batch_loop_equals_single_points(monkeypatch):
    """The LLVM batch loop around a scalar kernel: strides 0, negative and >1, any
    range, buffers on the stack or the heap, one or several threads."""
    fn = _program()
    kernel = load_llvm(fn)
    rng = np.random.default_rng(3)
    a, W = rng.normal(size=500), rng.normal(size=(1000, 2))
    cols = [(a[::-1], 0, -1), (W, 0, 4), (W, 1, 4)]            # a reversed, every other row of W
    refs = np.empty((2, 500))
    for i in range(500):
        one = np.empty(2)
        kernel.call(np.array([a[::-1][i], W[2 * i, 0], W[2 * i, 1]]), one)
        refs[:, i] = one
    for heap in (False, True):
        if heap:
            monkeypatch.setattr(llvmbatch, "MAX_STACK_DOUBLES", 1)
            assert "@malloc" in llvmbatch.batch_loop_module("k", "b", 3, 2)
        loop = load_batch_loop(kernel.symbol, 3, 2, len(fn))
        assert loop.kind == "scalar"
        for threads in (1, 3):
            assert same(loop(cols, 500, threads=threads), refs)
        out = np.full((2, 500), 7.0)
        loop._raw(*_raw_args(cols), out.ctypes.data, 500, 100, 103)   # points 100..102 only
        assert same(out[:, 100:103], refs[:, 100:103]) and (out[:, :100] == 7).all() \
            and (out[:, 103:] == 7).all()
    bcast = load_batch_loop(kernel.symbol, 3, 2, len(fn))([(a, 5, 0), (W, 0, 2), (W, 1, 2)], 4)
    for i in range(4):                                          # a[5] broadcast: stride 0
        one = np.empty(2)
        kernel.call(np.array([a[5], W[i, 0], W[i, 1]]), one)
        assert same(bcast[:, i], one)


def _raw_args(cols):
    import ctypes

    ptrs = (ctypes.c_void_p * len(cols))(*[arr.ctypes.data + 8 * off for arr, off, _ in cols])
    strides = (ctypes.c_int64 * len(cols))(*[s for _, _, s in cols])
    return ptrs, strides


def test_batch_loop_of_a_program_without_inputs():
    b = Builder(0)
    fn = b.finish([b.const(2.5), b.op("exp", b.const(1.0))])
    kernel = load_llvm(fn)
    out = load_batch_loop(kernel.symbol, 0, 2, len(fn))([], 3)
    assert same(out, [[2.5] * 3, [math.e] * 3])


def test_no_interpreter_swap_after_calls():
    """The entry points are the same objects, and the instance holds nothing new,
    after hundreds of calls of every kind (there is no hot swap)."""
    fn = sg.compile(x * sp.exp(y), [x, y])
    before = dict(vars(fn))
    for i in range(300):
        fn(0.1 * i, 0.5), fn.value_and_grad(0.1 * i, 0.5), fn.grad(i, 0.5)
        fn.jacobian(0.1 * i, 0.5)
    fn.value_and_grad(np.ones(5), 0.5)
    after = vars(fn)
    assert set(after) == set(before)
    assert all(after[k] is v for k, v in before.items())
    assert fn.value_and_grad(1.0, 0.5) == (math.exp(0.5), pytest.approx([math.exp(0.5), math.exp(0.5)]))


# ===================================================================================
# Without the call glue (Python 3.10, debug builds): the checked path everywhere
# ===================================================================================

H = x**3 * sp.sin(y) + sp.exp(x * y / 2)


def _hessian_ref(px, py):
    e = math.exp(px * py / 2)
    return np.array([[6 * px * math.sin(py) + py * py / 4 * e,
                      3 * px * px * math.cos(py) + (1 + px * py / 2) / 2 * e],
                     [3 * px * px * math.cos(py) + (1 + px * py / 2) / 2 * e,
                      -px**3 * math.sin(py) + px * px / 4 * e]])


@pytest.mark.parametrize("backend", ["llvm", "numba"])
def test_without_glue_every_method_works(monkeypatch, backend):
    monkeypatch.setattr(pyglue, "supported", lambda: False)
    fn = sg.compile(H, [x, y], backend=backend)
    ref = sg.compile(H, [x, y], backend="python")
    for entry in (fn.value_and_grad, fn.grad, fn.jacobian, fn.__call__):
        assert isinstance(entry, types.FunctionType), entry        # the checked path itself
    pts = [(0.3, 0.7), (-1.2, 0.4), (1.5, -2.0)]
    for px, py in pts:
        v, g = fn.value_and_grad(px, py)
        rv, rg = ref.value_and_grad(px, py)
        assert type(v) is float and v == pytest.approx(rv, rel=1e-14)
        np.testing.assert_allclose(g, rg, rtol=1e-14)
        hand = [3 * px * px * math.sin(py) + py / 2 * math.exp(px * py / 2),
                px**3 * math.cos(py) + px / 2 * math.exp(px * py / 2)]
        np.testing.assert_allclose(fn.grad(px, py), hand, rtol=1e-13)
        np.testing.assert_allclose(fn.jacobian(px, py), [hand], rtol=1e-13)
        assert fn(px, py) == pytest.approx(ref(px, py), rel=1e-14)
        np.testing.assert_allclose(fn.hessian(px, py), _hessian_ref(px, py), rtol=1e-12)
    xs, ys = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    vb, gb = fn.value_and_grad(xs, ys)
    rvb, rgb = ref.value_and_grad(xs, ys)
    np.testing.assert_allclose(vb, rvb, rtol=1e-13)
    np.testing.assert_allclose(gb, rgb, rtol=1e-13)
    np.testing.assert_allclose(fn(xs, ys), rvb, rtol=1e-13)
    np.testing.assert_allclose(fn.hessian(xs, ys), [_hessian_ref(*p) for p in pts], rtol=1e-12)
    v, g = fn.value_and_grad(xs, ys, reduce="mean")
    assert v == pytest.approx(rvb.mean(), rel=1e-13)
    np.testing.assert_allclose(g, rgb.mean(axis=0), rtol=1e-13)
    with pytest.raises(TypeError, match=r"expected 2 arguments \(x, y\), got 1"):
        fn.value_and_grad(1.0)
    # several outputs and an array argument
    m = sg.compile([x * y, sp.tanh(w[0] * x + w[2])], [w, x, y], backend=backend)
    W = np.array([0.5, -1.0, 0.25])
    jac = m.jacobian(W, 0.3, 2.0)
    t = math.tanh(0.5 * 0.3 + 0.25)
    np.testing.assert_allclose(jac, [[0, 0, 0, 2.0, 0.3],
                                     [0.3 * (1 - t * t), 0, 1 - t * t, 0.5 * (1 - t * t), 0]],
                               rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(m(W, 0.3, 2.0), [0.6, t], rtol=1e-15)
    assert m.jacobian(np.tile(W, (4, 1)), np.ones(4), 2.0).shape == (4, 2, 5)


# ===================================================================================
# Big programs on llvm: no Numba; interrupts; fork (subprocesses, with timeouts)
# ===================================================================================

BIG = textwrap.dedent('''
    import json, sys, time
    import numpy as np, sympy as sp

    def big_program(n_terms=1200):
        """sum_i tanh(w_i * x + b_i): its value-and-grad program has over 10k statements."""
        x = sp.Symbol("x")
        rng = np.random.default_rng(7)
        w, b = rng.normal(size=n_terms), rng.normal(size=n_terms)
        terms = [sp.tanh(sp.Add(sp.Mul(sp.Float(wi), x, evaluate=False), sp.Float(bi),
                                evaluate=False), evaluate=False) for wi, bi in zip(w, b)]
        return sp.Add(*terms, evaluate=False), x, w, b

    def numpy_value_and_grad(xs, w, b):
        t = np.tanh(np.outer(xs, w) + b)
        return t.sum(axis=1), ((1 - t * t) * w).sum(axis=1)

    def close(a, b):
        return np.allclose(a, b, rtol=1e-11, atol=1e-11)
''')


def _run(script: str, timeout: float = 600) -> str:
    proc = subprocess.run([sys.executable, "-c", BIG + textwrap.dedent(script)],
                          capture_output=True, text=True, timeout=timeout, env=dict(os.environ))
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout.strip().splitlines()[-1]


def test_big_llvm_program_batches_without_numba():
    out = _run('''
        sys.modules["numba"] = None          # any import of numba now raises ImportError
        import symgrad as sg
        e, x, w, b = big_program()
        fn = sg.compile(e, [x])              # auto: llvm
        assert fn.backend == "llvm" and len(fn.ir) > 10_000, (fn.backend, len(fn.ir))
        xs = np.linspace(-3, 3, 5001)
        v, g = fn.value_and_grad(xs)
        rv, rg = numpy_value_and_grad(xs, w, b)
        assert close(v, rv) and close(g[:, 0], rg)
        assert fn._vg.batch_kernel().kind == "scalar"          # too big for a SIMD kernel
        assert close(fn(xs[::-2]), rv[::-2])                   # strided, reversed
        v1, g1 = fn.value_and_grad(float(xs[17]))
        assert v1 == v[17] and g1[0] == g[17, 0]               # batches: single-point bits
        assert fn.value_and_grad(xs, reduce="sum")[0] == float(np.sum(v))
        print(json.dumps([len(fn.ir), sys.modules["numba"] is None]))
    ''')
    n_statements, blocked = __import__("json").loads(out)
    assert n_statements > 10_000 and blocked


def test_interrupted_batches_leave_no_thread_writing():
    """Alarms interrupt ~40 batched calls at random moments (a big program through the
    batch loop, a small one through its SIMD kernel): every call either finishes or
    raises, no memory freed by an interrupted call is written afterwards (canaries
    allocated in its place stay zero), and later calls give the same numbers."""
    out = _run('''
        import random, signal
        import symgrad as sg
        e, x, w, b = big_program()
        big = sg.compile(e, [x], backend="llvm")
        small = sg.compile(sp.tanh(x * 0.5 + 1.0) * sp.exp(-x * x), [x], backend="llvm")
        cases = [(big, np.linspace(-3, 3, 3000)), (small, np.linspace(-3, 3, 2_000_000))]

        class Alarm(Exception):
            pass

        def ring(signum, frame):
            raise Alarm()
        signal.signal(signal.SIGALRM, ring)
        rng = random.Random(11)
        interrupted, finished = 0, 0
        for fn, xs in cases:
            ref_v, ref_g = fn.value_and_grad(xs)
            t0 = time.perf_counter()
            fn.value_and_grad(xs)
            took = time.perf_counter() - t0
            for i in range(20):
                try:
                    signal.setitimer(signal.ITIMER_REAL, rng.uniform(0.05, 0.9) * took)
                    try:
                        if i % 2:
                            fn(xs)
                        else:
                            fn.value_and_grad(xs)
                        finished += 1
                    finally:
                        signal.setitimer(signal.ITIMER_REAL, 0)
                except Alarm:
                    interrupted += 1
                canaries = [np.zeros((2, len(xs))) for _ in range(3)] + [np.zeros(len(xs))]
                time.sleep(took)                 # time for any straggler to write
                assert not any(c.any() for c in canaries), "a thread wrote into freed memory"
            v, g = fn.value_and_grad(xs)
            assert np.array_equal(v, ref_v) and np.array_equal(g, ref_g)
        print(json.dumps([interrupted, finished]))
    ''')
    interrupted, finished = __import__("json").loads(out)
    assert interrupted + finished == 40 and interrupted >= 10


def test_forked_pool_runs_batches_of_a_big_program():
    out = _run('''
        import multiprocessing as mp
        import symgrad as sg
        e, x, w, b = big_program()
        fn = sg.compile(e, [x], backend="llvm")
        xs = np.linspace(-3, 3, 4000)
        v0, g0 = fn.value_and_grad(xs)           # the parent's pool threads are running

        def work(seed):
            pts = np.random.default_rng(seed).uniform(-3, 3, 3000)
            v, g = fn.value_and_grad(pts)
            rv, rg = numpy_value_and_grad(pts, w, b)
            return bool(close(v, rv) and close(g[:, 0], rg)), float(fn(pts)[5] - rv[5])

        if __name__ == "__main__":
            with mp.get_context("fork").Pool(2) as pool:
                results = pool.map(work, range(4), chunksize=1)
            v1, _ = fn.value_and_grad(xs)            # and the parent still batches
            assert np.array_equal(v0, v1)
            print(json.dumps(results))
    ''', timeout=600)
    results = __import__("json").loads(out)
    assert len(results) == 4
    assert all(ok and abs(d) < 1e-10 for ok, d in results), results


MAINSTREAM = sys.implementation.name == "cpython" and sys.version_info >= (3, 11) \
    and sys.maxsize == 2**63 - 1 and not hasattr(sys, "gettotalrefcount") \
    and not sysconfig.get_config_var("Py_GIL_DISABLED")


def test_the_glue_is_active_on_mainstream_cpython():
    """Not a skip: on a regular 64-bit CPython 3.11+ the fast path must be on."""
    if not MAINSTREAM:
        pytest.skip("the glue is documented as off here (Python 3.10, debug or free-threaded)")
    assert pyglue.supported()
    fn = sg.compile(sp.tanh(x) * y, [x, y])
    assert type(fn.value_and_grad).__name__ == "builtin_function_or_method"
