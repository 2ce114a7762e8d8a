"""Per-call latency of value_and_grad from Python, side by side with peers.

Three workloads, every peer in the same run (ratios are what to read; the
machines are shared and noisy):

1. ``tanh(w0*x0 + w1*x1 + b) * exp(-x0**2)``, gradient w.r.t. w0, w1, b, one
   point per call: symgrad (auto back end) vs ``sympy.lambdify`` (math,
   cse=True, on SymPy's own derivatives), a hand-written ``numba.njit``
   function, JAX ``jit(value_and_grad)``, PyTorch eager and micrograd.
2. A ~500-operation formula in 8 variables, gradient w.r.t. all: symgrad vs
   lambdify (math, cse=True).
3. Workload 1 over 10^6 points (x0, x1 arrays): symgrad's batched call vs
   ``lambdify(..., "numpy", cse=True)``.

Peers that are not installed (``pip install -e '.[bench]'`` gives micrograd;
torch and jax are installed separately) are skipped with a message.

    python benchmarks/bench_call.py
"""

from __future__ import annotations

import math
import random
import timeit

import numpy as np
import sympy as sp

import symgrad as sg


def per_call_us(fn, min_time: float = 0.3) -> float:
    """Best-of-5 mean time per call, in microseconds."""
    number = 1
    while True:
        t = timeit.timeit(fn, number=number)
        if t >= min_time / 5 or number >= 10**7:
            break
        number *= 4
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def small_formula():
    w0, w1, b, x0, x1 = sp.symbols("w0 w1 b x0 x1")
    f = sp.tanh(w0 * x0 + w1 * x1 + b) * sp.exp(-x0**2)
    return f, (w0, w1, b), (x0, x1)


def peers_small(point):
    """name -> zero-argument callable computing value and gradient at ``point``."""
    w0v, w1v, bv, x0v, x1v = point
    calls = {}
    try:
        import numba

        @numba.njit(cache=False)
        def hand(w0, w1, b, x0, x1):
            t = math.tanh(w0 * x0 + w1 * x1 + b)
            e = math.exp(-x0 * x0)
            dz = (1.0 - t * t) * e
            g = np.empty(3)
            g[0] = dz * x0
            g[1] = dz * x1
            g[2] = dz
            return t * e, g

        hand(*point)
        calls["hand-written numba"] = lambda: hand(w0v, w1v, bv, x0v, x1v)
    except ImportError:
        print("numba not installed: skipping hand-written numba")
    try:
        import jax
        import jax.numpy as jnp

        jax.config.update("jax_enable_x64", True)

        def jf(w0, w1, b, x0, x1):
            return jnp.tanh(w0 * x0 + w1 * x1 + b) * jnp.exp(-x0**2)

        jvg = jax.jit(jax.value_and_grad(jf, argnums=(0, 1, 2)))
        jvg(*point)[0].block_until_ready()

        def jax_call():
            v, g = jvg(w0v, w1v, bv, x0v, x1v)
            v.block_until_ready()
            return v, g
        calls["JAX jit(value_and_grad)"] = jax_call
    except ImportError:
        print("jax not installed: skipping JAX")
    try:
        import torch

        torch.set_num_threads(1)

        def torch_call():
            w0, w1, b = (torch.tensor(v, dtype=torch.float64, requires_grad=True)
                         for v in (w0v, w1v, bv))
            x0, x1 = torch.tensor(x0v, dtype=torch.float64), torch.tensor(x1v, dtype=torch.float64)
            out = torch.tanh(w0 * x0 + w1 * x1 + b) * torch.exp(-x0**2)
            out.backward()
            return out.item(), (w0.grad.item(), w1.grad.item(), b.grad.item())
        calls["PyTorch eager"] = torch_call
    except ImportError:
        print("torch not installed: skipping PyTorch")
    try:
        from micrograd.engine import Value

        def micrograd_call():
            w0, w1, b = Value(w0v), Value(w1v), Value(bv)
            out = (w0 * x0v + w1 * x1v + b).tanh() * math.exp(-x0v * x0v)
            out.backward()
            return out.data, (w0.grad, w1.grad, b.grad)
        if hasattr(Value(0.0), "tanh"):
            calls["micrograd"] = micrograd_call
        else:
            print("micrograd's Value has no tanh: skipping micrograd")
    except ImportError:
        print("micrograd not installed (pip install -e '.[bench]'): skipping micrograd")

    def tape_call():  # symgrad's own micrograd-compatible tape engine
        w0, w1, b = sg.Value(w0v), sg.Value(w1v), sg.Value(bv)
        out = (w0 * x0v + w1 * x1v + b).tanh() * math.exp(-x0v * x0v)
        out.backward()
        return out.data, (w0.grad, w1.grad, b.grad)
    calls["symgrad tape engine (sg.Value)"] = tape_call
    return calls


def big_formula(n_ops: int = 500, n_vars: int = 8, seed: int = 0):
    rng = random.Random(seed)
    xs = sp.symbols(f"x0:{n_vars}")
    terms, ops = [], 0
    while ops < n_ops:
        a, b, c = (xs[rng.randrange(n_vars)] for _ in range(3))
        k1, k2 = sp.Float(rng.uniform(0.5, 2)), sp.Float(rng.uniform(-1, 1))
        kind = rng.randrange(4)
        if kind == 0:
            t = k1 * sp.sin(a * b + k2)
        elif kind == 1:
            t = sp.exp(-k1 * a**2) * sp.tanh(b - k2 * c)
        elif kind == 2:
            t = sp.log(1 + a**2) / (1 + k1 * b**2)
        else:
            t = sp.sqrt(1 + (a - b)**2) * c
        terms.append(t)
        ops = sp.count_ops(sp.Add(*terms))
    return sp.Add(*terms), xs


def main() -> None:
    rows = []
    f, wrt, xs = small_formula()
    args = [*wrt, *xs]
    point = (0.3, -0.2, 0.1, 0.7, 1.3)
    fn = sg.compile(f, args, wrt=list(wrt))
    grads = [sp.diff(f, w) for w in wrt]
    lam = sp.lambdify(args, [f, grads], "math", cse=True)
    v_sg, g_sg = fn.value_and_grad(*point)
    v_l, g_l = lam(*point)
    assert abs(v_sg - v_l) < 1e-12 and np.allclose(g_sg, g_l, rtol=1e-12)

    print(f"1. value_and_grad of tanh(w0*x0 + w1*x1 + b)*exp(-x0**2), one point per call "
          f"(symgrad back end: {fn.backend})")
    base = per_call_us(lambda: fn.value_and_grad(*point))
    rows.append(("symgrad", base))
    fn_nb = sg.compile(f, args, wrt=list(wrt), backend="numba")
    rows.append(("symgrad backend='numba'", per_call_us(lambda: fn_nb.value_and_grad(*point))))
    rows.append(("sympy.lambdify(math, cse=True)", per_call_us(lambda: lam(*point))))
    for name, call in peers_small(point).items():
        rows.append((name, per_call_us(call)))
    _table(rows, base)

    print("\n2. a ~500-operation formula in 8 variables, value and gradient w.r.t. all")
    F, X = big_formula()
    pt = tuple(np.random.default_rng(1).uniform(-1, 1, len(X)))
    fb = sg.compile(F, list(X))
    lam_b = sp.lambdify(list(X), [F, [sp.diff(F, x) for x in X]], "math", cse=True)
    vb, gb = fb.value_and_grad(*pt)
    vl, gl = lam_b(*pt)
    assert abs(vb - vl) < 1e-9 * max(1, abs(vl)) and np.allclose(gb, gl, rtol=1e-9)
    print(f"   count_ops = {sp.count_ops(F)}, SSA statements (value+grad) = {len(fb.ir)}, "
          f"back end {fb.backend}")
    base_b = per_call_us(lambda: fb.value_and_grad(*pt))
    _table([("symgrad", base_b),
            ("sympy.lambdify(math, cse=True)", per_call_us(lambda: lam_b(*pt)))], base_b)

    print("\n3. workload 1 over 10^6 points (x0, x1 arrays), values and gradients")
    rng = np.random.default_rng(2)
    X0, X1 = rng.uniform(-2, 2, 10**6), rng.uniform(-2, 2, 10**6)
    lam_np = sp.lambdify(args, [f, grads], "numpy", cse=True)
    vs, gs = fn.value_and_grad(*point[:3], X0, X1)
    vn, gn = lam_np(*point[:3], X0, X1)
    assert np.allclose(vs, vn, rtol=1e-12) and np.allclose(gs, np.stack(gn, axis=1), rtol=1e-12)
    base_n = per_call_us(lambda: fn.value_and_grad(*point[:3], X0, X1), min_time=1.0)
    _table([("symgrad (batched)", base_n),
            ("symgrad backend='numba' (batched)",
             per_call_us(lambda: fn_nb.value_and_grad(*point[:3], X0, X1), min_time=1.0)),
            ("sympy.lambdify(numpy, cse=True)", per_call_us(lambda: lam_np(*point[:3], X0, X1),
                                                            min_time=1.0))], base_n)


def _table(rows, base: float) -> None:
    print(f"   {'implementation':<34}{'us/call':>12}{'vs symgrad':>12}")
    for name, us in rows:
        print(f"   {name:<34}{us:>12.3f}{us / base:>11.1f}x")


if __name__ == "__main__":
    main()
