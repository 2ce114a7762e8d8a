"""The ``symgrad`` command line (in-process through ``main``, and once through
``python -m symgrad``) and ``sg.to_dot``: golden outputs, exit statuses, and
the numbers on every node of a drawing."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sympy as sp

import symgrad as sg
from symgrad import cli
from symgrad.cli import main
from symgrad.dot import Dot, to_dot

ROOT = Path(__file__).resolve().parents[1]
x, y, w, b = sp.symbols("x y w b")


def run(capsys, *argv):
    """``main(argv)`` -> (exit status, stdout, stderr)."""
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


# ---------------------------------------------------------------------------
# 1. diff: golden outputs in every format
# ---------------------------------------------------------------------------

def test_diff_pretty(capsys):
    status, out, err = run(capsys, "diff", "x*tanh(y) + relu(x - y)", "--wrt", "x,y")
    assert status == 0 and err == ""
    assert out == ("d/dx = tanh(y) + Heaviside(x - y, 0)\n"
                   "d/dy = x*(1 - tanh(y)**2) - Heaviside(x - y, 0)\n")


def test_diff_pretty_logistic(capsys):
    status, out, _ = run(capsys, "diff", "log(1 + exp(w*x + b))", "--wrt", "w,b")
    assert status == 0
    assert out == ("d/dw = x*exp(b + w*x)/(exp(b + w*x) + 1)\n"
                   "d/db = exp(b + w*x)/(exp(b + w*x) + 1)\n")


def test_diff_pretty_power_rule_and_absent_variable(capsys):
    status, out, _ = run(capsys, "diff", "x^3 - 2*x", "--wrt", "x,z")
    assert status == 0
    assert out == "d/dx = 3*x**2 - 2\nd/dz = 0\n"


def test_diff_latex(capsys):
    status, out, _ = run(capsys, "diff", "log(1 + exp(w*x + b))", "--wrt", "w,b",
                         "--format", "latex")
    assert status == 0
    assert out == (r"\frac{\partial f}{\partial w} = \frac{x e^{b + w x}}{e^{b + w x} + 1}" "\n"
                   r"\frac{\partial f}{\partial b} = \frac{e^{b + w x}}{e^{b + w x} + 1}" "\n")


def test_diff_latex_relu(capsys):
    status, out, _ = run(capsys, "diff", "x*tanh(y) + relu(x - y)", "--wrt", "y",
                         "--format", "latex")
    assert status == 0
    assert out == (r"\frac{\partial f}{\partial y} = x \left(1 - \tanh^{2}{\left(y \right)}"
                   r"\right) - \theta\left(x - y, 0\right)" "\n")


def test_diff_program(capsys):
    status, out, _ = run(capsys, "diff", "x*tanh(y)", "--wrt", "x,y", "--format", "program")
    assert status == 0
    assert out == ("# forward: 2 steps\n"
                   "t0 = tanh(y)\n"
                   "t1 = t0*x\n"
                   "# reverse: adjoints w.r.t. (x, y), output adjoint seeded with 1\n"
                   "x_bar = t0\n"
                   "y_bar = x*(1 - t0**2)\n"
                   "return t1, (x_bar, y_bar)\n")


def test_diff_program_logistic(capsys):
    status, out, _ = run(capsys, "diff", "log(1 + exp(w*x + b))", "--wrt", "w,b",
                         "--format", "program")
    assert status == 0
    assert out == ("# forward: 5 steps\n"
                   "t0 = w*x\n"
                   "t1 = b + t0\n"
                   "t2 = exp(t1)\n"
                   "t3 = t2 + 1\n"
                   "t4 = log(t3)\n"
                   "# reverse: adjoints w.r.t. (w, b), output adjoint seeded with 1\n"
                   "t3_bar = 1/t3\n"
                   "t1_bar = t2*t3_bar\n"
                   "w_bar = t1_bar*x\n"
                   "b_bar = t1_bar\n"
                   "return t4, (w_bar, b_bar)\n")
    assert out.rstrip("\n") == str(sg.gradient_program(sp.log(1 + sp.exp(w * x + b)), [w, b]))


def test_diff_code(capsys):
    status, out, _ = run(capsys, "diff", "log(1 + exp(w*x + b))", "--wrt", "w,b",
                         "--format", "code")
    assert status == 0
    source = sg.compile(sp.log(1 + sp.exp(w * x + b)), [w, b, x], wrt=[w, b],
                        backend="python").source
    header = "# inp = [w, b, x], out = [f, df/dw, df/db]\n"
    assert out == header + source.rstrip("\n") + "\n"
    assert "def value_and_grad(inp, out):" in out and "exp(" in out and "log(" in out


def test_diff_simplify(capsys):
    status, out, err = run(capsys, "diff", "exp(x)/(1 + exp(x))", "--wrt", "x")
    assert status == 0
    assert out == "d/dx = (1/(exp(x) + 1) - exp(x)/(exp(x) + 1)**2)*exp(x)\n"
    status, out, err = run(capsys, "diff", "exp(x)/(1 + exp(x))", "--wrt", "x", "--simplify")
    assert status == 0 and err == ""
    assert out == "d/dx = exp(x)/(exp(2*x) + 2*exp(x) + 1)\n"


def test_diff_simplify_skips_big_derivatives(capsys):
    formula = "*".join(f"sin(x + {k})" for k in range(1, 40))
    status, out, err = run(capsys, "diff", formula, "--wrt", "x", "--simplify")
    assert status == 0
    assert out.startswith("d/dx = ")
    assert re.fullmatch(r"symgrad: note: d/dx has \d+ operations; not simplified \(limit 200\)\n",
                        err)


def test_diff_simplify_time_limit(capsys, monkeypatch):
    def slow_simplify(expr):
        time.sleep(5)
        return expr

    monkeypatch.setattr(sp, "simplify", slow_simplify)
    monkeypatch.setattr(cli, "SIMPLIFY_SECONDS", 0.2)
    t0 = time.perf_counter()
    status, out, err = run(capsys, "diff", "x**2", "--wrt", "x", "--simplify")
    assert time.perf_counter() - t0 < 3
    assert status == 0 and out == "d/dx = 2*x\n"
    assert err == "symgrad: note: simplifying d/dx took longer than 0.2 s; not simplified\n"


def test_diff_simplify_note_for_program(capsys):
    status, out, err = run(capsys, "diff", "x**2", "--wrt", "x", "--format", "program",
                           "--simplify")
    assert status == 0 and "x_bar = 2*x" in out
    assert err == "symgrad: note: --simplify applies to --format pretty and latex, not program\n"


def test_diff_deeply_nested_tanh_is_fast(capsys):
    formula = "exp(tanh(" * 10 + "x" + "))" * 10
    t0 = time.perf_counter()
    status, out, _ = run(capsys, "diff", formula, "--wrt", "x", "--format", "program")
    assert status == 0 and time.perf_counter() - t0 < 10
    assert out.count("= tanh(") == 10


def test_diff_gives_up_when_sympy_is_too_slow(capsys, monkeypatch):
    # SymPy's evaluation of these nested tanh is exponential (here: minutes)
    monkeypatch.setattr(cli, "DIFF_SECONDS", 0.5)
    formula = "exp(tanh(" * 10 + "x" + "))" * 10
    t0 = time.perf_counter()
    status, out, err = run(capsys, "diff", formula, "--wrt", "x")
    assert time.perf_counter() - t0 < 5
    assert status == 2 and out == ""
    assert err == ("symgrad: error: SymPy took more than 0.5 s to build the derivative "
                   "expressions (it is slow on nested sinh/cosh/tanh); --format program shows "
                   "them without SymPy's evaluation\n")


def test_formula_starting_with_minus(capsys):
    assert run(capsys, "diff", "--wrt", "x", "--", "-x**2") == (0, "d/dx = -2*x\n", "")


# ---------------------------------------------------------------------------
# 2. Bad input: exit status 2, one line on stderr
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["diff", "x*(y", "--wrt", "x"], "column 5: expected ')' but found end of formula"),
    (["diff", "2x", "--wrt", "x"], ("column 2: expected an operator or end of formula but "
                                   "found 'x' (no implicit multiplication: write 2*x)")),
    (["diff", "tahn(x)", "--wrt", "x"],
     "column 1: unknown function 'tahn'; did you mean tan, tanh or atan?"),
    (["diff", "atan2(x)", "--wrt", "x"], "column 1: atan2() takes 2 arguments but 1 was given"),
    (["diff", "9**9**9**9", "--wrt", "x"],
     ("column 5: this power of numbers would be an exact number of about 369,693,100 digits "
     "(the limit is 3,010)")),
    (["diff", "x", "--wrt", "x,,y"], ("--wrt 'x,,y': empty name; write names separated by "
                                     "commas, e.g. --wrt x,y")),
    (["diff", "x", "--wrt", "x,x"], "--wrt: x is listed twice"),
    (["diff", "x", "--wrt", "x+1"], "--wrt: 'x+1' is not a variable name"),
    (["diff", "x", "--wrt", "tanh"], ("--wrt: 'tanh' is not a variable name (column 1: 'tanh' "
                                     "is a function; call it as tanh(...))")),
    (["diff", "pi*x", "--wrt", "pi"], ("--wrt: 'pi' is the constant pi in formulas, "
                                      "not a variable")),
    (["diff", "x/0", "--wrt", "x"], ("zoo is complex; symgrad differentiates real-valued "
                                    "expressions only")),
    (["compile", "x*y*z", "--args", "x,y"], "the formula uses z, which --args does not list"),
    (["compile", "x*y", "--args", "x,y", "--wrt", "z"], "--wrt z: not in --args"),
    (["compile", "x", "--check", "--points", "0"], "--points must be at least 1"),
    (["graph", "x*y", "--at", "x=1"], "--at: no value for y"),
    (["graph", "x*y", "--at", "x=1,y=2,z=3"], "--at: z does not occur in the formula"),
    (["graph", "x*y", "--at", "x=1,y"], "--at: 'y' needs a value, e.g. --at x=1.5,y=0.7"),
    (["graph", "x*y", "--at", "x=1,y=abc"], "--at: 'abc' is not a number (in 'y=abc')"),
    (["graph", "x", "-o", "no/such/dir/g.dot"],
     "[Errno 2] No such file or directory: 'no/such/dir/g.dot'"),
    (["graph", "x", "-o", "out.txt"], ("-o out.txt: unknown format .txt; use .dot, .svg, "
                                      ".png or .pdf")),
])
def test_bad_input_exits_2_with_one_line(capsys, argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert out == ""
    assert err == f"symgrad: error: {message}\n"
    assert list(tmp_path.iterdir()) == []


def test_missing_wrt_is_a_usage_error(capsys):
    status, out, err = run(capsys, "diff", "x*y")
    assert status == 2 and out == ""
    assert err.startswith("usage: symgrad diff ")
    assert err.endswith("symgrad diff: error: the following arguments are required: --wrt\n")


def test_unknown_format_and_no_command(capsys):
    status, _, err = run(capsys, "diff", "x", "--wrt", "x", "--format", "mathml")
    assert status == 2 and "invalid choice: 'mathml'" in err
    status, _, err = run(capsys, )
    assert status == 2 and "the following arguments are required: COMMAND" in err


def test_code_injection_creates_no_file(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, err = run(capsys, "diff", "__import__('os').system('touch pwned')", "--wrt", "x")
    assert status == 2 and out == ""
    assert err == "symgrad: error: column 12: strings are not allowed\n"
    for formula in ("__import__", "exec(x)", "x.__class__", "lambda: 1"):
        assert run(capsys, "diff", formula, "--wrt", "x")[0] == 2
    assert not (tmp_path / "pwned").exists()
    assert list(tmp_path.iterdir()) == []


def test_version(capsys):
    status, out, _ = run(capsys, "--version")
    assert status == 0
    assert out == f"symgrad {sg.__version__}\n"


def test_help_of_each_subcommand(capsys):
    for command in ("diff", "compile", "graph"):
        status, out, _ = run(capsys, command, "--help")
        assert status == 0
        assert out.startswith(f"usage: symgrad {command} ")
    status, out, _ = run(capsys, "--help")
    assert status == 0 and all(c in out for c in ("diff", "compile", "graph", "--version"))


def test_python_dash_m_behaves_like_main(tmp_path):
    def symgrad(*argv):
        return subprocess.run([sys.executable, "-m", "symgrad", *argv], cwd=ROOT, check=False,
                              capture_output=True, text=True, timeout=120)

    proc = symgrad("--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: symgrad [-h] [--version] COMMAND ...")
    proc = symgrad("diff", "x*tanh(y) + relu(x - y)", "--wrt", "x,y")
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout == ("d/dx = tanh(y) + Heaviside(x - y, 0)\n"
                           "d/dy = x*(1 - tanh(y)**2) - Heaviside(x - y, 0)\n")
    proc = symgrad("diff", "x*(y", "--wrt", "x")
    assert proc.returncode == 2
    assert proc.stderr == "symgrad: error: column 5: expected ')' but found end of formula\n"


def test_console_script_is_declared():
    text = (ROOT / "pyproject.toml").read_text()
    assert '[project.scripts]\nsymgrad = "symgrad.cli:main"' in text


# ---------------------------------------------------------------------------
# 3. compile
# ---------------------------------------------------------------------------

def test_compile_emit_source(capsys):
    status, out, _ = run(capsys, "compile", "x*tanh(y)", "--args", "x,y", "--emit", "source")
    assert status == 0
    expected = sg.compile(x * sp.tanh(y), [x, y], backend="python").source
    assert out == expected.rstrip("\n") + "\n"
    assert out.startswith("def value_and_grad(inp, out):")
    assert "tanh(" in out and "out[2] = " in out
    # the default is --emit source, and --args defaults to the variables by name
    assert run(capsys, "compile", "x*tanh(y)")[1] == out


def test_compile_argument_order(capsys):
    status, out, _ = run(capsys, "compile", "x*tanh(y)", "--args", "y,x", "--wrt", "x")
    assert status == 0
    expected = sg.compile(x * sp.tanh(y), [y, x], wrt=[x], backend="python").source
    assert out == expected.rstrip("\n") + "\n"


def test_compile_emit_ir(capsys):
    status, out, _ = run(capsys, "compile", "x*tanh(y)", "--args", "x,y", "--emit", "ir")
    assert status == 0
    fn = sg.compile(x * sp.tanh(y), [x, y], backend="python")
    assert out == str(fn.ir) + "\n"
    assert "tanh(" in out and "out[0] = " in out


def test_compile_check_passes(capsys):
    status, out, err = run(capsys, "compile", "x*tanh(y) + relu(x - y) + log(1 + x**2)/y",
                           "--check", "--backend", "python")
    assert status == 0 and err == ""
    reports = [line for line in out.splitlines() if line.startswith("check_grad at")]
    assert len(reports) == 3
    assert out.count(": OK\n") == 3
    assert out.endswith("OK: compiled (python), symbolic, tape and finite-difference gradients "
                        "agree at 3 random points\n")
    points = [re.search(r"\{x: ([\d.]+), y: ([\d.]+)\}", r).groups() for r in reports]
    assert all(0.2 <= float(v) <= 1.5 for p in points for v in p)
    # same seed, same points; --emit source prints the source too
    status, out2, _ = run(capsys, "compile", "x*tanh(y) + relu(x - y) + log(1 + x**2)/y",
                          "--check", "--backend", "python", "--points", "1", "--emit", "source")
    assert status == 0
    assert out2.startswith("def value_and_grad(") and reports[0] in out2


def test_compile_check_fails_with_exit_1(capsys):
    # the step function's finite differences straddle a jump at every point
    status, out, err = run(capsys, "compile", "floor(1000000*x)", "--check", "--backend",
                           "python", "--points", "2")
    assert status == 1
    assert out.count("MISMATCH (d/dx: finite_diff") == 2
    assert err == "symgrad: error: the gradients disagree at 2 of 2 points\n"


# ---------------------------------------------------------------------------
# 4. graph and to_dot
# ---------------------------------------------------------------------------

_RECORD = re.compile(r'^  (n\d+) \[label="\{ (.*?) \}"')


def _records(dot: str) -> dict:
    """{name: {"data": float, "grad": float}} for every record node."""
    nodes = {}
    for line in dot.splitlines():
        m = _RECORD.match(line)
        if m:
            name, *fields = [f.strip() for f in m.group(2).split(" | ")]
            assert name not in nodes, f"node {name} drawn twice"
            nodes[name] = {k: float(v) for k, v in (f.split(" ") for f in fields)}
    return nodes


def test_graph_values_and_gradients(capsys):
    status, out, _ = run(capsys, "graph", "x*tanh(y)", "--at", "x=1.5,y=0.7")
    assert status == 0
    nodes = _records(out)
    t = math.tanh(0.7)
    assert set(nodes) == {"x", "y", "t0", "t1"}
    assert nodes["x"] == pytest.approx({"data": 1.5, "grad": t}, abs=1e-4)
    assert nodes["y"] == pytest.approx({"data": 0.7, "grad": 1.5 * (1 - t * t)}, abs=1e-4)
    assert nodes["t0"] == pytest.approx({"data": t, "grad": 1.5}, abs=1e-4)
    assert nodes["t1"] == pytest.approx({"data": 1.5 * t, "grad": 1.0}, abs=1e-4)
    assert out.count('shape=ellipse') == 2
    assert '[label="tanh", shape=ellipse]' in out and '[label="*", shape=ellipse]' in out
    assert out.startswith("digraph symgrad {\n") and out.endswith("}\n")


def test_graph_draws_shared_subexpressions_once(capsys):
    status, out, _ = run(capsys, "graph", "x*tanh(y) + tanh(y)^2 + relu(x - y)",
                         "--at", "x=1.5,y=0.7")
    assert status == 0
    assert out.count('[label="tanh", shape=ellipse]') == 1
    nodes = _records(out)
    t = math.tanh(0.7)
    tanh_node = next(n for n, v in nodes.items() if v.get("data") == pytest.approx(t, abs=1e-4))
    # d f / d tanh(y) = x + 2 tanh(y), from both uses
    assert nodes[tanh_node]["grad"] == pytest.approx(1.5 + 2 * t, abs=1e-4)
    assert nodes["y"]["grad"] == pytest.approx((1.5 + 2 * t) * (1 - t * t) - 1, abs=1e-4)
    assert nodes["x"]["grad"] == pytest.approx(t + 1, abs=1e-4)


def test_graph_without_values(capsys):
    status, out, _ = run(capsys, "graph", "x*y + x")
    assert status == 0
    assert '  n0 [label="{ x }", style=bold];' in out
    assert "| data" not in out and "| grad" not in out


def test_graph_output_dot_file(capsys, tmp_path):
    status, stdout, _ = run(capsys, "graph", "x*tanh(y)", "--at", "x=1.5,y=0.7")
    target = tmp_path / "out.dot"
    status, out, err = run(capsys, "graph", "x*tanh(y)", "--at", "x=1.5,y=0.7",
                           "-o", str(target))
    assert status == 0 and out == ""
    assert err == f"wrote {target}\n"
    assert target.read_text() == stdout


def test_graph_svg_without_graphviz_writes_dot_and_says_how(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    target = tmp_path / "graph.svg"
    status, _out, err = run(capsys, "graph", "x*tanh(y)", "--at", "x=1.5,y=0.7",
                           "-o", str(target))
    assert status == 0
    assert not target.exists()
    dot_file = tmp_path / "graph.dot"
    assert dot_file.read_text().startswith("digraph symgrad {")
    assert err == (f"symgrad: note: Graphviz's dot is not installed; wrote {dot_file} instead. "
                   f"Render it with: dot -Tsvg {dot_file} -o {target}\n")


def test_graph_svg_with_graphviz(capsys, tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "dot"
    fake.parent.mkdir()
    cat = shutil.which("cat")
    fake.write_text(f'#!/bin/sh\necho "<svg format=$1>"\n{cat}\necho "</svg>"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake.parent))
    target = tmp_path / "graph.svg"
    status, _out, err = run(capsys, "graph", "x*tanh(y)", "-o", str(target))
    assert status == 0 and err == f"wrote {target}\n"
    svg = target.read_text()
    assert svg.startswith("<svg format=-Tsvg>\ndigraph symgrad {") and svg.endswith("}</svg>\n")


def test_to_dot_matches_the_tape_engine():
    f = x * sp.tanh(y) + sp.log(1 + x**2) / y
    nodes = _records(to_dot(f, at={x: 1.5, y: 0.7}))
    value, grads = sg.tape.replay(f, {x: 1.5, y: 0.7})
    out = max(nodes, key=lambda n: int(n[1:]) if n.startswith("t") else -1)
    assert nodes[out] == pytest.approx({"data": value, "grad": 1.0}, abs=1e-4)
    assert nodes["x"]["grad"] == pytest.approx(grads[x], abs=1e-4)
    assert nodes["y"]["grad"] == pytest.approx(grads[y], abs=1e-4)


def test_to_dot_wrt_and_several_outputs():
    dot = to_dot(x * y, at={x: 2.0, y: 3.0}, wrt=[x])
    nodes = _records(dot)
    assert nodes["x"] == {"data": 2.0, "grad": 3.0}
    assert nodes["y"] == {"data": 3.0}  # not differentiated
    assert '[label="{ x | data 2.0000 | grad 3.0000 }", style=bold]' in dot
    both = _records(to_dot([x * y, x + y], at={x: 2.0, y: 3.0}))
    assert all("grad" not in v for v in both.values())
    assert sorted(v["data"] for v in both.values()) == [2.0, 3.0, 5.0, 6.0]


def test_to_dot_escapes_user_names():
    odd = sp.Symbol('a{b}|<c> "q\\')
    dot = to_dot(odd * 2, at={odd: 1.0})
    assert r'[label="{ a\{b\}\|\<c\> \"q\\ | data 1.0000 | grad 2.0000 }", style=bold]' in dot
    quoted = to_dot(sp.Symbol('say "hi"\n') + 1)
    assert r'label="{ say \"hi\"  }"' in quoted


def test_to_dot_of_a_micrograd_value():
    v = sg.Value(-4.0)
    z = 2 * v + 2 + v
    q = z.relu() + z * v
    h = (z * z).relu()
    out = h + q + q * v
    out.backward()
    dot = to_dot(out)

    seen, stack = {}, [out]  # every distinct Value, independently of to_dot
    while stack:
        n = stack.pop()
        if id(n) not in seen:
            seen[id(n)] = n
            stack.extend(n._prev)
    records = re.findall(r'^  v\d+ \[label="\{ (.*?) \}"', dot, re.MULTILINE)
    assert len(records) == len(seen) == 14
    assert len(re.findall(r"^  v\d+_op \[", dot, re.MULTILINE)) == sum(bool(n._prev) for n in seen.values())
    assert "data -4.0000 | grad 46.0000" in records  # micrograd's documented gradient
    assert "data -20.0000 | grad 1.0000" in records
    assert dot.count('label="ReLU"') == 2
    assert to_dot(out) == dot  # deterministic


def test_to_dot_of_a_value_rejects_at():
    with pytest.raises(TypeError, match="at= and wrt= are for SymPy expressions"):
        to_dot(sg.Value(1.0), at={x: 1.0})


def test_dot_repr_svg(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    dot = to_dot(x + 1)
    assert isinstance(dot, Dot) and isinstance(dot, str)
    assert dot._repr_svg_() is None


def test_demo_trains_and_prints_an_accuracy(capsys, tmp_path, monkeypatch):
    from symgrad.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--steps", "20", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "parameters: 337" in out
    acc = float(out.split("training accuracy ")[1].split("%")[0])
    assert 50.0 <= acc <= 100.0
    assert ("matplotlib is not installed" in out) or (tmp_path / "moons.png").exists()
    assert main(["demo", "--steps", "0"]) == 2
