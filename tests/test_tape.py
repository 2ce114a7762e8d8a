"""Tests of the tape engine ``symgrad.Value`` / ``symgrad.tape``.

Reference numbers are hard-coded. Each was computed once, independently of
symgrad, with SymPy: the same expression was built from ``sp.Rational`` /
``sp.Integer`` inputs (``Max(t, 0)`` for relu, ``1/(1+exp(-t))`` for sigmoid,
``log(1+exp(t))`` for softplus), differentiated with ``sympy.diff`` and
evaluated exactly (rational results) or with ``sp.N(..., 25)``.
"""

from __future__ import annotations

import math

import pytest
import sympy as sp

import symgrad as sg
from symgrad import Value
from symgrad.tape import apply, replay


def rel(x, tol):
    return pytest.approx(x, rel=tol, abs=0.0)


# --- 1, 2: micrograd's test_engine.py ----------------------------------------


def test_micrograd_sanity_check():
    # SymPy, exact, v = Integer(-4), relu = Max(t, 0): y = -20, dy/dv = 46.
    # These are the numbers micrograd's test_engine.py checks against PyTorch.
    v = Value(-4.0)
    z = 2 * v + 2 + v
    q = z.relu() + z * v
    h = (z * z).relu()
    y = h + q + q * v
    y.backward()
    assert y.data == -20.0
    assert v.grad == 46.0


def test_micrograd_more_ops():
    # SymPy, exact, a = Integer(-4), b = Integer(2), relu = Max(t, 0):
    #   g = 2421/98, dg/da = 47620/343, dg/db = 221433/343.
    # The same numbers micrograd's test_engine.py checks against PyTorch.
    a = Value(-4.0)
    b = Value(2.0)
    c = a + b
    d = a * b + b**3
    c += c + 1
    c += 1 + c + (-a)
    d += d * 2 + (b + a).relu()
    d += 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g += 10.0 / f
    g.backward()
    assert g.data == rel(2421 / 98, 1e-9)
    assert a.grad == rel(47620 / 343, 1e-9)
    assert b.grad == rel(221433 / 343, 1e-9)
    assert (g.data, a.grad, b.grad) == (  # the floats themselves, for the record
        rel(24.70408163265306, 1e-9), rel(138.8338192419825, 1e-9), rel(645.5772594752186, 1e-9))


# --- 3: a scripted expression over many ops -----------------------------------


def test_scripted_expression_all_grads():
    # SymPy with real symbols at x = 3/4, y = -5/4, z = 1/2 (exact Rationals),
    # sigmoid = 1/(1+exp(-t)), softplus = log(1+exp(t)), abs = Abs; sympy.diff
    # then sp.N(..., 25):
    #   out = 9.236453326632376077641753
    #   d/dx = 2.766862301770208802915989
    #   d/dy = 1.308012654061305693959030
    #   d/dz = 0.4220055008950345957467826
    x, y, z = Value(0.75), Value(-1.25), Value(0.5)
    A = x.tanh() * 3 + 1                  # tanh; number right of * and +
    B = 2 - y.exp() / 4                   # number left of -, right of /
    C = (x * x + 1).log() - 0.5           # log; number right of -
    D = y.sigmoid() + z.softplus()
    E = (x + z).sin() * abs(y)            # sin, abs()
    F = (x + 1) ** z                      # Value ** Value
    H = 2 ** (x - z)                      # number ** Value
    K = 1.5 / (C + 2)                     # number left of /
    M = 4 * D                             # number left of *
    N = 3 + E                             # number left of +
    O = 5 - x * y                         # number left of -
    out = A * B + C / D - E * F + H * K + M - N / 7 + x / y + O * 0.125
    out.backward()
    assert out.data == rel(9.236453326632376077641753, 1e-12)
    assert x.grad == rel(2.766862301770208802915989, 1e-12)
    assert y.grad == rel(1.308012654061305693959030, 1e-12)
    assert z.grad == rel(0.4220055008950345957467826, 1e-12)


# --- 4: the micrograd lecture's neuron ----------------------------------------


def test_lecture_neuron():
    # Known values from the micrograd lecture (b is atanh(1/sqrt(2)) + 6, so
    # o = 1/sqrt(2) and do/dn = 1 - o**2 = 1/2).
    x1, x2 = Value(2.0, label="x1"), Value(0.0, label="x2")
    w1, w2 = Value(-3.0, label="w1"), Value(1.0, label="w2")
    b = Value(6.8813735870195432, label="b")
    n = x1 * w1 + x2 * w2 + b
    o = n.tanh()
    o.backward()
    assert o.data == pytest.approx(0.7071, abs=1e-4)
    assert o.data == pytest.approx(1 / math.sqrt(2), rel=1e-6)
    assert n.grad == pytest.approx(0.5, rel=1e-6)
    assert x1.grad == pytest.approx(-1.5, rel=1e-6)
    assert w1.grad == pytest.approx(1.0, rel=1e-6)
    assert x2.grad == pytest.approx(0.5, rel=1e-6)
    assert w2.grad == pytest.approx(0.0, abs=1e-12)
    assert b.grad == pytest.approx(0.5, rel=1e-6)


# --- 5: deep chains -----------------------------------------------------------


def test_100000_deep_chain_backward_is_iterative():
    # v_{k+1} = v_k * 1.00001 + 0.0  =>  v_N = x * 1.00001**N, d v_N / dx = 1.00001**N.
    N = 100_000
    x = Value(0.5)
    v = x
    for _ in range(N):
        v = v * 1.00001 + 0.0
    v.backward()  # must not raise RecursionError
    closed = 1.00001**N
    assert closed == pytest.approx(math.e, rel=1e-5)  # sanity of the closed form itself
    assert x.grad == rel(closed, 1e-9)
    assert v.data == rel(0.5 * closed, 1e-9)


def test_deep_tanh_add_chain():
    # v_{k+1} = v_k + 0.0001 * tanh(v_k): the chain rule gives
    # d v_N / dx = prod_k (1 + 0.0001 * (1 - tanh(v_k)**2)), computed here
    # independently with math.tanh in a plain loop.
    N = 50_000
    x = Value(0.3)
    v = x
    vals = [0.3]
    for _ in range(N):
        v = v + 0.0001 * v.tanh()
        vals.append(vals[-1] + 0.0001 * math.tanh(vals[-1]))
    v.backward()
    expected = 1.0
    for t in vals[:-1]:
        expected *= 1.0 + 0.0001 * (1.0 - math.tanh(t) ** 2)
    assert v.data == rel(vals[-1], 1e-12)
    assert 1.1 < expected < 10.0  # a gradient far from 0 and 1, so the check has teeth
    assert x.grad == rel(expected, 1e-9)


# --- 6: fan-out and accumulation ----------------------------------------------


def test_fan_out_square():
    x = Value(3.0)
    y = x * x
    y.backward()
    assert y.data == 9.0
    assert x.grad == 6.0


def test_fan_out_thousand_uses():
    x = Value(0.7)
    s = x
    for _ in range(999):
        s = s + x
    s.backward()
    assert s.data == pytest.approx(700.0, rel=1e-12)
    assert x.grad == 1000.0


def test_fan_out_thousand_uses_in_one_variadic_add():
    x = Value(0.7)
    s = apply("add", *([x] * 1000))
    s.backward()
    assert x.grad == 1000.0


def test_backward_twice_accumulates_like_micrograd():
    x = Value(3.0)
    y = x * x
    y.backward()
    y.backward()
    assert x.grad == 12.0
    assert y.grad == 1.0  # micrograd sets the root's grad to 1 each call

    # micrograd does not zero intermediate grads either: with t = 2x, y = 3t,
    # pass 1 gives t.grad = 3, x.grad = 6; pass 2 gives t.grad = 3 + 3 = 6 and
    # x.grad = 6 + 2*6 = 18 (traced by hand through micrograd's algorithm).
    x = Value(1.0)
    t = x * 2
    y = t * 3
    y.backward()
    assert (t.grad, x.grad) == (3.0, 6.0)
    y.backward()
    assert (t.grad, x.grad) == (6.0, 18.0)


# --- 7: micrograd compatibility surface ---------------------------------------


def test_prev_and_op_labels():
    a, b = Value(2.0), Value(-3.0)
    c = a + b
    d = a * b
    p = a**2
    r = b.relu()
    t = a.tanh()
    assert c._op == "+" and {id(v) for v in c._prev} == {id(a), id(b)} and len(c._prev) == 2
    assert d._op == "*" and {id(v) for v in d._prev} == {id(a), id(b)} and len(d._prev) == 2
    assert p._op == "**2" and len(p._prev) == 1 and p._prev[0] is a
    assert r._op == "ReLU" and len(r._prev) == 1 and r._prev[0] is b
    assert t._op == "tanh" and len(t._prev) == 1 and t._prev[0] is a
    assert a._prev == () and a._op == ""
    assert (p.data, r.data) == (4.0, 0.0)
    assert t.data == rel(math.tanh(2.0), 1e-15)
    # a number operand becomes a constant leaf Value, as in micrograd
    e = a + 1
    assert len(e._prev) == 2 and e._prev[0] is a and e._prev[1].data == 1.0


def test_repr():
    v = Value(2.5)
    assert repr(v) == "Value(data=2.5, grad=0.0)"
    w = v * v
    w.backward()
    assert repr(v) == "Value(data=2.5, grad=5.0)"


@pytest.mark.parametrize("bad", [Value(1.0), "abc", None, [1.0]])
def test_constructor_rejects_non_numbers(bad):
    with pytest.raises(TypeError):
        Value(bad)


def test_constructor_accepts_ints():
    v = Value(3)
    assert isinstance(v.data, float) and v.data == 3.0 and v.grad == 0.0


def test_combining_with_non_number_raises_type_error():
    with pytest.raises(TypeError):
        Value(1.0) + "abc"
    with pytest.raises(TypeError):
        Value(1.0) ** "abc"


def test_manual_backward_one_step():
    # The lecture's manual backprop: set o.grad, call o._backward(), one step only.
    x = Value(2.0)
    w = Value(-3.0)
    n = x * w + 6.8813735870195432
    o = n.tanh()
    o.grad = 1.0
    o._backward()
    assert n.grad == pytest.approx(0.5, rel=1e-6)
    assert x.grad == 0.0 and w.grad == 0.0  # not propagated further yet
    n._backward()
    (xw, _const) = n._prev
    assert xw.grad == pytest.approx(0.5, rel=1e-6)
    assert x.grad == 0.0
    xw._backward()
    assert x.grad == pytest.approx(-1.5, rel=1e-6)
    assert w.grad == pytest.approx(1.0, rel=1e-6)


def test_leaf_backward_is_a_no_op():
    v = Value(1.0)
    v._backward()
    assert v.grad == 0.0
    v.backward()
    assert v.grad == 1.0


# --- 8: every unary op is a method and its tape gradient is right -------------


def _builtin_unary_ops():
    # Built-in entries only (impl names a compiler.runtime function); other
    # test modules may register user ops into the global table.
    return [op for op in sg.all_ops()
            if op.arity == 1 and op.name.isidentifier() and isinstance(op.impl, str)]


# Points inside each op's domain and away from kinks / integer jumps.
_POINTS = {
    "log": (0.37, 1.9),
    "log1p": (0.37, -0.61),
    "asin": (0.37, -0.61),
    "acos": (0.37, -0.61),
}
_DEFAULT_POINTS = (0.37, -0.61, 1.3)


def test_every_unary_op_has_a_method():
    ops = [op for op in sg.all_ops() if op.arity == 1 and op.name.isidentifier()]
    names = {op.name for op in ops}
    # the table's unary ops must include at least these (guards against an
    # empty or shrunken selection making the loop below vacuous)
    assert {"relu", "sigmoid", "softplus", "exp", "log", "log1p", "expm1", "sin", "cos",
            "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh", "erf", "abs",
            "sign", "floor", "ceiling"} <= names
    for op in ops:
        assert hasattr(Value, op.name), op.name
        assert callable(getattr(Value, op.name)), op.name


@pytest.mark.parametrize("op", _builtin_unary_ops(), ids=lambda op: op.name)
def test_unary_op_gradient_matches_finite_difference(op):
    f = op.forward
    for x0 in _POINTS.get(op.name, _DEFAULT_POINTS):
        v = Value(x0)
        out = getattr(v, op.name)()
        assert out._prev == (v,)
        assert out.data == f(x0)
        out.backward()
        h = 1e-6
        fd = (f(x0 + h) - f(x0 - h)) / (2 * h)
        assert math.isfinite(fd)
        assert v.grad == pytest.approx(fd, rel=1e-6, abs=1e-9), (op.name, x0)


def test_unary_op_spot_values():
    # Exact values (by hand): relu' = 1/0, |x|' = sign(x), step functions have 0 slope.
    for name, x0, grad in [("relu", 1.5, 1.0), ("relu", -1.5, 0.0), ("abs", -2.0, -1.0),
                           ("abs", 2.0, 1.0), ("sign", 0.3, 0.0), ("floor", 2.5, 0.0),
                           ("ceiling", -2.5, 0.0), ("exp", 0.0, 1.0), ("log", 4.0, 0.25),
                           ("sin", 0.0, 1.0), ("cos", 0.0, 0.0), ("tanh", 0.0, 1.0),
                           ("sigmoid", 0.0, 0.25), ("softplus", 0.0, 0.5), ("atan", 1.0, 0.5)]:
        v = Value(x0)
        out = getattr(v, name)()
        out.backward()
        assert v.grad == pytest.approx(grad, abs=1e-15), (name, x0)


# --- 9: replay of SymPy expressions ---------------------------------------------

X, Y = sp.symbols("x y")
_T = sp.sin(X * Y)
# SymPy at x = 1/2, y = -5/4 (exact Rationals): expr.subs(...) and
# sympy.diff(expr, s).subs(...), each with sp.N(..., 25).
_REPLAY_CASES = [
    (X * sp.tanh(Y) + sp.exp(X * Y),
     0.1111196085402337931499287, -1.517360425606250700059166, 0.4078381473497114348429769),
    # shared subexpression sin(x*y), used three times
    (_T * _T + _T / (1 + X**2) + sp.log(1 + _T**2),
     0.1686744801606328162494936, 1.633434349396844730521154, -0.5035888378859795805782792),
    (X**Y + sp.sqrt(X + Y**2) - sp.atan(X / Y) + sp.cos(Y)**3,
     4.226413201213875503141116, -4.908225090688416553784642, -1.960049853084965609457794),
]


@pytest.mark.parametrize("expr, value, dx, dy", _REPLAY_CASES, ids=["tanh_exp", "shared", "pow_sqrt_atan"])
def test_replay_matches_sympy(expr, value, dx, dy):
    out, grads = replay(expr, {X: 0.5, Y: -1.25})
    assert isinstance(out, float)
    assert set(grads) == {X, Y}
    assert out == rel(value, 1e-12)
    assert grads[X] == rel(dx, 1e-12)
    assert grads[Y] == rel(dy, 1e-12)


def test_replay_extra_symbol_gets_zero_grad():
    z = sp.Symbol("z")
    out, grads = replay(X * Y, {X: 2.0, Y: 3.0, z: 1.0})
    assert out == 6.0
    assert grads == {X: 3.0, Y: 2.0, z: 0.0}


def test_replay_constant_expression():
    out, grads = replay(3 * sp.pi + sp.sin(2), {X: 1.0})
    # math: 3*pi + sin(2)
    assert out == rel(3 * math.pi + math.sin(2.0), 1e-15)
    assert grads == {X: 0.0}
    out, grads = replay(X - X, {X: 5.0})  # SymPy folds this to 0
    assert out == 0.0 and grads == {X: 0.0}


def test_replay_missing_value_names_the_symbol():
    with pytest.raises(ValueError, match=r"\by\b"):
        replay(X * Y, {X: 1.0})


def test_replay_non_symbol_key():
    with pytest.raises(TypeError):
        replay(X * Y, {"x": 1.0, Y: 2.0})


# --- 10: kinks and out-of-domain inputs ------------------------------------------


def test_max_min_tie_splits_gradient():
    a, b = Value(2.0), Value(2.0)
    m = apply("max", a, b)
    m.backward()
    assert m.data == 2.0
    assert (a.grad, b.grad) == (0.5, 0.5)

    a, b = Value(2.0), Value(2.0)
    m = apply("min", a, b)
    m.backward()
    assert (a.grad, b.grad) == (0.5, 0.5)

    a, b = Value(3.0), Value(2.0)
    m = apply(sg.get_op("max"), a, b)
    m.backward()
    assert (m.data, a.grad, b.grad) == (3.0, 1.0, 0.0)


def test_relu_and_abs_at_zero_have_zero_grad():
    v = Value(0.0)
    r = apply("relu", v)
    r.backward()
    assert r.data == 0.0 and v.grad == 0.0
    v = Value(0.0)
    a = abs(v)
    a.backward()
    assert a.data == 0.0 and v.grad == 0.0


def test_log_of_negative_is_nan_without_raising():
    v = Value(-1.0)
    out = v.log()
    assert math.isnan(out.data)
    out.backward()  # must not raise either
    assert v.grad == -1.0  # 1/a at a = -1; the value is nan but the local slope is finite
    assert Value(0.0).log().data == -math.inf


def test_apply_wrong_arity_raises():
    with pytest.raises(TypeError, match="takes 2 inputs"):
        apply("max", Value(1.0))
    with pytest.raises(KeyError):
        apply("no_such_op", Value(1.0))
