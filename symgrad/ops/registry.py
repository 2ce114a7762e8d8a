"""The op table: one entry per primitive, everything about the op side by side.

An :class:`Op` says, for one SymPy head (``sympy.tanh``, ``sympy.Mul``, ...):

* ``partials(out, *args)``: the local partial derivatives d out / d arg_i as
  SymPy expressions in the op's inputs and output (one entry per input;
  ``None`` where no gradient flows, e.g. a Piecewise condition);
* ``tape_partials(out, *args)``: the same partials as floats, for the tape
  engine (:mod:`symgrad.tape`);
* ``impl``: the numeric forward, by name in :mod:`compiler.runtime` (or a
  Python callable for user-registered ops); the tape engine and generated
  code both use it;
* ``children`` / ``build``: how the DAG lowering reads an expression's inputs
  and how a step of the gradient program is rebuilt from named inputs
  (defaults: ``expr.args`` and ``head(*args)``).

Drivers (reverse mode, tape engine, evaluators, code generation) read this
table; nothing else in symgrad dispatches on the kind of op.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import sympy as sp

from compiler import runtime
from symgrad.errors import UnsupportedOperation

__all__ = ["Op", "register_op", "lookup_op", "get_op", "all_ops"]

Partials = Callable[..., Sequence[Optional[sp.Expr]]]
TapePartials = Callable[..., Sequence[Optional[float]]]


@dataclass(frozen=True)
class Op:
    """One primitive operation of the op table.

    Attributes
    ----------
    name : str
        Unique name (``"tanh"``); also the tape engine's method name.
    head : type
        The SymPy class this op matches (``sympy.tanh``).
    impl : str or callable
        Numeric forward: a function name in :mod:`compiler.runtime`, or a
        Python callable on floats (user ops).
    partials : callable
        ``partials(out, *args) -> tuple`` of SymPy expressions or ``None``.
    tape_partials : callable
        ``tape_partials(out, *args) -> tuple`` of floats or ``None``.
    label : str
        Short text for graph drawings (micrograd's ``_op``: ``"+"``, ``"ReLU"``).
    arity : int or None
        Number of inputs, ``None`` for variadic ops (Add, Piecewise, And).
    children, build : callable or None
        Hooks for heads whose ``args`` are not simply the inputs.
    """

    name: str
    head: type
    impl: Any
    partials: Partials
    tape_partials: TapePartials
    label: str = ""
    arity: Optional[int] = 1
    children: Optional[Callable[[sp.Basic], tuple]] = field(default=None, repr=False)
    build: Optional[Callable[..., sp.Basic]] = field(default=None, repr=False)

    @property
    def forward(self) -> Callable[..., float]:
        """The numeric forward function (floats in, float out)."""
        if callable(self.impl):
            return self.impl
        return runtime.lookup(self.impl)

    def inputs_of(self, expr: sp.Basic) -> tuple:
        """The input expressions of ``expr`` in the order ``partials`` expects."""
        return self.children(expr) if self.children is not None else expr.args

    def rebuild(self, *args: sp.Basic) -> sp.Basic:
        """The SymPy expression of this op applied to ``args``, unevaluated
        (SymPy's automatic simplification costs assumption queries and could
        merge two ops into one)."""
        if self.build is not None:
            return self.build(*args)
        try:
            return self.head(*args, evaluate=False)
        except TypeError:  # heads that take no `evaluate` keyword
            return self.head(*args)


_BY_HEAD: dict[Any, Op] = {}
_BY_NAME: dict[str, Op] = {}


def _arity_of(fn: Callable) -> Optional[int]:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return None
    return len(params) - 1  # minus `out`


def register_op(
    head: Any,
    *,
    partials: Partials,
    forward: Optional[Callable[..., float]] = None,
    tape_partials: Optional[TapePartials] = None,
    name: Optional[str] = None,
    impl: Optional[str] = None,
    label: Optional[str] = None,
    children: Optional[Callable[[sp.Basic], tuple]] = None,
    build: Optional[Callable[..., sp.Basic]] = None,
    replace: bool = False,
):
    """Add a primitive to the op table, with all of its rules in one place.

    Parameters
    ----------
    head : SymPy function class
        What the op matches: ``sympy.Function("f")`` or a ``sympy.Function``
        subclass of your own.
    partials : callable
        ``partials(out, *args)`` returns one SymPy expression per input: the
        local partial derivative of the op's output w.r.t. that input, written
        in the inputs ``args`` and/or the output ``out``. ``None`` means no
        gradient flows to that input.
    forward : callable, optional
        Numeric forward on floats (``math`` functions only, if the op is to be
        compiled with Numba later). If omitted, ``register_op`` returns a
        decorator that takes it.
    tape_partials : callable, optional
        ``tape_partials(out, *args)`` with floats; defaults to evaluating
        ``partials`` numerically (slower, but always consistent).
    name : str, optional
        Unique name; defaults to the head's name.
    impl : str, optional
        Name of a built-in function in :mod:`compiler.runtime` (built-in ops).
    label : str, optional
        Text for graph drawings; defaults to ``name``.
    children, build : callable, optional
        Hooks for heads whose ``args`` are not the inputs (see :class:`Op`).
    replace : bool
        Allow replacing an existing entry for ``head``.

    Returns
    -------
    Op
        The registered entry (or a decorator, when ``forward`` is omitted).

    Examples
    --------
    >>> import math, sympy as sp, symgrad as sg
    >>> softsign = sp.Function("softsign")
    >>> op = sg.register_op(softsign, forward=lambda a: a / (1 + abs(a)),
    ...                     partials=lambda out, a: (1 / (1 + sp.Abs(a))**2,))
    >>> x = sp.Symbol("x")
    >>> sg.derivative(softsign(x), x)
    (Abs(x) + 1)**(-2)
    >>> sg.Value(0.5).softsign().data
    0.3333333333333333
    """
    if forward is None and impl is None:
        def decorator(fn: Callable[..., float]) -> Callable[..., float]:
            register_op(head, partials=partials, forward=fn, tape_partials=tape_partials,
                        name=name, label=label, children=children, build=build,
                        replace=replace)
            return fn
        return decorator

    if not (isinstance(head, type) and issubclass(head, sp.Basic)):
        raise TypeError(
            f"register_op: head must be a SymPy function class such as "
            f"sympy.Function('myf') or a sympy.Function subclass, got {head!r}")
    if not callable(partials):
        raise TypeError("register_op: partials must be a callable partials(out, *args) -> tuple")
    op_name = name or getattr(head, "__name__", None) or str(head)
    if not replace and (head in _BY_HEAD or op_name in _BY_NAME):
        raise ValueError(
            f"register_op: an op for {op_name!r} is already registered; "
            f"pass replace=True to override it")
    arity = _arity_of(partials)
    if tape_partials is None:
        tape_partials = _numeric_partials(partials)
    op = Op(name=op_name, head=head, impl=impl if impl is not None else forward,
            partials=partials, tape_partials=tape_partials, label=label or op_name,
            arity=arity, children=children, build=build)
    if replace:
        old = _BY_HEAD.pop(head, None)
        if old is not None:
            _BY_NAME.pop(old.name, None)
    _BY_HEAD[head] = op
    _BY_NAME[op_name] = op
    _tape_hook(op)
    return op


def _numeric_partials(partials: Partials) -> TapePartials:
    """Tape partials computed by evaluating the symbolic ``partials`` rule."""

    def tape_partials(out: float, *args: float) -> tuple:
        from symgrad.evaluate import evaluate  # late: evaluate imports the table

        names = sp.symbols(f"_a0:{len(args)}")
        o = sp.Symbol("_out")
        exprs = partials(o, *names)
        env = dict(zip(names, args))
        env[o] = out
        return tuple(None if e is None else evaluate(sp.sympify(e), env) for e in exprs)

    return tape_partials


def _tape_hook(op: Op) -> None:
    # Let the tape engine grow a method for the new op (set by symgrad.tape).
    hook = globals().get("_ON_REGISTER")
    if hook is not None:
        hook(op)


def lookup_op(expr: sp.Basic) -> Optional[Op]:
    """The op table entry for ``expr``'s head, or ``None`` if it has none."""
    func = expr.func
    op = _BY_HEAD.get(func)
    if op is not None:
        return op
    for base in getattr(func, "__mro__", ())[1:]:
        op = _BY_HEAD.get(base)
        if op is not None:
            return op
    return None


def get_op(name: str) -> Op:
    """The op table entry called ``name``.

    Raises
    ------
    KeyError
        If no op has that name; the message lists the names that exist.
    """
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no op named {name!r}; known ops: {', '.join(sorted(_BY_NAME))}") from None


def all_ops() -> tuple[Op, ...]:
    """Every registered op, in registration order."""
    return tuple(_BY_NAME.values())


def unsupported(expr: sp.Basic) -> UnsupportedOperation:
    """The error for an expression whose head has no rule, with the fix."""
    func = expr.func
    fname = getattr(func, "__name__", str(func))
    nargs = len(expr.args)
    argnames = ", ".join(f"a{i}" for i in range(nargs)) or "a0"
    parts = ", ".join(f"d{fname}_da{i}" for i in range(max(nargs, 1)))
    head_src = (f"sympy.Function({fname!r})" if isinstance(func, sp.core.function.UndefinedFunction)
                else f"{getattr(func, '__module__', 'sympy')}.{fname}")
    return UnsupportedOperation(
        f"symgrad has no derivative rule for '{fname}' (in {_short(expr)}).\n"
        f"Register one, e.g.:\n"
        f"    sg.register_op({head_src},\n"
        f"                   partials=lambda out, {argnames}: ({parts},),\n"
        f"                   forward=<float function of {argnames}>)\n"
        f"or rewrite the expression with supported functions "
        f"(sg.all_ops() lists them).")


def _short(expr: sp.Basic, limit: int = 60) -> str:
    """``str(expr)`` when it is small; the head's name otherwise.

    ``str`` of a huge expression recurses and is slow, so count at most 40
    nodes iteratively first.
    """
    stack, seen = [expr], 0
    while stack and seen <= 40:
        seen += 1
        stack.extend(stack.pop().args)
    text = str(expr) if seen <= 40 else ""
    if not text or len(text) > limit:
        return f"{getattr(expr.func, '__name__', expr.func)}(...)"
    return text
