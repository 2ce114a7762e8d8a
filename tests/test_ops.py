"""Tests of the op table: every op's rules, checked against independent sources.

* symbolic derivatives (``symgrad.grad``) against ``sympy.diff`` on real
  symbols, central finite differences and the tape engine;
* the PyTorch kink conventions (relu, |x|, sign, Max/Min ties, Heaviside);
* real-valued semantics (no ``re``/``im``/``Derivative`` in results);
* user-registered ops, error messages, and ``compiler.runtime``'s IEEE
  conventions.
"""

from __future__ import annotations

import functools
import math

import pytest
import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p

import symgrad as sg
from compiler import runtime as R
from symgrad.check import finite_differences
from symgrad.evaluate import evaluate
from symgrad.ops import registry
from symgrad.tape import replay

x, y, z = sp.symbols("x y z")
REAL = {s: sp.Symbol(s.name, real=True) for s in (x, y, z)}


def _num(e) -> float:
    """Float value of a fully substituted SymPy expression (booleans as 1/0)."""
    if e is sp.true:
        return 1.0
    if e is sp.false:
        return 0.0
    v = sp.sympify(e).evalf(30)
    assert v.is_Number, f"{e} did not evaluate to a number: {v}"
    return float(v)


def _unregister(name: str) -> None:
    """Remove a test-registered op again (keeps the shared table clean for
    other test modules)."""
    op = registry._BY_NAME.pop(name, None)
    if op is not None:
        registry._BY_HEAD.pop(op.head, None)
    if name in sg.Value.__dict__:
        delattr(sg.Value, name)


# ---------------------------------------------------------------------------
# 1. The op table
# ---------------------------------------------------------------------------

REQUIRED = [
    "add", "mul", "pow", "exp", "log", "sin", "cos", "tan", "tanh", "sinh", "cosh",
    "asin", "acos", "atan", "abs", "sign", "max", "min", "piecewise", "erf",
    "log1p", "expm1", "relu", "sigmoid", "softplus",
]

# name -> (float arguments for the numeric forward, SymPy reference value)
_F = sp.Float
FORWARD_SAMPLES = {
    "logsumexp": ((1.0, 2.0, 3.0), sp.log(sp.exp(1) + sp.exp(2) + sp.exp(3))),
    "add": ((1.25, -0.5, 2.0), _F(1.25) + _F(-0.5) + 2),
    "mul": ((1.5, -2.0), _F(1.5) * -2),
    "pow": ((2.0, 1.5), sp.Integer(2) ** sp.Rational(3, 2)),
    "exp": ((0.3,), sp.exp(_F(0.3))),
    "log": ((2.5,), sp.log(_F(2.5))),
    "log1p": ((0.5,), sp.log(1 + _F(0.5))),
    "expm1": ((0.5,), sp.exp(_F(0.5)) - 1),
    "sin": ((0.4,), sp.sin(_F(0.4))),
    "cos": ((0.4,), sp.cos(_F(0.4))),
    "tan": ((0.4,), sp.tan(_F(0.4))),
    "asin": ((0.3,), sp.asin(_F(0.3))),
    "acos": ((0.3,), sp.acos(_F(0.3))),
    "atan": ((1.7,), sp.atan(_F(1.7))),
    "atan2": ((0.5, -1.2), sp.atan2(_F(0.5), _F(-1.2))),
    "sinh": ((0.9,), sp.sinh(_F(0.9))),
    "cosh": ((0.9,), sp.cosh(_F(0.9))),
    "tanh": ((0.9,), sp.tanh(_F(0.9))),
    "erf": ((0.3,), sp.erf(_F(0.3))),
    "relu": ((-0.7,), sp.Max(_F(-0.7), 0)),
    "sigmoid": ((0.8,), 1 / (1 + sp.exp(-_F(0.8)))),
    "softplus": ((-0.4,), sp.log(1 + sp.exp(_F(-0.4)))),
    "abs": ((-2.5,), sp.Abs(_F(-2.5))),
    "sign": ((-3.0,), sp.sign(_F(-3.0))),
    "floor": ((-1.5,), sp.floor(_F(-1.5))),
    "ceiling": ((-1.5,), sp.ceiling(_F(-1.5))),
    "heaviside": ((0.0, 0.25), sp.Heaviside(0, _F(0.25))),
    "max": ((1.0, 3.0), sp.Max(1, 3)),
    "min": ((1.0, 3.0), sp.Min(1, 3)),
    "piecewise": ((2.0, 0.0, 5.0, 1.0), sp.Piecewise((2, sp.false), (5, sp.true))),
    "lt": ((1.0, 2.0), sp.Lt(1, 2)),
    "le": ((2.0, 2.0), sp.Le(2, 2)),
    "gt": ((1.0, 2.0), sp.Gt(1, 2)),
    "ge": ((1.0, 2.0), sp.Ge(1, 2)),
    "eq": ((2.0, 2.0), sp.Eq(2, 2)),
    "ne": ((2.0, 2.0), sp.Ne(2, 2)),
    "and": ((1.0, 0.0), sp.And(sp.true, sp.false)),
    "or": ((1.0, 0.0), sp.Or(sp.true, sp.false)),
    "not": ((0.0,), sp.Not(sp.false)),
}


def test_required_builtin_ops_are_registered():
    names = [op.name for op in sg.all_ops()]
    assert len(names) == len(set(names))
    missing = [n for n in REQUIRED if n not in names]
    assert missing == []
    for n in REQUIRED:
        op = sg.get_op(n)
        assert isinstance(op.impl, str), f"built-in op {n} should name a runtime function"


def _check_entry(op):
    assert isinstance(op.name, str) and op.name
    assert isinstance(op.head, type) and issubclass(op.head, sp.Basic)
    assert callable(op.forward)
    assert callable(op.partials)
    assert callable(op.tape_partials)
    assert isinstance(op.label, str) and op.label
    assert sg.get_op(op.name) is op
    assert isinstance(op.impl, str)  # every op names its back-end record
    if op.user_forward is None:  # built-in or decomposed: the forward is the record's reference
        assert R.lookup(op.impl) is op.forward
    else:                        # a user's forward: the record's reference calls it
        assert callable(R.lookup(op.impl)) and callable(op.user_forward)
    # partials return one entry per input
    n = op.arity if op.arity is not None else 4
    args = sp.symbols(f"a0:{n}")
    out = sp.Symbol("out")
    assert len(op.partials(out, *args)) == n


def _is_builtin(op):
    """Not a user op (those come with their own forward or decomposition)."""
    return op.user_forward is None and op.decompose is None


BUILTIN_NAMES = [op.name for op in sg.all_ops() if _is_builtin(op)]


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_builtin_op_entry_is_complete(name):
    _check_entry(sg.get_op(name))


def test_every_registered_op_entry_is_complete():
    # at run time, including any ops registered by users (or other tests)
    for op in sg.all_ops():
        _check_entry(op)


def test_every_builtin_op_has_a_forward_sample():
    builtin = {op.name for op in sg.all_ops() if _is_builtin(op)}
    assert builtin - set(FORWARD_SAMPLES) == set()


@pytest.mark.parametrize("name", sorted(FORWARD_SAMPLES))
def test_builtin_forward_matches_sympy(name):
    args, ref = FORWARD_SAMPLES[name]
    op = sg.get_op(name)
    assert op.forward(*args) == pytest.approx(_num(ref), rel=1e-14, abs=1e-15)


def test_runtime_lookup_rejects_unknown_names():
    with pytest.raises(KeyError):
        R.lookup("no_such_function")
    with pytest.raises(KeyError):
        R.lookup("lookup")


# ---------------------------------------------------------------------------
# 2. Derivatives: symbolic vs sympy.diff vs finite differences vs tape
# ---------------------------------------------------------------------------

P = sp.Piecewise
# (id, expression, points as (x, y, z)); every point is inside the domain and
# away from kinks, ties and branch switches.
CASES = [
    ("add", x + y, [(0.3, -1.2, 0), (2.0, 0.5, 0), (-1.5, -0.7, 0)]),
    ("add3_const", sp.Add(x, 2 * y, z, sp.Float(1.5)), [(0.3, -1.2, 0.8), (2.0, 0.5, -1.0), (-1.5, -0.7, 3.0)]),
    ("mul", x * y, [(0.3, -1.2, 0), (2.0, 0.5, 0), (-1.5, -0.7, 0)]),
    ("mul3", x * y * z, [(0.3, -1.2, 0.8), (2.0, 0.5, -1.0), (-1.5, -0.7, 3.0)]),
    ("mul_composite", (x + 1) * sp.sin(y) * (z - 2), [(0.3, -1.2, 0.8), (2.0, 0.5, -1.0), (-1.5, -0.7, 3.0)]),
    ("div_sub", (x - y) / (x + y**2), [(0.3, -1.2, 0), (2.0, 0.5, 0), (-0.5, -1.7, 0)]),
    ("pow_cube", x**3, [(0.7, 0, 0), (-1.3, 0, 0), (2.2, 0, 0)]),
    ("pow_cube_composite", (x * y - 1)**3, [(0.7, 0.4, 0), (-1.3, 2.0, 0), (2.2, -0.6, 0)]),
    ("pow_square", (x - y)**2, [(0.7, 0.4, 0), (-1.3, 2.0, 0), (2.2, -0.6, 0)]),
    ("pow_recip", x**-1, [(0.7, 0, 0), (-1.3, 0, 0), (2.2, 0, 0)]),
    ("pow_recip_composite", 1 / (x * y + 2), [(0.7, 0.4, 0), (-1.3, 0.9, 0), (2.2, -0.6, 0)]),
    ("pow_neg2", (x + y)**-2, [(0.7, 0.4, 0), (-1.3, 0.9, 0), (2.2, -0.6, 0)]),
    ("sqrt", sp.sqrt(x), [(0.7, 0, 0), (1.3, 0, 0), (4.2, 0, 0)]),
    ("sqrt_composite", sp.sqrt(x**2 + y**2 + 1), [(0.7, 0.4, 0), (-1.3, 0.9, 0), (2.2, -0.6, 0)]),
    ("pow_2_5", x**2.5, [(0.7, 0, 0), (1.3, 0, 0), (4.2, 0, 0)]),
    ("pow_2_5_composite", (x * y + 1)**2.5, [(0.7, 0.4, 0), (1.3, 0.9, 0), (2.2, -0.3, 0)]),
    ("pow_symbolic", x**y, [(0.7, 0.4, 0), (1.3, -0.9, 0), (2.2, 2.5, 0)]),
    ("pow_symbolic_composite", (x**2 + 1)**sp.sin(y), [(0.7, 0.4, 0), (-1.3, -0.9, 0), (2.2, 2.5, 0)]),
    ("exp", sp.exp(x), [(0.7, 0, 0), (-1.3, 0, 0), (2.2, 0, 0)]),
    ("exp_composite", sp.exp(x * y - 1), [(0.7, 0.4, 0), (-1.3, -0.9, 0), (2.2, 0.5, 0)]),
    ("log", sp.log(x), [(0.7, 0, 0), (1.3, 0, 0), (4.2, 0, 0)]),
    ("log_composite", sp.log(x**2 + y**2), [(0.7, 0.4, 0), (-1.3, -0.9, 0), (2.2, 0.5, 0)]),
    ("log1p", log1p(x), [(0.7, 0, 0), (-0.5, 0, 0), (4.2, 0, 0)]),
    ("log1p_composite", log1p(x * y), [(0.7, 0.4, 0), (-1.3, 0.5, 0), (2.2, 0.5, 0)]),
    ("expm1", expm1(x), [(0.7, 0, 0), (-1.3, 0, 0), (1e-3, 0, 0)]),
    ("expm1_composite", expm1(x - y**2), [(0.7, 0.4, 0), (-1.3, -0.9, 0), (2.2, 0.5, 0)]),
    ("sin", sp.sin(x), [(0.7, 0, 0), (-1.3, 0, 0), (2.2, 0, 0)]),
    ("sin_composite", sp.sin(x * y + 1), [(0.7, 0.4, 0), (-1.3, -0.9, 0), (2.2, 0.5, 0)]),
    ("cos", sp.cos(x), [(0.7, 0, 0), (-1.3, 0, 0), (2.2, 0, 0)]),
    ("cos_composite", sp.cos(x**2 - y), [(0.7, 0.4, 0), (-1.3, -0.9, 0), (2.2, 0.5, 0)]),
    ("tan", sp.tan(x), [(0.7, 0, 0), (-1.3, 0, 0), (2.2, 0, 0)]),
    ("tan_composite", sp.tan(x * y), [(0.7, 0.4, 0), (-1.3, 0.9, 0), (2.2, 0.5, 0)]),
    ("asin", sp.asin(x), [(0.3, 0, 0), (-0.8, 0, 0), (0.95, 0, 0)]),
    ("asin_composite", sp.asin(x * y / 2), [(0.7, 0.4, 0), (-1.3, 0.9, 0), (1.1, -1.5, 0)]),
    ("acos", sp.acos(x), [(0.3, 0, 0), (-0.8, 0, 0), (0.95, 0, 0)]),
    ("acos_composite", sp.acos(x - y), [(0.7, 0.4, 0), (-0.3, 0.2, 0), (1.1, 1.5, 0)]),
    ("atan", sp.atan(x), [(0.7, 0, 0), (-1.3, 0, 0), (12.0, 0, 0)]),
    ("atan_composite", sp.atan(x * y - 1), [(0.7, 0.4, 0), (-1.3, -0.9, 0), (2.2, 0.5, 0)]),
    ("atan2", sp.atan2(y, x), [(1.3, 0.4, 0), (-0.8, 0.9, 0), (-1.1, -0.6, 0), (0.5, -1.7, 0)]),
    ("atan2_composite", sp.atan2(y**2 + 1, x * y), [(1.3, 0.4, 0), (-0.8, 0.9, 0), (0.5, -1.7, 0)]),
    ("sinh", sp.sinh(x), [(0.7, 0, 0), (-1.3, 0, 0), (2.2, 0, 0)]),
    ("sinh_composite", sp.sinh(x * y), [(0.7, 0.4, 0), (-1.3, -0.9, 0), (2.2, 0.5, 0)]),
    ("cosh", sp.cosh(x), [(0.7, 0, 0), (-1.3, 0, 0), (2.2, 0, 0)]),
    ("cosh_composite", sp.cosh(x - y), [(0.7, 0.4, 0), (-1.3, -0.9, 0), (2.2, 0.5, 0)]),
    ("tanh", sp.tanh(x), [(0.7, 0, 0), (-1.3, 0, 0), (2.2, 0, 0)]),
    ("tanh_composite", sp.tanh(x * y + 1), [(0.7, 0.4, 0), (-1.3, -0.9, 0), (2.2, 0.5, 0)]),
    ("erf", sp.erf(x), [(0.7, 0, 0), (-1.3, 0, 0), (2.2, 0, 0)]),
    ("erf_composite", sp.erf(x * y - 0.3), [(0.7, 0.4, 0), (-1.3, -0.9, 0), (2.2, 0.5, 0)]),
    ("abs", sp.Abs(x), [(0.7, 0, 0), (-1.3, 0, 0), (2.2, 0, 0)]),
    ("abs_composite", sp.Abs(x * y - 1), [(0.7, 0.4, 0), (-1.3, -0.9, 0), (2.2, -0.5, 0)]),
    ("sign_times", sp.sign(x) * x**2, [(0.7, 0, 0), (-1.3, 0, 0), (2.2, 0, 0)]),
    ("heaviside_times", sp.Heaviside(x - y) * x * y, [(0.7, 0.4, 0), (-1.3, -0.9, 0), (2.2, 2.5, 0)]),
    ("max", sp.Max(x, y), [(0.7, 0.4, 0), (-1.3, -0.9, 0), (2.2, 2.5, 0)]),
    ("max_composite", sp.Max(x**2, y + 1), [(0.7, 0.4, 0), (-1.3, -0.9, 0), (2.2, 2.5, 0)]),
    ("max3", sp.Max(x, y, z), [(0.7, 0.4, 0.1), (-1.3, -0.9, -2.0), (0.2, -0.5, 1.5)]),
    ("max3_composite", sp.Max(sp.sin(x), x * y, sp.Float(0.3)),
     [(0.7, 0.4, 0), (1.3, 0.9, 0), (-1.0, 0.1, 0), (-1.2, -0.9, 0)]),
    ("min", sp.Min(x, y), [(0.7, 0.4, 0), (-1.3, -0.9, 0), (2.2, 2.5, 0)]),
    ("min_composite", sp.Min(x**2, y + 1), [(0.7, 0.4, 0), (-1.3, -0.9, 0), (2.2, 2.5, 0)]),
    ("piecewise", P((x**2, x < 0), (sp.sin(x), True)), [(-1.2, 0, 0), (-0.4, 0, 0), (0.6, 0, 0), (1.7, 0, 0)]),
    ("piecewise_composite", P((x**2 * y, x < y), (sp.sin(x * y), True)),
     [(-1.2, 0.3, 0), (0.4, 1.1, 0), (0.6, -0.2, 0), (1.7, 0.9, 0)]),
    ("relu", sg.relu(x), [(0.7, 0, 0), (-1.3, 0, 0), (2.2, 0, 0)]),
    ("relu_composite", sg.relu(x * y - 0.5), [(0.7, 0.4, 0), (-1.3, -0.9, 0), (2.2, -0.5, 0)]),
    ("sigmoid", sg.sigmoid(x), [(0.7, 0, 0), (-1.3, 0, 0), (2.2, 0, 0)]),
    ("sigmoid_composite", sg.sigmoid(x * y + 1), [(0.7, 0.4, 0), (-1.3, -0.9, 0), (2.2, -0.5, 0)]),
    ("softplus", sg.softplus(x), [(0.7, 0, 0), (-1.3, 0, 0), (2.2, 0, 0)]),
    ("softplus_composite", sg.softplus(x - y**2), [(0.7, 0.4, 0), (-1.3, -0.9, 0), (2.2, -0.5, 0)]),
    ("mixed", x * sp.tanh(y) + sp.log(1 + x**2) / y + sg.relu(x - y) * sp.exp(-z**2),
     [(1.5, 0.7, 0.2), (-0.8, 1.3, -1.0), (0.3, -2.0, 0.6)]),
]

CASE_IDS = [c[0] for c in CASES]
_BY_ID = {c[0]: c for c in CASES}
PARAMS = [pytest.param(cid, k, id=f"{cid}-p{k}") for cid, _, pts in CASES for k in range(len(pts))]


def _wrt(expr) -> list:
    return sorted(expr.free_symbols, key=lambda s: s.name)


def _point(cid: str, k: int) -> dict:
    _, expr, pts = _BY_ID[cid]
    full = dict(zip((x, y, z), pts[k]))
    return {s: float(full[s]) for s in _wrt(expr)}


@functools.lru_cache(maxsize=None)
def _derivatives(cid: str):
    """symgrad's gradient and sympy.diff's (on real symbols), computed once per case."""
    _, expr, _ = _BY_ID[cid]
    wrt = _wrt(expr)
    ours = sg.grad(expr, wrt)
    real_expr = expr.xreplace(REAL)
    theirs = [sp.diff(real_expr, REAL[w]) for w in wrt]
    return expr, wrt, ours, theirs


def test_cases_cover_every_differentiable_builtin():
    """Every op that can carry a gradient appears in some CASES expression."""
    used = set()
    for _, expr, _ in CASES:
        for node in sp.preorder_traversal(expr):
            op = registry.lookup_op(node)
            if op is not None:
                used.add(op.name)
    smooth_or_kinked = set(REQUIRED) | {"atan2", "heaviside"}
    assert smooth_or_kinked - used == set()


@pytest.mark.parametrize("cid, k", PARAMS)
def test_symbolic_matches_sympy_diff(cid, k):
    expr, wrt, ours, theirs = _derivatives(cid)
    pt = _point(cid, k)
    real_pt = {REAL[s]: v for s, v in pt.items()}
    for w, g, ref in zip(wrt, ours, theirs):
        expected = _num(ref.subs(real_pt))
        got = evaluate(g, pt)
        assert got == pytest.approx(expected, rel=1e-10, abs=1e-12), (w, g, ref)
        # the symbolic result also evaluates with SymPy itself
        assert _num(g.subs(pt)) == pytest.approx(expected, rel=1e-10, abs=1e-12), (w, g)


@pytest.mark.parametrize("cid, k", PARAMS)
def test_symbolic_matches_finite_differences(cid, k):
    expr, wrt, ours, _ = _derivatives(cid)
    pt = _point(cid, k)
    fd = finite_differences(expr, wrt, pt)
    for j, (w, g) in enumerate(zip(wrt, ours)):
        assert evaluate(g, pt) == pytest.approx(float(fd[j]), rel=1e-6, abs=1e-8), (w, g)


@pytest.mark.parametrize("cid, k", PARAMS)
def test_symbolic_matches_tape(cid, k):
    expr, wrt, ours, _ = _derivatives(cid)
    pt = _point(cid, k)
    value, tape = replay(expr, pt)
    assert value == pytest.approx(_num(expr.subs(pt)), rel=1e-10, abs=1e-12)
    for w, g in zip(wrt, ours):
        assert tape[w] == pytest.approx(evaluate(g, pt), rel=1e-10, abs=1e-12), (w, g)


def test_pow_constant_exponent_rules_have_known_values():
    """Closed forms of the special-cased Pow rules, at x = 4."""
    pt = {x: 4.0}
    assert evaluate(sg.derivative(sp.sqrt(x), x), pt) == pytest.approx(0.25, rel=1e-15)
    assert evaluate(sg.derivative(1 / x, x), pt) == pytest.approx(-1 / 16, rel=1e-15)
    assert evaluate(sg.derivative(x**2, x), pt) == pytest.approx(8.0, rel=1e-15)
    assert evaluate(sg.derivative(x**3, x), pt) == pytest.approx(48.0, rel=1e-15)
    assert evaluate(sg.derivative(x**2.5, x), pt) == pytest.approx(2.5 * 8.0, rel=1e-15)


# ---------------------------------------------------------------------------
# 3. Kink conventions (PyTorch's)
# ---------------------------------------------------------------------------

KINKS = [
    # (id, expression, point, expected gradient in the order of wrt)
    ("relu_at_0", sg.relu(x), {x: 0.0}, [x], [0.0]),
    ("relu_diff_at_tie", sg.relu(x - y), {x: 0.8, y: 0.8}, [x, y], [0.0, 0.0]),
    ("abs_at_0", sp.Abs(x), {x: 0.0}, [x], [0.0]),
    ("abs_composite_at_0", sp.Abs(x * y - 1), {x: 2.0, y: 0.5}, [x, y], [0.0, 0.0]),
    ("sign_at_0", sp.sign(x), {x: 0.0}, [x], [0.0]),
    ("sign_at_neg", sp.sign(x), {x: -1.5}, [x], [0.0]),
    ("sign_at_pos", sp.sign(x), {x: 2.5}, [x], [0.0]),
    ("max_tie", sp.Max(x, y), {x: 1.0, y: 1.0}, [x, y], [0.5, 0.5]),
    ("max_tie_scaled", 3 * sp.Max(x, y), {x: -0.25, y: -0.25}, [x, y], [1.5, 1.5]),
    ("min_tie", sp.Min(x, y), {x: 1.0, y: 1.0}, [x, y], [0.5, 0.5]),
    ("min_tie_neg", sp.Min(x, y), {x: -2.0, y: -2.0}, [x, y], [0.5, 0.5]),
    ("heaviside_at_0", sp.Heaviside(x), {x: 0.0}, [x], [0.0]),
    ("heaviside0_at_0", sp.Heaviside(x, 0), {x: 0.0}, [x], [0.0]),
    ("heaviside_at_pos", sp.Heaviside(x), {x: 1.5}, [x], [0.0]),
    ("heaviside_times_x_at_0", sp.Heaviside(x) * x, {x: 0.0}, [x], [0.5]),
    ("floor", sp.floor(x), {x: 1.5}, [x], [0.0]),
    ("ceiling", sp.ceiling(x), {x: -1.5}, [x], [0.0]),
]


@pytest.mark.parametrize("cid, expr, pt, wrt, expected", KINKS, ids=[k[0] for k in KINKS])
def test_kink_convention_symbolic(cid, expr, pt, wrt, expected):
    g = sg.grad(expr, wrt)
    assert [evaluate(gi, pt) for gi in g] == expected
    subs_vals = [gi.subs(pt).evalf() for gi in g]
    assert all(v.is_Number for v in subs_vals), subs_vals
    assert [float(v) for v in subs_vals] == expected


@pytest.mark.parametrize("cid, expr, pt, wrt, expected", KINKS, ids=[k[0] for k in KINKS])
def test_kink_convention_tape(cid, expr, pt, wrt, expected):
    _, grads = replay(expr, pt)
    assert [grads[w] for w in wrt] == expected


def test_kink_conventions_value_api():
    a = sg.Value(0.0)
    r = a.relu()
    r.backward()
    assert (r.data, a.grad) == (0.0, 0.0)

    a = sg.Value(0.0)
    m = abs(a)
    m.backward()
    assert (m.data, a.grad) == (0.0, 0.0)

    a, b = sg.Value(2.0), sg.Value(2.0)
    m = sg.tape.apply("max", a, b)
    m.backward()
    assert (m.data, a.grad, b.grad) == (2.0, 0.5, 0.5)

    a, b = sg.Value(-1.0), sg.Value(-1.0)
    m = sg.tape.apply("min", a, b)
    m.backward()
    assert (m.data, a.grad, b.grad) == (-1.0, 0.5, 0.5)


def test_max3_full_tie_symbolic_and_tape_agree():
    """Three-way tie: the binarised Max splits 1/2 to the last input and 1/4
    to each of the other two; symbolic and tape agree and the total is 1."""
    f = sp.Max(x, y, z)
    pt = {x: 0.5, y: 0.5, z: 0.5}
    sym = [evaluate(g, pt) for g in sg.grad(f, [x, y, z])]
    _, tape = replay(f, pt)
    assert sym == [tape[x], tape[y], tape[z]]
    assert sum(sym) == 1.0
    assert sorted(sym) == [0.25, 0.25, 0.5]


# ---------------------------------------------------------------------------
# 4. Real-valued semantics
# ---------------------------------------------------------------------------

_BAD_ATOMS = (sp.re, sp.im, sp.Derivative)


def test_abs_derivative_is_sign_on_plain_symbol():
    d = sg.derivative(sp.Abs(x), x)
    assert d == sp.sign(x)
    assert d.atoms(*_BAD_ATOMS) == set()
    # SymPy itself would give re/im/Derivative here for a non-real symbol
    assert sp.diff(sp.Abs(x), x).atoms(*_BAD_ATOMS) != set()
    for v, expected in ((-2.0, -1.0), (0.5, 1.0), (0.0, 0.0)):
        assert evaluate(d, {x: v}) == expected
        assert float(d.subs(x, v)) == expected


def test_sqrt_of_square_derivative_is_real():
    d = sg.derivative(sp.sqrt(x**2), x)
    assert d.atoms(*_BAD_ATOMS) == set()
    for v in (-2.0, -0.3, 0.5, 3.0):
        assert evaluate(d, {x: v}) == pytest.approx(math.copysign(1.0, v), rel=1e-15)
        assert _num(d.subs(x, v)) == pytest.approx(math.copysign(1.0, v), rel=1e-15)


def test_abs_of_product_derivative_is_real():
    gx, gy = sg.grad(sp.Abs(x * y), [x, y])
    for g in (gx, gy):
        assert g.atoms(*_BAD_ATOMS) == set()
    assert sp.simplify(gx - y * sp.sign(x * y)) == 0
    assert sp.simplify(gy - x * sp.sign(x * y)) == 0
    for xv, yv in ((1.5, -0.5), (-2.0, -3.0), (0.25, 4.0)):
        pt = {x: xv, y: yv}
        s = math.copysign(1.0, xv * yv)
        assert evaluate(gx, pt) == pytest.approx(yv * s, rel=1e-15)
        assert evaluate(gy, pt) == pytest.approx(xv * s, rel=1e-15)


# ---------------------------------------------------------------------------
# 5. Symbolic derivatives evaluate to numbers with subs/evalf
# ---------------------------------------------------------------------------

ACTIVATION_MIX = (sg.relu(x - y) * sg.sigmoid(x * y) + sg.softplus(x - 2 * y)
                  + sp.Heaviside(x - y) * x + sg.relu(y - x) ** 2)


@pytest.mark.parametrize("pt", [{x: 1.5, y: 0.7}, {x: -0.4, y: 1.1}, {x: 0.7, y: 0.7}],
                         ids=["x>y", "x<y", "kink"])
def test_activation_derivatives_evaluate_with_subs(pt):
    grads = sg.grad(ACTIVATION_MIX, [x, y])
    _, tape = replay(ACTIVATION_MIX, pt)
    for w, g in zip((x, y), grads):
        v = g.subs(pt).evalf()
        assert v.is_Number, (g, v)
        assert float(v) == pytest.approx(tape[w], rel=1e-10, abs=1e-12)
        assert evaluate(g, pt) == pytest.approx(tape[w], rel=1e-10, abs=1e-12)


def test_activation_derivatives_known_values_at_kink():
    """At x == y: relu' = 0, Heaviside(0) = 1/2, so d/dx = 1/2 + sigmoid(x - 2y)."""
    pt = {x: 0.7, y: 0.7}
    gx, gy = sg.grad(ACTIVATION_MIX, [x, y])
    s = 1.0 / (1.0 + math.exp(0.7))  # sigmoid(-0.7)
    assert float(gx.subs(pt).evalf()) == pytest.approx(0.5 + s, rel=1e-12)
    assert float(gy.subs(pt).evalf()) == pytest.approx(-2 * s, rel=1e-12)


# ---------------------------------------------------------------------------
# 6. Custom ops
# ---------------------------------------------------------------------------

def _softsign(a: float) -> float:
    return a / (1.0 + abs(a))


@pytest.fixture
def softsign_t():
    head = sp.Function("softsign_t")
    _unregister("softsign_t")
    op = sg.register_op(head, forward=_softsign,
                        partials=lambda out, a: (1 / (1 + sp.Abs(a))**2,))
    yield head, op
    _unregister("softsign_t")


def _fd1(f, a: float, h: float = 1e-6) -> float:
    return (f(a + h) - f(a - h)) / (2 * h)


def test_custom_op_grad_tape_and_value_method(softsign_t):
    head, op = softsign_t
    assert op.name == "softsign_t" and op.arity == 1 and op.forward is _softsign
    assert sg.get_op("softsign_t") is op
    f = head(x * y) + x
    for pt in ({x: 0.5, y: 1.5}, {x: -1.2, y: 0.8}, {x: 2.0, y: -0.3}):
        g = sg.grad(f, [x, y])
        fd = finite_differences(f, [x, y], pt)
        _, tape = replay(f, pt)
        u = pt[x] * pt[y]
        dsoft = 1.0 / (1.0 + abs(u))**2  # known closed form
        expected = [dsoft * pt[y] + 1.0, dsoft * pt[x]]
        for j, w in enumerate((x, y)):
            assert evaluate(g[j], pt) == pytest.approx(expected[j], rel=1e-12)
            assert tape[w] == pytest.approx(expected[j], rel=1e-12)
            assert float(fd[j]) == pytest.approx(expected[j], rel=1e-6)
    # the tape engine grew a method for the new op
    v = sg.Value(0.5)
    out = v.softsign_t()
    out.backward()
    assert out.data == pytest.approx(1 / 3, rel=1e-15)
    assert v.grad == pytest.approx(_fd1(_softsign, 0.5), rel=1e-6)
    assert v.grad == pytest.approx(1 / 2.25, rel=1e-12)


def test_register_op_same_head_twice(softsign_t):
    head, op = softsign_t
    with pytest.raises(ValueError, match="already registered"):
        sg.register_op(head, forward=_softsign, partials=lambda out, a: (1 / (1 + sp.Abs(a))**2,))
    assert sg.get_op("softsign_t") is op
    # replace=True swaps the rules: here a deliberately different (scaled) op
    new = sg.register_op(head, forward=lambda a: 2 * _softsign(a),
                         partials=lambda out, a: (2 / (1 + sp.Abs(a))**2,), replace=True)
    assert sg.get_op("softsign_t") is new
    value, tape = replay(head(x), {x: 0.5})
    assert value == pytest.approx(2 / 3, rel=1e-15)
    assert tape[x] == pytest.approx(2 / 2.25, rel=1e-12)
    assert evaluate(sg.derivative(head(x), x), {x: 0.5}) == pytest.approx(2 / 2.25, rel=1e-12)


def test_register_op_decorator_form():
    head = sp.Function("cubic_dec_t")
    _unregister("cubic_dec_t")
    try:
        @sg.register_op(head, partials=lambda out, a: (3 * a**2 + 1,))
        def cubic(a):
            return a**3 + a

        assert cubic(2.0) == 10.0  # the decorator returns the function itself
        op = sg.get_op("cubic_dec_t")
        assert op.forward is cubic
        f = head(sp.sin(x))
        for xv in (-1.1, 0.3, 2.0):
            pt = {x: xv}
            expected = (3 * math.sin(xv)**2 + 1) * math.cos(xv)
            assert evaluate(sg.derivative(f, x), pt) == pytest.approx(expected, rel=1e-12)
            assert replay(f, pt)[1][x] == pytest.approx(expected, rel=1e-12)
            assert float(finite_differences(f, [x], pt)[0]) == pytest.approx(expected, rel=1e-6)
    finally:
        _unregister("cubic_dec_t")


class hypot_t(sp.Function):
    """A user subclass of sp.Function (two inputs, no SymPy derivative)."""

    nargs = 2


def test_user_function_subclass_with_tape_partials():
    calls = []

    def tape_partials(out, a, b):
        calls.append((out, a, b))
        return (a / out, b / out)

    _unregister("hypot_t")
    try:
        op = sg.register_op(hypot_t, forward=math.hypot,
                            partials=lambda out, a, b: (a / out, b / out),
                            tape_partials=tape_partials)
        assert op.arity == 2 and op.tape_partials is tape_partials
        f = hypot_t(x * y, x + 1)
        for pt in ({x: 0.5, y: 1.5}, {x: -2.0, y: 0.8}, {x: 1.3, y: -0.4}):
            xv, yv = pt[x], pt[y]
            r = math.hypot(xv * yv, xv + 1)
            expected = [(xv * yv * yv + (xv + 1)) / r, xv * yv * xv / r]
            g = sg.grad(f, [x, y])
            fd = finite_differences(f, [x, y], pt)
            value, tape = replay(f, pt)
            assert value == pytest.approx(r, rel=1e-15)
            for j, w in enumerate((x, y)):
                assert evaluate(g[j], pt) == pytest.approx(expected[j], rel=1e-12)
                assert tape[w] == pytest.approx(expected[j], rel=1e-12)
                assert float(fd[j]) == pytest.approx(expected[j], rel=1e-6)
        assert len(calls) == 3  # the explicit tape rule was the one used
        a, b = sg.Value(3.0), sg.Value(4.0)
        out = a.hypot_t(b)
        out.backward()
        assert (out.data, a.grad, b.grad) == (5.0, pytest.approx(0.6), pytest.approx(0.8))
    finally:
        _unregister("hypot_t")


def test_custom_op_default_tape_partials_evaluate_symbolic_rule():
    head = sp.Function("sq_default_t")
    _unregister("sq_default_t")
    try:
        sg.register_op(head, forward=lambda a: a * a, partials=lambda out, a: (2 * a,))
        _, tape = replay(head(sp.exp(x)), {x: 0.4})
        assert tape[x] == pytest.approx(2 * math.exp(0.8), rel=1e-12)
    finally:
        _unregister("sq_default_t")


def test_register_op_rejects_non_class_head():
    with pytest.raises(TypeError, match="head"):
        sg.register_op("notahead", forward=abs, partials=lambda out, a: (1,))


# ---------------------------------------------------------------------------
# 7. Errors
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("expr, fname", [
    (sp.Function("mystery")(x), "mystery"),
    (sp.Function("mystery")(x) * sp.sin(x) + 1, "mystery"),
    (sp.gamma(x), "gamma"),
])
def test_unregistered_function_raises_unsupported(expr, fname):
    with pytest.raises(sg.UnsupportedOperation) as info:
        sg.grad(expr, [x])
    msg = str(info.value)
    assert fname in msg and "register_op" in msg
    with pytest.raises(sg.UnsupportedOperation, match=fname):
        replay(expr, {x: 0.5})
    with pytest.raises(sg.UnsupportedOperation, match=fname):
        evaluate(expr, {x: 0.5})


def test_complex_expression_raises_unsupported():
    with pytest.raises(sg.UnsupportedOperation, match="complex"):
        sg.grad(sp.I * x, [x])
    with pytest.raises(sg.UnsupportedOperation):
        sg.grad(sp.exp(sp.I * x) + x, [x])


@pytest.mark.parametrize("wrt", [[x**2], [1], [x, sp.sin(y)]], ids=["pow", "int", "sin"])
def test_wrt_with_non_symbols_raises_typeerror(wrt):
    with pytest.raises(TypeError, match="not a SymPy Symbol"):
        sg.grad(x**2 * sp.sin(y), wrt)


def test_wrt_string_raises_typeerror():
    with pytest.raises(TypeError, match="list of symbols"):
        sg.grad(x**2, "x")


def test_wrt_bare_symbol_raises_typeerror_mentioning_list():
    with pytest.raises(TypeError, match=r"list") as info:
        sg.grad(x**2, x)
    assert "[x]" in str(info.value)


def test_string_f_raises_typeerror():
    with pytest.raises(TypeError, match="string"):
        sg.grad("x**2", [x])
    with pytest.raises(TypeError, match="string"):
        sg.derivative("x**2", x)


def test_plain_number_f_has_zero_gradient():
    assert sg.grad(3.5, [x]) == [0]
    assert sg.grad(2, [x, y]) == [0, 0]


def test_partials_with_wrong_count_raises_valueerror():
    head = sp.Function("badrule_t")
    _unregister("badrule_t")
    try:
        sg.register_op(head, forward=lambda a: a, partials=lambda out, a: (1, 2))
        with pytest.raises(ValueError, match="badrule_t") as info:
            sg.grad(head(x**2), [x])
        assert "2 entries" in str(info.value) and "1 input" in str(info.value)
        # the tape engine rejects it too instead of silently dropping gradients
        with pytest.raises(ValueError, match="badrule_t"):
            replay(head(x**2), {x: 1.5})
    finally:
        _unregister("badrule_t")


@pytest.mark.parametrize("bad", [(), (1.0, 2.0)], ids=["too_few", "too_many"])
def test_tape_partials_with_wrong_count_raises_valueerror(bad):
    head = sp.Function("badtape_t")
    _unregister("badtape_t")
    try:
        sg.register_op(head, forward=lambda a: 3.0 * a, partials=lambda out, a: (3,),
                       tape_partials=lambda out, a: bad)
        # the symbolic side is fine: d/dx 2*badtape_t(x) = 6
        assert evaluate(sg.derivative(2 * head(x), x), {x: 1.0}) == 6.0
        with pytest.raises(ValueError, match="badtape_t"):
            replay(2 * head(x), {x: 1.0})
    finally:
        _unregister("badtape_t")


# ---------------------------------------------------------------------------
# 8. compiler.runtime numeric conventions
# ---------------------------------------------------------------------------

def test_runtime_out_of_domain_and_poles():
    assert math.isnan(R.log(-1.0))
    assert R.log(0.0) == -math.inf
    assert R.log(math.e) == pytest.approx(1.0, rel=1e-15)
    assert math.isnan(R.log1p(-2.0))
    assert R.log1p(-1.0) == -math.inf
    assert R.pow(0.0, -1.0) == math.inf
    assert R.pow(0.0, 0.0) == 1.0
    assert R.pow(0.0, 2.0) == 0.0
    assert math.isnan(R.pow(-1.0, 0.5))
    assert R.pow(-2.0, 3.0) == -8.0
    assert R.pow(10.0, 400.0) == math.inf
    assert R.div(1.0, 0.0) == math.inf
    assert R.div(-1.0, 0.0) == -math.inf
    assert R.div(1.0, -0.0) == -math.inf
    assert math.isnan(R.div(0.0, 0.0))
    assert R.div(3.0, 4.0) == 0.75
    assert math.isnan(R.asin(2.0)) and math.isnan(R.acos(-1.5))
    assert R.exp(1000.0) == math.inf
    assert R.cosh(1000.0) == math.inf
    assert R.sinh(-1000.0) == -math.inf
    assert math.isnan(R.sin(math.inf))


def test_runtime_stable_activations():
    assert R.sigmoid(-1000.0) == 0.0
    assert R.sigmoid(1000.0) == 1.0
    assert R.sigmoid(0.0) == 0.5
    assert R.sigmoid(-2.0) == pytest.approx(1 / (1 + math.exp(2.0)), rel=1e-15)
    assert R.softplus(1000.0) == 1000.0
    sp_neg = R.softplus(-1000.0)
    assert math.isfinite(sp_neg) and sp_neg == pytest.approx(0.0, abs=1e-300)
    assert R.softplus(0.0) == pytest.approx(math.log(2.0), rel=1e-15)
    assert R.softplus(2.0) == pytest.approx(math.log1p(math.exp(2.0)), rel=1e-15)
    assert R.relu(-3.0) == 0.0 and R.relu(2.5) == 2.5 and R.relu(0.0) == 0.0
    assert math.isnan(R.relu(math.nan))


def test_runtime_kinks_and_logic():
    assert R.sign(0.0) == 0.0 and R.sign(-2.0) == -1.0 and R.sign(3.0) == 1.0
    assert R.heaviside(0.0, 0.25) == 0.25 and R.heaviside(-1.0, 0.5) == 0.0
    assert R.max2(1.0, 2.0) == 2.0 and R.min2(1.0, 2.0) == 1.0
    assert math.isnan(R.max2(math.nan, 1.0)) and math.isnan(R.min2(1.0, math.nan))
    assert R.piecewise(1.0, 0.0, 2.0, 1.0) == 2.0
    assert math.isnan(R.piecewise(1.0, 0.0))
    assert R.and_(1.0, 1.0) == 1.0 and R.or_(0.0, 0.0) == 0.0 and R.not_(0.0) == 1.0


def test_tape_handles_overflowing_activations():
    for v, s_expected, sp_expected in ((-1000.0, 0.0, 0.0), (1000.0, 1.0, 1000.0)):
        a = sg.Value(v)
        out = a.sigmoid()
        out.backward()
        assert out.data == s_expected and a.grad == 0.0
        b = sg.Value(v)
        out = b.softplus()
        out.backward()
        assert out.data == pytest.approx(sp_expected, abs=1e-300)
        assert b.grad == s_expected
