"""The ``symgrad`` command line: differentiate, compile and draw formulas.

::

    symgrad diff "x*tanh(y) + relu(x - y)" --wrt x,y [--format pretty|latex|program|code]
    symgrad compile "x*tanh(y)" --args x,y [--emit source|ir] [--check]
    symgrad graph "x*tanh(y)" --at x=1.5,y=0.7 -o graph.svg

Formulas are parsed by :func:`symgrad.parse_formula` (never ``eval``).
Each subcommand is one function registered with :func:`command`, which
declares its arguments; it gets the parsed arguments and returns the exit
status. Adding a subcommand means adding one such function::

    @command("name", "one-line help", FORMULA, arg("--flag", help="..."))
    def name_command(args: argparse.Namespace) -> int: ...

Exit status: 0 success, 1 a gradient check failed, 2 bad input (argparse's
own convention for usage errors). Errors are one line on stderr,
``symgrad: error: ...``, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sympy as sp

import symgrad
from symgrad.check import check_grad
from symgrad.compile import compile as compile_expr
from symgrad.diff import grad, gradient_program
from symgrad.dot import render, to_dot
from symgrad.errors import UnsupportedOperation
from symgrad.parse import CONSTANTS, parse_formula

__all__ = ["arg", "build_parser", "command", "main"]

SIMPLIFY_MAX_OPS = 200
"""``--simplify`` skips derivatives with more operations than this."""
DIFF_SECONDS = 120.0
"""``diff`` gives up building the derivative expressions after this long
(SymPy's evaluation is exponential in the nesting of sinh/cosh/tanh)."""
SIMPLIFY_SECONDS = 10.0
"""``--simplify`` gives up on a derivative after this long (``sympy.simplify``
can take minutes on a few dozen operations of nested exponentials)."""
CHECK_DOMAIN = (0.2, 1.5)
"""``compile --check`` draws each argument uniformly from this interval."""


class CommandError(Exception):
    """Bad input found by a subcommand: exit status 2, message on stderr."""


@dataclass(frozen=True)
class _Command:
    name: str
    help: str
    arguments: tuple
    run: Callable[[argparse.Namespace], int]


_COMMANDS: list = []


def arg(*flags: str, **kwargs) -> tuple:
    """One argument of a subcommand, as for ``ArgumentParser.add_argument``."""
    return flags, kwargs


def command(name: str, help: str, *arguments: tuple) -> Callable:
    """Register the decorated function as the subcommand ``name``.

    Examples
    --------
    >>> from symgrad.cli import arg, command
    >>> @command("hello", "print a greeting", arg("--name", default="world"))
    ... def hello_command(args):
    ...     print(f"hello, {args.name}")
    ...     return 0
    >>> from symgrad.cli import main
    >>> main(["hello", "--name", "symgrad"])
    hello, symgrad
    0
    >>> from symgrad import cli; cli._COMMANDS.pop().name   # (unregister the example)
    'hello'
    """
    def register(run: Callable[[argparse.Namespace], int]) -> Callable:
        _COMMANDS.append(_Command(name, help, arguments, run))
        return run
    return register


FORMULA = arg("formula", help='the formula, quoted: "x*tanh(y) + relu(x - y)"; '
                              'operators + - * / ** ^, functions such as tanh, relu, max')


_EPILOG = 'A formula that starts with "-" goes after "--": symgrad diff --wrt x -- "-x**2"'


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``symgrad`` command, with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="symgrad", epilog=_EPILOG,
        description="Symbolic derivatives of formulas: print them, compile them, draw them.")
    parser.add_argument("--version", action="version", version=f"symgrad {symgrad.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in _COMMANDS:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help, epilog=_EPILOG)
        for flags, kwargs in cmd.arguments:
            p.add_argument(*flags, **kwargs)
        p.set_defaults(run=cmd.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``symgrad`` command line and return its exit status.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 1 when a gradient check fails, 2 on bad input.

    Examples
    --------
    >>> from symgrad.cli import main
    >>> main(["diff", "x*tanh(y) + relu(x - y)", "--wrt", "x,y"])
    d/dx = tanh(y) + Heaviside(x - y, 0)
    d/dy = x*(1 - tanh(y)**2) - Heaviside(x - y, 0)
    0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors (2)
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    try:
        return args.run(args)
    except BrokenPipeError:  # e.g. piped into `head`: stop quietly, as a SIGPIPE'd tool does
        with contextlib.suppress(OSError, ValueError, AttributeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (CommandError, ValueError, TypeError, ArithmeticError, UnsupportedOperation,
            OSError) as exc:
        return _fail(str(exc))
    except RecursionError:
        return _fail("the formula is too deeply nested to process")


def _fail(message: str) -> int:
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    print(f"symgrad: error: {first}", file=sys.stderr)
    return 2


def _note(message: str) -> None:
    print(f"symgrad: note: {message}", file=sys.stderr)


# -- argument helpers -----------------------------------------------------------------

def _symbols(text: str, option: str) -> list:
    """``"x,y"`` -> ``[x, y]``: comma-separated variable names."""
    result = []
    for name in (n.strip() for n in text.split(",")):
        if not name:
            raise CommandError(f"{option} {text!r}: empty name; write names separated by "
                               f"commas, e.g. {option} x,y")
        if name in CONSTANTS:
            raise CommandError(f"{option}: {name!r} is the constant {CONSTANTS[name]} in "
                               f"formulas, not a variable")
        try:
            sym = parse_formula(name)
        except ValueError as exc:
            raise CommandError(f"{option}: {name!r} is not a variable name ({exc})") from None
        if not isinstance(sym, sp.Symbol):
            raise CommandError(f"{option}: {name!r} is not a variable name")
        if sym in result:
            raise CommandError(f"{option}: {name} is listed twice")
        result.append(sym)
    return result


def _free_symbols(expr: sp.Basic) -> list:
    return sorted(expr.free_symbols, key=lambda s: s.name)


def _point(text: str, expr: sp.Basic) -> dict:
    """``"x=1.5,y=0.7"`` -> ``{x: 1.5, y: 0.7}``, one value per variable of ``expr``."""
    point = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if not sep:
            raise CommandError(f"--at: {item.strip()!r} needs a value, e.g. --at x=1.5,y=0.7")
        (sym,) = _symbols(name, "--at")
        try:
            point[sym] = float(value)
        except ValueError:
            raise CommandError(f"--at: {value.strip()!r} is not a number (in {item.strip()!r})") from None
    free = _free_symbols(expr)
    missing = [str(s) for s in free if s not in point]
    if missing:
        raise CommandError(f"--at: no value for {', '.join(missing)}")
    extra = [str(s) for s in point if s not in free]
    if extra:
        raise CommandError(f"--at: {', '.join(extra)} does not occur in the formula")
    return point


# -- diff -----------------------------------------------------------------------------

@command(
    "diff", "print the partial derivatives of a formula",
    FORMULA,
    arg("--wrt", required=True, metavar="x,y",
        help="the variables, comma-separated (one not in the formula has derivative 0)"),
    arg("--format", default="pretty", choices=("pretty", "latex", "program", "code"),
        help="pretty: one line d/dx = ... per variable (default); latex: the same in LaTeX; "
             "program: the gradient program (forward steps, then adjoints); "
             "code: the generated Python source of value_and_grad"),
    arg("--simplify", action="store_true",
        help=f"apply sympy.simplify to each derivative (pretty and latex formats; skipped "
             f"for derivatives of more than {SIMPLIFY_MAX_OPS} operations)"),
)
def diff_command(args: argparse.Namespace) -> int:
    expr = parse_formula(args.formula)
    wrt = _symbols(args.wrt, "--wrt")
    if args.simplify and args.format in ("program", "code"):
        _note(f"--simplify applies to --format pretty and latex, not {args.format}")
    if args.format == "program":
        print(gradient_program(expr, wrt))
    elif args.format == "code":
        others = [s for s in _free_symbols(expr) if s not in wrt]
        fn = compile_expr(expr, wrt + others, wrt=wrt, backend="python")
        names = ", ".join(str(s) for s in wrt + others)
        outs = ", ".join(["f"] + [f"df/d{w}" for w in wrt])
        print(f"# inp = [{names}], out = [{outs}]")
        print(fn.source, end="" if fn.source.endswith("\n") else "\n")
    else:
        try:
            with _time_limit(DIFF_SECONDS):
                derivatives = grad(expr, wrt)
        except TimeoutError:
            raise CommandError(
                f"SymPy took more than {DIFF_SECONDS:g} s to build the derivative expressions "
                f"(it is slow on nested sinh/cosh/tanh); --format program shows them "
                f"without SymPy's evaluation") from None
        for w, d in zip(wrt, derivatives):
            if args.simplify:
                d = _simplify(d, w)
            if args.format == "latex":
                print(rf"\frac{{\partial f}}{{\partial {sp.latex(w)}}} = {sp.latex(d)}")
            else:
                print(f"d/d{w} = {d}")
    return 0


def _simplify(d: sp.Expr, w: sp.Symbol) -> sp.Expr:
    n = sp.count_ops(d)
    if n > SIMPLIFY_MAX_OPS:
        _note(f"d/d{w} has {n} operations; not simplified (limit {SIMPLIFY_MAX_OPS})")
        return d
    try:
        with _time_limit(SIMPLIFY_SECONDS):
            return sp.simplify(d)
    except TimeoutError:
        _note(f"simplifying d/d{w} took longer than {SIMPLIFY_SECONDS:g} s; not simplified")
        return d


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Raise TimeoutError inside the block after ``seconds`` (POSIX, main thread;
    elsewhere there is no limit)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise TimeoutError

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- compile --------------------------------------------------------------------------

@command(
    "compile", "compile a formula and its gradient; print the generated code or check it",
    FORMULA,
    arg("--args", metavar="x,y",
        help="the arguments in call order (default: the formula's variables by name)"),
    arg("--wrt", metavar="x,y", help="the variables to differentiate (default: all --args)"),
    arg("--emit", choices=("source", "ir"),
        help="print the generated Python source (default) or the SSA program"),
    arg("--backend", default="auto", choices=("auto", "numba", "python"),
        help="auto: numba when --check runs the code, else python (printing needs no JIT)"),
    arg("--check", action="store_true",
        help=f"compare the compiled gradient with the symbolic, tape and finite-difference "
             f"ones at random points in {list(CHECK_DOMAIN)}; exit 1 on a mismatch"),
    arg("--points", type=int, default=3, help="number of points for --check (default 3)"),
    arg("--seed", type=int, default=0, help="random seed for --check (default 0)"),
)
def compile_command(args: argparse.Namespace) -> int:
    expr = parse_formula(args.formula)
    free = _free_symbols(expr)
    params = _symbols(args.args, "--args") if args.args is not None else free
    missing = [str(s) for s in free if s not in params]
    if missing:
        raise CommandError(f"the formula uses {', '.join(missing)}, which --args does not list")
    wrt = _symbols(args.wrt, "--wrt") if args.wrt is not None else params
    stray = [str(w) for w in wrt if w not in params]
    if stray:
        raise CommandError(f"--wrt {', '.join(stray)}: not in --args")
    if args.check and args.points < 1:
        raise CommandError("--points must be at least 1")
    backend = args.backend
    if backend == "auto" and not args.check:
        backend = "python"
    fn = compile_expr(expr, params, wrt=wrt, backend=backend)
    emit = args.emit or ("source" if not args.check else None)
    if emit == "source":
        print(fn.source, end="" if fn.source.endswith("\n") else "\n")
    elif emit == "ir":
        print(fn.ir)
    return _check(fn, params, args.points, args.seed) if args.check else 0


def _check(fn, params: list, points: int, seed: int) -> int:
    rng = random.Random(seed)
    failed = 0
    for _ in range(points):
        point = {s: rng.uniform(*CHECK_DOMAIN) for s in params}
        with np.errstate(all="ignore"):  # inf relative errors are reported, not warned
            report = check_grad(fn, point, raise_on_error=False)
        print(report)
        failed += not report.ok
    if failed:
        print(f"symgrad: error: the gradients disagree at {failed} of {points} points",
              file=sys.stderr)
        return 1
    print(f"OK: compiled ({fn.backend}), symbolic, tape and finite-difference gradients "
          f"agree at {points} random points")
    return 0


# -- graph ----------------------------------------------------------------------------

_RENDERED = (".svg", ".png", ".pdf")


@command(
    "graph", "draw the formula's DAG, with values and gradients on each node (Graphviz)",
    FORMULA,
    arg("--at", metavar="x=1.5,y=0.7",
        help="a value for every variable: each node then shows its value and gradient"),
    arg("-o", "--output", metavar="FILE",
        help="write FILE: .dot (the DOT text) or .svg, .png, .pdf (rendered with Graphviz's "
             "dot if installed, else the .dot file is written); default: DOT on stdout"),
)
def graph_command(args: argparse.Namespace) -> int:
    expr = parse_formula(args.formula)
    point = _point(args.at, expr) if args.at is not None else None
    text = to_dot(expr, at=point)
    if args.output is None:
        print(text)
        return 0
    path = Path(args.output)
    suffix = path.suffix.lower()
    if suffix in (".dot", ".gv"):
        path.write_text(text + "\n")
    elif suffix in _RENDERED:
        try:
            data = render(text, suffix[1:])
        except RuntimeError as exc:
            raise CommandError(str(exc)) from None
        if data is None:
            dot_path = path.with_suffix(".dot")
            dot_path.write_text(text + "\n")
            _note(f"Graphviz's dot is not installed; wrote {dot_path} instead. Render it with: "
                  f"dot -T{suffix[1:]} {shlex.quote(str(dot_path))} -o {shlex.quote(str(path))}")
            return 0
        path.write_bytes(data)
    else:
        raise CommandError(f"-o {args.output}: unknown format {suffix or '(no suffix)'}; "
                           f"use .dot, .svg, .png or .pdf")
    print(f"wrote {path}", file=sys.stderr)
    return 0


@command(
    "demo", "train micrograd's moons MLP with a compiled training step and print the accuracy",
    arg("--steps", type=int, default=100, help="SGD steps (default 100, as micrograd)"),
    arg("--seed", type=int, default=0, help="seed of the data and of the initial weights"),
    arg("-o", "--output", default="moons.png",
        help="decision-boundary and loss-curve plot (PNG; needs matplotlib); default moons.png"),
    arg("--no-plot", action="store_true", help="do not plot"),
    arg("--no-progress", action="store_true", help="no progress bar"),
)
def demo_command(args: argparse.Namespace) -> int:
    from symgrad.demo import moons_demo

    if args.steps < 1:
        raise CommandError(f"--steps must be at least 1, got {args.steps}")
    moons_demo(steps=args.steps, seed=args.seed, plot=None if args.no_plot else args.output,
               progress=False if args.no_progress else None)
    return 0
