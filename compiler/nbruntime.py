"""The reference functions of :mod:`compiler.ops`, jitted with Numba.

Generated Numba kernels import their helpers from here. Nothing is written
twice: every name is the op record's ``ref`` compiled unchanged (they never
raise and use only :mod:`math`), so the numba back end computes what the
reference computes.
"""

from __future__ import annotations

from numba import njit

from compiler import ops

_jit = njit(cache=True, fastmath=False, error_model="numpy")
_DONE: dict = {}
NAN = float("nan")
INF = float("inf")


def _refresh() -> None:
    for prim in ops.all_primitives():
        if _DONE.get(prim.name) is not prim.ref:
            globals()[prim.name] = _jit(prim.ref)
            _DONE[prim.name] = prim.ref
    globals()["pow_"] = globals()["pow"]
    globals()["__all__"] = sorted(_DONE) + ["pow_", "NAN", "INF"]


_refresh()
ops.on_change(_refresh)
