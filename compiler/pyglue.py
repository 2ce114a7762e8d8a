"""Single-point calls from Python straight into an llvm kernel.

A call ``fn.value_and_grad(0.3, w)`` through ctypes or a Numba dispatcher
spends most of its microsecond converting arguments and boxing results. Here
the entry point is itself a CPython builtin function (``METH_FASTCALL``)
written in LLVM IR: it reads exact ``float`` / ``numpy.float64`` arguments
and 1-D float64 ``ndarray`` arguments of the right length straight from the
objects, calls the kernel, and builds the result (a float, an array or a
``(float, array)`` tuple) with CPython's and NumPy's own C functions.

Every other call (ints, lists, batches, keywords, a wrong argument count or
shape) is passed unchanged to a Python fallback, which checks and converts
and raises the error a user should see. So the fast path only ever sees
objects whose layout it has checked; the layouts themselves (offsets in
``PyFloatObject``, ``PyTupleObject`` and NumPy's ``PyArrayObject``) are
verified against ctypes reads when the module first builds a glue function,
and the glue is not used where they do not hold (debug or free-threaded
builds, other Python implementations) or where the fallback cannot be
called the glue's way: CPython 3.10 does not export ``PyObject_Vectorcall``.
Callers then use their checked Python paths for every call.

A glue function does not name its kernel: it calls the address in a cell
(a one-element ``uint64`` array in the builtin's ``self``), so the glue of a
kernel compiled on first use exists, and is the same object, before the
kernel does (calls go to the fallback until the cell is filled), and all the
glue functions of one argument layout are one small module, compiled once
and cached.

Generated from argument positions and lengths only: no user text reaches
the IR.
"""

from __future__ import annotations

import ctypes
import sys
import sysconfig

import numpy as np

from compiler.emitter import FunctionEmitter, Module, Val

__all__ = ["glue_module", "make_builtin", "supported", "RESULTS"]

RESULTS = ("scalar", "tuple", "array", "rest", "jacobian")
"""What a glue function returns: ``out[0]`` as a float; ``(out[0], out[1:])``;
``out`` as an array; ``out[1:]`` as an array; ``out[m:]`` as an ``(m, k)``
array (``m = rows``: the Jacobian after the m values)."""

# slots of the context table (a uint64 array read through the builtin's ``self``)
_FLOAT, _NPF64, _NDARRAY, _F64DESCR, _FROMDOUBLE, _TUPLENEW, _ARRAYNEW, _DECREF, _VECTORCALL = range(9)
_NPY_DOUBLE = 12
_METH_FASTCALL, _METH_KEYWORDS = 0x80, 0x02
# byte offsets (64-bit CPython, verified by _layout_ok)
_OB_TYPE, _FLOAT_VAL, _TUPLE_ITEMS = 8, 16, 24
_ARR_DATA, _ARR_ND, _ARR_DIMS, _ARR_STRIDES, _ARR_DESCR = 16, 24, 32, 40, 56

_MAX_STACK_DOUBLES = 8192   # larger argument/result buffers go to the heap

_STATE: dict = {}


def _layout_ok() -> bool:
    """Check the object layouts the glue reads against ctypes, once."""
    if sys.implementation.name != "cpython" or sys.maxsize != 2**63 - 1 \
            or hasattr(sys, "gettotalrefcount") or sysconfig.get_config_var("Py_GIL_DISABLED"):
        return False
    if np.dtype(np.float64).num != _NPY_DOUBLE:
        return False

    def word(obj, off):
        return ctypes.c_void_p.from_address(id(obj) + off).value

    x, nx = 1.5, np.float64(-2.25)
    arr = np.arange(6.0)[::2]
    tup = symgrad_native((x, arr))
    checks = [
        word(x, _OB_TYPE) == id(float),
        ctypes.c_double.from_address(id(x) + _FLOAT_VAL).value == 1.5,
        word(nx, _OB_TYPE) == id(np.float64),
        ctypes.c_double.from_address(id(nx) + _FLOAT_VAL).value == -2.25,
        word(arr, _OB_TYPE) == id(np.ndarray),
        word(arr, _ARR_DATA) == arr.ctypes.data,
        ctypes.c_int.from_address(id(arr) + _ARR_ND).value == 1,
        ctypes.c_int64.from_address(word(arr, _ARR_DIMS)).value == 3,
        ctypes.c_int64.from_address(word(arr, _ARR_STRIDES)).value == 16,
        word(arr, _ARR_DESCR) == id(np.dtype(np.float64)) == id(arr.dtype),
        word(tup, _TUPLE_ITEMS) == id(x) and word(tup, _TUPLE_ITEMS + 8) == id(arr),
    ]
    return all(checks)


def _context() -> np.ndarray:
    """The addresses the glue needs: type objects and C-API functions."""
    api = ctypes.pythonapi
    try:                                   # NumPy 2 / NumPy 1
        from numpy._core import _multiarray_umath as umath
    except ImportError:
        from numpy.core import _multiarray_umath as umath
    capsule = umath._ARRAY_API
    get = api.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    table = ctypes.cast(get(capsule, None), ctypes.POINTER(ctypes.c_void_p))
    addr = [id(float), id(np.float64), id(np.ndarray), id(np.dtype(np.float64)),
            ctypes.cast(api.PyFloat_FromDouble, ctypes.c_void_p).value,
            ctypes.cast(api.PyTuple_New, ctypes.c_void_p).value,
            table[93],                                   # PyArray_New
            ctypes.cast(api.Py_DecRef, ctypes.c_void_p).value,
            ctypes.cast(api.PyObject_Vectorcall, ctypes.c_void_p).value]
    return np.array(addr, dtype=np.uint64)


def _array_new_ok(address: int) -> bool:
    """Call the ``PyArray_New`` slot once through ctypes: a float64 vector of 3?"""
    proto = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_int,
                              ctypes.POINTER(ctypes.c_int64), ctypes.c_int, ctypes.c_void_p,
                              ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
    dims = (ctypes.c_int64 * 1)(3)
    arr = proto(address)(id(np.ndarray), 1, dims, _NPY_DOUBLE, None, None, 0, 0, None)
    return type(arr) is np.ndarray and arr.shape == (3,) and arr.dtype == np.float64 \
        and arr.flags.c_contiguous and arr.flags.owndata


def supported() -> bool:
    """True when this interpreter's object layouts are the ones the glue reads."""
    if "ok" not in _STATE:
        ok = False
        try:
            ok = _layout_ok() and hasattr(ctypes.pythonapi, "PyObject_Vectorcall")
            if ok:
                _STATE["ctx"] = _context()
                ok = _array_new_ok(int(_STATE["ctx"][_ARRAYNEW]))
        except (AttributeError, ImportError, ValueError, OSError):
            ok = False
        _STATE["ok"] = ok
    return _STATE["ok"]


def glue_module(layout: list, n_inputs: int, entries: list) -> str:
    """LLVM IR of one or more glue functions ``ptr NAME(ptr self, ptr args, i64 nargs,
    ptr kwnames)`` for one argument layout.

    ``layout``: per argument ``(first input slot, None)`` for a float or
    ``(first slot, length)`` for a 1-D array. ``entries``: per function
    ``(NAME, n_outputs, result, rows)`` (see :data:`RESULTS`). A glue function
    calls the kernel ``void (ptr in, ptr out)`` whose address is in its cell
    (see :func:`make_builtin`); while the cell holds 0 (a kernel compiled on
    first use) every call goes to the fallback. The text depends on positions
    and lengths only, so functions of one layout share one cached object.
    Written through :class:`compiler.emitter.FunctionEmitter`, like every
    other generator's IR.

    Examples
    --------
    >>> ir = glue_module([(0, None), (1, 2)], 3, [("k_py", 1, "scalar", 1)])
    >>> "call void %kernel(ptr %in, ptr %out)" in ir
    True
    """
    names = [e[0] for e in entries]
    if not entries or len(set(names)) != len(names):
        raise ValueError(f"entries need distinct names, got {names}")
    mod = Module()
    for name, n_outputs, result, rows in entries:
        _glue_function(mod, name, layout, n_inputs, n_outputs, result, rows)
    return mod.text()


class _Context:
    """The context table's entries (type objects, C-API functions), loaded in
    the entry block: ``ctx.float``, ``ctx.arraynew``, ..."""

    SLOTS = (("float", _FLOAT), ("npf64", _NPF64), ("ndarray", _NDARRAY), ("f64", _F64DESCR),
             ("fromdouble", _FROMDOUBLE), ("tuplenew", _TUPLENEW), ("arraynew", _ARRAYNEW),
             ("decref", _DECREF), ("vectorcall", _VECTORCALL))

    def __init__(self, e: FunctionEmitter, table) -> None:
        for label, slot in self.SLOTS:
            setattr(self, label, e.load("ptr", e.gep("ptr", table, slot, inbounds=False,
                                                     hint=f"c.{label}.p"), hint=f"c.{label}"))


def _field(e: FunctionEmitter, ty: str, obj, offset: int, hint: str) -> Val:
    """The ``ty`` at byte ``offset`` of the object at ``obj``."""
    return e.load(ty, e.gep("i8", obj, offset, inbounds=False, hint=f"{hint}.p"), hint=hint)


def _glue_function(mod: Module, name: str, layout: list, n_inputs: int, n_outputs: int,
                   result: str, rows: int) -> None:
    if not name.isidentifier():
        raise ValueError(f"{name!r} is not an identifier")
    if result not in RESULTS:
        raise ValueError(f"result must be one of {RESULTS}, got {result!r}")
    if result == "jacobian" and (rows < 1 or (n_outputs - rows) % rows):
        raise ValueError(f"{n_outputs} outputs are not {rows} values and an ({rows}, k) Jacobian")
    n_in, n_out = max(int(n_inputs), 1), max(int(n_outputs), 1)
    on_heap = n_in + n_out > _MAX_STACK_DOUBLES
    e = FunctionEmitter(mod)
    tab = _field(e, "ptr", "%self", _TUPLE_ITEMS, "tab")
    ctxd = _field(e, "ptr", tab, _ARR_DATA, "ctx")
    cell = _field(e, "ptr", "%self", _TUPLE_ITEMS + 16, "cell")       # the kernel's cell
    kernel = e.load("ptr", _field(e, "ptr", cell, _ARR_DATA, "celld"), name="%kernel")
    c = _Context(e, ctxd)
    slow, slow_call = e.fresh_label("slow"), e.fresh_label("slow.call")
    haskernel = e.icmp("ne", kernel, "null", ty="ptr")
    callok = e.int_op("and", e.icmp("eq", "%kwnames", "null", ty="ptr"),
                      e.icmp("eq", "%nargs", len(layout)), ty="i1")
    buffers = e.fresh_label("buffers")
    e.cbr(e.int_op("and", callok, haskernel, ty="i1"), buffers, slow_call)
    e.label(buffers)
    if on_heap:    # big programs: the buffers go to the heap (thread stacks can be small)
        mod.declare("malloc", "ptr", ["i64"])
        mod.declare("free", "void", ["ptr"])
        buf = e.call("ptr", "@malloc", [("i64", 8 * (n_in + n_out))], name="%in")
        heap = e.fresh_label("heap")
        e.cbr(e.icmp("eq", buf, "null", ty="ptr"), slow_call, heap)
        e.label(heap)
        out = e.gep("double", buf, n_in, inbounds=False, name="%out")
    else:
        buf = e.alloca("double", n_in, align=16, name="%in")
        out = e.alloca("double", n_out, align=16, name="%out")

    def free_buffers() -> None:
        if on_heap:
            e.call("void", "@free", [("ptr", buf)])

    def ret_ptr(value) -> None:
        """``ret ptr value`` from the fast path: the buffers are freed first."""
        free_buffers()
        e.ret("ptr", value)

    for k, (start, length) in enumerate(layout):
        obj = e.load("ptr", e.gep("ptr", "%args", k, inbounds=False, hint=f"o{k}.p"), hint=f"o{k}")
        typ = _field(e, "ptr", obj, _OB_TYPE, f"t{k}")
        read = e.fresh_label(f"a{k}.v")
        if length is None:          # exact float or numpy.float64
            ok = e.int_op("or", e.icmp("eq", typ, c.float, ty="ptr"),
                          e.icmp("eq", typ, c.npf64, ty="ptr"), ty="i1")
            e.cbr(ok, read, slow)
            e.label(read)
            x = _field(e, "double", obj, _FLOAT_VAL, f"x{k}")
            e.store("double", x, e.gep("double", buf, int(start), inbounds=False))
            continue
        descr, count = e.fresh_label(f"a{k}.d"), e.fresh_label(f"a{k}.n")   # 1-D float64 ndarray
        e.cbr(e.icmp("eq", typ, c.ndarray, ty="ptr"), descr, slow)
        e.label(descr)
        nd = _field(e, "i32", obj, _ARR_ND, f"nd{k}")
        dims = _field(e, "ptr", obj, _ARR_DIMS, f"dims{k}")
        ds = _field(e, "ptr", obj, _ARR_DESCR, f"ds{k}")
        e.cbr(e.int_op("and", e.icmp("eq", nd, 1, ty="i32"), e.icmp("eq", ds, c.f64, ty="ptr"),
                       ty="i1"), count, slow)
        e.label(count)
        size = e.load("i64", dims, hint=f"len{k}")
        e.cbr(e.icmp("eq", size, int(length)), read, slow)
        e.label(read)
        data = _field(e, "ptr", obj, _ARR_DATA, f"dp{k}")
        stride = e.load("i64", _field(e, "ptr", obj, _ARR_STRIDES, f"sp{k}"), hint=f"st{k}")

        def copy(j: Val, data=data, stride=stride, start=start, k=k) -> None:
            # in[start + j] = the array's element j, with the array's stride
            src = e.gep("i8", data, e.int_op("mul", j, stride), inbounds=False)
            x = e.load("double", src, align=1, hint=f"e{k}")
            e.store("double", x, e.gep("double", buf, e.int_op("add", j, int(start)), inbounds=False))
        e.loop(0, int(length), copy, hint=f"a{k}.l")
    e.call("void", kernel, [("ptr", buf), ("ptr", out)])
    _result(e, c, out, result, n_out, int(rows), ret_ptr)
    e.label(slow)        # an argument the fast path does not take
    free_buffers()
    e.br(slow_call)
    e.label(slow_call)
    fallback = _field(e, "ptr", "%self", _TUPLE_ITEMS + 8, "fb")
    e.ret("ptr", e.call("ptr", c.vectorcall, [("ptr", fallback), ("ptr", "%args"),
                                              ("i64", "%nargs"), ("ptr", "%kwnames")], hint="r.slow"))
    mod.add(e.finish(f"ptr @{name}(ptr %self, ptr %args, i64 %nargs, ptr %kwnames)"))


def _array(e: FunctionEmitter, c: _Context, out, lo: int, hi: int, fail: str,
           shape: tuple | None = None) -> Val:
    """A fresh C-ordered float64 array of ``shape`` (default ``(hi - lo,)``)
    holding ``out[lo:hi]``; branches to ``fail`` when it cannot be made."""
    shape = shape or (hi - lo,)
    dims = e.alloca("i64", len(shape), hint="arr.dims")
    for d, size in enumerate(shape):
        e.store("i64", int(size), e.gep("i64", dims, d, inbounds=False, hint=f"arr.dim{d}"))
    arr = e.call("ptr", c.arraynew, [("ptr", c.ndarray), ("i32", len(shape)), ("ptr", dims),
                                     ("i32", _NPY_DOUBLE), ("ptr", "null"), ("ptr", "null"),
                                     ("i32", 0), ("i32", 0), ("ptr", "null")], hint="arr")
    fill = e.fresh_label("arr.fill")
    e.cbr(e.icmp("eq", arr, "null", ty="ptr"), fail, fill)
    e.label(fill)
    e.module.declare("llvm.memcpy.p0.p0.i64", "void", ["ptr", "ptr", "i64", "i1"])
    e.call("void", "@llvm.memcpy.p0.p0.i64",
           [("ptr", _field(e, "ptr", arr, _ARR_DATA, "arr.d")),
            ("ptr", e.gep("double", out, lo, inbounds=False, hint="arr.src")),
            ("i64", 8 * (hi - lo)), ("i1", "false")])
    return arr


def _result(e: FunctionEmitter, c: _Context, out, result: str, n_out: int, rows: int,
            ret_ptr) -> None:
    """Box ``out`` as ``result`` and return it with ``ret_ptr`` (NULL, with no
    reference left behind, when an allocation fails)."""
    if result == "scalar":
        ret_ptr(e.call("ptr", c.fromdouble, [("double", e.load("double", out, hint="v0"))]))
        return
    if result in ("array", "rest", "jacobian"):
        lo = {"array": 0, "rest": 1, "jacobian": rows}[result]
        shape = (rows, (n_out - rows) // rows) if result == "jacobian" else None
        fail = e.fresh_label("arr.fail")
        ret_ptr(_array(e, c, out, lo, n_out, fail, shape))
        e.label(fail)
        ret_ptr("null")
        return
    # (value, grad)
    val = e.call("ptr", c.fromdouble, [("double", e.load("double", out, hint="v0"))], hint="val")
    fail, arr_fail, tup_fail = e.fresh_label("fail"), e.fresh_label("arr.fail"), e.fresh_label("tup.fail")
    make, fill = e.fresh_label("mk"), e.fresh_label("tup.fill")
    e.cbr(e.icmp("eq", val, "null", ty="ptr"), fail, make)
    e.label(make)
    arr = _array(e, c, out, 1, n_out, arr_fail)
    tup = e.call("ptr", c.tuplenew, [("i64", 2)], hint="tup")
    e.cbr(e.icmp("eq", tup, "null", ty="ptr"), tup_fail, fill)
    e.label(fill)
    e.store("ptr", val, e.gep("i8", tup, _TUPLE_ITEMS, inbounds=False, hint="tup.0"))
    e.store("ptr", arr, e.gep("i8", tup, _TUPLE_ITEMS + 8, inbounds=False, hint="tup.1"))
    ret_ptr(tup)
    e.label(tup_fail)
    e.call("void", c.decref, [("ptr", arr)])
    e.br(arr_fail)
    e.label(arr_fail)
    e.call("void", c.decref, [("ptr", val)])
    e.br(fail)
    e.label(fail)
    ret_ptr("null")


class _MethodDef(ctypes.Structure):
    _fields_ = [("ml_name", ctypes.c_char_p), ("ml_meth", ctypes.c_void_p),
                ("ml_flags", ctypes.c_int), ("ml_doc", ctypes.c_char_p)]


class symgrad_native(tuple):  # noqa: N801 - shows in reprs: <built-in method f of symgrad_native ...>
    """The ``self`` of a glue builtin: ``(context, fallback, kernel cell, keep-alives...)``."""

    __slots__ = ()


def make_builtin(address: int, fallback, name: str, cell: np.ndarray, doc: str | None = None,
                 signature: str = "(*args)", keep: object = None):
    """A builtin function object running the glue function at ``address``.

    ``cell`` is a ``uint64`` array of one element holding the address of the
    kernel the glue calls, or 0 until there is one (the owner writes it once
    the kernel is compiled); calls the glue does not take, and every call
    while the cell is 0, go to ``fallback(*args, **kwargs)``. ``signature`` is
    what :func:`inspect.signature` reports. ``keep`` lives as long as the
    function: the owners of the glue's code and of the kernel in the cell
    (a list the owner appends the kernel's library to when it fills the cell).
    """
    if not supported():
        raise RuntimeError("the Python call glue is not supported by this interpreter")
    if not name.isidentifier():
        raise ValueError(f"{name!r} is not an identifier")
    if type(cell) is not np.ndarray or cell.dtype != np.uint64 or cell.shape != (1,):
        raise TypeError("cell must be a numpy uint64 array of shape (1,)")
    name_b = name.encode("ascii")
    doc_b = f"{name}($self, /, {signature[1:]}\n--\n\n{doc or ''}".encode("utf-8")
    mdef = _MethodDef(name_b, address, _METH_FASTCALL | _METH_KEYWORDS, doc_b)
    # self: (context, fallback, kernel cell, and what must outlive the function object)
    self = symgrad_native((_STATE["ctx"], fallback, cell, mdef, name_b, doc_b, keep))
    new = ctypes.pythonapi.PyCFunction_NewEx
    new.restype = ctypes.py_object
    new.argtypes = [ctypes.c_void_p, ctypes.py_object, ctypes.c_void_p]
    return new(ctypes.addressof(mdef), self, None)
