"""The formula parser: golden equalities with SymPy constructions, errors with
columns, size limits, user ops, and fuzzing (never anything but a SymPy
expression or FormulaError, never any code run)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sympy.codegen.cfunctions import expm1, log1p

import symgrad as sg
from symgrad.evaluate import evaluate
from symgrad.ops import registry
from symgrad.parse import (
    MAX_DEPTH,
    MAX_HYPERBOLIC_DEPTH,
    MAX_LENGTH,
    FormulaError,
    functions,
    parse_formula,
)

x, y, z, w, b = sp.symbols("x y z w b")
P = parse_formula


# ---------------------------------------------------------------------------
# 1. Golden equalities
# ---------------------------------------------------------------------------

GOLDEN = [
    ("x*tanh(y) + relu(x - y)", x * sp.tanh(y) + sg.relu(x - y)),
    ("log(1 + exp(w*x + b))", sp.log(1 + sp.exp(w * x + b))),
    ("x", x),
    ("  x\t+\ny ", x + y),
    ("42", sp.Integer(42)),
    ("007", sp.Integer(7)),
    ("1.5", sp.Float("1.5")),
    ("1.", sp.Float(1.0)),
    (".25", sp.Float(0.25)),
    ("1e3", sp.Float(1000.0)),
    ("2.5E-3", sp.Float("0.0025")),
    ("1e+2", sp.Float(100.0)),
    ("x - y - z", x - y - z),
    ("x - (y - z)", x - (y - z)),
    ("x / y / z", x / y / z),
    ("x / (y / z)", x / (y / z)),
    ("x*y/z*w", x * y / z * w),
    ("1/2", sp.Rational(1, 2)),
    ("1/2 + 1/3", sp.Rational(5, 6)),
    ("-x**2", -(x**2)),
    ("-x^2", -(x**2)),
    ("(-x)**2", x**2),
    ("x^2", x**2),
    ("2^3^2", sp.Integer(512)),
    ("2**3**2", sp.Integer(512)),
    ("(2^3)^2", sp.Integer(64)),
    ("2**-1", sp.Rational(1, 2)),
    ("x**-y**2", x**(-(y**2))),
    ("-2**2", sp.Integer(-4)),
    ("--x", x),
    ("-+-x", x),
    ("+x", x),
    ("x*-y", -x * y),
    ("x - -y", x + y),
    ("2*x + 3*x", 5 * x),
    ("x**y**z", x**(y**z)),
    ("exp(x)**2", sp.exp(x)**2),
    ("sqrt(x)", sp.sqrt(x)),
    ("x**0.5", x**sp.Float(0.5)),
    ("pi*x", sp.pi * x),
    ("sin(2*pi*x)", sp.sin(2 * sp.pi * x)),
    ("max(x, y, 3)", sp.Max(x, y, 3)),
    ("min(x, 0)", sp.Min(x, 0)),
    ("atan2(y, x)", sp.atan2(y, x)),
    ("heaviside(x)", sp.Heaviside(x)),
    ("heaviside(x, 0)", sp.Heaviside(x, 0)),
    ("Heaviside(x - y, 0)", sp.Heaviside(x - y, 0)),
    ("log(x, 2)", sp.log(x, 2)),
    ("ln(x)", sp.log(x)),
    ("ceil(x) + ceiling(y)", sp.ceiling(x) + sp.ceiling(y)),
    ("abs(x) + Abs(y)", sp.Abs(x) + sp.Abs(y)),
    ("Max(x, y) * Min(x, y)", sp.Max(x, y) * sp.Min(x, y)),
    ("sigmoid(x)*softplus(y)", sg.sigmoid(x) * sg.softplus(y)),
    ("log1p(x) + expm1(y)", log1p(x) + expm1(y)),
    ("relu(relu(x))", sg.relu(sg.relu(x))),
    ("x_1 + X2 + _t", sp.Symbol("x_1") + sp.Symbol("X2") + sp.Symbol("_t")),
    ("1/0", sp.zoo),
    ("2**1000", sp.Integer(2)**1000),
    ("x**(10**3000)", x**(sp.Integer(10)**3000)),
    ("1e308*10", sp.Float(1e308) * 10),
    ("1e-310", sp.Float("1e-310")),
]


@pytest.mark.parametrize("text, expected", GOLDEN, ids=[t for t, _ in GOLDEN])
def test_golden(text, expected):
    got = P(text)
    assert got == expected
    assert sp.srepr(got) == sp.srepr(expected)


def test_result_is_a_normal_sympy_expression():
    f = P("x*tanh(y) + relu(x - y)")
    assert sg.grad(f, [x, y]) == [sp.tanh(y) + sp.Heaviside(x - y, 0),
                                  x * (1 - sp.tanh(y)**2) - sp.Heaviside(x - y, 0)]
    assert float(f.subs({x: 1.5, y: 0.7})) == pytest.approx(1.5 * 0.6043677771171636 + 0.8)


def test_sums_and_products_evaluate_pairwise_like_python():
    # SymPy distributes a number over a sum in a two-factor product, and a
    # float quotient is rounded once: as in Python, a*b/c is (a*b)/c
    assert P("2*(x + 1)*y") == 2 * (x + 1) * y == (2 * x + 2) * y
    assert P("1.5/5") == sp.Float(1.5) / 5
    assert P("1.5*2/5*x") == sp.Float(1.5) * 2 / 5 * x
    assert P("x - y + 0.1 + 0.2") == x - y + sp.Float(0.1) + sp.Float(0.2)


def test_long_chains_are_built_flat():
    terms = [f"{k}*v{k}" for k in range(1, 41)]
    syms = sp.symbols("v1:41")
    assert P(" + ".join(terms)) == sp.Add(*[k * s for k, s in zip(range(1, 41), syms)])
    assert P("*".join(map(str, syms)) + "/x") == sp.Mul(*syms) / x
    assert P("2*(x + 1)" + "*y" * 40) == sp.Mul(2, x + 1, y**40)  # flat: not distributed


def test_symbols_argument():
    xp = sp.Symbol("x", positive=True)
    f = P("sqrt(x**2) + y", symbols={"x": xp, "y": sp.Integer(3)})
    assert f == xp + 3
    assert P("pi + 1", symbols={"pi": sp.Symbol("pi")}) == sp.Symbol("pi") + 1
    with pytest.raises(TypeError, match="symbols must map names"):
        P("x", symbols={"x": 1.5})


def test_plain_symbols_are_sympys_default_symbols():
    assert P("x") is sp.Symbol("x")
    assert P("x").assumptions0 == sp.Symbol("x").assumptions0


# str() of SymPy's results parses as SymPy's own parser (which evals) reads it
_SYMPY_NAMES = {"relu": sg.relu, "sigmoid": sg.sigmoid, "softplus": sg.softplus}
ROUND_TRIP = [
    x * sp.tanh(y) + sg.relu(x - y),
    sp.log(1 + sp.exp(w * x + b)),
    sp.Max(x, y) + sp.Abs(x - 1) / sp.sqrt(y) + sp.Heaviside(x, 0),
    sp.atan2(y, x) * sg.sigmoid(x)**3 - sp.Rational(3, 7) * sp.pi,
    sp.erf(x) * sp.floor(y) + sp.sign(x) - sp.ceiling(z) + sg.softplus(-x),
]


@pytest.mark.parametrize("expr", ROUND_TRIP, ids=str)
def test_str_round_trip(expr):
    assert P(str(expr)) == expr
    for d in sg.grad(expr, [x, y]):
        text = str(d)
        assert P(text) == sp.parse_expr(text, local_dict=_SYMPY_NAMES)
        assert sp.expand(P(text) - d) == 0


# ---------------------------------------------------------------------------
# 2. Every function of the op table, and user-registered ops
# ---------------------------------------------------------------------------

def test_function_table_has_the_documented_names():
    names = set(functions())
    assert {"sin", "cos", "tan", "exp", "log", "sqrt", "abs", "tanh", "sinh", "cosh", "asin",
            "acos", "atan", "atan2", "erf", "log1p", "expm1", "sigmoid", "relu", "softplus",
            "max", "min", "floor", "ceiling", "sign", "heaviside"} <= names
    # ops that are not functions of a formula
    assert not names & {"add", "mul", "pow", "lt", "and", "or", "not", "piecewise"}


def _call_arities(fn):
    if fn.arities[-1] is None:
        return (fn.arities[0], fn.arities[0] + 1)
    return fn.arities


@pytest.mark.parametrize("name", sorted(functions()))
def test_every_function_by_name(name):
    fn = functions()[name]
    for n in _call_arities(fn):
        args = (x, y, z)[:n]
        text = f"{name}({', '.join(map(str, args))})"
        assert P(text) == fn.head(*args), text
        # and the result lowers and differentiates (it is a supported op)
        sg.gradient_program(P(text), [x])


def test_every_builtin_unary_op_by_its_op_name():
    for op in sg.all_ops():
        if op.arity == 1 and op.name.isidentifier() and isinstance(op.impl, str):
            assert P(f"{op.name}(x)") == op.head(x), op.name


class parse_test_cube(sp.Function):
    """A user function for the tests: x**3 + x."""

    nargs = 1


_unregister = sg.unregister_op


@pytest.fixture
def cube_op():
    _unregister("parse_test_cube")
    op = sg.register_op(parse_test_cube, forward=lambda a: a**3 + a,
                        partials=lambda out, a: (3 * a**2 + 1,))
    yield op
    _unregister("parse_test_cube")


def test_user_registered_op_is_callable_by_name(cube_op):
    f = P("parse_test_cube(x*y) + 1")
    assert f == parse_test_cube(x * y) + 1
    assert sg.grad(f, [x]) == [y * (3 * x**2 * y**2 + 1)]
    with pytest.raises(FormulaError, match="takes 1 argument but 2 were given"):
        P("parse_test_cube(x, y)")


def test_user_op_unknown_after_unregistering(cube_op):
    _unregister("parse_test_cube")
    with pytest.raises(FormulaError, match="unknown function 'parse_test_cube'"):
        P("parse_test_cube(x)")


# ---------------------------------------------------------------------------
# 3. Errors: column and what was expected
# ---------------------------------------------------------------------------

ERRORS = [
    ("x*(y", "column 5: expected ')' but found end of formula"),
    ("x*(y+1", "column 7: expected ')' but found end of formula"),
    ("(x))", "column 4: expected an operator or end of formula but found ')'"),
    ("", "column 1: expected a number, a name or '(' but found end of formula"),
    ("x +", "column 4: expected a number, a name or '(' but found end of formula"),
    ("x * * y", "column 5: expected a number, a name or '(' but found '*'"),
    ("2x", ("column 2: expected an operator or end of formula but found 'x' "
           "(no implicit multiplication: write 2*x)")),
    ("x y", ("column 3: expected an operator or end of formula but found 'y' "
            "(no implicit multiplication: write x*y)")),
    ("(x)(y)", ("column 4: expected an operator or end of formula but found '(' "
               "(no implicit multiplication: insert '*' before it)")),
    ("tanh(2y)", ("column 7: expected ',' or ')' but found 'y' "
                 "(no implicit multiplication: write 2*y)")),
    ("max(x,)", "column 7: expected a number, a name or '(' but found ')'"),
    ("x.real", "column 2: '.' is not allowed here (no attribute access; numbers look like 1.5)"),
    ("'x'", "column 1: strings are not allowed"),
    ('x + "y"', "column 5: strings are not allowed"),
    ("a[0]", "column 2: brackets are not allowed; use parentheses ( )"),
    ("{x}", "column 1: brackets are not allowed; use parentheses ( )"),
    ("x = 1", "column 3: comparisons and assignments are not supported"),
    ("x < y", "column 3: comparisons and assignments are not supported"),
    ("x!", "column 2: '!' is not supported (no factorials or comparisons)"),
    ("x % 2", "column 3: unexpected character '%'"),
    ("x @ y", "column 3: unexpected character '@'"),
    ("x; y", "column 2: unexpected character ';'"),
    ("α + 1", "column 1: unexpected character 'α' (U+03B1); names use ASCII letters, digits and _"),
    ("x ＋ 1", "column 3: unexpected character '＋' (U+FF0B)"),
    ("lambda + 1", "column 1: 'lambda' is a Python keyword, not a name a formula can use"),
    ("import", "column 1: 'import' is a Python keyword, not a name a formula can use"),
    ("x + __class__", "column 5: names starting with '__' are not allowed ('__class__')"),
    ("tanh + 1", "column 1: 'tanh' is a function; call it as tanh(...)"),
    ("1e999", "column 1: 1e999 is outside the range of a 64-bit float (about 1e-308 to 1e308)"),
    ("x + 1e-400", ("column 5: 1e-400 is outside the range of a 64-bit float "
                   "(about 1e-308 to 1e308)")),
]


@pytest.mark.parametrize("text, message", ERRORS, ids=[e[0] for e in ERRORS])
def test_error_messages(text, message):
    with pytest.raises(FormulaError) as info:
        P(text)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)
    assert info.value.column == int(message.split(":")[0].split()[1])


def test_unknown_function_suggests_close_names():
    with pytest.raises(FormulaError) as info:
        P("x + tahn(y)")
    assert str(info.value) == "column 5: unknown function 'tahn'; did you mean tan, tanh or atan?"
    with pytest.raises(FormulaError) as info:
        P("sigmod(x)")
    assert str(info.value) == "column 1: unknown function 'sigmod'; did you mean sigmoid or sign?"


def test_unknown_function_without_close_names_lists_the_known_ones():
    with pytest.raises(FormulaError) as info:
        P("qqqq(x)")
    msg = str(info.value)
    assert msg.startswith("column 1: unknown function 'qqqq'; known functions: ")
    assert "tanh" in msg and "relu" in msg and "atan2" in msg


def test_calling_a_variable():
    with pytest.raises(FormulaError, match=r"column 1: unknown function 'x'"):
        P("x(y)")
    with pytest.raises(FormulaError) as info:
        P("2*pi(x)")
    assert str(info.value) == ("column 3: 'pi' is not a function "
                               "(no implicit multiplication: write pi*(...))")


@pytest.mark.parametrize("text, message", [
    ("tanh()", "column 1: tanh() takes 1 argument but 0 were given"),
    ("tanh(x, y)", "column 1: tanh() takes 1 argument but 2 were given"),
    ("x + atan2(x)", "column 5: atan2() takes 2 arguments but 1 was given"),
    ("max(x)", "column 1: max() takes at least 2 arguments but 1 was given"),
    ("heaviside(x, y, z)", "column 1: heaviside() takes 1 or 2 arguments but 3 were given"),
    ("sqrt(x, 2)", "column 1: sqrt() takes 1 argument but 2 were given"),
])
def test_wrong_arity(text, message):
    with pytest.raises(FormulaError) as info:
        P(text)
    assert str(info.value) == message


def test_code_injection_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    attacks = [
        "__import__('os').system('touch pwned')",
        "__import__(\"os\").system(\"touch pwned\")",
        "().__class__.__bases__[0].__subclasses__()",
        "exec('open(\"pwned\", \"w\")')",
        "eval('1')",
        "lambda: 1",
        "x.__class__",
        "getattr(x, 'y')",
        "open(pwned, w)",
        "Symbol('x')",
        "S(1)",
    ]
    for text in attacks:
        with pytest.raises(FormulaError):
            P(text)
    assert not (tmp_path / "pwned").exists()
    assert list(tmp_path.iterdir()) == []


def test_not_a_string():
    with pytest.raises(TypeError, match="text must be a str"):
        P(x)


# ---------------------------------------------------------------------------
# 4. Limits: length, depth, huge numbers (all fast)
# ---------------------------------------------------------------------------

def test_length_limit():
    P("+".join(["x"] * (MAX_LENGTH // 2)))  # 9,999 characters: fine
    with pytest.raises(FormulaError, match=f"the limit is {MAX_LENGTH}"):
        P("x" * (MAX_LENGTH + 1))


def test_long_flat_sum_is_fast():
    names = [f"v{i}" for i in range(1800)]
    t0 = time.perf_counter()
    f = P("+".join(names))
    assert time.perf_counter() - t0 < 5.0
    assert f == sp.Add(*sp.symbols(names))


@pytest.mark.parametrize("fname", ["relu", "sigmoid", "softplus", "exp", "log", "sqrt", "abs",
                                   "tanh", "floor", "sign", "sin", ""])
def test_nesting_up_to_the_limit(fname):
    depth = MAX_DEPTH - 1
    text = f"{fname}(" * depth + "x + 1" + ")" * depth
    f = P(text)
    assert f.free_symbols == {x}


@pytest.mark.parametrize("text", [
    "(" * (MAX_DEPTH + 1) + "x" + ")" * (MAX_DEPTH + 1),
    "-" * (MAX_DEPTH + 1) + "x",
    "tanh(" * 1500 + "x" + ")" * 1500,
    "x^" * (MAX_DEPTH + 1) + "x",
    "-(" * 2000 + "x" + ")" * 2000,
])
def test_too_deep_is_a_formula_error_not_a_recursion_error(text):
    with pytest.raises(FormulaError, match=f"nested more than {MAX_DEPTH} levels"):
        P(text)


@pytest.mark.parametrize("text, column", [
    ("9**9**9**9", 5),
    ("9^9^9^9", 4),
    ("2^2^2^2^2", 2),
    ("10**10**10", 3),
    ("2**100000", 2),
    ("(1/3)**100000", 6),
    ("2**-100000", 2),
    ("(2*x)**(10**300)", 6),
    ("7**(10**5/3)", 2),
])
def test_huge_exact_powers_are_refused_at_once(text, column):
    t0 = time.perf_counter()
    with pytest.raises(FormulaError, match="exact number of") as info:
        P(text)
    assert time.perf_counter() - t0 < 1.0
    assert info.value.column == column


@pytest.mark.parametrize("text", [
    "1.5**1e308", "10.0**400", "1e308*1e308", "exp(1000.0)", "exp(exp(100.0))",
    "1.0*10**3000", "1.0000001**(10**30)", "sin(1e300*1e300*1e300)",
    "0.5**2000", "exp(-1000.0)",
])
def test_floats_beyond_float64_are_refused(text):
    t0 = time.perf_counter()
    with pytest.raises(FormulaError, match="range of a 64-bit float"):
        P(text)
    assert time.perf_counter() - t0 < 1.0


def test_exact_numbers_have_a_total_budget():
    # each factor is allowed alone, their product is not (and is never computed)
    t0 = time.perf_counter()
    with pytest.raises(FormulaError, match="exact number"):
        P("*".join(["3**6000"] * 40))
    assert time.perf_counter() - t0 < 2.0
    assert P("3**6000") == sp.Integer(3)**6000


@pytest.mark.parametrize("pattern", ["tanh({})", "tanh({} + 1)", "exp(tanh({}))",
                                     "tanh({})**2", "cosh(tanh({}))", "sin(sinh({}))"])
def test_nested_hyperbolic_functions_are_fast(pattern):
    # SymPy alone takes seconds to minutes to build these 12 deep
    text = "x"
    for _ in range(12):
        text = pattern.format(text)
    t0 = time.perf_counter()
    f = P(text)
    assert time.perf_counter() - t0 < 5.0
    program = sg.gradient_program(f, [x])
    assert program.n_nodes >= 13
    # shallow nests are SymPy's own evaluated expressions
    shallow = pattern.format(pattern.format("x"))
    assert P(shallow) == eval(shallow, {"tanh": sp.tanh, "exp": sp.exp, "cosh": sp.cosh,
                                        "sin": sp.sin, "sinh": sp.sinh, "x": x})


def _tanh_nest(n, arg):
    for _ in range(n):
        arg = sp.tanh(arg)
    return arg


def test_beyond_the_hyperbolic_depth_nodes_are_unevaluated():
    assert MAX_HYPERBOLIC_DEPTH == 4
    nest = "tanh(" * 4 + "-x" + ")" * 4
    assert P(nest) == -_tanh_nest(4, x)  # SymPy pulls out the sign
    assert P(f"tanh({nest})").args[0] == -_tanh_nest(4, x)  # not any more
    deep = "tanh(" * 5 + "x" + ")" * 5
    f = P(f"{deep} + {deep}")  # not collected to 2*tanh(...)
    assert f.is_Add and len(f.args) == 2
    # the depth counts functions and powers in a hyperbolic function's argument
    # (cosh is even: SymPy drops the minus sign of its argument when it evaluates it)
    assert str(P("cosh(-sin(exp(x)**2))")) == "cosh(sin(exp(2*x)))"  # depth 4
    assert str(P("cosh(-sin(exp(sqrt(x))**2))")) == "cosh(-sin(exp(2*sqrt(x))))"  # 5


@pytest.mark.parametrize("name", sorted(functions()))
def test_every_function_unevaluated_computes_the_same(name):
    # above a deep hyperbolic nest, each function is built unevaluated; it
    # must lower, differentiate and compute what SymPy's evaluated form does
    fn = functions()[name]
    deep = "tanh(tanh(tanh(tanh(tanh(x/3)))))"
    args = [deep, "y + 2", "z"]
    n = fn.arities[0] if fn.arities[-1] is not None else 2
    for n in _call_arities(fn):
        f = P(f"{name}({', '.join(args[:n])})")
        expected = fn.head(*[_tanh_nest(5, x / 3), y + 2, z][:n])
        point = {x: 0.7, y: 0.4, z: 1.3}
        assert evaluate(f, point) == pytest.approx(evaluate(expected, point), rel=1e-12, abs=1e-15)
        assert sg.check_grad(f, [x, y, z], point, rtol=1e-5).ok


def test_max_and_min_take_a_bounded_number_of_arguments():
    names = [f"v{k}" for k in range(20)]
    assert P(f"max({', '.join(names[:16])})") == sp.Max(*sp.symbols(names[:16]))
    with pytest.raises(FormulaError) as info:
        P(f"x + max({', '.join(names[:17])})")
    assert str(info.value) == ("column 5: max() of 17 arguments (counting nested max calls); "
                               "the limit is 16 (SymPy's time grows quadratically with them)")
    with pytest.raises(FormulaError, match="min\\(\\) of 20 arguments"):
        P(f"min(min({', '.join(names[:10])}), min({', '.join(names[10:])}))")


def test_long_number_literal():
    assert P("9" * 1000) == sp.Integer(int("9" * 1000))
    with pytest.raises(FormulaError, match="number with 1001 characters; the limit is 1000"):
        P("9" * 1001)


# ---------------------------------------------------------------------------
# 5. Fuzzing: arbitrary text, token soup, and generated formulas with a
#    reference built in parallel by the strategy
# ---------------------------------------------------------------------------

FUZZ = settings(max_examples=2000, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
_PWNED = Path("pwned").resolve()


def _parse_or_error(text):
    try:
        result = P(text)
    except FormulaError as exc:
        assert str(exc)
        return exc
    assert isinstance(result, sp.Basic)
    return result


@FUZZ
@given(text=st.text(max_size=60))
def test_fuzz_arbitrary_text(text, tmp_path):
    _parse_or_error(text)
    assert not _PWNED.exists()


def _soup_vocabulary(canary: Path) -> list:
    return [
        "x", "y", "z", "pi", "e", "E", "I", "oo", "nan", "tanh", "relu", "max", "atan2",
        "heaviside", "log", "sqrt", "exp", "sigmoid", "floor", "ceil", "Abs", "ln",
        "0", "1", "2", "9", "10", "0.5", "1e308", "1e-308", "1.5e3", ".5", "3.", "999999",
        "+", "-", "*", "/", "**", "^", "(", ")", ",", "(", ")", " ", "  ",
        ".", "'", '"', "[", "]", "{", "}", "=", "==", "<", "!", "%", "@", ";", ":", "\\",
        "__import__", "__class__", "lambda", "import", "os", "system", "_", "x_1",
        f"__import__('os').system('touch {canary}')",
        f"open('{canary}', 'w')",
    ]


@FUZZ
@given(data=st.data())
def test_fuzz_token_soup(data, tmp_path):
    canary = tmp_path / "canary"
    tokens = data.draw(st.lists(st.sampled_from(_soup_vocabulary(canary)), max_size=25))
    _parse_or_error("".join(tokens))
    assert not canary.exists()
    assert not _PWNED.exists()


# A generated formula: its text, and a reference: the same expression built
# with Python operators on SymPy objects, None where it got out of hand (a
# number beyond the parser's limits, or sinh/cosh/tanh nested beyond
# MAX_HYPERBOLIC_DEPTH, where the parser builds unevaluated nodes), ERROR
# where SymPy itself raised.
class G(NamedTuple):
    text: str
    ref: object
    atomic: bool  # no parentheses needed around it
    depth: int = 0  # nesting of functions and powers (reciprocals count)
    hyper: int = 0  # the parser's hyperbolic depth


NAMES = ("x", "y", "z", "w1", "alpha")
SYMS = {n: sp.Symbol(n) for n in NAMES}
UNARY = ("sin", "cos", "tan", "tanh", "sinh", "cosh", "exp", "log", "sqrt", "abs", "relu",
         "sigmoid", "softplus", "erf", "atan", "asin", "acos", "floor", "ceiling", "sign",
         "log1p", "expm1", "ln", "ceil", "Abs")
BINARY = ("max", "min", "atan2", "heaviside", "Max", "Min", "log")
ERROR = "error"


def _too_big(e) -> bool:
    for a in (e, *e.args):
        if a.is_Rational and max(abs(a.p).bit_length(), a.q.bit_length()) > 5000:
            return True
        if a.is_Float and a.is_finite and not a.is_zero and abs(a._mpf_[2] + a._mpf_[3]) > 900:
            return True
    return False


def _node(text, build, children, atomic=False, head=None, divided=False) -> G:
    depth = max(c.depth + (divided and i == 1) for i, c in enumerate(children))
    hyper = max(c.hyper for c in children)
    if head in (sp.sinh, sp.cosh, sp.tanh):
        hyper = max(hyper, depth + 1)
    depth += head is not None
    refs = [c.ref for c in children]
    if hyper > MAX_HYPERBOLIC_DEPTH or any(r is None for r in refs):
        ref = None
    elif any(r is ERROR for r in refs):
        ref = ERROR
    else:
        try:
            ref = build(*refs)
            ref = None if _too_big(ref) else ref
        except Exception:  # noqa: BLE001  (the parser must then raise FormulaError)
            ref = ERROR
    return G(text, ref, atomic, depth, hyper)


def _wrap(node: G) -> str:
    return node.text if node.atomic else f"({node.text})"


_space = st.sampled_from(["", " ", "  "])
_leaf = st.one_of(
    st.integers(0, 60).map(lambda n: G(str(n), sp.Integer(n), True)),
    st.sampled_from(["0.5", "1.5", "2.25", "1e-3", "3.", ".25", "2E2", "0.1"]).map(
        lambda t: G(t, sp.Float(t), True)),
    st.sampled_from(NAMES).map(lambda n: G(n, SYMS[n], True)),
    st.just(G("pi", sp.pi, True)),
)
_BINOPS = {"+": lambda a, c: a + c, "-": lambda a, c: a - c,
           "*": lambda a, c: a * c, "/": lambda a, c: a / c}
_EXPONENTS = {"2": 2, "3": 3, "-1": -1, "-2": -2, "0": 0, "0.5": sp.Float(0.5), "y": y,
              "(1/2)": sp.Rational(1, 2)}


def _extend(children):
    fns = functions()
    binop = st.tuples(children, st.sampled_from(sorted(_BINOPS)), children, _space, _space).map(
        lambda t: _node(f"{_wrap(t[0])}{t[3]}{t[1]}{t[4]}{_wrap(t[2])}", _BINOPS[t[1]],
                        [t[0], t[2]], divided=t[1] == "/"))
    power = st.tuples(children, st.sampled_from(["**", "^"]), st.sampled_from(sorted(_EXPONENTS))
                      ).map(lambda t: _node(f"{_wrap(t[0])}{t[1]}{t[2]}",
                                            lambda a, e: a**e,
                                            [t[0], G(t[2], _EXPONENTS[t[2]], True,
                                                     int(t[2] == "(1/2)"))],
                                            head=sp.Pow))
    sign = st.tuples(st.sampled_from(["-", "+"]), children).map(
        lambda t: _node(f"{t[0]}{_wrap(t[1])}",
                        (lambda a: -a) if t[0] == "-" else (lambda a: a), [t[1]]))
    call1 = st.tuples(st.sampled_from(UNARY), children, _space).map(
        lambda t: _node(f"{t[0]}({t[2]}{t[1].text})", fns[t[0]].head, [t[1]], atomic=True,
                        head=fns[t[0]].head))
    call2 = st.tuples(st.sampled_from(BINARY), children, children, _space).map(
        lambda t: _node(f"{t[0]}({t[1].text},{t[3]}{t[2].text})", fns[t[0]].head,
                        [t[1], t[2]], atomic=True, head=fns[t[0]].head))
    paren = children.map(lambda c: G(f"({c.text})", c.ref, True, c.depth, c.hyper))
    return st.one_of(binop, power, sign, call1, call2, paren)


formulas = st.recursive(_leaf, _extend, max_leaves=10)


@FUZZ
@given(node=formulas)
def test_fuzz_generated_formulas_match_the_reference(node, tmp_path):
    result = _parse_or_error(node.text)
    if isinstance(result, FormulaError):
        # only for numbers beyond the limits, or where SymPy itself fails
        assert node.ref is None or node.ref is ERROR or "exact number" in str(result) \
            or "64-bit float" in str(result), (node.text, str(result))
    else:
        assert node.ref is not ERROR, node.text
        if node.ref is not None:
            assert result == node.ref, (node.text, result, node.ref)
    assert not _PWNED.exists()
