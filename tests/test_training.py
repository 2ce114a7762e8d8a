"""The compiled training step (layer-level) vs NumPy backprop, the scalar graph on
the tape engine, per-sample sums; the moons and spiral acceptance runs."""

import numpy as np
import pytest

import symgrad as sg
from symgrad.nn import MLP, predict_numpy, scalar_loss

RNG = np.random.default_rng(7)


def numpy_backprop(model, theta, X, y, loss, l2):
    """A hand-written forward/backward pass of the same objective."""
    layers = model.unflatten(theta)
    hs, zs, h = [X], [], X
    for li, (W, b) in enumerate(layers):
        z = h @ W.T + b
        zs.append(z)
        act = model.layers[li].activation
        h = {"relu": lambda t: np.maximum(t, 0), "tanh": np.tanh,
             "sigmoid": lambda t: 1 / (1 + np.exp(-t)), "linear": lambda t: t}[act](z)
        hs.append(h)
    S, n = h, X.shape[0]
    if loss == "hinge":
        m = 1 - y * S[:, 0]
        value = np.maximum(m, 0).mean()
        sbar = np.where(m > 0, -y, 0.0)[:, None] / n
    elif loss == "logistic":
        t = -y * S[:, 0]
        value = np.logaddexp(0, t).mean()
        sbar = (-y / (1 + np.exp(-t)))[:, None] / n
    elif loss == "mse":
        d = S - y.reshape(n, -1)
        value = (d * d).sum() / n
        sbar = 2 * d / n
    else:
        m = S.max(axis=1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(S - m).sum(axis=1))
        value = (lse - S[np.arange(n), y]).mean()
        P = np.exp(S - lse[:, None])
        P[np.arange(n), y] -= 1
        sbar = P / n
    value += l2 * (theta * theta).sum()
    zbar, grads = sbar, []
    for li in range(len(layers) - 1, -1, -1):
        W, _ = layers[li]
        grads.append((zbar.T @ hs[li], zbar.sum(axis=0)))
        if li:
            hbar = zbar @ W
            act = model.layers[li - 1].activation
            h, z = hs[li], zs[li - 1]
            zbar = hbar * {"relu": (z > 0) * 1.0, "tanh": 1 - h * h, "sigmoid": h * (1 - h),
                           "linear": 1.0}[act]
    return value, model.flatten(grads[::-1]) + 2 * l2 * theta


CASES = [("hinge", [8, 8, 1], "relu"), ("logistic", [6, 1], "tanh"),
         ("mse", [5, 2], "sigmoid"), ("softmax_cross_entropy", [6, 3], "relu")]


def labels(loss, n, k):
    if loss in ("hinge", "logistic"):
        return RNG.choice([-1.0, 1.0], size=n)
    if loss == "mse":
        return RNG.normal(size=(n, k))
    return RNG.integers(0, k, n)


@pytest.mark.parametrize("loss,nouts,act", CASES)
def test_compile_loss_matches_numpy_backprop_and_tape(loss, nouts, act):
    model = MLP(3, nouts, activation=act)
    step = sg.nn.compile_loss(model, loss=loss, l2=1e-3)
    for trial in range(3):
        theta = RNG.uniform(-1, 1, model.n_params)
        X = RNG.normal(size=(9, 3))
        y = labels(loss, 9, model.nout)
        value, grad = step(theta, X, y)
        ref_value, ref_grad = numpy_backprop(model, theta, X, y, loss, 1e-3)
        assert value == pytest.approx(ref_value, rel=1e-9)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-9, atol=1e-12)
    # the scalar (micrograd-style) graph of the same objective, on the tape engine
    L = scalar_loss(model, X[:4], y[:4], loss=loss, l2=1e-3)
    tape_value, tape_grads = sg.tape.replay(L, dict(zip(model.parameters(), theta)))
    value, grad = step(theta, X[:4], y[:4])
    assert value == pytest.approx(tape_value, rel=1e-9)
    np.testing.assert_allclose(grad, [tape_grads[p] for p in model.parameters()], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("loss,nouts,act", CASES)
def test_batch_gradient_is_the_mean_of_per_sample_gradients(loss, nouts, act):
    model = MLP(2, nouts, activation=act)
    step = sg.nn.compile_loss(model, loss=loss, l2=0.0)
    theta = RNG.uniform(-1, 1, model.n_params)
    for n in (1, 7, 1000):
        X = RNG.normal(size=(n, 2))
        y = labels(loss, n, model.nout)
        value, grad = step(theta, X, y)
        per = [step(theta, X[i:i + 1], y[i:i + 1]) for i in range(min(n, 60))]
        if n <= 60:
            assert value == pytest.approx(np.mean([v for v, _ in per]), rel=1e-12)
            np.testing.assert_allclose(grad, np.mean([g for _, g in per], axis=0), rtol=1e-10, atol=1e-14)
        else:   # the big batch against the NumPy reference
            ref_value, ref_grad = numpy_backprop(model, theta, X, y, loss, 0.0)
            assert value == pytest.approx(ref_value, rel=1e-10)
            np.testing.assert_allclose(grad, ref_grad, rtol=1e-9, atol=1e-13)


def test_predict_matches_numpy_forward():
    model = MLP(2, [16, 16, 1])
    theta = model.init_params(seed=3)
    X = RNG.normal(size=(50, 2))
    np.testing.assert_allclose(sg.nn.compile_predict(model)(theta, X), predict_numpy(model, theta, X),
                               rtol=1e-13, atol=1e-13)


def test_stable_losses_at_huge_logits():
    model = MLP(1, [1], activation="linear")
    X = np.array([[1.0], [1.0]])
    for loss, y in [("logistic", np.array([1.0, -1.0])), ("hinge", np.array([1.0, -1.0]))]:
        step = sg.nn.compile_loss(model, loss=loss)
        for w in (1e3, -1e3):
            value, grad = step(np.array([w, 0.0]), X, y)
            assert np.isfinite(value) and np.isfinite(grad).all()
    step = sg.nn.compile_loss(MLP(1, [3], activation="linear"), loss="softmax_cross_entropy")
    theta = np.array([1e3, 0.0, -1e3, 0.0, 999.0, 0.0])
    value, grad = step(theta, np.array([[1.0]]), np.array([2]))
    assert value == pytest.approx(1.0 + np.log1p(np.exp(-1.0)), rel=1e-12)
    assert np.isfinite(grad).all()


def test_bad_inputs_give_clear_errors():
    model = MLP(2, [4, 1])
    step = sg.nn.compile_loss(model, loss="hinge")
    theta = model.init_params(0)
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        step(theta, np.ones((5, 3)), np.ones(5))
    with pytest.raises(ValueError, match="-1, \\+1"):
        step(theta, np.ones((5, 2)), np.array([0, 1, 1, 1, 1]))
    with pytest.raises(ValueError, match="NaN"):
        step(theta, np.array([[np.nan, 1.0]]), np.ones(1))
    with pytest.raises(ValueError, match="theta"):
        step(theta[:-1], np.ones((5, 2)), np.ones(5))
    with pytest.raises(ValueError, match="one output"):
        sg.nn.compile_loss(MLP(2, [3]), loss="hinge")
    soft = sg.nn.compile_loss(MLP(2, [3]), loss="softmax_cross_entropy")
    with pytest.raises(ValueError, match="class labels"):
        soft(MLP(2, [3]).init_params(0), np.ones((2, 2)), np.array([0, 3]))


def test_moons_demo_reaches_full_accuracy_in_100_steps():
    X, y = sg.datasets.make_moons(n_samples=100, noise=0.1, seed=0)
    model = sg.nn.MLP(2, [16, 16, 1])
    assert len(model.parameters()) == 337
    theta = model.init_params(seed=0)
    step = sg.nn.compile_loss(model, loss="hinge", l2=1e-4)
    loss, grad = step(theta, X, y)
    ref_loss, ref_grad = numpy_backprop(model, theta, X, y, "hinge", 1e-4)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    opt = sg.optim.SGD(lr=lambda k: 1.0 - 0.9 * k / 100)
    history = sg.nn.fit(step, theta, X, y, optimizer=opt, steps=100, progress=False)
    scores = sg.nn.compile_predict(model)(theta, X)
    accuracy = np.mean((scores[:, 0] > 0) == (y > 0))
    assert accuracy == 1.0
    assert history.loss[-1] < history.loss[0] / 5
    assert max(history.accuracy[-10:]) == 1.0


def test_softmax_cross_entropy_trains_on_the_spiral():
    X, y = sg.datasets.make_spiral(n_samples=300, n_classes=3, seed=0)
    model = sg.nn.MLP(2, [64, 64, 3], activation="relu")
    theta = model.init_params(seed=0) * 0.5
    step = sg.nn.compile_loss(model, loss="softmax_cross_entropy", l2=1e-5)
    history = sg.nn.fit(step, theta, X, y, optimizer=sg.optim.Adam(lr=0.01), steps=600, progress=False)
    scores = sg.nn.compile_predict(model)(theta, X)
    assert np.mean(scores.argmax(axis=1) == y) >= 0.95
    assert history.loss[-1] < 0.3
