"""Compile a physics formula and its gradient, then call it in a loop and in a batch.

The formula: the Lennard-Jones energy of a pair of particles plus a harmonic
bond, as a function of both positions (6 coordinates) and the parameters.
"""

import time

import numpy as np
import sympy as sp

import symgrad as sg

x1, y1, z1, x2, y2, z2 = sp.symbols("x1 y1 z1 x2 y2 z2")
eps, sigma, k, r0 = sp.symbols("epsilon sigma k r0", positive=True)
r = sp.sqrt((x1 - x2) ** 2 + (y1 - y2) ** 2 + (z1 - z2) ** 2)
energy = 4 * eps * ((sigma / r) ** 12 - (sigma / r) ** 6) + k / 2 * (r - r0) ** 2

coords = [x1, y1, z1, x2, y2, z2]
fn = sg.compile(energy, [coords, eps, sigma, k, r0], wrt=[coords])
print(fn)
print("generated source (first lines):")
print("\n".join(fn.source.splitlines()[:8]), "\n    ...")

p = np.array([0.0, 0.0, 0.0, 1.1, 0.2, -0.1])
value, forces = fn.value_and_grad(p, 1.0, 1.0, 5.0, 1.2)
print(f"\nE = {value:.6f}, dE/dcoords = {np.round(forces, 6)}")
print(sg.check_grad(fn, {**dict(zip(coords, p)), eps: 1.0, sigma: 1.0, k: 5.0, r0: 1.2}))

n = 200_000
t0 = time.perf_counter()
for _ in range(n):
    fn.value_and_grad(p, 1.0, 1.0, 5.0, 1.2)
dt = time.perf_counter() - t0
print(f"\n{n} calls from a Python loop: {dt / n * 1e6:.2f} us per value+gradient")

P = np.random.default_rng(0).normal(size=(1_000_000, 6))
fn.value_and_grad(P[:10], 1.0, 1.0, 5.0, 1.2)      # the batched kernel compiles on first use
t0 = time.perf_counter()
values, grads = fn.value_and_grad(P, 1.0, 1.0, 5.0, 1.2)
dt = time.perf_counter() - t0
print(f"one batched call over {len(P)} points: {dt * 1e3:.1f} ms "
      f"({dt / len(P) * 1e9:.0f} ns per point), grads shape {grads.shape}")
