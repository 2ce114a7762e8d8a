"""micrograd's moons demo, compiled: the code behind ``symgrad demo`` and examples/moons.py."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

__all__ = ["moons_demo"]


def moons_demo(steps: int = 100, seed: int = 0, plot: str | None = None,
               progress: bool | None = None, out=None):
    """Train micrograd's MLP(2, [16, 16, 1]) on 100 moons with SGD, as micrograd does.

    Hinge loss + 1e-4 L2, learning rate ``1.0 - 0.9*k/100``, full batch. Prints
    the compile time, the final loss and the training accuracy to ``out``
    (default: stdout) and, when ``plot`` is a file name and matplotlib is
    installed, saves the decision boundary and the loss curve there.

    Returns
    -------
    (History, theta)

    Examples
    --------
    >>> from symgrad.demo import moons_demo
    >>> import io
    >>> history, theta = moons_demo(steps=3, progress=False, out=io.StringIO())
    >>> len(history.loss)
    3
    """
    import symgrad as sg

    def say(*args):
        print(*args, file=out, flush=True)

    X, y = sg.datasets.make_moons(n_samples=100, noise=0.1, seed=seed)
    model = sg.nn.MLP(2, [16, 16, 1])
    say("model: MLP(2, [16, 16, 1]): ReLU hidden layers, linear output")
    say(f"parameters: {model.n_params}")
    t0 = time.perf_counter()
    step = sg.nn.compile_loss(model, loss="hinge", l2=1e-4)
    theta = model.init_params(seed=seed)
    step(theta, X, y)
    say(f"compiled loss + gradient in {time.perf_counter() - t0:.2f} s")
    opt = sg.optim.SGD(lr=lambda k: 1.0 - 0.9 * k / 100)
    t0 = time.perf_counter()
    history = sg.nn.fit(step, theta, X, y, optimizer=opt, steps=steps, progress=progress)
    dt = time.perf_counter() - t0
    say(f"trained {steps} steps in {dt * 1e3:.1f} ms ({dt / max(steps, 1) * 1e6:.0f} us per step)")
    scores = sg.nn.compile_predict(model)(theta, X)[:, 0]
    acc = float(np.mean((scores > 0) == (y > 0)))
    say(f"final loss {history.loss[-1]:.4f}, training accuracy {acc * 100:.1f}%")
    if plot:
        _plot(model, theta, X, y, history, plot, say)
    return history, theta


def _plot(model, theta, X, y, history, path: str, say) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        say("matplotlib is not installed: no plot (pip install matplotlib)")
        return
    import symgrad as sg

    predict = sg.nn.compile_predict(model)
    h = 0.25
    xs = np.arange(X[:, 0].min() - 1, X[:, 0].max() + 1, h)
    ys = np.arange(X[:, 1].min() - 1, X[:, 1].max() + 1, h)
    xx, yy = np.meshgrid(xs, ys)
    Z = predict(theta, np.c_[xx.ravel(), yy.ravel()])[:, 0].reshape(xx.shape) > 0
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    ax1.contourf(xx, yy, Z, cmap=plt.cm.Spectral, alpha=0.8)
    ax1.scatter(X[:, 0], X[:, 1], c=y, s=40, cmap=plt.cm.Spectral, edgecolors="k")
    ax1.set_title("decision boundary")
    ax2.plot(history.loss)
    ax2.set_xlabel("step")
    ax2.set_ylabel("loss")
    ax2.set_title("training loss")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    say(f"saved {Path(path).resolve()}")
