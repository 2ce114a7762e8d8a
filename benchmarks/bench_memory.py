"""Process memory while compiling many small functions with the llvm back end.

Compiles ``n`` distinct formulas ``tanh(a*x + k) * y`` (k = 0..n-1) with
``sg.compile(f, [x, y])`` in one process, calls each once (``f(x, y)`` and
``value_and_grad``: both kernels and both call-glue functions get built),
and prints the resident set size (VmRSS from ``/proc/self/status``) every
1,000 functions and at the end, in two modes:

* ``keep``: every compiled function is kept alive (a list holds them);
* ``drop``: each function is dropped after use, so its machine code can be
  returned (:mod:`compiler.jit`).

Each mode runs in a fresh process with an empty private cache directory, so
the figures include compiling (not loading from the disk cache).

    python benchmarks/bench_memory.py               # both modes, 10,000 formulas
    python benchmarks/bench_memory.py -n 2000 --mode drop
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

_CHILD = r"""
import gc, resource, sys, time
import sympy as sp
import symgrad as sg

n, mode = int(sys.argv[1]), sys.argv[2]

def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")

a, x, y = sp.symbols("a x y")
kept = []
t0 = time.perf_counter()
print(f"{mode}: start {rss_mb():.0f} MB", flush=True)
for k in range(n):
    fn = sg.compile(sp.tanh(sp.Rational(1, 2) * x + k) * y, [x, y])
    value = fn(0.25, 1.5)
    v, g = fn.value_and_grad(0.25, 1.5)
    if abs(value - v) > 1e-12 * max(1.0, abs(v)):
        raise SystemExit(f"formula {k}: call {value} != value_and_grad {v}")
    if mode == "keep":
        kept.append(fn)
    del fn
    if (k + 1) % 1000 == 0:
        gc.collect()
        print(f"{mode}: {k + 1:6d} functions  RSS {rss_mb():7.0f} MB  "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
gc.collect()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{mode}: end {n} functions  RSS {rss_mb():.0f} MB  peak {peak:.0f} MB  "
      f"({time.perf_counter() - t0:.0f} s)", flush=True)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10_000, help="formulas per mode (default 10000)")
    ap.add_argument("--mode", choices=("keep", "drop", "both"), default="both")
    args = ap.parse_args()
    for mode in ("keep", "drop") if args.mode == "both" else (args.mode,):
        with tempfile.TemporaryDirectory(prefix="symgrad-bench-memory-") as cache:
            env = dict(os.environ, SYMGRAD_CACHE_DIR=cache)
            subprocess.run([sys.executable, "-c", _CHILD, str(args.n), mode], env=env, check=True)


if __name__ == "__main__":
    main()
