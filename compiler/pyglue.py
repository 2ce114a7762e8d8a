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

    Examples
    --------
    >>> ir = glue_module([(0, None), (1, 2)], 3, [("k_py", 1, "scalar", 1)])
    >>> "call void %kernel(ptr %in, ptr %out)" in ir
    True
    """
    names = [e[0] for e in entries]
    if not entries or len(set(names)) != len(names):
        raise ValueError(f"entries need distinct names, got {names}")
    text = ["declare void @llvm.memcpy.p0.p0.i64(ptr, ptr, i64, i1)",
            "declare ptr @malloc(i64)", "declare void @free(ptr)"]
    for name, n_outputs, result, rows in entries:
        text += _glue_function(name, layout, n_inputs, n_outputs, result, rows)
    return "\n".join(text) + "\n"


def _glue_function(name: str, layout: list, n_inputs: int, n_outputs: int, result: str,
                   rows: int) -> list:
    if not name.isidentifier():
        raise ValueError(f"{name!r} is not an identifier")
    if result not in RESULTS:
        raise ValueError(f"result must be one of {RESULTS}, got {result!r}")
    if result == "jacobian" and (rows < 1 or (n_outputs - rows) % rows):
        raise ValueError(f"{n_outputs} outputs are not {rows} values and an ({rows}, k) Jacobian")
    n_in, n_out = max(int(n_inputs), 1), max(int(n_outputs), 1)
    on_heap = n_in + n_out > _MAX_STACK_DOUBLES
    L = [f"define ptr @{name}(ptr %self, ptr %args, i64 %nargs, ptr %kwnames) {{",
         "entry:"]
    L += [f"  %tabp = getelementptr i8, ptr %self, i64 {_TUPLE_ITEMS}",
          "  %tab = load ptr, ptr %tabp",
          f"  %ctxp = getelementptr i8, ptr %tab, i64 {_ARR_DATA}",
          "  %ctx = load ptr, ptr %ctxp",
          f"  %cellp = getelementptr i8, ptr %self, i64 {_TUPLE_ITEMS + 16}",   # the kernel's cell
          "  %cell = load ptr, ptr %cellp",
          f"  %celld.p = getelementptr i8, ptr %cell, i64 {_ARR_DATA}",
          "  %celld = load ptr, ptr %celld.p",
          "  %kernel = load ptr, ptr %celld"]
    for slot, label in ((_FLOAT, "float"), (_NPF64, "npf64"), (_NDARRAY, "ndarray"),
                        (_F64DESCR, "f64"), (_FROMDOUBLE, "fromdouble"), (_TUPLENEW, "tuplenew"),
                        (_ARRAYNEW, "arraynew"), (_DECREF, "decref"), (_VECTORCALL, "vectorcall")):
        L += [f"  %c.{label}.p = getelementptr ptr, ptr %ctx, i64 {slot}",
              f"  %c.{label} = load ptr, ptr %c.{label}.p"]
    L += ["  %haskernel = icmp ne ptr %kernel, null",
          "  %kwnull = icmp eq ptr %kwnames, null",
          f"  %nok = icmp eq i64 %nargs, {len(layout)}",
          "  %callok = and i1 %kwnull, %nok",
          "  %go = and i1 %callok, %haskernel",
          "  br i1 %go, label %buffers, label %slow.call",
          "buffers:"]
    if on_heap:    # big programs: the buffers go to the heap (thread stacks can be small)
        L += [f"  %in = call ptr @malloc(i64 {8 * (n_in + n_out)})",
              "  %nomem = icmp eq ptr %in, null",
              "  br i1 %nomem, label %slow.call, label %heap",
              "heap:",
              f"  %out = getelementptr double, ptr %in, i64 {n_in}",
              "  br label %a0"]
    else:
        L += [f"  %in = alloca double, i64 {n_in}, align 16",
              f"  %out = alloca double, i64 {n_out}, align 16",
              "  br label %a0"]
    for k, (start, length) in enumerate(layout):
        nxt = f"a{k + 1}"
        L += [f"a{k}:",
              f"  %o{k}.p = getelementptr ptr, ptr %args, i64 {k}",
              f"  %o{k} = load ptr, ptr %o{k}.p",
              f"  %t{k}.p = getelementptr i8, ptr %o{k}, i64 {_OB_TYPE}",
              f"  %t{k} = load ptr, ptr %t{k}.p"]
        if length is None:
            L += [f"  %isf{k} = icmp eq ptr %t{k}, %c.float",
                  f"  %isn{k} = icmp eq ptr %t{k}, %c.npf64",
                  f"  %ok{k} = or i1 %isf{k}, %isn{k}",
                  f"  br i1 %ok{k}, label %a{k}.v, label %slow",
                  f"a{k}.v:",
                  f"  %x{k}.p = getelementptr i8, ptr %o{k}, i64 {_FLOAT_VAL}",
                  f"  %x{k} = load double, ptr %x{k}.p",
                  f"  %i{k}.p = getelementptr double, ptr %in, i64 {int(start)}",
                  f"  store double %x{k}, ptr %i{k}.p",
                  f"  br label %{nxt}"]
            continue
        L += [f"  %isa{k} = icmp eq ptr %t{k}, %c.ndarray",
              f"  br i1 %isa{k}, label %a{k}.d, label %slow",
              f"a{k}.d:",
              f"  %nd{k}.p = getelementptr i8, ptr %o{k}, i64 {_ARR_ND}",
              f"  %nd{k} = load i32, ptr %nd{k}.p",
              f"  %dims{k}.p = getelementptr i8, ptr %o{k}, i64 {_ARR_DIMS}",
              f"  %dims{k} = load ptr, ptr %dims{k}.p",
              f"  %ds{k}.p = getelementptr i8, ptr %o{k}, i64 {_ARR_DESCR}",
              f"  %ds{k} = load ptr, ptr %ds{k}.p",
              f"  %nd1{k} = icmp eq i32 %nd{k}, 1",
              f"  %isd{k} = icmp eq ptr %ds{k}, %c.f64",
              f"  %okd{k} = and i1 %nd1{k}, %isd{k}",
              f"  br i1 %okd{k}, label %a{k}.n, label %slow",
              f"a{k}.n:",
              f"  %len{k} = load i64, ptr %dims{k}",
              f"  %okn{k} = icmp eq i64 %len{k}, {int(length)}",
              f"  br i1 %okn{k}, label %a{k}.v, label %slow",
              f"a{k}.v:",
              f"  %dp{k}.p = getelementptr i8, ptr %o{k}, i64 {_ARR_DATA}",
              f"  %dp{k} = load ptr, ptr %dp{k}.p",
              f"  %sp{k}.p = getelementptr i8, ptr %o{k}, i64 {_ARR_STRIDES}",
              f"  %sp{k} = load ptr, ptr %sp{k}.p",
              f"  %st{k} = load i64, ptr %sp{k}"]
        L += [f"  br label %a{k}.l",           # copy the elements, with the array's stride
              f"a{k}.l:",
              f"  %j{k} = phi i64 [0, %a{k}.v], [%jn{k}, %a{k}.l]",
              f"  %e{k}.o = mul i64 %j{k}, %st{k}",
              f"  %e{k}.p = getelementptr i8, ptr %dp{k}, i64 %e{k}.o",
              f"  %e{k} = load double, ptr %e{k}.p, align 1",
              f"  %e{k}.i = add i64 %j{k}, {int(start)}",
              f"  %e{k}.d = getelementptr double, ptr %in, i64 %e{k}.i",
              f"  store double %e{k}, ptr %e{k}.d",
              f"  %jn{k} = add i64 %j{k}, 1",
              f"  %more{k} = icmp slt i64 %jn{k}, {int(length)}",
              f"  br i1 %more{k}, label %a{k}.l, label %{nxt}"]
    L += [f"a{len(layout)}:",
          "  call void %kernel(ptr %in, ptr %out)"]
    body = _result(result, n_out, int(rows))
    if on_heap:   # every return after the kernel call frees the buffers first
        body = [line.replace("  ret ptr ", "  call void @free(ptr %in)\n  ret ptr ")
                for line in body]
    L += body
    L += ["slow:"]       # an argument the fast path does not take
    if on_heap:
        L += ["  call void @free(ptr %in)"]
    L += ["  br label %slow.call",
          "slow.call:",
          "  %fb.p = getelementptr i8, ptr %self, i64 " + str(_TUPLE_ITEMS + 8),
          "  %fb = load ptr, ptr %fb.p",
          "  %r.slow = call ptr %c.vectorcall(ptr %fb, ptr %args, i64 %nargs, ptr %kwnames)",
          "  ret ptr %r.slow",
          "}"]
    return L


def _array(tag: str, lo: int, hi: int, shape: tuple | None = None) -> list:
    """A fresh C-ordered float64 array of ``shape`` (default ``(hi - lo,)``)
    holding ``out[lo:hi]`` in ``%{tag}`` (null on failure)."""
    shape = shape or (hi - lo,)
    lines = [f"  %{tag}.dims = alloca i64, i64 {len(shape)}"]
    for d, size in enumerate(shape):
        lines += [f"  %{tag}.dim{d} = getelementptr i64, ptr %{tag}.dims, i64 {d}",
                  f"  store i64 {int(size)}, ptr %{tag}.dim{d}"]
    lines += [f"  %{tag} = call ptr %c.arraynew(ptr %c.ndarray, i32 {len(shape)}, ptr %{tag}.dims, "
              f"i32 {_NPY_DOUBLE}, ptr null, ptr null, i32 0, i32 0, ptr null)",
             f"  %{tag}.null = icmp eq ptr %{tag}, null",
             f"  br i1 %{tag}.null, label %{tag}.fail, label %{tag}.fill",
             f"{tag}.fill:",
             f"  %{tag}.d.p = getelementptr i8, ptr %{tag}, i64 {_ARR_DATA}",
             f"  %{tag}.d = load ptr, ptr %{tag}.d.p",
             f"  %{tag}.src = getelementptr double, ptr %out, i64 {lo}",
             f"  call void @llvm.memcpy.p0.p0.i64(ptr %{tag}.d, ptr %{tag}.src, "
             f"i64 {8 * (hi - lo)}, i1 false)"]
    return lines


def _result(result: str, n_out: int, rows: int) -> list:
    if result == "scalar":
        return ["  %v0 = load double, ptr %out",
                "  %r = call ptr %c.fromdouble(double %v0)",
                "  ret ptr %r"]
    if result in ("array", "rest", "jacobian"):
        lo = {"array": 0, "rest": 1, "jacobian": rows}[result]
        shape = (rows, (n_out - rows) // rows) if result == "jacobian" else None
        return _array("arr", lo, n_out, shape) + ["  ret ptr %arr", "arr.fail:", "  ret ptr null"]
    return ["  %v0 = load double, ptr %out",                       # (value, grad)
            "  %val = call ptr %c.fromdouble(double %v0)",
            "  %val.null = icmp eq ptr %val, null",
            "  br i1 %val.null, label %fail, label %mk",
            "mk:",
            *_array("arr", 1, n_out),
            "  %tup = call ptr %c.tuplenew(i64 2)",
            "  %tup.null = icmp eq ptr %tup, null",
            "  br i1 %tup.null, label %tup.fail, label %tup.fill",
            "tup.fill:",
            f"  %tup.0 = getelementptr i8, ptr %tup, i64 {_TUPLE_ITEMS}",
            "  store ptr %val, ptr %tup.0",
            f"  %tup.1 = getelementptr i8, ptr %tup, i64 {_TUPLE_ITEMS + 8}",
            "  store ptr %arr, ptr %tup.1",
            "  ret ptr %tup",
            "tup.fail:",
            "  call void %c.decref(ptr %arr)",
            "  br label %arr.fail",
            "arr.fail:",
            "  call void %c.decref(ptr %val)",
            "  br label %fail",
            "fail:",
            "  ret ptr null"]


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
