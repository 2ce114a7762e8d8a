"""The single-point call glue (compiler/pyglue.py): builtin functions written
in LLVM IR that read float / float64-vector arguments straight from the
objects and build the results with the C API.

What must hold: the fast path gives the bits of the checked Python path
(which runs the same kernel through ctypes); every argument it does not take
reaches the checked path, with its conversions and error messages; results
are fresh, well-formed objects; nothing leaks a reference or a block; calls
from several threads are independent.
"""

from __future__ import annotations

import inspect
import math
import pickle
import sys
import threading

import numpy as np
import pytest
import sympy as sp

import symgrad as sg
from compiler import pyglue
from compiler.llvmjit import load_llvm

pytestmark = pytest.mark.skipif(not pyglue.supported(),
                                reason="this interpreter's object layouts do not allow the glue")

x, y = sp.symbols("x y")
w = sp.symbols("w0:3")
NAN, INF = float("nan"), float("inf")
EDGE = [0.0, -0.0, 0.5, -1.5, 3.0, 1e-310, -1e300, NAN, INF, -INF]


def checked(f, kind):
    """The checked path of a compiled function's ``kind`` calls (what the glue falls back to)."""
    return (f._fw if kind == "values" else f._vg).checked(kind)


def same(a, b) -> bool:
    """Bit-level equality of floats or arrays (nan == nan, signs of zero)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=True) and \
        np.array_equal(np.signbit(a[~np.isnan(a)]), np.signbit(b[~np.isnan(b)]))


@pytest.fixture(scope="module")
def fn():
    return sg.compile(x * sp.tanh(y) + sg.relu(x - y) + sp.exp(-x**2) / (1 + y**2), [x, y])


@pytest.fixture(scope="module")
def gn():
    return sg.compile(sp.tanh(w[0] * x + w[1] * y + w[2]) + w[0]**2 * w[2], [w, x, y], wrt=[w])


def test_glue_is_used(fn, gn):
    """Every entry point is a glue builtin from the start, and stays the same object."""
    z = sp.Symbol("z")
    fresh = sg.compile(sp.cosh(z) * z, [z])
    entries = (fresh.value_and_grad, fresh.grad, fresh.jacobian, fresh.__call__)
    assert all(type(e).__name__ == "builtin_function_or_method" for e in entries)
    # a small formula's two kernels are one JIT library (compiler.kernel.build_kernels)
    assert fresh._fw._loaded is not None and fresh._fw.native.owner is fresh._vg.native.owner
    assert fresh(0.5) == pytest.approx(math.cosh(0.5) * 0.5, rel=1e-15)
    fresh.value_and_grad(0.5), fresh.grad(0.5), fresh.jacobian(np.ones(3))
    assert (fresh.value_and_grad, fresh.grad, fresh.jacobian, fresh.__call__) == entries
    assert all(a is b for a, b in zip(entries, (fresh.value_and_grad, fresh.grad,
                                                  fresh.jacobian, fresh.__call__)))
    for f in (fn, gn):
        assert f.backend == "llvm"
        assert type(f.value_and_grad).__name__ == "builtin_function_or_method"
        assert type(f.grad).__name__ == "builtin_function_or_method"
        assert type(f.__call__).__name__ == "builtin_function_or_method"


@pytest.mark.parametrize("px", EDGE)
@pytest.mark.parametrize("py", EDGE)
def test_fast_path_equals_checked_path(fn, px, py):
    v, g = fn.value_and_grad(px, py)
    v_ref, g_ref = checked(fn, "value_and_grad")(px, py)
    assert type(v) is float and same(v, v_ref) and same(g, g_ref)
    assert same(fn.grad(px, py), g_ref)
    assert same(fn(px, py), checked(fn, "values")(px, py))
    # and the numbers are the kernel's: the python back end agrees to 1e-12
    if math.isfinite(v_ref) and abs(v_ref) < 1e200:
        ref = sg.compile(fn.exprs[0], [x, y], backend="python").value_and_grad(px, py)
        assert v == pytest.approx(ref[0], rel=1e-12, abs=1e-300)


def test_array_argument_fast_path(gn):
    rng = np.random.default_rng(5)
    for _ in range(50):
        W = rng.normal(size=3)
        px, py = rng.normal(size=2)
        v, g = gn.value_and_grad(W, float(px), float(py))
        v_ref, g_ref = checked(gn, "value_and_grad")(W, float(px), float(py))
        assert same(v, v_ref) and same(g, g_ref)
        # strided and reversed views are read in place, with their strides
        big = np.empty(9)
        big[::3] = W
        assert same(gn.value_and_grad(big[::3], px, py)[1], g_ref)
        rev = W[::-1].copy()[::-1]
        assert same(gn.value_and_grad(rev, px, py)[1], g_ref)
        assert same(gn(W, float(px), float(py)), v_ref)


def test_arguments_the_fast_path_does_not_take(fn, gn):
    ref_v, ref_g = checked(fn, "value_and_grad")(1.0, 2.0)

    class MyFloat(float):
        pass

    for args in ((1, 2), (True, 2.0), (np.float32(1.0), 2.0), (np.int64(1), 2.0),
                 (MyFloat(1.0), 2.0), (np.array(1.0), 2.0), (1.0, np.float64(2.0))):
        v, g = fn.value_and_grad(*args)
        assert same(v, ref_v) and same(g, ref_g), args
        assert same(fn(*args), ref_v)
    W = [0.1, -0.2, 0.3]
    ref = checked(gn, "value_and_grad")(np.array(W), 0.5, 0.25)
    for arr in (W, tuple(W), np.array(W, dtype=np.float32).astype(np.float64),
                np.array(W).astype(">f8"), np.array([1, 2, 3])):
        expect = checked(gn, "value_and_grad")(np.asarray(arr, dtype=float), 0.5, 0.25)
        v, g = gn.value_and_grad(arr, 0.5, 0.25)
        assert same(v, expect[0]) and same(g, expect[1])
    assert same(gn.value_and_grad(np.array(W, dtype=">f8"), 0.5, 0.25)[1], ref[1])
    # batches and keywords go to the checked path
    vs, gs = fn.value_and_grad(np.array([1.0, 1.0]), 2.0)
    assert vs.shape == (2,) and gs.shape == (2, 2)
    v, g = fn.value_and_grad(1.0, 2.0, reduce="sum")
    assert same(v, ref_v) and same(g, ref_g)


@pytest.mark.parametrize("call, exc, match", [
    (lambda f, g: f.value_and_grad(1.0), TypeError, r"expected 2 arguments \(x, y\), got 1"),
    (lambda f, g: f.value_and_grad(1.0, 2.0, 3.0), TypeError, "expected 2 arguments"),
    (lambda f, g: f.value_and_grad(), TypeError, "expected 2 arguments"),
    (lambda f, g: f.value_and_grad(1.0, "a"), TypeError, "argument y must be numeric"),
    (lambda f, g: f.value_and_grad(1.0, None), TypeError, "argument y must be numeric"),
    (lambda f, g: f.grad(1.0, 2.0, reduce="max"), ValueError, "reduce must be"),
    (lambda f, g: f.value_and_grad(1.0, 2.0, bogus=1), TypeError, "bogus"),
    (lambda f, g: f(1.0), TypeError, "expected 2 arguments"),
    (lambda f, g: g.value_and_grad(np.ones(2), 1.0, 2.0), ValueError, "length 3"),
    (lambda f, g: g.value_and_grad(np.ones((2, 2)), 1.0, 2.0), ValueError, "length 3"),
    (lambda f, g: g.value_and_grad(1.0, 1.0, 2.0), ValueError, r"shape \(3,\)"),
    (lambda f, g: g.grad(np.array(["a", "b", "c"]), 1.0, 2.0), TypeError, "numeric"),
])
def test_bad_calls_raise_the_checked_paths_errors(fn, gn, call, exc, match):
    with pytest.raises(exc, match=match):
        call(fn, gn)


def test_results_are_fresh_well_formed_objects(fn, gn):
    v, g = fn.value_and_grad(0.3, 0.4)
    assert type(v) is float
    assert type(g) is np.ndarray and g.dtype == np.float64 and g.shape == (2,)
    assert g.flags.c_contiguous and g.flags.writeable and g.flags.owndata and g.base is None
    g_copy = g.copy()
    g2 = fn.grad(-1.0, 2.0)
    assert not np.shares_memory(g, g2) and same(g, g_copy)   # no aliasing between calls
    g[:] = 0.0                                               # results belong to the caller
    assert same(fn.value_and_grad(0.3, 0.4)[1], g_copy)
    mo = sg.compile([x * y, x + y, sp.sin(x)], [x, y])
    out = mo(0.5, 2.0)
    assert type(out) is np.ndarray and out.shape == (3,)
    assert same(out, [1.0, 2.5, math.sin(0.5)])
    assert type(gn(np.ones(3), 1.0, 2.0)) is float


def test_no_reference_or_memory_leaks(fn, gn):
    a, b, W = 0.75, -0.5, np.array([0.1, 0.2, 0.3])
    refs = [sys.getrefcount(o) for o in (a, b, W)]
    r = fn.value_and_grad(a, b)
    assert sys.getrefcount(r) == 2                       # the name r, getrefcount's argument
    v, g = r
    del r                                                # the tuple goes, its items remain
    assert sys.getrefcount(g) == 2 and sys.getrefcount(v) == 2
    for _ in range(3):                                   # warm up allocator pools
        for _ in range(2000):
            fn.value_and_grad(a, b)
    blocks = sys.getallocatedblocks()
    for _ in range(20_000):
        fn.value_and_grad(a, b)
        fn.grad(a, b)
        fn(a, b)
        gn.value_and_grad(W, a, b)
        fn.value_and_grad(1, b)                          # the fallback path too
    assert sys.getallocatedblocks() - blocks < 200
    assert [sys.getrefcount(o) for o in (a, b, W)] == refs


def test_threads_get_their_own_results(fn):
    points = np.random.default_rng(1).normal(size=(4, 500, 2))
    expected = [[checked(fn, "value_and_grad")(float(p), float(q)) for p, q in pts] for pts in points]
    errors = []

    def work(k):
        for (p, q), (v_ref, g_ref) in zip(points[k], expected[k]):
            v, g = fn.value_and_grad(float(p), float(q))
            if not (same(v, v_ref) and same(g, g_ref)):
                errors.append((k, p, q))
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_introspection_and_pickling(fn):
    assert fn.value_and_grad.__name__ == "value_and_grad"
    assert "one fused kernel" in fn.value_and_grad.__doc__
    assert str(inspect.signature(fn.value_and_grad)) == "(*args, reduce=None)"
    assert "symgrad_native" in repr(fn.value_and_grad)
    clone = pickle.loads(pickle.dumps(fn))
    assert type(clone.value_and_grad).__name__ == "builtin_function_or_method"
    assert same(clone.value_and_grad(0.3, 0.4)[1], fn.value_and_grad(0.3, 0.4)[1])


def test_without_the_glue_llvm_calls_give_the_same_bits(fn, monkeypatch):
    monkeypatch.setitem(pyglue._STATE, "ok", False)
    plain = sg.compile(fn.exprs[0], [x, y], backend="llvm")
    assert type(plain.value_and_grad).__name__ == "function"
    for px, py in ((0.5, 0.25), (-2.0, 3.0), (NAN, 1.0)):
        a, b = plain.value_and_grad(px, py), fn.value_and_grad(px, py)
        assert same(a[0], b[0]) and same(a[1], b[1])
        assert same(plain(px, py), fn(px, py))


def test_glue_source_is_built_from_positions_only():
    from compiler.pyglue import glue_module

    ir = glue_module([(0, None), (1, 3)], 4, [("k_py", 4, "tuple", 1), ("k_rest", 4, "rest", 1)])
    assert ir.count("call void %kernel(ptr %in, ptr %out)") == 2    # through the cell, by address
    with pytest.raises(ValueError, match="identifier"):
        glue_module([(0, None)], 1, [("k; drop", 1, "scalar", 1)])
    with pytest.raises(ValueError, match="result"):
        glue_module([(0, None)], 1, [("k_py", 1, "dict", 1)])
    with pytest.raises(ValueError, match="distinct"):
        glue_module([(0, None)], 1, [("k_py", 1, "scalar", 1), ("k_py", 1, "array", 1)])
    evil = sp.Symbol("x); import os; os.system('touch pwned'); (")
    f = sg.compile(evil * 2.0, [evil])
    assert f.value_and_grad(1.5) == (3.0, pytest.approx(np.array([2.0])))
    assert "pwned" not in f.llvm_ir


def test_forward_kernel_is_compiled_lazily(monkeypatch):
    """Above GROUP_MAX_STATEMENTS the forward kernel is compiled on first use: its
    glue exists before it, calls go to the checked path (which compiles the kernel
    and fills the glue's cell), then straight in."""
    from compiler import kernel

    monkeypatch.setattr(kernel, "GROUP_MAX_STATEMENTS", 1)
    z = sp.Symbol("z")
    f = sg.compile(sp.sinh(z) * 3.0, [z])
    entry = f.__call__
    assert type(entry).__name__ == "builtin_function_or_method"
    assert f._fw._loaded is None and f._fw._cell[0] == 0          # not built yet
    assert f(0.5) == pytest.approx(3.0 * math.sinh(0.5), rel=1e-15)
    assert f._fw._loaded is not None and f._fw._cell[0] == f._fw.native.address
    assert f.__call__ is entry
    out = np.empty(1)
    load_llvm(f.ir_forward).call(np.array([0.5]), out)
    assert same(f(0.5), out[0])


def test_big_buffers_go_to_the_heap(gn, monkeypatch):
    """Argument/result buffers above _MAX_STACK_DOUBLES are malloc'ed (and freed on
    every return path, the fallback included)."""
    monkeypatch.setattr(pyglue, "_MAX_STACK_DOUBLES", 2)
    ir = pyglue.glue_module([(0, 3), (3, None)], 4, [("k_py", 4, "tuple", 1)])
    assert "call ptr @malloc" in ir and ir.count("call void @free") == 3   # 2 returns + fallback
    heap = sg.compile(gn.exprs[0], [w, x, y], wrt=[w], backend="llvm")
    W = np.array([0.3, -0.1, 0.7])
    for args in ((W, 0.5, 0.25), (W[::-1].copy(), -1.0, 2.0)):
        a, b = heap.value_and_grad(*args), gn.value_and_grad(*args)
        assert same(a[0], b[0]) and same(a[1], b[1])
        assert same(heap(*args), gn(*args))
    assert same(heap.value_and_grad([0.3, -0.1, 0.7], 0.5, 0.25)[1],
                gn.value_and_grad(W, 0.5, 0.25)[1])             # slow path frees too
    with pytest.raises(ValueError, match="length 3"):
        heap.value_and_grad(np.ones(4), 0.5, 0.25)


def test_plain_calls_reach_the_entry_point_directly(fn):
    """``fn(x, y)`` resolves ``__call__`` to the entry point itself (a property):
    the glue's builtin once built, with no Python frame in between."""
    fn(0.5, 0.25)
    assert fn.__call__ is fn._call
    assert type(fn.__call__).__name__ == "builtin_function_or_method"
    assert callable(fn) and same(fn(0.5, 0.25), checked(fn, "values")(0.5, 0.25))
    assert "Value(s) of the expression(s)" in type(fn).__call__.__doc__


def test_jacobian_and_hessian_glue():
    """Single-point Jacobians (and so Hessians) come back as (m, k) arrays from the
    glue, with the bits of the checked path; batches still go through it."""
    m = sg.compile([x * y, sp.sin(x) * y, x + y**2], [x, y])
    for px, py in ((1.0, 2.0), (-0.5, 0.25), (NAN, 1.0), (-0.0, INF)):
        j = m.jacobian(px, py)
        assert type(j) is np.ndarray and j.shape == (3, 2) and j.flags.c_contiguous
        assert same(j, checked(m, "jacobian")(px, py))
    assert type(m.jacobian).__name__ == "builtin_function_or_method"
    np.testing.assert_allclose(m.jacobian(1.0, 2.0),
                               [[2.0, 1.0], [2 * math.cos(1.0), math.sin(1.0)], [1.0, 4.0]],
                               rtol=1e-15)
    assert m.jacobian(np.ones(4), 2.0).shape == (4, 3, 2)
    assert same(m.jacobian(1, 2), checked(m, "jacobian")(1.0, 2.0))
    f = sg.compile(x**3 * sp.sin(y), [x, y])
    h = f.hessian(0.3, 0.7)
    ref = [[6 * 0.3 * math.sin(0.7), 3 * 0.09 * math.cos(0.7)],
           [3 * 0.09 * math.cos(0.7), -0.027 * math.sin(0.7)]]
    np.testing.assert_allclose(h, ref, rtol=1e-14)
    assert same(h, checked(f._hessian_fn, "jacobian")(0.3, 0.7))
    with pytest.raises(ValueError, match="Jacobian"):
        pyglue.glue_module([(0, None)], 1, [("k_py", 5, "jacobian", 2)])
