"""The process-wide JIT (compiler.jit): machine code is owned, shared, and freed."""

from __future__ import annotations

import gc
import math
import weakref

import numpy as np
import sympy as sp

import symgrad as sg
from compiler import jit

x, y = sp.symbols("x y")


def _owners(fn) -> list:
    """Owners of the code a compiled function has built so far (kernel and glue)."""
    owners = [fn.native.owner]
    owners += [lib for lib in list(jit._LIVE.values()) if fn.native.owner in lib.depends]
    return owners


def test_dropped_function_releases_its_code_and_live_one_still_works(monkeypatch, tmp_path):
    monkeypatch.setenv("SYMGRAD_CACHE_DIR", str(tmp_path))
    keep = sg.compile(sp.tanh(0.625 * x + 0.125) * y, [x, y])
    before = keep.value_and_grad(0.3, 0.7)
    live = set(jit._LIVE.keys())
    drop = sg.compile(sp.sin(1.75 * x) * y, [x, y])
    assert drop(0.3, 0.7) == math.sin(1.75 * 0.3) * 0.7
    drop.value_and_grad(0.3, 0.7)
    refs = [weakref.ref(jit.find(s)) for s in set(jit._LIVE.keys()) - live]
    # one library for the value_and_grad and forward kernels (compiled together;
    # the call glue of this argument layout is one module shared with `keep`)
    assert len(refs) == 1 and drop._fw.native.owner is drop._vg.native.owner
    del drop
    gc.collect()
    assert [r() for r in refs] == [None] * len(refs)
    for lib in _owners(keep):
        assert jit.find(lib.symbol) is lib
    after = keep.value_and_grad(0.3, 0.7)
    assert after[0] == before[0] and np.array_equal(after[1], before[1])   # bit-identical
    t = math.tanh(0.625 * 0.3 + 0.125)
    assert after[0] == t * 0.7
    assert np.allclose(after[1], [0.625 * (1 - t * t) * 0.7, t], rtol=1e-15)


def test_same_ir_loaded_twice_shares_code(monkeypatch, tmp_path):
    monkeypatch.setenv("SYMGRAD_CACHE_DIR", str(tmp_path))
    a = sg.compile(sp.cos(x) * y + 0.25, [x, y])
    b = sg.compile(sp.cos(x) * y + 0.25, [x, y])
    assert a.native.owner is b.native.owner
    assert b(0.5, 2.0) == math.cos(0.5) * 2.0 + 0.25


def test_glue_keeps_its_kernel_alive(monkeypatch, tmp_path):
    monkeypatch.setenv("SYMGRAD_CACHE_DIR", str(tmp_path))
    fn = sg.compile(sp.exp(0.5 * x) * y, [x, y])
    vg = fn.value_and_grad             # a builtin holding the glue's library
    kernel = weakref.ref(fn.native.owner)
    del fn
    gc.collect()
    assert kernel() is not None        # the glue calls it by address
    v, g = vg(0.4, 3.0)
    assert v == math.exp(0.2) * 3.0 and np.allclose(g, [0.5 * math.exp(0.2) * 3.0, math.exp(0.2)])
    del vg
    gc.collect()
    assert kernel() is None
