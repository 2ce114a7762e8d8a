"""The reference semantics of every primitive, by name (a view of :mod:`compiler.ops`).

``runtime.tanh``, ``runtime.pow``, ... are the ``ref`` functions of the op
records: floats in, float out, never raising (IEEE/C99 values at poles,
overflow and outside the domain; the kink conventions are PyTorch's). The
tape engine, constant folding and the python back end call them; generated
Python source imports them from here (``from compiler.runtime import *``).
"""

from __future__ import annotations

from compiler import ops

NAN = float("nan")
INF = float("inf")


def lookup(name: str):
    """The reference function of op ``name``.

    Raises
    ------
    KeyError
        If there is no such op.
    """
    try:
        return ops.get(name).ref
    except KeyError:
        raise KeyError(f"compiler.runtime has no function {name!r}") from None


def namespace() -> dict:
    """``{op name: reference function}`` for every primitive, plus ``pow_``
    (the name generated source calls pow by), ``NAN`` and ``INF``."""
    table = {p.name: p.ref for p in ops.all_primitives()}
    table.update(pow_=table["pow"], NAN=NAN, INF=INF)
    return table


def _refresh() -> None:
    table = namespace()
    for gone in set(globals().get("__all__", ())) - set(table):
        globals().pop(gone, None)
    globals().update(table)
    globals()["__all__"] = sorted(table)


_refresh()
ops.on_change(_refresh)


def __getattr__(name: str):
    raise AttributeError(f"compiler.runtime has no function {name!r}")
