"""Activations of models by name, read from the op table.

``activation=`` in :mod:`symgrad.nn` (``Neuron``, ``Layer``, ``MLP``) and the
layer-level graphs of :mod:`symgrad.layers` accept ``"linear"`` and any
unary op of the op table (:func:`symgrad.register_op`), by name or by its
SymPy head: ``"relu"``, ``"tanh"``, ``"sigmoid"``, and a user op such as
``softsign`` once it is registered. Nothing here lists ops: the op table
is the list, so one ``register_op`` call is all a new activation needs.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import sympy as sp

from symgrad.ops.registry import Op, all_ops

__all__ = ["LINEAR", "activations", "check_activation", "activation_op", "activate",
           "activation_label", "numpy_activation"]

LINEAR = "linear"


def _is_activation(op: Op) -> bool:
    """A unary op producing a number, whose input is its head's argument."""
    return (op.arity == 1 and op.children is None and op.build is None
            and isinstance(op.head, type) and issubclass(op.head, sp.Expr))


def activations() -> tuple:
    """Every name ``activation=`` accepts: ``"linear"`` and the unary ops of
    the op table, in registration order.

    Examples
    --------
    >>> from symgrad.activation import activations
    >>> {"linear", "relu", "tanh", "sigmoid"} <= set(activations())
    True
    """
    return (LINEAR, *[op.name for op in all_ops() if _is_activation(op)])


def check_activation(activation: Any) -> str:
    """The name of ``activation`` (a name, or a registered SymPy head such as
    ``sympy.tanh``); ``ValueError`` naming the choices for anything else.

    Examples
    --------
    >>> import sympy as sp
    >>> from symgrad.activation import check_activation
    >>> check_activation("tanh"), check_activation(sp.tanh), check_activation("linear")
    ('tanh', 'tanh', 'linear')
    """
    if isinstance(activation, str):
        if activation == LINEAR:
            return LINEAR
        for op in all_ops():
            if op.name == activation and _is_activation(op):
                return op.name
    elif isinstance(activation, type):
        for op in all_ops():
            if op.head is activation and _is_activation(op):
                return op.name
    raise ValueError(
        f"activation must be one of {activations()} ('linear' or a unary op of the op "
        f"table, by name or SymPy head), got {activation!r}; add your own with "
        f"sg.register_op(sympy.Function('name'), decompose=lambda a: <SymPy expression of a>)")


def activation_op(name: str) -> Optional[Op]:
    """The op of activation ``name`` (None for ``"linear"``)."""
    name = check_activation(name)
    if name == LINEAR:
        return None
    return next(op for op in all_ops() if op.name == name)


def activate(name: str, z: sp.Expr) -> sp.Expr:
    """``name(z)`` as a SymPy expression, unevaluated (no assumption queries on
    a possibly large ``z``); ``z`` itself for ``"linear"``."""
    op = activation_op(name)
    return z if op is None else op.rebuild(z)


def activation_label(name: str) -> str:
    """The label micrograd-style reprs use: ``"ReLU"``, ``"Tanh"``, ``"Linear"``."""
    op = activation_op(name)
    label = "Linear" if op is None else op.label
    return label[:1].upper() + label[1:]


def numpy_activation(name: str, z: np.ndarray) -> np.ndarray:
    """The activation on a NumPy array, as a reference: NumPy's own formulas
    for the built-in ``relu``, ``tanh`` and ``sigmoid``, the op's forward
    element by element for any other op."""
    name = check_activation(name)
    if name == LINEAR:
        return z
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        e = np.exp(-np.abs(z))
        return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    forward = activation_op(name).forward
    return np.vectorize(lambda v: float(forward(float(v))), otypes=[np.float64])(z)
