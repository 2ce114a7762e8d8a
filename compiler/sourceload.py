"""Back ends: turn kernel source into callables.

* ``python``: ``exec`` of the generated source (built only from generated
  identifiers and numbers) with the pure-Python runtime; the reference.
* ``numba``: the same source written to a real ``.py`` file in the cache
  directory (Numba cannot cache functions created by ``exec``) and compiled
  with ``numba.njit(cache=True)``, so a second process loads machine code
  from disk instead of compiling. Files are named by a hash of their source
  and the versions involved. The expected source is in memory, so a file is
  executed only when its bytes equal it (otherwise it is rewritten
  atomically, :mod:`compiler.objcache`); it is compiled from those bytes, not
  imported (a planted ``.pyc`` is never read). Numba's own cache files next
  to it that fail to load are removed and the function compiled again.
  Without a usable cache directory the modules go to a private directory
  removed at exit.

Every kernel has the signature ``kernel(inp, out)`` (flat float64 arrays).
Batches are not built here: :mod:`compiler.kernel` runs them through LLVM
batch kernels on its own thread pool.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import warnings
from pathlib import Path

from compiler import objcache
from compiler.pysource import source_hash

__all__ = ["cache_dir", "load_python", "load_numba"]

_PY_HEADER = "from compiler.runtime import *\nfrom compiler.runtime import pow as pow_, NAN, INF\n"
_NB_HEADER = (
    "import numpy as np\n"
    "from numba import njit, prange, types\n"
    "from compiler.nbruntime import *\n"
    "from compiler.nbruntime import pow_, NAN, INF\n"
)


def cache_dir() -> Path | None:
    """Where compiled kernels live (``$SYMGRAD_CACHE_DIR``, ``~`` expanded, else the
    user cache dir), or None when that directory is not safe or usable (then
    code is compiled in memory; see :mod:`compiler.objcache`)."""
    return objcache.cache_dir()


def load_python(source: str, name: str = "kernel"):
    """Execute kernel source with the pure-Python runtime; return ``name``."""
    namespace: dict = {}
    code = compile(_PY_HEADER + source, f"<symgrad-kernel-{source_hash(source)}>", "exec")
    exec(code, namespace)  # noqa: S102 - generated from sanitized identifiers and numbers only
    return namespace[name]


def _versions() -> str:
    import numba
    import numpy

    return f"numba {numba.__version__} numpy {numpy.__version__} py {sys.version_info[:3]}"


def load_numba(source: str, name: str = "kernel", entry: str = "", extern: bool = False):
    """Compile kernel source with Numba through a cached ``.py`` file.

    ``source`` may end with :func:`compiler.pysource.cfunc_source` (a C entry to
    the kernel). ``entry`` is optional extra source defining entry points,
    each jitted alongside the kernel (``def`` lines get ``@njit``; ``prange``
    entries get ``parallel=True``). ``extern=True``: ``source`` is a module
    head and one function, separated by two blank lines.

    Returns
    -------
    (module, path, reused)
        The module holds ``name`` and the entries of ``entry``; ``reused`` is True when the file
        already existed (compiled code is then loaded from Numba's on-disk
        cache next to it). Numba compiles each function on first call.
    """
    if extern:
        head, _, func = source.partition("\n\n\n")
        module_src = [_NB_HEADER, "\n", head, "\n\n\n@njit(cache=True, nogil=True)\n", func]
    else:
        module_src = [_NB_HEADER, "\n", "@njit(cache=True, error_model='numpy', nogil=True)\n", source]
    for part in entry.split("\ndef ") if entry else []:
        part = part if part.startswith("def ") else "def " + part
        flags = ", parallel=True" if "prange(" in part else ""
        module_src += [f"\n\n@njit(cache=True, error_model='numpy'{flags})\n", part.rstrip() + "\n"]
    text = "".join(module_src)
    digest = source_hash(text, _versions())
    modname = f"symgrad_k_{digest}"
    module = sys.modules.get(modname)
    if extern:   # Numba code calls llvm kernels by symbol: register (and pin) them first
        from compiler.jit import export_to_numba

        for symbol in re.findall(r'ExternalFunction\("(symgrad_ll_[0-9a-f]+)"', head):
            export_to_numba(symbol)
    if module is not None:
        return module, Path(module.__file__), module.__symgrad_reused__
    directory = cache_dir() or objcache.scratch_dir()
    path = directory / f"{modname}.py"
    data = text.encode("utf-8")
    found = objcache.read_file(path, 4 * len(data) + 4096)
    reused = found == data
    if not reused:
        if found is not None:
            warnings.warn(f"symgrad cache file {path} differs from the generated source; "
                          f"rewrote it", objcache.CacheWarning, stacklevel=2)
        if objcache.write_file(path, data) is None:
            try:
                path = objcache.scratch_dir() / f"{modname}.py"
            except OSError:                  # no usable temporary directory either
                path = directory / f"{modname}.py"
            if objcache.write_file(path, data) is None:
                # nowhere to write (full disk): compile in memory, without Numba's cache
                path, text = Path(f"<{modname}>"), text.replace("cache=True", "cache=False")
    # compiled from the verified text (not imported: no .pyc beside it is ever read);
    # the real file name lets Numba cache, and tracebacks point into it
    spec = importlib.util.spec_from_loader(modname, loader=None, origin=str(path))
    module = importlib.util.module_from_spec(spec)
    module.__file__ = str(path)
    module.__symgrad_reused__ = reused
    sys.modules[modname] = module
    try:
        exec(compile(text, str(path), "exec"), module.__dict__)  # noqa: S102 - verified source
        _guard_numba_caches(module)
    except BaseException:
        del sys.modules[modname]
        raise
    return module, path, reused


def _guard_numba_caches(module) -> None:
    """Put the Numba cache files of each jitted function of ``module`` in the
    verified format (:func:`compiler.objcache.seal`: a damaged or planted
    pickle is removed before it is unpickled), and treat any other failure to
    load one as a miss: the function's cache files are removed, with one
    warning, and it is compiled again."""
    from numba.core.dispatcher import Dispatcher

    for obj in list(vars(module).values()):
        if not isinstance(obj, Dispatcher) or obj.py_func.__module__ != module.__name__:
            continue         # the runtime's functions, imported: not this module's cache
        cache = getattr(obj, "_cache", None)
        load = getattr(cache, "load_overload", None)
        cache_file = getattr(cache, "_cache_file", None)
        if load is None or cache_file is None:
            continue
        if not _seal_cache_file(cache_file):
            obj.disable_cache() if hasattr(obj, "disable_cache") else cache.disable()
            continue

        def guarded(sig, target_context, _load=load, _file=cache_file, _name=obj.__name__):
            try:
                return _load(sig, target_context)
            except Exception as exc:  # noqa: BLE001 - any failure to unpickle/rebuild is a miss
                index = Path(_file._index_path)
                warnings.warn(f"symgrad: Numba cache files for {_name} in {index.parent} failed "
                              f"to load ({type(exc).__name__}: {exc}); removed them and "
                              f"compiled again", objcache.CacheWarning, stacklevel=2)
                stem = index.name[:-len(".nbi")]
                for stale in index.parent.glob(f"{stem}.*"):
                    try:
                        stale.unlink()
                    except OSError:
                        pass
                return None

        cache.load_overload = guarded


def _seal_cache_file(cf) -> bool:
    """Replace the file I/O of one Numba ``IndexDataCacheFile`` with sealed,
    atomic reads and writes; False when its layout is not the one known here."""
    import pickle

    if not all(hasattr(cf, a) for a in ("_index_path", "_source_stamp", "_version",
                                           "_data_path", "_dump")):
        return False

    def load_sealed(path: Path):
        data = objcache.read_file(path)
        payload = None if data is None else objcache.unseal(path, data)
        return None if payload is None else pickle.loads(payload)   # noqa: S301 - verified

    def load_index():
        found = load_sealed(Path(cf._index_path))
        if not (isinstance(found, tuple) and len(found) == 3):
            return {}
        version, stamp, overloads = found
        return overloads if version == cf._version and stamp == cf._source_stamp else {}

    def save_index(overloads):
        path = Path(cf._index_path)
        payload = cf._dump((cf._version, cf._source_stamp, overloads))
        objcache.write_file(path, objcache.seal(path.name, payload))

    def load_data(name):
        found = load_sealed(Path(cf._data_path(name)))
        if found is None:
            raise OSError(f"Numba cache file {name} is missing or failed its check")
        return found

    def save_data(name, data):
        path = Path(cf._data_path(name))
        objcache.write_file(path, objcache.seal(path.name, cf._dump(data)))

    cf._load_index, cf._save_index = load_index, save_index
    cf._load_data, cf._save_data = load_data, save_data
    return True
