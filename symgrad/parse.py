"""Formula text to SymPy expressions, safely: no ``eval``, no ``sympify``.

``sympy.sympify`` and ``parse_expr`` run Python's ``eval`` on their input, so
text from a command line or a web form must not go near them. This module is
a small tokenizer and a recursive-descent parser for exactly this grammar
(Python's precedence, with ``^`` as a second spelling of ``**``)::

    formula := sum END
    sum     := product (('+' | '-') product)*
    product := unary (('*' | '/') unary)*
    unary   := ('+' | '-') unary | power
    power   := atom (('**' | '^') unary)?          # right-associative
    atom    := NUMBER | NAME | NAME '(' sum (',' sum)* ')' | '(' sum ')'

so ``-x**2`` is ``-(x**2)``, ``2^3^2`` is ``2^9`` and ``2**-1`` is ``1/2``.
There is no implicit multiplication (``2x`` is an error). A NAME is an ASCII
identifier: a function of the op table when it is called (``tanh(y)``, plus
the aliases in :data:`ALIASES`; ops added with :func:`symgrad.register_op`
are callable by their name), ``pi``, or else a plain ``sympy.Symbol``.
Keywords, names starting with ``__``, attribute access, strings, brackets
and comparisons are errors.

Every error is a :class:`FormulaError` naming the 1-based column and what
was expected. SymPy evaluates each node as if the formula were Python code
(``a - b*c/d`` is ``a - ((b*c)/d)``), except that sums and products of more
than 32 operands are built flat, ``Add(*terms)`` and ``Mul(*factors)``
(pairwise, they take quadratic time; flat, SymPy skips its distribution of a
number over a sum in a two-factor product and rounds float quotients twice).

Limits, so that no input can keep SymPy busy for long: at most
:data:`MAX_LENGTH` characters, :data:`MAX_DEPTH` levels of nesting and
:data:`MAX_VARIADIC_ARGS` arguments of ``max``/``min``; exact numbers
(integers, fractions) of at most :data:`MAX_EXACT_BITS` bits and floats
within about the range of a 64-bit float (:data:`MAX_FLOAT_BITS`). A power
of numbers is estimated *before* SymPy computes it, so ``9**9**9**9`` is
rejected at once instead of computing a number with 370 million digits.

One more limit works around SymPy itself: to evaluate an expression that
contains ``sinh``, ``cosh`` or ``tanh``, SymPy asks whether they are real by
expanding the real and imaginary parts of their argument, which takes time
exponential in how deeply the argument nests functions and powers (in SymPy
1.14, ``tanh`` nested 9 deep takes 8 s to build, 10 deep half a minute).
Nodes above a hyperbolic function whose argument nests deeper than
:data:`MAX_HYPERBOLIC_DEPTH` allows are therefore built unevaluated
(``evaluate=False``): they print, differentiate and compile the same, only
SymPy's automatic rewrites (such as ``tanh(-u) -> -tanh(u)``) are skipped.
"""

from __future__ import annotations

import difflib
import keyword
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import sympy as sp
from sympy.core.function import Application
from sympy.logic.boolalg import Boolean

from symgrad.ops.registry import all_ops

__all__ = [
    "ALIASES",
    "CONSTANTS",
    "MAX_DEPTH",
    "MAX_EXACT_BITS",
    "MAX_FLOAT_BITS",
    "MAX_HYPERBOLIC_DEPTH",
    "MAX_LENGTH",
    "MAX_VARIADIC_ARGS",
    "FormulaError",
    "FormulaFunction",
    "functions",
    "parse_formula",
]

MAX_LENGTH = 10_000
"""Longest formula accepted, in characters."""
MAX_DEPTH = 100
"""Deepest nesting of parentheses, calls, signs and powers."""
MAX_EXACT_BITS = 10_000
"""Largest exact number (numerator or denominator) in bits, about 3,000 digits."""
MAX_FLOAT_BITS = 1_100
"""Floats must lie within ``2**-1100 < |x| < 2**1100`` (just past float64's range)."""
MAX_VARIADIC_ARGS = 16
"""Most arguments of one ``max``/``min`` (nested ones included, as SymPy flattens them)."""
MAX_HYPERBOLIC_DEPTH = 4
"""Nodes above a sinh, cosh or tanh whose argument nests functions and powers
more than 3 deep are built unevaluated. (The hyperbolic depth is 1 plus that
nesting: 2 for ``tanh(tanh(x))``, 3 for ``cosh(sin(x)**2)``.)"""
_POWER_BUDGET_BITS = 10 * MAX_EXACT_BITS  # all exact powers of one formula together
_HYPERBOLIC = (sp.sinh, sp.cosh, sp.tanh)
_PAIRWISE = 32  # longer sums and products are built flat (pairwise is quadratic)
_MAX_NUMBER_CHARS = 1_000

ALIASES: dict = {"sqrt": sp.sqrt, "ln": sp.log, "ceil": sp.ceiling, "Abs": sp.Abs,
                 "Max": sp.Max, "Min": sp.Min, "Heaviside": sp.Heaviside}
"""Names callable besides the op table's: ``sqrt`` and SymPy's own spellings
(so that ``str`` of an expression parses back)."""
CONSTANTS: dict = {"pi": sp.pi}
"""Names that are constants rather than symbols (override with ``symbols=``)."""


class FormulaError(ValueError):
    """A formula that cannot be parsed; the message names the column.

    Attributes
    ----------
    column : int or None
        1-based position in the formula of the offending character.
    """

    def __init__(self, message: str, column: int | None = None) -> None:
        super().__init__(message if column is None else f"column {column}: {message}")
        self.column = column


@dataclass(frozen=True)
class _Token:
    kind: str  # "number", "name", "op" or "end"
    text: str
    column: int

    def describe(self) -> str:
        if self.kind == "end":
            return "end of formula"
        return f"number {self.text}" if self.kind == "number" else repr(self.text)


_TOKEN = re.compile(r"""
    (?P<space>[ \t\r\n]+)
  | (?P<number>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\*\*|[-+*/^(),])
""", re.VERBOSE)

_BAD_CHARS = {
    **dict.fromkeys("'\"", "strings are not allowed"),
    **dict.fromkeys("[]{}", "brackets are not allowed; use parentheses ( )"),
    **dict.fromkeys("=<>", "comparisons and assignments are not supported"),
    "!": "'!' is not supported (no factorials or comparisons)",
    ".": "'.' is not allowed here (no attribute access; numbers look like 1.5)",
}


def _tokenize(text: str) -> list:
    tokens = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            ch = text[pos]
            why = _BAD_CHARS.get(ch)
            if why is None:
                code = f" (U+{ord(ch):04X})" if not ch.isascii() or not ch.isprintable() else ""
                why = f"unexpected character {ch!r}{code}"
                if ch.isalpha():
                    why += "; names use ASCII letters, digits and _"
            raise FormulaError(why, pos + 1)
        if m.lastgroup != "space":
            tokens.append(_Token(m.lastgroup, m.group(), pos + 1))
        pos = m.end()
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


@dataclass(frozen=True)
class FormulaFunction:
    """A function a formula can call: its SymPy head and how many arguments it takes.

    ``arities`` lists the allowed argument counts; ``(n, None)`` means "at least n".
    """

    head: Callable
    arities: tuple

    def describe(self) -> str:
        a = self.arities
        if a[-1] is None:
            return f"at least {a[0]} argument{'s' * (a[0] != 1)}"
        counts = " or ".join(str(n) for n in a)
        return f"{counts} argument{'s' * (a != (1,))}"

    def accepts(self, n: int) -> bool:
        if self.arities[-1] is None:
            return n >= self.arities[0]
        return n in self.arities


def _arities(op) -> tuple:
    nargs = getattr(op.head, "nargs", None)
    if isinstance(nargs, sp.FiniteSet):
        return tuple(sorted(int(n) for n in nargs))
    if op.head in (sp.Max, sp.Min):
        return (2, None)
    return (op.arity,) if op.arity is not None else (1, None)


def functions() -> dict[str, FormulaFunction]:
    """The functions a formula can call, by name (the op table plus aliases).

    Built from :func:`symgrad.all_ops` on every call, so ops registered later
    are included.

    Examples
    --------
    >>> from symgrad.parse import functions
    >>> fns = functions()
    >>> fns["tanh"].head, fns["atan2"].arities, fns["max"].describe()
    (tanh, (2,), 'at least 2 arguments')
    """
    table = {}
    for op in all_ops():
        head = op.head
        if (op.name.isidentifier() and isinstance(head, type) and issubclass(head, Application)
                and not issubclass(head, (Boolean, sp.Piecewise))):
            table[op.name] = FormulaFunction(head, _arities(op))
    fixed = {"sqrt": (1,), "ln": (1,), "ceil": (1,)}
    for alias, head in ALIASES.items():
        target = next((f for f in table.values() if f.head is head), None)
        if alias in fixed:
            table.setdefault(alias, FormulaFunction(head, fixed[alias]))
        elif target is not None:
            table.setdefault(alias, target)
    return table


def parse_formula(text: str, symbols: Mapping[str, sp.Basic] | None = None) -> sp.Expr:
    """Parse formula text into a SymPy expression without evaluating any code.

    Parameters
    ----------
    text : str
        A formula such as ``"x*tanh(y) + relu(x - y)"``: numbers, names,
        ``+ - * / ** ^``, parentheses and calls of op-table functions (see
        the module docstring for the grammar and the limits).
    symbols : dict of str to sympy.Basic, optional
        What a name stands for (e.g. ``{"x": sympy.Symbol("x", positive=True)}``);
        other names become ``sympy.Symbol(name)`` and ``pi`` is ``sympy.pi``.

    Returns
    -------
    sympy.Expr
        The expression, evaluated by SymPy as if built in Python.

    Raises
    ------
    FormulaError
        A :class:`ValueError` whose message starts with the column, e.g.
        ``column 7: expected ')' but found end of formula``.

    Examples
    --------
    >>> import sympy as sp, symgrad as sg
    >>> x, y = sp.symbols("x y")
    >>> sg.parse_formula("x*tanh(y) + relu(x - y)") == x*sp.tanh(y) + sg.relu(x - y)
    True
    >>> sg.parse_formula("-x^2 + 2^3^2")
    512 - x**2
    >>> sg.parse_formula("log(1 + exp(2x))")
    Traceback (most recent call last):
      ...
    symgrad.parse.FormulaError: column 14: expected ',' or ')' but found 'x' (no implicit multiplication: write 2*x)
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_formula: text must be a str, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise FormulaError(f"the formula has {len(text)} characters; the limit is {MAX_LENGTH}")
    names = {}
    for name, value in (symbols or {}).items():
        if not isinstance(name, str) or not isinstance(value, sp.Basic):
            raise TypeError(f"parse_formula: symbols must map names (str) to SymPy objects, "
                            f"got {name!r}: {value!r}")
        names[name] = value
    parser = _Parser(_tokenize(text), names, functions())
    try:
        return parser.parse()
    except RecursionError:
        raise FormulaError(f"the formula is nested too deeply (SymPy ran out of stack); "
                           f"the limit is {MAX_DEPTH} levels") from None


class _Node(NamedTuple):
    """A parsed subformula: its expression, and how costly SymPy finds it."""

    expr: sp.Expr
    depth: int = 0  # nesting of functions and powers (reciprocals count)
    hyperbolic: int = 0  # 1 + depth of the argument, for the deepest sinh/cosh/tanh inside


class _Parser:
    def __init__(self, tokens: list, symbols: dict, fns: dict) -> None:
        self.tokens = tokens
        self.pos = 0
        self.symbols = symbols
        self.fns = fns
        self.nesting = 0
        self.budget = _POWER_BUDGET_BITS

    # -- tokens -------------------------------------------------------------------
    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def next(self) -> _Token:
        tok = self.tokens[self.pos]
        if tok.kind != "end":
            self.pos += 1
        return tok

    def at(self, *ops: str) -> bool:
        tok = self.tokens[self.pos]
        return tok.kind == "op" and tok.text in ops

    def unexpected(self, tok: _Token, expected: str) -> FormulaError:
        msg = f"expected {expected} but found {tok.describe()}"
        prev = self.tokens[self.pos - 1] if self.pos else None
        if (prev is not None and prev is not tok and (prev.kind != "op" or prev.text == ")")
                and (tok.kind == "name" or tok.text[:1].isdigit() or tok.text == "(")):
            if prev.kind != "op" and tok.kind != "op":
                msg += f" (no implicit multiplication: write {prev.text}*{tok.text})"
            else:
                msg += " (no implicit multiplication: insert '*' before it)"
        return FormulaError(msg, tok.column)

    # -- grammar ------------------------------------------------------------------
    def parse(self) -> sp.Expr:
        node = self.sum()
        tok = self.peek()
        if tok.kind != "end":
            raise self.unexpected(tok, "an operator or end of formula")
        return node.expr

    def sum(self) -> _Node:
        start = self.peek().column
        terms = [self.product()]
        while self.at("+", "-"):
            sign = self.next().text
            term = self.product()
            terms.append(term if sign == "+" else self.negate(term, start))
        if len(terms) == 1:
            return terms[0]
        exprs = [t.expr for t in terms]

        def evaluated():
            if len(exprs) > _PAIRWISE:
                return sp.Add(*exprs)
            acc = exprs[0]
            for e in exprs[1:]:
                acc = acc + e
            return acc

        return self.build(terms, start, evaluated, lambda: sp.Add(*exprs, evaluate=False))

    def product(self) -> _Node:
        start = self.peek().column
        factors, ops = [self.unary()], ["*"]
        while self.at("*", "/"):
            ops.append(self.next().text)
            factors.append(self.unary())
        if len(factors) == 1:
            return factors[0]
        pairs = [(op, f.expr) for op, f in zip(ops, factors)]

        def evaluated():
            if len(pairs) > _PAIRWISE:
                return sp.Mul(*[e if op == "*" else sp.Pow(e, -1) for op, e in pairs])
            acc = pairs[0][1]
            for op, e in pairs[1:]:
                acc = acc * e if op == "*" else acc / e
            return acc

        def unevaluated():
            return sp.Mul(*[e if op == "*" else sp.Pow(e, -1, evaluate=False) for op, e in pairs],
                          evaluate=False)

        return self.build(factors, start, evaluated, unevaluated,
                          reciprocals=[op == "/" for op in ops])

    def unary(self) -> _Node:
        self.nesting += 1
        try:
            if self.nesting > MAX_DEPTH:
                raise FormulaError(f"the formula is nested more than {MAX_DEPTH} levels deep",
                                   self.peek().column)
            if self.at("+", "-"):
                tok = self.next()
                operand = self.unary()
                return operand if tok.text == "+" else self.negate(operand, tok.column)
            base = self.atom()
            if self.at("**", "^"):
                tok = self.next()
                return self.power(base, self.unary(), tok)
            return base
        finally:
            self.nesting -= 1

    def atom(self) -> _Node:
        tok = self.peek()
        if tok.kind == "number":
            return _Node(self.number(self.next()))
        if tok.kind == "name":
            self.next()
            return self.call(tok) if self.at("(") else _Node(self.name(tok))
        if tok.kind == "op" and tok.text == "(":
            self.next()
            node = self.sum()
            self.expect(")")
            return node
        raise self.unexpected(tok, "a number, a name or '('")

    def expect(self, text: str) -> None:
        tok = self.peek()
        if not (tok.kind == "op" and tok.text == text):
            raise self.unexpected(tok, repr(text))
        self.next()

    # -- leaves and calls -----------------------------------------------------------
    def number(self, tok: _Token) -> sp.Expr:
        text = tok.text
        if len(text) > _MAX_NUMBER_CHARS:
            raise FormulaError(f"number with {len(text)} characters; the limit is "
                               f"{_MAX_NUMBER_CHARS}", tok.column)
        if text.isdigit():
            return sp.Integer(int(text))
        value = float(text)  # never slow, unlike an exact conversion of 1e999999999
        mantissa = re.split("[eE]", text)[0]
        if math.isinf(value) or (value == 0.0 and mantissa.strip("0.") != ""):
            raise FormulaError(f"{text} is outside the range of a 64-bit float "
                               f"(about 1e-308 to 1e308)", tok.column)
        # SymPy would give "1e308" 1030 bits of precision (as if an integer
        # literal); a float gets 15 digits, or as many as it is written with.
        digits = len(mantissa.replace(".", "").lstrip("0"))
        return sp.Float(text, max(15, digits))

    def name(self, tok: _Token) -> sp.Expr:
        name = tok.text
        _check_name(name, tok.column)
        if name in self.symbols:
            return self.symbols[name]
        if name in CONSTANTS:
            return CONSTANTS[name]
        if name in self.fns:
            raise FormulaError(f"{name!r} is a function; call it as {name}(...)", tok.column)
        return sp.Symbol(name)

    def call(self, tok: _Token) -> _Node:
        name = tok.text
        _check_name(name, tok.column)
        fn = self.fns.get(name)
        if fn is None:
            raise FormulaError(self.unknown_function(name), tok.column)
        self.next()  # '('
        args = []
        if not self.at(")"):
            args.append(self.sum())
            while self.at(","):
                self.next()
                args.append(self.sum())
        if not self.at(")"):
            raise self.unexpected(self.peek(), "',' or ')'" if args else "')'")
        self.next()
        if not fn.accepts(len(args)):
            given = f"{len(args)} {'was' if len(args) == 1 else 'were'} given"
            raise FormulaError(f"{name}() takes {fn.describe()} but {given}", tok.column)
        exprs = [a.expr for a in args]
        n = sum(len(e.args) if e.func is fn.head else 1 for e in exprs)  # max(max()) is flat
        if fn.arities[-1] is None and n > MAX_VARIADIC_ARGS:
            raise FormulaError(f"{name}() of {n} arguments (counting nested {name} calls); "
                               f"the limit is {MAX_VARIADIC_ARGS} (SymPy's time grows "
                               f"quadratically with them)", tok.column)
        return self.build(args, tok.column, lambda: fn.head(*exprs),
                          lambda: _unevaluated(fn.head, exprs), head=fn.head)

    def unknown_function(self, name: str) -> str:
        if name in self.symbols or name in CONSTANTS:
            return f"{name!r} is not a function (no implicit multiplication: write {name}*(...))"
        close = difflib.get_close_matches(name, list(self.fns), n=3, cutoff=0.6)
        if close:
            options = " or ".join([", ".join(close[:-1]), close[-1]] if len(close) > 1 else close)
            return f"unknown function {name!r}; did you mean {options}?"
        return f"unknown function {name!r}; known functions: {', '.join(sorted(self.fns))}"

    # -- building nodes, within limits --------------------------------------------------
    def power(self, base: _Node, exp: _Node, tok: _Token) -> _Node:
        """``base**exp``, refusing numeric powers too large to compute."""
        b, e = base.expr, exp.expr
        coeff = b if b.is_Number else b.as_coeff_Mul()[0] if b.is_Mul else None
        if (coeff is not None and e.is_Number and _finite(coeff) and _finite(e)
                and coeff not in (0, 1, -1) and e != 0):
            exact = coeff.is_Rational and e.is_Rational
            per_unit = _exact_log2(coeff) if exact else abs(_log2(coeff))
            log_exp = _log2(e)
            bits = per_unit * 2.0 ** log_exp if log_exp < 64 else math.inf
            limit = MAX_EXACT_BITS if exact else MAX_FLOAT_BITS
            if bits > limit or (exact and bits > self.budget):
                size = f"about {_digits(bits)} digits" if bits < 1e15 else "too many digits"
                what = (f"an exact number of {size} (the limit is {_digits(MAX_EXACT_BITS)})"
                        if exact else "a number outside the range of a 64-bit float")
                raise FormulaError(f"this power of numbers would be {what}", tok.column)
            if exact:
                self.budget -= bits
        return self.build((base, exp), tok.column, lambda: b**e,
                          lambda: sp.Pow(b, e, evaluate=False), head=sp.Pow)

    def negate(self, node: _Node, column: int) -> _Node:
        e = node.expr
        return self.build((node,), column, lambda: -e,
                          lambda: sp.Mul(sp.S.NegativeOne, e, evaluate=False))

    def build(self, operands, column: int, evaluated: Callable, unevaluated: Callable,
              head=None, reciprocals=()) -> _Node:
        """The node ``evaluated()`` computes from ``operands`` (SymPy's usual
        evaluation), or ``unevaluated()`` beyond MAX_HYPERBOLIC_DEPTH.

        ``head`` is the function (or ``sympy.Pow``) applied, if any: one more
        level of depth; ``reciprocals`` flags operands that are divided by."""
        flags = list(reciprocals) + [False] * (len(operands) - len(reciprocals))
        depth = max(o.depth + r for o, r in zip(operands, flags))
        hyperbolic = max(o.hyperbolic for o in operands)
        if head in _HYPERBOLIC:
            hyperbolic = max(hyperbolic, depth + 1)
        depth += head is not None
        try:
            expr = evaluated() if hyperbolic <= MAX_HYPERBOLIC_DEPTH else unevaluated()
        except (TypeError, ValueError, ArithmeticError, NotImplementedError) as exc:
            raise FormulaError(f"SymPy cannot evaluate this: {exc}", column) from None
        return _Node(self.checked(expr, column), depth, hyperbolic)

    def checked(self, expr: sp.Expr, column: int) -> sp.Expr:
        """``expr``, after checking the numbers at its top (SymPy folds numbers
        there); every node the parser builds passes through here."""
        for e in (expr, *expr.args):
            if not e.is_Number or not _finite(e):
                continue
            if e.is_Rational and _exact_bits(e) > MAX_EXACT_BITS:
                raise FormulaError(f"this makes an exact number of about "
                                   f"{_digits(_exact_bits(e))} digits (the limit is "
                                   f"{_digits(MAX_EXACT_BITS)})", column)
            if e.is_Float and not e.is_zero and abs(_log2(e)) > MAX_FLOAT_BITS:
                raise FormulaError("this makes a number outside the range of a 64-bit float "
                                   "(about 1e-308 to 1e308)", column)
        return expr


def _unevaluated(head, args) -> sp.Expr:
    if head is sp.log and len(args) == 2:  # log(x, b) means log(x)/log(b)
        x, base = (sp.log(a, evaluate=False) for a in args)
        return sp.Mul(x, sp.Pow(base, -1, evaluate=False), evaluate=False)
    return head(*args, evaluate=False)


def _check_name(name: str, column: int) -> None:
    if keyword.iskeyword(name):
        raise FormulaError(f"{name!r} is a Python keyword, not a name a formula can use", column)
    if name.startswith("__"):
        raise FormulaError(f"names starting with '__' are not allowed ({name!r})", column)


def _finite(num: sp.Basic) -> bool:
    return bool(num.is_Rational or (num.is_Float and num.is_finite))


def _log2(num: sp.Basic) -> float:
    """log2 of ``|num|`` for a nonzero finite Rational or Float, without overflow."""
    if num.is_Rational:
        return math.log2(abs(num.p)) - math.log2(num.q)
    _sign, man, exp, _bc = num._mpf_
    return exp + math.log2(man)


def _exact_log2(num: sp.Rational) -> float:
    """Bits per unit of exponent of an exact power of ``num``."""
    return max(math.log2(abs(num.p)), math.log2(num.q))


def _exact_bits(num: sp.Rational) -> int:
    return max(abs(num.p).bit_length(), num.q.bit_length())


def _digits(bits: float) -> str:
    return f"{bits * math.log10(2):,.0f}"
