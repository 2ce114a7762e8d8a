"""Exceptions that symgrad raises on bad input or failed checks."""

from __future__ import annotations

__all__ = ["UnsupportedOperation", "GradientMismatch"]


class UnsupportedOperation(TypeError):
    """An expression uses a function or object that has no rule in the op table.

    The message names the function and shows how to register a rule for it
    with :func:`symgrad.register_op`.
    """


class GradientMismatch(AssertionError):
    """Two independent ways of computing a gradient disagree beyond tolerance.

    Raised by :func:`symgrad.check_grad`; the attached ``report`` holds every
    number that was compared.
    """

    def __init__(self, message: str, report: object = None) -> None:
        super().__init__(message)
        self.report = report
