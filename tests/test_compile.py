"""Compiled functions vs the tape engine, finite differences and the Python back end."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import sympy as sp

import symgrad as sg
from sympy.codegen.cfunctions import expm1, log1p
from symgrad.check import finite_differences

x, y = sp.symbols("x y")
F = x * sp.tanh(y) + sg.relu(x - y) + sp.log(1 + x**2) / y
POINTS = [(1.5, 0.7), (-0.3, 2.1), (0.9, -1.2)]


@pytest.fixture(scope="module")
def fn():
    return sg.compile(F, [x, y])


@pytest.fixture(scope="module")
def fp():
    return sg.compile(F, [x, y], backend="python")


@pytest.mark.parametrize("px,py", POINTS)
def test_value_and_grad_match_tape_and_fd(fn, px, py):
    value, grad = fn.value_and_grad(px, py)
    tape_value, tape_grads = sg.tape.replay(F, {x: px, y: py})
    assert value == pytest.approx(tape_value, rel=1e-12)
    assert grad == pytest.approx([tape_grads[x], tape_grads[y]], rel=1e-12)
    assert grad == pytest.approx(finite_differences(F, [x, y], {x: px, y: py}), rel=1e-6)
    assert fn(px, py) == pytest.approx(value, rel=1e-15)


@pytest.mark.parametrize("px,py", POINTS)
def test_numba_equals_python_backend(fn, fp, px, py):
    v1, g1 = fn.value_and_grad(px, py)
    v2, g2 = fp.value_and_grad(px, py)
    assert v1 == pytest.approx(v2, rel=1e-12)
    np.testing.assert_allclose(g1, g2, rtol=1e-12)


def test_every_op_compiles_and_matches_tape():
    exprs = [sp.exp(sp.sin(x) * y), log1p(x**2) + sp.atan2(y, x), sp.sqrt(1 + x**2) / y,
             sp.Abs(x - 2 * y) + sp.Max(x, y) - sp.Min(x, y * y), sg.sigmoid(x) * sg.softplus(y),
             sp.erf(x) * sp.cosh(y) - sp.sinh(x), sp.asin(sp.tanh(x)) + sp.acos(sp.tanh(y)),
             sp.Piecewise((x**2, x < y), (sp.cos(x), True)), x**y, expm1(x) * sp.tan(y),
             sp.sign(x) * x + sp.floor(y) + sp.ceiling(x)]
    fn = sg.compile(exprs, [x, y])
    fp = sg.compile(exprs, [x, y], backend="python")
    for px, py in [(0.3, 0.8), (1.1, 0.45)]:
        jac = fn.jacobian(px, py)
        np.testing.assert_allclose(jac, fp.jacobian(px, py), rtol=1e-12)
        for i, e in enumerate(exprs):
            value, grads = sg.tape.replay(e, {x: px, y: py})
            assert fn(px, py)[i] == pytest.approx(value, rel=1e-12)
            np.testing.assert_allclose(jac[i], [grads[x], grads[y]], rtol=1e-11, atol=1e-14)


def test_array_argument_and_batching():
    w = sp.symbols("w0:3")
    g = sp.tanh(w[0] * x + w[1] * y + w[2])
    gn = sg.compile(g, [w, x, y], wrt=[w])
    wv = np.array([0.1, -0.2, 0.3])
    value, grad = gn.value_and_grad(wv, 1.5, 0.7)
    assert grad.shape == (3,)
    t = np.tanh(0.1 * 1.5 - 0.2 * 0.7 + 0.3)
    assert value == pytest.approx(t, rel=1e-14)
    np.testing.assert_allclose(grad, (1 - t * t) * np.array([1.5, 0.7, 1.0]), rtol=1e-13)

    xs = np.linspace(-1, 1, 1001)
    ys = np.cos(xs)
    xs_copy, ys_copy, w_copy = xs.copy(), ys.copy(), wv.copy()
    values, grads = gn.value_and_grad(wv, xs, ys)
    assert values.shape == (1001,) and grads.shape == (1001, 3)
    for i in (0, 17, 500, 1000):
        v_i, g_i = gn.value_and_grad(wv, xs[i], ys[i])
        # SIMD batches (libmvec tanh) agree with single points to a few ulp
        assert values[i] == pytest.approx(v_i, rel=1e-14)
        np.testing.assert_allclose(grads[i], g_i, rtol=1e-13)
    # inputs are not modified
    np.testing.assert_array_equal(xs, xs_copy)
    np.testing.assert_array_equal(ys, ys_copy)
    np.testing.assert_array_equal(wv, w_copy)


def test_check_grad_on_compiled(fn):
    report = sg.check_grad(fn, {x: 1.5, y: 0.7})
    assert report.ok
    assert set(report.gradients) == {"compiled", "symbolic", "tape", "finite_diff"}
    assert report.max_rel_err < 1e-8


def test_malicious_symbol_name_executes_nothing(tmp_path):
    canary = tmp_path / "pwned"
    evil = sp.Symbol(f"x); import os; os.system('touch {canary}'); (")
    f = evil**2 + sp.sin(evil)
    for backend in ("python", "numba"):
        fn = sg.compile(f, [evil], backend=backend)
        v, g = fn.value_and_grad(0.5)
        assert v == pytest.approx(0.25 + np.sin(0.5), rel=1e-15)
        assert g[0] == pytest.approx(1.0 + np.cos(0.5), rel=1e-15)
        assert "os.system" not in fn.source
    assert not canary.exists()


def test_bad_calls_raise_named_errors(fn):
    with pytest.raises(TypeError, match="expected 2 arguments"):
        fn(1.0)
    with pytest.raises(TypeError, match="numeric"):
        fn("a", 1.0)
    with pytest.raises(ValueError, match="disagree in length"):
        fn.grad(np.ones(3), np.ones(4))
    w = sp.symbols("w0:3")
    gn = sg.compile(sp.Add(*w) * x, [w, x])
    with pytest.raises(ValueError, match="length 3"):
        gn(np.ones(2), 1.0)
    with pytest.raises(ValueError, match="not in args"):
        sg.compile(x * y, [x])
    with pytest.raises(TypeError, match="Symbol"):
        sg.compile(x, [x**2])
    with pytest.raises(ValueError, match="backend"):
        sg.compile(x, [x], backend="fortran")
    with pytest.raises(ValueError, match="jacobian"):
        sg.compile([x, y], [x, y]).grad(1.0, 2.0)


@pytest.mark.parametrize("backend", ["numba", "llvm"])
def test_generated_code_is_byte_identical_across_processes_and_cached(tmp_path, backend):
    script = (
        "import sympy as sp, symgrad as sg\n"
        "x, y = sp.symbols('x y')\n"
        f"fn = sg.compile(x*sp.tanh(y) + sp.exp(x*y)/(1 + y**2), [x, y], backend='{backend}')\n"
        "fn.value_and_grad(0.5, 0.25)\n"
        "print(fn.cache_reused, fn.cache_hits)\n"
        "print(fn.source)\n")
    env = dict(os.environ, SYMGRAD_CACHE_DIR=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                           text=True, check=True).stdout for _ in range(2)]
    first, second = (r.split("\n", 1) for r in runs)
    # the second process finds the kernel file and loads the machine code from disk
    assert first[0] == "False 0" and second[0] == "True 1"
    assert first[1] == second[1]                          # byte-identical source
    suffix = ".nbi" if backend == "numba" else ".o"       # Numba's index / LLVM's object file
    assert any(p.suffix == suffix for p in tmp_path.rglob("*"))


# -- one pass from the DAG to the IR (symgrad.ssa) -------------------------------------

def _program_path_ir(exprs, flat, wrt):
    """The IR the formula path gives: the SymPy gradient program lowered step by step."""
    from symgrad.diff import _program
    from symgrad.lowering import program_to_ir

    prog = _program(list(exprs), tuple(wrt), multi=len(exprs) > 1)
    grads = [g for row in prog.gradients for g in row]
    slots = {s: i for i, s in enumerate(flat)}
    return program_to_ir(prog, slots, len(flat), list(prog.outputs) + grads, list(prog.outputs))


def _direct_ir(exprs, flat, wrt):
    from symgrad.graph import lower
    from symgrad.ssa import value_and_grad_ir

    return value_and_grad_ir(lower(list(exprs)), {s: i for i, s in enumerate(flat)}, len(flat), wrt)


def _cases():
    a, b = sp.symbols("a b")
    p = sp.Symbol("p", positive=True)
    every_op = [sp.exp(sp.sin(x) * y), log1p(x**2) + sp.atan2(y, x), sp.sqrt(1 + x**2) / y,
                sp.Abs(x - 2 * y) + sp.Max(x, y) - sp.Min(x, y * y), sg.sigmoid(x) * sg.softplus(y),
                sp.erf(x) * sp.cosh(y) - sp.sinh(x), sp.asin(sp.tanh(x)) + sp.acos(sp.tanh(y)),
                sp.Piecewise((x**2, x < y), (sp.cos(x), True)), x**y, expm1(x) * sp.tan(y),
                sp.sign(x) * x + sp.floor(y) + sp.ceiling(x)]
    used_1000_times = sp.Add(*[sp.tanh(x * y) ** k for k in range(1, 1001)])
    from symgrad.testing import mlp_loss

    loss, params = mlp_loss(2, [4, 4, 1])
    return [
        ([F], [x, y], [x, y]),
        (every_op, [x, y], [x, y]),
        ([x * x, 2 * x + 3 * y, x**sp.Rational(1, 3) * sp.sqrt(2) + sp.pi * y], [x, y], [x, y]),
        ([sp.atan2(x, 3) + sp.Max(x, 2) + x**2.5 + p * sp.log(p) + sp.Abs(p) * x], [x, p], [p, x]),
        ([used_1000_times], [x, y], [y]),
        ([sp.Integer(3), a, a * b], [a, b], [b]),
        ([loss], list(params), list(params)),
        # constant adjoints summed and multiplied as SymPy constants (exactly), as the
        # program path does: unevaluated sums of constant multiples
        ([sp.Add(*[sp.Mul(c, x, evaluate=False) for c in (sp.Rational(1, 3), sp.Rational(2, 3),
                                                          sp.sqrt(2))], evaluate=False),
          sp.Mul(sp.Mul(3, x, evaluate=False),
                 sp.Mul(sp.Mul(2, y, evaluate=False), sp.Rational(1, 3), evaluate=False),
                 evaluate=False)], [x, y], [x, y]),
    ]


@pytest.mark.parametrize("case", range(8))
def test_direct_ir_computes_what_the_program_path_computes(case):
    exprs, flat, wrt = _cases()[case]
    old_vg, old_fw = _program_path_ir(exprs, flat, wrt)
    vg, fw = _direct_ir(exprs, flat, wrt)
    assert len(vg) == len(old_vg) and len(fw) == len(old_fw)
    rng = np.random.default_rng(case)
    for _ in range(4):
        pt = list(rng.uniform(0.2, 1.4, len(flat)))
        for new, old in ((vg, old_vg), (fw, old_fw)):
            got, want = new.evaluate(pt), old.evaluate(pt)
            np.testing.assert_array_equal(np.array(got), np.array(want))   # same bits, nan-aware
    # and both agree with the tape engine
    pt = dict(zip(flat, rng.uniform(0.2, 1.4, len(flat))))
    out = vg.evaluate([pt[s] for s in flat])
    m = len(exprs)
    for k, e in enumerate(exprs):
        value, grads = sg.tape.replay(e, pt)
        assert out[k] == pytest.approx(value, rel=1e-12)
        got = out[m + k * len(wrt): m + (k + 1) * len(wrt)]
        np.testing.assert_allclose(got, [grads.get(w, 0.0) for w in wrt], rtol=1e-10, atol=1e-12)


def test_direct_ir_is_deterministic_and_name_independent():
    u, v = sp.symbols("u v")
    exprs, flat, wrt = _cases()[1]
    first = [f.to_bytes() for f in _direct_ir(exprs, flat, wrt)]
    again = [f.to_bytes() for f in _direct_ir(exprs, flat, wrt)]
    renamed = [e.xreplace({x: u, y: v}) for e in exprs]
    other = [f.to_bytes() for f in _direct_ir(renamed, [u, v], [u, v])]
    assert first == again == other


def test_fan_out_accumulates():
    # x*x as one mul with x twice: x_bar = 1*x + 1*x
    vg, _ = _direct_ir([sp.Mul(x, x, evaluate=False)], [x], [x])
    assert vg.evaluate([1.5]) == [2.25, 3.0]
    # tanh(x) used 1000 times: its adjoint is one add of 1000 terms (the sum is the other)
    cs = sp.symbols("c0:1000")
    t = sp.tanh(x)
    vg, _ = _direct_ir([sp.Add(*[t * c for c in cs])], [x, *cs], [x])
    assert sum(1 for ins in vg.instrs if ins.op == "add" and len(ins.args) == 1000) == 2
    point = [0.3] + [k / 1000 for k in range(1000)]
    want = sum(k / 1000 for k in range(1000)) * (1 - math.tanh(0.3) ** 2)
    assert vg.evaluate(point)[1] == pytest.approx(want, rel=1e-13)


def test_program_is_built_only_when_asked_for(monkeypatch):
    monkeypatch.setenv("SYMGRAD_IR_CACHE", "0")
    fn = sg.compile(F, [x, y], backend="python")
    assert fn._program is None
    prog = fn.program                          # built now, from the expressions
    from symgrad.evaluate import evaluate_program

    (value,), (grads,) = evaluate_program(prog, {x: 1.5, y: 0.7})
    v, g = fn.value_and_grad(1.5, 0.7)
    assert value == pytest.approx(v, rel=1e-13)
    np.testing.assert_allclose(grads, g, rtol=1e-12)
    assert fn.program is prog
    assert "def value_and_grad" in fn.source
    h = fn.hessian(1.5, 0.7)                   # reverse over reverse, from the program
    np.testing.assert_allclose(h, np.array(sg.hessian(F, [x, y]).subs({x: 1.5, y: 0.7}),
                                           dtype=float), rtol=1e-10)
