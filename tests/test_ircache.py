"""The front-end cache (symgrad.ircache) and the IR serialization it stores.

* ``Function.to_bytes``/``from_bytes`` round-trip exactly (random programs,
  special floats compared by their bits) and reject malformed bytes;
* the structural key changes with everything that changes the IR (a
  constant, an op, argument order, the wrt set, assumptions, the op table)
  and not with symbol names or rebuilding the expression;
* a second process hits the cache, runs no reverse mode, and computes the
  same bits (which agree with the tape engine);
* corrupted, truncated and foreign entries, and read-only or unusable cache
  directories, never break compilation: numbers are checked against the tape.
"""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import symgrad as sg
from compiler.ir import Builder, Function, Instr
from symgrad import ircache
from symgrad.graph import lower
from symgrad.ircache import IRCacheWarning, structural_key

x, y, z = sp.symbols("x y z")
F = x * sp.tanh(y) + sg.relu(x - y) + sp.log(1 + x**2) / y + sp.Max(x, y) * sp.exp(-z**2)
POINT = {x: 0.7, y: 1.3, z: -0.4}


def _bits(v: float) -> bytes:
    return struct.pack("<d", v)


def _same_function(a: Function, b: Function) -> bool:
    """Structural equality with constants compared by their IEEE bits."""
    if (a.n_inputs, a.outputs, len(a.instrs)) != (b.n_inputs, b.outputs, len(b.instrs)):
        return False
    for p, q in zip(a.instrs, b.instrs):
        if p.op != q.op or len(p.args) != len(q.args):
            return False
        if p.op == "const":
            if _bits(p.args[0]) != _bits(q.args[0]):
                return False
        elif p.args != q.args:
            return False
    return True


# -- serialization --------------------------------------------------------------

SPECIAL = [0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, -2.2250738585072014e-308,
           1.7976931348623157e308, 0.1, -1.0 / 3.0,
           struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_0000_0123))[0],   # quiet NaN payload
           struct.unpack("<d", struct.pack("<Q", 0xFFF8_0000_0000_0001))[0]]   # negative NaN
OPS = [("add", None), ("mul", 2), ("pow", 2), ("tanh", 1), ("exp", 1), ("heaviside", 2),
       ("max2", 2), ("piecewise", None), ("atan2", 2), ("logsumexp", None), ("lt", 2)]


@st.composite
def functions(draw):
    n_inputs = draw(st.integers(1, 4))
    instrs = []
    for _ in range(draw(st.integers(1, 30))):
        kind = draw(st.sampled_from(["input", "const", "op", "op"]))
        if kind == "input" or (kind == "op" and not instrs):
            instrs.append(Instr("input", (draw(st.integers(0, n_inputs - 1)),)))
        elif kind == "const":
            value = draw(st.one_of(st.sampled_from(SPECIAL), st.floats(allow_nan=True)))
            instrs.append(Instr("const", (value,)))
        else:
            name, arity = draw(st.sampled_from(OPS))
            k = arity if arity is not None else draw(st.integers(1, 5))
            args = tuple(draw(st.integers(0, len(instrs) - 1)) for _ in range(k))
            instrs.append(Instr(name, args))
    outputs = tuple(draw(st.lists(st.integers(0, len(instrs) - 1), min_size=0, max_size=6)))
    return Function(n_inputs, tuple(instrs), outputs)


@settings(max_examples=200, deadline=None)
@given(functions())
def test_serialization_round_trips_exactly(f):
    data = f.to_bytes()
    g = Function.from_bytes(data)
    assert _same_function(f, g)
    assert g.to_bytes() == data                       # deterministic: same bytes again
    for a, b in zip(f.evaluate([0.5] * f.n_inputs), g.evaluate([0.5] * g.n_inputs)):
        assert _bits(a) == _bits(b) or (math.isnan(a) and math.isnan(b))


def test_special_floats_keep_their_bits():
    # built directly: Builder's CSE merges NaNs that differ only in payload
    f = Function(0, tuple(Instr("const", (v,)) for v in SPECIAL), tuple(range(len(SPECIAL))))
    g = Function.from_bytes(f.to_bytes())
    assert [_bits(g.instrs[v].args[0]) for v in g.outputs] == [_bits(v) for v in SPECIAL]


def _valid() -> Function:
    b = Builder(2)
    return b.finish([b.op("add", b.op("tanh", b.input(0)), b.input(1), b.const(-0.0))])


@pytest.mark.parametrize("bad, match", [
    (Function(1, (Instr("input", (0,)), Instr("no_such_op", (0,))), (1,)), "unknown op"),
    (Function(1, (Instr("input", (0,)), Instr("lookup", (0,))), (1,)), "unknown op"),
    (Function(1, (Instr("input", (0,)), Instr("tanh", (0, 0))), (1,)), "2 arguments"),
    (Function(1, (Instr("input", (0,)), Instr("tanh", (1,))), (1,)), "not defined before"),
    (Function(1, (Instr("input", (3,)),), (0,)), "slot 3 out of range"),
    (Function(1, (Instr("input", (0,)),), (4,)), "output v4 out of range"),
])
def test_from_bytes_rejects_invalid_programs(bad, match):
    with pytest.raises(ValueError, match=match):
        Function.from_bytes(bad.to_bytes())


def test_from_bytes_rejects_damaged_bytes():
    data = _valid().to_bytes()
    for cut in range(len(data)):                      # every truncation
        with pytest.raises(ValueError):
            Function.from_bytes(data[:cut])
    with pytest.raises(ValueError):
        Function.from_bytes(data + b"\0" * 8)         # trailing bytes
    with pytest.raises(ValueError, match="magic"):
        Function.from_bytes(b"XXXX" + data[4:])
    with pytest.raises(ValueError, match="version"):
        Function.from_bytes(data[:4] + b"\x63\x00" + data[6:])


# -- the structural key ------------------------------------------------------------

def _key(expr, args, wrt=None):
    exprs = expr if isinstance(expr, list) else [expr]
    flat = [s for a in args for s in (a if isinstance(a, (list, tuple)) else [a])]
    wrt = flat if wrt is None else wrt
    return structural_key(lower(exprs), {s: i for i, s in enumerate(flat)}, wrt, len(flat))


def test_key_is_equal_for_rebuilt_and_renamed_expressions():
    def build(a, b):
        return a * sp.tanh(b) + sp.sqrt(1 + a**2) + sp.Rational(1, 3) * sp.exp(-b)
    u, v = sp.symbols("u v")
    k = _key(build(x, y), [x, y])
    assert k == _key(build(*sp.symbols("x y")), [x, y])       # rebuilt from scratch
    assert k == _key(build(u, v), [u, v])                     # names matter only by position
    assert k != _key(build(u, v), [v, u])                     # ... and positions do


@pytest.mark.parametrize("other", [
    lambda: _key(x * sp.tanh(y) + 3, [x, y]),                  # a constant
    lambda: _key(x * sp.tanh(y) + sp.Float(2.0), [x, y]),      # 2 vs 2.0
    lambda: _key(x * sp.sinh(y) + 2, [x, y]),                  # an op
    lambda: _key(x * sp.tanh(y) + 2, [y, x]),                  # argument order
    lambda: _key(x * sp.tanh(y) + 2, [x, y], [x]),             # wrt set
    lambda: _key(x * sp.tanh(y) + 2, [x, y], [y, x]),          # wrt order
    lambda: _key(x * sp.tanh(y) + 2, [x, y, z]),               # layout
    lambda: _key([x * sp.tanh(y) + 2, x], [x, y]),             # outputs
    lambda: _key(sp.Symbol("x", positive=True) * sp.tanh(y) + 2,
                 [sp.Symbol("x", positive=True), y]),          # assumptions
])
def test_key_distinguishes(other):
    assert _key(x * sp.tanh(y) + 2, [x, y]) != other()


def test_key_distinguishes_half_from_point_five():
    assert _key(x**sp.Rational(1, 2), [x]) != _key(x**sp.Float(0.5), [x])
    assert _key(x**sp.Float(0.5), [x]) != _key(x**sp.Float(0.5, 30), [x])


_unregister = sg.unregister_op


def test_key_follows_the_op_table():
    f = sp.Function("sg_test_keyop")
    builtin_only = _key(sp.tanh(x) * y, [x, y])
    try:
        sg.register_op(f, impl="tanh", partials=lambda out, a: (1 - out**2,))
        k1 = _key(f(x) * y, [x, y])
        # an unrelated user op leaves other expressions' keys alone
        assert _key(sp.tanh(x) * y, [x, y]) == builtin_only
        sg.register_op(f, impl="tanh", partials=lambda out, a: (2 - out**2,), replace=True)
        assert _key(f(x) * y, [x, y]) != k1                   # its rule changed
        # replacing a built-in's rule changes every key
        old = sg.get_op("tanh")
        try:
            sg.register_op(sp.tanh, name="tanh", impl="tanh", replace=True,
                           partials=lambda out, a: (1 - out * out,))
            assert _key(sp.tanh(x) * y, [x, y]) != builtin_only
        finally:
            from symgrad.ops import registry
            registry._BY_HEAD[sp.tanh] = registry._BY_NAME["tanh"] = old
        assert _key(sp.tanh(x) * y, [x, y]) == builtin_only
    finally:
        _unregister("sg_test_keyop")


# -- end to end ------------------------------------------------------------------------

@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMGRAD_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("SYMGRAD_IR_CACHE", raising=False)
    return tmp_path


def _entries(cache: Path) -> list:
    return sorted(cache.glob("symgrad_ir_*.sgir"))


def _check_numbers(fn) -> None:
    value, grad = fn.value_and_grad(*[POINT[s] for s in (x, y, z)])
    tape_value, tape_grads = sg.tape.replay(F, POINT)
    assert value == pytest.approx(tape_value, rel=1e-13)
    np.testing.assert_allclose(grad, [tape_grads[s] for s in (x, y, z)], rtol=1e-12)


_CHILD = textwrap.dedent("""
    import json, pickle, sys
    import sympy as sp, symgrad as sg
    import symgrad.diff, symgrad.ssa
    from symgrad import ircache, ssa
    if sys.argv[1] == "forbid":
        def forbidden(*a, **k):
            raise AssertionError("reverse mode ran in the second process")
        symgrad.diff.reverse_sweep = symgrad.ssa.reverse_sweep = forbidden
        symgrad.diff._reverse = forbidden
    x, y, z = sp.symbols("x y z")
    F = x * sp.tanh(y) + sg.relu(x - y) + sp.log(1 + x**2) / y + sp.Max(x, y) * sp.exp(-z**2)
    if sys.argv[2] == "pickle":
        fn = pickle.loads(bytes.fromhex(sys.stdin.read()))
    else:
        fn = sg.compile(F, [x, y, z])
    v, g = fn.value_and_grad(0.7, 1.3, -0.4)
    print(json.dumps({"stats": ircache.stats, "sweeps": ssa.stats["sweeps"],
                      "bits": [float(v).hex()] + [float(t).hex() for t in g],
                      "ir": str(fn.ir)}))
""")


def _child(cache: Path, mode: str, how: str = "compile", stdin: str = "") -> dict:
    env = dict(os.environ, SYMGRAD_CACHE_DIR=str(cache))
    env.pop("SYMGRAD_IR_CACHE", None)
    out = subprocess.run([sys.executable, "-c", _CHILD, mode, how], env=env, input=stdin,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_hits_and_runs_no_reverse_mode(cache):
    first = _child(cache, "allow")
    assert first["stats"]["misses"] == 1 and first["stats"]["stores"] == 1
    assert first["sweeps"] == 1
    assert len(_entries(cache)) == 1
    second = _child(cache, "forbid")          # reverse mode raises if it is called
    assert second["stats"]["hits"] == 1 and second["stats"]["misses"] == 0
    assert second["sweeps"] == 0
    assert second["bits"] == first["bits"]    # bit-identical numbers
    assert second["ir"] == first["ir"]
    tape_value, tape_grads = sg.tape.replay(F, POINT)
    got = [float.fromhex(h) for h in second["bits"]]
    assert got[0] == pytest.approx(tape_value, rel=1e-13)
    np.testing.assert_allclose(got[1:], [tape_grads[s] for s in (x, y, z)], rtol=1e-12)


def test_unpickling_in_a_fresh_process_runs_no_reverse_mode(cache):
    import pickle

    fn = sg.compile(F, [x, y, z])             # stores the entry (this process)
    _check_numbers(fn)
    child = _child(cache, "forbid", "pickle", pickle.dumps(fn).hex())
    assert child["stats"]["hits"] == 1 and child["sweeps"] == 0
    v, g = fn.value_and_grad(0.7, 1.3, -0.4)
    assert child["bits"] == [float(v).hex()] + [float(t).hex() for t in g]


def test_a_hit_gives_the_same_ir_in_process(cache):
    before = dict(ircache.stats)
    fn1 = sg.compile(F, [x, y, z], backend="python")
    u, v, w = sp.symbols("u v w")
    G = F.xreplace({x: u, y: v, z: w})        # renamed: same structure, same entry
    fn2 = sg.compile(G, [u, v, w], backend="python")
    assert ircache.stats["misses"] == before["misses"] + 1
    assert ircache.stats["hits"] == before["hits"] + 1
    assert fn1.ir.to_bytes() == fn2.ir.to_bytes()
    assert fn1.ir_forward.to_bytes() == fn2.ir_forward.to_bytes()
    _check_numbers(fn2)


def _corrupt_flip(data: bytes, other: bytes) -> bytes:
    mid = len(data) // 2
    return data[:mid] + bytes([data[mid] ^ 0x40]) + data[mid + 1:]


def _corrupt_truncate(data: bytes, other: bytes) -> bytes:
    return data[: len(data) // 3]


def _corrupt_foreign(data: bytes, other: bytes) -> bytes:
    return other                              # a valid entry of another expression


def _corrupt_garbage(data: bytes, other: bytes) -> bytes:
    return b"\x80\x04\x95not a pickle and never unpickled"


def _corrupt_valid_checksum_bad_ir(data: bytes, other: bytes) -> bytes:
    # a well-formed entry (right key, sizes, checksum) whose program is invalid
    head = ircache._HEAD.unpack_from(data)
    key = head[2].hex()
    bad = Function(3, (Instr("input", (0,)), Instr("no_such_op", (0,))), (1,) * 4)
    fw = Function(3, (Instr("input", (0,)),), (0,))
    return ircache._entry(key, 3, 1, 3, bad, fw)


@pytest.mark.parametrize("corrupt", [_corrupt_flip, _corrupt_truncate, _corrupt_foreign,
                                     _corrupt_garbage, _corrupt_valid_checksum_bad_ir])
@pytest.mark.parametrize("sealed", [False, True])
def test_bad_entries_are_recomputed(cache, corrupt, sealed):
    """Damage to the file fails the verified cache's HMAC (compiler.objcache):
    removed before it is parsed. A correctly sealed entry whose contents are
    wrong (written with the key: the same user) fails the entry's own checks."""
    from compiler import objcache

    sg.compile(sp.sin(x) * y + z, [x, y, z], backend="python")
    other_path, = _entries(cache)
    other, other_file = objcache.load(other_path.name), other_path.read_bytes()
    other_path.unlink()
    fn = sg.compile(F, [x, y, z], backend="python")
    path, = _entries(cache)
    good_file = path.read_bytes()
    good = objcache.load(path.name)
    bad = corrupt(good, other)
    path.write_bytes(objcache.seal(path.name, bad) if sealed else corrupt(good_file, other_file))
    before = dict(ircache.stats)
    warning = IRCacheWarning if sealed else objcache.CacheWarning
    with pytest.warns(warning):
        fn2 = sg.compile(F, [x, y, z], backend="python")
    assert ircache.stats["rejected"] == before["rejected"] + int(sealed)
    assert ircache.stats["misses"] == before["misses"] + 1
    assert objcache.load(path.name) == good   # replaced by a fresh, identical entry
    assert fn2.ir.to_bytes() == fn.ir.to_bytes()
    _check_numbers(fn2)


@pytest.fixture
def read_only(cache, monkeypatch):
    """The ``ir`` directory made read-only; as root (who may write anyway) file
    creation in it is refused the way the kernel refuses it to other users."""
    ir_dir = cache

    def lock():
        ir_dir.chmod(0o555)
        if os.geteuid() == 0:
            real_open = os.open

            def refusing_open(path, flags, *args, **kwargs):
                if flags & os.O_CREAT and Path(path).parent == ir_dir:
                    raise PermissionError(13, "Permission denied", str(path))
                return real_open(path, flags, *args, **kwargs)
            monkeypatch.setattr(os, "open", refusing_open)
    yield lock
    ir_dir.chmod(0o700)


def test_read_only_cache_dir_compiles_without_caching(read_only, cache):
    read_only()
    before = dict(ircache.stats)
    fn = sg.compile(F, [x, y, z], backend="python")
    _check_numbers(fn)
    assert ircache.stats["stores"] == before["stores"]
    assert _entries(cache) == []
    assert not any(p.name.endswith(".tmp") for p in cache.iterdir())


def test_read_only_cache_dir_still_serves_hits(read_only, cache):
    sg.compile(F, [x, y, z], backend="python")
    read_only()
    before = dict(ircache.stats)
    fn = sg.compile(F, [x, y, z], backend="python")
    assert ircache.stats["hits"] == before["hits"] + 1
    _check_numbers(fn)


def test_unusable_cache_dir_is_no_cache(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("SYMGRAD_CACHE_DIR", str(blocker / "cache"))
    before = dict(ircache.stats)
    fn = sg.compile(F, [x, y, z], backend="python")
    _check_numbers(fn)
    assert ircache.stats["stores"] == before["stores"]


def test_cache_can_be_turned_off(cache, monkeypatch):
    monkeypatch.setenv("SYMGRAD_IR_CACHE", "0")
    before = dict(ircache.stats)
    fn = sg.compile(F, [x, y, z], backend="python")
    _check_numbers(fn)
    assert ircache.stats["misses"] == before["misses"] + 1
    assert _entries(cache) == []


def test_file_store_writes_atomically_with_private_permissions(tmp_path):
    store = ircache.FileStore(tmp_path / "s")
    assert store.write("a", b"one")
    assert store.write("a", b"two")           # replaced, not appended
    assert store.read("a") == b"two"
    assert store.read("missing") is None
    assert (tmp_path / "s" / "a").stat().st_mode & 0o077 == 0
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["a"]   # no temporary left
    store.discard("a")
    assert store.read("a") is None
