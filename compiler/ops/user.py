"""Primitive records for user ops: from a decomposition or from a Python forward.

A user op reaches the back end as an ordinary :class:`compiler.ops.Primitive`,
built here from one of two descriptions (the front end,
:func:`symgrad.register_op`, chooses which):

* **a decomposition** (:func:`register_decomposition`): a small SSA
  :class:`~compiler.ir.Function` over existing primitives. Its template
  replays the function's instructions through ``e.op(...)``, so it is the
  component templates inlined: native, batched, and SIMD wherever its parts
  are (the vector strategy follows from the parts). Its reference is the
  same program printed as Python that calls the component references
  (:mod:`compiler.runtime`); the numba back end jits that function
  unchanged (the components are made callable from jitted code with
  ``numba.extending.register_jitable``).
* **a numeric forward** (:func:`register_forward`): a Python function on
  floats that Numba compiles (``math`` functions and arithmetic; plain
  functions it calls that are defined in its module are compiled too). The
  python back end and the tape engine call it; numba kernels compile it
  inline; the llvm kernels call it through a Numba ``cfunc`` registered
  with the JIT under a symbol name (:func:`compiler.jit.register_external`), one call
  per point (vector strategy ``"lanes"``). A forward Numba cannot compile
  raises :class:`NativeForwardError` (naming the op and the fix) when a
  native kernel first needs it, never a Numba typing traceback.

Both records are named ``<base>_<digest>``, the digest a hash of the program
text or of the forward's code (its bytecode, constants and the globals it
reads), and the generated Python lives in a real file of that name in the
kernel cache directory. Generated kernels (Python and Numba source, LLVM IR,
all cached on disk by a hash of their text) therefore name a changed
definition differently and never reuse a stale compiled object; no process
address is ever written into cached text.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import math
import os
import sys
import threading
import types
from typing import Any, Callable, Optional

from compiler import ops
from compiler.ir import CONST, INPUT, Function

__all__ = ["register_decomposition", "register_forward", "NativeForwardError", "native_symbol",
           "code_digest"]

_LOCK = threading.RLock()
_JITABLE: set = set()        # ids of reference functions made callable from jitted code
_NATIVE: dict = {}           # record name -> (cfunc, symbol): kept alive, they own machine code


class NativeForwardError(TypeError):
    """A user op's Python forward cannot be compiled by Numba (so no native
    back end can run it). The message names the op and how to fix it."""


# -- names ------------------------------------------------------------------------------

def _identifier(base: str) -> str:
    text = "".join(c if (c.isalnum() or c == "_") and c.isascii() else "_" for c in base) or "op"
    return text if text[0].isalpha() else "op_" + text


def native_symbol(name: str) -> str:
    """The LLVM symbol the native code of forward-op record ``name`` is registered under."""
    return f"symgrad_op_{name}"


def _record_name(base: str, digest: str) -> str:
    return f"{_identifier(base)}_{digest[:12]}"


# -- digests of Python functions ---------------------------------------------------------

def code_digest(fn: Callable) -> str:
    """A stable hex digest of what ``fn`` computes: its bytecode, constants,
    names, defaults, closure values and the globals it reads (numbers,
    strings and modules by value or name, functions recursively). Two
    functions with the same digest compile to the same code.

    Examples
    --------
    >>> code_digest(lambda a: a + 1.0) == code_digest(lambda a: a + 1.0)
    True
    >>> code_digest(lambda a: a + 1.0) == code_digest(lambda a: a + 2.0)
    False
    """
    h = hashlib.sha256()
    _feed(h, fn, set())
    return h.hexdigest()[:24]


def _feed(h, obj: Any, seen: set) -> None:
    py = getattr(obj, "py_func", None)          # a Numba dispatcher: its Python function
    if py is not None and callable(py):
        obj = py
    if isinstance(obj, (int, float, complex, str, bytes, bool, type(None))):
        h.update(f"{type(obj).__name__}:{obj!r};".encode())
        return
    if isinstance(obj, types.ModuleType):
        h.update(f"module:{obj.__name__};".encode())
        return
    if isinstance(obj, (tuple, list)):
        h.update(b"(")
        for x in obj:
            _feed(h, x, seen)
        h.update(b")")
        return
    if isinstance(obj, types.CodeType):
        h.update(obj.co_code)
        h.update(repr((obj.co_names, obj.co_varnames, obj.co_argcount)).encode())
        for c in obj.co_consts:
            _feed(h, c, seen)
        return
    if isinstance(obj, types.FunctionType):
        if id(obj) in seen:
            h.update(b"<recursive>")
            return
        seen.add(id(obj))
        code = obj.__code__
        _feed(h, code, seen)
        _feed(h, obj.__defaults__, seen)
        for cell in obj.__closure__ or ():
            try:
                _feed(h, cell.cell_contents, seen)
            except ValueError:     # an empty cell
                h.update(b"<empty>")
        names = set(code.co_names)
        for c in code.co_consts:   # nested functions (comprehensions) read globals too
            if isinstance(c, types.CodeType):
                names.update(c.co_names)
        for name in sorted(names):
            if name in obj.__globals__:
                h.update(f"global {name}=".encode())
                _feed(h, obj.__globals__[name], seen)
        return
    # builtins (math.hypot), classes, other objects: by qualified name
    h.update(f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', type(obj).__name__)};"
             .encode())


# -- generated Python files ---------------------------------------------------------------

def _load_module(modname: str, text: str) -> types.ModuleType:
    """Import generated source from a real file in the cache directory (Numba
    caches only functions defined in files); the file is rewritten when its
    text differs from what it must hold."""
    from compiler.sourceload import cache_dir

    module = sys.modules.get(modname)
    if module is not None:
        return module
    path = cache_dir() / f"{modname}.py"
    try:
        current = path.read_text()
    except OSError:
        current = None
    if current != text:
        tmp = path.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(text)
        os.replace(tmp, path)   # atomic: concurrent processes never see half a file
    spec = importlib.util.spec_from_file_location(modname, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[modname] = module
    return module


def _literal(x: float) -> str:
    if x != x:
        return "_rt.NAN"
    if math.isinf(x):
        return "_rt.INF" if x > 0 else "(-_rt.INF)"
    return repr(x) if math.copysign(1.0, x) > 0 else f"({x!r})"


def reference_source(fn: Function, name: str) -> str:
    """``def name(a0, a1, ...)`` computing ``fn``'s single output, as Python
    source calling the reference functions by name (``_rt.tanh``; sums and
    products inline).

    Examples
    --------
    >>> from compiler.ir import Builder
    >>> b = Builder(1)
    >>> x = b.input(0)
    >>> y = b.op("div", x, b.op("add", b.const(1.0), b.op("abs_", x)))
    >>> print(reference_source(b.finish([y]), "softsign"), end="")
    def softsign(a0):
        v2 = _rt.abs_(a0)
        v3 = 1.0 + v2
        v4 = _rt.div(a0, v3)
        return v4
    """
    if len(fn.outputs) != 1:
        raise ValueError(f"a decomposition has one output, got {len(fn.outputs)}")
    ref: dict = {}
    lines = [f"def {name}({', '.join(f'a{k}' for k in range(fn.n_inputs))}):"]
    for i, ins in enumerate(fn.instrs):
        if ins.op == INPUT:
            ref[i] = f"a{int(ins.args[0])}"
        elif ins.op == CONST:
            ref[i] = _literal(float(ins.args[0]))
        else:
            if not ins.op.isidentifier():
                raise ValueError(f"op name {ins.op!r} is not an identifier")
            args = [ref[a] for a in ins.args]
            if ins.op == "add" and len(args) >= 2:
                rhs = " + ".join(args)
            elif ins.op == "mul":
                rhs = f"{args[0]} * {args[1]}"
            else:
                rhs = f"_rt.{ins.op}({', '.join(args)})"
            lines.append(f"    v{i} = {rhs}")
            ref[i] = f"v{i}"
    lines.append(f"    return {ref[fn.outputs[0]]}")
    return "\n".join(lines) + "\n"


def _make_jitable(ref: Callable) -> None:
    """Let Numba-jitted code call reference function ``ref`` (compiled inline)."""
    if id(ref) in _JITABLE:
        return
    from numba.extending import register_jitable

    register_jitable(error_model="numpy")(ref)
    _JITABLE.add(id(ref))


# -- decompositions ----------------------------------------------------------------------

def _vector_strategy(emit: Callable, arity: int, parts: list) -> str:
    """What SIMD batches do with a composite, from what its template writes:
    ``"libmvec"`` when it calls libm functions (libmvec may differ in the last
    bits), ``"lanes"`` when every part runs lane by lane, else ``"exact"``
    (inside the composite each part keeps its own strategy, and lane-by-lane
    parts are exact too)."""
    from compiler.emitter import FunctionEmitter, Module, Val

    e = FunctionEmitter(Module())
    emit(e, [Val(f"%a{k}") for k in range(arity)])
    if e.libm_used():
        return "libmvec"
    if parts and all(ops.get(p).vector == "lanes" for p in parts):
        return "lanes"
    return "exact"


def register_decomposition(base: str, fn: Function, doc: str = "") -> ops.Primitive:
    """Register (or find) the primitive computing ``fn``, a one-output SSA
    program over existing primitives, and return its record.

    Parameters
    ----------
    base : str
        The op's name; the record is called ``<base>_<digest of fn>``.
    fn : compiler.ir.Function
        One output, inputs ``in[0] .. in[arity-1]`` the op's arguments.
    doc : str
        One line on the semantics; defaults to the program.

    Examples
    --------
    >>> from compiler import ops
    >>> from compiler.ir import Builder
    >>> b = Builder(1)
    >>> x = b.input(0)
    >>> prog = b.finish([b.op("div", x, b.op("add", b.const(1.0), b.op("abs_", x)))])
    >>> prim = register_decomposition("softsign_doc", prog)
    >>> prim.name.startswith("softsign_doc_"), prim.arity, prim.vector
    (True, 1, 'exact')
    >>> prim.ref(3.0)
    0.75
    >>> ops.get(prim.name) is prim
    True
    """
    if len(fn.outputs) != 1:
        raise ValueError(f"decomposition of {base!r}: one output expected, got {len(fn.outputs)}")
    parts = [ins.op for ins in fn.instrs if ins.op not in (INPUT, CONST)]
    known = ops.names()
    missing = sorted(set(parts) - known)
    if missing:
        raise ValueError(f"decomposition of {base!r} uses ops with no primitive record: {missing}")
    program = str(fn)
    digest = hashlib.sha256(f"decomposition\0{fn.n_inputs}\0{program}".encode()).hexdigest()
    name = _record_name(base, digest)
    with _LOCK:
        if name in known:
            return ops.get(name)
        for part in sorted(set(parts)):
            _make_jitable(ops.get(part).ref)
        text = (f'"""User op {base!r} from its decomposition (generated by compiler.ops.user; '
                f'do not edit)."""\n\nfrom compiler import runtime as _rt\n\n\n'
                + reference_source(fn, name))
        ref = getattr(_load_module(f"symgrad_op_{name}", text), name)
        instrs = fn.instrs
        out = fn.outputs[0]

        def emit(e, args):
            vals: list = []
            for ins in instrs:
                if ins.op == INPUT:
                    vals.append(args[int(ins.args[0])])
                elif ins.op == CONST:
                    vals.append(e.const(float(ins.args[0])))
                else:
                    vals.append(e.op(ins.op, *[vals[a] for a in ins.args]))
            return vals[out]

        one_line = "; ".join(program.splitlines())
        return ops.register(name, fn.n_inputs, ref, emit,
                            _vector_strategy(emit, fn.n_inputs, parts),
                            doc or f"user op {base}: {one_line}")


# -- numeric forwards ---------------------------------------------------------------------

def positional_arity(fn: Callable) -> Optional[int]:
    """How many positional parameters without a default ``fn`` takes; None for
    ``*args`` or no signature."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return None
    return sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
               and p.default is p.empty)


def register_forward(base: str, forward: Callable[..., float], arity: int,
                     doc: str = "") -> ops.Primitive:
    """Register (or find) the primitive computing ``forward``, a Python function
    of ``arity`` floats that Numba can compile, and return its record.

    The record's reference calls ``forward``; numba kernels compile it
    inline; its LLVM template calls the native symbol
    :func:`native_symbol` (a Numba ``cfunc`` compiled and registered on first
    use), lane by lane in SIMD kernels. Numba compiles ``forward`` with
    ``error_model="numpy"`` (division by zero gives inf/nan, as IEEE says).

    Raises
    ------
    NativeForwardError
        When a native kernel is first compiled with the op and Numba cannot
        compile ``forward`` (the message says what to do instead): llvm
        kernels when they are generated, numba kernels when Numba compiles
        them (their first call). The reference (python back end, tape
        engine) runs any Python forward.

    Examples
    --------
    >>> prim = register_forward("softsign_fw_doc", lambda a: a / (1.0 + abs(a)), 1)
    >>> prim.name.startswith("softsign_fw_doc_"), prim.vector, prim.ref(3.0)
    (True, 'lanes', 0.75)
    """
    if not callable(forward):
        raise TypeError(f"forward of {base!r} must be callable, got {forward!r}")
    n = positional_arity(forward)
    if n is not None and n != arity:
        raise ValueError(f"forward of {base!r} takes {n} arguments, the op has {arity}")
    name = _record_name(base, hashlib.sha256(f"forward\0{arity}\0{code_digest(forward)}"
                                             .encode()).hexdigest())
    with _LOCK:
        if name in ops.names():
            return ops.get(name)
        module = _load_module(f"symgrad_op_{name}", _forward_source(base, name, arity))
        module._user_forward = forward
        _overload_forward(module, base, forward, arity)
        symbol = native_symbol(name)

        def emit(e, args):
            _ensure_native(name)
            e.module.declare(symbol, "double", ["double"] * arity)
            return e.call("double", f"@{symbol}", [("double", a) for a in args], hint="user")

        return ops.register(name, arity, getattr(module, name), emit, "lanes",
                            doc or f"user op {base}: a Python forward, called natively through "
                                   f"a Numba cfunc", libm=())


def _fix(base: str) -> str:
    return (f"register op {base!r} with decompose=<SymPy expression of its arguments in ops "
            f"symgrad knows> (compiled natively and SIMD), or write the forward with "
            f"arithmetic, comparisons and math functions only, on floats (functions it calls "
            f"must be defined in its module or be @numba.njit)")


def _forward_source(base: str, name: str, arity: int) -> str:
    """The generated module of a forward op (its globals ``_user_forward``,
    ``_user_jit`` and ``_native_for`` are set when it is loaded)."""
    a = ", ".join(f"a{k}" for k in range(arity))
    return (f'"""User op {base!r} from its Python forward (generated by compiler.ops.user; '
            f'do not edit)."""\n\n\n'
            f"def {name}({a}):\n"
            f"    # the reference: in Python, the user's forward\n"
            f"    return _forward({a})\n\n\n"
            f"def _forward({a}):\n"
            f"    # jitted code resolves this call through an overload: _native\n"
            f"    return _user_forward({a})\n\n\n"
            f"def _native({a}):\n"
            f"    return _user_jit({a})\n\n\n"
            f"def _typing({a}):\n"
            f"    # the overload's typing function (Numba matches parameter names)\n"
            f"    return _native_for({a})\n")


def _overload_forward(module, base: str, forward: Callable, arity: int) -> None:
    """Jitted code calling ``module._forward`` compiles the user's forward,
    checked first (:func:`_compiled`), so a forward Numba cannot compile
    raises :class:`NativeForwardError`, not a typing traceback."""
    from numba import types as nbtypes
    from numba.extending import overload

    def native_for(*args):
        if getattr(module, "_user_jit", None) is None:
            module._user_jit = _compiled(base, forward, arity, module._native)
        if not all(isinstance(t, (nbtypes.Float, nbtypes.Integer, nbtypes.Boolean)) for t in args):
            return None
        return module._native

    module._native_for = native_for
    overload(module._forward, jit_options={"error_model": "numpy"})(module._typing)


def _compiled(base: str, forward: Callable, arity: int, caller: Callable):
    """``forward`` jitted and checked: ``caller`` (a function of ``arity``
    arguments calling the global ``_user_jit``) compiles on float64
    arguments, as the kernels call it (so default arguments apply).

    Raises
    ------
    NativeForwardError
        Naming the op, Numba's reason and the fix.
    """
    import numba

    module = sys.modules[caller.__module__]
    try:
        _jit_helpers(forward)
        # Python functions are jitted; Numba dispatchers and functions Numba
        # knows (math.hypot) are called as they are
        jitted = numba.njit(error_model="numpy")(forward) \
            if isinstance(forward, types.FunctionType) else forward
        module._user_jit = jitted
        check = numba.njit(error_model="numpy")(caller)
        check.compile((numba.float64,) * arity)
        returns = check.nopython_signatures[-1].return_type
    except Exception as err:   # any failure to compile: Numba's typing errors and others
        module._user_jit = None
        lines = [ln.strip() for ln in str(err).strip().splitlines()]
        reason = next((ln for ln in lines if ln and "Failed in" not in ln), type(err).__name__)
        raise NativeForwardError(
            f"the forward of op {base!r} does not compile with Numba, so no native back end "
            f"(llvm, numba) can run it ({reason[:200]}). Fix: {_fix(base)}. The python "
            f"back end and the tape engine (sg.Value, sg.tape.replay) still run it.") from None
    if not isinstance(returns, (numba.types.Float, numba.types.Integer, numba.types.Boolean)):
        module._user_jit = None
        raise NativeForwardError(
            f"the forward of op {base!r} returns {returns} under Numba, not a float. "
            f"Fix: {_fix(base)}.")
    return jitted


def _helpers(fn: Callable) -> list:
    """The plain Python functions ``fn`` calls that are defined in its own module
    (read from its globals and closure), recursively, callees first."""
    found: list = []
    seen = {id(fn)}
    stack = [fn]
    while stack:
        f = stack.pop()
        code = f.__code__
        names = set(code.co_names)
        for c in code.co_consts:
            if isinstance(c, types.CodeType):
                names.update(c.co_names)
        values = [f.__globals__[n] for n in sorted(names) if n in f.__globals__]
        for cell in f.__closure__ or ():
            try:
                values.append(cell.cell_contents)
            except ValueError:
                pass
        for v in values:
            if isinstance(v, types.FunctionType) and id(v) not in seen \
                    and v.__module__ == fn.__module__:
                seen.add(id(v))
                found.append(v)
                stack.append(v)
    return found[::-1]


def _jit_helpers(forward: Callable) -> None:
    """Let Numba compile the helper functions a forward calls (see :func:`_helpers`)."""
    if isinstance(forward, types.FunctionType):
        for helper in _helpers(forward):
            _make_jitable(helper)


def _ensure_native(name: str) -> str:
    """Compile record ``name``'s forward as a C callable and register its address
    with the JIT (:func:`compiler.jit.register_external`); returns the symbol."""
    with _LOCK:
        if name in _NATIVE:
            return _NATIVE[name][1]
        from numba import cfunc

        from compiler import jit

        prim = ops.get(name)
        symbol = native_symbol(name)
        sig = "float64(" + ", ".join(["float64"] * prim.arity) + ")"
        # not cached on disk: a cfunc would unpickle its cache files before
        # compiler.sourceload could verify them
        compiled = cfunc(sig, cache=False, error_model="numpy")(prim.ref)
        jit.register_external(symbol, compiled.address)
        _NATIVE[name] = (compiled, symbol)
        return symbol
