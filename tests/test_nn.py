"""Tests of symgrad.nn (models, scalar graphs, the training loop), symgrad.losses
and the logsumexp op.

Triangulation: the scalar SymPy graph of a model is evaluated (symgrad's
evaluator), replayed on the tape engine and compiled, and compared with a
plain NumPy forward pass and with finite differences.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

import symgrad as sg
from compiler import runtime as R
from symgrad import nn, optim
from symgrad.check import finite_differences
from symgrad.evaluate import evaluate
from symgrad.losses import hinge, l2, logistic, mse, softmax_cross_entropy
from symgrad.nn import MLP, Layer, Neuron, predict_numpy, scalar_loss
from symgrad.ops.reductions import logsumexp
from symgrad.testing import mlp_params

x0, x1 = sp.symbols("x0 x1")


# --- structure and names -------------------------------------------------------------------

def test_micrograd_moons_model_has_337_parameters_in_micrograds_order():
    model = MLP(2, [16, 16, 1])
    params = model.parameters()
    assert len(params) == 337 == model.n_params
    assert all(isinstance(p, sp.Symbol) for p in params)
    assert len(set(params)) == 337
    names = [p.name for p in params]
    assert names[:8] == ["w0_0_0", "w0_0_1", "b0_0", "w0_1_0", "w0_1_1", "b0_1", "w0_2_0", "w0_2_1"]
    assert names[48:52] == ["w1_0_0", "w1_0_1", "w1_0_2", "w1_0_3"]      # layer 0 has 16*3 = 48
    assert names[64] == "b1_0"
    assert names[-3:] == ["w2_0_14", "w2_0_15", "b2_0"]
    assert model.sizes == [2, 16, 16, 1] and model.activation == "relu" and model.nout == 1
    # the same naming scheme as symgrad.testing
    flat = [p for layer in mlp_params(2, [16, 16, 1]) for ws, b in layer for p in (*ws, b)]
    assert flat == params


def test_repr_like_micrograd():
    assert repr(MLP(2, [2, 1])) == \
        "MLP of [Layer of [ReLUNeuron(2), ReLUNeuron(2)], Layer of [LinearNeuron(2)]]"
    assert repr(MLP(1, [1, 1], activation="tanh")) == \
        "MLP of [Layer of [TanhNeuron(1)], Layer of [LinearNeuron(1)]]"
    assert repr(Neuron(3, "sigmoid")) == "SigmoidNeuron(3)"


def test_last_layer_is_linear_hidden_layers_use_the_activation():
    model = MLP(3, [4, 5, 2], activation="tanh")
    assert [layer.activation for layer in model.layers] == ["tanh", "tanh", "linear"]
    assert [len(layer.neurons) for layer in model.layers] == [4, 5, 2]
    assert MLP(2, [1]).layers[0].activation == "linear"


def test_model_call_equals_hand_built_expression():
    model = MLP(2, [3, 1])
    out = model([x0, x1])
    assert isinstance(out, list) and len(out) == 1
    w = {p.name: p for p in model.parameters()}
    hidden = [sg.relu(w[f"w0_{j}_0"] * x0 + w[f"w0_{j}_1"] * x1 + w[f"b0_{j}"]) for j in range(3)]
    expected = w["w1_0_0"] * hidden[0] + w["w1_0_1"] * hidden[1] + w["w1_0_2"] * hidden[2] + w["b1_0"]
    assert out[0] == expected
    # other activations
    for act, f in [("tanh", sp.tanh), ("sigmoid", sg.sigmoid)]:
        m = MLP(2, [1, 1], activation=act)
        a = f(sp.Symbol("w0_0_0") * x0 + sp.Symbol("w0_0_1") * x1 + sp.Symbol("b0_0"))
        assert m([x0, x1]) == [sp.Symbol("w1_0_0") * a + sp.Symbol("b1_0")]
    # linear hidden layers: no activation at all
    m = MLP(1, [1, 1], activation="linear")
    w00, b00, w10, b10 = m.parameters()
    assert m([x0]) == [w10 * (w00 * x0 + b00) + b10]


def test_neuron_and_layer():
    n = Neuron(3, activation="linear", name_prefix="7_2")
    assert [p.name for p in n.parameters()] == ["w7_2_0", "w7_2_1", "w7_2_2", "b7_2"]
    assert n([1, 2.5, x0]) == sp.Symbol("w7_2_0") + 2.5 * sp.Symbol("w7_2_1") + \
        sp.Symbol("w7_2_2") * x0 + sp.Symbol("b7_2")
    layer = Layer(2, 3, name_prefix="4")
    outs = layer([x0, x1])
    assert len(outs) == 3 and all(o.func is sg.relu for o in outs)
    assert layer.n_params == 9
    assert [p.name for p in layer.parameters()][-3:] == ["w4_2_0", "w4_2_1", "b4_2"]


def test_multi_output_model():
    model = MLP(2, [4, 3])
    out = model([x0, x1])
    assert len(out) == 3 and model.nout == 3


@pytest.mark.parametrize("bad", [
    lambda: MLP(2, [16, 1], activation="gelu"),
    lambda: MLP(0, [1]),
    lambda: MLP(2, [0, 1]),
    lambda: MLP(2, []),
    lambda: MLP(2, [3, 1])([x0]),
    lambda: Neuron(2)([x0, "a"]),
    lambda: Neuron(2)(x0),
    lambda: MLP(2, 3),
])
def test_construction_and_call_errors(bad):
    with pytest.raises((TypeError, ValueError)):
        bad()


def test_error_messages_say_what_to_do():
    with pytest.raises(ValueError, match="activation must be one of"):
        MLP(2, [1], activation="gelu")
    with pytest.raises(ValueError, match="takes 2 inputs, got 1"):
        MLP(2, [3, 1])([x0])


# --- parameter vectors -----------------------------------------------------------------------

def test_init_params_like_micrograd():
    model = MLP(2, [16, 16, 1])
    theta = model.init_params(seed=0)
    assert theta.shape == (337,) and theta.dtype == np.float64 and theta.flags.c_contiguous
    names = [p.name for p in model.parameters()]
    is_bias = np.array([n.startswith("b") for n in names])
    assert is_bias.sum() == 33
    assert np.all(theta[is_bias] == 0.0)
    w = theta[~is_bias]
    assert np.all((w >= -1.0) & (w <= 1.0))
    assert len(np.unique(w)) == w.size
    # uniform(-1, 1): mean 0, std 1/sqrt(3)
    assert abs(w.mean()) < 0.1
    assert w.std() == pytest.approx(1 / math.sqrt(3), rel=0.1)
    np.testing.assert_array_equal(theta, model.init_params(seed=0))
    assert not np.array_equal(theta, model.init_params(seed=1))
    # one draw per weight, in parameters() order
    np.testing.assert_array_equal(w, np.random.default_rng(0).uniform(-1, 1, size=304))


def test_unflatten_follows_parameter_order_and_flatten_inverts_it():
    model = MLP(3, [4, 2, 1])
    theta = np.arange(model.n_params, dtype=np.float64)
    index = {p.name: i for i, p in enumerate(model.parameters())}
    layers = model.unflatten(theta)
    assert [(W.shape, b.shape) for W, b in layers] == [((4, 3), (4,)), ((2, 4), (2,)), ((1, 2), (1,))]
    for li, (W, b) in enumerate(layers):
        for j in range(W.shape[0]):
            assert b[j] == index[f"b{li}_{j}"]
            for i in range(W.shape[1]):
                assert W[j, i] == index[f"w{li}_{j}_{i}"]
    np.testing.assert_array_equal(model.flatten(layers), theta)
    layers[0][0][0, 0] = 99.0                       # copies: theta is untouched
    assert theta[0] == 0.0
    with pytest.raises(ValueError):
        model.unflatten(theta[:-1])
    with pytest.raises(ValueError):
        model.flatten(layers[:2])
    with pytest.raises(ValueError):
        model.flatten([(W.T, b) for W, b in layers])


# --- scalar graph vs NumPy vs tape ------------------------------------------------------------

@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_scalar_graph_equals_numpy_forward_and_tape(activation):
    model = MLP(2, [4, 3, 2], activation=activation)
    theta = model.init_params(seed=3)
    theta += np.linspace(-0.3, 0.3, theta.size)            # nonzero biases too
    X = np.array([[0.5, -1.2], [1.7, 0.3], [-0.8, -0.4]])
    ref = predict_numpy(model, theta, X)
    assert ref.shape == (3, 2)
    outs = model([x0, x1])
    env = dict(zip(model.parameters(), theta.tolist()))
    for i, (a, b) in enumerate(X):
        point = {**env, x0: a, x1: b}
        got = evaluate(outs, point)
        np.testing.assert_allclose(got, ref[i], rtol=1e-12, atol=1e-12)
        for k in range(2):
            value, _ = sg.tape.replay(outs[k], point)
            assert value == pytest.approx(ref[i, k], rel=1e-12, abs=1e-12)
    # numeric inputs: the same numbers with the data folded in as constants
    got = evaluate(model([float(X[0, 0]), float(X[0, 1])]), env)
    np.testing.assert_allclose(got, ref[0], rtol=1e-12, atol=1e-12)


def test_predict_numpy_by_hand():
    model = MLP(2, [2, 1])
    theta = np.array([1.0, 0.0, 0.0, 0.0, 1.0, -1.0, 2.0, 3.0, 0.5])
    # hidden: relu(x0), relu(x1 - 1); out: 2*h0 + 3*h1 + 0.5
    np.testing.assert_array_equal(predict_numpy(model, theta, np.array([[1.0, 2.0], [-1.0, 0.5]])),
                                  [[5.5], [0.5]])
    with pytest.raises(ValueError):
        predict_numpy(model, theta, np.ones((3, 3)))


def _hinge_reference(model, theta, X, y, coef):
    s = predict_numpy(model, theta, X)[:, 0]
    return float(np.mean(np.maximum(0.0, 1.0 - y * s)) + coef * np.sum(theta**2))


def test_scalar_loss_value_gradient_triangulated():
    X, y = sg.datasets.make_moons(n_samples=8, noise=0.1, seed=1)
    model = MLP(2, [4, 4, 1])
    theta = model.init_params(seed=2)
    params = model.parameters()
    L = scalar_loss(model, X, y, loss="hinge", l2=1e-4)
    assert set(L.free_symbols) <= set(params)
    ref = _hinge_reference(model, theta, X, y, 1e-4)
    point = dict(zip(params, theta.tolist()))
    assert evaluate(L, point) == pytest.approx(ref, rel=1e-12, abs=1e-14)
    value, tape_grads = sg.tape.replay(L, point)
    assert value == pytest.approx(ref, rel=1e-12, abs=1e-14)
    fn = sg.compile(L, [tuple(params)], backend="python")
    v, g = fn.value_and_grad(theta)
    assert v == pytest.approx(ref, rel=1e-12, abs=1e-14)
    tape = np.array([tape_grads[p] for p in params])
    np.testing.assert_allclose(g, tape, rtol=1e-10, atol=1e-13)
    fd = finite_differences(L, params, point)
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-7)
    assert np.abs(g).max() > 1e-3                     # not vacuous


def test_scalar_loss_other_losses_match_numpy():
    model = MLP(2, [3, 1])
    theta = model.init_params(seed=4)
    theta[2] = 0.3
    X, y = sg.datasets.make_moons(n_samples=6, noise=0.1, seed=2)
    point = dict(zip(model.parameters(), theta.tolist()))
    s = predict_numpy(model, theta, X)[:, 0]
    L = scalar_loss(model, X, y, loss="logistic", l2=0.0)
    assert evaluate(L, point) == pytest.approx(np.mean(np.logaddexp(0.0, -y * s)), rel=1e-12)
    L = scalar_loss(model, X, y, loss="mse", l2=0.5)
    ref = np.mean((s - y) ** 2) + 0.5 * np.sum(theta**2)
    assert evaluate(L, point) == pytest.approx(ref, rel=1e-12)
    # several outputs: softmax cross-entropy and multi-target mse
    m3 = MLP(2, [4, 3], activation="tanh")
    th3 = m3.init_params(seed=5)
    Xs, ys = sg.datasets.make_spiral(n_samples=9, n_classes=3, seed=0)
    S = predict_numpy(m3, th3, Xs)
    p3 = dict(zip(m3.parameters(), th3.tolist()))
    L = scalar_loss(m3, Xs, ys, loss="softmax_cross_entropy", l2=0.0)
    ref = np.mean(np.logaddexp.reduce(S, axis=1) - S[np.arange(9), ys])
    assert evaluate(L, p3) == pytest.approx(ref, rel=1e-12)
    T = np.linspace(-1, 1, 27).reshape(9, 3)
    L = scalar_loss(m3, Xs, T, loss="mse", l2=0.0)
    assert evaluate(L, p3) == pytest.approx(np.mean(np.sum((S - T) ** 2, axis=1)), rel=1e-12)


def test_scalar_loss_argument_checks():
    model = MLP(2, [3, 1])
    X, y = sg.datasets.make_moons(n_samples=4, seed=0)
    with pytest.raises(ValueError, match="loss must be one of"):
        scalar_loss(model, X, y, loss="huber")
    with pytest.raises(ValueError, match="-1, \\+1"):
        scalar_loss(model, X, (y + 1) / 2, loss="hinge")
    with pytest.raises(ValueError, match="one output"):
        scalar_loss(MLP(2, [3, 2]), X, y, loss="hinge")
    with pytest.raises(ValueError, match="class labels"):
        scalar_loss(MLP(2, [3, 2]), X, np.array([0, 1, 2, 1]), loss="softmax_cross_entropy")
    with pytest.raises(ValueError, match="shape"):
        scalar_loss(model, X[:, :1], y)
    with pytest.raises(ValueError, match="entries"):
        scalar_loss(model, X, y[:3])


def test_scalar_loss_compiles_and_trains_with_fit():
    X, y = sg.datasets.make_moons(n_samples=20, noise=0.1, seed=0)
    model = MLP(2, [8, 1])
    theta = model.init_params(seed=0)
    fn = sg.compile(scalar_loss(model, X, y, loss="hinge", l2=1e-4),
                    [tuple(model.parameters())], backend="python")

    def step(th, Xb, yb):
        return fn.value_and_grad(th)

    step.predict = lambda th, Xb: predict_numpy(model, th, Xb)
    hist = nn.fit(step, theta, X, y, optim.SGD(lr=optim.linear_decay(1.0, 0.1, 40)),
                  steps=40, progress=False)
    assert len(hist) == 40
    assert hist.loss[-1] < 0.6 * hist.loss[0]
    assert hist.accuracy[-1] >= 0.8
    assert hist.loss[-1] == pytest.approx(
        _hinge_reference(model, theta, X, y, 1e-4), rel=0.5)   # theta was trained in place


# --- losses ---------------------------------------------------------------------------------

s, t = sp.symbols("s t")


def test_loss_values_by_hand():
    assert float(hinge(0.25, 1)) == 0.75
    assert float(hinge(-0.5, -1)) == 0.5
    assert float(hinge(2.0, 1)) == 0.0 and float(hinge(-3.0, 1)) == 4.0
    assert evaluate(hinge(s, -1.0), {s: 0.5}) == 1.5
    assert evaluate(logistic(s, 1), {s: 0.0}) == pytest.approx(math.log(2.0), rel=1e-15)
    assert evaluate(logistic(s, -1), {s: 2.0}) == pytest.approx(math.log1p(math.exp(2.0)), rel=1e-15)
    assert evaluate(mse(s, 2), {s: 3.5}) == 2.25
    assert evaluate(mse(s, t), {s: 1.0, t: -1.0}) == 4.0
    a, b, c = sp.symbols("a b c")
    ce = softmax_cross_entropy([a, b, c], 0)
    ref = math.log(math.exp(1) + math.exp(2) + math.exp(3)) - 1
    assert evaluate(ce, {a: 1.0, b: 2.0, c: 3.0}) == pytest.approx(ref, rel=1e-15)
    assert evaluate(l2([a, b], 0.5), {a: 2.0, b: -1.0}) == 2.5
    assert l2([a, b], 0) == 0


def test_loss_gradients_by_hand():
    # d hinge / d s = -label where active, 0 otherwise; d logistic / d s = -label * sigmoid(-label*s)
    assert sg.tape.replay(hinge(s, 1), {s: 0.5})[1][s] == -1.0
    assert sg.tape.replay(hinge(s, -1), {s: 0.5})[1][s] == 1.0
    assert sg.tape.replay(hinge(s, 1), {s: 1.5})[1][s] == 0.0
    g = sg.tape.replay(logistic(s, -1), {s: 0.3})[1][s]
    assert g == pytest.approx(1 / (1 + math.exp(-0.3)), rel=1e-14)
    a, b = sp.symbols("a b")
    grads = sg.grad(softmax_cross_entropy([a, b], 1), [a, b])
    vals = [evaluate(gi, {a: 0.0, b: 0.0}) for gi in grads]
    assert vals == pytest.approx([0.5, -0.5], abs=1e-15)


def test_loss_argument_checks():
    with pytest.raises(ValueError):
        softmax_cross_entropy([s, t], 2)
    with pytest.raises(ValueError):
        softmax_cross_entropy([], 0)
    with pytest.raises(ValueError):
        softmax_cross_entropy([s, t], 0.5)
    with pytest.raises(TypeError):
        softmax_cross_entropy(s, 0)
    with pytest.raises(TypeError):
        hinge(s, "1")


@pytest.mark.parametrize("backend", ["python", "numba"])
def test_logistic_and_cross_entropy_are_stable_at_1e3(backend):
    for label, score, value, grad in [(1, -1e3, 1e3, -1.0), (1, 1e3, 0.0, 0.0),
                                      (-1, 1e3, 1e3, 1.0), (-1, -1e3, 0.0, 0.0)]:
        fn = sg.compile(logistic(s, label), [s], backend=backend)
        v, g = fn.value_and_grad(score)
        assert v == value and g[0] == grad, (label, score, v, g)
        tv, tg = sg.tape.replay(logistic(s, label), {s: score})
        assert (tv, tg[s]) == (value, grad)
    a, b, c = sp.symbols("a b c")
    ce = softmax_cross_entropy([a, b, c], 0)
    fn = sg.compile(ce, [a, b, c], backend=backend)
    v, g = fn.value_and_grad(-1e3, 1e3, 0.0)
    assert v == 2e3
    np.testing.assert_array_equal(g, [-1.0, 1.0, 0.0])
    v, g = fn.value_and_grad(1e3, -1e3, 1e3)
    assert v == pytest.approx(math.log(2.0), rel=1e-14)
    np.testing.assert_allclose(g, [-0.5, 0.0, 0.5], atol=1e-15)
    tv, tg = sg.tape.replay(ce, {a: -1e3, b: 1e3, c: 0.0})
    assert tv == 2e3 and [tg[a], tg[b], tg[c]] == [-1.0, 1.0, 0.0]


# --- the logsumexp op -------------------------------------------------------------------------

def test_logsumexp_forward_matches_numpy_for_big_inputs():
    op = sg.get_op("logsumexp")
    assert op.arity is None and op.impl == "logsumexp" and R.lookup("logsumexp") is op.forward
    for xs in [(1000.0, 999.0, -50.0), (-1000.0, -1001.0), (710.0, 710.0), (0.5,), (1e300, 0.0),
               (-3.0, 2.0, 0.25, 7.5)]:
        assert op.forward(*xs) == pytest.approx(float(np.logaddexp.reduce(xs)), rel=1e-15)
    assert op.forward(float("inf"), 1.0) == math.inf
    assert op.forward(-math.inf, -math.inf) == -math.inf
    assert op.forward(-math.inf, 0.0) == 0.0
    assert math.isnan(op.forward(1.0, math.nan))


def test_logsumexp_sympy_function():
    x, y = sp.symbols("x y")
    assert logsumexp(x) == x
    assert logsumexp(x, y).diff(y) == sp.exp(y - logsumexp(x, y))
    assert float(logsumexp(sp.Float(1000.0), sp.Float(1000.0))) == pytest.approx(1000 + math.log(2))
    assert float(logsumexp(1, 2)) == pytest.approx(math.log(math.e + math.e**2), rel=1e-15)
    assert logsumexp(x, y).rewrite(sp.exp) == sp.log(sp.exp(x) + sp.exp(y))
    assert sp.latex(logsumexp(x, y)) == r"\operatorname{logsumexp}{\left(x, y \right)}"
    assert sg.nn.logsumexp is logsumexp
    with pytest.raises(TypeError):
        logsumexp()


@pytest.mark.parametrize("backend", ["python", "numba"])
def test_logsumexp_gradient_vs_tape_fd_and_sympy(backend):
    x, y = sp.symbols("x y")
    e = logsumexp(x * y, sp.sin(x), y**2, sp.Float(0.5)) * x
    point = {x: 0.7, y: -1.3}
    report = sg.check_grad(e, [x, y], point, rtol=1e-7)
    assert report.ok
    # against sympy's own derivative of the textbook form
    textbook = sp.log(sp.exp(x * y) + sp.exp(sp.sin(x)) + sp.exp(y**2) + sp.exp(sp.Float(0.5))) * x
    ref = [float(sp.diff(textbook, v).subs(point)) for v in (x, y)]
    fn = sg.compile(e, [x, y], backend=backend)
    v, g = fn.value_and_grad(0.7, -1.3)
    assert v == pytest.approx(float(textbook.subs(point)), rel=1e-14)
    np.testing.assert_allclose(g, ref, rtol=1e-13)
    _, tape = sg.tape.replay(e, point)
    np.testing.assert_allclose(g, [tape[x], tape[y]], rtol=1e-13)
    # big inputs: finite value and softmax gradient
    f2 = sg.compile(logsumexp(x, y), [x, y], backend=backend)
    v, g = f2.value_and_grad(1000.0, 999.0)
    assert v == pytest.approx(1000.0 + math.log1p(math.exp(-1.0)), rel=1e-15)
    # exp(x_i - out): out ~ 1000 carries an absolute rounding error ~1e-13
    np.testing.assert_allclose(g, [1 / (1 + math.exp(-1)), 1 / (1 + math.exp(1))], rtol=1e-12)


def test_logsumexp_on_the_tape_engine():
    a, b = sg.Value(1.0), sg.Value(2.0)
    out = a.logsumexp(b, 3.0)
    out.backward()
    z = math.exp(1) + math.exp(2) + math.exp(3)
    assert out.data == pytest.approx(math.log(z), rel=1e-15)
    assert a.grad == pytest.approx(math.exp(1) / z, rel=1e-14)
    assert b.grad == pytest.approx(math.exp(2) / z, rel=1e-14)


# --- accuracy, History, fit --------------------------------------------------------------------

def test_accuracy_rules():
    assert nn.accuracy(np.array([0.3, -2.0, 0.1, 0.0]), np.array([1.0, -1.0, -1.0, -1.0])) == 0.75
    assert nn.accuracy(np.array([[0.3], [-2.0]]), np.array([1.0, 1.0])) == 0.5
    assert nn.accuracy(np.array([0.3, -2.0]), np.array([1, 0])) == 1.0
    assert nn.accuracy(np.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]]), np.array([0, 2])) == 0.5
    assert math.isnan(nn.accuracy(np.array([0.3, 0.2]), np.array([0.5, 2.0])))
    assert math.isnan(nn.accuracy(np.array([[0.3, 0.2]]), np.array([5])))


def test_history():
    h = nn.History(loss=[1.0, 0.5], accuracy=[0.5, 1.0])
    assert h["loss"] is h.loss and h["accuracy"] == [0.5, 1.0] and len(h) == 2
    assert repr(h) == "History(steps=2, loss 1 -> 0.5, accuracy 0.5 -> 1)"
    assert repr(nn.History()) == "History(steps=0)"
    assert repr(nn.History([2.0], [math.nan])) == "History(steps=1, loss 2 -> 2)"
    with pytest.raises(KeyError):
        h["lr"]


class LogisticRegression:
    """A hand-written NumPy training step with a ``predict``: mean logistic loss."""

    def __init__(self):
        self.calls = []

    def __call__(self, theta, X, y):
        self.calls.append(len(y))
        s = X @ theta[:2] + theta[2]
        m = -y * s
        loss = float(np.mean(np.logaddexp(0.0, m)))
        dm = -y * (0.5 * (1.0 + np.tanh(0.5 * m))) / len(y)      # sigmoid(m) * dm/ds / n
        return loss, np.concatenate([X.T @ dm, [dm.sum()]])

    def predict(self, theta, X):
        return X @ theta[:2] + theta[2]


def _blobs_pm1(n=200):
    X, y = sg.datasets.make_blobs(n_samples=n, centers=[[-2.0, 0.0], [2.0, 1.0]], seed=0)
    return X, np.where(y == 1, 1.0, -1.0)


def test_fit_drives_the_loss_down_and_records_accuracy():
    X, y = _blobs_pm1()
    step = LogisticRegression()
    theta = np.zeros(3)
    loss0 = step(theta, X, y)[0]
    hist = nn.fit(step, theta, X, y, optimizer=optim.SGD(lr=0.5), steps=50, progress=False)
    assert isinstance(hist, nn.History) and len(hist.loss) == len(hist.accuracy) == 50
    assert hist.loss[0] == pytest.approx(loss0) == pytest.approx(math.log(2.0))
    assert hist.accuracy[0] == 0.5          # score 0 predicts -1: right on the -1 half
    assert hist.loss[-1] < 0.2
    assert all(b <= a + 1e-12 for a, b in zip(hist.loss, hist.loss[1:]))
    assert hist.accuracy[-1] >= 0.95
    assert theta[0] > 0                     # learned, in place
    # accuracy is measured before the update, on the same theta as the loss
    th = np.zeros(3)
    h1 = nn.fit(step, th, X, y, optimizer=optim.SGD(lr=0.5), steps=1, progress=False)
    assert h1.accuracy[0] == nn.accuracy(step.predict(np.zeros(3), X), y)


def test_fit_minibatches_are_seeded():
    X, y = _blobs_pm1(100)
    runs = []
    for seed in (0, 0, 1):
        step = LogisticRegression()
        theta = np.zeros(3)
        h = nn.fit(step, theta, X, y, optim.Adam(lr=0.05), steps=10, batch_size=16, seed=seed,
                   progress=False)
        assert step.calls == [16] * 10
        runs.append((theta.copy(), h.loss))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    assert not np.array_equal(runs[0][0], runs[2][0])


def test_fit_without_predict_records_nan_accuracy():
    X, y = _blobs_pm1(40)
    full = LogisticRegression()
    hist = nn.fit(lambda th, X, y: full(th, X, y), np.zeros(3), X, y, optim.SGD(0.1), steps=3,
                  progress=False)
    assert len(hist) == 3 and all(math.isnan(a) for a in hist.accuracy)


def test_fit_progress_only_when_asked(capsys):
    X, y = _blobs_pm1(40)
    nn.fit(LogisticRegression(), np.zeros(3), X, y, optim.SGD(0.1), steps=4, progress=True)
    err = capsys.readouterr().err
    assert "\r" in err and "step 4/4" in err and "loss" in err and "acc" in err
    assert err.endswith("\n")
    nn.fit(LogisticRegression(), np.zeros(3), X, y, optim.SGD(0.1), steps=4, progress=False)
    assert capsys.readouterr() == ("", "")
    nn.fit(LogisticRegression(), np.zeros(3), X, y, optim.SGD(0.1), steps=4)   # not a TTY
    assert capsys.readouterr() == ("", "")


def test_fit_callback_and_early_stop():
    X, y = _blobs_pm1(40)
    seen = []

    def callback(k, loss, acc, theta):
        seen.append((k, loss, acc, theta.copy()))
        return k == 2

    theta = np.zeros(3)
    hist = nn.fit(LogisticRegression(), theta, X, y, optim.SGD(0.1), steps=10, callback=callback,
                  progress=False)
    assert [k for k, *_ in seen] == [0, 1, 2] and len(hist) == 3
    assert seen[0][1] == hist.loss[0]
    np.testing.assert_array_equal(seen[-1][3], theta)      # called after the update


def test_fit_raises_on_non_finite_loss_with_history():
    X, y = _blobs_pm1(40)
    calls = []

    def step(theta, X, y):
        calls.append(1)
        return (1.0 if len(calls) < 3 else math.nan), np.zeros(3)

    with pytest.raises(FloatingPointError, match="step 2") as info:
        nn.fit(step, np.zeros(3), X, y, optim.SGD(0.1), steps=10, progress=False)
    assert info.value.history.loss == [1.0, 1.0]


def test_fit_argument_checks():
    X, y = _blobs_pm1(20)
    step = LogisticRegression()
    with pytest.raises(TypeError):
        nn.fit(step, [0.0, 0.0, 0.0], X, y, optim.SGD(0.1))
    with pytest.raises(ValueError):
        nn.fit(step, np.zeros(3, dtype=np.float32), X, y, optim.SGD(0.1))
    with pytest.raises(ValueError):
        nn.fit(step, np.zeros(3), X, y[:5], optim.SGD(0.1))
    with pytest.raises(ValueError):
        nn.fit(step, np.zeros(3), X, y, optim.SGD(0.1), batch_size=21)
    with pytest.raises(ValueError):
        nn.fit(step, np.zeros(3), X, y, optim.SGD(0.1), steps=-1)
    with pytest.raises(TypeError):
        nn.fit(step, np.zeros(3), X, y, optimizer="sgd")
    with pytest.raises(TypeError):
        nn.fit("step", np.zeros(3), X, y, optim.SGD(0.1))
    assert len(nn.fit(step, np.zeros(3), X, y, optim.SGD(0.1), steps=0)) == 0


def test_public_namespace():
    assert sg.nn.MLP is MLP and sg.optim.Adam is optim.Adam
    for name in ("datasets", "nn", "optim"):
        assert name in sg.__all__
    for name in nn.__all__:
        assert hasattr(nn, name), name
