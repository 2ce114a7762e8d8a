"""Layer-level graphs: the matrix chain rule vs scalar expansion, the tape engine,
finite differences and NumPy; golden backprop equations; code size vs width."""

import numpy as np
import pytest
import sympy as sp

import symgrad as sg
from symgrad.matrix import evaluate_layers, expand_scalars, scalar_symbols
from symgrad.matrix.compile import CompiledLayers

RNG = np.random.default_rng(42)
ACTS = {"tanh": lambda Z: Z.applyfunc(sp.tanh), "relu": sg.relu, "sigmoid": sg.sigmoid,
        "softplus": sg.softplus, "linear": lambda Z: Z}


def mlp(sizes, act, n):
    """Layer-level MLP over a batch of n columns: (X, Ws, bs, scores)."""
    X = sp.MatrixSymbol("X", sizes[0], n)
    Ws = [sp.MatrixSymbol(f"W{i}", sizes[i + 1], sizes[i]) for i in range(len(sizes) - 1)]
    bs = [sp.MatrixSymbol(f"b{i}", sizes[i + 1], 1) for i in range(len(sizes) - 1)]
    H = X
    for i, (W, b) in enumerate(zip(Ws, bs)):
        Z = W * H + b * sp.OneMatrix(1, n)
        H = ACTS[act](Z) if i < len(Ws) - 1 else Z
    return X, Ws, bs, H


def loss_of(kind, S, n, k):
    T = sp.MatrixSymbol("T", S.shape[0] if kind in ("mse", "softmax") else 1, n)
    if kind == "mse":
        return sg.msum(sp.HadamardPower(S - T, 2)) / n, T
    if kind == "hinge":
        return sg.msum(sg.relu(sp.OneMatrix(1, n) - sp.HadamardProduct(T, S))) / n, T
    if kind == "logistic":
        return sg.msum(sg.softplus(-sp.HadamardProduct(T, S))) / n, T
    return (sg.msum(sg.column_logsumexp(S)) - sg.msum(sp.HadamardProduct(T, S))) / n, T


def targets(kind, k, n):
    if kind == "mse":
        return RNG.normal(size=(k, n))
    if kind in ("hinge", "logistic"):
        return RNG.choice([-1.0, 1.0], size=(1, n))
    return np.eye(k)[RNG.integers(0, k, n)].T.copy()


def values_for(mats, dims=None):
    return {m: RNG.normal(scale=0.7, size=(m.shape[0] if not isinstance(m.shape[0], sp.Symbol) else dims,
                                           m.shape[1] if not isinstance(m.shape[1], sp.Symbol) else dims))
            for m in mats}


def scalar_reference(loss, vals, wrt, n):
    """Value and gradients from the scalar expansion, via the tape engine and SymPy's
    own scalar path (symgrad's scalar reverse mode), plus finite differences."""
    e = expand_scalars(loss, {sp.Symbol("n"): n})
    point = {}
    for m, v in vals.items():
        for s, x in zip(scalar_symbols(m, {sp.Symbol("n"): n}), v.ravel()):
            point[s] = float(x)
    value, tape = sg.tape.replay(e, point)
    syms = [s for w in wrt for s in scalar_symbols(w)]
    fd = sg.check.finite_differences(e, syms, point)
    return value, tape, fd, syms


@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_dense_chains_match_scalar_expansion_tape_and_fd(act, depth):
    n = 3
    sizes = [2] + [3] * (depth - 1) + [1]
    nsym = sp.Symbol("n")
    X, Ws, bs, S = mlp(sizes, act, nsym)
    loss, T = loss_of("mse", S, nsym, 1)
    wrt = [*Ws, *bs]
    vals = values_for(wrt)
    vals[X] = RNG.normal(size=(2, n))
    vals[T] = RNG.normal(size=(1, n))
    fn = sg.compile(loss, [*wrt, X, T], wrt=wrt)
    value, grads = fn.value_and_grad(*[vals[m] for m in [*wrt, X, T]])
    ref_value, tape, fd, syms = scalar_reference(loss, vals, wrt, n)
    flat = np.concatenate([g.ravel() for g in grads])
    assert value == pytest.approx(ref_value, rel=1e-10)
    np.testing.assert_allclose(flat, [tape[s] for s in syms], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(flat, fd, rtol=1e-5, atol=1e-7)
    assert value == pytest.approx(evaluate_layers(loss, vals), rel=1e-12)


@pytest.mark.parametrize("kind", ["mse", "hinge", "logistic", "softmax"])
@pytest.mark.parametrize("backend", ["llvm", "numba"])
def test_each_loss_matches_scalar_expansion(kind, backend):
    n = 4
    k = 3 if kind in ("softmax", "mse") else 1
    nsym = sp.Symbol("n")
    X, Ws, bs, S = mlp([2, 3, k], "tanh", nsym)
    loss, T = loss_of(kind, S, nsym, k)
    wrt = [*Ws, *bs]
    vals = values_for(wrt)
    vals[X] = RNG.normal(size=(2, n))
    vals[T] = targets(kind, k, n)
    fn = sg.compile(loss, [*wrt, X, T], wrt=wrt, backend=backend)
    value, grads = fn.value_and_grad(*[vals[m] for m in [*wrt, X, T]])
    ref_value, tape, fd, syms = scalar_reference(loss, vals, wrt, n)
    flat = np.concatenate([g.ravel() for g in grads])
    assert value == pytest.approx(ref_value, rel=1e-10)
    np.testing.assert_allclose(flat, [tape[s] for s in syms], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(flat, fd, rtol=1e-5, atol=1e-7)
    for g, w in zip(grads, wrt):
        assert g.shape == w.shape


def test_issue_example_exactly():
    W = sp.MatrixSymbol("W", 16, 2)
    b = sp.MatrixSymbol("b", 16, 1)
    x = sp.MatrixSymbol("x", 2, 1)
    h = (W * x + b).applyfunc(sp.tanh)
    loss = sp.Trace(h.T * h)
    grads = sg.grad(loss, [W, b])
    assert [g.shape for g in grads] == [(16, 2), (16, 1)]
    assert str(sg.gradient_program(loss, [W, b])) == (
        "t0 = W*x\nt1 = b + t0\nt2 = tanh(t1)\nt3 = t2∘t2\nt4 = sum(t3)\n"
        "t2_bar = 2*t2\nt1_bar = t2_bar∘(1 - t2∘t2)\nW_bar = t1_bar*x.T\nb_bar = t1_bar")
    fn = sg.compile(loss, [W, b, x], wrt=[W, b])
    Wv, bv, xv = RNG.normal(size=(16, 2)), RNG.normal(size=(16, 1)), RNG.normal(size=(2, 1))
    value, (gW, gb) = fn.value_and_grad(Wv, bv, xv)
    hv = np.tanh(Wv @ xv + bv)
    zbar = 2 * hv * (1 - hv**2)
    assert value == pytest.approx((hv**2).sum(), rel=1e-14)
    np.testing.assert_allclose(gW, zbar @ xv.T, rtol=1e-13)
    np.testing.assert_allclose(gb, zbar, rtol=1e-13)
    # the SymPy gradient expressions evaluate to the same numbers
    sub = {W: sp.ImmutableMatrix(Wv), b: sp.ImmutableMatrix(bv), x: sp.ImmutableMatrix(xv)}
    np.testing.assert_allclose(np.array(grads[0].xreplace(sub).as_explicit(), dtype=float), gW,
                               rtol=1e-12)
    sg.relu(W * x + b)   # works on matrices too (elementwise)


def test_two_layer_mlp_backprop_equations_golden():
    n = sp.Symbol("n")
    X, Ws, bs, S = mlp([2, 4, 1], "relu", n)
    T = sp.MatrixSymbol("T", 1, n)
    loss = sg.msum(sp.HadamardPower(S - T, 2)) / n
    assert str(sg.gradient_program(loss, [*Ws, *bs])) == "\n".join([
        "t0 = -T",
        "t1 = W0*X",
        "t2 = b0 + t1",
        "t3 = relu(t2)",
        "t4 = W1*t3",
        "t5 = b1 + t0 + t4",
        "t6 = t5∘t5",
        "t7 = sum(t6)",
        "t8 = 1/n*t7",
        "t7_bar = 1/n",
        "t5_bar = 2*t7_bar*t5",
        "b1_bar = sum(t5_bar)",
        "W1_bar = t5_bar*t3.T",
        "t3_bar = W1.T*t5_bar",
        "t2_bar = t3_bar∘Heaviside(t2, 0)",
        "b0_bar = rowsum(t2_bar)",
        "W0_bar = t2_bar*X.T",
    ])


@pytest.mark.parametrize("kind", ["mse", "softmax"])
def test_generated_code_size_is_independent_of_width(kind):
    n = sp.Symbol("n")
    sizes_small = []
    for width in (16, 256):
        X, Ws, bs, S = mlp([8, width, width, 4], "tanh", n)
        loss, T = loss_of(kind, S, n, 4)
        fn = CompiledLayers(loss, [*Ws, *bs, X, T], [*Ws, *bs])
        sizes_small.append((len(fn.array_program), len(fn.source.splitlines())))
    assert sizes_small[0] == sizes_small[1]


def test_stable_losses_at_large_logits():
    n = sp.Symbol("n")
    S = sp.MatrixSymbol("S", 3, n)
    Tm = sp.MatrixSymbol("T", 3, n)
    ce = (sg.msum(sg.column_logsumexp(S)) - sg.msum(sp.HadamardProduct(Tm, S))) / n
    fn = sg.compile(ce, [S, Tm], wrt=[S])
    Sv = np.array([[1e3, -1e3], [0.0, 1e3], [-1e3, 999.0]])
    Tv = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    value, (g,) = fn.value_and_grad(Sv, Tv)
    assert np.isfinite(value) and np.isfinite(g).all()
    assert value == pytest.approx((0.0 + 1.0 + np.log1p(np.exp(-1.0))) / 2, rel=1e-12)
    y = sp.MatrixSymbol("y", 1, n)
    s = sp.MatrixSymbol("s", 1, n)
    logistic = sg.msum(sg.softplus(-sp.HadamardProduct(y, s))) / n
    fl = sg.compile(logistic, [s, y], wrt=[s])
    value, (g,) = fl.value_and_grad(np.array([[1e3, -1e3]]), np.array([[-1.0, -1.0]]))
    assert value == pytest.approx(500.0, rel=1e-12)
    np.testing.assert_allclose(g, [[0.5, 0.0]], atol=1e-300)


@pytest.mark.parametrize("backend", ["llvm", "numba"])
def test_column_logsumexp_is_the_records_formula(backend):
    """Column log-sum-exp in loop code is the logsumexp record's m + log1p(rest),
    checked against mpmath: accurate when the result is tiny (where
    m + log(sum) loses 8 digits), m itself for +-inf columns, nan for nan."""
    import mpmath

    n = sp.Symbol("n")
    S = sp.MatrixSymbol("S", 3, n)
    fn = sg.compile(sg.msum(sg.column_logsumexp(S)), [S], backend=backend)
    cols = np.array([[1e-10, -40.0, -40.0], [0.5, 0.5, -1.0], [np.inf, 1.0, 2.0],
                     [-np.inf, -np.inf, -np.inf], [1.0, np.nan, 2.0], [-745.0, -746.0, -800.0]]).T
    got = [fn(np.ascontiguousarray(col[:, None])) for col in cols.T]   # one column each
    mpmath.mp.dps = 40
    for k, col in enumerate(cols.T):
        if np.isnan(col).any():
            assert np.isnan(got[k])
        elif np.isinf(col.max()):
            assert got[k] == col.max()
        else:
            want = float(mpmath.log(sum(mpmath.exp(mpmath.mpf(float(v))) for v in col)))
            assert got[k] == pytest.approx(want, rel=4e-16, abs=0), (k, col)


def test_bad_inputs_raise_named_errors():
    W = sp.MatrixSymbol("W", 3, 2)
    x = sp.MatrixSymbol("x", 2, 1)
    fn = sg.compile(sg.sum_squares(W * x), [W, x], wrt=[W])
    with pytest.raises(ValueError, match="W must have shape"):
        fn.value_and_grad(np.ones((2, 3)), np.ones((2, 1)))
    with pytest.raises(TypeError, match="expected 2 arrays"):
        fn.value_and_grad(np.ones((3, 2)))
    with pytest.raises(TypeError, match="numeric"):
        fn.value_and_grad("W", np.ones((2, 1)))
    with pytest.raises(ValueError, match="not in args"):
        sg.compile(sg.sum_squares(W * x), [W], wrt=[W])
    with pytest.raises(ValueError, match="scalar"):
        sg.grad(W * x, [W])
