"""The dynamic tape engine: micrograd's ``Value``, grown up.

``Value`` records every operation as it runs (the tape) and ``backward()``
walks it in reverse, accumulating ``grad`` by the chain rule: the same
algorithm as micrograd, with the local derivatives of every op taken from
the op table (``Op.tape_partials``) and the forward values from the same
numeric functions the code generator uses. It is deliberately simple and
obviously right: the independent witness for the symbolic derivatives.

Differences from micrograd, all compatible: ``backward`` is iterative (a
100,000-deep chain works), exponents may be ``Value`` too, and every op of
the table is a method (``v.tanh()``, ``v.log()``, ``v.sigmoid()``, ...).
:func:`replay` evaluates any supported SymPy expression on the tape.
"""

from __future__ import annotations

from typing import Mapping, Union

import sympy as sp

from symgrad.graph import OP, SYMBOL, constant_value, lower
from symgrad.ops import registry
from symgrad.ops.registry import Op, all_ops, get_op

__all__ = ["Value", "apply", "replay"]

Number = Union[int, float]


class Value:
    """A scalar that remembers how it was computed, for reverse-mode gradients.

    A drop-in for micrograd's ``Value``: ``data``, ``grad``, ``backward()``,
    ``+ - * / **`` with numbers on either side, ``relu``, ``tanh``, ``exp``,
    plus every op of symgrad's op table as a method.

    Examples
    --------
    >>> import symgrad as sg
    >>> v = sg.Value(-4.0)
    >>> z = 2 * v + 2 + v
    >>> q = z.relu() + z * v
    >>> out = (z * z).relu() + q + q * v
    >>> out.backward()
    >>> out.data, v.grad
    (-20.0, 46.0)
    """

    __slots__ = ("data", "grad", "_prev", "_op", "_rule", "_inputs", "label", "__weakref__")

    def __init__(self, data: Number, _children: tuple = (), _op: str = "", label: str = "") -> None:
        if isinstance(data, Value):
            raise TypeError("Value(data): data is already a Value; use it directly")
        try:
            self.data = float(data)
        except (TypeError, ValueError):
            raise TypeError(f"Value(data): data must be a real number, got {data!r}") from None
        self.grad = 0.0
        self._prev = tuple(_children)
        self._op = _op
        self._rule: Op | None = None
        self._inputs: tuple = ()
        self.label = label

    # -- the chain rule -----------------------------------------------------
    def _backward(self) -> None:
        """Push this node's ``grad`` to its inputs (one step of backprop)."""
        rule = self._rule
        if rule is None:
            return
        inputs = self._inputs
        datas = [a.data if isinstance(a, Value) else a for a in inputs]
        parts = rule.tape_partials(self.data, *datas)
        if len(parts) != len(inputs):  # zip() below would silently drop gradients
            raise ValueError(
                f"the tape_partials rule of op {rule.name!r} returned {len(parts)} entries "
                f"for {len(inputs)} inputs; it must return one per input")
        g = self.grad
        for a, p in zip(inputs, parts):
            if p is not None and isinstance(a, Value):
                a.grad += p * g

    def backward(self) -> None:
        """Set ``grad`` of every Value this one depends on (d self / d v).

        Like micrograd, gradients accumulate across calls; reset ``grad``
        to 0 yourself between independent backward passes.
        """
        topo: list = []
        visited: set = set()
        stack = [(self, False)]
        while stack:
            v, expanded = stack.pop()
            if expanded:
                topo.append(v)
                continue
            if id(v) in visited:
                continue
            visited.add(id(v))
            stack.append((v, True))
            for child in reversed(v._prev):
                if id(child) not in visited:
                    stack.append((child, False))
        self.grad = 1.0
        for v in reversed(topo):
            v._backward()

    # -- micrograd's operators ------------------------------------------------
    def __add__(self, other) -> "Value":
        return apply(_ADD, self, _wrap(other))

    def __radd__(self, other) -> "Value":
        return apply(_ADD, _wrap(other), self)

    def __mul__(self, other) -> "Value":
        return apply(_MUL, self, _wrap(other))

    def __rmul__(self, other) -> "Value":
        return apply(_MUL, _wrap(other), self)

    def __pow__(self, other) -> "Value":
        if not isinstance(other, (Value, int, float)) or isinstance(other, bool):
            raise TypeError(f"Value ** {type(other).__name__}: the exponent must be a number or a Value")
        out = apply(_POW, self, other if isinstance(other, Value) else float(other))
        if not isinstance(other, Value):
            out._op = f"**{other}"
        return out

    def __rpow__(self, other) -> "Value":
        return apply(_POW, _wrap(other), self)

    def __neg__(self) -> "Value":
        return self * -1

    def __sub__(self, other) -> "Value":
        return self + (-other)

    def __rsub__(self, other) -> "Value":
        return other + (-self)

    def __truediv__(self, other) -> "Value":
        return self * other**-1

    def __rtruediv__(self, other) -> "Value":
        return other * self**-1

    def __abs__(self) -> "Value":
        return apply(get_op("abs"), self)

    def __repr__(self) -> str:
        return f"Value(data={self.data}, grad={self.grad})"


def _wrap(x) -> Value:
    if isinstance(x, Value):
        return x
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        try:
            return Value(float(x))
        except (TypeError, ValueError):
            raise TypeError(f"cannot combine a Value with {type(x).__name__} {x!r}") from None
    return Value(x)


def apply(op: Union[Op, str], *args) -> Value:
    """Apply an op of the table (by name or entry) to Values and numbers.

    Examples
    --------
    >>> import symgrad as sg
    >>> a, b = sg.Value(3.0), sg.Value(2.0)
    >>> m = sg.tape.apply("max", a, b)
    >>> m.backward(); (m.data, a.grad, b.grad)
    (3.0, 1.0, 0.0)
    """
    rule = get_op(op) if isinstance(op, str) else op
    if rule.arity is not None and len(args) != rule.arity:
        raise TypeError(f"op {rule.name!r} takes {rule.arity} inputs, got {len(args)}")
    datas = [a.data if isinstance(a, Value) else float(a) for a in args]
    out = Value(rule.forward(*datas), tuple(a for a in args if isinstance(a, Value)), rule.label)
    out._rule = rule
    out._inputs = tuple(args)
    return out


def _method(rule: Op):
    if rule.arity == 1:
        def method(self: Value) -> Value:
            return apply(rule, self)
    else:
        def method(self: Value, *others) -> Value:
            return apply(rule, self, *[_wrap(o) for o in others])
    method.__name__ = rule.name
    method.__doc__ = f"``{rule.name}`` of this Value (op table entry {rule.name!r})."
    return method


def _install(rule: Op) -> None:
    if rule.name.isidentifier() and not rule.name.startswith("_") and rule.name not in _RESERVED:
        setattr(Value, rule.name, _method(rule))


_RESERVED = {"data", "grad", "backward", "label", "add", "mul", "pow"}
_ADD, _MUL, _POW = get_op("add"), get_op("mul"), get_op("pow")
for _rule in all_ops():
    _install(_rule)
registry._ON_REGISTER = _install  # ops registered later get a method too


def replay(expr: sp.Basic, values: Mapping) -> tuple[float, dict]:
    """Evaluate a SymPy expression on the tape engine and backpropagate.

    Parameters
    ----------
    expr : sympy.Expr
        Scalar expression built from op-table functions.
    values : dict
        ``{symbol: number}`` for every free symbol of ``expr``.

    Returns
    -------
    value : float
    grads : dict
        ``{symbol: d expr / d symbol}`` for every symbol in ``values``.

    Examples
    --------
    >>> import sympy as sp, symgrad as sg
    >>> x, y = sp.symbols("x y")
    >>> value, grads = sg.tape.replay(x * sp.tanh(y), {x: 2.0, y: 0.0})
    >>> value, grads[x], grads[y]
    (0.0, 0.0, 2.0)
    """
    from symgrad.evaluate import as_point

    graph = lower(expr)
    point = as_point(values, graph.symbols)
    vals: list = [None] * len(graph.nodes)
    leaves = {}
    for node in graph.nodes:
        if node.kind == OP:
            vals[node.index] = apply(node.op, *[vals[c] for c in node.args])
        elif node.kind == SYMBOL:
            v = Value(point[node.expr], label=str(node.expr))
            leaves[node.expr] = v
            vals[node.index] = v
        else:
            vals[node.index] = constant_value(node.expr)
    out = vals[graph.outputs[0]]
    if not isinstance(out, Value):  # a constant expression
        return float(out), {s: 0.0 for s in point}
    out.backward()
    return out.data, {s: (leaves[s].grad if s in leaves else 0.0) for s in point}
