"""Models as layer-level graphs: the compiled training step and predictor.

An :class:`~symgrad.nn.MLP` is written once as matrix expressions over a
batch of ``n`` samples stored as columns (``X`` is ``(nin, n)``)::

    Z_l = W_l * H_(l-1) + b_l * 1(1, n)        H_l = act(Z_l)       S = Z_last

and the loss as a scalar over ``S`` (``msum``, :func:`symgrad.column_logsumexp`).
The matrix chain rule gives the gradient program, which compiles to one loop
kernel (:mod:`symgrad.matrix.compile`): its size and compile time depend on
the number of layers, not their width, and the batch is a loop inside it.

``compile_loss`` wraps that kernel as ``step(theta, X, y) -> (loss, grad)``
over micrograd's flat parameter vector; ``compile_predict`` gives the scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from symgrad.activation import activation_op
from symgrad.functions import relu, softplus
from symgrad.matrix.functions import column_logsumexp, msum

__all__ = ["LayerGraph", "layers_expr", "loss_expr", "compile_loss", "compile_predict",
           "LossStep", "Predictor"]

LOSS_NAMES = ("hinge", "logistic", "mse", "softmax_cross_entropy")


@dataclass
class LayerGraph:
    """An MLP as matrix expressions: ``scores`` is ``(nout, n)`` for data ``X`` ``(nin, n)``."""

    X: sp.MatrixSymbol
    weights: list
    biases: list
    scores: sp.MatrixExpr
    n: sp.Symbol

    @property
    def parameters(self) -> list:
        """The weight and bias matrices, layer by layer."""
        return [m for pair in zip(self.weights, self.biases) for m in pair]


def layers_expr(model, n: sp.Symbol | None = None, data_rows: bool = False) -> LayerGraph:
    """The layer-level graph of ``model`` (see the module docstring).

    ``data_rows=True`` takes the data as ``X`` of shape ``(n, nin)`` (one row
    per sample, as NumPy users hold it) and starts with ``W0*X.T``.

    Examples
    --------
    >>> import symgrad as sg
    >>> g = sg.nn.MLP(2, [3, 1]).layers_expr()
    >>> g.scores
    W1*Lambda(_d, relu(_d)).(W0*X + b0*1) + b1*1
    """
    n = sp.Symbol("n", integer=True, positive=True) if n is None else n
    sizes = model.sizes
    X = sp.MatrixSymbol("X", n, sizes[0]) if data_rows else sp.MatrixSymbol("X", sizes[0], n)
    Ws, bs = [], []
    H = X.T if data_rows else X
    for li, layer in enumerate(model.layers):
        W = sp.MatrixSymbol(f"W{li}", sizes[li + 1], sizes[li])
        b = sp.MatrixSymbol(f"b{li}", sizes[li + 1], 1)
        Ws.append(W)
        bs.append(b)
        # built directly (no .doit()): SymPy's operator path re-canonicalises and is slow
        Z = sp.MatAdd(sp.MatMul(W, H), sp.MatMul(b, sp.OneMatrix(1, n)))
        act = activation_op(layer.activation)     # any unary op of the op table
        H = Z if act is None else Z.applyfunc(act.head)
    return LayerGraph(X, Ws, bs, H, n)


def loss_expr(graph: LayerGraph, loss: str, l2: float = 0.0) -> tuple:
    """``(scalar loss expression, target MatrixSymbol)``: the mean over the batch
    of the loss plus ``l2 * sum(theta**2)`` (weights and biases, as micrograd).

    Targets ``T`` are ``(1, n)`` labels in {-1, +1} for hinge/logistic,
    ``(nout, n)`` values for mse and ``(nout, n)`` one-hot columns for
    softmax_cross_entropy.
    """
    S, n = graph.scores, graph.n
    k = S.shape[0]
    if loss not in LOSS_NAMES:
        raise ValueError(f"loss must be one of {LOSS_NAMES}, got {loss!r}")
    if loss in ("hinge", "logistic") and k != 1:
        raise ValueError(f"loss {loss!r} needs a model with one output, this one has {k}")
    T = sp.MatrixSymbol("T", 1 if loss in ("hinge", "logistic") else k, n)
    # built with constructors, not operators: SymPy's operator path calls doit(), ~0.1 s here
    margin = sp.HadamardProduct(T, S)
    if loss == "hinge":
        data = msum(sp.MatAdd(sp.OneMatrix(1, n), sp.MatMul(-1, margin)).applyfunc(relu))
    elif loss == "logistic":
        data = msum(sp.MatMul(-1, margin).applyfunc(softplus))
    elif loss == "mse":
        data = msum(sp.HadamardPower(sp.MatAdd(S, sp.MatMul(-1, T)), 2))
    else:
        data = msum(column_logsumexp(S)) - msum(margin)
    total = data / n
    if l2:
        total = total + sp.Float(l2) * sp.Add(*[msum(sp.HadamardPower(p, 2)) for p in graph.parameters])
    return total, T


def _check_data(model, X, who: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != model.nin:
        raise ValueError(f"{who}: X must have shape (n, {model.nin}) (one row per sample, "
                         f"{model.nin} features), got {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{who}: X is empty")
    if not np.isfinite(X).all():
        raise ValueError(f"{who}: X contains NaN or infinite values")
    return X


class _ParamLayout:
    """Between micrograd's flat ``theta`` and per-layer ``(W, b)`` matrices."""

    def __init__(self, model) -> None:
        self.model = model
        self.blocks = []
        start = 0
        for nin, nout in zip(model.sizes[:-1], model.sizes[1:]):
            self.blocks.append((start, nin, nout))
            start += nout * (nin + 1)
        self.size = start

    def split(self, theta) -> list:
        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape != (self.size,):
            raise ValueError(f"theta must have shape ({self.size},) for this model, got {theta.shape}")
        Ws, bs = [], []
        for start, nin, nout in self.blocks:
            block = theta[start:start + nout * (nin + 1)].reshape(nout, nin + 1)
            Ws.append(np.ascontiguousarray(block[:, :nin]))
            bs.append(np.ascontiguousarray(block[:, nin:]))
        return Ws + bs

    def join(self, gWs: list, gbs: list) -> np.ndarray:
        out = np.empty(self.size)
        for (start, nin, nout), gW, gb in zip(self.blocks, gWs, gbs):
            block = out[start:start + nout * (nin + 1)].reshape(nout, nin + 1)
            block[:, :nin] = gW
            block[:, nin:] = gb
        return out


class Predictor:
    """Compiled scores: ``predictor(theta, X)`` -> ``(n, nout)`` array."""

    def __init__(self, model) -> None:
        from symgrad.matrix.compile import compile_forward

        self.model = model
        self.graph = layers_expr(model)
        self._layout = _ParamLayout(model)
        g = self.graph
        self._fn = compile_forward(g.scores, [*g.weights, *g.biases, g.X])

    def __call__(self, theta, X) -> np.ndarray:
        X = _check_data(self.model, X, "predict")
        params = self._layout.split(theta)
        (S,) = self._fn(*params, np.ascontiguousarray(X.T))
        return S.T


class LossStep:
    """``step(theta, X, y) -> (loss, grad)``: mean loss over the batch plus L2,
    and its gradient w.r.t. the flat parameter vector, from one compiled kernel.

    Attributes
    ----------
    loss, l2 : the objective; ``graph``: the model's :class:`LayerGraph`;
    ``expr``: the scalar loss expression; ``predict``: a :class:`Predictor`.
    """

    def __init__(self, model, loss: str = "hinge", l2: float = 0.0) -> None:
        from compiler.llvmjit import load_loops
        from symgrad.matrix.compile import CompiledLayers, to_array_program

        self.model, self.loss, self.l2 = model, loss, float(l2)
        self.graph = layers_expr(model, data_rows=True)
        self.expr, self._T = loss_expr(self.graph, loss, l2)
        g = self.graph
        params = [*g.weights, *g.biases]
        self._layout = _ParamLayout(model)
        # one kernel reading W_l, b_l from theta and writing the gradient into one
        # flat vector in the same layout: no splitting or joining per call
        theta = sp.MatrixSymbol("theta", self._layout.size, 1)
        views, out_views = {}, {}
        for li, (start, nin, nout) in enumerate(self._layout.blocks):
            views[g.weights[li]] = (0, start, nin + 1)
            views[g.biases[li]] = (0, start + nin, nin + 1)
        self._fn = CompiledLayers(self.expr, [*params, g.X, self._T], params, program_only=True)
        prog = self._fn.program
        order = list(g.weights) + list(g.biases)
        for k, w in enumerate(prog.wrt):
            li = order.index(w) % len(g.weights)
            start, nin, _ = self._layout.blocks[li]
            out_views[1 + k] = (0, start if w in g.weights else start + nin, nin + 1)
        ap, _ = to_array_program(prog, [theta, g.X, self._T], prog.outputs + prog.gradients,
                                 views, out_views, [self._layout.size])
        self._kernel = load_loops(ap)
        self.source = self._fn.source
        self.predict = Predictor(model)

    def targets(self, y, n: int) -> np.ndarray:
        """The target matrix ``T`` for labels ``y`` (checked against the loss's domain)."""
        y = np.asarray(y)
        k = self.model.nout
        if y.shape[:1] != (n,):
            raise ValueError(f"y must have one entry per sample ({n}), got shape {y.shape}")
        if self.loss in ("hinge", "logistic"):
            y = y.reshape(n)
            if not (np.abs(y) == 1).all():
                bad = y[np.abs(y) != 1][:3]
                raise ValueError(f"loss {self.loss!r} needs labels in {{-1, +1}}, got {bad.tolist()}")
            return np.ascontiguousarray(y, dtype=np.float64)   # read as the (1, n) row T
        if self.loss == "softmax_cross_entropy":
            if y.ndim != 1 or not np.all(np.mod(y, 1) == 0) or y.min() < 0 or y.max() >= k:
                raise ValueError(f"loss 'softmax_cross_entropy' needs integer class labels "
                                 f"0..{k - 1} of shape (n,)")
            T = np.zeros((k, n))
            T[y.astype(np.int64), np.arange(n)] = 1.0
            return T
        y = np.asarray(y, dtype=np.float64).reshape(n, -1)
        if y.shape[1] != k:
            raise ValueError(f"loss 'mse' needs targets of shape (n,) or (n, {k}), got {y.shape}")
        if not np.isfinite(y).all():
            raise ValueError("targets y contain NaN or infinite values")
        return np.ascontiguousarray(y.T)

    def __call__(self, theta, X, y) -> tuple:
        X = _check_data(self.model, X, "step")
        T = self.targets(y, X.shape[0])
        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape != (self._layout.size,):
            raise ValueError(f"theta must have shape ({self._layout.size},) for this model, "
                             f"got {theta.shape}")
        value, grad = self._kernel(np.ascontiguousarray(theta), np.ascontiguousarray(X), T)
        return value, grad

    def __repr__(self) -> str:
        return f"<LossStep {self.loss} l2={self.l2} for {self.model!r}>"


def compile_loss(model, loss: str = "hinge", l2: float = 0.0) -> LossStep:
    """Compile ``model``'s training objective and its gradient (layer-level).

    Parameters
    ----------
    model : symgrad.nn.MLP
    loss : {"hinge", "logistic", "mse", "softmax_cross_entropy"}
    l2 : float
        L2 coefficient on every parameter (micrograd's ``alpha``).

    Returns
    -------
    LossStep
        ``step(theta, X, y) -> (loss, grad)`` with ``X`` of shape ``(n, nin)``.

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> model = sg.nn.MLP(2, [4, 1])
    >>> step = sg.nn.compile_loss(model, loss="hinge", l2=1e-4)
    >>> theta = model.init_params(seed=0)
    >>> loss, grad = step(theta, np.array([[0.5, -1.0]]), np.array([1]))
    >>> grad.shape
    (17,)
    """
    return LossStep(model, loss, l2)


def compile_predict(model) -> Predictor:
    """Compile the model's scores: ``predict(theta, X)`` -> ``(n, nout)``.

    Examples
    --------
    >>> import numpy as np, symgrad as sg
    >>> model = sg.nn.MLP(2, [4, 1])
    >>> scores = sg.nn.compile_predict(model)(model.init_params(0), np.zeros((3, 2)))
    >>> scores.shape
    (3, 1)
    """
    return Predictor(model)
