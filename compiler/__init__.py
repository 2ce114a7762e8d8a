"""symgrad's back end: numeric runtime, SSA IR and code generation.

The package never imports ``symgrad`` or ``sympy``: it knows primitive ops by
name (see :mod:`compiler.runtime`), nothing about expressions or networks.
Front ends reach it through :mod:`compiler.kernel`: a :class:`~compiler.kernel.Kernel`
built from an SSA program, a :class:`~compiler.signature.Signature` and a back end.
"""

from compiler import runtime

__all__ = ["runtime"]
