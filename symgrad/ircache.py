"""The front-end cache: SSA programs on disk, keyed by the DAG's structure.

Native code is cached by the back ends; this caches what comes before it, so
a second process (or an unpickled :class:`~symgrad.compile.CompiledFunction`)
goes from the SymPy expression to its value-and-gradient and forward
:class:`compiler.ir.Function` s without running reverse mode:

1. lower the outputs to a DAG (:func:`symgrad.graph.lower`; needed anyway to
   check the arguments);
2. :func:`structural_key`: a SHA-256 of the DAG walked in its (deterministic)
   topological order, one line per node: the op's name and its children's
   indices, a symbol's *slot* in ``args`` and its assumptions (never its
   name), a constant exactly (:func:`symgrad.ssa.const_token`); then the
   outputs, the ``wrt`` slots, the number of inputs, and a fingerprint of
   everything else the IR depends on (the sources of the modules that build
   it, the op table's rules, the SymPy and Python versions and the machine:
   constant folding calls libm). Renaming symbols hits the same entry;
   anything that changes the numbers misses;
3. on a hit, parse the entry; on a miss, build the IR with
   :func:`symgrad.ssa.value_and_grad_ir` and store it.

The cache is a code-execution boundary even though it holds no code: entries
are never unpickled or evaluated, only parsed (:meth:`compiler.ir.Function.from_bytes`
plus a fixed header with the key, the expected sizes and a SHA-256 of the
whole entry). An entry that fails to parse or validate is deleted and
recomputed with a one-line :class:`IRCacheWarning`. Writes are atomic (a
unique ``O_EXCL`` temporary file in the cache directory, ``fsync``,
``os.replace``); a cache directory that cannot be written only means no
caching. All file I/O goes through :class:`FileStore` (read, write,
discard), the one place to swap for a verified object store.

``SYMGRAD_IR_CACHE=0`` turns the cache off (benchmarks use it to time the
front end against a warm native cache).
"""

from __future__ import annotations

import gc
import hashlib
import os
import platform
import secrets
import struct
import sys
import time
import warnings
from pathlib import Path
from typing import Optional, Sequence

import sympy as sp

from compiler.ir import FORMAT_VERSION as IR_FORMAT_VERSION
from compiler.ir import Function
from symgrad.graph import CONST, OP, SYMBOL, Graph, lower
from symgrad.ops.registry import all_ops
from symgrad.ssa import assumptions_token, const_token, value_and_grad_ir

__all__ = ["FORMAT_VERSION", "IRCacheWarning", "FileStore", "structural_key", "front_end_ir",
           "stats"]

FORMAT_VERSION = 1
"""Version of the cache key and entry layout; bump when either changes."""

stats = {"hits": 0, "misses": 0, "stores": 0, "rejected": 0, "front_end_s": 0.0}
"""Counters of this process: entries loaded (``hits``), IR built
(``misses``), entries written (``stores``), entries rejected and deleted
(``rejected``), and the total time spent in :func:`front_end_ir`."""

_MAGIC = b"symgrad-ir-cache\n"
_HEAD = struct.Struct("<17sI32sIIIQQ")  # magic, version, key, n_inputs, n_outputs, n_wrt, |vg|, |fw|
_MAX_ENTRY = 1 << 30


class IRCacheWarning(UserWarning):
    """A front-end cache entry was unreadable and has been recomputed."""


class FileStore:
    """Named byte blobs in one directory: ``read``, atomic ``write``, ``discard``.

    Every method swallows ``OSError`` (a missing or read-only directory means
    no caching, never a failure) and reports it in its return value.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def read(self, name: str) -> Optional[bytes]:
        """The blob, or ``None`` if it is absent or unreadable."""
        path = self.directory / name
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return None
        try:
            size = os.fstat(fd).st_size
            if size > _MAX_ENTRY:
                return None
            chunks, left = [], size
            while left > 0:
                chunk = os.read(fd, left)
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            return b"".join(chunks)
        except OSError:
            return None
        finally:
            os.close(fd)

    def write(self, name: str, data: bytes) -> bool:
        """Atomically store ``data`` under ``name``; False if it could not."""
        tmp = None
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = self.directory / f".{name}.{os.getpid()}.{secrets.token_hex(8)}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                         0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.directory / name)
            return True
        except OSError:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
            return False

    def discard(self, name: str) -> None:
        """Delete the blob if it is there (and can be deleted)."""
        try:
            os.unlink(self.directory / name)
        except OSError:
            pass


class VerifiedStore:
    """The :class:`FileStore` interface over the back end's verified cache
    (:mod:`compiler.objcache`: HMAC-tagged entries, atomic writes, a private
    directory), so a planted or damaged entry is removed before it is parsed."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def read(self, name: str) -> Optional[bytes]:
        from compiler import objcache

        return objcache.load(name)

    def write(self, name: str, data: bytes) -> bool:
        from compiler import objcache

        return objcache.store(name, data) is not None

    def discard(self, name: str) -> None:
        FileStore(self.directory).discard(name)


def _store() -> Optional[VerifiedStore]:
    if os.environ.get("SYMGRAD_IR_CACHE", "1") == "0":
        return None
    from compiler.sourceload import cache_dir

    directory = cache_dir()
    return VerifiedStore(directory) if directory is not None else None


# -- the key ---------------------------------------------------------------------------

_SOURCES = ("symgrad/graph.py", "symgrad/diff.py", "symgrad/ssa.py", "symgrad/ircache.py",
            "symgrad/functions.py", "compiler/ir.py", "compiler/runtime.py")
_FINGERPRINT: list = []
_OP_TOKENS: dict = {}     # id(op) -> (op, token); op kept alive so its id stays unique


def _environment() -> bytes:
    """What the IR depends on besides the DAG: sources, versions, machine
    (computed when this module is imported, next to loading that code)."""
    if not _FINGERPRINT:
        h = hashlib.sha256()
        root = Path(__file__).resolve().parent.parent
        paths = [root / p for p in _SOURCES]
        paths += sorted((root / "symgrad" / "ops").glob("*.py"))
        for path in paths:
            h.update(path.name.encode() + b"\0")
            try:
                h.update(path.read_bytes())
            except OSError:
                h.update(b"<missing>")
        h.update(f"{FORMAT_VERSION} {IR_FORMAT_VERSION} sympy {sp.__version__} "
                 f"{sys.version} {platform.machine()} {sys.float_info}".encode())
        _FINGERPRINT.append(h.digest())
    return _FINGERPRINT[0]


def _code_token(fn) -> str:
    """Bytecode, constants, names, defaults and closure of a rule, recursively."""
    h = hashlib.sha256()
    stack = [getattr(fn, "__code__", None)]
    h.update(repr((getattr(fn, "__module__", None), getattr(fn, "__qualname__", None),
                   getattr(fn, "__defaults__", None))).encode())
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            h.update(repr(cell.cell_contents).encode())
        except ValueError:
            h.update(b"<empty cell>")
    while stack:
        code = stack.pop()
        if code is None:
            h.update(repr(fn).encode())
            continue
        h.update(code.co_code)
        h.update(repr(code.co_names).encode())
        for c in code.co_consts:
            if hasattr(c, "co_code"):
                stack.append(c)
            else:
                h.update(repr(c).encode())
    return h.hexdigest()


def _module(obj) -> str:
    return getattr(obj, "__module__", None) or ""


def _library_head(op) -> bool:
    return _module(op.head).split(".")[0] in ("sympy", "symgrad")


def _op_info(op) -> tuple:
    """``(token, built_in)``: the op's rules as text, and whether both its head
    and its rules come from SymPy / symgrad (not from user code)."""
    hit = _OP_TOKENS.get(id(op))
    if hit is None:
        impl = op.impl if isinstance(op.impl, str) else "py:" + _code_token(op.impl)
        token = f"{op.name!r} {op.head.__name__!r} {impl!r} {_code_token(op.partials)}"
        built_in = _library_head(op) and _module(op.partials).startswith("symgrad.")
        hit = _OP_TOKENS[id(op)] = (op, token, built_in)
    return hit[1], hit[2]


def _op_table_token(graph: Graph) -> bytes:
    """The rules the IR of ``graph`` can depend on.

    The partials of one op may use others (tanh's uses pow, mul and add), so
    this hashes the built-in op table; user-registered ops join it only when
    they can matter: when the graph uses one, or when one replaces a built-in
    (then the whole table counts). Registering an unrelated op of one's own
    leaves the keys of other expressions unchanged.
    """
    h = hashlib.sha256()
    table = [(op, *_op_info(op)) for op in all_ops()]
    user_ops = any(not built_in for _, _, built_in in table)
    if user_ops:
        touched = any(node.kind == OP and not _op_info(node.op)[1] for node in graph.nodes) or any(
            not built_in and _library_head(op) for op, _, built_in in table)
        if not touched:
            table = [t for t in table if t[2]]
    for token in sorted(t[1] for t in table):      # registration order does not matter
        h.update(token.encode() + b"\n")
    return h.digest()


def structural_key(graph: Graph, slots, wrt: Sequence[sp.Symbol], n_inputs: int) -> str:
    """SHA-256 (hex) of everything the SSA IR of ``graph`` depends on.

    Parameters
    ----------
    graph : Graph
        The lowered outputs.
    slots : mapping
        Input slot of each symbol (a symbol's *name* never enters the key).
    wrt : sequence of Symbol
        Variables of the gradient, in order.
    n_inputs : int
        Length of the flat input vector.

    Examples
    --------
    >>> import sympy as sp
    >>> from symgrad.graph import lower
    >>> from symgrad.ircache import structural_key
    >>> x, y, u, v = sp.symbols("x y u v")
    >>> k1 = structural_key(lower(x * sp.tanh(y)), {x: 0, y: 1}, [x, y], 2)
    >>> k1 == structural_key(lower(u * sp.tanh(v)), {u: 0, v: 1}, [u, v], 2)   # renamed
    True
    >>> k1 == structural_key(lower(x * sp.tanh(y)), {x: 0, y: 1}, [y], 2)      # other wrt
    False
    """
    op_index: dict = {}
    assumption_index: dict = {}
    lines = []
    for node in graph.nodes:
        kind = node.kind
        if kind == OP:
            k = op_index.setdefault(node.op.name, len(op_index))
            lines.append(f"o{k} {' '.join(map(str, node.args))}")
        elif kind == SYMBOL:
            slot = slots.get(node.expr, -1)
            a = assumption_index.setdefault(assumptions_token(node.expr), len(assumption_index))
            lines.append(f"s{slot} {a}")
        else:
            assert kind == CONST
            lines.append("c" + const_token(node.expr))
    wrt_slots = [slots.get(w, -1) for w in wrt]
    h = hashlib.sha256()
    h.update(_environment())
    h.update(_op_table_token(graph))
    h.update(repr((list(op_index), list(assumption_index), graph.outputs, wrt_slots,
                   n_inputs)).encode())
    h.update("\n".join(lines).encode())
    return h.hexdigest()


_environment()


# -- entries ---------------------------------------------------------------------------

def _entry(key: str, n_inputs: int, n_outputs: int, n_wrt: int, vg: Function,
           fw: Function) -> bytes:
    vg_bytes, fw_bytes = vg.to_bytes(), fw.to_bytes()
    body = _HEAD.pack(_MAGIC, FORMAT_VERSION, bytes.fromhex(key), n_inputs, n_outputs, n_wrt,
                      len(vg_bytes), len(fw_bytes)) + vg_bytes + fw_bytes
    return body + hashlib.sha256(body).digest()


def _parse(data: bytes, key: str, n_inputs: int, n_outputs: int, n_wrt: int) -> tuple:
    """Both functions of an entry, or ValueError saying what is wrong with it."""
    if len(data) < _HEAD.size + 32:
        raise ValueError("truncated")
    body, digest = data[:-32], data[-32:]
    if hashlib.sha256(body).digest() != digest:
        raise ValueError("checksum mismatch")
    magic, version, ekey, e_in, e_out, e_wrt, n_vg, n_fw = _HEAD.unpack_from(body)
    if magic != _MAGIC or version != FORMAT_VERSION:
        raise ValueError("not an entry of this format")
    if ekey != bytes.fromhex(key):
        raise ValueError("entry belongs to another key")
    if (e_in, e_out, e_wrt) != (n_inputs, n_outputs, n_wrt):
        raise ValueError("wrong input/output counts")
    if _HEAD.size + n_vg + n_fw != len(body):
        raise ValueError("wrong length")
    vg = Function.from_bytes(body[_HEAD.size:_HEAD.size + n_vg])
    fw = Function.from_bytes(body[_HEAD.size + n_vg:])
    for f, width in ((vg, n_outputs * (1 + n_wrt)), (fw, n_outputs)):
        if f.n_inputs != n_inputs or len(f.outputs) != width:
            raise ValueError("function has the wrong number of inputs or outputs")
    return vg, fw


def front_end_ir(exprs: list, flat: Sequence[sp.Symbol], wrt: Sequence[sp.Symbol],
                 graph=None) -> tuple:
    """The value-and-gradient and forward SSA functions of ``exprs``, cached.

    Parameters
    ----------
    exprs : list of Expr
        The outputs.
    flat : sequence of Symbol
        Every input symbol, in slot order (the flattened ``args``).
    wrt : sequence of Symbol
        Variables of the gradient (each one of ``flat``).
    graph : symgrad.graph.Graph, optional
        ``lower(exprs)``, when the caller has it already.

    Returns
    -------
    (value_and_grad, forward) : tuple of compiler.ir.Function
        As :func:`symgrad.ssa.value_and_grad_ir` builds them; from the disk
        cache when an entry for the same structure exists.
    """
    t0 = time.perf_counter()
    try:
        graph = lower(exprs) if graph is None else graph
        slots = {s: i for i, s in enumerate(flat)}
        n_inputs, n_outputs, n_wrt = len(flat), len(exprs), len(wrt)
        store = _store()
        key = name = None
        if store is not None:
            key = structural_key(graph, slots, wrt, n_inputs)
            name = f"symgrad_ir_{key}.sgir"
            data = store.read(name)
            if data is not None:
                try:
                    result = _parse(data, key, n_inputs, n_outputs, n_wrt)
                    stats["hits"] += 1
                    return result
                except ValueError as err:
                    stats["rejected"] += 1
                    store.discard(name)
                    warnings.warn(f"symgrad: ignoring unreadable IR cache entry "
                                  f"{store.directory / name} ({err}); recomputing",
                                  IRCacheWarning, stacklevel=3)
        stats["misses"] += 1
        gc_was_enabled = gc.isenabled()
        gc.disable()   # millions of small objects, none freed: the cyclic GC would rescan them
        try:
            vg, fw = value_and_grad_ir(graph, slots, n_inputs, wrt)
        finally:
            if gc_was_enabled:
                gc.enable()
        if store is not None and store.write(name, _entry(key, n_inputs, n_outputs, n_wrt, vg, fw)):
            stats["stores"] += 1
        return vg, fw
    finally:
        stats["front_end_s"] += time.perf_counter() - t0
