"""The back end's op table: one :class:`Primitive` record per op.

A record holds everything the back end knows about an op, side by side:

* ``ref``: its reference semantics, a Python function on floats. It never
  raises (out-of-domain inputs give nan, poles and overflow give +-inf, as
  C99 Annex F says) and uses only :mod:`math` and comparisons, so Numba
  compiles it unchanged: the python back end, the tape engine and constant
  folding call it, and the numba back end jits it (:mod:`compiler.nbruntime`).
* ``emit``: its LLVM template, written once against
  :class:`compiler.emitter.FunctionEmitter` and branch-free (``select``), so
  the same function writes the scalar kernel (``double``) and the SIMD batch
  kernel (``<L x double>``). The declarations it needs are recorded by the
  emitter as the template calls them.
* ``vector``: how SIMD batches compute it, which follows from the template:
  ``"exact"`` (IEEE instructions only: bit for bit the scalar result),
  ``"libmvec"`` (calls libm functions that glibc's libmvec vectorises, within
  a few ulp; lane by lane with libm where libmvec is missing) or ``"lanes"``
  (the scalar template once per lane).

Every list of ops the back end needs (what the LLVM back end supports, what
the runtimes export, what SIMD kernels vectorise) is derived from these
records; :func:`register` adds one. User ops get theirs from
:mod:`compiler.ops.user`: from a decomposition into existing primitives (an
SSA program whose template is its parts' templates) or from a Python forward
(compiled with Numba; llvm kernels call it through a registered symbol).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

__all__ = ["Primitive", "register", "get", "names", "all_primitives", "libm_calls", "unregister", "is_builtin",
           "VECTOR_STRATEGIES", "BUILTINS"]

VECTOR_STRATEGIES = ("exact", "libmvec", "lanes")


@dataclass(frozen=True)
class Primitive:
    """One op of the SSA IR (see the module docstring).

    Attributes
    ----------
    name : str
        The op's name in the IR (``"tanh"``); an identifier.
    arity : int or None
        Number of arguments; None for variadic ops (``add``, ``piecewise``).
    ref : callable
        Reference semantics on floats (never raises; Numba-compilable).
    emit : callable
        ``emit(e, args) -> Val``: the LLVM template (see :mod:`compiler.emitter`).
    vector : str
        ``"exact"``, ``"libmvec"`` or ``"lanes"``.
    doc : str
        One line on the semantics (conventions at kinks, special values).
    libm : tuple or None
        The ``(libm function, n_args)`` pairs the template calls, when the
        record states them; None: :func:`libm_calls` finds them by emitting
        the template (records whose template has side effects, such as
        compiling a user's forward, state them instead).
    """

    name: str
    arity: Optional[int]
    ref: Callable[..., float] = field(repr=False)
    emit: Callable = field(repr=False)
    vector: str = "exact"
    doc: str = ""
    libm: Optional[tuple] = None


_TABLE: dict = {}


def register(name: str, arity: Optional[int], ref: Callable[..., float], emit: Callable,
             vector: str = "exact", doc: str = "", replace: bool = False,
             libm: Optional[tuple] = None) -> Primitive:
    """Add a primitive to the back end's op table and return its record.

    Raises
    ------
    ValueError
        For a name that is not an identifier, an unknown vector strategy, or
        a name already registered (unless ``replace=True``).
    """
    if not name.isidentifier() or name in ("input", "const"):
        raise ValueError(f"op name {name!r} must be an identifier other than 'input'/'const'")
    if vector not in VECTOR_STRATEGIES:
        raise ValueError(f"vector must be one of {VECTOR_STRATEGIES}, got {vector!r}")
    if not callable(ref) or not callable(emit):
        raise TypeError("ref and emit must be callables")
    if name in _TABLE and not replace:
        raise ValueError(f"a primitive {name!r} is already registered; pass replace=True")
    prim = Primitive(name, arity, ref, emit, vector, doc, None if libm is None else tuple(libm))
    _TABLE[name] = prim
    _changed()
    return prim


def unregister(name: str) -> None:
    """Remove primitive ``name`` (a user op; the built-in ones are needed by the
    front end). Compiled kernels that use it keep working.

    Raises
    ------
    KeyError
        If there is no such primitive.
    """
    get(name)
    del _TABLE[name]
    _changed()


def get(name: str) -> Primitive:
    """The record of op ``name``.

    Raises
    ------
    KeyError
        If there is none (the message lists the ops that exist).
    """
    try:
        return _TABLE[name]
    except KeyError:
        raise KeyError(f"the back end has no primitive {name!r}; known: "
                       f"{', '.join(sorted(_TABLE))}") from None


def names() -> frozenset:
    """The names of every registered primitive."""
    return frozenset(_TABLE)


def all_primitives() -> tuple:
    """Every record, in registration order."""
    return tuple(_TABLE.values())


def libm_calls(name: str) -> tuple:
    """``(libm function, n_args)`` pairs op ``name``'s template calls, found by
    emitting it once (variadic ops with two arguments): what SIMD kernels
    need from libmvec to vectorise it."""
    from compiler.emitter import FunctionEmitter, Module, Val

    prim = get(name)
    if prim.libm is not None:
        return prim.libm
    key = (name, prim.emit)
    if key not in _LIBM_CALLS:
        e = FunctionEmitter(Module())
        e.op(name, *[Val(f"%a{k}") for k in range(prim.arity if prim.arity is not None else 2)])
        _LIBM_CALLS[key] = e.libm_used()
    return _LIBM_CALLS[key]


_LIBM_CALLS: dict = {}
_LISTENERS: list = []


def on_change(fn: Callable[[], None]) -> None:
    """Call ``fn()`` whenever a primitive is registered (derived tables refresh)."""
    _LISTENERS.append(fn)


def _changed() -> None:
    for fn in _LISTENERS:
        fn()


from compiler.ops import arithmetic, elementary, activations, nonsmooth, logic  # noqa: E402,F401

BUILTINS: frozenset = frozenset(_TABLE)
"""The names of the primitives defined in this package (user ops come on top)."""
_BUILTIN_RECORDS = dict(_TABLE)


def is_builtin(name: str) -> bool:
    """Whether op ``name`` is this package's own record, not replaced (``input``
    and ``const`` count as built in): its template is this package's code."""
    return name in ("input", "const") or (name in _BUILTIN_RECORDS
                                          and _TABLE.get(name) is _BUILTIN_RECORDS[name])
