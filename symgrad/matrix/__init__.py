"""Layer-level (matrix) graphs: lowering, the matrix chain rule, code generation."""

from symgrad.matrix.expand import evaluate_layers, expand_scalars, scalar_symbols
from symgrad.matrix.functions import column_logsumexp, msum, sum_squares

__all__ = ["column_logsumexp", "msum", "sum_squares", "expand_scalars", "evaluate_layers", "scalar_symbols"]
