"""The three back ends (numba, llvm, python) against each other and against
independent references: the tape engine, finite differences, SymPy's own
derivatives and ``compiler.ir.Function.evaluate`` (the reference semantics).

The back ends are designed to be bit-identical, so comparisons between them
are exact (``np.array_equal(..., equal_nan=True)`` plus equal signs of zeros):
numba vs llvm everywhere, python vs the native ones on the edge-point grids
(on random points they differ by an ulp, a known bug, so there rtol=1e-12);
comparisons with independent references use tolerances.

Batched calls of the native back ends run SIMD kernels (compiler/llvmsimd.py).
With libm lane by lane (the ``batch_math`` fixture's "libm" case, or a machine
without libmvec) they equal single-point calls bit for bit; with glibc's
libmvec (exp, log, tanh, sin, cos, expm1, log1p within 4 ulp of libm) they
agree to rtol 1e-13 (atol 1e-14 for sums that cancel), and ops outside that
set stay bit-identical.

The library bugs these tests found (|x| >= 2**63 for floor/ceil and pow,
non-finite exponents of negative bases, -0.0 out of floor/ceil, 1/x and sqrt
vs glibc pow, add(-0.0, -0.0), None arguments) are fixed; their dedicated
regression tests follow the op table section and the bad-input section. Some
table comparisons still leave those inputs to the regression tests. Two
``xfail(strict=True)`` tests remain: documented convention differences
between the tape engine and compiled code.

Sections: 1. every runtime function and every op of the table; 2. llvm
chunking and the heap scratch; 3. batches; 4. fast vs checked call paths;
5. the llvm kernel from user @njit code; 6. Hessians; 7./8. pickling and the
disk cache across processes; 9. bad input; 10. a 100k-statement program.
"""

from __future__ import annotations

import inspect
import itertools
import json
import math
import os
import pickle
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numba
import numpy as np
import pytest
import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p

import symgrad as sg
from compiler import host
from compiler import sourceload, llvmscalar
from compiler import runtime as R
from compiler.pysource import python_source
from compiler.ir import Builder
from compiler import llvmjit
from compiler.llvmjit import LLVMKernel, load_llvm
from compiler.emitter import SimdMath
from compiler import ops as primitives
from symgrad.check import finite_differences
from symgrad.testing import mlp_params, wide_sum

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("numba", "llvm", "python")
NATIVE = ("numba", "llvm")
NAN, INF = float("nan"), float("inf")

x, y = sp.symbols("x y")
w = sp.symbols("w0:3")


def assert_same(a, b, what="", signed_zeros=True):
    """Bit-level agreement: same numbers, nan where nan, same sign of zero
    (``signed_zeros`` may be a boolean mask of the entries whose sign is checked)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape, what
    assert np.array_equal(a, b, equal_nan=True), f"{what}\n{a}\n{b}"
    check = ~np.isnan(a) & np.broadcast_to(np.asarray(signed_zeros, dtype=bool), a.shape)
    assert np.array_equal(np.signbit(a)[check], np.signbit(b)[check]), \
        f"{what}: signed zeros\n{a}\n{b}"


def assert_close(a, b, what="", rtol=1e-12, atol=0.0):
    """Agreement to ``rtol`` (and ``atol``), with nan and +-inf in the same places."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert a.shape == b.shape, what
    fa, fb = np.isfinite(a), np.isfinite(b)
    assert np.array_equal(fa, fb) and np.array_equal(a[~fa], b[~fb], equal_nan=True), what
    np.testing.assert_allclose(a[fa], b[fb], rtol=rtol, atol=atol, err_msg=what)


# ===================================================================================
# 1a. Every runtime function, at the IR level: numba == llvm == python == evaluate
# ===================================================================================

# Edge points; huge magnitudes (>= 2**63) and non-finite exponents of negative bases
# are left to the dedicated regression tests below.
EDGE = [0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -2.0, 3.0, 0.7, 800.0, -800.0, NAN, INF, -INF]
_rng = np.random.default_rng(20241129)
# random points: the python back end is only within an ulp of the native ones there
# (glibc pow for x**-1 and x**0.5, see test_python_backend_bit_identical_*)
RANDOM = [tuple(p) for p in np.round(np.concatenate(
    [_rng.uniform(-3, 3, (30, 2)), _rng.normal(0, 20, (10, 2))]), 12).tolist()]


SIGNED_ZERO_BUG_IR = {"floor", "ceil"}
SIGNED_ZERO_BUG_OPS = {"floor", "ceiling"}


def _pow_bug_point(a, b):
    return a < 0.0 and not math.isfinite(b)   # covered by its own regression test below


def _runtime_functions():
    return sorted(n for n, v in R.namespace().items() if inspect.isfunction(v) and n != "pow_")


def _ir_all_ops():
    """SSA functions applying every runtime function to inputs a, b, c: the full
    one, and the slice of it the llvm back end has templates for (the same
    values, in the same order; llvm may lag behind for a new runtime function)."""
    b = Builder(3)
    a_, b_, c_ = b.input(0), b.input(1), b.input(2)
    outs = []
    for name in sorted(primitives.names()):
        params = inspect.signature(R.lookup(name)).parameters.values()
        if any(p.kind is p.VAR_POSITIONAL for p in params):
            if name == "piecewise":
                outs += [b.op(name, a_, b_, c_, a_), b.op(name, a_, b_)]
            else:
                outs += [b.op(name, a_, b_, c_), b.op(name, c_, a_), b.op(name, b_)]
        elif len(params) == 1:
            outs.append(b.op(name, a_))
        else:
            outs += [b.op(name, a_, b_), b.op(name, b_, a_)]
    full = b.finish(outs)
    in_llvm = [k for k, v in enumerate(full.outputs) if full.instrs[v].op in llvmscalar.supported_ops()]
    return full, b.finish([outs[k] for k in in_llvm]), np.array(in_llvm, dtype=int)


@pytest.fixture(scope="module")
def ir_all_ops():
    full, sub, in_llvm = _ir_all_ops()
    src = python_source(full, "kernel")
    mod, _, _ = sourceload.load_numba(src, "kernel")
    py = sourceload.load_python(src, "kernel")
    return full, sub, in_llvm, {"numba": mod.kernel, "python": lambda i, o: py(i.tolist(), o),
                                "llvm": load_llvm(sub).call}


def test_runtime_function_list_is_complete():
    # every runtime function is compiled by numba (nbruntime), llvm templates name runtime functions
    assert set(sorted(primitives.names())) == set(_runtime_functions())
    assert set(llvmscalar.supported_ops()) <= set(sorted(primitives.names()))
    # and every op of the table names one of them
    impls = {op.impl for op in sg.all_ops() if isinstance(op.impl, str)}
    assert impls <= set(sorted(primitives.names()))
    assert {"sigmoid", "piecewise", "heaviside", "not_", "ne"} <= impls


def test_every_runtime_function_identical_across_backends_and_evaluate(ir_all_ops):
    full, sub, in_llvm, kernels = ir_all_ops
    assert {ins.op for ins in full.instrs} - {"input", "const"} == set(sorted(primitives.names()))
    assert {ins.op for ins in sub.instrs} - {"input", "const"} == set(llvmscalar.supported_ops())
    # floor/ceil signed zeros: covered by their own regression test below
    signed = np.array([sub.instrs[v].op not in SIGNED_ZERO_BUG_IR for v in sub.outputs])
    rows = 0
    for i, (a, b) in enumerate(itertools.product(EDGE, repeat=2)):
        if _pow_bug_point(a, b) or _pow_bug_point(b, a):
            continue
        c = EDGE[(3 * i + 5) % len(EDGE)]
        inp = np.array([a, b, c])
        results = {}
        for name, k in kernels.items():
            out = np.full((sub if name == "llvm" else full).n_outputs, 12345.0)
            k(inp, out)
            results[name] = out
        assert_same(results["numba"], results["python"], f"numba vs python at {inp}")
        assert_same(results["numba"][in_llvm], results["llvm"], f"numba vs llvm at {inp}", signed)
        # evaluate: same numbers (signed zeros of `add` differ, see xfail test below)
        ref = np.array(full.evaluate([a, b, c]))
        assert np.array_equal(results["numba"], ref, equal_nan=True), inp
        rows += 1
    assert rows >= 190


# ===================================================================================
# 1b. Every op of the op table, through sg.compile: values and gradients
# ===================================================================================

OP_CASES = {
    "add": x + 2 * y - 3,
    "mul": x * y,
    "div": x / y,
    "pow_square": x**2,
    "pow_int": x**3 * y,
    "pow_neg_int": x**-3,
    "pow_sqrt": sp.sqrt(x),
    "pow_rational": x**sp.Rational(1, 3),
    "pow_float": x**2.5,
    "pow_neg_float": (x * y)**-1.5,
    "exp": sp.exp(x) * y,
    "expm1": expm1(x),
    "log": sp.log(x),
    "log1p": log1p(x),
    "sin": sp.sin(x * y),
    "cos": sp.cos(x),
    "tan": sp.tan(x),
    "asin": sp.asin(x),
    "acos": sp.acos(x),
    "atan": sp.atan(x),
    "atan2": sp.atan2(y, x),
    "sinh": sp.sinh(x),
    "cosh": sp.cosh(x),
    "tanh": sp.tanh(x),
    "erf": sp.erf(x) * y,
    "relu": sg.relu(x - y),
    "sigmoid": sg.sigmoid(x * y),
    "softplus": sg.softplus(x - y),
    "abs": sp.Abs(x - y),
    "sign": sp.sign(x) * y,
    "heaviside": sp.Heaviside(x) * y,
    "heaviside_h0": sp.Heaviside(x - y, sp.Rational(1, 4)) * y,
    "max": sp.Max(x, y),
    "min": sp.Min(x, y),
    "max3": sp.Max(x, y, 1),
    "min3": sp.Min(x, -y, 1),
    "floor": sp.floor(x) * y,
    "ceiling": sp.ceiling(x) * y,
    "piecewise_and_or": sp.Piecewise((x**2, sp.And(x > 0, y < 1)),
                                     (sp.sin(y), sp.Or(x <= -1, sp.Eq(y, 2))),
                                     (x * y, sp.Ne(x, y)), (y, True)),
    "piecewise_not": sp.Piecewise((x * y, sp.Not(sp.And(x >= 0, y > 0))), (x - y, True)),
    "piecewise_no_default": sp.Piecewise((x, x < y), (y, x > y)),   # nan at a tie
}
# x**y with a variable exponent is compiled on its own: at a negative base and a
# non-finite exponent the python back end raises (known bug), which would take
# every other op of a shared kernel down with it
POW_XY = "pow_xy"
# ops of the table the cases above do not cover (new ops): f(x, y) / f(x), each on its own
COVERED_TABLE_OPS = {
    "relu", "sigmoid", "softplus", "add", "mul", "pow", "exp", "log", "log1p", "expm1", "sin",
    "cos", "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh", "tanh", "erf", "lt", "le", "gt",
    "ge", "eq", "ne", "and", "or", "not", "abs", "sign", "floor", "ceiling", "heaviside", "max",
    "min", "piecewise"}
GENERIC = {f"table_{op.name}": (op.head(x, y) if op.arity in (None, 2) else op.head(x))
           for op in sg.all_ops()
           if isinstance(op.impl, str) and op.name not in COVERED_TABLE_OPS
           and op.arity in (None, 1, 2)}
SEPARATE = {POW_XY: x**y, **GENERIC}
ALL_OPS = [*OP_CASES, *SEPARATE]
SMOOTH = [(0.3, 0.7), (-0.45, 1.3), (1.7, -0.6), (-1.25, -2.2)]
# where the tape engine and the compiled gradient follow different conventions
# (reported separately, see the xfail tests): log'(-0.0), d/dy x**y at x == 0
TAPE_EXCEPTIONS = {
    "log": lambda px, py: px == 0.0 and math.copysign(1.0, px) < 0,
    POW_XY: lambda px, py: px == 0.0,
}


def _expr(name):
    return OP_CASES[name] if name in OP_CASES else SEPARATE[name]


N_EDGE = len(EDGE) ** 2
EDGE_SET = set(itertools.product(EDGE, repeat=2))


def _grid(name):
    pts = list(itertools.product(EDGE, repeat=2)) + SMOOTH + RANDOM
    if name == POW_XY:
        pts = [p for p in pts if not _pow_bug_point(*p)]
    return pts


@pytest.fixture(scope="module")
def op_results():
    """{backend: {op: (points, values (n,), gradients (n, 2)) or None}}, one call per
    point (None: the llvm back end has no template for the op yet)."""
    results = {}
    exprs = list(OP_CASES.values())
    for backend in BACKENDS:
        multi = sg.compile(exprs, [x, y], backend=backend)
        res = {"_ir_ops": {ins.op for ins in multi.ir.instrs}}
        pts = _grid("add")
        vals = np.array([multi(*p) for p in pts])
        jacs = np.array([multi.jacobian(*p) for p in pts])
        for k, name in enumerate(OP_CASES):
            res[name] = (pts, vals[:, k], jacs[:, k, :])
        for name, e in SEPARATE.items():
            try:
                single = sg.compile(e, [x, y], backend=backend)
            except NotImplementedError:
                assert backend == "llvm"
                res[name] = None
                continue
            res["_ir_ops"] |= {ins.op for ins in single.ir.instrs}
            pts = _grid(name)
            vg = [single.value_and_grad(*p) for p in pts]
            fw = np.array([single(*p) for p in pts])
            v = np.array([r[0] for r in vg])
            assert_same(fw, v, f"{name}: forward kernel vs fused kernel")
            res[name] = (pts, v, np.array([r[1] for r in vg]))
        results[backend] = res
    return results


def test_op_table_is_covered(op_results):
    impls = {op.impl for op in sg.all_ops() if isinstance(op.impl, str)}
    for backend in ("numba", "python"):
        assert impls <= op_results[backend]["_ir_ops"], impls - op_results[backend]["_ir_ops"]
    assert impls & set(llvmscalar.supported_ops()) <= op_results["llvm"]["_ir_ops"]


@pytest.mark.parametrize("name", ALL_OPS)
def test_op_identical_across_backends(op_results, name):
    pts, v_nb, g_nb = op_results["numba"][name]
    _, v_py, g_py = op_results["python"][name]
    edge = np.array([p in EDGE_SET for p in pts])
    assert edge.sum() >= N_EDGE - 30
    assert_same(v_nb[edge], v_py[edge], f"{name}: numba vs python values")
    assert_same(g_nb[edge], g_py[edge], f"{name}: numba vs python gradients")
    assert_close(v_nb[~edge], v_py[~edge], f"{name}: numba vs python values")
    assert_close(g_nb[~edge], g_py[~edge], f"{name}: numba vs python gradients")
    # every op has a template (compiler/ops records): a missing one fails, never skips
    assert op_results["llvm"][name] is not None, f"{name}: the llvm back end has no template"
    _, v_ll, g_ll = op_results["llvm"][name]
    signed = name not in SIGNED_ZERO_BUG_OPS   # see test_floor_ceil_signed_zero_llvm
    assert_same(v_nb, v_ll, f"{name}: numba vs llvm values", signed)
    assert_same(g_nb, g_ll, f"{name}: numba vs llvm gradients", signed)


@pytest.mark.parametrize("name", ALL_OPS)
def test_op_matches_tape_engine(op_results, name):
    """At every finite grid point, kinks included (the conventions are shared)."""
    pts, values, grads = op_results["numba"][name]
    expr = _expr(name)
    skip = TAPE_EXCEPTIONS.get(name, lambda px, py: False)
    checked = 0
    for (px, py), v, g in zip(pts, values, grads):
        if not (math.isfinite(px) and math.isfinite(py)) or skip(px, py):
            continue
        tv, tg = sg.tape.replay(expr, {x: px, y: py})
        ref = np.array([tv, tg.get(x, 0.0), tg.get(y, 0.0)])
        got = np.concatenate([[v], g])
        if math.isnan(tv):   # no gradient convention where the value is undefined (a
            got, ref = got[:1], ref[:1]     # Piecewise with no branch taken: tape 0, compiled nan)
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=0,
                                   equal_nan=True, err_msg=f"{name} at {(px, py)}")
        checked += 1
    assert checked >= 100


# smooth ops whose SymPy derivative evaluates to a number (independent of symgrad)
SYMPY_CHECKED = ["add", "mul", "div", "pow_square", "pow_int", "pow_neg_int", "pow_sqrt",
                 "pow_rational", "pow_float", "pow_neg_float", "exp", "expm1", "log", "log1p",
                 "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh", "tanh",
                 "erf", "sigmoid", "softplus", POW_XY]


@pytest.mark.parametrize("name", ALL_OPS)
def test_op_gradient_matches_finite_differences_and_sympy(op_results, name):
    pts, values, grads = op_results["numba"][name]
    expr = _expr(name)
    checked = 0
    for (px, py), v, g in zip(pts, values, grads):
        if (px, py) not in SMOOTH or not (np.isfinite(v) and np.all(np.isfinite(g))):
            continue
        fd = finite_differences(expr, [x, y], {x: px, y: py})
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8, err_msg=f"{name} at {(px, py)}")
        if name in SYMPY_CHECKED:
            at = {x: sp.Float(px, 30), y: sp.Float(py, 30)}
            ref_v = complex(expr.evalf(30, subs=at))
            ref_g = [complex(sp.diff(expr, s).evalf(30, subs=at)) for s in (x, y)]
            assert ref_v.imag == 0 and all(r.imag == 0 for r in ref_g)
            assert v == pytest.approx(ref_v.real, rel=1e-13)
            np.testing.assert_allclose(g, [r.real for r in ref_g], rtol=1e-12, atol=1e-300)
        checked += 1
    assert checked >= 1, f"{name}: no smooth point with a finite value"


def test_piecewise_conditions_select_the_right_branch(op_results):
    # spot checks with hand-computed numbers (all backends agree, tested above)
    expected = {
        (0.5, 0.5): 0.25,            # x > 0 & y < 1
        (-1.0, 3.0): math.sin(3.0),  # x <= -1
        (0.5, 2.0): math.sin(2.0),   # Eq(y, 2)
        (2.0, 3.0): 6.0,             # Ne(x, y)
        (3.0, 3.0): 3.0,             # default
    }
    pts, values, _ = op_results["llvm"]["piecewise_and_or"]
    got = dict(zip(pts, values))
    for p, v in expected.items():
        assert got[p] == v, p
    pts, values, grads = op_results["llvm"]["piecewise_not"]
    got = dict(zip(pts, zip(values, grads)))
    assert got[(2.0, 3.0)][0] == -1.0 and list(got[(2.0, 3.0)][1]) == [1.0, -1.0]  # And holds
    assert got[(-2.0, 3.0)][0] == -6.0 and list(got[(-2.0, 3.0)][1]) == [3.0, -2.0]
    pts, values, _ = op_results["llvm"]["piecewise_no_default"]
    got = dict(zip(pts, values))
    assert math.isnan(got[(2.0, 2.0)]) and got[(1.0, 2.0)] == 1.0 and got[(3.0, 2.0)] == 2.0


# -- known bugs, pinned ---------------------------------------------------------------

@pytest.mark.parametrize("b", [NAN, INF, -INF])
def test_pow_negative_base_nonfinite_exponent_never_raises(b):
    fp = sg.compile(x**y, [x, y], backend="python")
    fl = sg.compile(x**y, [x, y], backend="llvm")
    assert_same(fp(-0.5, b), fl(-0.5, b))


@pytest.mark.parametrize("a", [1e20, -1e20, 2.0**63, 1e300])
def test_floor_ceil_huge_numba(a):
    fns = {b: sg.compile([sp.floor(x), sp.ceiling(x)], [x], backend=b) for b in NATIVE}
    assert_same(fns["numba"](a), fns["llvm"](a))
    assert_same(fns["numba"](a), [a, a])


@pytest.mark.parametrize("a", [-0.0, -0.5])
def test_floor_ceil_signed_zero_llvm(a):
    e = sp.atan2(sp.ceiling(x), -1) + sp.atan2(sp.floor(x * x * x), -1)
    ref = sg.tape.replay(e, {x: a})[0]
    for backend in BACKENDS:
        assert sg.compile(e, [x], backend=backend)(a) == ref, backend


@pytest.mark.parametrize("a,b", [(-2.0, 1e20), (-0.5, 1e20), (-2.0, INF), (-0.5, -INF)])
def test_pow_negative_base_huge_exponent_numba(a, b):
    fns = {be: sg.compile(x**y, [x, y], backend=be) for be in NATIVE}
    ref_v, ref_g = fns["llvm"].value_and_grad(a, b)
    assert_same(fns["llvm"](a, b), ref_v)
    # numba's forward kernel happens to get inf here while its fused kernel gets nan:
    # the float -> int64 conversion of math.floor(b) is undefined out of range
    v, g = fns["numba"].value_and_grad(a, b)
    assert_same(v, ref_v)
    assert_same(g, ref_g)
    assert_same(fns["numba"](a, b), ref_v)


@pytest.mark.parametrize("expr,value", [(1 / x, 4.9578877698407275),
                                        (sp.sqrt(x), 9.66966429196129)])
def test_python_backend_bit_identical_for_division_and_sqrt(expr, value):
    native = sg.compile(expr, [x], backend="llvm")(value)
    assert sg.compile(expr, [x], backend="numba")(value) == native
    assert sg.compile(expr, [x], backend="python")(value) == native


def test_add_signed_zero_tape_and_evaluate_vs_compiled():
    e = sp.atan2(x + y, -1)
    compiled = sg.compile(e, [x, y], backend="llvm")(-0.0, -0.0)
    assert compiled == -math.pi
    b = Builder(2)
    fn = b.finish([b.op("atan2", b.op("add", b.input(0), b.input(1)), b.const(-1.0))])
    assert fn.evaluate([-0.0, -0.0])[0] == compiled
    assert sg.tape.replay(e, {x: -0.0, y: -0.0})[0] == compiled


@pytest.mark.parametrize("backend", BACKENDS)
def test_log_gradient_at_negative_zero_matches_tape(backend):
    # pow(-0.0, -1) is -inf (C99 Annex F), so d/dx log(x) = x**-1 at -0.0 is -inf, as 1/x
    g = sg.compile(sp.log(x), [x], backend=backend).grad(-0.0)
    assert g[0] == sg.tape.replay(sp.log(x), {x: -0.0})[1][x] == -INF


@pytest.mark.parametrize("backend", BACKENDS)
def test_pow_exponent_gradient_at_zero_base_is_the_documented_convention(backend):
    """A documented decision, not a bug: compiled code differentiates with
    SymPy's rule d/dy x**y = x**y*log(x), which is 0*-inf = nan at x = 0, as
    SymPy's own derivative evaluated there; the tape engine follows PyTorch
    (0 where x**y == 0 and y >= 0). Both agree wherever x > 0."""
    g = sg.compile(x**y, [x, y], backend=backend).grad(0.0, 0.5)
    _, tg = sg.tape.replay(x**y, {x: 0.0, y: 0.5})
    assert math.isnan(g[1]) and tg[y] == 0.0
    assert g[0] == tg[x] == INF
    sympy_dy = sp.diff(x**y, y).subs({x: sp.Float(1e-300), y: 0.5})
    assert sg.compile(x**y, [x, y], backend=backend).grad(1e-300, 0.5)[1] == \
        pytest.approx(float(sympy_dy), rel=1e-12)


# ===================================================================================
# 2. llvm chunking and the scratch array (stack / heap)
# ===================================================================================

_UNARY = ["exp", "expm1", "log", "log1p", "sin", "cos", "tan", "asin", "acos", "atan", "sinh",
          "cosh", "tanh", "erf", "relu", "sigmoid", "softplus", "abs_", "sign", "floor", "ceil",
          "not_"]
_BINARY = ["mul", "div", "atan2", "max2", "min2", "heaviside", "lt", "le", "gt", "ge", "eq", "ne",
           "pow"]
_VARIADIC = ["add", "and_", "or_", "piecewise"]


def random_dag(n_values: int, n_inputs: int = 5, seed: int = 0):
    """A random SSA DAG over the runtime functions (all with llvm templates): mostly
    short edges (deep chains) with some long ones (values crossing many chunks)."""
    rng = random.Random(seed)
    b = Builder(n_inputs)
    vals = [b.input(i) for i in range(n_inputs)] + [b.const(c) for c in (0.5, -1.0, 2.0, 3.0)]
    used = set()

    def pick():
        if rng.random() < 0.8:
            v = vals[-1 - min(int(rng.expovariate(1 / 20)), len(vals) - 1)]
        else:
            v = rng.choice(vals)
        used.add(v)
        return v

    while len(vals) < n_values:
        r = rng.random()
        if r < 0.45:
            op, args = rng.choice(_UNARY), [pick()]
            if op in ("exp", "sinh", "cosh"):
                args = [b.op("tanh", args[0])]
        elif r < 0.85:
            op, args = rng.choice(_BINARY), [pick(), pick()]
            if op == "pow":  # positive base, finite exponent: evaluate never raises; no
                # 2, 0.5, -1 (LLVM turns those into x*x, sqrt, 1/x; evaluate uses glibc pow)
                args = [b.op("sigmoid", args[0]), b.const(rng.choice([3.0, 1.5, -0.5, -2.0, 2.5]))]
        else:
            op, args = rng.choice(_VARIADIC), [pick() for _ in range(rng.randint(2, 5))]
            if op == "piecewise" and len(args) % 2:
                args.pop()
        v = b.op(op, *args)
        if op in SIGNED_ZERO_BUG_IR:   # floor/ceil's -0.0 on llvm (xfail above): x + 0.0 is +0.0
            v = b.op("add", v, b.const(0.0))
        vals.append(v)
    outs = [v for v in vals[9:] if v not in used] + vals[-3:]
    return b.finish(outs)


DAG_INPUTS = [np.array([0.3, -1.2, 0.7, 2.5, -0.05]), np.array([-0.8, 0.4, 1.9, -2.2, 1.1]),
              np.array([2.0, 0.0, -0.5, 0.25, -3.0])]


@pytest.fixture(scope="module")
def dag():
    fn = random_dag(1500, seed=1234)
    refs = [np.array(fn.evaluate(list(v))) for v in DAG_INPUTS]
    return fn, refs


def test_random_dag_is_a_real_test(dag):
    fn, refs = dag
    assert len(fn) >= 1500
    assert {ins.op for ins in fn.instrs} - {"input", "const"} == set(_UNARY + _BINARY + _VARIADIC)
    assert set(_UNARY + _BINARY + _VARIADIC) <= llvmscalar.supported_ops()
    for r in refs:
        assert np.mean(np.isfinite(r)) > 0.7   # mostly numbers, not nan


@pytest.mark.parametrize("chunk", [1, 7, 64, 100_000])
def test_llvm_chunks_equal_evaluate(dag, chunk):
    fn, refs = dag
    text = llvmscalar.llvm_module(fn, "k", chunk)
    n_ops = sum(ins.op not in ("input", "const") for ins in fn.instrs)
    assert text.count("define internal void @k.c") == -(-n_ops // chunk)
    assert "@malloc" not in text and "%tmp = alloca" in text
    kernel = load_llvm(fn, chunk=chunk)
    for inp, ref in zip(DAG_INPUTS, refs):
        out = np.empty(fn.n_outputs)
        kernel.call(inp, out)
        assert_same(out, ref, f"chunk={chunk}")
    # the batch entry point runs the same code (points are columns)
    inp = np.ascontiguousarray(np.array(DAG_INPUTS).T)
    out = np.empty((fn.n_outputs, len(DAG_INPUTS)))
    kernel.call_batch(inp, out, threads=1)
    for col, ref in zip(out.T, refs):
        assert_same(col, ref)


def test_python_source_of_dag_equals_evaluate(dag):
    fn, refs = dag
    k = sourceload.load_python(python_source(fn, "kernel"), "kernel")
    for inp, ref in zip(DAG_INPUTS, refs):
        out = np.empty(fn.n_outputs)
        k(inp.tolist(), out)
        assert_same(out, ref)


def test_llvm_heap_scratch(monkeypatch):
    fn = random_dag(300, seed=99)
    refs = [np.array(fn.evaluate(list(v))) for v in DAG_INPUTS]
    monkeypatch.setattr(llvmscalar, "_MAX_STACK_SLOTS", 4)
    text = llvmscalar.llvm_module(fn, "k", 5)
    assert "%tmp = call ptr @malloc" in text and "call void @free" in text
    assert "%tmp = alloca" not in text
    kernel = load_llvm(fn, chunk=5)
    for inp, ref in zip(DAG_INPUTS, refs):
        out = np.empty(fn.n_outputs)
        kernel.call(inp, out)
        assert_same(out, ref, "heap scratch")
    # one scratch array per call: threads do not share it
    rng = np.random.default_rng(5)
    points = rng.normal(size=(3000, 5))
    per_point = np.empty((3000, fn.n_outputs))
    for i in range(3000):
        kernel.call(points[i], per_point[i])
    batched = np.empty((fn.n_outputs, 3000))
    kernel.call_batch(np.ascontiguousarray(points.T), batched, threads=4)
    assert_same(batched.T, per_point)


# ===================================================================================
# Shared compiled functions for sections 3-9
# ===================================================================================

F = x * sp.tanh(y) + sg.relu(x - y) + sp.log(1 + x**2) / y + sp.exp(-x * y) * sp.sin(3 * x)
G = sp.tanh(w[0] * x + w[1] * y + w[2]) + w[0]**2 * w[1] - sp.sqrt(1 + w[2]**2) * x


@pytest.fixture(scope="module")
def fns():
    return {b: sg.compile(F, [x, y], backend=b) for b in BACKENDS}


@pytest.fixture(scope="module")
def gns():
    return {b: sg.compile(G, [w, x, y], wrt=[w], backend=b) for b in BACKENDS}


def assert_batch(batch, single, what=""):
    """A batched (SIMD) result against single-point calls: bit for bit when
    batches use libm; with libmvec (within 4 ulp per function) to rtol 1e-13
    and an absolute 1e-14 of the largest magnitude (sums that cancel keep the
    absolute error of their terms)."""
    if llvmjit.simd_math().table:
        ref = np.asarray(single, dtype=float)
        scale = max(1.0, float(np.max(np.abs(ref[np.isfinite(ref)]), initial=0.0)))
        assert_close(batch, single, what, rtol=1e-13, atol=1e-14 * scale)
    else:
        assert_same(batch, single, what)


@pytest.fixture(params=["machine", "libm"])
def batch_math(request, fns, gns):
    """Batches with this machine's SIMD math, or with libm lane by lane (then
    every batched number must equal the single-point call bit for bit)."""
    saved = llvmjit.simd_math()

    def forget():   # compiled functions load their SIMD kernels on the next batch
        for f in (*fns.values(), *gns.values()):
            for kernel in (f._vg, f._fw):
                kernel._batch_kernel = None
    if request.param == "libm":
        host.set_simd_math(SimdMath(saved.lanes, {}))
        forget()
    yield assert_batch
    host.set_simd_math(saved)
    forget()


def _batch_inputs(n, seed=0):
    rng = np.random.default_rng(seed + n)
    xs = rng.uniform(-2, 2, n)
    ys = rng.uniform(0.2, 3, n) * rng.choice([-1.0, 1.0], n)
    W = rng.normal(size=(n, 3))
    return xs, ys, W


def _sample_rows(n):
    if n <= 1000:
        return range(n)
    rng = np.random.default_rng(n)
    edges = {0, 1, n - 1, n - 2, n // 2, n // 2 + 1, 255, 256, 257, n // 256 * 256 - 1,
             n // 256 * 256}                    # numba's batch runs chunks of 256 points
    for t in (2, 3, 4, 8):
        step = -(-n // t)
        edges |= {i for k in range(1, t) for i in (k * step - 1, k * step)}
    return sorted(edges | set(rng.integers(0, n, 300).tolist()))


def test_auto_backend_choice(fns, monkeypatch):
    from compiler import pyglue

    small = sg.compile(x * sp.sin(y), [x, y])
    assert small.backend == "llvm"
    if pyglue.supported():       # CPython: llvm, entered through builtin functions
        assert type(small.value_and_grad).__name__ == "builtin_function_or_method"
    v, g = small.value_and_grad(0.5, 2.0)
    assert v == 0.5 * math.sin(2.0) and list(g) == [math.sin(2.0), 0.5 * math.cos(2.0)]
    # where the glue is unavailable, "auto" is still llvm (no back end has a faster
    # single-point path there): every call takes the checked path, same bits
    monkeypatch.setitem(pyglue._STATE, "ok", False)
    plain = sg.compile(x * sp.sin(y), [x, y])
    assert plain.backend == "llvm" and type(plain.value_and_grad).__name__ == "function"
    assert plain.value_and_grad(0.5, 2.0)[0] == v
    assert np.array_equal(plain.value_and_grad(0.5, 2.0)[1], g)
    ws_expr, ws = wide_sum(60)
    big = sg.compile(ws_expr, [list(ws)])
    assert big.backend == "llvm" and isinstance(big.native, LLVMKernel)
    v, g = big.value_and_grad(np.linspace(-1, 1, 60))
    ref = sg.compile(ws_expr, [list(ws)], backend="python").value_and_grad(np.linspace(-1, 1, 60))
    assert v == pytest.approx(ref[0], rel=1e-14)
    assert_close(g, ref[1], rtol=1e-14)


# ===================================================================================
# 3. Batches
# ===================================================================================

@pytest.mark.parametrize("backend", NATIVE)
@pytest.mark.parametrize("n", [1, 2, 7, 1000, 50_001])
def test_batch_scalar_args_equal_per_sample(fns, backend, n, batch_math):
    fn = fns[backend]
    xs, ys, _ = _batch_inputs(n)
    xs0, ys0 = xs.copy(), ys.copy()
    values, grads = fn.value_and_grad(xs, ys)
    forward = fn(xs, ys)
    jac = fn.jacobian(xs, ys)
    assert values.shape == (n,) and grads.shape == (n, 2) and jac.shape == (n, 1, 2)
    assert values.dtype == grads.dtype == np.float64
    assert_same(forward, values)
    assert_same(jac[:, 0, :], grads)
    assert_same(fn.grad(xs, ys), grads)
    assert_same(xs, xs0)
    assert_same(ys, ys0)
    for i in _sample_rows(n):
        v, g = fn.value_and_grad(float(xs[i]), float(ys[i]))
        batch_math(values[i], v, f"row {i}")
        batch_math(grads[i], g, f"row {i}")
        batch_math(forward[i], fn(float(xs[i]), float(ys[i])))


@pytest.mark.parametrize("backend", NATIVE)
@pytest.mark.parametrize("n", [1, 2, 7, 1000, 50_001])
def test_batch_array_args_equal_per_sample(gns, backend, n, batch_math):
    gn = gns[backend]
    xs, ys, W = _batch_inputs(n)
    copies = [a.copy() for a in (xs, ys, W)]
    values, grads = gn.value_and_grad(W, xs, ys)
    forward = gn(W, xs, ys)
    assert values.shape == (n,) and grads.shape == (n, 3)
    assert_same(forward, values)
    for a, c in zip((xs, ys, W), copies):
        assert_same(a, c)
    for i in _sample_rows(n):
        v, g = gn.value_and_grad(W[i].copy(), float(xs[i]), float(ys[i]))
        batch_math(values[i], v, f"row {i}")
        batch_math(grads[i], g, f"row {i}")
    # unbatched arguments broadcast over the batch
    v2, g2 = gn.value_and_grad(W, 0.75, ys)
    v3, g3 = gn.value_and_grad(W[0], xs, ys)
    for i in _sample_rows(n)[:50]:
        v, g = gn.value_and_grad(W[i].copy(), 0.75, float(ys[i]))
        batch_math(v2[i], v)
        batch_math(g2[i], g)
        v, g = gn.value_and_grad(W[0].copy(), float(xs[i]), float(ys[i]))
        batch_math(v3[i], v)
        batch_math(g3[i], g)


def test_batch_backends_identical_on_a_big_batch(fns, gns):
    xs, ys, W = _batch_inputs(50_001, seed=7)
    vn, gn_ = fns["numba"].value_and_grad(xs, ys)
    vl, gl = fns["llvm"].value_and_grad(xs, ys)
    assert_same(vn, vl)
    assert_same(gn_, gl)
    an, bn = gns["numba"].value_and_grad(W, xs, ys)
    al, bl = gns["llvm"].value_and_grad(W, xs, ys)
    assert_same(an, al)
    assert_same(bn, bl)
    # the python back end (a loop over points) on a smaller batch
    # (within 1e-12 only: glibc pow vs LLVM's 1/x and sqrt, see the xfail test)
    vp, gp = fns["python"].value_and_grad(xs[:2000], ys[:2000])
    assert_close(vp, vl[:2000])
    assert_close(gp, gl[:2000])
    assert_close(fns["python"](xs[:2000], ys[:2000]), vl[:2000])
    ap, bp = gns["python"].value_and_grad(W[:500], xs[:500], ys[:500])
    assert_close(ap, al[:500])
    assert_close(bp, bl[:500])


def test_llvm_call_batch_threads(fns):
    kernel = fns["llvm"].native
    xs, ys, _ = _batch_inputs(50_001, seed=3)
    inp = np.stack([xs, ys])                   # points are columns: (n_inputs, n)
    ref = np.empty((3, len(xs)))
    kernel.call_batch(inp, ref, threads=1)
    for threads in (2, 3, 4, 8):
        out = np.full_like(ref, np.nan)
        kernel.call_batch(inp, out, threads=threads)
        assert_same(out, ref, f"threads={threads}")
    v, g = fns["llvm"].value_and_grad(xs, ys)
    assert_batch(v, ref[0])
    assert_batch(g, ref[1:].T)
    one = np.empty(3)
    for i in (0, 12_500, 12_501, 25_001, 50_000):
        kernel.call(np.array([xs[i], ys[i]]), one)
        assert_same(one, ref[:, i])


@pytest.mark.parametrize("backend", BACKENDS)
def test_noncontiguous_inputs(fns, gns, backend):
    fn, gn = fns[backend], gns[backend]
    rng = np.random.default_rng(11)
    big_x, big_y = rng.uniform(-2, 2, 4002), rng.uniform(0.5, 2, 4002)
    xs, ys = big_x[::2], big_y[::2]
    assert not xs.flags.c_contiguous
    v1, g1 = fn.value_and_grad(xs, ys)
    v2, g2 = fn.value_and_grad(xs.copy(), ys.copy())
    assert_same(v1, v2)
    assert_same(g1, g2)
    assert_same(fn(xs, ys[::-1]), fn(xs.copy(), ys[::-1].copy()))
    # array arguments: Fortran order, strided rows, transposed views
    W = rng.normal(size=(2001, 3))
    ref_v, ref_g = gn.value_and_grad(W, xs, ys)
    spread = np.zeros((3, 2 * len(W)))
    spread[:, ::2] = W.T
    for Wv in (np.asfortranarray(W), np.repeat(W, 2, axis=0)[::2], spread[:, ::2].T):
        assert np.array_equal(Wv, W) and not Wv.flags.c_contiguous
        v, g = gn.value_and_grad(Wv, xs, ys)
        assert_same(v, ref_v)
        assert_same(g, ref_g)
    # a strided 1-D array argument at a single point
    wb = np.array([0.3, 99.0, -0.4, 99.0, 1.1])
    v, g = gn.value_and_grad(wb[::2], 0.5, -1.5)
    ref = gn.value_and_grad(np.array([0.3, -0.4, 1.1]), 0.5, -1.5)
    assert v == ref[0] and np.array_equal(g, ref[1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_reduce_sum_and_mean(fns, gns, backend):
    fn, gn = fns[backend], gns[backend]
    xs, ys, W = _batch_inputs(1000 if backend != "python" else 200, seed=21)
    for f, args in ((fn, (xs, ys)), (gn, (W, xs, ys))):
        values, grads = f.value_and_grad(*args)
        for how, np_fn in (("sum", np.sum), ("mean", np.mean)):
            v, g = f.value_and_grad(*args, reduce=how)
            assert type(v) is float and g.shape == grads.shape[1:] and g.dtype == np.float64
            assert v == pytest.approx(float(np_fn(values)), rel=1e-12, abs=1e-12)
            np.testing.assert_allclose(g, np_fn(grads, axis=0), rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(f.grad(*args, reduce=how), g, rtol=0, atol=0)
    # n == 1: the reduction is the value itself
    v, g = fn.value_and_grad(xs[:1], ys[:1], reduce="mean")
    ref = fn.value_and_grad(float(xs[0]), float(ys[0]))
    assert_batch(v, ref[0])
    assert_batch(g, ref[1])


@pytest.mark.parametrize("backend", NATIVE)
def test_empty_batch(fns, backend):
    v, g = fns[backend].value_and_grad(np.empty(0), np.empty(0))
    assert v.shape == (0,) and g.shape == (0, 2)
    assert fns[backend](np.empty(0), np.empty(0)).shape == (0,)


# ===================================================================================
# 4. Fast path (the call glue, on llvm and numba) vs the checked path
# ===================================================================================

class _Counting:
    """Counts a kernel's checked-path calls (the glue calls the native code directly)."""

    def __init__(self, kernel, monkeypatch):
        self.calls = 0
        run = kernel.run

        def counted(args):
            self.calls += 1
            return run(args)
        monkeypatch.setattr(kernel, "run", counted)


def _has_glue(fn) -> bool:
    from compiler import pyglue

    fast = type(fn.value_and_grad).__name__ == "builtin_function_or_method"
    assert fast == (fn.backend != "python" and pyglue.supported())   # native: glue where allowed
    return fast


SCALAR_FORMS = [
    ("numpy float64", lambda a: np.float64(a)),
    ("numpy float32", lambda a: np.float32(a)),
    ("int", lambda a: int(a)),
    ("numpy int64", lambda a: np.int64(a)),
    ("0-d array", lambda a: np.array(a)),
]


def _check_result_types(v, g, k):
    assert type(v) is float
    assert type(g) is np.ndarray and g.dtype == np.float64 and g.shape == (k,)


@pytest.mark.parametrize("backend", BACKENDS)
def test_scalar_argument_forms_give_identical_numbers(fns, backend, monkeypatch):
    fn = fns[backend]
    fast = _has_glue(fn)
    fn(0.5, 0.5)                           # the forward kernel is compiled on first use
    counted_vg, counted_fw = _Counting(fn._vg, monkeypatch), _Counting(fn._fw, monkeypatch)
    for px, py in [(1.0, 2.0), (-1.0, 3.0), (0.0, 1.0)]:   # exact in every form
        v0, g0 = fn.value_and_grad(px, py)
        f0 = fn(px, py)
        _check_result_types(v0, g0, 2)
        assert type(f0) is float and f0 == v0
        assert counted_vg.calls == (0 if fast else 1) and counted_fw.calls == (0 if fast else 1)
        counted_vg.calls = counted_fw.calls = 0
        for label, form in SCALAR_FORMS:
            for args in ((form(px), form(py)), (px, form(py)), (form(px), py)):
                v, g = fn.value_and_grad(*args)
                _check_result_types(v, g, 2)
                assert v == v0 and np.array_equal(g, g0), label
                f = fn(*args)
                assert type(f) is float and f == f0, label
                assert np.array_equal(fn.grad(*args), g0)
                on_fast_path = fast and label == "numpy float64"   # np.float64 is a float
                assert (counted_vg.calls, counted_fw.calls) == ((0, 0) if on_fast_path else (2, 1)), label
                counted_vg.calls = counted_fw.calls = 0
    assert fn(True, False) == fn(1.0, 0.0)
    # results are fresh arrays: a later call does not overwrite an earlier gradient
    g1 = fn.grad(1.0, 2.0)
    keep = g1.copy()
    fn.value_and_grad(-3.0, 0.5)
    fn.grad(np.float64(2.5), 1)
    assert_same(g1, keep)
    assert fn.value_and_grad(np.bool_(True), 2)[0] == fn.value_and_grad(1.0, 2.0)[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_array_argument_forms_give_identical_numbers(gns, backend, monkeypatch):
    gn = gns[backend]
    fast = _has_glue(gn)
    gn(np.ones(3), 0.5, 0.5)               # the forward kernel is compiled on first use
    counted = _Counting(gn._vg, monkeypatch)
    wv = [1.0, -2.0, 4.0]
    v0, g0 = gn.value_and_grad(np.array(wv), 1.5, -0.5)
    _check_result_types(v0, g0, 3)
    assert counted.calls == (0 if fast else 1)
    fast_forms = [np.array(wv)[::1], np.array([wv[0], 7.0, wv[1], 7.0, wv[2]])[::2]]
    slow_forms = [wv, tuple(wv), np.array(wv, dtype=np.float32), np.array([1, -2, 4]),
                  [1, -2, 4], np.array(wv).astype(">f8"), [np.float64(v) for v in wv]]
    for form in fast_forms:
        counted.calls = 0
        v, g = gn.value_and_grad(form, 1.5, -0.5)
        _check_result_types(v, g, 3)
        assert v == v0 and np.array_equal(g, g0)
        assert counted.calls == (0 if fast else 1)
        assert gn(form, 1.5, -0.5) == v0
    for form in slow_forms:
        for rest in ((1.5, -0.5), (np.float64(1.5), -0.5), (1.5, np.array(-0.5))):
            counted.calls = 0
            v, g = gn.value_and_grad(form, *rest)
            _check_result_types(v, g, 3)
            assert v == v0 and np.array_equal(g, g0), repr(form)
            assert counted.calls == 1
            f = gn(form, *rest)
            assert type(f) is float and f == v0
    # ints for the scalar arguments too
    v, g = gn.value_and_grad([1, -2, 4], 3, -1)
    ref = gn.value_and_grad(np.array(wv), 3.0, -1.0)
    assert v == ref[0] and np.array_equal(g, ref[1])


# ===================================================================================
# 5. Numba interop: the llvm kernel called from the user's own @njit code
# ===================================================================================

def test_numba_function_in_njit_loops(fns):
    fn = fns["llvm"]
    kernel = fn.native.numba_function

    @numba.njit
    def serial(inp, out):
        for i in range(inp.shape[0]):
            kernel(inp[i].ctypes, out[i].ctypes)

    @numba.njit(parallel=True)
    def parallel(inp, out):
        for i in numba.prange(inp.shape[0]):
            kernel(inp[i].ctypes, out[i].ctypes)

    @numba.njit
    def one(inp, out):
        kernel(inp.ctypes, out.ctypes)

    xs, ys, _ = _batch_inputs(5000, seed=31)
    inp = np.ascontiguousarray(np.stack([xs, ys], axis=1))
    out_s, out_p = np.empty((5000, 3)), np.empty((5000, 3))
    serial(inp, out_s)
    parallel(inp, out_p)
    v, g = fn.value_and_grad(xs, ys)
    for out in (out_s, out_p):
        assert_batch(v, out[:, 0])
        assert_batch(g, out[:, 1:])
    o = np.empty(3)
    one(np.array([0.25, -1.5]), o)
    v, g = fns["numba"].value_and_grad(0.25, -1.5)
    assert o[0] == v and np.array_equal(o[1:], g)


# ===================================================================================
# 6. Hessian
# ===================================================================================

H = x**3 * sp.sin(y) + sp.exp(x * y / 2) + sp.log(1 + x**2 + y**2) + sg.sigmoid(x - 2 * y)
H_POINTS = [(0.3, 0.7), (-1.2, 0.4), (1.5, -2.0)]


@pytest.fixture(scope="module")
def hessian_refs():
    sg_h = sg.hessian(H, [x, y])
    sp_h = sp.hessian(H, (x, y))
    refs = []
    for px, py in H_POINTS:
        at = {x: sp.Float(px, 30), y: sp.Float(py, 30)}
        a = np.array(sg_h.evalf(30, subs=at).tolist(), dtype=float)
        b = np.array(sp_h.evalf(30, subs=at).tolist(), dtype=float)
        np.testing.assert_allclose(a, b, rtol=1e-14)
        refs.append(b)
    return refs


@pytest.mark.parametrize("backend", BACKENDS)
def test_hessian_matches_sympy_and_finite_differences(hessian_refs, backend):
    fn = sg.compile(H, [x, y], backend=backend)
    for (px, py), ref in zip(H_POINTS, hessian_refs):
        h = fn.hessian(px, py)
        assert h.shape == (2, 2) and h.dtype == np.float64
        np.testing.assert_allclose(h, ref, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(h, h.T, rtol=1e-14)
        fd = np.empty((2, 2))
        for j, (dx, dy) in enumerate(((1, 0), (0, 1))):
            step = 1e-5 * max(1.0, abs(px if dx else py))
            fd[:, j] = (fn.grad(px + dx * step, py + dy * step)
                        - fn.grad(px - dx * step, py - dy * step)) / (2 * step)
        np.testing.assert_allclose(h, fd, rtol=1e-6, atol=1e-8)
    xs = np.array([p[0] for p in H_POINTS] * 3)
    ys = np.array([p[1] for p in H_POINTS] * 3)
    hb = fn.hessian(xs, ys)
    assert hb.shape == (9, 2, 2)
    for i in range(9):
        (assert_close if backend == "python" else assert_batch)(
            hb[i], fn.hessian(float(xs[i]), float(ys[i])))


def test_hessian_identical_across_backends_and_array_args(gns):
    hs = [sg.compile(H, [x, y], backend=b).hessian(0.3, 0.7) for b in BACKENDS]
    assert_same(hs[0], hs[1])
    assert_close(hs[1], hs[2])
    ref = sp.hessian(G, w)
    at = {x: 1.5, y: -0.5, w[0]: 0.5, w[1]: -1.0, w[2]: 2.0}
    ref = np.array(ref.evalf(30, subs=at).tolist(), dtype=float)
    per_backend = []
    for b in BACKENDS:
        h = gns[b].hessian(np.array([0.5, -1.0, 2.0]), 1.5, -0.5)
        assert h.shape == (3, 3)
        np.testing.assert_allclose(h, ref, rtol=1e-12, atol=1e-14)
        per_backend.append(h)
        hb = gns[b].hessian(np.array([[0.5, -1.0, 2.0]] * 4), np.full(4, 1.5), -0.5)
        assert hb.shape == (4, 3, 3)
        assert_same(hb[2], h)
    assert_same(per_backend[0], per_backend[1])
    assert_close(per_backend[1], per_backend[2])


# ===================================================================================
# 7. Pickling (same process and a fresh one), 8. llvm disk cache across processes
# ===================================================================================

PK_SRC = "sp.exp(-x**2 / 3) * sp.cos(3 * y) + sg.softplus(x * y) + x / 7 + sp.atan(x - y)"
PK_EXPR = eval(PK_SRC)
PK_POINTS = [(0.25, -1.5), (1.75, 0.125)]


def _numbers(fn):
    rows = []
    for p in PK_POINTS:
        v, g = fn.value_and_grad(*p)
        rows.append([repr(v), [repr(float(t)) for t in g], repr(fn(*p))])
    return rows


def _run_python(script: str, cache: Path) -> str:
    env = dict(os.environ, SYMGRAD_CACHE_DIR=str(cache))
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, check=False,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_pickle_roundtrip_same_process(fns, gns, backend):
    for fn, args in ((fns[backend], (0.25, -1.5)),
                     (gns[backend], (np.array([0.5, -1.0, 2.0]), 1.5, -0.5))):
        clone = pickle.loads(pickle.dumps(fn))
        assert clone.backend == fn.backend == backend
        assert clone.source == fn.source
        v, g = fn.value_and_grad(*args)
        v2, g2 = clone.value_and_grad(*args)
        assert v == v2 and np.array_equal(g, g2)
        assert fn(*args) == clone(*args)


def test_pickle_in_a_fresh_process_loads_from_disk_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMGRAD_CACHE_DIR", str(tmp_path))
    compiled = {b: sg.compile(PK_EXPR, [x, y], backend=b) for b in BACKENDS}
    expected = {b: _numbers(f) for b, f in compiled.items()}   # numba compiles (and caches) here
    assert expected["numba"] == expected["llvm"]
    blob = tmp_path / "fns.pkl"
    blob.write_bytes(pickle.dumps(compiled))
    script = textwrap.dedent(f"""
        import json, pickle
        fns = pickle.loads(open({str(blob)!r}, "rb").read())
        out = {{}}
        for b, fn in fns.items():
            rows = []
            for p in {PK_POINTS!r}:
                v, g = fn.value_and_grad(*p)
                rows.append([repr(v), [repr(float(t)) for t in g], repr(fn(*p))])
            out[b] = [fn.backend, fn.cache_reused, fn.cache_hits, rows]
        print(json.dumps(out))
    """)
    got = json.loads(_run_python(script, tmp_path).strip().splitlines()[-1])
    for b in BACKENDS:
        backend, reused, hits, rows = got[b]
        assert backend == b
        assert rows == expected[b], b
        if b != "python":
            assert reused is True, b          # the kernel came from the disk cache
            assert hits >= 1, b


def test_llvm_disk_cache_across_processes(tmp_path):
    script = textwrap.dedent(f"""
        import json, sympy as sp, symgrad as sg
        x, y = sp.symbols("x y")
        fn = sg.compile(3 * ({PK_SRC}), [x, y], backend="llvm")
        rows = [[repr(v) for v in (fn(*p), fn.value_and_grad(*p)[0], *fn.grad(*p))]
                for p in {PK_POINTS!r}]
        print(json.dumps([fn.cache_reused, fn.cache_hits, str(fn.cache_path), fn.llvm_ir, rows]))
    """)
    first, second = (json.loads(_run_python(script, tmp_path).strip().splitlines()[-1])
                     for _ in range(2))
    assert first[0] is False and first[1] == 0
    assert second[0] is True and second[1] == 1      # one object: gradient and forward kernels
    assert first[2] == second[2] and Path(first[2]).parent == tmp_path and Path(first[2]).exists()
    assert first[3] == second[3] and "define void @value_and_grad" in first[3]
    assert first[4] == second[4]
    # and the numbers are those of this process
    fn = sg.compile(PK_EXPR * 3, [x, y], backend="llvm")
    mine = [[repr(v) for v in (fn(*p), fn.value_and_grad(*p)[0], *fn.grad(*p))] for p in PK_POINTS]
    assert mine == first[4]
    assert fn.llvm_ir == first[3]


def test_second_process_loads_objects_without_printing_ir(tmp_path):
    """Objects of built-in ops are named after the SSA program (and the compiler's
    source), so a warm process never prints LLVM text; a user op's template is the
    user's code, so its objects are named after their text: a process that
    registers the same op name with another forward gets its own numbers."""
    script = textwrap.dedent("""
        import json, math, sys, sympy as sp, symgrad as sg
        from compiler import llvmscalar
        printed = []
        real = llvmscalar.llvm_module
        llvmscalar.llvm_module = lambda *a, **k: printed.append(1) or real(*a, **k)
        import compiler.llvmjit as lj
        lj.llvm_module = llvmscalar.llvm_module
        x, y = sp.symbols("x y")
        k = float(sys.argv[1])
        op = sp.Function("scaled_sin")
        sg.register_op(op, forward=lambda a: k * math.sin(a),
                       partials=lambda out, a: (k * sp.cos(a),))
        fn = sg.compile(x * sp.tanh(y) + sp.exp(-x * y), [x, y], backend="llvm")
        n_builtin = len(printed)
        gn = sg.compile(op(x) * y, [x, y], backend="llvm")
        print(json.dumps([n_builtin, len(printed) - n_builtin, fn(0.5, 1.5),
                          list(fn.grad(0.5, 1.5)), gn(0.5, 1.5)]))
    """)

    def run(k):
        env = dict(os.environ, SYMGRAD_CACHE_DIR=str(tmp_path))
        proc = subprocess.run([sys.executable, "-c", script, str(k)], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])
    cold, warm, other = run(2.0), run(2.0), run(3.0)
    assert cold[0] == 1 and warm[0] == 0 and other[0] == 0     # the built-in formula's text
    assert cold[1] >= 1 and warm[1] >= 1                       # user op: always printed
    v = 0.5 * math.tanh(1.5) + math.exp(-0.75)
    for r in (cold, warm, other):
        assert r[2] == pytest.approx(v, rel=1e-15)
        assert r[3] == pytest.approx([math.tanh(1.5) - 1.5 * math.exp(-0.75),
                                      0.5 * (1 - math.tanh(1.5) ** 2) - 0.5 * math.exp(-0.75)],
                                     rel=1e-14)
    assert cold[4] == warm[4] == pytest.approx(2.0 * math.sin(0.5) * 1.5, rel=1e-15)
    assert other[4] == pytest.approx(3.0 * math.sin(0.5) * 1.5, rel=1e-15)


# ===================================================================================
# 9. Bad input, through every back end
# ===================================================================================

@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_input(fns, gns, backend):
    fn, gn = fns[backend], gns[backend]
    for call in (fn, fn.value_and_grad, fn.grad, fn.jacobian, fn.hessian):
        with pytest.raises(TypeError, match="expected 2 arguments"):
            call(1.0)
        with pytest.raises(TypeError, match="expected 2 arguments"):
            call(1.0, 2.0, 3.0)
        with pytest.raises(TypeError, match="numeric"):
            call("a", 1.0)
        with pytest.raises(TypeError, match="numeric"):
            call(1.0, b"1")
        with pytest.raises(TypeError, match="numeric"):
            call(1.0, {})
        with pytest.raises(ValueError, match="disagree in length"):
            call(np.ones(3), np.ones(4))
        with pytest.raises(ValueError, match="a number or a 1-D array"):
            call(np.ones((2, 2)), 1.0)
    with pytest.raises(TypeError, match="expected 3 arguments"):
        gn.value_and_grad(np.ones(3), 1.0)
    for bad_w in (np.ones(2), [1.0, 2.0, 3.0, 4.0], np.ones((5, 4)), 1.0):
        with pytest.raises(ValueError, match="length 3|shape"):
            gn.value_and_grad(bad_w, 1.0, 2.0)
    with pytest.raises(ValueError, match="length 3"):
        gn(np.ones(2), 1.0, 2.0)
    with pytest.raises(TypeError, match="numeric"):
        gn(["a", "b", "c"], 1.0, 2.0)
    with pytest.raises(ValueError, match="disagree in length"):
        gn.value_and_grad(np.ones((3, 3)), np.ones(4), 1.0)
    for args in ((1.0, 2.0), (np.ones(3), np.ones(3))):
        with pytest.raises(ValueError, match="reduce"):
            fn.value_and_grad(*args, reduce="max")
        with pytest.raises(ValueError, match="reduce"):
            fn.grad(*args, reduce="max")
    multi = sg.compile([x * y, x + y], [x, y], backend=backend)
    for what in ("hessian", "value_and_grad", "grad"):
        with pytest.raises(ValueError, match="single scalar output"):
            getattr(multi, what)(1.0, 2.0)
    assert multi.jacobian(1.0, 2.0).tolist() == [[2.0, 1.0], [1.0, 1.0]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_none_argument_is_rejected(fns, backend):
    with pytest.raises(TypeError, match="numeric"):
        fns[backend](2.0, None)


# ===================================================================================
# 10. A 100k-statement program
# ===================================================================================

def _mlp_loss_unevaluated(nin, nouts, l2=1e-4, seed=0):
    """``symgrad.testing.mlp_loss(nin, nouts)`` (one sample, same parameters, inputs
    and label), built with ``evaluate=False`` nodes: SymPy's automatic evaluation
    (assumption queries on every product, the L2 factor distributed over 11k
    terms) takes ~15 s of ``mlp_loss``'s build; this takes under a second."""
    rng = random.Random(seed)
    layers = mlp_params(nin, nouts)
    params = [p for layer in layers for ws, b in layer for p in (*ws, b)]
    act = [sp.Float(rng.uniform(-2, 2)) for _ in range(nin)]
    label = rng.choice((-1, 1))
    for li, layer in enumerate(layers):
        out = []
        for ws, b in layer:
            z = sp.Add(*[sp.Mul(wi, a, evaluate=False) for wi, a in zip(ws, act)], b,
                       evaluate=False)
            out.append(sg.relu(z, evaluate=False) if li < len(layers) - 1 else z)
        act = out
    hinge = sg.relu(sp.Add(sp.S.One, sp.Mul(sp.Integer(-label), act[0], evaluate=False),
                           evaluate=False), evaluate=False)
    reg = [sp.Mul(sp.Float(l2), sp.Pow(p, 2, evaluate=False), evaluate=False) for p in params]
    return sp.Add(hinge, *reg, evaluate=False), params


@pytest.mark.slow
def test_100k_statement_mlp_matches_tape():
    loss, params = _mlp_loss_unevaluated(2, [103, 103, 1])
    fn = sg.compile(loss, [list(params)])
    assert fn.backend == "llvm"
    assert len(fn.ir) >= 100_000
    rng = np.random.default_rng(2024)
    P = rng.uniform(-0.5, 0.5, size=(3, len(params)))
    values, grads = fn.value_and_grad(P)          # batched: 3 parameter vectors
    assert values.shape == (3,) and grads.shape == (3, len(params))
    p = P[0]
    v, g = fn.value_and_grad(p)
    assert v == values[0] and np.array_equal(g, grads[0])
    assert fn(p) == v
    tv, tg = sg.tape.replay(loss, dict(zip(params, p.tolist())))
    assert v == pytest.approx(tv, rel=1e-10)
    np.testing.assert_allclose(g, [tg[s] for s in params], rtol=1e-10, atol=1e-14)
    assert np.count_nonzero(g) > len(params) // 2   # the relus do not kill the whole test
