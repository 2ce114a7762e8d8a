"""The process-wide JIT: object files in, callable machine code out, memory
returned when nothing uses it any more.

One ORC ``LLJIT`` (llvmlite's :func:`llvmlite.binding.create_lljit_compiler`)
serves the whole process. Each object file is linked into a JIT library of
its own and comes back as a :class:`JITLibrary`, the *owner* of its machine
code: the addresses it hands out stay valid exactly as long as the owner is
reachable, and when it is garbage-collected ORC unloads the library and
frees its memory. So whoever keeps a kernel's address (a kernel object, a
call-glue builtin) keeps its owner, and dropping a compiled function drops
its code.

Symbols, three ways:

* *Imports from the process* (libm, glibc's libmvec and NumPy's OpenBLAS,
  loaded with ``llvm.load_library_permanently``; the C library; CPython's
  and NumPy's C functions) resolve through ``add_current_process``: the
  same search LLVM's MCJIT used.
* *Imports from another JIT library* (the call glue calls its kernel by
  symbol): passed as ``depends``; the kernel's exported addresses are
  imported explicitly into the new library, and the new owner holds the
  kernel's owner, so a kernel always outlives the code that calls it.
* *Numba* resolves external names through LLVM's process-wide symbol table
  (``llvm.add_symbol``) and bakes the address into machine code that lives
  as long as its module (``sys.modules``: the whole process). A library
  whose symbol is handed to Numba (:func:`export_to_numba`) is therefore
  registered there once and pinned for the rest of the process; no other
  library is ever registered, so no registered symbol can dangle.

The in-process registry (:func:`find`) is weak: loading the same object
twice gives the same library while it lives, and does not keep it alive.

Measured costs (this machine, llvmlite 0.50, RuntimeDyld): a small library
takes ~45 KB while loaded; after unloading ORC keeps ~11 KB of bookkeeping
per library (a library name can never be reused). LLVM's default O2
pipeline leaves ~58 KB behind per run inside LLVM, whatever is closed, so
straight-line kernels (most modules of a formula) run a short pipeline of
their own instead (:func:`compiler.llvmobject._compile_object`); see
``benchmarks/bench_memory.py`` for what a formula costs.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from pathlib import Path

__all__ = ["JITLibrary", "LinkError", "export_to_numba", "find", "link_object", "register_external"]

_LOCK = threading.RLock()
_STATE: dict = {}
_LIVE: "weakref.WeakValueDictionary[str, JITLibrary]" = weakref.WeakValueDictionary()
_PINNED: dict = {}           # symbol -> JITLibrary registered with llvm.add_symbol (Numba)
_SERIAL = itertools.count()  # library names are never reused, even after unloading


class LinkError(RuntimeError):
    """An object file that the JIT could not link, or that lacks an entry point."""


class JITLibrary:
    """Machine code of one object file, loaded into the process-wide JIT.

    Holds the ORC resource tracker: the code at :attr:`addresses` stays valid
    while this object is reachable and is unloaded when it is collected.

    Attributes
    ----------
    symbol : str
        The object's base symbol (entry points are ``symbol + suffix``).
    addresses : dict
        ``{entry suffix: address}`` of the requested entry points.
    path : Path or None
        The cache file the object came from or went to (None: memory only).
    reused : bool
        True when the object was loaded from the disk cache.
    depends : tuple
        Libraries this one calls into (kept alive by this one).
    """

    __slots__ = ("symbol", "addresses", "path", "reused", "depends", "_tracker", "__weakref__")

    def __init__(self, symbol: str, addresses: dict, path: Path | None, reused: bool,
                 depends: tuple, tracker) -> None:
        self.symbol, self.addresses, self.path, self.reused = symbol, addresses, path, reused
        self.depends, self._tracker = depends, tracker

    def __repr__(self) -> str:
        return f"JITLibrary({self.symbol!r}, entries={sorted(self.addresses)}, reused={self.reused})"


def _jit():
    """The process-wide LLJIT, created on first use and never disposed (libraries
    may still be unloaded during interpreter shutdown)."""
    if "jit" not in _STATE:
        import llvmlite.binding as llvm

        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        jit = llvm.create_lljit_compiler()
        jit._owned = True                # llvmlite never disposes an owned handle
        _STATE["jit"] = jit
    return _STATE["jit"]


_EXTERNAL: dict = {}         # symbol -> address of C functions outside the JIT (user ops)


def register_external(symbol: str, address: int) -> None:
    """Make the C function at ``address`` callable by name from every library
    linked from now on (and from Numba, through ``llvm.add_symbol``): native
    forwards of user ops. The caller keeps the function alive for the process."""
    import llvmlite.binding as llvm

    with _LOCK:
        _EXTERNAL[symbol] = address
        llvm.add_symbol(symbol, address)


def find(symbol: str) -> JITLibrary | None:
    """The live library whose base symbol is ``symbol``, or None."""
    return _LIVE.get(symbol)


def link_object(obj: bytes, symbol: str, entries: tuple, *, path: Path | None = None,
                reused: bool = False, depends: tuple = (), imports: dict | None = None) -> JITLibrary:
    """Link an object file into the process-wide JIT.

    Parameters
    ----------
    obj : bytes
        An ELF (or host-format) relocatable object defining ``symbol + e`` for
        each ``e`` in ``entries``.
    symbol : str
        The object's base symbol; the registry (:func:`find`) is keyed by it.
    entries : tuple of str
        Entry suffixes whose addresses are wanted (``""`` is ``symbol`` itself).
    path, reused
        Recorded on the result (where the object is cached, whether it came
        from the cache).
    depends : tuple of JITLibrary
        Libraries whose exported entry points this object calls by symbol.
    imports : dict, optional
        ``{symbol: address}`` of C functions outside the JIT this object calls
        (a Numba ``cfunc``); the caller keeps them alive.

    Returns
    -------
    JITLibrary
        The owner of the loaded code.

    Raises
    ------
    LinkError
        When LLVM cannot link the object or an entry point is missing.
    """
    import llvmlite.binding as llvm

    with _LOCK:
        jit = _jit()
        builder = llvm.JITLibraryBuilder().add_object_img(obj).add_current_process()
        for dep in depends:
            for suffix, addr in dep.addresses.items():
                builder.import_symbol(dep.symbol + suffix, addr)
        for name, addr in {**_EXTERNAL, **(imports or {})}.items():
            builder.import_symbol(name, addr)
        for e in entries:
            builder.export_symbol(symbol + e)
        try:
            tracker = builder.link(jit, f"{symbol}.{next(_SERIAL)}")
        except RuntimeError as exc:
            raise LinkError(f"the JIT could not link object {symbol}: {exc}") from None
        addresses = {e: tracker[symbol + e] for e in entries}
        if not all(addresses.values()):
            missing = [symbol + e for e, a in addresses.items() if not a]
            raise LinkError(f"object {symbol} does not define {', '.join(missing)}")
        lib = JITLibrary(symbol, addresses, path, reused, tuple(depends), tracker)
        _LIVE[symbol] = lib
        return lib


def export_to_numba(symbol: str) -> JITLibrary:
    """Register a live library's entry points with LLVM's process-wide symbol
    table, so Numba code (``types.ExternalFunction``) can call them by name,
    and pin the library for the rest of the process (Numba keeps the
    address in machine code it never frees).

    Raises
    ------
    LookupError
        When no live library has base symbol ``symbol`` (load the kernel first).
    """
    import llvmlite.binding as llvm

    with _LOCK:
        lib = _PINNED.get(symbol) or _LIVE.get(symbol)
        if lib is None:
            raise LookupError(f"no loaded llvm kernel is named {symbol}: load the kernel "
                              f"(and keep it) before compiling Numba code that calls it")
        if symbol not in _PINNED:
            for suffix, addr in lib.addresses.items():
                llvm.add_symbol(symbol + suffix, addr)
            _PINNED[symbol] = lib
        return lib
