"""symgrad's back end: numeric runtime, SSA IR and code generation.

The package never imports ``symgrad`` or ``sympy``: it knows primitive ops by
name (see :mod:`compiler.runtime`), nothing about expressions or networks.
"""

from compiler import runtime

__all__ = ["runtime"]
