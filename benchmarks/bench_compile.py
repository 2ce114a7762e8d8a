"""Compile time vs program size: cold (empty cache) and warm (second process).

Programs: the value and gradient of micrograd-style MLP hinge losses
(``symgrad.testing.mlp_loss``), widths chosen to give ~300, ~3k, ~30k and
~100k SSA statements (micrograd's own MLP(2,[16,16,1]) is the ~3k case).

Each measurement runs in a fresh Python process (imports excluded):

* ``total``: ``sg.compile(...)`` plus the first ``value_and_grad`` call
  (Numba compiles lazily on first call, so it is part of the cost);
* ``build``: the front end alone (lowering, reverse mode, SSA IR, Python
  source), timed as ``sg.compile(..., backend="python")`` just before;
* ``native`` = total - build: code generation and compilation, or (warm)
  the load from the disk cache. "warm" is a second process with the same
  cache directory.

    python benchmarks/bench_compile.py                  # auto back end
    python benchmarks/bench_compile.py --numba-max 3000 # also force Numba up to 3k statements

Reports the table and the log-log slope of cold native time vs statements.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

WIDTHS = [(4, "~300"), (16, "~3k"), (57, "~30k"), (103, "~100k")]

_CHILD = r"""
import json, sys, time
import numpy as np, symgrad as sg
from symgrad.testing import mlp_loss
width, backend = int(sys.argv[1]), sys.argv[2]
loss, params = mlp_loss(2, [width, width, 1])
theta = np.random.default_rng(0).uniform(-1, 1, len(params))
t0 = time.perf_counter()
sg.compile(loss, [list(params)], backend="python")   # the front end alone (+ a cheap exec)
t1 = time.perf_counter()
fn = sg.compile(loss, [list(params)], backend=backend)
fn.value_and_grad(theta)
t2 = time.perf_counter()
build, total = t1 - t0, t2 - t1
print(json.dumps({"statements": len(fn.ir), "backend": fn.backend, "build": build,
                  "native": max(total - build, 0.0), "total": total,
                  "reused": bool(fn.cache_reused), "params": len(params)}))
"""


def run(width: int, backend: str, cache: str) -> dict:
    env = dict(os.environ, SYMGRAD_CACHE_DIR=cache)
    out = subprocess.run([sys.executable, "-c", _CHILD, str(width), backend], env=env,
                         capture_output=True, text=True, check=True, timeout=3600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--numba-max", type=int, default=0,
                    help="also force backend='numba' for programs up to this many statements")
    ap.add_argument("--widths", type=str, default="",
                    help="comma-separated MLP widths (default: 4,16,57,103)")
    args = ap.parse_args()
    widths = [(int(w), "") for w in args.widths.split(",")] if args.widths else WIDTHS

    rows = []
    print(f"{'program':<22}{'backend':>8}{'stmts':>9}{'build s':>9}{'cold native s':>15}"
          f"{'cold total s':>14}{'warm native s':>15}{'warm total s':>14}")
    for width, _ in widths:
        with tempfile.TemporaryDirectory() as cache:
            cold = run(width, "auto", cache)
            warm = run(width, "auto", cache)
        assert warm["reused"], "second process did not reuse the cache"
        rows.append(cold)
        _print_row(f"MLP(2,[{width},{width},1])", cold, warm)
        if args.numba_max and cold["statements"] <= args.numba_max and cold["backend"] != "numba":
            with tempfile.TemporaryDirectory() as cache:
                nb_cold = run(width, "numba", cache)
                nb_warm = run(width, "numba", cache)
            _print_row(f"MLP(2,[{width},{width},1])", nb_cold, nb_warm)

    pts = [(math.log(r["statements"]), math.log(r["native"])) for r in rows if r["statements"] >= 1000]
    if len(pts) >= 2:
        n = len(pts)
        mx, my = sum(p[0] for p in pts) / n, sum(p[1] for p in pts) / n
        slope = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
        print(f"\nlog-log slope of cold native time vs statements (>= 1k statements): {slope:.2f}")
    print("build = front end (lowering, reverse mode, IR, source); native = back end "
          "compile or cache load + first call")


def _print_row(name: str, cold: dict, warm: dict) -> None:
    print(f"{name:<22}{cold['backend']:>8}{cold['statements']:>9}{cold['build']:>9.2f}"
          f"{cold['native']:>15.3f}{cold['total']:>14.2f}"
          f"{warm['native']:>15.3f}{warm['total']:>14.2f}", flush=True)


if __name__ == "__main__":
    main()
