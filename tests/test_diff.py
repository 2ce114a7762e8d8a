"""Tests of the reverse-mode differentiation API (grad, derivative, jacobian,
hessian, gradient_program) and of check_grad.

Every value is compared with an independent source: ``sympy.diff``, the tape
engine (:func:`symgrad.tape.replay`), central finite differences
(:func:`symgrad.check.finite_differences`) or a value known by hand.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import sympy as sp

import symgrad as sg
from symgrad.check import finite_differences
from symgrad.evaluate import evaluate, evaluate_program
from symgrad.graph import OP, lower
from symgrad.tape import replay
from symgrad.testing import chain, mlp_loss, wide_sum

x, y, z = sp.symbols("x y z")
POINT = {x: 1.5, y: 0.7}


def num(expr, point) -> float:
    """Float value of a SymPy expression by SymPy's own substitution."""
    return float(sp.N(sp.sympify(expr).subs(point), 30))


def random_points(syms, n=3, seed=0, lo=-1.5, hi=1.5):
    rng = random.Random(seed)
    return [{s: rng.uniform(lo, hi) for s in syms} for _ in range(n)]


def issue_f():
    return x * sp.tanh(y) + sg.relu(x - y) + sp.log(1 + x**2) / y


# --------------------------------------------------------------------------
# The issue's example, exactly as written
# --------------------------------------------------------------------------

def test_issue_example_grad():
    f = issue_f()
    g = sg.grad(f, [x, y])
    assert isinstance(g, list) and len(g) == 2
    assert all(isinstance(e, sp.Expr) for e in g)
    for gi, v in zip(g, (x, y)):
        assert num(gi, POINT) == pytest.approx(num(sp.diff(f, v), POINT), rel=1e-12, abs=1e-12)
    # known closed forms at (1.5, 0.7): relu is active (x - y = 0.8 > 0)
    dfdx = math.tanh(0.7) + 1.0 + 2 * 1.5 / (0.7 * (1 + 1.5**2))
    dfdy = 1.5 * (1 - math.tanh(0.7) ** 2) - 1.0 - math.log(1 + 1.5**2) / 0.7**2
    assert num(g[0], POINT) == pytest.approx(dfdx, rel=1e-12)
    assert num(g[1], POINT) == pytest.approx(dfdy, rel=1e-12)


def test_issue_example_derivative():
    f = issue_f()
    d = sg.derivative(f, x)
    assert isinstance(d, sp.Expr)
    assert num(d, POINT) == pytest.approx(num(sp.diff(f, x), POINT), rel=1e-12)
    assert sp.simplify(d - sg.grad(f, [x, y])[0]) == 0


def test_issue_example_jacobian():
    f = issue_f()
    J = sg.jacobian([f, x * y], [x, y])
    assert isinstance(J, sp.MatrixBase)
    assert J.shape == (2, 2)
    for i, fi in enumerate((f, x * y)):
        for j, v in enumerate((x, y)):
            assert num(J[i, j], POINT) == pytest.approx(
                num(sp.diff(fi, v), POINT), rel=1e-12, abs=1e-12)
    assert J[1, 0] == y and J[1, 1] == x


def test_issue_example_hessian():
    f = issue_f()
    H = sg.hessian(f, [x, y])
    assert isinstance(H, sp.MatrixBase)
    assert H.shape == (2, 2)
    for i, a in enumerate((x, y)):
        for j, b in enumerate((x, y)):
            # sympy's second derivative has a DiracDelta(x - y) term, zero here
            assert num(H[i, j], POINT) == pytest.approx(
                num(sp.diff(f, a, b), POINT), rel=1e-12, abs=1e-12)


def test_issue_example_gradient_program_text():
    f = issue_f()
    program = sg.gradient_program(f, [x, y])
    text = str(program)
    lines = text.splitlines()
    assert any(line.startswith("x_bar = ") for line in lines)
    assert any(line.startswith("y_bar = ") for line in lines)
    lhs = [line.split(" = ", 1)[0] for line in lines if " = " in line and not line.startswith("#")]
    # single assignment: every name is defined once
    assert len(lhs) == len(set(lhs))
    forward_names = [str(s.name) for s in program.forward_steps]
    assert forward_names, "the program has forward steps"
    for name in forward_names:
        assert lhs.count(name) == 1, name
    assert lines[-1].startswith(f"return {program.outputs[0]}, (")
    # and the program computes the right numbers
    (value,), (grads,) = evaluate_program(program, POINT)
    assert value == pytest.approx(num(f, POINT), rel=1e-12)
    assert grads[0] == pytest.approx(num(sp.diff(f, x), POINT), rel=1e-12)
    assert grads[1] == pytest.approx(num(sp.diff(f, y), POINT), rel=1e-12)


def test_issue_example_printing_is_captured(capsys):
    print(sg.gradient_program(issue_f(), [x, y]))
    out = capsys.readouterr().out
    assert "\nx_bar = " in out and "\ny_bar = " in out


def test_issue_example_against_tape_and_check_grad():
    f = issue_f()
    _, tape = replay(f, POINT)
    g = sg.grad(f, [x, y])
    assert evaluate(g[0], POINT) == pytest.approx(tape[x], rel=1e-12)
    assert evaluate(g[1], POINT) == pytest.approx(tape[y], rel=1e-12)
    report = sg.check_grad(f, [x, y], POINT)
    assert report.ok
    assert report.max_rel_err < 1e-8


# --------------------------------------------------------------------------
# Golden text
# --------------------------------------------------------------------------

GOLDEN_X_TANH_Y = """\
# forward: 2 steps
t0 = tanh(y)
t1 = t0*x
# reverse: adjoints w.r.t. (x, y), output adjoint seeded with 1
x_bar = t0
y_bar = x*(1 - t0**2)
return t1, (x_bar, y_bar)"""


def test_golden_program_x_tanh_y():
    assert str(sg.gradient_program(x * sp.tanh(y), [x, y])) == GOLDEN_X_TANH_Y


def test_golden_program_numbers():
    program = sg.gradient_program(x * sp.tanh(y), [x, y])
    (value,), (grads,) = evaluate_program(program, {x: 2.0, y: 0.3})
    assert value == pytest.approx(2.0 * math.tanh(0.3), rel=1e-15)
    assert grads[0] == pytest.approx(math.tanh(0.3), rel=1e-15)
    assert grads[1] == pytest.approx(2.0 * (1 - math.tanh(0.3) ** 2), rel=1e-15)


# --------------------------------------------------------------------------
# grad / jacobian / hessian vs sympy.diff
# --------------------------------------------------------------------------

SMOOTH = [
    x**2 * y + sp.sin(x * y),
    sp.exp(-x**2) * sp.cos(3 * y) + x / (1 + y**2),
    sp.log(1 + x**2 + y**4) * sp.tanh(x - 2 * y),
    sp.sqrt(1 + x**2) * sp.atan(y) + sp.erf(x * y) ** 2,
    sg.sigmoid(x * y) + sg.softplus(x - y) * z,
    (x + y + z) ** 3 / (2 + sp.cos(x)),
    sp.sinh(x) * sp.cosh(y) + x**3 - 1 / (3 + sp.sin(x * z)),
    sp.exp(x) ** 2 * sp.tan(y / 4) + sp.asin(x / 4) * sp.acos(y / 4),
]


def _syms(f):
    return sorted(f.free_symbols, key=str)


@pytest.mark.parametrize("f", SMOOTH, ids=[str(i) for i in range(len(SMOOTH))])
def test_grad_matches_sympy_diff(f):
    ws = _syms(f)
    g = sg.grad(f, ws)
    assert len(g) == len(ws)
    for pt in random_points(ws, seed=1):
        for gi, w in zip(g, ws):
            assert num(gi, pt) == pytest.approx(num(sp.diff(f, w), pt), rel=1e-10, abs=1e-12)
            assert evaluate(gi, pt) == pytest.approx(num(sp.diff(f, w), pt), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("f", SMOOTH[:3], ids=["0", "1", "2"])
def test_grad_simplifies_to_sympy_diff(f):
    ws = _syms(f)
    for gi, w in zip(sg.grad(f, ws), ws):
        assert sp.simplify(gi - sp.diff(f, w)) == 0


@pytest.mark.parametrize("f", SMOOTH, ids=[str(i) for i in range(len(SMOOTH))])
def test_jacobian_matches_sympy_diff(f):
    ws = _syms(f)
    g2 = x * sp.sin(y) + sp.exp(x - y)
    J = sg.jacobian([f, g2], ws)
    assert J.shape == (2, len(ws))
    for pt in random_points(ws, seed=2):
        for i, fi in enumerate((f, g2)):
            for j, w in enumerate(ws):
                assert num(J[i, j], pt) == pytest.approx(
                    num(sp.diff(fi, w), pt), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("f", SMOOTH, ids=[str(i) for i in range(len(SMOOTH))])
def test_hessian_matches_sympy_diff_and_is_symmetric(f):
    ws = _syms(f)
    H = sg.hessian(f, ws)
    n = len(ws)
    assert H.shape == (n, n)
    for pt in random_points(ws, seed=3):
        vals = np.array([[evaluate(H[i, j], pt) if H[i, j].free_symbols else float(H[i, j])
                          for j in range(n)] for i in range(n)])
        ref = np.array([[num(sp.diff(f, ws[i], ws[j]), pt) for j in range(n)] for i in range(n)])
        np.testing.assert_allclose(vals, ref, rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(vals, vals.T, rtol=1e-12, atol=1e-12)


def test_hessian_exact_polynomial():
    f = x**3 * y**2 + 4 * x * y - y**3
    H = sg.hessian(f, [x, y])
    expected = sp.Matrix([[6 * x * y**2, 6 * x**2 * y + 4], [6 * x**2 * y + 4, 2 * x**3 - 6 * y]])
    assert sp.simplify(H - expected) == sp.zeros(2, 2)


@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_derivative_higher_order(order):
    f = sp.tanh(x) * sp.exp(x / 2) + x**5
    d = sg.derivative(f, x, order=order)
    for pt in random_points([x], seed=4):
        assert num(d, pt) == pytest.approx(num(sp.diff(f, x, order), pt), rel=1e-10, abs=1e-12)


def test_jacobian_accepts_matrix_and_repeated_wrt():
    J = sg.jacobian(sp.Matrix([x * y, x + sp.sin(y)]), [x, y])
    assert J == sp.Matrix([[y, x], [1, sp.cos(y)]])
    g = sg.grad(x**2 * y, [x, x, y])
    assert [sp.simplify(a - b) for a, b in zip(g, [2 * x * y, 2 * x * y, x**2])] == [0, 0, 0]


# --------------------------------------------------------------------------
# Shared subexpressions and fan-out
# --------------------------------------------------------------------------

def test_x_times_x():
    assert sp.simplify(sg.grad(x * x, [x])[0] - 2 * x) == 0
    # an unevaluated product x*x: one x node used twice
    f = sp.Mul(x, x, evaluate=False)
    graph = lower(f)
    assert [n.kind for n in graph.nodes].count("symbol") == 1
    (mul,) = [n for n in graph.nodes if n.kind == OP]
    assert mul.args[0] == mul.args[1]
    for pt in ({x: 1.25}, {x: -3.0}):
        assert evaluate(sg.grad(f, [x])[0], pt) == pytest.approx(2 * pt[x], rel=1e-15)
        assert replay(f, pt)[1][x] == pytest.approx(2 * pt[x], rel=1e-15)


def test_shared_node_used_1000_times():
    u = sp.sin(x * y)
    f = sp.Add(*[u * c for c in range(1, 1001)], evaluate=False)
    graph = lower(f)
    sins = [n for n in graph.nodes if n.kind == OP and n.op.name == "sin"]
    assert len(sins) == 1
    xy = [n for n in graph.nodes if n.kind == OP and n.expr == x * y]
    assert len(xy) == 1
    # the sin node has 1000 parents (u*1 is u itself, so the Add uses it directly)
    parents = [n for n in graph.nodes if n.kind == OP and sins[0].index in n.args]
    assert len(parents) == 1000

    g = sg.grad(f, [x, y])
    total = 1000 * 1001 // 2
    for pt in ({x: 0.3, y: -1.1}, {x: 1.7, y: 0.4}):
        gx = total * pt[y] * math.cos(pt[x] * pt[y])
        gy = total * pt[x] * math.cos(pt[x] * pt[y])
        assert evaluate(g[0], pt) == pytest.approx(gx, rel=1e-12)
        assert evaluate(g[1], pt) == pytest.approx(gy, rel=1e-12)
        _, tape = replay(f, pt)
        assert tape[x] == pytest.approx(gx, rel=1e-10)
    assert sp.simplify(g[0] - total * y * sp.cos(x * y)) == 0


def test_shared_subexpression_through_different_ops():
    u = sp.tanh(x * y + z)
    f = u**2 + sp.sin(u) * u + sp.exp(u) / (1 + u**2)
    graph = lower(f)
    assert sum(1 for n in graph.nodes if n.kind == OP and n.op.name == "tanh") == 1
    ws = [x, y, z]
    g = sg.grad(f, ws)
    for pt in random_points(ws, seed=5):
        _, tape = replay(f, pt)
        fd = finite_differences(f, ws, pt)
        for gi, w, fdi in zip(g, ws, fd):
            assert evaluate(gi, pt) == pytest.approx(tape[w], rel=1e-12, abs=1e-14)
            assert evaluate(gi, pt) == pytest.approx(num(sp.diff(f, w), pt), rel=1e-10, abs=1e-12)
            assert fdi == pytest.approx(tape[w], rel=1e-6, abs=1e-8)


def test_equal_subtrees_from_distinct_objects_share_a_node():
    a = sp.tanh(x + y)
    b = sp.tanh(sp.Add(y, x))  # equal expression, built separately
    f = a * sp.cos(b) + b
    graph = lower(f)
    assert sum(1 for n in graph.nodes if n.kind == OP and n.op.name == "tanh") == 1
    g = sg.grad(f, [x, y])
    pt = {x: 0.2, y: 0.9}
    assert evaluate(g[0], pt) == pytest.approx(num(sp.diff(f, x), pt), rel=1e-12)


# --------------------------------------------------------------------------
# Deep graphs
# --------------------------------------------------------------------------

@pytest.mark.slow
def test_chain_100k_deep_no_recursion_error():
    f, xs = chain(100_000)
    graph = lower(f)
    # x, one op per level, and one more (the Mul) on every third level
    assert graph.n_nodes == 1 + 100_000 + 100_000 // 3
    program = sg.gradient_program(f, [xs])
    assert program.n_nodes == graph.n_nodes
    pt = {xs: 0.3}
    (value,), ((gx,),) = evaluate_program(program, pt)
    tape_value, tape = replay(f, pt)
    assert value == pytest.approx(tape_value, rel=1e-12)
    assert gx == pytest.approx(tape[xs], rel=1e-9)
    assert math.isfinite(gx) and gx != 0.0


def test_chain_10k_deep_against_finite_differences():
    f, xs = chain(10_000)
    program = sg.gradient_program(f, [xs])
    for x0 in (0.3, -0.8):
        pt = {xs: x0}
        (value,), ((gx,),) = evaluate_program(program, pt)
        tape_value, tape = replay(f, pt)
        fd = finite_differences(f, [xs], pt)[0]
        assert value == pytest.approx(tape_value, rel=1e-12)
        assert gx == pytest.approx(tape[xs], rel=1e-9)
        assert gx == pytest.approx(fd, rel=1e-6, abs=1e-8)


def test_short_chain_matches_sympy_diff():
    f, xs = chain(7)
    g = sg.grad(f, [xs])[0]
    for pt in random_points([xs], seed=6):
        assert num(g, pt) == pytest.approx(num(sp.diff(f, xs), pt), rel=1e-10)


# --------------------------------------------------------------------------
# Program size
# --------------------------------------------------------------------------

def _families():
    f, xs = chain(300)
    yield pytest.param("chain300", f, [xs], id="chain300")
    f, xs = chain(31)
    yield pytest.param("chain31", f, [xs], id="chain31")
    f, ws = wide_sum(200)
    yield pytest.param("wide_sum200", f, list(ws), id="wide_sum200")
    f, ws = wide_sum(3)
    yield pytest.param("wide_sum3", f, list(ws), id="wide_sum3")
    f, ps = mlp_loss(2, [16, 16, 1])
    yield pytest.param("mlp_16_16_1", f, ps, id="mlp_16_16_1")
    f, ps = mlp_loss(2, [8, 8, 1], samples=3)
    yield pytest.param("mlp_8_8_1_x3", f, ps, id="mlp_8_8_1_x3")


@pytest.mark.parametrize("name,f,wrt", list(_families()))
def test_program_size_at_most_4x_dag(name, f, wrt):
    program = sg.gradient_program(f, wrt)
    assert program.n_nodes == lower(f).n_nodes
    assert program.num_ops <= 4 * program.n_nodes
    # not vacuous: every forward step applies at least one operation
    assert program.num_ops >= len(program.forward_steps) >= program.n_nodes - len(wrt)


def test_mlp_program_gradient_matches_tape():
    f, ps = mlp_loss(2, [8, 8, 1], samples=3)
    rng = random.Random(7)
    pt = {p: rng.uniform(-1, 1) for p in ps}
    program = sg.gradient_program(f, ps)
    (value,), (grads,) = evaluate_program(program, pt)
    tape_value, tape = replay(f, pt)
    assert value == pytest.approx(tape_value, rel=1e-12)
    np.testing.assert_allclose(grads, [tape[p] for p in ps], rtol=1e-10, atol=1e-14)


def test_wide_sum_gradient_known_values():
    f, ws = wide_sum(50)
    rng = random.Random(8)
    pt = {w: rng.uniform(-2, 2) for w in ws}
    program = sg.gradient_program(f, list(ws))
    _, (grads,) = evaluate_program(program, pt)
    for w, gw in zip(ws, grads):
        v = pt[w]
        assert gw == pytest.approx(2 * v * math.tanh(v) + v**2 * (1 - math.tanh(v) ** 2), rel=1e-12)


# --------------------------------------------------------------------------
# check_grad
# --------------------------------------------------------------------------

def test_check_grad_ok_for_smooth_function():
    f = sp.exp(x * sp.sin(y)) + sp.log(1 + x**2) * sp.atan(y)
    pt = {x: 0.4, y: -1.3}
    report = sg.check_grad(f, [x, y], pt)
    assert isinstance(report, sg.GradCheckReport)
    assert report.ok
    assert report.max_abs_err < 1e-8
    assert report.max_rel_err < 1e-7
    expected = [num(sp.diff(f, x), pt), num(sp.diff(f, y), pt)]
    for name in ("symbolic", "tape", "finite_diff"):
        np.testing.assert_allclose(report.gradients[name], expected, rtol=1e-7)
    assert report.value == pytest.approx(num(f, pt), rel=1e-14)
    assert "OK" in str(report)


mycube = sp.Function("symgrad_test_diff_mycube")


@pytest.fixture(scope="module")
def wrong_tape_op():
    """A user op whose symbolic partial is right and tape partial is 2x too big."""
    return sg.register_op(mycube, forward=lambda a: a**3,
                          partials=lambda out, a: (3 * a**2,),
                          tape_partials=lambda out, a: (6.0 * a * a,),
                          replace=True)


def test_custom_op_symbolic_rule_is_right(wrong_tape_op):
    f = mycube(x) * y
    g = sg.grad(f, [x, y])
    pt = {x: 1.2, y: -0.5}
    assert evaluate(g[0], pt) == pytest.approx(3 * 1.2**2 * -0.5, rel=1e-14)
    assert evaluate(g[1], pt) == pytest.approx(1.2**3, rel=1e-14)
    assert finite_differences(f, [x], pt)[0] == pytest.approx(3 * 1.2**2 * -0.5, rel=1e-8)
    # the tape uses the wrong rule
    assert replay(f, pt)[1][x] == pytest.approx(6 * 1.2**2 * -0.5, rel=1e-14)


def test_check_grad_raises_on_wrong_tape_rule(wrong_tape_op):
    f = mycube(x) * y + y**2
    pt = {x: 1.2, y: -0.5}
    with pytest.raises(sg.GradientMismatch) as info:
        sg.check_grad(f, [x, y], pt)
    message = str(info.value)
    assert "d/dx" in message
    assert "tape" in message
    assert "d/dy" not in message.splitlines()[0]
    report = info.value.report
    assert report is not None and not report.ok
    assert report.gradients["tape"][0] == pytest.approx(2 * report.gradients["symbolic"][0])
    assert report.gradients["tape"][1] == pytest.approx(report.gradients["symbolic"][1])


def test_check_grad_report_without_raising(wrong_tape_op):
    f = mycube(x) * y
    pt = {x: 1.2, y: -0.5}
    report = sg.check_grad(f, [x, y], pt, raise_on_error=False)
    assert report.ok is False
    assert report.max_rel_err == pytest.approx(1.0, rel=1e-9)  # tape is 2x symbolic
    np.testing.assert_allclose(report.gradients["symbolic"], report.gradients["finite_diff"],
                               rtol=1e-8)
    assert "MISMATCH" in str(report)
    assert "d/dx" in report.worst


def test_check_grad_missing_point_value_names_symbol():
    with pytest.raises(ValueError, match=r"\by\b"):
        sg.check_grad(x * sp.sin(y), [x, y], {x: 1.0})
    with pytest.raises(ValueError, match=r"\bz\b"):
        sg.check_grad(x * z, [x], {x: 1.0})


def test_check_grad_requires_point():
    with pytest.raises(TypeError):
        sg.check_grad(x**2, [x])


# --------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [x**2, 3, 2.5, "x", sp.Integer(2)],
                         ids=["pow", "int", "float", "str", "Integer"])
def test_wrt_must_be_symbols(bad):
    with pytest.raises(TypeError, match="wrt"):
        sg.grad(x**2, [x, bad])
    with pytest.raises(TypeError):
        sg.gradient_program(x**2, [bad])
    with pytest.raises(TypeError):
        sg.jacobian([x**2], [bad])
    with pytest.raises(TypeError):
        sg.hessian(x**2, [bad])


def test_wrt_bare_symbol_or_string_rejected():
    with pytest.raises(TypeError, match=r"\[x\]"):
        sg.grad(x**2, x)
    with pytest.raises(TypeError):
        sg.grad(x**2, "x")


def test_f_string_rejected():
    with pytest.raises(TypeError, match="string"):
        sg.grad("x**2", [x])
    with pytest.raises(TypeError):
        sg.derivative("x**2", x)
    with pytest.raises(TypeError):
        sg.gradient_program("x**2", [x])


def test_jacobian_of_bare_expression_rejected():
    with pytest.raises(TypeError, match="list"):
        sg.jacobian(x * y, [x, y])


def test_derivative_bad_order_and_variable():
    with pytest.raises(ValueError, match="order"):
        sg.derivative(x**2, x, order=-1)
    with pytest.raises(ValueError):
        sg.derivative(x**2, x, order=1.5)
    with pytest.raises(TypeError):
        sg.derivative(x**2, x**2)


def test_matrix_f_rejected_by_grad():
    with pytest.raises(TypeError, match="matrix"):
        sg.grad(sp.Matrix([x, y]), [x])


# --------------------------------------------------------------------------
# Printing and numeric substitution of results
# --------------------------------------------------------------------------

def test_derivatives_print_and_substitute():
    f = issue_f() + sg.sigmoid(x * y) + sg.softplus(y)
    results = sg.grad(f, [x, y]) + [sg.derivative(f, x)] + list(sg.hessian(f, [x, y]))
    for d in results:
        assert isinstance(sp.pretty(d), str) and sp.pretty(d)
        assert isinstance(sp.latex(d), str) and sp.latex(d)
        v = d.subs({x: 1.5, y: 0.7}).evalf()
        assert v.is_number and v.is_real
        assert complex(v).imag == 0
    assert float(results[0].subs({x: 1.5, y: 0.7}).evalf()) == pytest.approx(
        num(sp.diff(f, x), POINT), rel=1e-12)
    assert float(results[1].subs({x: 1.5, y: 0.7}).evalf()) == pytest.approx(
        num(sp.diff(f, y), POINT), rel=1e-12)
    assert r"\sigma" in sp.latex(results[0])


# --------------------------------------------------------------------------
# Constants and variables not used
# --------------------------------------------------------------------------

def test_constant_f():
    assert sg.grad(sp.Integer(3), [x]) == [0]
    assert sg.grad(3, [x, y]) == [0, 0]
    assert sg.grad(sp.sqrt(2) + sp.pi, [x]) == [0]
    assert sg.hessian(sp.Integer(3), [x, y]) == sp.zeros(2, 2)
    assert sg.derivative(sp.Integer(7), x) == 0
    (value,), (grads,) = evaluate_program(sg.gradient_program(sp.Integer(3), [x]), {})
    assert value == 3.0 and grads == [0.0]


def test_f_not_depending_on_wrt_variable():
    f = sp.sin(x) * x
    g = sg.grad(f, [x, y])
    assert g[1] == 0
    assert sp.simplify(g[0] - sp.diff(f, x)) == 0
    J = sg.jacobian([f, y**2], [x, y, z])
    assert J[0, 1] == 0 and J[0, 2] == 0 and J[1, 0] == 0 and J[1, 2] == 0
    assert sp.simplify(J[1, 1] - 2 * y) == 0
    assert sg.derivative(f, z) == 0
    report = sg.check_grad(f, [x, y], {x: 0.5, y: 2.0})
    assert report.ok and report.gradients["symbolic"][1] == 0.0


def test_grad_on_too_deep_graph_explains_the_way_out():
    # SymPy's constructors recurse when the inlined derivative is rebuilt; the
    # error must point to gradient_program, which handles any depth.
    from symgrad.evaluate import evaluate_program
    from symgrad.testing import chain

    f, x0 = chain(10_000)
    with pytest.raises(RecursionError, match="gradient_program"):
        sg.grad(f, [x0])
    _, (grads,) = evaluate_program(sg.gradient_program(f, [x0]), {x0: 0.3})
    _, tape = sg.tape.replay(f, {x0: 0.3})
    assert grads[0] == pytest.approx(tape[x0], rel=1e-12)
