"""LLVM IR text to a linked object: compiled once, cached on disk, loaded by name.

:func:`load_object` is the one way LLVM code gets into the process: the IR is
optimized and compiled to an object file with llvmlite, the object cached on
disk (:mod:`compiler.objcache`: verified before it is loaded) under a name
made from the text (or from a key that determines the text:
:func:`structural_key`), and linked into the process-wide JIT
(:mod:`compiler.jit`). A second process loads the cached object: no LLVM work
at all, and for scalar kernels of built-in ops not even the IR text is printed.
Symbols in the IR start with :data:`PLACEHOLDER`; they are renamed to the
object's name on the parsed module.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from compiler import jit, objcache
from compiler.pysource import source_hash

__all__ = ["PLACEHOLDER", "load_object", "opt_level", "structural_key"]

PLACEHOLDER = "SGKERNEL"
"""The symbol prefix generated IR uses; renamed to the object's name when compiled."""
_PLACEHOLDER = PLACEHOLDER
_LOCK = threading.Lock()
_STATE: dict = {}


def opt_level(n_statements: int) -> tuple[int, int]:
    """``(IR optimization level, code generation level)`` for a kernel of this size.

    Instruction selection and register allocation dominate LLVM's time on
    straight-line code (measured here on a 23k-statement MLP gradient: IR
    passes O2 1.2-1.8 s, code generation O2 2.5 s but O0 0.1 s, for code
    running 1.3x slower). Up to 10k statements both run at O2; above, the
    IR is still optimized at O2 and code generation runs at O0, which keeps
    compile time linear in size.
    """
    return (2, 2) if n_statements <= 10_000 else (2, 0)


def _llvm():
    import llvmlite.binding as llvm

    if "engine" not in _STATE:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        target = llvm.Target.from_default_triple()
        _STATE["target"] = target
        _STATE["machines"] = {}
        _STATE["engine"] = True
    return llvm


def _machine(llvm, opt: int):
    machines = _STATE["machines"]
    if opt not in machines:
        machines[opt] = _STATE["target"].create_target_machine(
            cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(),
            opt=opt, reloc="pic", codemodel="jitdefault")
    return machines[opt]


def _versions() -> str:
    import llvmlite
    import llvmlite.binding as llvm

    return (f"llvmlite {llvmlite.__version__} {llvm.get_process_triple()} "
            f"{llvm.get_host_cpu_name()} {llvm.get_host_cpu_features().flatten()} "
            f"py {sys.version_info[:2]} {_PIPELINE}")


# Straight-line modules (no branch: the scalar kernels, two per compiled
# formula) run a short IR pipeline instead of the O2 default one. llvmlite
# 0.50's O2 pipeline leaves ~58 KB behind per run (measured: fresh pass
# builder per module, module/target machine/context disposed; building the
# pass builder alone leaves ~1.6 KB, parsing and emit_object nothing); the
# leak is in passes of the default pipeline, not in llvmlite's objects, and
# closing them explicitly does not help. This pipeline leaves ~1-5 KB per
# run. On straight-line code without fast-math flags the O2 extras (loop,
# vectorizer and inliner passes, GVN) have nothing to do beyond what SROA,
# instcombine and simplifycfg already do (benchmarks/bench_call.py).
# Modules with branches (loops, call glue) keep O2: few per process.
_STRAIGHT_PASSES = ("sroa", "instruction_combine", "simplify_cfg")
_PIPELINE = "straight:" + ",".join(_STRAIGHT_PASSES)   # part of the cache key (_versions)


def _straight_line(ir_text: str) -> bool:
    return "\n  br " not in ir_text and " phi " not in ir_text and "\n  switch " not in ir_text


def _compile_object(ir_text: str, opt: tuple[int, int], symbol: str = _PLACEHOLDER) -> bytes:
    """The object code of ``ir_text``, its ``@SGKERNEL...`` symbols renamed to
    ``symbol...`` on the parsed module (the text itself is never edited)."""
    llvm = _llvm()
    mod = llvm.parse_assembly(ir_text)
    try:
        for fn in mod.functions:
            if fn.name.startswith(_PLACEHOLDER):
                fn.name = symbol + fn.name[len(_PLACEHOLDER):]
        mod.verify()
        ir_level, codegen_level = opt[:2]
        machine = _machine(llvm, codegen_level)
        if ir_level > 0:
            pto = llvm.create_pipeline_tuning_options(speed_level=ir_level)
            if len(opt) > 2:
                pto.loop_unrolling = bool(opt[2])
            # A pass builder per module: llvmlite registers instrumentation
            # callbacks into the builder on every run (they pile up, and point
            # at freed memory, in a shared one).
            pb = llvm.create_pass_builder(machine, pto)
            if _straight_line(ir_text):
                mpm = llvm.create_new_module_pass_manager()
                for name in _STRAIGHT_PASSES:
                    getattr(mpm, f"add_{name}_pass")()
            else:
                mpm = pb.getModulePassManager()
            try:
                mpm.run(mod, pb)
            finally:
                mpm.close()
                pb.close()
                pto.close()
        return machine.emit_object(mod)
    finally:
        mod.close()


def load_object(text, opt: tuple, entries: tuple, depends: tuple = (),
                imports: dict | None = None, key: str | None = None) -> jit.JITLibrary:
    """Compile LLVM IR whose symbols start with ``@SGKERNEL`` (renamed to a hash of
    the text), or load its object file from the disk cache, and link it.

    Parameters
    ----------
    text : str or callable
        LLVM IR with the placeholder symbol prefix (or a function making it:
        called only when the object is neither loaded nor on disk).
    opt : tuple
        ``(IR level, code generation level[, loop unrolling])``.
    entries : tuple of str
        Entry suffixes whose addresses are wanted (``""``: the base symbol).
    depends : tuple of JITLibrary
        Loaded libraries whose entry points the IR calls by symbol (a batch
        loop's kernel); the result keeps them alive.
    imports : dict, optional
        ``{symbol: address}`` of other C functions the IR calls (a Numba cfunc).
    key : str, optional
        What the object is named after instead of the text: a string that
        determines the text (:func:`structural_key`), so a load from the disk
        cache needs no text at all.

    Returns
    -------
    JITLibrary
        The owner of the machine code (``.symbol``, ``.addresses``, ``.path``,
        ``.reused``); keep it as long as any address is used. The same text
        loaded again while it lives gives the same library.
    """
    if key is None and not isinstance(text, str):
        text = text()
    digest = source_hash("text" if key is None else "key", text if key is None else key,
                         str(opt), _versions())
    symbol = f"symgrad_ll_{digest}"
    name = f"{symbol}.o"
    with _LOCK:
        lib = jit.find(symbol)
        if lib is not None:
            return lib
        obj = objcache.load(name)
        if obj is not None:
            directory = objcache.cache_dir()
            try:
                return jit.link_object(obj, symbol, entries, path=directory / name if directory
                                       else None, reused=True, depends=depends, imports=imports)
            except jit.LinkError as exc:
                import warnings

                warnings.warn(f"symgrad cache file {name} did not load ({exc}); compiled it again",
                              objcache.CacheWarning, stacklevel=2)
        obj = _compile_object(text if isinstance(text, str) else text(), opt, symbol)
        path = objcache.store(name, obj)
        return jit.link_object(obj, symbol, entries, path=path, reused=False, depends=depends,
                               imports=imports)


_GENERATOR: list = []


def _generator_fingerprint() -> str | None:
    """A digest of the compiler's own source files (``compiler/*.py``,
    ``compiler/ops/*.py``): everything that turns an SSA function into LLVM
    text. None when they cannot be read (then objects are keyed by their text)."""
    if not _GENERATOR:
        import hashlib

        root = Path(__file__).resolve().parent
        h = hashlib.sha256()
        try:
            for path in sorted([*root.glob("*.py"), *root.glob("ops/*.py")]):
                h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
            _GENERATOR.append(h.hexdigest())
        except OSError:
            _GENERATOR.append(None)
    return _GENERATOR[0]


def structural_key(fns: dict, chunk: int) -> str | None:
    """The scalar kernels' text is a function of the SSA functions, the chunk size,
    the stack limit and the compiler's source, as long as every op is a built-in
    record (a user op's template is code of the user's; its text is hashed instead):
    a key from those, so a second process loads the object without printing IR
    (~0.3 s for a 30k-statement gradient). None: key by the text."""
    import hashlib

    from compiler import llvmscalar, ops

    fingerprint = _generator_fingerprint()
    if fingerprint is None:
        return None
    h = hashlib.sha256(f"{fingerprint} {int(chunk)} {llvmscalar._MAX_STACK_SLOTS}".encode())
    for suffix, fn in fns.items():
        if not all(ops.is_builtin(op) for op in fn.op_names()):
            return None
        data = fn.to_bytes()
        h.update(f"\0{suffix}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()
