"""Back ends: turn kernel source into callables.

* ``python``: ``exec`` of the generated source (built only from generated
  identifiers and numbers) with the pure-Python runtime; the reference.
* ``numba``: the same source written to a real ``.py`` file in the cache
  directory (Numba cannot cache functions created by ``exec``) and compiled
  with ``numba.njit(cache=True)``, so a second process loads machine code
  from disk instead of compiling. Files are named by a hash of their source
  and the versions involved.

Every kernel has the signature ``kernel(inp, out)`` (flat float64 arrays).
Batches are not built here: :mod:`compiler.kernel` runs them through LLVM
batch kernels on its own thread pool.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from compiler.codegen import source_hash

__all__ = ["cache_dir", "load_python", "load_numba"]

_PY_HEADER = "from compiler.runtime import *\nfrom compiler.runtime import pow as pow_, NAN, INF\n"
_NB_HEADER = (
    "import numpy as np\n"
    "from numba import njit, prange, types\n"
    "from compiler.nbruntime import *\n"
    "from compiler.nbruntime import pow_, NAN, INF\n"
)


def cache_dir() -> Path:
    """Where compiled kernels live: ``$SYMGRAD_CACHE_DIR``, else the user cache dir."""
    env = os.environ.get("SYMGRAD_CACHE_DIR")
    if env:
        path = Path(env)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        path = Path(base) / "symgrad"
    path.mkdir(parents=True, exist_ok=True)
    return path


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

    ``source`` may end with :func:`compiler.codegen.cfunc_source` (a C entry to
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
    path = cache_dir() / f"{modname}.py"
    reused = path.exists()
    if not reused:
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, path)  # atomic: concurrent processes never see half a file
    module = sys.modules.get(modname)
    if module is None:
        spec = importlib.util.spec_from_file_location(modname, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[modname] = module
        spec.loader.exec_module(module)
    return module, path, reused
