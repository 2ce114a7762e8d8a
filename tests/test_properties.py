"""Property tests: random expression DAGs with shared subexpressions.

Every gradient is checked against two independent sources: the tape engine
(:func:`symgrad.tape.replay`, micrograd-style backprop over floats) and central
finite differences of the function itself.

The strategy keeps a pool of subexpressions (the symbols to start with) and
repeatedly combines pool members into new ones, so later nodes reuse earlier
ones (fan-out / shared subexpressions). Only smooth ops are used (no relu, no
Abs) and every denominator / log / sqrt argument is guarded, so finite
differences are valid everywhere. Each pool entry carries a rough upper bound
on its magnitude and on its first derivative over the sampling box
``[-2, 2]^n``; a combination whose bounds would exceed the caps is replaced by
``tanh`` of it, which keeps the functions well conditioned for finite
differences (no ``sin(x**27)``).
"""

from __future__ import annotations

import math

import numpy as np
import sympy as sp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import symgrad as sg
from symgrad.check import finite_differences
from symgrad.evaluate import evaluate, evaluate_program
from symgrad.graph import CONST, lower
from symgrad.tape import replay

SYMS = sp.symbols("x y z", real=True)
BOX = 2.0          # points are drawn from [-BOX, BOX]
MAX_VALUE = 30.0   # cap on the magnitude bound of any pool entry
MAX_SLOPE = 8.0    # cap on the derivative bound of any pool entry


# Each unary op: (name, build(u), value bound from (B, D), slope bound from (B, D)).
def _unary_ops():
    e = math.e
    return [
        ("tanh", lambda u: sp.tanh(u), lambda b, d: 1.0, lambda b, d: d),
        ("sin", lambda u: sp.sin(u), lambda b, d: 1.0, lambda b, d: d),
        ("cos", lambda u: sp.cos(u), lambda b, d: 1.0, lambda b, d: d),
        ("exp_tanh", lambda u: sp.exp(sp.tanh(u)), lambda b, d: e, lambda b, d: e * d),
        ("log1sq", lambda u: sp.log(1 + u**2), lambda b, d: math.log1p(b * b), lambda b, d: d),
        ("sqrt1sq", lambda u: sp.sqrt(1 + u**2), lambda b, d: math.sqrt(1 + b * b),
         lambda b, d: d),
        ("sigmoid", lambda u: sg.sigmoid(u), lambda b, d: 1.0, lambda b, d: d / 4),
        ("softplus", lambda u: sg.softplus(u), lambda b, d: b + 1.0, lambda b, d: d),
        ("atan", lambda u: sp.atan(u), lambda b, d: math.pi / 2, lambda b, d: d),
        ("erf", lambda u: sp.erf(u), lambda b, d: 1.0, lambda b, d: 1.13 * d),
        ("square", lambda u: u**2, lambda b, d: b * b, lambda b, d: 2 * b * d),
        ("cube", lambda u: u**3, lambda b, d: b**3, lambda b, d: 3 * b * b * d),
    ]


# Each binary op: (name, build(u, v), bound(Bu, Du, Bv, Dv) -> (B, D)).
def _binary_ops():
    return [
        ("add", lambda u, v: u + v, lambda bu, du, bv, dv: (bu + bv, du + dv)),
        ("sub", lambda u, v: u - v, lambda bu, du, bv, dv: (bu + bv, du + dv)),
        ("mul", lambda u, v: u * v, lambda bu, du, bv, dv: (bu * bv, bu * dv + bv * du)),
        # |2v/(1+v^2)^2| <= 0.65, so d(u/(1+v^2)) <= du + 0.65*bu*dv
        ("div", lambda u, v: u / (1 + v**2), lambda bu, du, bv, dv: (bu, du + bu * dv)),
    ]


UNARY = _unary_ops()
BINARY = _binary_ops()


@st.composite
def dags(draw, min_ops: int = 3, max_ops: int = 12, unary=tuple(UNARY)):
    """(expr, symbols): a random smooth expression DAG with reuse."""
    nsym = draw(st.integers(2, 3))
    syms = SYMS[:nsym]
    pool = [(s, BOX, 1.0) for s in syms]  # (expr, value bound, slope bound)
    n_ops = draw(st.integers(min_ops, max_ops))
    for _ in range(n_ops):
        # favour the newest entry (deep chains) but reach back too (reuse)
        newest = draw(st.booleans())
        i = len(pool) - 1 if newest else draw(st.integers(0, len(pool) - 1))
        u, bu, du = pool[i]
        if draw(st.booleans()):
            _, build, fb, fd = draw(st.sampled_from(unary))
            new, b, d = build(u), fb(bu, du), fd(bu, du)
        else:
            j = draw(st.integers(0, len(pool) - 1))
            v, bv, dv = pool[j]
            _, build, bound = draw(st.sampled_from(BINARY))
            new = build(u, v)
            b, d = bound(bu, du, bv, dv)
        if b > MAX_VALUE or d > MAX_SLOPE:
            # too steep for reliable finite differences: squash it
            new, b, d = sp.tanh(u), 1.0, du
        pool.append((new, b, d))
    # The output combines the newest entry with two earlier ones, so that the
    # result usually uses several pool members (more sharing).
    k = draw(st.integers(0, len(pool) - 1))
    m = draw(st.integers(0, len(pool) - 1))
    out = pool[-1][0] + pool[k][0] * sp.tanh(pool[-1][0]) + sp.sin(pool[m][0])
    return out, syms


def points(syms):
    coord = st.floats(-BOX, BOX, allow_nan=False, allow_infinity=False)
    return st.tuples(*[coord for _ in syms]).map(lambda vals: dict(zip(syms, vals)))


@st.composite
def dag_and_point(draw):
    f, syms = draw(dags())
    return f, syms, draw(points(syms))


PROPERTY = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(dag_and_point())
def test_symbolic_tape_and_finite_differences_agree(case):
    f, syms, point = case
    wrt = list(syms)
    symbolic = np.array([evaluate(g, point) if g.free_symbols else float(g)
                         for g in sg.grad(f, wrt)])
    value, tape_grads = replay(f, point)
    tape = np.array([tape_grads[s] for s in wrt])
    fd = finite_differences(f, wrt, point)

    assert np.all(np.isfinite(symbolic))
    scale = 1.0 + np.abs(tape).max()
    np.testing.assert_allclose(symbolic, tape, rtol=1e-9, atol=1e-12 * scale)
    np.testing.assert_allclose(symbolic, fd, rtol=1e-5, atol=1e-7)

    # the value evaluated independently agrees with the tape's value
    assert math.isclose(evaluate(f, point), value, rel_tol=1e-12, abs_tol=1e-12)

    report = sg.check_grad(f, wrt, point)
    assert report.ok
    np.testing.assert_allclose(report.gradients["symbolic"], tape, rtol=1e-9,
                               atol=1e-12 * scale)


def _only_number_constants(f) -> bool:
    """Whether every constant leaf of ``f``'s DAG is a plain number.

    A symbol-free subtree such as ``sqrt(3) - sqrt(2)`` (which the strategy
    can produce by cancellation) is one constant leaf of the DAG, so it is not
    counted in ``n_nodes``, while ``sympy.count_ops`` of a step that mentions
    it counts its arithmetic; the size bound is about the DAG's own ops, so
    such cases are left out.
    """
    return all(n.expr.is_Number for n in lower(f).nodes if n.kind == CONST)


NO_ERF = tuple(u for u in UNARY if u[0] != "erf")


@PROPERTY
@given(dags(unary=NO_ERF))
def test_program_size_is_at_most_4x_the_dag(case):
    """The cheap-gradient bound: forward + reverse ops <= 4 * DAG nodes.

    erf is left out: its local partial ``2*exp(-a**2)/sqrt(pi)`` alone is 6
    ``count_ops`` operations, so a chain of erf costs ~8 ops per node whatever
    the program does (see the next property).
    """
    f, syms = case
    assume(_only_number_constants(f))
    program = sg.gradient_program(f, list(syms))
    assert program.n_nodes == lower(f).n_nodes
    assert program.num_ops <= 4 * program.n_nodes


@PROPERTY
@given(dags(max_ops=16))
def test_program_size_is_linear_with_erf(case):
    """With erf in the mix the program is still linear in the DAG: at most
    1 (forward) + 7 (adjoint: partial and product) ops per node."""
    f, syms = case
    assume(_only_number_constants(f))
    program = sg.gradient_program(f, list(syms))
    assert program.num_ops <= 8 * program.n_nodes


@PROPERTY
@given(dag_and_point())
def test_gradient_program_is_deterministic(case):
    f, syms, point = case
    wrt = list(syms)
    p1 = sg.gradient_program(f, wrt)
    p2 = sg.gradient_program(f, wrt)
    text = str(p1)
    assert text == str(p2)
    # the text names every wrt variable's adjoint (or the gradient is a constant)
    assert text.startswith("# forward:")
    # and rebuilding from an equal but distinct expression object gives the same text
    f_copy = sp.sympify(sp.srepr(f), locals={"sigmoid": sg.sigmoid, "softplus": sg.softplus})
    assert f_copy == f
    assert str(sg.gradient_program(f_copy, wrt)) == text
    # the printed program is also a correct program: its gradient matches the tape
    (_,), (grads,) = evaluate_program(p1, point)
    _, tape_grads = replay(f, point)
    tape = np.array([tape_grads[s] for s in wrt])
    np.testing.assert_allclose(grads, tape, rtol=1e-9, atol=1e-12 * (1.0 + np.abs(tape).max()))
