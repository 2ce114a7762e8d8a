"""The op table: one entry per primitive, everything about the op side by side.

An :class:`Op` says, for one SymPy head (``sympy.tanh``, ``sympy.Mul``, ...):

* ``partials(out, *args)``: the local partial derivatives d out / d arg_i as
  SymPy expressions in the op's inputs and output (one entry per input;
  ``None`` where no gradient flows, e.g. a Piecewise condition);
* ``tape_partials(out, *args)``: the same partials as floats, for the tape
  engine (:mod:`symgrad.tape`);
* ``impl``: the name of the op's back-end record (:mod:`compiler.ops`):
  its reference semantics (:mod:`compiler.runtime`) and its LLVM template.
  Built-in ops name a built-in record; a user op gets one built from its
  decomposition or its Python forward (:mod:`symgrad.ops.user`), so every
  back end compiles it;
* ``children`` / ``build``: how the DAG lowering reads an expression's inputs
  and how a step of the gradient program is rebuilt from named inputs
  (defaults: ``expr.args`` and ``head(*args)``).

Drivers (reverse mode, tape engine, evaluators, code generation) read this
table; nothing else in symgrad dispatches on the kind of op.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import sympy as sp

from compiler import runtime
from compiler.ops.user import positional_arity
from symgrad.errors import UnsupportedOperation

__all__ = ["Op", "register_op", "unregister_op", "lookup_op", "get_op", "all_ops"]

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
    impl : str
        The name of the op's back-end record (:func:`compiler.ops.get`).
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
    user_forward : callable or None
        The Python forward given to :func:`register_op`, if any: the tape
        engine calls it (compiled code calls the record ``impl``).
    decompose : callable or None
        The decomposition given to :func:`register_op`, if any (the record
        ``impl`` was built from it).
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
    user_forward: Optional[Callable[..., float]] = field(default=None, repr=False)
    decompose: Optional[Callable[..., sp.Expr]] = field(default=None, repr=False)

    @property
    def forward(self) -> Callable[..., float]:
        """The numeric forward function (floats in, float out): the user's own
        forward where one was given, else the reference of record ``impl``."""
        if self.user_forward is not None:
            return self.user_forward
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
    n = positional_arity(fn)
    return None if n is None else n - 1  # minus `out`


def register_op(
    head: Any,
    *,
    partials: Optional[Partials] = None,
    forward: Optional[Callable[..., float]] = None,
    decompose: Optional[Callable[..., sp.Expr]] = None,
    tape_partials: Optional[TapePartials] = None,
    name: Optional[str] = None,
    impl: Optional[str] = None,
    label: Optional[str] = None,
    children: Optional[Callable[[sp.Basic], tuple]] = None,
    build: Optional[Callable[..., sp.Basic]] = None,
    replace: bool = False,
):
    """Add a primitive to the op table, with all of its rules in one place.

    Say how the op is computed in one of three ways; every back end
    (``python``, ``numba``, ``llvm``; single points, batches, SIMD, layer-level
    models) then compiles it, from this one call:

    * ``decompose=``: a decomposition into ops symgrad knows. It is lowered
      once to a small program whose native code is its parts' code (SIMD
      where the parts are), and it gives the forward and, when ``partials``
      is omitted, the partials: reverse mode on the decomposition as written
      (not simplified; pass ``partials`` for a better-conditioned form);
    * ``forward=``: a Python function on floats that Numba can compile
      (arithmetic, comparisons, :mod:`math`; plain functions of its own
      module that it calls are compiled with it). The python back end and
      the tape engine call it, numba kernels compile it inline, llvm kernels
      call it as a native function (one call per point, also in SIMD
      batches). A forward Numba cannot compile raises
      :class:`compiler.ops.user.NativeForwardError` (naming the op and the
      fix) when a native kernel is first compiled with it;
    * ``impl=``: the name of an existing back-end record (built-in ops).

    Parameters
    ----------
    head : SymPy function class
        What the op matches: ``sympy.Function("f")`` or a ``sympy.Function``
        subclass of your own.
    partials : callable, optional
        ``partials(out, *args)`` returns one SymPy expression per input: the
        local partial derivative of the op's output w.r.t. that input, written
        in the inputs ``args`` and/or the output ``out``. ``None`` means no
        gradient flows to that input. Required unless ``decompose`` is given.
    forward : callable, optional
        Numeric forward on floats, compiled with Numba for the native back
        ends (``error_model="numpy"``: division by zero gives inf/nan). If
        ``forward``, ``decompose`` and ``impl`` are all omitted,
        ``register_op`` returns a decorator that takes the forward.
    decompose : callable, optional
        ``decompose(*args)`` returns the op as a SymPy expression of its
        arguments in ops that are already registered, e.g.
        ``lambda a: a / (1 + sympy.Abs(a))``. Not together with ``forward``
        or ``impl``.
    tape_partials : callable, optional
        ``tape_partials(out, *args)`` with floats; defaults to evaluating
        ``partials`` numerically (slower, but always consistent).
    name : str, optional
        Unique name; defaults to the head's name.
    impl : str, optional
        Name of a record of the back-end op table (:func:`compiler.ops.names`).
    label : str, optional
        Text for graph drawings; defaults to ``name``.
    children, build : callable, optional
        Hooks for heads whose ``args`` are not the inputs (see :class:`Op`).
    replace : bool
        Allow replacing an existing entry for ``head``.

    Returns
    -------
    Op
        The registered entry (or a decorator, when no way to compute the op
        is given).

    Raises
    ------
    ValueError
        For an ``impl`` that names no record (the message lists the names),
        an op already registered, or argument counts that disagree.
    TypeError
        For a head that is not a SymPy function class, or ``forward`` given
        without ``partials``.

    Examples
    --------
    >>> import sympy as sp, symgrad as sg
    >>> softsign = sp.Function("softsign_doc")
    >>> op = sg.register_op(softsign, decompose=lambda a: a / (1 + sp.Abs(a)))
    >>> x = sp.Symbol("x")
    >>> f = sg.compile(softsign(x) * x, [x])
    >>> f(3.0), float(f.grad(3.0)[0])             # 9/4 and d/dx x**2/(1+x) = 15/16
    (2.25, 0.9375)
    >>> sg.Value(0.5).softsign_doc().data
    0.3333333333333333
    >>> cube = sp.Function("cube_doc")
    >>> op = sg.register_op(cube, forward=lambda a: a * a * a,
    ...                     partials=lambda out, a: (3 * a**2,))
    >>> sg.derivative(cube(x), x)
    3*x**2
    """
    if forward is None and impl is None and decompose is None:
        if partials is None:
            raise TypeError("register_op: say how to compute the op: decompose=<SymPy expression "
                            "of its arguments>, or forward=<float function> with partials=...")

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
    op_name = name or getattr(head, "__name__", None) or str(head)
    if decompose is not None and (forward is not None or impl is not None):
        raise ValueError(
            f"register_op({op_name!r}): pass decompose= alone (it gives the forward), "
            f"or forward=/impl= without decompose=")
    if decompose is not None and not callable(decompose):
        raise TypeError(f"register_op({op_name!r}): decompose must be a callable "
                        f"decompose(*args) -> SymPy expression")
    if partials is None and decompose is None:
        raise TypeError(
            f"register_op({op_name!r}): partials=lambda out, *args: (...) is required with "
            f"forward=/impl= (or pass decompose= and the partials are derived from it)")
    if partials is not None and not callable(partials):
        raise TypeError("register_op: partials must be a callable partials(out, *args) -> tuple")
    if not replace and (head in _BY_HEAD or op_name in _BY_NAME):
        raise ValueError(
            f"register_op: an op for {op_name!r} is already registered; "
            f"pass replace=True to override it")
    arity = _op_arity(op_name, partials, decompose, forward, impl)

    user_forward = None
    if impl is not None:
        _check_impl(op_name, impl, arity)
        user_forward = forward
    elif decompose is not None:
        from compiler.ops.user import register_decomposition
        from symgrad.ops.user import decomposition_partials, decomposition_program

        prim = register_decomposition(op_name, decomposition_program(op_name, decompose, arity))
        impl = prim.name
        if partials is None:
            partials = decomposition_partials(op_name, decompose, arity)
    else:
        from compiler.ops.user import register_forward

        if arity is None:
            raise ValueError(f"register_op({op_name!r}): a forward= op takes a fixed number of "
                             f"arguments; write partials as lambda out, a, b: (...)")
        impl = register_forward(op_name, forward, arity).name
        user_forward = forward

    if tape_partials is None:
        tape_partials = _numeric_partials(partials)
    op = Op(name=op_name, head=head, impl=impl, partials=partials,
            tape_partials=tape_partials, label=label or op_name, arity=arity,
            children=children, build=build, user_forward=user_forward, decompose=decompose)
    if replace:
        old = _BY_HEAD.pop(head, None)
        if old is not None:
            _BY_NAME.pop(old.name, None)
    _BY_HEAD[head] = op
    _BY_NAME[op_name] = op
    _tape_hook(op)
    return op


def _op_arity(op_name: str, partials, decompose, forward, impl) -> Optional[int]:
    """The number of inputs, from ``partials`` (after ``out``), ``decompose``
    or a forward's own signature; those that say must agree."""
    if decompose is not None and positional_arity(decompose) is None:
        raise ValueError(f"register_op({op_name!r}): decompose must take the op's arguments "
                         f"one by one (lambda a, b: ...), not *args")
    counts = []
    if partials is not None:
        counts.append(("partials (after `out`)", _arity_of(partials)))
    if decompose is not None:
        counts.append(("decompose", positional_arity(decompose)))
    if forward is not None and impl is None:
        counts.append(("forward", positional_arity(forward)))
    known = [(who, n) for who, n in counts if n is not None]
    if len({n for _, n in known}) > 1:
        text = ", ".join(f"{who} takes {n}" for who, n in known)
        raise ValueError(f"register_op({op_name!r}): argument counts disagree: {text}")
    return known[0][1] if known else None


def _check_impl(op_name: str, impl: str, arity: Optional[int]) -> None:
    from compiler import ops as backend_ops

    if not isinstance(impl, str) or impl not in backend_ops.names():
        raise ValueError(
            f"register_op({op_name!r}): impl={impl!r} names no back-end primitive; known: "
            f"{', '.join(sorted(backend_ops.names()))}. For a new op pass decompose=<SymPy "
            f"expression of its arguments> or forward=<float function> instead of impl=")
    prim_arity = backend_ops.get(impl).arity
    if arity is not None and prim_arity is not None and prim_arity != arity:
        raise ValueError(f"register_op({op_name!r}): impl={impl!r} takes {prim_arity} "
                         f"argument(s), the op's partials take {arity}")


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


def unregister_op(name: str) -> None:
    """Remove op ``name`` from the op table (and its tape-engine method), e.g.
    to register it again differently in a notebook. Already compiled
    functions keep working; nothing happens if there is no such op.

    Examples
    --------
    >>> import sympy as sp, symgrad as sg
    >>> f = sp.Function("twice_doc")
    >>> _ = sg.register_op(f, decompose=lambda a: 2 * a)
    >>> sg.unregister_op("twice_doc")
    >>> "twice_doc" in [op.name for op in sg.all_ops()]
    False
    """
    op = _BY_NAME.pop(name, None)
    if op is not None:
        _BY_HEAD.pop(op.head, None)
    from symgrad.tape import Value

    if name in Value.__dict__:
        delattr(Value, name)


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
        f"Register one, e.g. as a decomposition into supported functions (compiled on "
        f"every back end, partials derived):\n"
        f"    sg.register_op({head_src},\n"
        f"                   decompose=lambda {argnames}: <SymPy expression of {argnames}>)\n"
        f"or with a numeric forward (Numba-compilable) and its partials:\n"
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
