"""Time to build the gradient program vs graph size, next to sympy.diff + sympy.cse.

Graphs: micrograd-style MLP hinge losses (ReLU hidden layers, L2) whose width
is chosen to give ~1k, ~10k and ~100k DAG nodes; the gradient is taken w.r.t.
every parameter. symgrad builds the whole gradient program in one reverse
sweep; the SymPy baseline is what a SymPy user writes:
``[f.diff(p) for p in params]`` followed by ``sympy.cse`` on the result.

    python benchmarks/bench_diff.py                 # full table (SymPy up to 10k nodes)
    python benchmarks/bench_diff.py --sympy-max 2000  # SymPy baseline on small graphs only

Reports a table, the log-log slope of symgrad's build time vs nodes, and the
time for micrograd's MLP(2,[16,16,1]) (the 1.4k-node case).
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import sympy as sp

import symgrad as sg
from symgrad.graph import lower
from symgrad.testing import mlp_loss

SIZES = [(16, "MLP(2,[16,16,1]) (micrograd's)"), (48, "MLP(2,[48,48,1])"), (160, "MLP(2,[160,160,1])")]


def best_of(fn, repeat: int) -> float:
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def sympy_baseline(f, params) -> tuple[float, float]:
    t0 = time.perf_counter()
    grads = [f.diff(p) for p in params]
    t1 = time.perf_counter()
    sp.cse(grads)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sympy-max", type=int, default=2_000,
                    help="run the full sympy.diff + cse baseline up to this many nodes")
    ap.add_argument("--sympy-sample", type=int, default=40,
                    help="above --sympy-max (up to 20k nodes), time sympy.diff on this many "
                         "parameters and extrapolate to all (cse not run: a lower bound)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    sys.setrecursionlimit(100_000)  # SymPy's diff/cse recurse; give the baseline a fair chance

    rows = []
    print(f"{'graph':<32}{'nodes':>8}{'params':>8}{'symgrad s':>11}{'prog ops':>10}"
          f"{'sympy diff s':>14}{'sympy cse s':>13}{'speed-up':>10}", flush=True)
    for width, label in SIZES:
        f, params = mlp_loss(2, [width, width, 1])
        n = lower(f).n_nodes
        repeat = args.repeat if n < 50_000 else 1
        t_sg = best_of(lambda: sg.gradient_program(f, params), repeat)
        ops = sg.gradient_program(f, params).num_ops if n < 50_000 else float("nan")
        if n <= args.sympy_max:
            t_diff, t_cse = sympy_baseline(f, params)
            ratio = f"{(t_diff + t_cse) / t_sg:.0f}x"
            sdiff, scse = f"{t_diff:.2f}", f"{t_cse:.2f}"
        elif n <= 20_000:
            sample = params[:: max(1, len(params) // args.sympy_sample)][: args.sympy_sample]
            t0 = time.perf_counter()
            for p in sample:
                f.diff(p)
            t_diff = (time.perf_counter() - t0) * len(params) / len(sample)
            sdiff, scse = f"~{t_diff:.0f}*", "not run"
            ratio = f">={t_diff / t_sg:.0f}x"
        else:
            sdiff = scse = ratio = "-"
        rows.append((n, t_sg))
        print(f"{label:<32}{n:>8}{len(params):>8}{t_sg:>11.3f}{ops:>10}{sdiff:>14}{scse:>13}{ratio:>10}",
              flush=True)

    print("* extrapolated from sympy.diff on a sample of parameters; cse on top would add more")
    xs = [math.log(n) for n, _ in rows]
    ys = [math.log(t) for _, t in rows]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((a - mx) * (b - my) for a, b in zip(xs, ys)) / sum((a - mx) ** 2 for a in xs)
    print(f"\nlog-log slope of symgrad build time vs nodes: {slope:.3f} (target <= 1.15)")
    print(f"micrograd MLP(2,[16,16,1]) hinge-loss gradient program: {rows[0][1]:.3f} s (target < 0.3 s)")


if __name__ == "__main__":
    main()
