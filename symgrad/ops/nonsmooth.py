"""Functions with kinks, jumps or branches: Abs, sign, Heaviside, floor,
ceiling, Max, Min and Piecewise.

One convention everywhere (symbolic rules, tape engine, compiled code), the
one PyTorch uses: |x|'(0) = sign(0) = 0; step functions (sign, Heaviside,
floor, ceiling) have derivative 0; at a tie Max and Min split the gradient
evenly between the two inputs. Piecewise is differentiated branch-wise: the
gradient flows into the selected branch only, never into the conditions.
"""

from __future__ import annotations

import sympy as sp

from symgrad.ops.registry import register_op

S = sp.S
_HALF = S.Half


def _zero(out, a):
    return (S.Zero,)


def _zero_tape(out, a):
    return (0.0,)


register_op(sp.Abs, name="abs", impl="abs_", label="abs",
            partials=lambda out, a: (sp.sign(a),),
            tape_partials=lambda out, a: (1.0 if a > 0.0 else (-1.0 if a < 0.0 else 0.0),))

register_op(sp.sign, name="sign", impl="sign", partials=_zero, tape_partials=_zero_tape)

register_op(sp.floor, name="floor", impl="floor", partials=_zero, tape_partials=_zero_tape)

register_op(sp.ceiling, name="ceiling", impl="ceil", partials=_zero, tape_partials=_zero_tape)


def _heaviside_children(expr):
    # Heaviside(x) means Heaviside(x, 1/2); make the value at 0 explicit.
    args = expr.args
    return args if len(args) == 2 else (args[0], _HALF)


register_op(sp.Heaviside, name="heaviside", impl="heaviside", label="H",
            partials=lambda out, a, h0: (S.Zero, None),
            tape_partials=lambda out, a, h0: (0.0, None),
            children=_heaviside_children)


def _tie_split(a, b):
    return 1.0 if a > b else (0.5 if a == b else 0.0)


def _binary(head):
    def children(expr):
        args = expr.args
        if len(args) > 2:
            return (head(*args[:-1], evaluate=False), args[-1])   # no re-evaluation: linear
        return args
    return children


register_op(sp.Max, name="max", impl="max2", label="max",
            partials=lambda out, a, b: (sp.Heaviside(a - b, _HALF), sp.Heaviside(b - a, _HALF)),
            tape_partials=lambda out, a, b: (_tie_split(a, b), _tie_split(b, a)),
            children=_binary(sp.Max))

register_op(sp.Min, name="min", impl="min2", label="min",
            partials=lambda out, a, b: (sp.Heaviside(b - a, _HALF), sp.Heaviside(a - b, _HALF)),
            tape_partials=lambda out, a, b: (_tie_split(b, a), _tie_split(a, b)),
            children=_binary(sp.Min))


def _piecewise_children(expr):
    # Piecewise((e1, c1), (e2, c2), ...) -> inputs (e1, c1, e2, c2, ...)
    flat = []
    for pair in expr.args:
        flat.extend(pair.args)
    return tuple(flat)


def _piecewise_build(*args):
    return sp.Piecewise(*zip(args[0::2], args[1::2]), evaluate=False)


def _piecewise_partials(out, *args):
    conds = args[1::2]
    result = []
    for i in range(len(args)):
        if i % 2:
            result.append(None)  # conditions are not differentiated
        else:
            k = i // 2
            result.append(sp.Piecewise(*[(S.One if j == k else S.Zero, c)
                                         for j, c in enumerate(conds)]))
    return tuple(result)


def _piecewise_tape(out, *args):
    result = [None] * len(args)
    taken = False
    for i in range(0, len(args) - 1, 2):
        if not taken and args[i + 1] != 0.0:
            result[i] = 1.0
            taken = True
        else:
            result[i] = 0.0
    return tuple(result)


register_op(sp.Piecewise, name="piecewise", impl="piecewise",
            partials=_piecewise_partials, tape_partials=_piecewise_tape,
            children=_piecewise_children, build=_piecewise_build)
