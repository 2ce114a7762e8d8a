"""Optimizers that update one flat float64 parameter vector in place.

symgrad keeps a model's parameter values in one flat NumPy vector ``theta``
(in ``model.parameters()`` order) and a compiled training step returns the
gradient as a vector of the same length. An optimizer is then a few
vectorized NumPy lines: ``opt.step(theta, grad)`` updates ``theta`` in place,
keeping its own state (step counter, moment vectors), created lazily at the
first step with the size of ``theta``. ``opt.reset()`` forgets the state.

The learning rate ``lr`` is a float or a schedule: a callable ``lr(k)`` of
the step index ``k = 0, 1, 2, ...``. micrograd's demo decays its rate as
``1.0 - 0.9*k/100``; here that is ``SGD(lr=linear_decay(1.0, 0.1, 100))`` or
simply ``SGD(lr=lambda k: 1.0 - 0.9*k/100)``.

Update rules (``g`` the gradient, ``lr_k`` the rate at step ``k``):

* :class:`SGD`       ``theta -= lr_k * g``
* :class:`Momentum`  ``v = beta*v + g;  theta -= lr_k * v`` (PyTorch's form)
* :class:`Adam`      ``m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g**2;``
  ``theta -= lr_k * m_hat / (sqrt(v_hat) + eps)`` with the bias corrections
  ``m_hat = m / (1 - b1**t)``, ``v_hat = v / (1 - b2**t)``, ``t = k + 1``
  (Kingma & Ba, 2015)
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Union

import numpy as np

__all__ = ["Optimizer", "SGD", "Momentum", "Adam", "linear_decay", "exponential_decay",
           "cosine_decay"]

LearningRate = Union[float, Callable[[int], float]]


def _check_rate(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{what} must be a real number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0.0:
        raise ValueError(f"{what} must be finite and >= 0, got {value!r}")
    return v


def _check_unit(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{what} must be a real number, got {value!r}")
    v = float(value)
    if not 0.0 <= v < 1.0:
        raise ValueError(f"{what} must be in [0, 1), got {value!r}")
    return v


class Optimizer:
    """Base class: learning-rate handling, argument checks, state, step counter.

    Subclasses implement ``_init_state(n)`` and ``_update(theta, grad, lr)``.

    Attributes
    ----------
    lr : float or callable
        The learning rate or schedule ``lr(k)``.
    k : int
        Number of steps taken since construction or :meth:`reset`.

    Examples
    --------
    >>> from symgrad.optim import SGD, linear_decay
    >>> opt = SGD(lr=linear_decay(1.0, 0.1, 100))
    >>> opt.lr_at(0), opt.lr_at(50), opt.k
    (1.0, 0.55, 0)
    """

    def __init__(self, lr: LearningRate) -> None:
        if not callable(lr):
            _check_rate(lr, "lr")
        self.lr = lr
        self.k = 0
        self._n: Optional[int] = None

    def lr_at(self, k: int) -> float:
        """The learning rate at step ``k`` (checked: finite and >= 0)."""
        if callable(self.lr):
            return _check_rate(self.lr(k), f"lr({k}) (the schedule's value)")
        return float(self.lr)

    def step(self, theta: np.ndarray, grad: np.ndarray) -> None:
        """Update ``theta`` in place from ``grad``; advance the step counter.

        Parameters
        ----------
        theta : numpy.ndarray
            1-D, float64, C-contiguous and writeable: the parameter vector.
        grad : numpy.ndarray
            Gradient of the loss w.r.t. ``theta``, same shape (any real dtype).

        Raises
        ------
        TypeError
            If ``theta`` or ``grad`` is not a NumPy array.
        ValueError
            If ``theta`` is not a writeable contiguous float64 vector, the
            shapes differ, or ``theta`` changed size since the state was built
            (call :meth:`reset`).
        """
        if not isinstance(theta, np.ndarray):
            raise TypeError(f"theta must be a numpy.ndarray (float64 vector), got {type(theta).__name__}")
        if not isinstance(grad, np.ndarray):
            raise TypeError(f"grad must be a numpy.ndarray, got {type(grad).__name__}")
        if theta.dtype != np.float64:
            raise ValueError(f"theta must have dtype float64 (it is updated in place), got {theta.dtype}; "
                             f"use theta = theta.astype(np.float64)")
        if theta.ndim != 1:
            raise ValueError(f"theta must be a 1-D vector, got shape {theta.shape}")
        if not theta.flags.c_contiguous:
            raise ValueError("theta must be C-contiguous (it is updated in place); "
                             "use theta = np.ascontiguousarray(theta)")
        if not theta.flags.writeable:
            raise ValueError("theta is read-only; pass a writeable array (theta.copy())")
        if grad.shape != theta.shape:
            raise ValueError(f"grad has shape {grad.shape} but theta has shape {theta.shape}")
        if not (np.issubdtype(grad.dtype, np.floating) or np.issubdtype(grad.dtype, np.integer)):
            raise ValueError(f"grad must be a real array, got dtype {grad.dtype}")
        n = theta.shape[0]
        if self._n is None:
            self._init_state(n)
            self._n = n
        elif self._n != n:
            raise ValueError(f"this optimizer's state was built for {self._n} parameters, "
                             f"theta has {n}; call reset() to start over with a new theta")
        lr = self.lr_at(self.k)
        self._update(theta, np.asarray(grad, dtype=np.float64), lr)
        self.k += 1

    def reset(self) -> None:
        """Forget the state: step counter back to 0, moment vectors dropped."""
        self.k = 0
        self._n = None
        self._init_state(0)

    def _init_state(self, n: int) -> None:
        pass

    def _update(self, theta: np.ndarray, grad: np.ndarray, lr: float) -> None:
        raise NotImplementedError

    def _lr_repr(self) -> str:
        return repr(self.lr) if not callable(self.lr) else getattr(self.lr, "__name__", "schedule")


class SGD(Optimizer):
    """Plain gradient descent: ``theta -= lr_k * grad``.

    Parameters
    ----------
    lr : float or callable
        Learning rate, or a schedule ``lr(k) -> float`` of the step index.

    Examples
    --------
    >>> import numpy as np
    >>> from symgrad.optim import SGD
    >>> theta = np.array([1.0, -2.0])
    >>> opt = SGD(lr=lambda k: 1.0 - 0.9 * k / 100)    # micrograd's schedule
    >>> opt.step(theta, np.array([0.5, 0.5])); theta
    array([ 0.5, -2.5])
    >>> opt.step(theta, np.array([1.0, 0.0])); theta   # lr = 0.991
    array([-0.491, -2.5  ])
    """

    def __init__(self, lr: LearningRate = 0.1) -> None:
        super().__init__(lr)

    def _update(self, theta, grad, lr):
        theta -= lr * grad

    def __repr__(self) -> str:
        return f"SGD(lr={self._lr_repr()})"


class Momentum(Optimizer):
    """Gradient descent with (heavy-ball) momentum, PyTorch's form:
    ``v = beta*v + grad;  theta -= lr_k * v`` (``v`` starts at 0).

    Parameters
    ----------
    lr : float or callable
        Learning rate, or a schedule ``lr(k)``.
    beta : float
        Momentum coefficient in [0, 1); 0 gives :class:`SGD`.

    Examples
    --------
    >>> import numpy as np
    >>> from symgrad.optim import Momentum
    >>> theta = np.zeros(1)
    >>> opt = Momentum(lr=0.1, beta=0.9)
    >>> for _ in range(2):
    ...     opt.step(theta, np.ones(1))
    >>> theta      # -0.1*1 then -0.1*(0.9 + 1)
    array([-0.29])
    """

    def __init__(self, lr: LearningRate = 0.01, beta: float = 0.9) -> None:
        super().__init__(lr)
        self.beta = _check_unit(beta, "beta")
        self.velocity: Optional[np.ndarray] = None

    def _init_state(self, n):
        self.velocity = np.zeros(n) if n else None

    def _update(self, theta, grad, lr):
        v = self.velocity
        v *= self.beta
        v += grad
        theta -= lr * v

    def __repr__(self) -> str:
        return f"Momentum(lr={self._lr_repr()}, beta={self.beta})"


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias-corrected moments.

    ``m = b1*m + (1-b1)*g``, ``v = b2*v + (1-b2)*g**2``,
    ``theta -= lr_k * m_hat / (sqrt(v_hat) + eps)`` with
    ``m_hat = m/(1 - b1**t)``, ``v_hat = v/(1 - b2**t)``, ``t = k + 1``.

    Parameters
    ----------
    lr : float or callable
        Learning rate, or a schedule ``lr(k)``.
    beta1, beta2 : float
        Decay rates of the first and second moment estimates, in [0, 1).
    eps : float
        Added to ``sqrt(v_hat)`` to avoid division by zero.

    Examples
    --------
    >>> import numpy as np
    >>> from symgrad.optim import Adam
    >>> theta = np.array([1.0, 1.0])
    >>> opt = Adam(lr=0.1)
    >>> opt.step(theta, np.array([3.0, -0.01]))   # first step: lr * sign(g), about
    >>> theta.round(6)
    array([0.9, 1.1])
    """

    def __init__(self, lr: LearningRate = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8) -> None:
        super().__init__(lr)
        self.beta1 = _check_unit(beta1, "beta1")
        self.beta2 = _check_unit(beta2, "beta2")
        self.eps = _check_rate(eps, "eps")
        self.m: Optional[np.ndarray] = None
        self.v: Optional[np.ndarray] = None

    def _init_state(self, n):
        self.m = np.zeros(n) if n else None
        self.v = np.zeros(n) if n else None

    def _update(self, theta, grad, lr):
        b1, b2 = self.beta1, self.beta2
        t = self.k + 1
        m, v = self.m, self.v
        m *= b1
        m += (1.0 - b1) * grad
        v *= b2
        v += (1.0 - b2) * (grad * grad)
        m_hat = m / (1.0 - b1**t)
        v_hat = v / (1.0 - b2**t)
        theta -= lr * m_hat / (np.sqrt(v_hat) + self.eps)

    def __repr__(self) -> str:
        return f"Adam(lr={self._lr_repr()}, beta1={self.beta1}, beta2={self.beta2}, eps={self.eps})"


# --- learning-rate schedules ---------------------------------------------------------------

def _check_steps(steps) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise TypeError(f"steps must be an integer, got {steps!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return int(steps)


def linear_decay(start: float, end: float, steps: int) -> Callable[[int], float]:
    """Schedule going linearly from ``start`` (step 0) to ``end`` (step ``steps``),
    constant after: ``lr(k) = start - (start - end) * k / steps`` for ``k < steps``.

    micrograd's ``1.0 - 0.9*k/100`` is ``linear_decay(1.0, 0.1, 100)``.

    Examples
    --------
    >>> from symgrad.optim import linear_decay
    >>> lr = linear_decay(1.0, 0.1, 100)
    >>> lr(0), lr(50), lr(100), lr(1000)
    (1.0, 0.55, 0.1, 0.1)
    """
    a, b, n = _check_rate(start, "start"), _check_rate(end, "end"), _check_steps(steps)

    def linear(k: int) -> float:
        # written as micrograd writes it, a - (a - b)*k/n, so its numbers are reproduced exactly
        return b if k >= n else a - (a - b) * k / n

    return linear


def exponential_decay(start: float, gamma: float) -> Callable[[int], float]:
    """Schedule ``lr(k) = start * gamma**k``.

    Examples
    --------
    >>> from symgrad.optim import exponential_decay
    >>> lr = exponential_decay(0.1, 0.5)
    >>> lr(0), lr(2)
    (0.1, 0.025)
    """
    a = _check_rate(start, "start")
    g = _check_rate(gamma, "gamma")

    def exponential(k: int) -> float:
        return a * g**k

    return exponential


def cosine_decay(start: float, end: float, steps: int) -> Callable[[int], float]:
    """Cosine annealing from ``start`` to ``end`` over ``steps`` steps, constant after:
    ``lr(k) = end + (start - end) * (1 + cos(pi * min(k, steps) / steps)) / 2``.

    Examples
    --------
    >>> from symgrad.optim import cosine_decay
    >>> lr = cosine_decay(1.0, 0.0, 10)
    >>> lr(0), round(lr(5), 12), lr(10)
    (1.0, 0.5, 0.0)
    """
    a, b, n = _check_rate(start, "start"), _check_rate(end, "end"), _check_steps(steps)

    def cosine(k: int) -> float:
        return b + (a - b) * (1.0 + math.cos(math.pi * min(k, n) / n)) / 2.0

    return cosine
