"""The disk cache is a code-execution boundary (compiler.objcache, compiler.sourceload).

Each trial damages one kind of cached file (llvm object files, Numba modules,
Numba's own cache files, the cache key) in a copy of a primed cache, then a
fresh process compiles the same formula from that cache: it must exit 0 (no
signal), within a timeout, with the numbers of an independent hand
computation, and leave files outside the cache untouched. Several trials run
in one child process, each with its own cache directory (the in-process
registries are weak, and Numba modules are dropped between trials), so they
stay independent.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import stat
import struct
import subprocess
import sys
from pathlib import Path

import pytest

X, Y = 1.5, 0.7
A_IN, A_OUT = 1.25, 0.375          # formula A: tanh(1.25*x + 0.375) * y


def _hand() -> tuple:
    t = math.tanh(A_IN * X + A_OUT)
    return t * Y, [A_IN * (1 - t * t) * Y, t]


_PRELUDE = r"""
import gc, json, os, sys, warnings
import sympy as sp
import symgrad as sg
x, y = sp.symbols("x y")
A = sp.tanh(sp.Float(1.25) * x + sp.Float(0.375)) * y
B = sp.sin(x) * y + sp.Float(0.5)

def run(backends):
    out = {}
    for b in backends:
        fn = sg.compile(A, [x, y], backend=b)
        v, g = fn.value_and_grad(1.5, 0.7)
        out[b] = [float(fn(1.5, 0.7)), float(v), [float(t) for t in g]]
        del fn
        gc.collect()
    return out

def fresh_process_state():
    for name in [m for m in sys.modules if m.startswith("symgrad_k_")]:
        del sys.modules[name]
    gc.collect()
"""

_PRIME = _PRELUDE + r"""
run(["llvm", "numba"])
os.environ["SYMGRAD_CACHE_DIR"] = sys.argv[1]
fn = sg.compile(B, [x, y]); fn(1.5, 0.7); fn.value_and_grad(1.5, 0.7)
fnb = sg.compile(B, [x, y], backend="numba"); fnb(1.5, 0.7); fnb.value_and_grad(1.5, 0.7)
"""

_TRIALS = _PRELUDE + r"""
results = []
for d, backends in json.loads(sys.argv[1]):
    os.environ["SYMGRAD_CACHE_DIR"] = d
    fresh_process_state()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = run(backends)
    results.append({"dir": d, "res": res, "warnings": [str(w.message) for w in caught]})
print("RESULT " + json.dumps(results))
"""


def _child(code: str, env: dict, *args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-c", code, *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode} (negative: signal)\n{proc.stderr[-3000:]}"
    return proc


def _results(proc) -> list:
    line = [s for s in proc.stdout.splitlines() if s.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def _check_numbers(res: dict) -> None:
    value, grad = _hand()
    for backend, (call, v, g) in res.items():
        assert call == pytest.approx(value, rel=1e-13, abs=1e-15), backend
        assert v == pytest.approx(value, rel=1e-13, abs=1e-15), backend
        assert g == pytest.approx(grad, rel=1e-13, abs=1e-15), backend


@pytest.fixture(scope="module")
def primed(tmp_path_factory):
    """A cache holding formula A (llvm and numba, Numba's cache files) and formula B."""
    root = tmp_path_factory.mktemp("primed")
    a, b = root / "a", root / "b"
    _child(_PRIME, {"SYMGRAD_CACHE_DIR": str(a)}, str(b))
    a_only = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    kinds = {
        "object": sorted(p for p in a_only if p.suffix == ".o"),
        "module": sorted(p for p in a_only if p.suffix == ".py"),
        "numba": sorted(p for p in a_only if p.suffix in (".nbi", ".nbc")),
        "key": [Path(".symgrad-key")],
    }
    # objects: the value-and-gradient and forward kernels (one object) and the call
    # glue of their argument layout (one module, shared by both back ends)
    assert len(kinds["object"]) == 2 and len(kinds["module"]) == 2 and kinds["numba"], kinds
    return a, b, kinds


def _patch_constant(data: bytes) -> bytes:
    """A correctly formatted entry (header kept) whose payload has one constant changed."""
    for const in (A_OUT, A_IN):
        raw = struct.pack("<d", const)
        if raw in data[40:]:
            return data.replace(raw, struct.pack("<d", const + 1.0))
    i = len(data) - 5
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]


def _damage(path: Path, how: str, other: Path, outside: Path) -> None:
    data = path.read_bytes() if how not in ("fifo", "devzero", "outside") else b""
    if how in ("fifo", "devzero", "outside"):
        path.unlink()
        if how == "fifo":
            os.mkfifo(path)
        else:
            path.symlink_to("/dev/zero" if how == "devzero" else outside)
        return
    new = {
        "zeroed": lambda: bytes(len(data)),
        "truncated": lambda: data[:len(data) // 2],
        "flipped": lambda: data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 0x40])
        + data[len(data) // 2 + 1:],
        "header": lambda: b"\x7fELF" + b"X" * 12 + data[16:],
        "other": lambda: other.read_bytes(),
        "patched": lambda: _patch_constant(data),
    }[how]()
    path.write_bytes(new)


def _trial_dirs(tmp_path, primed, kind: str, damages: tuple) -> list:
    a, b, kinds = primed
    others = {".o": sorted(b.glob("*.o"))[0], ".py": sorted(b.glob("*.py"))[0]}
    others[".nbi"] = sorted(b.rglob("*.nbi"))[0]
    others[".nbc"] = sorted(b.rglob("*.nbc"))[0]
    others[""] = others[".o"]
    dirs = []
    for how in damages:
        d = tmp_path / f"{kind}-{how}"
        shutil.copytree(a, d, symlinks=True)
        for rel in kinds[kind]:
            _damage(d / rel, how, others[rel.suffix], tmp_path / "outside.txt")
        dirs.append(str(d))
    return dirs


LLVM_DAMAGE = ("zeroed", "truncated", "flipped", "header", "other", "patched", "fifo", "devzero",
               "outside")


@pytest.mark.parametrize("kind,damages,backends", [
    ("object", LLVM_DAMAGE, ["llvm"]),
    ("key", ("zeroed", "truncated", "fifo", "devzero", "outside"), ["llvm"]),
    ("module", ("zeroed", "flipped", "other", "fifo", "devzero", "outside"), ["numba"]),
    ("numba", ("zeroed", "truncated", "flipped", "other", "devzero"), ["numba"]),
])
def test_damaged_cache_files_are_recompiled(tmp_path, primed, kind, damages, backends):
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"precious, not a cache file\n")
    dirs = _trial_dirs(tmp_path, primed, kind, damages)
    proc = _child(_TRIALS, {}, json.dumps([[d, backends] for d in dirs]))
    results = _results(proc)
    assert len(results) == len(damages)
    for how, trial in zip(damages, results):
        _check_numbers(trial["res"])
        # one line naming a damaged file of this kind (the Numba modules are rewritten)
        names = [str(rel.name) for rel in primed[2][kind]]
        if kind == "key":    # a key of the right size is just another key: entries then fail
            names += [str(rel.name) for rel in primed[2]["object"]]
        assert any(n in w and "\n" not in w for w in trial["warnings"] for n in names), \
            (kind, how, trial["warnings"])
    assert outside.read_bytes() == b"precious, not a cache file\n"
    # and the repaired cache is used by the next process without any warning
    again = _results(_child(_TRIALS, {}, json.dumps([[dirs[0], backends]])))[0]
    _check_numbers(again["res"])
    assert again["warnings"] == [], again["warnings"]


def test_patched_object_constant_was_really_in_the_file(primed):
    """The "patched" trial changes a constant of the kernel, not just any byte."""
    a, _, kinds = primed
    datas = [(a / rel).read_bytes() for rel in kinds["object"]]
    assert any(struct.pack("<d", A_OUT) in d[40:] or struct.pack("<d", A_IN) in d[40:]
               for d in datas)


_ENV_TRIAL = _PRELUDE + r"""
import errno, tempfile
mode = sys.argv[1]
if mode == "enospc":
    real = os.write
    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    os.write = full
elif mode == "readonly":
    def denied(*a, **k):
        raise PermissionError(errno.EROFS, "Read-only file system")
    tempfile.mkstemp = denied
elif mode == "planted":
    names = iter(["planted"])
    real_names = tempfile._get_candidate_names
    class Names:
        def __iter__(self):
            return self
        def __next__(self):
            return next(names, None) or next(real_names())
    tempfile._get_candidate_names = lambda: Names()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    res = run(sys.argv[2].split(","))
print("RESULT " + json.dumps([{"res": res, "warnings": [str(w.message) for w in caught]}]))
"""


def _no_leftovers(d: Path) -> None:
    if d.is_dir():
        left = [p.name for p in d.rglob("*") if ".tmp" in p.name or (p.is_file() and
                                                                       p.stat().st_size == 0)]
        assert left == [], left


@pytest.mark.parametrize("mode", ["enospc", "readonly"])
def test_unwritable_cache_compiles_in_memory(tmp_path, mode):
    d = tmp_path / "cache"
    d.mkdir(mode=0o700)
    if mode == "enospc":          # the key must exist: writing it would fail too
        _child(_PRELUDE, {"SYMGRAD_CACHE_DIR": str(d)})
        (d / ".symgrad-key").write_bytes(os.urandom(32))
        os.chmod(d / ".symgrad-key", 0o600)
    trial = _results(_child(_ENV_TRIAL, {"SYMGRAD_CACHE_DIR": str(d)}, mode, "llvm,numba"))[0]
    _check_numbers(trial["res"])
    cache_lines = [w for w in trial["warnings"] if "symgrad cache" in w]
    assert 1 <= len(cache_lines) <= 2 and all("\n" not in w for w in cache_lines), cache_lines
    assert not list(d.glob("*.o"))
    _no_leftovers(d)


def test_file_instead_of_directory(tmp_path):
    f = tmp_path / "cachefile"
    f.write_bytes(b"a file, not a directory\n")
    trial = _results(_child(_ENV_TRIAL, {"SYMGRAD_CACHE_DIR": str(f)}, "none", "llvm,numba"))[0]
    _check_numbers(trial["res"])
    assert sum("is not a directory" in w for w in trial["warnings"]) == 1, trial["warnings"]
    assert f.read_bytes() == b"a file, not a directory\n"


def test_group_writable_or_foreign_directory_is_refused(tmp_path):
    d = tmp_path / "shared"
    d.mkdir()
    os.chmod(d, 0o770)
    trial = _results(_child(_ENV_TRIAL, {"SYMGRAD_CACHE_DIR": str(d)}, "none", "llvm"))[0]
    _check_numbers(trial["res"])
    assert sum("writable by group or others" in w for w in trial["warnings"]) == 1
    assert list(d.iterdir()) == []          # nothing written into it, nothing loaded from it
    if hasattr(os, "geteuid") and os.geteuid() == 0:    # root can hand it to another user
        os.chmod(d, 0o700)
        os.chown(d, 65534, 65534)
        trial = _results(_child(_ENV_TRIAL, {"SYMGRAD_CACHE_DIR": str(d)}, "none", "llvm"))[0]
        _check_numbers(trial["res"])
        assert sum("owned by uid 65534" in w for w in trial["warnings"]) == 1
        assert list(d.iterdir()) == []


def test_planted_symlink_at_temporary_path(tmp_path, primed):
    a, _, kinds = primed
    d = tmp_path / "cache"
    d.mkdir(mode=0o700)
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"precious\n")
    for rel in kinds["object"] + kinds["module"]:
        (d / f".{rel.name}.planted.tmp").symlink_to(outside)
    trial = _results(_child(_ENV_TRIAL, {"SYMGRAD_CACHE_DIR": str(d)}, "planted", "llvm,numba"))[0]
    _check_numbers(trial["res"])
    assert outside.read_bytes() == b"precious\n"
    written = [p for p in d.iterdir() if not p.is_symlink() and p.suffix in (".o", ".py")]
    assert len(written) == 4      # 2 objects (the two kernels, one glue module) and 2 Numba modules
    for p in written + [d / ".symgrad-key"]:
        assert stat.S_IMODE(p.lstat().st_mode) == 0o600, p
    assert stat.S_IMODE(d.stat().st_mode) == 0o700


def test_cache_dir_expands_user(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    code = _PRELUDE + "run(['llvm'])\nprint('RESULT []')\n"
    _child(code, {"HOME": str(home), "SYMGRAD_CACHE_DIR": "~/sgcache"})
    assert stat.S_IMODE((home / "sgcache").stat().st_mode) == 0o700
    assert len(list((home / "sgcache").glob("symgrad_ll_*.o"))) == 2   # kernels, glue
