"""Training-step throughput: symgrad's compiled layer-level step vs peers, one run.

Workloads (value and gradient of the training objective w.r.t. all parameters):

* W1: micrograd's moons step: MLP(2, [16, 16, 1]), ReLU, 100 samples,
  hinge loss + 1e-4 L2 (337 parameters);
* W2: MLP(16, [64, 64, 1]), tanh, MSE, batch 256 (~5.3k parameters).

Implementations: symgrad (``sg.nn.compile_loss``), a hand-written NumPy
backprop (one BLAS thread if threadpoolctl is installed, else the default),
a hand-written Numba loop implementation (the practical limit), JAX
``jit(value_and_grad)``, PyTorch eager (1 thread and default) and micrograd
(W1 only; it takes about a second per step). Peers that are not installed
are skipped with a message. Compile times are reported separately (cold:
empty cache directory, in a fresh process).

    python benchmarks/bench_train.py
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import timeit

import numpy as np

import symgrad as sg

W1 = dict(name="W1 moons MLP(2,[16,16,1]) relu hinge n=100", nin=2, sizes=[16, 16, 1], act="relu",
          loss="hinge", n=100, l2=1e-4)
W2 = dict(name="W2 MLP(16,[64,64,1]) tanh mse n=256", nin=16, sizes=[64, 64, 1], act="tanh",
          loss="mse", n=256, l2=0.0)


def per_call_us(fn, min_time: float = 0.5) -> float:
    number = 1
    while timeit.timeit(fn, number=number) < min_time / 5 and number < 10**6:
        number *= 4
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def data(w):
    rng = np.random.default_rng(0)
    if w["loss"] == "hinge":
        X, y = sg.datasets.make_moons(n_samples=w["n"], noise=0.1, seed=0)
    else:
        X = rng.normal(size=(w["n"], w["nin"]))
        y = np.sin(X.sum(axis=1))
    return X, y


def layer_params(model, theta):
    """(W, b) per layer with b of shape (nout,)."""
    return model.unflatten(theta)


# -- hand-written NumPy -----------------------------------------------------------------

def numpy_step(w, model):
    act = w["act"]

    def step(theta, X, y):
        layers = layer_params(model, theta)
        hs, zs = [X], []
        h = X
        for li, (W, b) in enumerate(layers):
            z = h @ W.T + b
            zs.append(z)
            h = z if li == len(layers) - 1 else (np.maximum(z, 0) if act == "relu" else np.tanh(z))
            hs.append(h)
        s = h[:, 0]
        n = X.shape[0]
        if w["loss"] == "hinge":
            margin = 1 - y * s
            loss = np.maximum(margin, 0).mean()
            sbar = np.where(margin > 0, -y, 0.0) / n
        else:
            d = s - y
            loss = (d * d).mean()
            sbar = 2 * d / n
        loss += w["l2"] * (theta * theta).sum()
        zbar = sbar[:, None]
        grads = []
        for li in range(len(layers) - 1, -1, -1):
            W, b = layers[li]
            grads.append((zbar.T @ hs[li], zbar.sum(axis=0)))
            if li:
                hbar = zbar @ W
                z = zs[li - 1]
                zbar = hbar * (z > 0) if act == "relu" else hbar * (1 - hs[li] ** 2)
        g = model.flatten(grads[::-1]) + 2 * w["l2"] * theta
        return loss, g
    return step


# -- hand-written Numba -------------------------------------------------------------------

def numba_step(w, model):
    import numba

    sizes = [w["nin"]] + w["sizes"]
    relu_act = w["act"] == "relu"
    hinge = w["loss"] == "hinge"
    l2 = w["l2"]
    offs = []
    start = 0
    for nin, nout in zip(sizes[:-1], sizes[1:]):
        offs.append(start)
        start += nout * (nin + 1)
    offs_a = np.array(offs)
    sizes_a = np.array(sizes)
    n_layers = len(sizes) - 1
    maxw = max(sizes)

    @numba.njit(cache=False, fastmath=True)
    def kernel(theta, X, y):
        n = X.shape[0]
        H = np.zeros((n_layers + 1, n, maxw))
        Z = np.zeros((n_layers, n, maxw))
        for i in range(n):
            for j in range(sizes_a[0]):
                H[0, i, j] = X[i, j]
        for li in range(n_layers):
            nin, nout, off = sizes_a[li], sizes_a[li + 1], offs_a[li]
            for i in range(n):
                for o in range(nout):
                    acc = theta[off + o * (nin + 1) + nin]
                    for k in range(nin):
                        acc += theta[off + o * (nin + 1) + k] * H[li, i, k]
                    Z[li, i, o] = acc
                    if li == n_layers - 1:
                        H[li + 1, i, o] = acc
                    elif relu_act:
                        H[li + 1, i, o] = acc if acc > 0 else 0.0
                    else:
                        H[li + 1, i, o] = math.tanh(acc)
        grad = 2 * l2 * theta
        loss = 0.0
        for p in range(theta.shape[0]):
            loss += l2 * theta[p] * theta[p]
        bar = np.zeros((n, maxw))
        for i in range(n):
            s = H[n_layers, i, 0]
            if hinge:
                m = 1 - y[i] * s
                if m > 0:
                    loss += m / n
                    bar[i, 0] = -y[i] / n
            else:
                d = s - y[i]
                loss += d * d / n
                bar[i, 0] = 2 * d / n
        for li in range(n_layers - 1, -1, -1):
            nin, nout, off = sizes_a[li], sizes_a[li + 1], offs_a[li]
            prev = np.zeros((n, maxw))
            for i in range(n):
                for o in range(nout):
                    zb = bar[i, o]
                    if zb == 0.0:
                        continue
                    grad[off + o * (nin + 1) + nin] += zb
                    for k in range(nin):
                        grad[off + o * (nin + 1) + k] += zb * H[li, i, k]
                        prev[i, k] += zb * theta[off + o * (nin + 1) + k]
            if li:
                for i in range(n):
                    for k in range(nin):
                        if relu_act:
                            prev[i, k] = prev[i, k] if Z[li - 1, i, k] > 0 else 0.0
                        else:
                            prev[i, k] = prev[i, k] * (1 - H[li, i, k] ** 2)
            bar = prev
        return loss, grad
    return kernel


# -- peers ----------------------------------------------------------------------------------

def torch_step(w, model, threads):
    import torch

    torch.set_num_threads(threads)

    def step(theta, X, y):
        t = torch.tensor(theta, requires_grad=True)
        layers, start = [], 0
        for nin, nout in zip(model.sizes[:-1], model.sizes[1:]):
            block = t[start:start + nout * (nin + 1)].view(nout, nin + 1)
            layers.append((block[:, :nin], block[:, nin]))
            start += nout * (nin + 1)
        h = torch.from_numpy(X)
        for li, (W, b) in enumerate(layers):
            h = h @ W.T + b
            if li < len(layers) - 1:
                h = torch.relu(h) if w["act"] == "relu" else torch.tanh(h)
        s = h[:, 0]
        yt = torch.from_numpy(y)
        loss = torch.relu(1 - yt * s).mean() if w["loss"] == "hinge" else ((s - yt) ** 2).mean()
        loss = loss + w["l2"] * (t * t).sum()
        loss.backward()
        return loss.item(), t.grad.numpy()
    return step


def jax_step(w, model):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    blocks, start = [], 0
    for nin, nout in zip(model.sizes[:-1], model.sizes[1:]):
        blocks.append((start, nin, nout))
        start += nout * (nin + 1)

    def objective(theta, X, y):
        h = X
        for li, (st, nin, nout) in enumerate(blocks):
            block = theta[st:st + nout * (nin + 1)].reshape(nout, nin + 1)
            h = h @ block[:, :nin].T + block[:, nin]
            if li < len(blocks) - 1:
                h = jax.nn.relu(h) if w["act"] == "relu" else jnp.tanh(h)
        s = h[:, 0]
        loss = jax.nn.relu(1 - y * s).mean() if w["loss"] == "hinge" else ((s - y) ** 2).mean()
        return loss + w["l2"] * (theta * theta).sum()

    f = jax.jit(jax.value_and_grad(objective))

    def step(theta, X, y):
        v, g = f(theta, X, y)
        g.block_until_ready()
        return float(v), g
    return step


def micrograd_step(w, model):
    from micrograd.nn import MLP as MgMLP

    mg = MgMLP(w["nin"], w["sizes"])
    params = mg.parameters()

    def step(theta, X, y):
        for p, v in zip(params, theta):
            p.data, p.grad = float(v), 0.0
        scores = [mg(list(map(float, x)))for x in X]
        losses = [(1 + -float(yi) * si).relu() for yi, si in zip(y, scores)]
        loss = sum(losses) * (1.0 / len(losses)) + w["l2"] * sum(p * p for p in params)
        loss.backward()
        return loss.data, np.array([p.grad for p in params])
    return step


_COMPILE_CHILD = r"""
import json, sys, time
import numpy as np, symgrad as sg
nin, sizes, act, loss, l2 = json.loads(sys.argv[1])
model = sg.nn.MLP(nin, sizes, activation=act)
t0 = time.perf_counter()
step = sg.nn.compile_loss(model, loss=loss, l2=l2)
X = np.random.default_rng(0).normal(size=(8, nin))
y = np.ones(8) if loss == "hinge" else np.zeros(8)
step(model.init_params(0), X, y)
print(json.dumps(time.perf_counter() - t0))
"""


def compile_times(w) -> tuple:
    arg = json.dumps([w["nin"], w["sizes"], w["act"], w["loss"], w["l2"]])
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, SYMGRAD_CACHE_DIR=cache)
        runs = [float(subprocess.run([sys.executable, "-c", _COMPILE_CHILD, arg], env=env,
                                     capture_output=True, text=True, check=True).stdout)
                for _ in range(2)]
    return runs[0], runs[1]


def run(w) -> None:
    model = sg.nn.MLP(w["nin"], w["sizes"], activation=w["act"])
    X, y = data(w)
    theta = model.init_params(seed=0)
    step = sg.nn.compile_loss(model, loss=w["loss"], l2=w["l2"])
    ref_loss, ref_grad = step(theta, X, y)
    impls = {"symgrad compile_loss": step, "hand-written NumPy": numpy_step(w, model)}
    try:
        impls["hand-written Numba loops"] = numba_step(w, model)
    except ImportError:
        print("numba missing")
    for name, make in [("JAX jit(value_and_grad)", lambda: jax_step(w, model)),
                       ("PyTorch eager, 1 thread", lambda: torch_step(w, model, 1)),
                       ("PyTorch eager, default threads", lambda: torch_step(w, model, os.cpu_count())),
                       ("micrograd", lambda: micrograd_step(w, model) if w is W1 else None)]:
        try:
            fn = make()
            if fn is not None:
                impls[name] = fn
        except ImportError as e:
            print(f"   {name}: not installed ({e.name}); skipped")
    print(f"\n{w['name']}  ({model.n_params} parameters)")
    print(f"   {'implementation':<34}{'us/step':>12}{'vs symgrad':>12}  check")
    base = None
    for name, fn in impls.items():
        v, g = fn(theta, X, y)
        ok = math.isclose(v, ref_loss, rel_tol=1e-9) and np.allclose(np.asarray(g), ref_grad, rtol=1e-7, atol=1e-12)
        t = per_call_us(lambda: fn(theta, X, y), min_time=0.2 if name == "micrograd" else 0.5)
        base = base or t
        print(f"   {name:<34}{t:>12.1f}{t / base:>11.2f}x  {'same numbers' if ok else 'DIFFERENT'}")
    cold, warm = compile_times(w)
    print(f"   symgrad compile (front end + LLVM + first call): cold {cold:.2f} s, "
          f"warm (second process) {warm:.2f} s")


if __name__ == "__main__":
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
        print("NumPy BLAS limited to 1 thread (threadpoolctl)")
    except ImportError:
        print("threadpoolctl not installed: NumPy uses its default BLAS threads")
    for w in (W1, W2):
        run(w)
