"""symgrad: symbolic reverse-mode differentiation of SymPy expressions.

Build expressions with SymPy, get their derivatives as readable SymPy
expressions and as a shared-subexpression program, and cross-check every
derivative against a tape engine (:class:`Value`) and finite differences.
"""

from symgrad import ops  # noqa: F401  (builds the op table)
from symgrad import datasets, nn, optim
from symgrad import tape
from symgrad.check import GradCheckReport, check_grad
from symgrad.compile import CompiledFunction, compile  # noqa: A004
from symgrad.diff import derivative, grad, gradient_program, hessian, jacobian
from symgrad.dot import to_dot
from symgrad.errors import GradientMismatch, UnsupportedOperation
from symgrad.functions import relu, sigmoid, softplus
from symgrad.matrix import column_logsumexp, expand_scalars, msum, sum_squares
from symgrad.ops import Op, all_ops, get_op, register_op, unregister_op
from symgrad.parse import parse_formula
from symgrad.program import GradientProgram
from symgrad.tape import Value

__version__ = "0.1.0"

__all__ = [
    "grad", "derivative", "jacobian", "hessian", "gradient_program", "GradientProgram",
    "Value", "tape", "check_grad", "GradCheckReport", "compile", "CompiledFunction",
    "relu", "sigmoid", "softplus", "msum", "sum_squares", "expand_scalars", "column_logsumexp",
    "register_op", "unregister_op", "get_op", "all_ops", "Op",
    "UnsupportedOperation", "GradientMismatch",
    "parse_formula", "to_dot",
    "datasets", "nn", "optim",
]
