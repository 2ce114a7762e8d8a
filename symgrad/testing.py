"""Expression generators for tests and benchmarks (like ``numpy.testing``).

Deterministic families of scalar graphs whose size is easy to dial:
chains, wide sums, and micrograd-style MLP losses built node by node.
They are built with ``evaluate=False`` binary nodes where SymPy's automatic
simplification would otherwise be quadratic (long sums) or merge nodes.
"""

from __future__ import annotations

import random

import sympy as sp

from symgrad.functions import relu

__all__ = ["chain", "wide_sum", "mlp_loss", "mlp_params"]


def chain(depth: int, x: sp.Symbol | None = None) -> tuple[sp.Expr, sp.Symbol]:
    """``f(f(...f(x)))`` alternating tanh / sin / ``0.5*u + x``, ``depth`` ops deep.

    Returns the expression and the symbol.
    """
    x = x if x is not None else sp.Symbol("x")
    e = x
    for i in range(depth):
        k = i % 3
        if k == 0:
            e = sp.tanh(e, evaluate=False)
        elif k == 1:
            e = sp.sin(e, evaluate=False)
        else:
            e = sp.Add(sp.Mul(sp.Float(0.5), e, evaluate=False), x, evaluate=False)
    return e, x


def wide_sum(width: int) -> tuple[sp.Expr, tuple]:
    """``sum_i w_i**2 * tanh(w_i)`` over ``width`` symbols; returns (expr, symbols)."""
    ws = sp.symbols(f"w0:{width}")
    return sp.Add(*[w**2 * sp.tanh(w) for w in ws]), ws


def mlp_params(nin: int, nouts: list) -> list:
    """Parameter symbols of ``MLP(nin, nouts)`` in micrograd's order, as nested lists
    ``[layer][neuron] = (weights, bias)``."""
    layers = []
    sizes = [nin] + list(nouts)
    for li in range(len(nouts)):
        neurons = []
        for ni in range(sizes[li + 1]):
            ws = sp.symbols(f"w{li}_{ni}_0:{sizes[li]}")
            neurons.append((ws, sp.Symbol(f"b{li}_{ni}")))
        layers.append(neurons)
    return layers


def mlp_loss(nin: int, nouts: list, l2: float = 1e-4, samples: int = 1,
             seed: int = 0) -> tuple[sp.Expr, list]:
    """micrograd's MLP (ReLU hidden, linear output) with the hinge loss and L2,
    over ``samples`` fixed random inputs, as one scalar SymPy graph.

    Returns ``(loss, parameters)`` with parameters in micrograd's order.
    """
    rng = random.Random(seed)
    layers = mlp_params(nin, nouts)
    params = [p for layer in layers for ws, b in layer for p in (*ws, b)]
    terms = []
    for _ in range(samples):
        act = [sp.Float(rng.uniform(-2, 2)) for _ in range(nin)]
        label = rng.choice((-1, 1))
        for li, layer in enumerate(layers):
            out = []
            for ws, b in layer:
                z = sp.Add(*[w * a for w, a in zip(ws, act)], b)
                out.append(relu(z) if li < len(layers) - 1 else z)
            act = out
        terms.append(relu(1 - label * act[0]))
    data_loss = sp.Add(*terms) / samples
    reg = sp.Float(l2) * sp.Add(*[p**2 for p in params])
    return data_loss + reg, params
