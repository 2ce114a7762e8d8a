"""Models and training: micrograd's ``Neuron``, ``Layer``, ``MLP`` over SymPy symbols.

The classes mirror micrograd's (same constructor shapes, ``parameters()`` in
the same order, ``__call__``), with one difference that everything else
builds on: a parameter is a SymPy :class:`~sympy.Symbol` with a readable name,
``w{layer}_{neuron}_{input}`` for a weight and ``b{layer}_{neuron}`` for a
bias, and calling a model on symbolic inputs returns SymPy expressions, one
per output neuron. The graph is built once, never per sample.

Parameter *values* live in one flat float64 vector ``theta`` in
``parameters()`` order (micrograd's order: layer by layer, neuron by neuron,
its weights then its bias). :meth:`MLP.init_params` draws it as micrograd
does (weights uniform in [-1, 1], biases 0), :meth:`MLP.unflatten` views it as
per-layer ``(W, b)`` matrices, and the optimizers of :mod:`symgrad.optim`
update it in place.

Two levels of graph (see DESIGN.md):

* the **scalar graph**, ``model(xs)`` and :func:`scalar_loss`: micrograd's
  level, one node per scalar op; right for teaching, inspection and
  cross-checking (tape engine, finite differences); slow for big data;
* the **layer-level graph** (``MLP.layers_expr``, ``compile_loss``,
  ``compile_predict``): matrix expressions compiled to loops; the fast path
  for training. That part lives in its own section at the end of this module.

:func:`predict_numpy` is a plain NumPy forward pass, the reference the other
two are tested against. :func:`fit` is the training loop for any step
function ``step(theta, X, y) -> (loss, grad)``. Losses (``hinge``,
``logistic``, ``mse``, ``softmax_cross_entropy``, ``l2``) are defined in
:mod:`symgrad.losses` and re-exported here.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
import sympy as sp

from symgrad import losses as _losses
from symgrad.activation import activate as _activate
from symgrad.activation import activation_label, activations, check_activation
from symgrad.activation import numpy_activation as _np_activation
from symgrad.losses import LOSSES, hinge, l2, logistic, logsumexp, mse, softmax_cross_entropy

__all__ = [
    "Module", "Neuron", "Layer", "MLP", "ACTIVATIONS", "activations",
    "predict_numpy", "scalar_loss", "accuracy", "fit", "History",
    "mse", "hinge", "logistic", "softmax_cross_entropy", "l2", "logsumexp",
]

ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear")
"""The built-in names accepted by ``activation=``; :func:`activations` lists
every accepted name: also each unary op added with :func:`symgrad.register_op`."""


def _size(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return int(value)


def _inputs(x, nin: int, who: str) -> list:
    if isinstance(x, (str, bytes, sp.Basic)) or not hasattr(x, "__len__"):
        raise TypeError(f"{who} takes a list of {nin} inputs (SymPy expressions or numbers), got {x!r}")
    if len(x) != nin:
        raise ValueError(f"{who} takes {nin} inputs, got {len(x)}")
    out = []
    for i, v in enumerate(x):
        if isinstance(v, sp.Basic):
            if not isinstance(v, sp.Expr):
                raise TypeError(f"input {i} of {who} is {v!r}, not an expression")
            out.append(v)
        elif isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise TypeError(f"input {i} of {who} is {v!r}; pass SymPy expressions or numbers")
        else:
            out.append(sp.Integer(int(v)) if isinstance(v, (int, np.integer)) else sp.Float(float(v)))
    return out


class Module:
    """Base of :class:`Neuron`, :class:`Layer` and :class:`MLP` (micrograd's ``Module``).

    Subclasses provide ``parameters()`` and ``_weight_mask()``.
    """

    def parameters(self) -> list:
        """The parameter symbols, in micrograd's order."""
        return []

    def _weight_mask(self) -> list:
        return []

    @property
    def n_params(self) -> int:
        """Number of parameters (the length of ``theta``)."""
        return len(self.parameters())

    def init_params(self, seed: Optional[int] = 0) -> np.ndarray:
        """A fresh parameter vector as micrograd initializes one.

        Weights are drawn uniformly from [-1, 1] (``numpy.random.default_rng(seed)``,
        one draw per weight in ``parameters()`` order), biases are 0.

        Returns
        -------
        numpy.ndarray
            float64, shape ``(n_params,)``, in ``parameters()`` order.

        Examples
        --------
        >>> from symgrad.nn import MLP
        >>> theta = MLP(2, [3, 1]).init_params(seed=0)
        >>> theta.shape, theta.dtype.name, float(abs(theta).max()) <= 1.0
        ((13,), 'float64', True)
        """
        mask = np.array(self._weight_mask(), dtype=bool)
        theta = np.zeros(mask.shape[0])
        rng = np.random.default_rng(seed)
        theta[mask] = rng.uniform(-1.0, 1.0, size=int(mask.sum()))
        return theta


class Neuron(Module):
    """One neuron: ``activation(sum_i w_i * x_i + b)`` over SymPy symbols.

    Parameters
    ----------
    nin : int
        Number of inputs.
    activation : str or SymPy function class
        ``"linear"`` or a unary op of the op table, by name or head:
        ``"relu"``, ``"tanh"``, ``"sigmoid"``, or one of your own registered
        with :func:`symgrad.register_op` (see :func:`activations`).
        micrograd's ``nonlin=True`` is ``"relu"``, ``nonlin=False`` is ``"linear"``.
    name_prefix : str
        The parameters are named ``w{name_prefix}_{i}`` and ``b{name_prefix}``;
        in an :class:`MLP` the prefix is ``{layer}_{neuron}``. Neurons with the
        same prefix share their symbols.

    Examples
    --------
    >>> import sympy as sp
    >>> from symgrad.nn import Neuron
    >>> n = Neuron(2)
    >>> n, n.parameters()
    (ReLUNeuron(2), [w0_0_0, w0_0_1, b0_0])
    >>> x, y = sp.symbols("x y")
    >>> n([x, y])
    relu(b0_0 + w0_0_0*x + w0_0_1*y)
    """

    def __init__(self, nin: int, activation: str | type = "relu", name_prefix: str = "0_0") -> None:
        self.nin = _size(nin, "nin")
        self.activation = check_activation(activation)
        if not isinstance(name_prefix, str):
            raise TypeError(f"name_prefix must be a string, got {name_prefix!r}")
        self.name_prefix = name_prefix
        self.w = tuple(sp.Symbol(f"w{name_prefix}_{i}") for i in range(self.nin))
        self.b = sp.Symbol(f"b{name_prefix}")

    def __call__(self, x: Sequence) -> sp.Expr:
        """The neuron's output expression for inputs ``x`` (expressions or numbers)."""
        xs = _inputs(x, self.nin, repr(self))
        z = sp.Add(*[sp.Mul(wi, xi) for wi, xi in zip(self.w, xs)], self.b)
        return _activate(self.activation, z)

    def parameters(self) -> list:
        return [*self.w, self.b]

    def _weight_mask(self) -> list:
        return [True] * self.nin + [False]

    def __repr__(self) -> str:
        return f"{activation_label(self.activation)}Neuron({self.nin})"


class Layer(Module):
    """``nout`` neurons reading the same ``nin`` inputs.

    Parameters
    ----------
    nin, nout : int
        Number of inputs and of neurons (outputs).
    activation : str or SymPy function class
        ``"linear"`` or a unary op of the op table, by name or head:
        ``"relu"``, ``"tanh"``, ``"sigmoid"``, or one of your own registered
        with :func:`symgrad.register_op` (see :func:`activations`).
    name_prefix : str
        Neuron ``j`` gets the prefix ``{name_prefix}_{j}``; in an :class:`MLP`
        it is the layer index.

    Examples
    --------
    >>> import sympy as sp
    >>> from symgrad.nn import Layer
    >>> layer = Layer(1, 2, activation="tanh", name_prefix="3")
    >>> layer, layer.parameters()
    (Layer of [TanhNeuron(1), TanhNeuron(1)], [w3_0_0, b3_0, w3_1_0, b3_1])
    >>> layer([sp.Symbol("x")])
    [tanh(b3_0 + w3_0_0*x), tanh(b3_1 + w3_1_0*x)]
    """

    def __init__(self, nin: int, nout: int, activation: str | type = "relu", name_prefix: str = "0") -> None:
        self.nin = _size(nin, "nin")
        self.nout = _size(nout, "nout")
        self.activation = check_activation(activation)
        self.neurons = [Neuron(self.nin, self.activation, f"{name_prefix}_{j}")
                        for j in range(self.nout)]

    def __call__(self, x: Sequence) -> list:
        """One expression per neuron (always a list, also for one neuron)."""
        xs = _inputs(x, self.nin, repr(self))
        return [n(xs) for n in self.neurons]

    def parameters(self) -> list:
        return [p for n in self.neurons for p in n.parameters()]

    def _weight_mask(self) -> list:
        return [m for n in self.neurons for m in n._weight_mask()]

    def __repr__(self) -> str:
        return f"Layer of [{', '.join(str(n) for n in self.neurons)}]"


class MLP(Module):
    """A multi-layer perceptron, micrograd's ``MLP(nin, nouts)``.

    Hidden layers use ``activation``; the last layer is linear (micrograd's
    ``nonlin=i != len(nouts) - 1``).

    Parameters
    ----------
    nin : int
        Number of inputs.
    nouts : list of int
        Width of every layer, the last one being the number of outputs.
    activation : str or SymPy function class
        ``"linear"`` or a unary op of the op table, by name or head:
        ``"relu"``, ``"tanh"``, ``"sigmoid"``, or one of your own registered
        with :func:`symgrad.register_op` (see :func:`activations`).
        Activation of the hidden layers.

    Attributes
    ----------
    layers : list of Layer
    sizes : list of int
        ``[nin, *nouts]``.
    activation : str
        The activation's name.

    Examples
    --------
    >>> import sympy as sp
    >>> from symgrad.nn import MLP
    >>> model = MLP(2, [16, 16, 1])
    >>> model.n_params, model.parameters()[:4]
    (337, [w0_0_0, w0_0_1, b0_0, w0_1_0])
    >>> small = MLP(2, [2, 1])
    >>> small
    MLP of [Layer of [ReLUNeuron(2), ReLUNeuron(2)], Layer of [LinearNeuron(2)]]
    >>> small(sp.symbols("x0 x1"))
    [b1_0 + w1_0_0*relu(b0_0 + w0_0_0*x0 + w0_0_1*x1) + w1_0_1*relu(b0_1 + w0_1_0*x0 + w0_1_1*x1)]
    """

    def __init__(self, nin: int, nouts: Sequence[int], activation: str | type = "relu") -> None:
        self.nin = _size(nin, "nin")
        if isinstance(nouts, (int, str)) or not hasattr(nouts, "__len__") or len(nouts) == 0:
            raise TypeError(f"nouts must be a non-empty list of layer widths, e.g. [16, 16, 1], "
                            f"got {nouts!r}")
        self.nouts = [_size(n, f"nouts[{i}]") for i, n in enumerate(nouts)]
        self.activation = check_activation(activation)
        self.sizes = [self.nin, *self.nouts]
        last = len(self.nouts) - 1
        self.layers = [Layer(self.sizes[i], self.sizes[i + 1],
                             self.activation if i != last else "linear", name_prefix=str(i))
                       for i in range(len(self.nouts))]

    @property
    def nout(self) -> int:
        """Number of outputs (width of the last layer)."""
        return self.sizes[-1]

    def __call__(self, x: Sequence) -> list:
        """The scalar graph: one SymPy expression per output neuron."""
        act = _inputs(x, self.nin, "MLP")
        for layer in self.layers:
            act = layer(act)
        return act

    def parameters(self) -> list:
        return [p for layer in self.layers for p in layer.parameters()]

    def _weight_mask(self) -> list:
        return [m for layer in self.layers for m in layer._weight_mask()]

    def unflatten(self, theta: np.ndarray) -> list:
        """Per-layer ``(W, b)`` arrays from the flat parameter vector.

        ``W`` has shape ``(nout, nin)`` (row ``j`` = neuron ``j``'s weights) and
        ``b`` shape ``(nout,)``; both are copies.

        Examples
        --------
        >>> import numpy as np
        >>> from symgrad.nn import MLP
        >>> model = MLP(2, [2, 1])
        >>> (W0, b0), (W1, b1) = model.unflatten(np.arange(9.0))
        >>> W0, b0, W1, b1
        (array([[0., 1.],
               [3., 4.]]), array([2., 5.]), array([[6., 7.]]), array([8.]))
        >>> model.flatten(model.unflatten(np.arange(9.0)))
        array([0., 1., 2., 3., 4., 5., 6., 7., 8.])
        """
        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape != (self.n_params,):
            raise ValueError(f"theta must have shape ({self.n_params},) for this model, got {theta.shape}")
        out, start = [], 0
        for nin, nout in zip(self.sizes[:-1], self.sizes[1:]):
            block = theta[start:start + nout * (nin + 1)].reshape(nout, nin + 1)
            out.append((np.ascontiguousarray(block[:, :nin]), np.ascontiguousarray(block[:, nin])))
            start += nout * (nin + 1)
        return out

    def flatten(self, layers: Sequence) -> np.ndarray:
        """The flat parameter vector from per-layer ``(W, b)``; inverse of :meth:`unflatten`."""
        if len(layers) != len(self.layers):
            raise ValueError(f"expected {len(self.layers)} (W, b) pairs, got {len(layers)}")
        parts = []
        for i, ((W, b), nin, nout) in enumerate(zip(layers, self.sizes[:-1], self.sizes[1:])):
            W = np.asarray(W, dtype=np.float64)
            b = np.asarray(b, dtype=np.float64)
            if W.shape != (nout, nin) or b.shape != (nout,):
                raise ValueError(f"layer {i}: expected W {(nout, nin)} and b {(nout,)}, "
                                 f"got {W.shape} and {b.shape}")
            parts.append(np.hstack([W, b[:, None]]).ravel())
        return np.concatenate(parts)

    def __repr__(self) -> str:
        return f"MLP of [{', '.join(str(layer) for layer in self.layers)}]"

    # --- layer-level graph ---------------------------------------------------------
    # ``MLP.layers_expr`` (the model as matrix expressions, used by
    # ``compile_loss`` / ``compile_predict``) is attached with the layer-level
    # compiler, in the section at the end of this module.


# --- NumPy reference forward pass ------------------------------------------------------

def _as_data(X, nin: int) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != nin:
        raise ValueError(f"X must have shape (n_samples, {nin}), got {X.shape}")
    return X


def predict_numpy(model: MLP, theta: np.ndarray, X: np.ndarray) -> np.ndarray:
    """The model's outputs by a plain NumPy forward pass (the reference implementation).

    Parameters
    ----------
    model : MLP
    theta : ndarray, shape (model.n_params,)
    X : ndarray, shape (n, model.nin)

    Returns
    -------
    ndarray, shape (n, model.nout)

    Examples
    --------
    >>> import numpy as np
    >>> from symgrad.nn import MLP, predict_numpy
    >>> model = MLP(2, [2, 1])
    >>> theta = np.array([1.0, 0.0, 0.0,  0.0, 1.0, -1.0,  2.0, 3.0, 0.5])
    >>> predict_numpy(model, theta, np.array([[1.0, 2.0], [-1.0, 0.5]]))
    array([[5.5],
           [0.5]])
    """
    if not isinstance(model, MLP):
        raise TypeError(f"model must be an MLP, got {type(model).__name__}")
    a = _as_data(X, model.nin)
    for (W, b), layer in zip(model.unflatten(theta), model.layers):
        a = _np_activation(layer.activation, a @ W.T + b)
    return a


# --- the whole loss as one scalar graph ---------------------------------------------------

def scalar_loss(model: MLP, X: np.ndarray, y: np.ndarray, loss: str = "hinge",
                l2: float = 1e-4) -> sp.Expr:
    """The mean loss over a dataset plus an L2 penalty, as ONE scalar SymPy graph.

    ``mean_i loss(model(X[i]), y[i]) + l2 * sum(p**2 for p in parameters)``,
    micrograd's training objective, with the data as constants: one copy of
    the network per sample. Meant for small data: cross-checking compiled
    layer-level kernels against the scalar path, the tape engine
    (:func:`symgrad.tape.replay`) and finite differences.

    Parameters
    ----------
    model : MLP
    X : array_like, shape (n, model.nin)
    y : array_like, shape (n,) (``mse`` with several outputs: ``(n, nout)``)
        Labels in {-1, +1} for ``hinge`` and ``logistic`` (one output),
        class indices ``0..nout-1`` for ``softmax_cross_entropy``, targets
        for ``mse``.
    loss : {"hinge", "logistic", "mse", "softmax_cross_entropy"}
    l2 : float
        Coefficient of the L2 penalty (0 for none).

    Returns
    -------
    sympy.Expr
        A scalar expression in ``model.parameters()``.

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> from symgrad.nn import MLP, scalar_loss
    >>> model = MLP(1, [1])
    >>> L = scalar_loss(model, np.array([[2.0]]), np.array([1.0]), loss="hinge", l2=0.5)
    >>> w, b = model.parameters()
    >>> sg.tape.replay(L, {w: 0.25, b: 0.0})      # relu(1 - 0.5) + 0.5 * 0.0625
    (0.53125, {w0_0_0: -1.75, b0_0: -1.0})
    """
    if not isinstance(model, MLP):
        raise TypeError(f"model must be an MLP, got {type(model).__name__}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {tuple(LOSSES)}, got {loss!r}")
    X = _as_data(X, model.nin)
    y = np.asarray(y)
    n = X.shape[0]
    if n == 0:
        raise ValueError("X is empty")
    if y.shape[0:1] != (n,):
        raise ValueError(f"y must have {n} entries (one per row of X), got shape {y.shape}")
    nout = model.nout
    if loss in ("hinge", "logistic"):
        if nout != 1:
            raise ValueError(f"loss {loss!r} needs a model with one output, this one has {nout}")
        if y.ndim != 1 or not np.all(np.isin(y, (-1, 1))):
            raise ValueError(f"loss {loss!r} needs labels y in {{-1, +1}} of shape (n,)")
    elif loss == "softmax_cross_entropy":
        if y.ndim != 1 or not np.all(np.mod(y, 1) == 0) or y.min() < 0 or y.max() >= nout:
            raise ValueError(f"loss 'softmax_cross_entropy' needs integer class labels "
                             f"0..{nout - 1} of shape (n,)")
    elif loss == "mse":
        want = (n,) if nout == 1 else (n, nout)
        if y.shape != want and not (nout == 1 and y.shape == (n, 1)):
            raise ValueError(f"loss 'mse' needs targets of shape {want}, got {y.shape}")
    per_sample = LOSSES[loss]
    terms = []
    for i in range(n):
        out = model([float(v) for v in X[i]])
        if loss == "softmax_cross_entropy":
            terms.append(per_sample(out, int(y[i])))
        elif loss == "mse":
            targets = np.ravel(y[i])
            terms.extend(per_sample(o, float(t)) for o, t in zip(out, targets))
        else:
            terms.append(per_sample(out[0], float(y[i])))
    data_loss = sp.Mul(sp.Rational(1, n), sp.Add(*terms), evaluate=False)
    if not l2:
        return data_loss
    return sp.Add(data_loss, _losses.l2(model.parameters(), l2), evaluate=False)


# --- training loop -------------------------------------------------------------------------

def accuracy(scores: np.ndarray, y: np.ndarray) -> float:
    """Fraction of correct predictions, or ``nan`` where accuracy means nothing.

    * one score per sample and labels in {-1, +1} (or {0, 1}): the prediction
      is +1 (1) where ``score > 0``, else -1 (0);
    * one column per class and integer labels ``0..k-1``: the argmax;
    * anything else (regression targets): ``nan``.

    Examples
    --------
    >>> import numpy as np
    >>> from symgrad.nn import accuracy
    >>> accuracy(np.array([0.3, -2.0, 0.1, 0.0]), np.array([1.0, -1.0, -1.0, -1.0]))
    0.75
    >>> accuracy(np.array([[2.0, 1.0], [0.0, 3.0]]), np.array([0, 0]))
    0.5
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(y)
    if s.ndim == 2 and s.shape[1] == 1:
        s = s[:, 0]
    if y.ndim != 1 or s.shape[0] != y.shape[0] or y.shape[0] == 0:
        return math.nan
    if s.ndim == 1:
        if np.all(np.isin(y, (-1, 1))):
            pred = np.where(s > 0, 1, -1)
        elif np.all(np.isin(y, (0, 1))):
            pred = np.where(s > 0, 1, 0)
        else:
            return math.nan
        return float(np.mean(pred == y))
    if s.ndim == 2:
        k = s.shape[1]
        if np.all(np.mod(y, 1) == 0) and y.min() >= 0 and y.max() < k:
            return float(np.mean(np.argmax(s, axis=1) == y))
    return math.nan


@dataclass(repr=False)
class History:
    """What :func:`fit` recorded: one entry per step.

    ``loss[k]`` and ``accuracy[k]`` are measured on step ``k``'s batch
    before its update (as micrograd does). ``history["loss"]`` works too.

    Examples
    --------
    >>> from symgrad.nn import History
    >>> h = History(loss=[0.9, 0.5, 0.2], accuracy=[0.5, 0.75, 1.0])
    >>> h
    History(steps=3, loss 0.9 -> 0.2, accuracy 0.5 -> 1)
    >>> h["loss"][-1], len(h)
    (0.2, 3)
    """

    loss: list = field(default_factory=list)
    accuracy: list = field(default_factory=list)

    def __getitem__(self, key: str) -> list:
        if key in ("loss", "accuracy"):
            return getattr(self, key)
        raise KeyError(f"History has 'loss' and 'accuracy', not {key!r}")

    def keys(self) -> tuple:
        return ("loss", "accuracy")

    def __len__(self) -> int:
        return len(self.loss)

    def __repr__(self) -> str:
        if not self.loss:
            return "History(steps=0)"
        text = f"History(steps={len(self.loss)}, loss {self.loss[0]:.4g} -> {self.loss[-1]:.4g}"
        acc = self.accuracy
        if acc and not (math.isnan(acc[0]) and math.isnan(acc[-1])):
            text += f", accuracy {acc[0]:.4g} -> {acc[-1]:.4g}"
        return text + ")"


class _Progress:
    """One-line ``\\r`` progress display on stderr (no dependency)."""

    def __init__(self, steps: int, enabled: bool) -> None:
        self.steps, self.enabled = steps, enabled
        self._last = -math.inf
        self._width = 0

    def update(self, k: int, loss: float, acc: float) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if k not in (1, self.steps) and now - self._last < 0.1:
            return
        self._last = now
        text = f"step {k}/{self.steps}  loss {loss:.6g}"
        if not math.isnan(acc):
            text += f"  acc {acc:.1%}"
        pad = max(self._width - len(text), 0)
        self._width = len(text)
        sys.stderr.write("\r" + text + " " * pad)
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self._width:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _check_theta(theta) -> None:
    if not isinstance(theta, np.ndarray):
        raise TypeError(f"theta must be a numpy.ndarray, got {type(theta).__name__}")
    if theta.dtype != np.float64 or theta.ndim != 1 or not theta.flags.c_contiguous \
            or not theta.flags.writeable:
        raise ValueError("theta must be a writeable C-contiguous float64 vector (it is updated "
                         f"in place); got dtype {theta.dtype}, shape {theta.shape}")


def fit(step: Callable, theta: np.ndarray, X: np.ndarray, y: np.ndarray, optimizer: Any,
        steps: int = 100, batch_size: Optional[int] = None, seed: Optional[int] = 0,
        progress: Optional[bool] = None,
        callback: Optional[Callable[[int, float, float, np.ndarray], Any]] = None) -> History:
    """Train: ``steps`` times, ``loss, grad = step(theta, Xb, yb)`` then
    ``optimizer.step(theta, grad)``. ``theta`` is updated in place.

    Parameters
    ----------
    step : callable
        ``step(theta, X, y) -> (loss, grad)``, e.g. ``symgrad.nn.compile_loss(...)``.
        If it has a ``predict(theta, X)`` attribute, accuracy is recorded (see
        :func:`accuracy`), measured on the batch before the update, like micrograd.
    theta : ndarray
        Writeable C-contiguous float64 parameter vector, updated in place.
    X, y : array_like
        The data: ``X`` of shape ``(n, ...)``, ``y`` with ``n`` entries.
    optimizer : object with ``step(theta, grad)``
        E.g. ``symgrad.optim.SGD(lr=0.1)``; its state carries over between calls.
    steps : int
        Number of updates.
    batch_size : int, optional
        Draw a minibatch of this many distinct samples per step (seeded by
        ``seed``, micrograd's ``permutation(n)[:batch_size]``); default: the
        whole dataset every step.
    seed : int or None
        Seed of the minibatch sampler.
    progress : bool, optional
        Show a one-line progress display on stderr; default: only when stderr
        is a terminal.
    callback : callable, optional
        ``callback(k, loss, accuracy, theta)`` after each update (``k`` from 0);
        returning a true value stops training.

    Returns
    -------
    History
        ``loss`` and ``accuracy`` per step.

    Raises
    ------
    FloatingPointError
        If the loss becomes nan or infinite (the history so far is the
        exception's ``history`` attribute); lower the learning rate.

    Examples
    --------
    >>> import numpy as np
    >>> from symgrad import nn, optim
    >>> X = np.array([[1.0], [2.0], [3.0]]); y = 2.0 * X[:, 0]
    >>> def step(theta, X, y):            # least squares for y = theta[0] * x
    ...     r = theta[0] * X[:, 0] - y
    ...     return float(np.mean(r**2)), np.array([np.mean(2 * r * X[:, 0])])
    >>> theta = np.zeros(1)
    >>> h = nn.fit(step, theta, X, y, optim.SGD(lr=0.1), steps=20, progress=False)
    >>> round(float(theta[0]), 6), h.loss[0] > h.loss[-1]
    (2.0, True)
    """
    if not callable(step):
        raise TypeError("step must be callable: step(theta, X, y) -> (loss, grad)")
    if not callable(getattr(optimizer, "step", None)):
        raise TypeError("optimizer must have a step(theta, grad) method, e.g. symgrad.optim.SGD(lr=0.1)")
    _check_theta(theta)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    X = np.asarray(X)
    if X.dtype != np.float64 or not X.flags.c_contiguous:
        X = np.ascontiguousarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim < 1 or y.ndim < 1 or X.shape[0] != y.shape[0]:
        raise ValueError(f"X and y must have one entry per sample; got shapes {X.shape} and {y.shape}")
    n = X.shape[0]
    if batch_size is not None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or not 1 <= batch_size <= n:
            raise ValueError(f"batch_size must be an integer in 1..{n} (the number of samples) "
                             f"or None, got {batch_size!r}")
    rng = np.random.default_rng(seed)
    predict = getattr(step, "predict", None)
    if progress is None:
        progress = bool(getattr(sys.stderr, "isatty", lambda: False)())
    bar = _Progress(int(steps), bool(progress))
    history = History()
    try:
        for k in range(int(steps)):
            if batch_size is None:
                Xb, yb = X, y
            else:
                idx = rng.permutation(n)[:batch_size]
                Xb, yb = X[idx], y[idx]
            loss, grad = step(theta, Xb, yb)
            loss = float(loss)
            if not math.isfinite(loss):
                err = FloatingPointError(
                    f"the loss is {loss} at step {k}; training stopped (try a smaller "
                    f"learning rate, or check the data for nan/inf)")
                err.history = history
                raise err
            acc = accuracy(predict(theta, Xb), yb) if callable(predict) else math.nan
            history.loss.append(loss)
            history.accuracy.append(acc)
            optimizer.step(theta, grad)
            bar.update(k + 1, loss, acc)
            if callback is not None and callback(k, loss, acc, theta):
                break
    finally:
        bar.close()
    return history


# --- layer-level compiled training step ----------------------------------------------------
# The model as matrix expressions and its compiled training step live in
# symgrad.layers (one kernel looping over the batch); re-exported here.

from symgrad.layers import LossStep, Predictor, compile_loss, compile_predict  # noqa: E402
from symgrad.layers import layers_expr as _layers_expr  # noqa: E402

MLP.layers_expr = _layers_expr
__all__ += ["compile_loss", "compile_predict", "LossStep", "Predictor"]
