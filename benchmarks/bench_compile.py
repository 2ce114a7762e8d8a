"""Compile time vs program size: cold, warm native cache, and a second process.

Programs: the value and gradient of micrograd-style MLP hinge losses
(``symgrad.testing.mlp_loss``), widths chosen to give ~300, ~3k, ~30k and
~100k SSA statements (micrograd's own MLP(2,[16,16,1]) is the ~3k case).

Every cell runs in a fresh Python process (imports and building the SymPy
expression excluded); ``total`` is ``sg.compile(...)`` plus the first
``value_and_grad`` call (Numba compiles lazily on first call, so it is part of
the cost), ``front`` the part of it spent in the front end (lowering the
expression, reverse mode to SSA IR, or loading that IR from the front-end
cache: :mod:`symgrad.ircache`). Three processes per row share one cache
directory, in this order:

* ``cold``: empty cache directory: everything is built (and cached);
* ``warm``: the native code is cached, the front-end cache is off
  (``SYMGRAD_IR_CACHE=0``): the front end runs again, the machine code is
  loaded from disk (what "warm" meant before the front-end cache existed);
* ``2nd``: both caches warm: a second process running the same script.

    python benchmarks/bench_compile.py                  # auto back end
    python benchmarks/bench_compile.py --numba-max 3500 # also force Numba up to 3.5k statements

Reports the table and the log-log slope of cold back-end time
(``total - front``) vs statements.
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
from symgrad import graph, ircache
from symgrad.testing import mlp_loss
width, backend = int(sys.argv[1]), sys.argv[2]
loss, params = mlp_loss(2, [width, width, 1])
theta = np.random.default_rng(0).uniform(-1, 1, len(params))

front = [0.0, 0]            # seconds in the outermost lowering / front-end call, depth
def timed(fn):
    def wrapper(*args, **kwargs):
        front[1] += 1
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            front[1] -= 1
            if front[1] == 0:
                front[0] += time.perf_counter() - t
    return wrapper
graph._lower = timed(graph._lower)
sg.compile.__globals__["front_end_ir"] = timed(ircache.front_end_ir)

t0 = time.perf_counter()
fn = sg.compile(loss, [list(params)], backend=backend)
fn.value_and_grad(theta)
total = time.perf_counter() - t0
print(json.dumps({"statements": len(fn.ir), "backend": fn.backend, "front": front[0],
                  "total": total, "native_reused": bool(fn.cache_reused),
                  "ir_hit": ircache.stats["hits"] == 1, "params": len(params)}))
"""


def run(width: int, backend: str, cache: str, ir_cache: bool = True) -> dict:
    env = dict(os.environ, SYMGRAD_CACHE_DIR=cache, SYMGRAD_IR_CACHE="1" if ir_cache else "0")
    out = subprocess.run([sys.executable, "-c", _CHILD, str(width), backend], env=env,
                         capture_output=True, text=True, check=True, timeout=3600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def row(width: int, backend: str) -> tuple:
    with tempfile.TemporaryDirectory() as cache:
        cold = run(width, backend, cache)
        warm = run(width, backend, cache, ir_cache=False)
        second = run(width, backend, cache)
    assert not cold["ir_hit"] and not warm["ir_hit"] and second["ir_hit"], "front-end cache"
    assert warm["native_reused"] and second["native_reused"], "native cache not reused"
    return cold, warm, second


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--numba-max", type=int, default=0,
                    help="also force backend='numba' for programs up to this many statements")
    ap.add_argument("--widths", type=str, default="",
                    help="comma-separated MLP widths (default: 4,16,57,103)")
    args = ap.parse_args()
    widths = [(int(w), "") for w in args.widths.split(",")] if args.widths else WIDTHS

    rows = []
    print(f"{'program':<20}{'backend':>8}{'stmts':>8}"
          f"{'cold front':>12}{'cold total':>12}{'warm front':>12}{'warm total':>12}"
          f"{'2nd front':>11}{'2nd total':>11}   (seconds)")
    for width, _ in widths:
        cold, warm, second = row(width, "auto")
        rows.append(cold)
        _print_row(f"MLP(2,[{width},{width},1])", cold, warm, second)
        if args.numba_max and cold["statements"] <= args.numba_max and cold["backend"] != "numba":
            _print_row(f"MLP(2,[{width},{width},1])", *row(width, "numba"))

    pts = [(math.log(r["statements"]), math.log(max(r["total"] - r["front"], 1e-6)))
           for r in rows if r["statements"] >= 1000]
    if len(pts) >= 2:
        n = len(pts)
        mx, my = sum(p[0] for p in pts) / n, sum(p[1] for p in pts) / n
        slope = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
        print(f"\nlog-log slope of cold back-end time (total - front) vs statements "
              f"(>= 1k statements): {slope:.2f}")
    print("cold: empty caches; warm: native cache only (SYMGRAD_IR_CACHE=0); 2nd: both caches "
          "(a second process).\nfront = lowering + reverse mode to IR (or the IR cache load); "
          "total = sg.compile + first value_and_grad")


def _print_row(name: str, cold: dict, warm: dict, second: dict) -> None:
    print(f"{name:<20}{cold['backend']:>8}{cold['statements']:>8}"
          f"{cold['front']:>12.3f}{cold['total']:>12.3f}{warm['front']:>12.3f}{warm['total']:>12.3f}"
          f"{second['front']:>11.3f}{second['total']:>11.3f}", flush=True)


if __name__ == "__main__":
    main()
