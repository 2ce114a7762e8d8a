"""User ops registered through the public API compile on every back end.

Each test registers ops under names of its own (the op table is global) and
checks compiled numbers against independent ones: closed forms with NumPy,
the tape engine (``sg.tape.replay``) and finite differences.
"""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

import symgrad as sg
from compiler import ops
from compiler.llvmjit import load_vector, simd_math
from compiler.llvmsimd import vector_module
from compiler.ops.user import NativeForwardError, native_symbol
from symgrad.check import finite_differences
from symgrad.ops import registry
from symgrad.tape import replay

x, y = sp.symbols("x y")
BACKENDS = ("python", "numba", "llvm")
_COUNT = itertools.count()

# softsign(u) = u / (1 + |u|), softsign'(u) = 1 / (1 + |u|)**2
POINTS = np.array([-7.5, -2.0, -0.3, -0.0, 0.0, 1e-300, 0.25, 1.0, 3.0, 1e6])


def softsign_np(u):
    return u / (1.0 + np.abs(u))


def dsoftsign_np(u):
    return 1.0 / (1.0 + np.abs(u))**2


_unregister = sg.unregister_op


@pytest.fixture
def fresh():
    """``fresh(prefix)`` -> a SymPy function with a name no other test uses;
    its op (and the back-end records the test made) are removed afterwards,
    so tests that walk every primitive never see them."""
    names = []
    records = set(ops.names())

    def make(prefix: str):
        name = f"{prefix}_{next(_COUNT)}_t"
        names.append(name)
        return sp.Function(name)
    yield make
    for name in names:
        _unregister(name)
    for name in set(ops.names()) - records:
        ops._TABLE.pop(name)


def _softsign_decomposed(fresh):
    head = fresh("softsign_dec")
    return head, sg.register_op(head, decompose=lambda a: a / (1 + sp.Abs(a)))


def _softsign_forward(fresh):
    head = fresh("softsign_fw")
    return head, sg.register_op(head, forward=lambda a: a / (1.0 + abs(a)),
                                partials=lambda out, a: (1 / (1 + sp.Abs(a))**2,))


KINDS = {"decompose": _softsign_decomposed, "forward": _softsign_forward}


# --- formulas: every back end, single points and batches --------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", tuple(KINDS))
def test_softsign_compiles_on_every_backend(kind, backend, fresh):
    head, op = KINDS[kind](fresh)
    f_expr = head(x * y) + x
    f = sg.compile(f_expr, [x, y], backend=backend)
    assert f.backend == backend
    yv = 0.7
    for xv in POINTS:
        u = xv * yv
        want = softsign_np(u) + xv
        want_grad = [dsoftsign_np(u) * yv + 1.0, dsoftsign_np(u) * xv]
        # the derived partial is the decomposition's derivative as written,
        # 1/(1+|u|) - u*sign(u)/(1+|u|)**2: it cancels, losing ~|u| ulp
        rtol = 1e-14 * (1 + abs(u)) if kind == "decompose" else 1e-14
        assert f(xv, yv) == pytest.approx(want, rel=1e-15, abs=1e-300)
        value, grad = f.value_and_grad(xv, yv)
        assert value == pytest.approx(want, rel=1e-15, abs=1e-300)
        np.testing.assert_allclose(grad, want_grad, rtol=rtol, atol=1e-300)
        # the tape engine (op.forward and the partials) agrees
        tv, tg = replay(f_expr, {x: xv, y: yv})
        assert tv == pytest.approx(want, rel=1e-15, abs=1e-300)
        np.testing.assert_allclose([tg[x], tg[y]], want_grad, rtol=rtol, atol=1e-300)
    for xv in (-1.3, 0.4, 2.5):   # away from the kink: finite differences
        fd = finite_differences(f_expr, [x, y], {x: xv, y: yv})
        np.testing.assert_allclose(f.grad(xv, yv), fd, rtol=1e-7)
    # batched: n points at once (the SIMD kernel on native back ends)
    xs = np.linspace(-5.0, 5.0, 203)
    ys = np.cos(xs)
    np.testing.assert_allclose(f(xs, ys), softsign_np(xs * ys) + xs, rtol=1e-15, atol=1e-300)
    values, grads = f.value_and_grad(xs, ys)
    np.testing.assert_allclose(values, softsign_np(xs * ys) + xs, rtol=1e-15, atol=1e-300)
    d = dsoftsign_np(xs * ys)
    np.testing.assert_allclose(grads, np.stack([d * ys + 1.0, d * xs], axis=1), rtol=1e-14,
                               atol=1e-300)


@pytest.mark.parametrize("kind", tuple(KINDS))
def test_simd_batch_kernel(kind, fresh):
    """The SIMD kernel batched native calls use: vector instructions where the
    parts have them (decompose), one native call per lane (forward)."""
    head, op = KINDS[kind](fresh)
    f = sg.compile(head(x) * y, [x, y], backend="llvm")
    kernel = load_vector(f.ir)
    assert kernel is not None
    xs = np.concatenate([POINTS, np.linspace(-3, 3, 37)])
    ys = np.full_like(xs, 2.0)
    out = kernel([(xs, 0, 1), (ys, 0, 1)], xs.size)    # (value, d/dx, d/dy) per point
    np.testing.assert_allclose(out[0], softsign_np(xs) * 2.0, rtol=1e-15, atol=1e-300)
    np.testing.assert_allclose(out[2], softsign_np(xs), rtol=1e-15, atol=1e-300)
    # the derived partial cancels (see above): ~|x| ulp
    rtol = 1e-14 * (1 + np.abs(xs)) if kind == "decompose" else 1e-14
    want = dsoftsign_np(xs) * 2.0
    assert np.all(np.abs(out[1] - want) <= rtol * np.abs(want)), np.max(np.abs(out[1] / want - 1))
    simd = simd_math()
    vec = f"<{simd.lanes} x double>"
    text = vector_module(f.ir_forward, "K", simd)
    prim = ops.get(op.impl)
    if kind == "decompose":
        assert prim.vector == "exact"
        assert f"fdiv {vec}" in text and f"llvm.fabs.v{simd.lanes}f64" in text
        assert "call double" not in text          # nothing lane by lane
    else:
        assert prim.vector == "lanes"
        symbol = native_symbol(op.impl)
        assert text.count(f"call double @{symbol}(double") == simd.lanes


def test_decompose_two_arguments_with_transcendental_parts(fresh):
    head = fresh("mix2")
    sg.register_op(head, decompose=lambda a, b: a * sp.exp(-b) + sp.log(1 + a**2))
    assert ops.get(sg.get_op(head.__name__).impl).vector == "libmvec"   # exp, log: libmvec
    expr = head(x, y * x)
    pts = [(0.5, 0.3), (-1.2, 2.0), (2.0, -0.4)]
    for backend in BACKENDS:
        f = sg.compile(expr, [x, y], backend=backend)
        for xv, yv in pts:
            b = yv * xv
            want = xv * math.exp(-b) + math.log(1 + xv * xv)
            da = math.exp(-b) + 2 * xv / (1 + xv * xv)        # d/da
            db = -xv * math.exp(-b)                            # d/db
            want_grad = [da + db * yv, db * xv]
            value, grad = f.value_and_grad(xv, yv)
            assert value == pytest.approx(want, rel=1e-14)
            np.testing.assert_allclose(grad, want_grad, rtol=1e-13)
            np.testing.assert_allclose(grad, finite_differences(expr, [x, y], {x: xv, y: yv}),
                                       rtol=1e-7)
        xs = np.linspace(-2, 2, 41)
        np.testing.assert_allclose(f(xs, 0.5), xs * np.exp(-0.5 * xs) + np.log(1 + xs**2),
                                   rtol=1e-14)


def test_decompose_gives_forward_partials_and_tape_method(fresh):
    head, op = _softsign_decomposed(fresh)
    assert op.arity == 1
    assert op.forward(3.0) == 0.75 and op.forward(-1.0) == -0.5
    d = sg.derivative(head(x), x)
    for xv in (-2.0, 0.5, 4.0):
        assert float(d.subs(x, xv)) == pytest.approx(float(dsoftsign_np(xv)), rel=1e-15)
    v = sg.Value(-3.0)
    out = getattr(v, head.__name__)()
    out.backward()
    assert (out.data, v.grad) == (pytest.approx(-0.75), pytest.approx(1 / 16))


def test_explicit_partials_win_over_derived_ones(fresh):
    head = fresh("scaled")
    # deliberately 2x the true derivative: the given rule must be the one used
    sg.register_op(head, decompose=lambda a: a**3, partials=lambda out, a: (6 * a**2,))
    f = sg.compile(head(x), [x], backend="python")
    assert f(2.0) == 8.0 and f.grad(2.0)[0] == 24.0


def test_changed_forward_never_reuses_compiled_code(fresh):
    """The record name (and so the native symbol, the generated source and the
    cache keys) follows the forward's code: a changed forward is recompiled."""
    head = fresh("scale")
    rule = dict(partials=lambda out, a: (3,))
    first = sg.register_op(head, forward=lambda a: 3.0 * a, **rule)
    again = sg.register_op(head, forward=lambda a: 3.0 * a, replace=True, **rule)
    assert again.impl == first.impl
    values = {}
    for c in (3.0, 5.0):
        op = sg.register_op(head, forward=lambda a, c=c: c * a, replace=True,
                            partials=lambda out, a: (3,))
        values[op.impl] = [sg.compile(head(x), [x], backend=b)(2.0) for b in BACKENDS]
    assert sorted(values.values()) == [[6.0] * 3, [10.0] * 3]
    for c in (3, 5):
        sg.register_op(head, decompose=lambda a, c=c: c * a, replace=True)
        assert [sg.compile(head(x), [x], backend=b)(2.0) for b in BACKENDS] == [2.0 * c] * 3


def test_llvm_ir_names_a_symbol_not_an_address(fresh):
    head, op = _softsign_forward(fresh)
    from compiler.llvmscalar import llvm_module

    f = sg.compile(head(x), [x], backend="llvm")
    text = llvm_module(f.ir_forward, "K")
    symbol = native_symbol(op.impl)
    assert f"declare double @{symbol}(double)" in text
    assert "inttoptr" not in text and not re.search(r"\b\d{9,}\b", text)
    assert symbol.startswith(f"symgrad_op_{head.__name__}_")


def _cube_helper(a: float) -> float:
    return a * a * a


def test_forward_calling_helpers_and_builtins(fresh):
    """A forward may call plain functions of its own module (compiled with it)
    and functions Numba knows (``math.hypot``)."""
    cube, hyp = fresh("cube_helper"), fresh("hypot_builtin")
    sg.register_op(cube, forward=lambda a: _cube_helper(a) + 1.0,
                   partials=lambda out, a: (3 * a**2,))
    sg.register_op(hyp, forward=math.hypot, partials=lambda out, a, b: (a / out, b / out))
    expr = cube(x) * hyp(x, y)
    for backend in BACKENDS:
        f = sg.compile(expr, [x, y], backend=backend)
        for xv, yv in ((0.5, 1.5), (-2.0, 0.3)):
            r = math.hypot(xv, yv)
            want = (xv**3 + 1) * r
            want_grad = [3 * xv**2 * r + (xv**3 + 1) * xv / r, (xv**3 + 1) * yv / r]
            value, grad = f.value_and_grad(xv, yv)
            assert value == pytest.approx(want, rel=1e-14)
            np.testing.assert_allclose(grad, want_grad, rtol=1e-13)
        xs = np.linspace(-1, 1, 11)
        np.testing.assert_allclose(f(xs, 2.0), (xs**3 + 1) * np.hypot(xs, 2.0), rtol=1e-14)


def test_an_uncompilable_forward_breaks_nothing_else(fresh):
    """Listing what SIMD kernels need from libm never compiles a forward, so a
    tape-only op with a forward Numba rejects leaves other kernels alone."""
    head = fresh("tape_only")
    op = sg.register_op(head, forward=lambda a: float(sp.gamma(a)), partials=lambda out, a: (0,))
    from compiler.ops import user

    assert ops.libm_calls(op.impl) == ()
    assert op.impl not in user._NATIVE
    f = sg.compile(sp.tanh(x) * y, [x, y], backend="llvm")
    xs = np.linspace(-3, 3, 64)
    np.testing.assert_allclose(f(xs, 2.0), np.tanh(xs) * 2.0, rtol=1e-14)
    assert replay(head(x), {x: 5.0})[0] == 24.0


# --- layer-level models and MLP activations -----------------------------------------------

@pytest.mark.parametrize("kind", tuple(KINDS))
@pytest.mark.parametrize("backend", ("llvm", "numba"))
def test_layer_level_model(kind, backend, fresh):
    head, _ = KINDS[kind](fresh)
    W = sp.MatrixSymbol("W", 3, 2)
    b = sp.MatrixSymbol("b", 3, 1)
    v = sp.MatrixSymbol("v", 2, 1)
    loss = sg.sum_squares((W * v + b).applyfunc(head))
    f = sg.compile(loss, [W, b, v], backend=backend)
    rng = np.random.default_rng(3)
    Wv, bv, vv = rng.normal(size=(3, 2)), rng.normal(size=(3, 1)), rng.normal(size=(2, 1))
    z = Wv @ vv + bv
    s = softsign_np(z)
    value, (gW, gb, gv) = f.value_and_grad(Wv, bv, vv)
    zbar = 2 * s * dsoftsign_np(z)          # backprop by hand
    assert value == pytest.approx(float(np.sum(s**2)), rel=1e-14)
    np.testing.assert_allclose(gW, zbar @ vv.T, rtol=1e-13)
    np.testing.assert_allclose(gb, zbar, rtol=1e-13)
    np.testing.assert_allclose(gv, Wv.T @ zbar, rtol=1e-13)
    assert f(Wv, bv, vv) == pytest.approx(value, rel=1e-14)


@pytest.mark.parametrize("kind", tuple(KINDS))
def test_mlp_activation(kind, fresh):
    head, op = KINDS[kind](fresh)
    assert op.name in sg.nn.activations()
    model = sg.nn.MLP(2, [3, 1], activation=head)
    assert model.activation == op.name
    assert sg.nn.MLP(2, [3, 1], activation=op.name).activation == op.name
    assert repr(model.layers[0].neurons[0]) == f"{op.name[:1].upper()}{op.name[1:]}Neuron(2)"
    rng = np.random.default_rng(5)
    X = rng.normal(size=(6, 2))
    yv = rng.normal(size=6)
    theta = model.init_params(seed=1)
    # reference: the whole loss as one scalar graph on the tape engine
    L = sg.nn.scalar_loss(model, X, yv, loss="mse", l2=0.0)
    ref_loss, tape = replay(L, dict(zip(model.parameters(), theta)))
    ref_grad = np.array([tape[p] for p in model.parameters()])
    step = sg.nn.compile_loss(model, loss="mse")
    loss, grad = step(theta, X, yv)
    assert loss == pytest.approx(ref_loss, rel=1e-13)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-11, atol=1e-15)
    # scores: the compiled predictor against NumPy by hand
    (W0, b0), (W1, b1) = model.unflatten(theta)
    scores = softsign_np(X @ W0.T + b0) @ W1.T + b1
    np.testing.assert_allclose(step.predict(theta, X), scores, rtol=1e-13)
    np.testing.assert_allclose(sg.nn.predict_numpy(model, theta, X), scores, rtol=1e-13)
    # and the scalar graph compiled as a formula
    f = sg.compile(model([x, y])[0], [x, y] + model.parameters(), wrt=[x], backend="llvm")
    assert f(*X[0], *theta) == pytest.approx(scores[0, 0], rel=1e-13)


# --- errors -----------------------------------------------------------------------------------

def test_unknown_impl_is_a_clear_error(fresh):
    head = fresh("noimpl")
    with pytest.raises(ValueError) as info:
        sg.register_op(head, impl="no_such_primitive", partials=lambda out, a: (1,))
    msg = str(info.value)
    assert "no_such_primitive" in msg and head.__name__ in msg
    assert "tanh" in msg and "decompose=" in msg        # lists the names and the fix
    assert head.__name__ not in [o.name for o in sg.all_ops()]


def test_forward_numba_cannot_compile_is_a_clear_error(fresh):
    head = fresh("symbolic_fw")
    sg.register_op(head, forward=lambda a: sp.sin(a), partials=lambda out, a: (sp.cos(a),))
    with pytest.raises(NativeForwardError) as llvm_error:   # llvm: when the IR is written
        sg.compile(head(x) + x, [x], backend="llvm")
    with pytest.raises(NativeForwardError) as numba_error:  # numba: when Numba compiles it
        sg.compile(head(x) + x, [x], backend="numba")(0.5)
    for info in (llvm_error, numba_error):
        msg = str(info.value)
        assert head.__name__ in msg and "decompose=" in msg and "math" in msg
    # the python back end and the tape engine still run it
    assert sg.compile(head(x) + x, [x], backend="python")(0.5) == pytest.approx(math.sin(0.5) + 0.5)
    assert replay(head(x), {x: 0.5})[0] == pytest.approx(math.sin(0.5))


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(forward=lambda a: a, decompose=lambda a: a), ValueError, "decompose= alone"),
    (dict(forward=lambda a: a), TypeError, "partials="),
    (dict(decompose=lambda a: a * y), ValueError, "not one of its arguments"),
    (dict(decompose=lambda a: sp.Function("nowhere_t")(a)), sg.UnsupportedOperation, "nowhere_t"),
    (dict(decompose=lambda a: sp.Matrix([a])), TypeError, "scalar SymPy expression"),
    (dict(decompose=lambda a: a, partials=lambda out, a, b: (1, 1)), ValueError, "disagree"),
    (dict(decompose=lambda *a: a[0]), ValueError, "one by one"),
])
def test_bad_registrations_name_the_problem(kwargs, exc, words, fresh):
    head = fresh("bad")
    with pytest.raises(exc, match=re.escape(words)) as info:
        sg.register_op(head, **kwargs)
    assert head.__name__ in str(info.value)
    assert head.__name__ not in [o.name for o in sg.all_ops()]


def test_unknown_activation_lists_registered_ops(fresh):
    head, op = _softsign_decomposed(fresh)
    with pytest.raises(ValueError, match="activation must be one of") as info:
        sg.nn.MLP(2, [1], activation="no_such_activation")
    assert op.name in str(info.value) and "register_op" in str(info.value)
    with pytest.raises(ValueError, match="activation must be one of"):
        sg.nn.MLP(2, [1], activation=sp.Function("unregistered_act_t"))


# --- the README's example, verbatim -----------------------------------------------------------

README = Path(__file__).resolve().parent.parent / "README.md"
MARKER = "<!-- README example: user ops"


def _readme_block() -> str:
    text = README.read_text()
    start = text.index("```python\n", text.index(MARKER)) + len("```python\n")
    return text[start:text.index("\n```", start)]


def test_readme_user_op_example_runs_as_written(fresh):
    code = _readme_block()
    names = re.findall(r'sp\.Function\("(\w+)"\)', code)
    assert names == ["softsign", "softsign_fw"]
    for name in names:       # a fresh table, as in a new process
        _unregister(name)
    ns: dict = {}
    try:
        exec(compile(code, str(README), "exec"), ns)   # noqa: S102 - our own README
        assert ns["value"] == 2.25 and ns["slope"].tolist() == [0.9375]
        xs = np.linspace(-2.0, 2.0, 1001)
        np.testing.assert_allclose(ns["batch"], softsign_np(xs) * xs, rtol=1e-15)
        assert ns["g"](3.0) == 2.25 and ns["g"].grad(-3.0).tolist() == [-0.9375]
        rng = np.random.default_rng(0)
        Wv, bv, vv = rng.normal(size=(3, 2)), rng.normal(size=(3, 1)), rng.normal(size=(2, 1))
        z = Wv @ vv + bv
        value, (gW, gb, gv) = ns["layer"].value_and_grad(Wv, bv, vv)
        assert value == pytest.approx(float(softsign_np(z).sum()), rel=1e-14)
        np.testing.assert_allclose(gb, dsoftsign_np(z), rtol=1e-13)
        np.testing.assert_allclose(gW, dsoftsign_np(z) @ vv.T, rtol=1e-13)
        model, step = ns["model"], ns["step"]
        theta = model.init_params(seed=0)
        X = rng.normal(size=(4, 2))
        t = rng.normal(size=4)
        loss, grad = step(theta, X, t)
        (W0, b0), (W1, b1) = model.unflatten(theta)
        r = (softsign_np(X @ W0.T + b0) @ W1.T + b1)[:, 0] - t
        assert loss == pytest.approx(float(np.mean(r**2)), rel=1e-13)
        L = sg.nn.scalar_loss(model, X, t, loss="mse", l2=0.0)
        _, tape = replay(L, dict(zip(model.parameters(), theta)))
        np.testing.assert_allclose(grad, [tape[p] for p in model.parameters()], rtol=1e-11,
                                   atol=1e-15)
    finally:
        for name in names:
            _unregister(name)


# --- the disk cache across processes ------------------------------------------------------

_SCRIPT = """
import sys
import sympy as sp, symgrad as sg, numpy as np
C = float(sys.argv[1])
x = sp.Symbol("x")
fw, dec = sp.Function("cached_fw"), sp.Function("cached_dec")
sg.register_op(fw, forward=lambda a: C * a / (1 + abs(a)),
               partials=lambda out, a: (C / (1 + sp.Abs(a))**2,))
sg.register_op(dec, decompose=lambda a: C * a / (1 + sp.Abs(a)))
out = []
for backend in ("llvm", "numba"):
    for head in (fw, dec):
        f = sg.compile(head(x), [x], backend=backend)
        out += [f(3.0), float(f(np.array([3.0, 1.0]))[0]), float(f.grad(3.0)[0])]
print(out)
"""


@pytest.mark.slow
def test_changed_op_in_a_new_process_is_recompiled(tmp_path):
    """Same op names, same cache directory, a changed definition: the second
    process must compute the new numbers (no stale cached object), and a
    third one with the first definition reuses the cache correctly."""
    import ast
    import os
    import subprocess
    import sys

    env = dict(os.environ, SYMGRAD_CACHE_DIR=str(tmp_path))
    script = tmp_path / "user_op_script.py"
    script.write_text(_SCRIPT)

    def run(c: float) -> list:
        done = subprocess.run([sys.executable, str(script), str(c)], env=env, capture_output=True,
                              text=True, timeout=300, check=True)
        return ast.literal_eval(done.stdout.strip().splitlines()[-1])

    for c in (1.0, 2.0, 1.0):
        want = [0.75 * c, 0.75 * c, c / 16] * 4          # c*3/4 and c/(1+3)**2
        assert run(c) == pytest.approx(want, rel=1e-14)
