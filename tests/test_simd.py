"""SIMD batch kernels (:mod:`compiler.llvmsimd`, ``BatchKernel``) against single-point calls.

A batched call of a compiled function (``fn.value_and_grad(xs, ys)`` with
arrays) no longer loops over points with the scalar kernel: both native back
ends run one SIMD kernel in which every SSA value is an ``<L x double>``
(L = 8 with AVX-512, 4 with AVX2). The kernel reads the caller's arrays in
place through (pointer, offset, stride) columns, pads the last partial group
by repeating the last point, and splits big batches over threads. What this
file pins down, against the single-point kernels (libm, one point at a time):

1. Exact IEEE ops (+ - * /, the exact powers x**2, sqrt and 1/x, relu, Abs,
   Max/Min, sign, Heaviside, floor/ceiling, Piecewise and its logic) are
   bit-identical to single-point calls: values,
   gradients, nan positions and signs of zero, on an edge grid (signed zeros,
   infinities, nan, subnormals, +-1e300), random points and random bit
   patterns, for every batch length 1..17 and big threaded batches.
2. The libmvec ops (exp, log, tanh, sin, cos, expm1, log1p) agree with libm
   to 4 ulp in their value (glibc's bound), sigmoid and softplus (two
   roundings on top of exp) to 6 and 8 ulp; nan/inf positions and signed
   zeros are identical; gradients agree to a small tolerance. ``x**y`` goes
   through libmvec's pow (4 ulp) except its exact cases (0**y, x**0.5,
   x**-1; a constant x**2 is x*x). With libm forced (``SimdMath(lanes, {})``)
   everything is bit-identical.
3. Lanes are independent: the tail of a batch (n not a multiple of L) gives
   the same bits as a full group, results do not depend on a point's
   position in the batch, and the padded lanes of the last group never read
   past the caller's array (checked against guard pages in a child process).
4. Every input layout NumPy can hand over (negative strides, columns of 2-D
   arrays, Fortran order, stride-0 broadcasts, integer/float32/byte-swapped
   arrays, misaligned buffers, scalars mixed with arrays) gives the same bits
   as contiguous float64 copies, and the inputs are never written.
5. Output shapes and dtypes, ``reduce=``, the forward-only kernel, batched
   Jacobians of multi-output functions and batched Hessians.
6. Thread splitting (and concurrent callers) never changes a bit.
7. Programs above ``VEC_MAX_STATEMENTS`` fall back to the scalar kernels.

Most checks run three ways (fixture ``math_mode``): with this machine's
kernels, with libm forced, and, on an AVX-512 machine, with the 4-lane AVX2
libmvec kernels, so both vector widths are exercised on one machine.

Numbers are compared exactly wherever the design promises exactness: a
batch that silently differs from the single-point function would make
results depend on how a user happens to call it.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p

import symgrad as sg
from compiler import host
from compiler import llvmjit, llvmsimd, runtime
from compiler.ir import Builder
from compiler import ops as primitives
from compiler.llvmscalar import supported_ops
from compiler.llvmjit import load_llvm
from compiler.emitter import SimdMath
from symgrad.testing import wide_sum

NATIVE = ("llvm", "numba")
NAN, INF = float("nan"), float("inf")
LANES = llvmjit.simd_math().lanes
LIBMVEC_OPS = frozenset({"exp", "log", "tanh", "sin", "cos", "expm1", "log1p", "sigmoid", "softplus",
                         "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh", "erf"})
EXACT_EXPONENTS = (2.0, 0.5, -1.0)   # pow computed as x*x, sqrt(x), 1/x: exact in batches too

x, y, z = sp.symbols("x y z")
w = sp.symbols("w0:3")

# edge values: signed zeros, infinities, nan, subnormals (min and a larger one), huge, +-1, +-0.5
EDGE = np.array([0.0, -0.0, INF, -INF, NAN, 5e-324, -5e-324, 1e-310, -1e-310,
                 1e300, -1e300, 1.0, -1.0, 0.5, -0.5, 2.0, -3.0])


# -----------------------------------------------------------------------------------
# helpers (copied in spirit from test_backends: bit-level and tolerance comparisons)
# -----------------------------------------------------------------------------------

def assert_same(a, b, what=""):
    """Bit-level agreement: same numbers, nan where nan, same sign of every zero."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape, f"{what}: shapes {a.shape} != {b.shape}"
    eq = (a == b) | (np.isnan(a) & np.isnan(b))
    if not eq.all():
        bad = np.argwhere(~eq)[:5]
        raise AssertionError(f"{what}: {int((~eq).sum())} entries differ, first at "
                             f"{bad.tolist()}: {a[tuple(bad.T)]} vs {b[tuple(bad.T)]}")
    zero = (a == 0)
    assert np.array_equal(np.signbit(a[zero]), np.signbit(b[zero])), f"{what}: signed zeros"


def assert_close(a, b, what="", rtol=1e-12, atol=0.0):
    """Agreement to ``rtol``/``atol``, nan and +-inf in the same places."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape, what
    fa, fb = np.isfinite(a), np.isfinite(b)
    assert np.array_equal(fa, fb) and np.array_equal(a[~fa], b[~fb], equal_nan=True), \
        f"{what}: non-finite entries differ\n{a[~(fa & fb)]}\n{b[~(fa & fb)]}"
    np.testing.assert_allclose(a[fa], b[fb], rtol=rtol, atol=atol, err_msg=what)


def assert_batch(batch, single, what=""):
    """A batched result against per-point calls: bit for bit when batches use
    libm; with libmvec (each function within 4 ulp) to rtol 1e-13 and an
    absolute 1e-14 of the largest finite magnitude (sums that cancel keep the
    absolute error of their terms)."""
    if llvmjit.simd_math().table:
        ref = np.asarray(single, dtype=float)
        scale = max(1.0, float(np.max(np.abs(ref[np.isfinite(ref)]), initial=0.0)))
        assert_close(batch, single, what, rtol=1e-13, atol=1e-14 * scale)
    else:
        assert_same(batch, single, what)


def assert_ulp(a, b, ulps, what=""):
    """Same nan/inf positions, identical (signed) zeros, finite values within
    ``ulps`` units in the last place of ``b``."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape, what
    assert np.array_equal(np.isnan(a), np.isnan(b)), f"{what}: nan positions\n{a}\n{b}"
    inf = np.isinf(a) | np.isinf(b)
    assert np.array_equal(a[inf], b[inf]), f"{what}: infinities {a[inf]} vs {b[inf]}"
    zero = (a == 0) | (b == 0)
    assert np.array_equal(a[zero], b[zero]) and \
        np.array_equal(np.signbit(a[zero]), np.signbit(b[zero])), \
        f"{what}: zeros {a[zero]} vs {b[zero]}"
    fin = np.isfinite(a) & np.isfinite(b)
    err = np.abs(a[fin] - b[fin]) / np.spacing(np.abs(b[fin]))
    assert err.size == 0 or err.max() <= ulps, \
        f"{what}: {err.max()} ulp at {b[fin][np.argmax(err)]!r} ({a[fin][np.argmax(err)]!r})"


def assert_grad_close(a, b, what=""):
    """Gradients built from libmvec values: nan/inf in the same places, signs of
    zeros that are zero on both sides, and rtol 1e-13 with an absolute 1e-15
    (``1 - tanh(x)**2`` near x = 19 is 0 or 2**-52 depending on the last bit
    of tanh)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape, what
    assert np.array_equal(np.isnan(a), np.isnan(b)), f"{what}: nan positions"
    inf = np.isinf(a) | np.isinf(b)
    assert np.array_equal(a[inf], b[inf]), f"{what}: infinities"
    both0 = (a == 0) & (b == 0)
    assert np.array_equal(np.signbit(a[both0]), np.signbit(b[both0])), f"{what}: signed zeros"
    fin = np.isfinite(a)
    np.testing.assert_allclose(a[fin], b[fin], rtol=1e-13, atol=1e-15, err_msg=what)


_COMPILED: list = []   # every function compiled here: the libm fixture resets their SIMD kernels


def _compile(expr, args, **kw):
    fn = sg.compile(expr, args, **kw)
    _COMPILED.append(fn)
    return fn


def _forget_batch_kernels(fn):
    """Let ``fn`` load its batch kernels again on its next batch (after a change of
    the SIMD math or of the statement limit)."""
    for kernel in (fn._vg, fn._fw):
        kernel._batch_kernel = None


def _forget_simd():
    for fn in _COMPILED:
        _forget_batch_kernels(fn)


def _math_mode(request):
    """Batches with this machine's SIMD math ("machine"), with libm lane by lane
    ("libm": every batched number equals the single-point call bit for bit), or
    with the 4-lane AVX2 libmvec kernels on a machine whose own kernels are
    8-lane AVX-512 ("avx2"). The saved state is restored, and the SIMD kernels
    reloaded, afterwards."""
    saved = llvmjit.simd_math()
    if request.param == "avx2" and (saved.lanes == 4 or not llvmjit.vector_math()):
        pytest.skip("this machine's batches already are 4-lane AVX2 (or have no libmvec)")
    try:
        if request.param == "libm":
            host.set_simd_math(SimdMath(saved.lanes, {}))
        elif request.param == "avx2":
            host.set_simd_math(SimdMath(4, dict(llvmjit.vector_math())))
        _forget_simd()
        yield request.param
    finally:
        host.set_simd_math(saved)
        _forget_simd()


math_mode = pytest.fixture(params=["machine", "libm", "avx2"], name="math_mode")(_math_mode)
math_mode2 = pytest.fixture(params=["machine", "libm"], name="math_mode2")(_math_mode)


def _lanes() -> int:
    """The lanes of the kernels batches load now (math_mode may change them)."""
    return llvmjit.simd_math().lanes


def _per_point(fn, *cols):
    """``(values (n,), grads (n, k))`` from single-point calls (float arguments;
    array arguments as rows)."""
    n = max(len(c) for c in cols if np.ndim(c) > 0)
    vs, gs = [], []
    for i in range(n):
        args = []
        for c in cols:
            c = np.asarray(c, dtype=float)
            if c.ndim == 0:
                args.append(float(c))
            elif c.ndim == 1:
                args.append(float(c[i]))
            else:
                args.append(c[i].copy())
        v, g = fn.value_and_grad(*args)
        vs.append(v)
        gs.append(np.array(g, dtype=float))
    return np.array(vs), np.array(gs).reshape(n, -1)


def _scalar_kernel_batch(fn, *cols):
    """All outputs of the value-and-grad program from the scalar llvm kernel
    (libm, one point at a time: the single-point bits), ``(width, n)``."""
    inp = np.ascontiguousarray(np.stack(cols))
    out = np.empty((len(fn.ir.outputs), inp.shape[1]))
    fn.native.call_batch(inp, out)
    return out


def _random_points(rng, n, scale_exp=(-3, 4)):
    p = rng.normal(size=n) * 10.0 ** rng.integers(*scale_exp, size=n)
    p[::7] = np.round(p[::7])       # integers: floor/ceil/pow/Piecewise boundaries
    return p


# ===================================================================================
# 1. Exact ops: bit-identical to single-point calls
# ===================================================================================

# Only exact IEEE ops and the exact powers (x**2, sqrt, 1/x) in the values AND
# the gradients: sqrt(z) is only differentiated w.r.t. x (sqrt' is a general
# power, a libmvec op).
EXACT = (x * y - x / y + x**2 - y * sp.Abs(y) + sg.relu(x - y) + sp.Abs(x) * sp.Max(x, y)
         - sp.Min(x, 2 * y) + sp.sign(y) * x + sp.Heaviside(x - y) + sp.floor(x * z)
         - sp.ceiling(y) + sp.Piecewise((x * y, (x > y) & (z > 0)), (x + y, (y < z) | ~(x < 0)), (z, True))
         + sp.Max(y, z) * x + sp.sqrt(z) * x)


@pytest.fixture(scope="module")
def exact_fns():
    return {b: _compile(EXACT, [x, y, z], wrt=[x, y], backend=b) for b in NATIVE}


@pytest.fixture(scope="module")
def exact_pool():
    """(3, N) points: the edge grid in (x, y) with z cycling through the edges,
    then random points of mixed magnitudes."""
    gx, gy = (a.ravel() for a in np.meshgrid(EDGE, EDGE, indexing="ij"))
    gz = EDGE[(np.arange(gx.size) * 5) % EDGE.size]
    rng = np.random.default_rng(1)
    r = np.stack([_random_points(rng, 400) for _ in range(3)])
    return np.concatenate([np.stack([gx, gy, gz]), r], axis=1)


@pytest.fixture(scope="module")
def exact_refs(exact_fns, exact_pool):
    return {b: _per_point(exact_fns[b], *exact_pool) for b in NATIVE}


def test_exact_formula_uses_no_libmvec_op(exact_fns):
    instrs = exact_fns["llvm"].ir.instrs
    ops = {ins.op for ins in instrs}
    assert not ops & LIBMVEC_OPS, ops & LIBMVEC_OPS
    exponents = {instrs[ins.args[1]].args[0] if instrs[ins.args[1]].op == "const" else None
                 for ins in instrs if ins.op == "pow"}
    assert exponents and exponents <= set(EXACT_EXPONENTS), exponents
    assert {"relu", "abs_", "max2", "min2", "sign", "heaviside", "floor", "ceil", "piecewise",
            "pow", "mul", "add", "and_", "or_", "lt", "gt", "ge"} <= ops


@pytest.mark.parametrize("backend", NATIVE)
def test_exact_ops_bit_identical(exact_fns, exact_pool, exact_refs, backend, math_mode):
    fn = exact_fns[backend]
    ref_v, ref_g = exact_refs[backend]
    N = exact_pool.shape[1]
    rng = np.random.default_rng(2)
    # every point in one batch, then every tail length, then big (threaded) batches
    lengths = [N, *range(1, 18), 1000, 20_011]
    for n in lengths:
        if n == N:
            idx = np.arange(N)
        elif n < N:
            idx = (np.arange(n) + 37 * n) % N
        else:
            idx = rng.integers(0, N, n)
        cols = exact_pool[:, idx]
        v, g = fn.value_and_grad(*cols)
        assert v.shape == (n,) and g.shape == (n, 2)
        assert_same(v, ref_v[idx], f"{backend} n={n} values")
        assert_same(g, ref_g[idx], f"{backend} n={n} grads")
        assert_same(fn(*cols), ref_v[idx], f"{backend} n={n} forward")


def test_exact_edge_grid_every_start_offset(exact_fns, exact_pool, exact_refs):
    """Each edge point in every lane position: batches of L+3 sliding over the grid."""
    fn = exact_fns["llvm"]
    ref_v, ref_g = exact_refs["llvm"]
    n = LANES + 3
    for start in range(0, EDGE.size**2 - n, 3):
        idx = np.arange(start, start + n)
        v, g = fn.value_and_grad(*exact_pool[:, idx])
        assert_same(v, ref_v[idx], f"start={start}")
        assert_same(g, ref_g[idx], f"start={start}")


def test_exact_ops_bulk_against_scalar_kernel(exact_fns, math_mode):
    """200k random points (mixed magnitudes, edge values sprinkled in, random bit
    patterns): the SIMD batch equals the scalar kernel bit for bit."""
    fn = exact_fns["llvm"]
    rng = np.random.default_rng(11)
    n = 200_000
    cols = [_random_points(rng, n, (-6, 7)) for _ in range(3)]
    for c in cols:
        c[rng.choice(n, 2000, replace=False)] = rng.choice(EDGE, 2000)
        c[rng.choice(n, 2000, replace=False)] = np.frombuffer(rng.bytes(16_000), dtype=np.float64)
    ref = _scalar_kernel_batch(fn, *cols)
    v, g = fn.value_and_grad(*cols)
    assert_same(v, ref[0], "values")
    assert_same(g, ref[1:].T, "grads")


def _every_op_ir():
    """One SSA function applying every op the llvm back end has to inputs a, b, c
    (each arity the runtime function takes), with constant operands in several
    positions (``x**2`` and ``-1*x`` have their own widened templates)."""
    bld = Builder(3)
    a, b, c = bld.input(0), bld.input(1), bld.input(2)
    k2, k05, km1, k0 = bld.const(2.0), bld.const(0.5), bld.const(-1.0), bld.const(0.0)
    outs = []
    for name in sorted(primitives.BUILTINS):
        params = inspect.signature(runtime.lookup(name)).parameters.values()
        if any(p.kind is p.VAR_POSITIONAL for p in params):
            if name == "piecewise":
                outs += [bld.op(name, a, b, c, bld.const(1.0)), bld.op(name, a, b),
                         bld.op(name, k05, a, b, c, k2, k0)]
            else:
                outs += [bld.op(name, a, b, c), bld.op(name, c, a), bld.op(name, b),
                         bld.op(name, a, k05)]
        elif len(params) == 1:
            outs.append(bld.op(name, a))
        else:
            outs += [bld.op(name, a, b), bld.op(name, b, a), bld.op(name, a, k05),
                     bld.op(name, k05, b)]
    outs += [bld.op("pow", a, k2), bld.op("mul", km1, b), bld.op("pow", c, bld.const(-1.0)),
             bld.op("pow", b, k05), bld.op("heaviside", a, c)]
    return bld.finish(outs)


def test_every_ir_op_vector_against_scalar_kernel(math_mode):
    """Every op template, at the IR level: the SIMD kernel against the scalar
    kernel on the edge grid and random points; bit for bit except the ops
    that call libmvec (within their ulp bounds)."""
    fn = _every_op_ir()
    assert {ins.op for ins in fn.instrs} - {"input", "const"} == set(primitives.BUILTINS)
    scalar, vector = load_llvm(fn), llvmjit.load_vector(fn)
    ga, gb = (v.ravel() for v in np.meshgrid(EDGE, EDGE, indexing="ij"))
    gc = EDGE[(np.arange(ga.size) * 7 + 3) % EDGE.size]
    rng = np.random.default_rng(70)
    pts = np.concatenate([np.stack([ga, gb, gc]),
                          np.stack([_random_points(rng, 500) for _ in range(3)])], axis=1)
    pts = np.ascontiguousarray(pts)
    n = pts.shape[1]
    ref = np.empty((fn.n_outputs, n))
    scalar.call_batch(pts, ref, threads=1)
    out = vector([(pts[k], 0, 1) for k in range(3)], n)
    table = llvmjit.simd_math().table
    for k, v in enumerate(fn.outputs):
        op = fn.instrs[v].op
        calls = primitives.libm_calls(op)
        vec_math = bool(calls) and all(f in table for f, _ in calls)
        if op == "pow" and fn.instrs[fn.instrs[v].args[1]].op == "const" and \
                fn.instrs[fn.instrs[v].args[1]].args[0] in EXACT_EXPONENTS:
            vec_math = False
        what = f"output {k}: {op}{fn.instrs[v].args}"
        if vec_math and op == "logsumexp":
            # m + log(sum(exp(x - m))): ulps of the largest |input| (the sum can cancel m)
            args = [pts[fn.instrs[a].args[0]] if fn.instrs[a].op == "input"
                    else np.full(n, fn.instrs[a].args[0]) for a in fn.instrs[v].args]
            with np.errstate(invalid="ignore"):
                scale = np.maximum(np.abs(ref[k]), np.max(np.abs(args), axis=0))
                assert_ulp(np.where(np.isfinite(scale), out[k], ref[k]), ref[k], np.inf, what)
                fin = np.isfinite(ref[k]) & np.isfinite(scale)
                err = np.abs(out[k][fin] - ref[k][fin]) / np.spacing(scale[fin])
            assert err.size == 0 or err.max() <= ULP_BOUND[op], f"{what}: {err.max()} ulp"
        elif vec_math:
            assert_ulp(out[k], ref[k], ULP_BOUND[op], what)
        else:
            assert_same(out[k], ref[k], what)


# ===================================================================================
# 2. libmvec ops: within 4 ulp (values), bit for bit with libm forced
# ===================================================================================

# Value bounds against libm, in ulp: glibc documents libmvec within 4 ulp of
# libm per function. sigmoid = e/(1+e) and softplus = log1p(e) (e = exp(-|a|))
# compose two roundings: a relative error d in e moves them by at most d, then
# the division or log1p adds its own (softplus: up to 4 + 4). Measured on 10^7
# points with AVX-512 libmvec: exp/tanh/sin/cos 3, log/expm1/log1p 2,
# sigmoid 4, softplus 5 (at x = -2.7581336035116593, in the points below);
# on 80k points: tan/sinh 3, asin/acos/atan/cosh/erf 2, pow 1.
ULP_BOUND = {"exp": 4, "log": 4, "tanh": 4, "sin": 4, "cos": 4, "expm1": 4, "log1p": 4,
             "sigmoid": 6, "softplus": 8, "pow": 4, "tan": 4, "asin": 4, "acos": 4,
             "atan": 4, "atan2": 4, "sinh": 4, "cosh": 4, "erf": 4, "logsumexp": 8}

OPS = {"exp": sp.exp(x), "log": sp.log(x), "tanh": sp.tanh(x), "sin": sp.sin(x),
       "cos": sp.cos(x), "expm1": expm1(x), "log1p": log1p(x), "sigmoid": sg.sigmoid(x),
       "softplus": sg.softplus(x), "tan": sp.tan(x), "asin": sp.asin(x), "acos": sp.acos(x),
       "atan": sp.atan(x), "sinh": sp.sinh(x), "cosh": sp.cosh(x), "erf": sp.erf(x)}


@pytest.fixture(scope="module")
def op_fns():
    return {(name, b): _compile(e, [x], backend=b) for name, e in OPS.items() for b in NATIVE}


@pytest.fixture(scope="module")
def op_points():
    rng = np.random.default_rng(3)
    special = [709.78, 709.79, 710.0, -745.1, -745.2, -708.4, -709.0, 1e22, -1e22, 2.0**60,
               1e5 * np.pi, 19.0, 20.0, 36.7, 40.0, -36.7, -40.0, 1e-8, -1e-8, 1e-17,
               -0.9999999999999999, -1 + 1e-10, 1.5e-300, 745.0, 1e15, 1e300 / 3,
               -2.7581336035116593, -1.997206822801033, -0.025505298155066747]
    pts = np.concatenate([EDGE, special, rng.uniform(-5, 5, 300), rng.uniform(-800, 800, 150),
                          10.0 ** rng.uniform(-320, 300, 150) * rng.choice([-1.0, 1.0], 150)])
    return pts


@pytest.fixture(scope="module")
def op_refs(op_fns, op_points):
    return {key: _per_point(fn, op_points) for key, fn in op_fns.items()}


@pytest.mark.parametrize("backend", NATIVE)
@pytest.mark.parametrize("op", sorted(OPS))
def test_libmvec_op_close_to_libm(op_fns, op_points, op_refs, op, backend):
    fn = op_fns[op, backend]
    ops = {ins.op for ins in fn.ir.instrs}
    assert op in ops
    ref_v, ref_g = op_refs[op, backend]
    v, g = fn.value_and_grad(op_points)
    assert_ulp(v, ref_v, ULP_BOUND[op], f"{op} value")
    assert_ulp(fn(op_points), ref_v, ULP_BOUND[op], f"{op} forward")
    assert_grad_close(g, ref_g, f"{op} gradient")
    # with a tail and in reverse order (other lane positions): the same bits as above
    assert_same(fn.value_and_grad(op_points[::-1])[0], v[::-1])
    assert_same(fn.value_and_grad(op_points[1:])[1], g[1:])


@pytest.fixture(scope="module")
def bulk_points():
    """300k points: uniform on several scales, log-uniform magnitudes, random bit patterns."""
    rng = np.random.default_rng(10)
    k = 50_000
    return np.concatenate([rng.uniform(-1, 1, k), rng.uniform(-50, 50, k), rng.uniform(-745, 710, k),
                           10.0 ** rng.uniform(-310, 308, k) * rng.choice([-1.0, 1.0], k),
                           rng.uniform(-1, 3, k), np.frombuffer(rng.bytes(8 * k), dtype=np.float64)])


def test_libmvec_ops_bulk_against_scalar_kernel(op_fns, bulk_points, math_mode):
    """Every op at 300k points: SIMD batch against the scalar kernel's batch."""
    for op in sorted(OPS):
        fn = op_fns[op, "llvm"]
        ref = _scalar_kernel_batch(fn, bulk_points)
        v, g = fn.value_and_grad(bulk_points)
        if math_mode == "libm":
            assert_same(v, ref[0], f"{op} value (libm)")
            assert_same(g[:, 0], ref[1], f"{op} gradient (libm)")
        else:
            assert_ulp(v, ref[0], ULP_BOUND[op], f"{op} value")
            assert_grad_close(g[:, 0], ref[1], f"{op} gradient")


@pytest.mark.parametrize("backend", NATIVE)
def test_libmvec_ops_bit_identical_with_libm_forced(op_fns, op_points, op_refs, backend):
    saved = llvmjit.simd_math()
    try:
        host.set_simd_math(SimdMath(saved.lanes, {}))
        _forget_simd()
        for op in sorted(OPS):
            fn = op_fns[op, backend]
            ref_v, ref_g = op_refs[op, backend]
            v, g = fn.value_and_grad(op_points)
            assert_same(v, ref_v, f"{op} value (libm)")
            assert_same(g, ref_g, f"{op} gradient (libm)")
            assert_same(fn(op_points), ref_v, f"{op} forward (libm)")
            assert fn._vg.batch_kernel().kind == "simd"
    finally:
        host.set_simd_math(saved)
        _forget_simd()


def test_libm_forced_kernel_calls_no_libmvec():
    """The IR printed with an empty table calls libm, never a _ZGV symbol; with the
    machine's table, libmvec symbols (when the machine has them)."""
    fn = sg.compile(sp.tanh(x) * sp.exp(y) + sg.softplus(x * y), [x, y], backend="llvm")
    lanes = llvmjit.simd_math().lanes
    text = llvmsimd.vector_module(fn.ir, "k", SimdMath(lanes, {}))
    assert "_ZGV" not in text and "@tanh(double" in text
    assert f"<{lanes} x double>" in text
    table = llvmjit.simd_math().table
    if table:
        text = llvmsimd.vector_module(fn.ir, "k", llvmjit.simd_math())
        assert table["tanh"] in text and table["exp"] in text and table["log1p"] in text


# ===================================================================================
# Shared mixed functions for sections 3-6
# ===================================================================================

F = x * sp.tanh(y) + sg.relu(x - y) + sp.log(1 + x**2) / y + sp.exp(-x * y) * sp.sin(3 * x)
G = sp.tanh(w[0] * x + w[1] * y + w[2]) + w[0]**2 * w[1] - sp.sqrt(1 + w[2]**2) * x


@pytest.fixture(scope="module")
def fns():
    return {b: _compile(F, [x, y], backend=b) for b in NATIVE}


@pytest.fixture(scope="module")
def gns():
    return {b: _compile(G, [w, x, y], wrt=[w], backend=b) for b in NATIVE}


def _xy(n, seed=0, edges=True):
    rng = np.random.default_rng(seed + n)
    xs = rng.uniform(-3, 3, n)
    ys = rng.uniform(0.2, 3, n) * rng.choice([-1.0, 1.0], n)
    if edges and n > 2 * EDGE.size:
        pos = rng.choice(n, 2 * EDGE.size, replace=False)
        xs[pos[:EDGE.size]] = EDGE
        ys[pos[EDGE.size:]] = EDGE
    return xs, ys


# ===================================================================================
# 3. Tail handling and lane independence
# ===================================================================================

@pytest.mark.parametrize("backend", NATIVE)
def test_tail_points_equal_full_groups(fns, backend, math_mode):
    fn = fns[backend]
    L = _lanes()
    xs_all, ys_all = _xy(64, seed=5)
    xs_all[:EDGE.size] = EDGE
    ys_all[EDGE.size:2 * EDGE.size] = EDGE
    for n in range(1, 2 * L + 2):
        start = (5 * n) % (64 - n)
        xs, ys = xs_all[start:start + n].copy(), ys_all[start:start + n].copy()
        v, g = fn.value_and_grad(xs, ys)
        for i in range(n):
            vf, gf = fn.value_and_grad(np.full(L, xs[i]), np.full(L, ys[i]))
            assert_same(vf, np.full(L, vf[0]), f"n={n} point {i}: lanes of a full group")
            assert_same(v[i], vf[0], f"n={n} point {i} value")
            assert_same(g[i], gf[0], f"n={n} point {i} gradient")


_GUARD_SCRIPT = r"""
import ctypes, mmap, sys
import numpy as np, sympy as sp, symgrad as sg

PAGE = mmap.PAGESIZE
libc = ctypes.CDLL(None, use_errno=True)
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]

def guarded(pages):
    # float64 memory with an inaccessible page right before and right after it
    mm = mmap.mmap(-1, (pages + 2) * PAGE)
    raw = np.frombuffer(mm, dtype=np.uint8)
    for off in (0, (pages + 1) * PAGE):
        assert libc.mprotect(raw.ctypes.data + off, PAGE, 0) == 0
    return mm, raw[PAGE:(pages + 1) * PAGE].view(np.float64)

x, y = sp.symbols("x y")
w = sp.symbols("w0:3")
fn = sg.compile(sp.tanh(x) * y + x**3 + sp.exp(-y**2), [x, y], backend="llvm")
gn = sg.compile(sp.tanh(w[0] * x + w[1]) + w[2]**2 * x, [w, x], wrt=[w], backend="llvm")
keep, body = guarded(64)
m = body.size
body[:] = np.linspace(-1.5, 1.5, m)
L = int(sys.argv[1])
for n in [*range(1, 2 * L + 2), 8200]:
    xs = body[m - n:]                      # its last element touches the upper guard page
    yr = body[:n][::-1]                    # walks down to the lower guard page
    v, g = fn.value_and_grad(xs, yr)
    rv, rg = fn.value_and_grad(xs.copy(), yr.copy())
    assert np.array_equal(v, rv) and np.array_equal(g, rg), n
    W = body[m - 3 * n:].reshape(n, 3)     # rows ending at the upper guard page
    a, b = gn.value_and_grad(W, yr)
    ra, rb = gn.value_and_grad(W.copy(), yr.copy())
    assert np.array_equal(a, ra) and np.array_equal(b, rb), n
    a, b = gn.value_and_grad(W[::-1], xs)  # rows walking down
    ra, rb = gn.value_and_grad(W[::-1].copy(), xs.copy())
    assert np.array_equal(a, ra) and np.array_equal(b, rb), n
print("guard ok")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mprotect through libc")
def test_tail_reads_stay_inside_the_arrays():
    """Arrays ending (or, with negative strides, starting) right at an
    inaccessible page: the padded lanes of the last group and the thread
    splits must not read past the caller's data (a read past it is a segfault,
    so the check runs in a child process)."""
    proc = subprocess.run([sys.executable, "-c", _GUARD_SCRIPT, str(LANES)], check=False,
                          capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0 and "guard ok" in proc.stdout, \
        f"exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"


@pytest.mark.parametrize("backend", NATIVE)
@pytest.mark.parametrize("n", [*range(1, 2 * LANES + 2), 100, 8191, 8200, 20_011])
def test_results_independent_of_position(fns, gns, backend, n, math_mode):
    rng = np.random.default_rng(n)
    xs, ys = _xy(n, seed=9)
    perm = rng.permutation(n)
    v, g = fns[backend].value_and_grad(xs, ys)
    vp, gp = fns[backend].value_and_grad(xs[perm], ys[perm])
    assert_same(vp, v[perm])
    assert_same(gp, g[perm])
    W = rng.normal(size=(n, 3))
    a, b = gns[backend].value_and_grad(W, xs, ys)
    ap, bp = gns[backend].value_and_grad(W[perm], xs[perm], ys[perm])
    assert_same(ap, a[perm])
    assert_same(bp, b[perm])


def test_batch_matches_per_point_mixed(fns, gns, math_mode):
    """The mixed functions (libmvec and exact ops) against single-point calls:
    bit for bit with libm, to assert_batch's tolerance with libmvec."""
    n = 300
    xs, ys = _xy(n, seed=21)
    W = np.random.default_rng(4).normal(size=(n, 3))
    for b in NATIVE:
        v, g = fns[b].value_and_grad(xs, ys)
        rv, rg = _per_point(fns[b], xs, ys)
        assert_batch(v, rv, f"{b} F values")
        assert_batch(g, rg, f"{b} F grads")
        v, g = gns[b].value_and_grad(W, xs, ys)
        rv, rg = _per_point(gns[b], W, xs, ys)
        assert_batch(v, rv, f"{b} G values")
        assert_batch(g, rg, f"{b} G grads")


@pytest.mark.parametrize("expr", [sp.Float(2.5), x, -y, x * y], ids=["const", "x", "-y", "xy"])
def test_degenerate_programs(expr, math_mode):
    """Outputs that are constants or inputs themselves (splat stores, no loads,
    an unused argument): every tail length equals per-point calls."""
    fn = _compile(expr, [x, y], backend="llvm")
    L = _lanes()
    for n in (1, L - 1, L, L + 1, 3 * L + 2):
        xs, ys = _xy(n, seed=50)
        xs[:min(n, 3)] = [-0.0, NAN, INF][:min(n, 3)]
        v, g = fn.value_and_grad(xs, ys)
        rv, rg = _per_point(fn, xs, ys)
        assert_same(v, rv, f"n={n}")
        assert_same(g, rg, f"n={n}")
        assert_same(fn(xs, ys), rv, f"n={n} forward")


# ===================================================================================
# 4. Input layouts, read in place
# ===================================================================================

def _misaligned(values):
    """A float64 array whose data pointer is 1 byte off 8-byte alignment."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    buf = bytearray(values.nbytes + 1)
    arr = np.frombuffer(buf, dtype=np.float64, offset=1, count=values.size).reshape(values.shape)
    arr[...] = values
    assert arr.ctypes.data % 8 != 0
    return arr


def _strided9(values):
    """A float64 field of a packed record array: aligned start, stride 9 bytes."""
    values = np.asarray(values, dtype=np.float64)
    rec = np.zeros(values.shape, dtype=np.dtype([("a", "<f8"), ("b", "u1")], align=False))
    rec["a"] = values
    out = rec["a"]
    assert out.strides[-1] == 9
    return out


def _check_layout(fn, args, what):
    """``fn`` at ``args`` equals ``fn`` at contiguous float64 copies, bit for bit,
    and no argument is modified."""
    saved = [np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args]
    plain = [np.array(a, dtype=np.float64, order="C") if isinstance(a, np.ndarray) else a
             for a in args]   # contiguous float64 copies (0-d stays 0-d)
    assert all(p.flags.c_contiguous and p.dtype == np.float64 and p.ctypes.data % 8 == 0
               for p in plain if isinstance(p, np.ndarray))
    v, g = fn.value_and_grad(*args)
    rv, rg = fn.value_and_grad(*plain)
    assert_same(v, rv, f"{what}: values")
    assert_same(g, rg, f"{what}: grads")
    assert_same(fn(*args), rv, f"{what}: forward")
    for a, s in zip(args, saved):
        if isinstance(a, np.ndarray):
            assert a.dtype == s.dtype and a.shape == s.shape, f"{what}: input modified"
            assert_same(np.asarray(a, float), np.asarray(s, float), f"{what}: input modified")


@pytest.mark.parametrize("backend", NATIVE)
@pytest.mark.parametrize("n", [23, 8203])
def test_scalar_argument_layouts(fns, backend, n):
    fn = fns[backend]
    xs, ys = _xy(n, seed=13)
    rng = np.random.default_rng(n)
    big = rng.uniform(-3, 3, 3 * n)
    A = np.stack([ys, xs, ys[::-1]], axis=1)          # (n, 3) C-ordered
    with np.errstate(over="ignore"):
        xs32 = xs.astype(np.float32)                  # +-1e300 -> +-inf
    AF = np.asfortranarray(A)
    cases = {
        "reversed": (xs[::-1], ys[::-1]),
        "reverse stride 3": (big[::-3], ys),
        "column of C array": (A[:, 1], A[:, 0]),
        "column of F array": (AF[:, 1], AF[:, 2]),
        "row of a transposed array": (A.T[1], A.T[2]),
        "stride 3": (big[::3], big[1::3]),
        "misaligned": (_misaligned(xs), ys),
        "misaligned both": (_misaligned(xs), _misaligned(ys)),
        "stride 9 bytes": (_strided9(xs), ys),
        "big-endian": (xs.astype(">f8"), ys),
        "float32": (xs32, ys),
        "int64": (np.arange(n) - n // 2, ys),
        "int32 and bool": (np.arange(n, dtype=np.int32) % 7 - 3, (np.arange(n) % 3 == 0)),
        "stride-0 broadcast": (np.broadcast_to(0.75, (n,)), ys),
        "float and array": (0.75, ys),
        "array and np.float64": (xs, np.float64(-1.25)),
        "0-d array and array": (np.array(1.5), ys),
        "int and array": (2, ys[::-1]),
        "read-only": (xs.copy(), ys.copy()),
    }
    cases["read-only"][0].flags.writeable = False
    for what, args in cases.items():
        _check_layout(fn, args, f"{backend} n={n} {what}")
    # scalars broadcast: equal to the batch of repeated values
    v, g = fn.value_and_grad(0.75, ys)
    rv, rg = fn.value_and_grad(np.full(n, 0.75), ys)
    assert_same(v, rv)
    assert_same(g, rg)


@pytest.mark.parametrize("backend", NATIVE)
@pytest.mark.parametrize("n", [1, 23, 8203])
def test_array_argument_layouts(gns, backend, n):
    gn = gns[backend]
    xs, ys = _xy(n, seed=17)
    rng = np.random.default_rng(n + 1)
    W = rng.normal(size=(n, 3))
    w3 = np.array([0.3, -1.2, 0.7])
    wide = rng.normal(size=(n, 6))
    cases = {
        "C-ordered": (W, xs, ys),
        "Fortran-ordered": (np.asfortranarray(W), xs, ys),
        "transposed (3, n)": (np.ascontiguousarray(W.T).T, xs, ys),
        "reversed rows and columns": (W[::-1, ::-1], xs[::-1], ys),
        "columns of a wider array": (wide[:, 1:4], xs, ys),
        "every other column": (wide[:, ::2], xs, ys),
        "negative column step": (wide[:, 5::-2], xs, ys),
        "(3,) broadcast": (w3, xs, ys),
        "(3,) reversed view": (np.array([0.7, -1.2, 0.3])[::-1], xs, ys),
        "broadcast_to (n, 3)": (np.broadcast_to(w3, (n, 3)), xs, ys),
        "broadcast_to column": (np.broadcast_to(xs[:, None], (n, 3)), xs, ys),
        "misaligned": (_misaligned(W), xs, ys),
        "stride 9 bytes": (_strided9(W), xs, ys),
        "int W": ((np.arange(3 * n).reshape(n, 3) % 5) - 2, xs, ys),
        "float32 W": (W.astype(np.float32), xs, ys),
        "list W": ([0.3, -1.2, 0.7], xs, ys),
        "(3,) and scalars": (w3, 0.5, ys),
        "W batched, scalars": (W, 0.5, -1.5),
    }
    for what, args in cases.items():
        if what == "list W":
            v, g = gn.value_and_grad(*args)
            rv, rg = gn.value_and_grad(w3, xs, ys)
            assert_same(v, rv, what)
            assert_same(g, rg, what)
            continue
        _check_layout(gn, args, f"{backend} n={n} {what}")
    # a (3,) W broadcast equals the batch of its repeated rows
    v, g = gn.value_and_grad(w3, xs, ys)
    rv, rg = gn.value_and_grad(np.tile(w3, (n, 1)), xs, ys)
    assert_same(v, rv)
    assert_same(g, rg)


# ===================================================================================
# 5. Output rows: shapes, reduce=, forward-only calls, Jacobians
# ===================================================================================

@pytest.mark.parametrize("backend", NATIVE)
def test_output_shapes_and_dtypes(fns, gns, backend):
    for n in (1, 2, LANES, LANES + 1, 37):
        xs, ys = _xy(n, seed=1)
        v, g = fns[backend].value_and_grad(xs, ys)
        assert v.shape == (n,) and g.shape == (n, 2)
        assert v.dtype == g.dtype == np.float64
        assert fns[backend](xs, ys).shape == (n,)
        assert fns[backend].jacobian(xs, ys).shape == (n, 1, 2)
        a, b = gns[backend].value_and_grad(np.ones((n, 3)), xs, ys)
        assert a.shape == (n,) and b.shape == (n, 3) and b.dtype == np.float64
    v, g = fns[backend].value_and_grad(np.empty(0), np.empty(0))
    assert v.shape == (0,) and g.shape == (0, 2)
    a, b = gns[backend].value_and_grad(np.empty((0, 3)), 1.0, 2.0)
    assert a.shape == (0,) and b.shape == (0, 3)


@pytest.mark.parametrize("backend", NATIVE)
@pytest.mark.parametrize("n", [1, 5, LANES + 3, 10_007])
def test_reduce_equals_numpy_sums(fns, gns, backend, n):
    xs, ys = _xy(n, seed=2, edges=False)
    for fn, args in ((fns[backend], (xs, ys)),
                     (gns[backend], (np.random.default_rng(0).normal(size=(n, 3)), xs, ys))):
        v, g = fn.value_and_grad(*args)
        s_v, s_g = fn.value_and_grad(*args, reduce="sum")
        m_v, m_g = fn.value_and_grad(*args, reduce="mean")
        assert isinstance(s_v, float) and s_g.shape == (g.shape[1],)
        assert_same(s_v, np.sum(v))
        assert_same(s_g, np.sum(g, axis=0))
        assert_same(m_v, np.sum(v) / n)
        assert_same(m_g, np.sum(g, axis=0) / n)
        assert_close(m_v, np.mean(v), rtol=1e-15)
        assert_same(fn.grad(*args, reduce="sum"), s_g)


@pytest.mark.parametrize("backend", NATIVE)
def test_forward_equals_value_and_grad_values(fns, gns, backend, math_mode):
    for n in (1, 3, LANES, 2 * LANES + 1, 999, 20_011):
        xs, ys = _xy(n, seed=4)
        v, g = fns[backend].value_and_grad(xs, ys)
        assert_same(fns[backend](xs, ys), v, f"F n={n}")
        assert_same(fns[backend].jacobian(xs, ys)[:, 0, :], g, f"F n={n} jacobian")
        assert_same(fns[backend].grad(xs, ys), g, f"F n={n} grad")
        W = np.random.default_rng(n).normal(size=(n, 3))
        a, _ = gns[backend].value_and_grad(W, xs, ys)
        assert_same(gns[backend](W, xs, ys), a, f"G n={n}")


@pytest.fixture(scope="module")
def two_output():
    exprs = [x * sp.tanh(y) + sp.sin(x) * y**2, sp.exp(-x**2) * sg.relu(y) + sp.Abs(x - y)]
    return {b: _compile(exprs, [x, y], backend=b) for b in NATIVE}


@pytest.mark.parametrize("backend", NATIVE)
def test_two_output_jacobian_batched(two_output, backend, math_mode):
    fn = two_output[backend]
    for n in (1, LANES - 1, LANES + 1, 257):
        xs, ys = _xy(n, seed=6)
        jac = fn.jacobian(xs, ys)
        vals = fn(xs, ys)
        assert jac.shape == (n, 2, 2) and vals.shape == (n, 2)
        ref_j = np.array([fn.jacobian(float(a), float(b)) for a, b in zip(xs, ys)])
        ref_v = np.array([fn(float(a), float(b)) for a, b in zip(xs, ys)])
        assert_batch(jac, ref_j, f"n={n} jacobian")
        assert_batch(vals, ref_v, f"n={n} values")


def test_hessian_batched(fns, math_mode):
    fn = fns["llvm"]
    fn.hessian(0.5, 0.5)                       # builds fn._hessian_fn, a CompiledFunction
    if fn._hessian_fn not in _COMPILED:        # of its own: let math_mode reset its SIMD kernels
        _COMPILED.append(fn._hessian_fn)
    _forget_batch_kernels(fn._hessian_fn)
    xs, ys = _xy(_lanes() + 3, seed=40)
    hb = fn.hessian(xs, ys)
    assert hb.shape == (len(xs), 2, 2)
    ref = np.array([fn.hessian(float(a), float(b)) for a, b in zip(xs, ys)])
    assert_batch(hb, ref, "hessian")


# ===================================================================================
# 6. Threads
# ===================================================================================

def test_threads_never_change_a_bit(fns, gns):
    n = 50_001
    xs, ys = _xy(n, seed=8)
    for ir in (fns["llvm"].ir, fns["llvm"].ir_forward):
        kernel = llvmjit.load_vector(ir)
        assert kernel is not None and (kernel.n_inputs, kernel.n_outputs) == (ir.n_inputs, ir.n_outputs)
        ref = kernel([(xs, 0, 1), (ys, 0, 1)], n, threads=1)
        assert ref.shape == (ir.n_outputs, n) and ref.dtype == np.float64
        for threads in (2, 3, 4, 7):
            assert_same(kernel([(xs, 0, 1), (ys, 0, 1)], n, threads=threads), ref,
                        f"threads={threads}")
        # a column walked backwards from its last element
        xr = xs[::-1].copy()
        assert_same(kernel([(xr, n - 1, -1), (ys, 0, 1)], n, threads=3), ref)
    v, g = fns["llvm"].value_and_grad(xs, ys)
    ref = llvmjit.load_vector(fns["llvm"].ir)([(xs, 0, 1), (ys, 0, 1)], n, threads=1)
    assert_same(v, ref[0])
    assert_same(g, ref[1:].T)
    # array argument: stride-0 columns of a (3,) vector and strided columns of (n, 3)
    kernel = llvmjit.load_vector(gns["llvm"].ir)
    w3 = np.array([0.3, -1.2, 0.7])
    W = np.random.default_rng(0).normal(size=(n, 3))
    for cols in ([(w3, 0, 0), (w3, 1, 0), (w3, 2, 0), (xs, 0, 1), (ys, 0, 1)],
                 [(W, 0, 3), (W, 1, 3), (W, 2, 3), (xs, 0, 1), (ys, 0, 1)]):
        ref = kernel(cols, n, threads=1)
        for threads in (2, 3, 5):
            assert_same(kernel(cols, n, threads=threads), ref, f"threads={threads}")


def test_concurrent_callers(fns, gns):
    """Batches from several Python threads at once (sharing the batch thread
    pool) give the sequential results."""
    n = 20_011
    xs, ys = _xy(n, seed=60)
    W = np.random.default_rng(60).normal(size=(n, 3))
    ref_f = fns["llvm"].value_and_grad(xs, ys)
    ref_g = gns["numba"].value_and_grad(W, xs, ys)

    def work(k):
        if k % 2:
            return "f", fns["llvm"].value_and_grad(xs, ys)
        return "g", gns["numba"].value_and_grad(W, xs, ys)
    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(work, range(12)))
    for which, (v, g) in results:
        rv, rg = ref_f if which == "f" else ref_g
        assert_same(v, rv, which)
        assert_same(g, rg, which)


def test_vector_kernel_checks_its_columns(fns):
    kernel = llvmjit.load_vector(fns["llvm"].ir)
    xs = np.ones(4)
    with pytest.raises(ValueError, match="input columns"):
        kernel([(xs, 0, 1)], 4)
    with pytest.raises(ValueError, match="float64"):
        kernel([(xs, 0, 1), (np.ones(4, dtype=np.float32), 0, 1)], 4)


# ===================================================================================
# 7. Programs too big for a SIMD kernel fall back to the scalar kernels
# ===================================================================================

@pytest.fixture(scope="module")
def big_fn():
    expr, ws = wide_sum(450)
    return _compile(expr, [list(ws)], backend="llvm"), len(ws)


def test_big_program_falls_back(big_fn, math_mode2):
    fn, width = big_fn
    assert len(fn.ir) > llvmsimd.VEC_MAX_STATEMENTS
    assert llvmjit.load_vector(fn.ir) is None
    n = 2 * LANES + 5
    rng = np.random.default_rng(12)
    W = rng.uniform(-2, 2, (n, width))
    W[0, :EDGE.size] = EDGE
    v, g = fn.value_and_grad(W)
    assert fn._vg.batch_kernel().kind == "scalar"
    assert v.shape == (n,) and g.shape == (n, width)
    rv, rg = _per_point(fn, W)
    assert_same(v, rv, "values (scalar kernel, libm)")
    assert_same(g, rg, "grads (scalar kernel, libm)")
    # the forward program is small enough for a SIMD kernel
    assert len(fn.ir_forward) <= llvmsimd.VEC_MAX_STATEMENTS
    fw = fn(W)
    assert fn._fw.batch_kernel().kind == "simd"
    assert_batch(fw, rv, "forward (SIMD)")


@pytest.mark.parametrize("backend", NATIVE)
def test_statement_limit_boundary(fns, backend, monkeypatch):
    """``load_vector`` draws the line at exactly VEC_MAX_STATEMENTS; below it a
    batch runs through the back end's own batch entry, bit for bit per point."""
    fn = fns[backend]
    size = len(fn.ir)
    monkeypatch.setattr(llvmsimd, "VEC_MAX_STATEMENTS", size)
    assert llvmjit.load_vector(fn.ir) is not None
    monkeypatch.setattr(llvmsimd, "VEC_MAX_STATEMENTS", size - 1)
    assert llvmjit.load_vector(fn.ir) is None
    monkeypatch.setattr(llvmsimd, "VEC_MAX_STATEMENTS", 0)
    try:
        _forget_batch_kernels(fn)
        xs, ys = _xy(300, seed=30)
        v, g = fn.value_and_grad(xs[::-1], ys)
        assert fn._vg.batch_kernel().kind == "scalar"
        rv, rg = _per_point(fn, xs[::-1], ys)
        assert_same(v, rv)
        assert_same(g, rg)
        assert_same(fn(xs[::-1], ys), rv)
    finally:
        _forget_batch_kernels(fn)


# -----------------------------------------------------------------------------------
# pow: libmvec's pow under sg_pow's special cases (0**b, negative bases, 1/x, sqrt)
# -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pow_fns():
    return {b: _compile(x**y, [x, y], backend=b) for b in NATIVE}


@pytest.fixture(scope="module")
def pow_points():
    """(2, N): the edge grid, negative bases with integer exponents, constant-like
    exponents (2, 3, 12, -6, 0.5, -1, -0.5), overflow and underflow."""
    gx, gy = (a.ravel() for a in np.meshgrid(EDGE, EDGE, indexing="ij"))
    rng = np.random.default_rng(12)
    k = 400
    bases = np.concatenate([rng.uniform(-10, 10, k), 10.0 ** rng.uniform(-30, 30, k),
                            rng.uniform(0.9, 1.1, k)])
    exps = np.concatenate([rng.integers(-20, 21, k).astype(float),
                           rng.choice([2.0, 3.0, 12.0, -6.0, 0.5, -1.0, -0.5, 1.5], k),
                           rng.uniform(-700, 700, k)])
    return np.stack([np.concatenate([gx, bases]), np.concatenate([gy, exps])])


@pytest.mark.parametrize("backend", NATIVE)
def test_pow_batches(pow_fns, pow_points, backend, math_mode):
    fn = pow_fns[backend]
    ref_v, ref_g = _per_point(fn, *pow_points)
    v, g = fn.value_and_grad(*pow_points)
    if math_mode == "libm" or not llvmjit.simd_math().table:
        assert_same(v, ref_v, "pow value (libm)")
        assert_same(g, ref_g, "pow gradient (libm)")
        return
    assert_ulp(v, ref_v, ULP_BOUND["pow"], "pow value")
    for k in range(2):   # d/dx = y*x**(y-1) and d/dy = x**y*log(x): products of libmvec values
        a, b = g[:, k], ref_g[:, k]
        assert np.array_equal(np.isnan(a), np.isnan(b)) and np.array_equal(np.isinf(a), np.isinf(b))
        fin = np.isfinite(a)
        np.testing.assert_allclose(a[fin], b[fin], rtol=1e-13, atol=1e-300)
    # the special cases sg_pow tests at run time stay exact (x**2 is x*x only for a
    # constant exponent: here y = 2 goes through pow)
    exact = np.isin(pow_points[1], (0.5, -1.0)) | (pow_points[0] == 0)
    assert_same(v[exact], ref_v[exact], "pow value at exact exponents and zero bases")


_FORK_SCRIPT = r"""
import multiprocessing as mp, numpy as np, sympy as sp, symgrad as sg
x, y = sp.symbols("x y")
fn = sg.compile(sp.tanh(x) * y, [x, y])
xs = np.linspace(-1, 1, 100_000)
ref = fn(xs, 2.0)                     # the parent's thread pool exists from here on
def child(q):
    q.put(fn(xs, 2.0).tobytes() == ref.tobytes())
ctx = mp.get_context("fork")
q = ctx.Queue()
p = ctx.Process(target=child, args=(q,))
p.start()
p.join(60)
print(p.exitcode, q.get(timeout=5) if p.exitcode == 0 else None)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_threaded_batches_work_in_a_forked_child():
    """A child forked after the parent ran threaded batches must not wait on the
    parent's pool threads (they do not exist in the child): it starts its own."""
    proc = subprocess.run([sys.executable, "-c", _FORK_SCRIPT], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "True"], proc.stdout + proc.stderr
