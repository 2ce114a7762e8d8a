"""Comparisons and logic: every value is a float64, so true is 1.0 and
false 0.0; a condition holds when it is nonzero (nan counts as true, as in C)."""

from __future__ import annotations

from compiler.ops import register


def lt(a: float, b: float) -> float:
    return 1.0 if a < b else 0.0


def le(a: float, b: float) -> float:
    return 1.0 if a <= b else 0.0


def gt(a: float, b: float) -> float:
    return 1.0 if a > b else 0.0


def ge(a: float, b: float) -> float:
    return 1.0 if a >= b else 0.0


def eq(a: float, b: float) -> float:
    return 1.0 if a == b else 0.0


def ne(a: float, b: float) -> float:
    return 1.0 if a != b else 0.0


def and_(*xs: float) -> float:
    for v in xs:
        if v == 0.0:
            return 0.0
    return 1.0


def or_(*xs: float) -> float:
    for v in xs:
        if v != 0.0:
            return 1.0
    return 0.0


def not_(a: float) -> float:
    return 1.0 if a == 0.0 else 0.0


def _emit_cmp(pred):
    return lambda e, a: e.bool_to_float(e.fcmp(pred, a[0], a[1]))


def _emit_logic(combine):
    def emit(e, xs):
        if not xs:
            return e.const(1.0 if combine == "and" else 0.0)
        acc = None
        for x in xs:
            t = e.fcmp("une", x, e.const(0.0))
            acc = t if acc is None else (e.mask_and(acc, t) if combine == "and" else e.mask_or(acc, t))
        return e.bool_to_float(acc)
    return emit


for _fn, _pred in ((lt, "olt"), (le, "ole"), (gt, "ogt"), (ge, "oge"), (eq, "oeq"), (ne, "une")):
    register(_fn.__name__, 2, _fn, _emit_cmp(_pred), "exact", f"1.0 if a {_pred[1:]} b else 0.0")
register("and_", None, and_, _emit_logic("and"), "exact", "1.0 if every argument is nonzero")
register("or_", None, or_, _emit_logic("or"), "exact", "1.0 if any argument is nonzero")
register("not_", 1, not_, lambda e, a: e.bool_to_float(e.fcmp("oeq", a[0], e.const(0.0))),
         "exact", "1.0 if a == 0")
