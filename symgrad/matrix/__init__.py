"""Layer-level (matrix) graphs: lowering, the matrix chain rule, code generation."""

from symgrad.matrix.functions import msum, sum_squares

__all__ = ["msum", "sum_squares"]
