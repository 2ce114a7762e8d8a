"""Every LLVM IR generator in compiler/ writes its IR through the one shared
emitter (compiler/emitter.py): no generator writes ``define``/``declare``
lines by hand, and no IR text is edited after it is emitted (``str.replace``
or ``re.sub`` over IR). Plus the small general helpers the generators share.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import llvmlite.binding as llvm
import pytest

from compiler.emitter import FunctionEmitter, Module

COMPILER = Path(__file__).resolve().parent.parent / "compiler"

# Literal text that only LLVM IR has: a local/global name, or an instruction
# keyword followed by a space or a type.
_IR_TOKEN = re.compile(r"[%@][\w.{]|\b(?:ret|call|br|define|declare|store|load|phi|alloca|"
                       r"getelementptr|icmp|fcmp|select|label)\b")
_DEFINE = re.compile(r"\s*(?:define|declare)\s")

ALLOWED: set = set()   # (file, source) pairs allowed to edit IR text: none


def _literal(node: ast.AST) -> str | None:
    """The literal text of a string constant or f-string (placeholders as ``{}``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return None


def _docstrings(tree: ast.AST) -> set:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and _literal(body[0].value) is not None:
                ids.add(id(body[0].value))
    return ids


def ir_violations(source: str, filename: str = "<source>") -> list:
    """``(line, code)`` of every place in ``source`` that writes IR outside the
    emitter: a string literal or f-string starting with ``define ``/``declare ``
    (docstrings aside), or a ``.replace(...)`` / ``re.sub(...)`` whose literal
    arguments look like IR."""
    tree = ast.parse(source, filename)
    skip = _docstrings(tree)
    for node in ast.walk(tree):        # the literal pieces of an f-string: the f-string counts
        if isinstance(node, ast.JoinedStr):
            skip.update(id(v) for v in node.values)
    found = []

    def flag(node):
        code = ast.get_source_segment(source, node) or ""
        if (Path(filename).name, code) not in ALLOWED:
            found.append((node.lineno, code))

    for node in ast.walk(tree):
        text = _literal(node)
        if text is not None and id(node) not in skip and _DEFINE.match(text):
            flag(node)
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        attr, owner = node.func.attr, node.func.value
        is_replace = attr == "replace"
        is_re = attr in ("sub", "subn") and isinstance(owner, ast.Name) and owner.id == "re"
        if not (is_replace or is_re):
            continue
        literals = [_literal(a) for a in node.args]
        if any(t is not None and _IR_TOKEN.search(t) for t in literals):
            flag(node)
    return sorted(found)


def _generator_sources() -> list:
    return sorted(p for p in COMPILER.rglob("*.py") if p.name != "emitter.py")


def test_no_generator_writes_ir_outside_the_emitter():
    sources = _generator_sources()
    assert {"pyglue.py", "llvmbatch.py", "llvmscalar.py", "llvmsimd.py", "llvmloops.py"} \
        <= {p.name for p in sources}
    bad = {}
    for path in sources:
        found = ir_violations(path.read_text(), str(path))
        if found:
            bad[str(path.relative_to(COMPILER))] = found
    assert not bad, f"IR written outside compiler/emitter.py: {bad}"


def test_allowed_exceptions_still_exist():
    """The allow-list does not go stale: each entry names code that is there."""
    for name, code in ALLOWED:
        assert code in (COMPILER / name).read_text(), (name, code)


def test_the_check_catches_planted_violations():
    planted = '''
def glue(name, body, on_heap):
    L = [f"define ptr @{name}(ptr %self) {{", "entry:"]
    text = ["declare void @free(ptr)"]
    if on_heap:
        body = [line.replace("  ret ptr ", "  call void @free(ptr %in)\\n  ret ptr ")
                for line in body]
    ir = re.sub(r"%t(\\d+)", r"%u\\1", "\\n".join(L + body))
    return ir.replace(f"@{name}", "@other")
'''
    found = ir_violations(planted)
    assert [line for line, _ in found] == [3, 4, 6, 8, 9], found
    # ... and in a real generator module
    real = (COMPILER / "pyglue.py").read_text()
    assert ir_violations(real) == []
    assert len(ir_violations(real + '\nX = "\\n".join(["declare ptr @malloc(i64)"])\n')) == 1
    assert len(ir_violations(real + "\ndef f(t):\n    return t.replace('ret ptr', 'ret void')\n")) == 1


def test_the_check_leaves_legitimate_code_alone():
    ok = '''
"""define things: a module docstring may say define or declare."""
import os, re
def f(tmp, path, doc, text, sig):
    """declare nothing (a docstring)"""
    os.replace(tmp, path)
    doc = doc.split("\\n\\n")[1].replace("\\n", " ")
    text = text.replace("cache=True", "cache=False")
    name = re.sub(r"\\W", "_", sig)
    msg = f"{sig} must define its outputs"
    return e.finish(f"ptr @{sig}(ptr %self)")
'''
    assert ir_violations(ok) == []


# -- the helpers generators share ---------------------------------------------------

def _verify(text: str) -> None:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    llvm.parse_assembly(text).verify()


def test_alloca_and_explicit_names():
    mod = Module()
    e = FunctionEmitter(mod)
    buf = e.alloca("double", 4, align=16, name="%in")
    dims = e.alloca("i64", 2)
    assert buf.text == "%in" and dims.text.startswith("%buf.")
    assert "  %in = alloca double, i64 4, align 16" in e.lines
    assert f"  {dims} = alloca i64, i64 2" in e.lines
    p = e.gep("double", buf, 1, name="%second")
    x = e.load("double", p, name="%x")
    e.store("double", x, e.gep("double", buf, 0, inbounds=False))
    mod.declare("free", "void", ["ptr"])
    fp = e.load("ptr", "%fn", hint="f")
    r = e.call("ptr", fp, [("ptr", buf)], name="%r")        # an indirect call
    assert r.text == "%r" and f"  %r = call ptr {fp}(ptr %in)" in e.lines
    assert e.call("void", "@free", [("ptr", dims)], name="%ignored") is None
    e.ret("ptr", r)
    mod.add(e.finish("ptr @f(ptr %fn)"))
    text = mod.text()
    assert text.startswith("declare void @free(ptr)\ndefine ptr @f(ptr %fn) {\nentry:\n")
    _verify(text)


def test_default_names_are_unchanged():
    """Without ``name=`` the helpers name values afresh, as before."""
    e = FunctionEmitter(Module())
    assert e.gep("double", "%in", 0).text == "%p.1"
    assert e.load("double", "%p.1").text == "%ld.2"
    assert e.call("double", "@g", [("double", "%ld.2")]).text == "%r.3"


@pytest.mark.parametrize("heap", [False, True])
def test_generated_glue_and_batch_loops_verify(heap, monkeypatch):
    from compiler import llvmbatch, pyglue

    if heap:
        monkeypatch.setattr(pyglue, "_MAX_STACK_DOUBLES", 2)
        monkeypatch.setattr(llvmbatch, "MAX_STACK_DOUBLES", 1)
    for result, n_out, rows in (("scalar", 1, 1), ("tuple", 4, 1), ("array", 4, 1),
                                ("rest", 4, 1), ("jacobian", 9, 3)):
        text = pyglue.glue_module([(0, None), (1, 3)], 4, [("k_py", n_out, result, rows),
                                                           ("k_s", 1, "scalar", 1)])
        assert text.count("call void @free") == (text.count("ret ptr") if heap else 0)
        _verify(text)
    for n_inputs in (0, 3):
        text = llvmbatch.batch_loop_module("k", "b", n_inputs, 2)
        assert ("@malloc" in text) == heap
        _verify(text)
