"""symgrad's activation functions: relu, sigmoid, softplus.

relu'(0) = 0 (PyTorch's convention), written ``Heaviside(x, 0)``.
"""

from __future__ import annotations

import sympy as sp

from compiler import runtime as R
from symgrad.functions import relu, sigmoid, softplus
from symgrad.ops.registry import register_op

register_op(relu, name="relu", impl="relu", label="ReLU",
            partials=lambda out, a: (sp.Heaviside(a, 0),),
            tape_partials=lambda out, a: (1.0 if a > 0.0 else 0.0,))

register_op(sigmoid, name="sigmoid", impl="sigmoid",
            partials=lambda out, a: (out * (1 - out),),
            tape_partials=lambda out, a: (out * (1.0 - out),))

register_op(softplus, name="softplus", impl="softplus",
            partials=lambda out, a: (sigmoid(a),),
            tape_partials=lambda out, a: (R.sigmoid(a),))
