"""The op table (see :mod:`symgrad.ops.registry`) and the built-in ops.

Where to find an op's rules, by file name:

* ``arithmetic``  Add, Mul, Pow (sqrt, reciprocal, x**y)
* ``elementary``  exp, log, log1p, expm1, trig, hyperbolic, inverses, erf
* ``activations`` relu, sigmoid, softplus
* ``nonsmooth``   Abs, sign, Heaviside, floor, ceiling, Max, Min, Piecewise
* ``logic``       comparisons, And, Or, Not (Piecewise conditions)
* ``reductions``  logsumexp (n-ary, stable)
"""

from symgrad.ops.registry import Op, all_ops, get_op, lookup_op, register_op, unregister_op
from symgrad.ops import activations, arithmetic, elementary, logic, nonsmooth, reductions  # noqa: F401  (register)

__all__ = ["Op", "register_op", "unregister_op", "lookup_op", "get_op", "all_ops"]
