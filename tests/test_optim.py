"""Tests of symgrad.optim: updates against hand-computed textbook formulas,
in-place semantics, state handling, schedules and argument checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

import symgrad as sg
from symgrad.optim import SGD, Adam, Momentum, cosine_decay, exponential_decay, linear_decay

GRADS = [np.array([0.5, -1.0, 2.0]), np.array([1.5, 0.25, -2.0]), np.array([-0.5, 0.0, 3.0])]
THETA0 = [1.0, -2.0, 0.5]


def _run(opt, grads=GRADS, theta0=THETA0):
    theta = np.array(theta0)
    ident = id(theta)
    for g in grads:
        assert opt.step(theta, g) is None
    assert id(theta) == ident
    return theta


# --- SGD -----------------------------------------------------------------------------------

def test_sgd_two_steps_by_hand():
    theta = np.array([1.0, -2.0])
    opt = SGD(lr=0.1)
    opt.step(theta, np.array([0.5, -1.0]))
    np.testing.assert_array_equal(theta, [1.0 - 0.05, -2.0 + 0.1])
    opt.step(theta, np.array([2.0, 0.0]))
    np.testing.assert_allclose(theta, [0.95 - 0.2, -1.9], rtol=0, atol=1e-15)
    assert opt.k == 2


def test_sgd_with_micrograds_schedule():
    opt = SGD(lr=lambda k: 1.0 - 0.9 * k / 100)
    theta = _run(opt)
    expected = list(THETA0)
    for k, g in enumerate(GRADS):
        lr = 1.0 - 0.9 * k / 100             # 1.0, 0.991, 0.982
        expected = [t - lr * gi for t, gi in zip(expected, g)]
    np.testing.assert_array_equal(theta, expected)
    np.testing.assert_allclose(theta, [1.0 - 0.5 - 0.991 * 1.5 + 0.982 * 0.5,
                                       -2.0 + 1.0 - 0.991 * 0.25,
                                       0.5 - 2.0 + 0.991 * 2.0 - 0.982 * 3.0], atol=1e-14)


def test_sgd_default_lr():
    assert SGD().lr == 0.1
    assert sg.optim.SGD is SGD


# --- Momentum -------------------------------------------------------------------------------

def test_momentum_three_steps_textbook():
    lr, beta = 0.05, 0.9
    theta = _run(Momentum(lr=lr, beta=beta))
    v = [0.0, 0.0, 0.0]
    expected = list(THETA0)
    for g in GRADS:
        v = [beta * vi + gi for vi, gi in zip(v, g)]
        expected = [t - lr * vi for t, vi in zip(expected, v)]
    np.testing.assert_allclose(theta, expected, rtol=0, atol=1e-15)
    # by hand, first coordinate: v = 0.5, 1.95, 1.255
    assert theta[0] == pytest.approx(1.0 - 0.05 * (0.5 + 1.95 + 1.255), abs=1e-15)


def test_momentum_beta_zero_is_sgd():
    np.testing.assert_array_equal(_run(Momentum(lr=0.3, beta=0.0)), _run(SGD(lr=0.3)))


def test_momentum_defaults():
    opt = Momentum()
    assert (opt.lr, opt.beta) == (0.01, 0.9)


# --- Adam ---------------------------------------------------------------------------------

def test_adam_three_steps_textbook():
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    theta = _run(Adam(lr=lr, beta1=b1, beta2=b2, eps=eps))
    m = [0.0] * 3
    v = [0.0] * 3
    expected = list(THETA0)
    for t, g in enumerate(GRADS, start=1):
        m = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g)]
        v = [b2 * vi + (1 - b2) * gi * gi for vi, gi in zip(v, g)]
        expected = [p - lr * (mi / (1 - b1**t)) / (math.sqrt(vi / (1 - b2**t)) + eps)
                    for p, mi, vi in zip(expected, m, v)]
    np.testing.assert_allclose(theta, expected, rtol=1e-14, atol=1e-15)


def test_adam_first_step_is_lr_times_sign():
    theta = np.array([0.0, 0.0, 0.0])
    Adam(lr=0.1).step(theta, np.array([3.0, -1e-3, 0.0]))
    # m_hat = g, v_hat = g**2 at t=1: the step is lr * g / (|g| + eps)
    np.testing.assert_allclose(theta, [-0.1 * 3.0 / (3.0 + 1e-8), 0.1 * 1e-3 / (1e-3 + 1e-8), 0.0],
                               rtol=1e-12)


def test_adam_converges_on_a_quadratic():
    c = np.array([3.0, -1.0, 0.5, 10.0])
    theta = np.zeros(4)
    opt = Adam(lr=0.1)
    for _ in range(2000):
        opt.step(theta, 2.0 * (theta - c))
    np.testing.assert_allclose(theta, c, atol=1e-3)


def test_adam_defaults():
    opt = Adam()
    assert (opt.lr, opt.beta1, opt.beta2, opt.eps) == (1e-3, 0.9, 0.999, 1e-8)


# --- state, in place, checks ----------------------------------------------------------------

@pytest.mark.parametrize("make", [lambda: SGD(0.1), lambda: Momentum(0.1), lambda: Adam(0.1)])
def test_updates_in_place_and_leaves_grad_alone(make):
    opt = make()
    buf = np.array([1.0, 2.0, 3.0])
    theta = buf[:]                      # a view: the caller's buffer must change
    g = np.array([1.0, -1.0, 0.5])
    g_copy = g.copy()
    opt.step(theta, g)
    assert np.shares_memory(buf, theta)
    assert not np.array_equal(buf, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(g, g_copy)


def test_state_is_lazy_and_reset_forgets_it():
    opt = Adam(lr=0.1)
    assert opt.m is None and opt.v is None and opt.k == 0
    theta = np.zeros(3)
    opt.step(theta, np.ones(3))
    assert opt.m.shape == (3,) and opt.k == 1
    with pytest.raises(ValueError, match="reset"):
        opt.step(np.zeros(4), np.ones(4))
    opt.reset()
    assert opt.k == 0 and opt.m is None
    opt.step(np.zeros(4), np.ones(4))
    assert opt.m.shape == (4,)
    # after reset the first step is a first step again (bias correction t = 1)
    theta = np.zeros(2)
    opt2 = Adam(lr=0.1)
    opt2.step(theta, np.array([5.0, 5.0]))
    opt2.reset()
    theta2 = np.zeros(2)
    opt2.step(theta2, np.array([5.0, 5.0]))
    np.testing.assert_array_equal(theta, theta2)


def test_momentum_reset_zeroes_velocity():
    opt = Momentum(lr=1.0, beta=0.5)
    theta = np.zeros(1)
    opt.step(theta, np.ones(1))
    opt.reset()
    theta = np.zeros(1)
    opt.step(theta, np.ones(1))
    assert theta[0] == -1.0


@pytest.mark.parametrize("make", [lambda: SGD(0.1), lambda: Momentum(0.1), lambda: Adam(0.1)])
def test_argument_checks(make):
    opt = make()
    with pytest.raises(TypeError):
        opt.step([1.0, 2.0], np.zeros(2))
    with pytest.raises(TypeError):
        opt.step(np.zeros(2), [1.0, 2.0])
    with pytest.raises(ValueError, match="float64"):
        opt.step(np.zeros(2, dtype=np.float32), np.zeros(2))
    with pytest.raises(ValueError, match="float64"):
        opt.step(np.zeros(2, dtype=np.int64), np.zeros(2))
    with pytest.raises(ValueError, match="contiguous"):
        opt.step(np.zeros(6)[::2], np.zeros(3))
    with pytest.raises(ValueError, match="shape"):
        opt.step(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="1-D"):
        opt.step(np.zeros((2, 2)), np.zeros((2, 2)))
    ro = np.zeros(2)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        opt.step(ro, np.zeros(2))
    assert opt.k == 0                   # failed calls take no step


def test_integer_gradients_are_accepted():
    theta = np.array([1.0, 1.0])
    SGD(lr=0.5).step(theta, np.array([1, 2]))
    np.testing.assert_array_equal(theta, [0.5, 0.0])


def test_hyperparameter_checks():
    with pytest.raises(ValueError):
        SGD(lr=-0.1)
    with pytest.raises(ValueError):
        SGD(lr=float("nan"))
    with pytest.raises(TypeError):
        SGD(lr="0.1")
    with pytest.raises(ValueError):
        Momentum(beta=1.0)
    with pytest.raises(ValueError):
        Adam(beta1=-0.1)
    with pytest.raises(ValueError):
        Adam(beta2=1.5)
    opt = SGD(lr=lambda k: float("inf"))
    with pytest.raises(ValueError, match="lr\\(0\\)"):
        opt.step(np.zeros(1), np.zeros(1))


def test_reprs():
    assert repr(SGD(0.1)) == "SGD(lr=0.1)"
    assert repr(Momentum(0.01, 0.9)) == "Momentum(lr=0.01, beta=0.9)"
    assert repr(SGD(lr=linear_decay(1.0, 0.1, 100))) == "SGD(lr=linear)"
    assert "Adam(lr=0.001" in repr(Adam())


# --- schedules -----------------------------------------------------------------------------

def test_linear_decay_reproduces_micrograd_exactly():
    lr = linear_decay(1.0, 0.1, 100)
    assert all(lr(k) == 1.0 - 0.9 * k / 100 for k in range(100))
    assert lr(100) == 0.1 and lr(10_000) == 0.1


def test_exponential_and_cosine_decay():
    e = exponential_decay(0.5, 0.9)
    assert e(0) == 0.5 and e(3) == pytest.approx(0.5 * 0.729)
    c = cosine_decay(1.0, 0.1, 10)
    assert c(0) == 1.0
    assert c(5) == pytest.approx(0.55)
    assert c(10) == pytest.approx(0.1) and c(50) == pytest.approx(0.1)
    assert all(c(k) >= c(k + 1) for k in range(12))


def test_schedule_checks():
    with pytest.raises(ValueError):
        linear_decay(1.0, 0.1, 0)
    with pytest.raises(TypeError):
        linear_decay(1.0, 0.1, 10.0)
    with pytest.raises(ValueError):
        cosine_decay(-1.0, 0.0, 10)


def test_schedule_drives_every_optimizer():
    lr = linear_decay(0.2, 0.0, 2)       # 0.2, 0.1, then 0
    for opt in (SGD(lr), Momentum(lr, beta=0.0)):
        theta = np.zeros(1)
        for _ in range(4):
            opt.step(theta, np.ones(1))
        assert theta[0] == pytest.approx(-0.3, abs=1e-15)
