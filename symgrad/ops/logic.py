"""Comparisons and Boolean logic, as they appear in Piecewise conditions.

They are ops like any other so the DAG, the tape engine and code generation
handle conditions uniformly; their values are 1.0/0.0 and no gradient flows
through them.
"""

from __future__ import annotations

import sympy as sp

from symgrad.ops.registry import register_op


def _none(out, *args):
    return (None,) * len(args)


for _head, _name, _impl, _label in (
    (sp.StrictLessThan, "lt", "lt", "<"),
    (sp.LessThan, "le", "le", "<="),
    (sp.StrictGreaterThan, "gt", "gt", ">"),
    (sp.GreaterThan, "ge", "ge", ">="),
    (sp.Equality, "eq", "eq", "=="),
    (sp.Unequality, "ne", "ne", "!="),
    (sp.And, "and", "and_", "and"),
    (sp.Or, "or", "or_", "or"),
    (sp.Not, "not", "not_", "not"),
):
    register_op(_head, name=_name, impl=_impl, label=_label,
                partials=_none, tape_partials=_none)
