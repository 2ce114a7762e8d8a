"""The back end's op table (compiler/ops) is the only place that names ops.

Every list the back ends need (what llvm supports, what the runtimes export,
what SIMD kernels vectorise, which libmvec functions to look up) is derived
from the records, so a primitive registered once is compiled everywhere; no
module of ``compiler/`` outside ``compiler/ops/`` spells out a list of op
names.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest

from compiler import llvmjit, llvmsimd, nbruntime, ops, runtime
from compiler.emitter import SimdMath
from compiler.ir import Builder
from compiler.llvmscalar import llvm_module, supported_ops

ROOT = Path(__file__).resolve().parents[1]


def _literal_op_lists(path: Path) -> list:
    """(line, names) of tuple/list/set/dict literals with two or more op names."""
    names = ops.names()
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            elts = node.elts
        elif isinstance(node, ast.Dict):
            elts = [k for k in node.keys if k is not None]
        else:
            continue
        hits = [e.value for e in elts if isinstance(e, ast.Constant) and e.value in names]
        if len(hits) >= 2:
            found.append((node.lineno, hits))
    return found


def test_no_list_of_op_names_outside_the_records():
    files = [p for p in sorted((ROOT / "compiler").rglob("*.py")) if "ops" not in p.parts]
    files += [ROOT / "symgrad" / "matrix" / "compile.py", ROOT / "symgrad" / "compile.py"]
    offenders = {str(p.relative_to(ROOT)): hits for p in files if (hits := _literal_op_lists(p))}
    assert offenders == {}


def test_the_checker_sees_a_list_of_op_names(tmp_path):
    src = tmp_path / "m.py"
    src.write_text('VEC = ("tanh", "exp", "other")\nOK = ("tanh", "x")\n')
    assert _literal_op_lists(src) == [(1, ["tanh", "exp"])]


def test_derived_tables_follow_the_records():
    prims = ops.all_primitives()
    assert {p.name for p in prims} == set(supported_ops()) == ops.names()
    for p in prims:
        assert runtime.lookup(p.name) is p.ref
        assert getattr(runtime, p.name) is p.ref
        assert callable(getattr(nbruntime, p.name))
        assert p.vector in ops.VECTOR_STRATEGIES and p.doc
        calls = ops.libm_calls(p.name)
        # the strategy matches the template
        assert (p.vector != "exact" or calls == ()) and (p.vector != "libmvec" or calls), p.name
    table = llvmjit.simd_math().table
    wanted = {f for p in prims for f, _ in ops.libm_calls(p.name)}
    assert set(table) <= wanted


_CUBE = "test_records_cube"


def _cube_ref(a: float) -> float:
    return a * a * a


@pytest.fixture
def cube():
    ops.register(_CUBE, 1, _cube_ref, lambda e, a: e.fmul(e.fmul(a[0], a[0]), a[0]),
                 "exact", "a**3 as two products")
    yield _CUBE
    ops.unregister(_CUBE)
    assert _CUBE not in ops.names() and not hasattr(runtime, _CUBE)


def test_one_record_is_all_a_new_primitive_needs(cube):
    """Registered once, a primitive is in every derived table and compiles on
    the reference, numba, llvm scalar and llvm SIMD paths with the same bits."""
    assert _CUBE in supported_ops() and runtime.lookup(_CUBE) is _cube_ref
    b = Builder(1)
    fn = b.finish([b.op(_CUBE, b.input(0)), b.op(_CUBE, b.const(1.5))])
    assert fn.instrs[fn.outputs[1]].op == "const" and fn.instrs[fn.outputs[1]].args[0] == 3.375
    pts = np.array([0.0, -0.0, 1.5, -2.25, 1e103, -1e-120, np.inf, -np.inf, np.nan, 3.0])
    expect = np.array([_cube_ref(float(v)) for v in pts])
    # numba jits the ref unchanged
    assert np.array_equal([getattr(nbruntime, _CUBE)(float(v)) for v in pts], expect, equal_nan=True)
    # llvm scalar kernel
    k = llvmjit.load_llvm(fn)
    out = np.empty(2)
    got = []
    for v in pts:
        k.call(np.array([v]), out)
        got.append(out[0])
    assert np.array_equal(got, expect, equal_nan=True)
    assert np.array_equal(np.signbit(got), np.signbit(expect))
    # SIMD kernel, with a tail
    vec = llvmjit.load_vector(fn)
    res = vec([(pts, 0, 1)], pts.size)
    assert np.array_equal(res[0], expect, equal_nan=True) and np.all(res[1] == 3.375)
    # the IR names no helper lists: the template is the whole story
    assert "fmul <4 x double>" in llvmsimd.vector_module(fn, "k", SimdMath(4))
    assert llvm_module(fn, "k").count("fmul double") == 2


def test_unknown_primitive_is_a_clear_error():
    with pytest.raises(KeyError, match="no primitive 'no_such_op'.*known:"):
        ops.get("no_such_op")
    from compiler.ir import Function, Instr
    fn = Function(1, (Instr("input", (0,)), Instr("no_such_op", (0,))), (1,))
    with pytest.raises(NotImplementedError, match="no template for \\['no_such_op'\\].*register"):
        llvm_module(fn, "k")


def test_register_rejects_bad_records():
    with pytest.raises(ValueError, match="identifier"):
        ops.register("not an identifier", 1, math.exp, lambda e, a: a[0])
    with pytest.raises(ValueError, match="vector must be one of"):
        ops.register("test_records_bad", 1, math.exp, lambda e, a: a[0], "simd")
    with pytest.raises(ValueError, match="already registered"):
        ops.register("tanh", 1, math.tanh, lambda e, a: a[0])


def test_call_layer_has_no_exec_and_no_globals_rewriting():
    """One kernel object chosen once: no exec-generated dispatchers, no hot swap
    through a function's __globals__ (grep-able facts of the call layer)."""
    layer = ["symgrad/compile.py", "compiler/kernel.py", "compiler/signature.py",
             "compiler/parallel.py", "compiler/pyglue.py", "compiler/llvmjit.py",
             "compiler/llvmbatch.py"]
    for rel in layer:
        tree = ast.parse((ROOT / rel).read_text())
        calls = [n.func.id for n in ast.walk(tree)
                 if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
        assert "exec" not in calls and "eval" not in calls, rel
        attrs = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        assert "__globals__" not in attrs, rel
