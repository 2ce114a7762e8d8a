"""Every primitive of :mod:`compiler.ops` against references that are not the back end.

The other back-end tests compare back ends with each other, so a mistake
they all share (the same ``ref`` copied into every runtime, the same
template in every LLVM kernel) cannot fail them. Here each record is
triangulated against numbers computed without it:

1. **The reference semantics** (``Primitive.ref``)

   * against mpmath at 200 bits, correctly rounded to double (exact rational
     rounding through :class:`fractions.Fraction`, subnormals included), on a
     grid of ordinary and hard points: signed zeros, subnormals, values next
     to +-1 (asin, acos, log, log1p), the overflow thresholds of exp/expm1
     (709.78) and sinh/cosh (710.48) and the points right after them, the
     underflow of exp (-745.13), huge arguments of sin/cos/tan (1e22, 1e300),
     plus seeded random points. Bound: ``MP_ULPS``, 1 ulp for every libm
     function. Measured with glibc 2.36 on x86-64: acos, asin, atan, atan2,
     cos, log, pow and sin are correctly rounded on the whole grid; exp,
     expm1, log1p, cosh, sinh, tan, tanh and erf are 1 ulp off at some points
     (0.4% to 16% of them). sigmoid and softplus (measured 1 ulp) within 2;
     logsumexp within 2 ulp or twice the rounding error of a backward-stable
     ``m + log1p(sum exp(x_i - m))`` (:func:`lse_tolerance`: the function is
     ill-conditioned where its result cancels to near 0).
     add, mul, div, floor, ceil and pow's exact exponents (2, -1, 0.5) are
     checked against the exact rational result: 0 ulp.
   * against C99 Annex F special values: the whole F.10.4.4 ``pow`` table
     (written out from the standard's clauses and checked on every
     combination of special bases and exponents, plus literal rows), the
     F.10.1.4 ``atan2`` table, and the signed zeros, infinities, nan and
     overflow of every other function.
   * the conventions symgrad defines itself (relu, sign, heaviside, max2,
     min2, floor, ceil, piecewise, comparisons, logic, signed zeros of add,
     division by +-0) from the records' docs, with NumPy's IEEE operations as
     a second opinion where it has the same operation.

2. **Every back end against the reference**: one :class:`compiler.ir.Builder`
   program per op (several arities for variadic ops, and every argument
   position replaced in turn by special constants, since templates
   specialise on constant operands: ``pow(x, 2.0)``, ``mul(-1.0, x)``),
   evaluated on a grid of special and random points by the python back end,
   the numba back end, the scalar llvm kernel and the SIMD batch kernel
   (this machine's libmvec, libm forced, and the 4-lane AVX2 kernels on an
   AVX-512 machine). Python, numba, llvm scalar and SIMD with libm must equal
   ``ref`` bit for bit (nan positions and signs of zero included); SIMD with
   libmvec too for ``vector == "exact"`` ops (and pow's exact exponents),
   within ``SIMD_ULPS`` (the bounds of :mod:`compiler.llvmsimd`'s docstring)
   for the libmvec ops.

3. **The records themselves**: ``vector == "exact"`` records call no libm
   function, ``libmvec`` records at least one, and every template emits IR
   that LLVM verifies in scalar, 4-lane and 8-lane mode.

Every table is keyed by op name and must cover :func:`compiler.ops.names`,
so a new primitive without references fails here.
"""

from __future__ import annotations

import functools
import math
import struct
from fractions import Fraction

import mpmath
import numpy as np
import pytest

from compiler import host, ir, llvmjit, llvmobject, ops, pysource, sourceload
from compiler.emitter import FunctionEmitter, Module, SimdMath, Val

mpmath.mp.prec = 200

NAN = float("nan")
INF = float("inf")
PI = math.pi
MAXD = 1.7976931348623157e308
TINY = 5e-324                       # smallest subnormal
MINN = 2.2250738585072014e-308      # smallest normal
EXP_MAX = 709.782712893384          # largest x with exp(x) finite
SINH_MAX = 710.4758600739439        # largest x with sinh(x), cosh(x) finite
def up(x: float) -> float:
    return math.nextafter(x, INF)


def down(x: float) -> float:
    return math.nextafter(x, -INF)


# -- comparing doubles -------------------------------------------------------------------

def same(x: float, y: float) -> bool:
    """Identical doubles: both nan, or equal with the same sign (``-0.0`` is not ``0.0``)."""
    if x != x or y != y:
        return x != x and y != y
    return x == y and math.copysign(1.0, x) == math.copysign(1.0, y)


def _ordered(x: float) -> int:
    i = struct.unpack("<q", struct.pack("<d", x))[0]
    return i if i >= 0 else -(i & 0x7FFFFFFFFFFFFFFF)


def ulps(x: float, y: float) -> float:
    """Doubles between x and y (0 for equal values, +-0 alike; inf after MAXD); inf
    when exactly one is nan."""
    if x != x or y != y:
        return 0 if (x != x and y != y) else INF
    return abs(_ordered(x) - _ordered(y))


def mismatches(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Mask of entries that are not identical (nan payloads aside)."""
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    ok = ((got == want) & (np.signbit(got) == np.signbit(want))) | (np.isnan(got) & np.isnan(want))
    return ~ok


def ulps_array(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Element-wise :func:`ulps`, as int64 (big for a nan against a number)."""
    def ordered(a):
        i = np.ascontiguousarray(a, dtype=np.float64).view(np.int64)
        return np.where(i < 0, -(i & np.int64(0x7FFFFFFFFFFFFFFF)), i)
    with np.errstate(over="ignore"):
        d = np.abs(ordered(got) - ordered(want))
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    d = np.where(nan_g | nan_w, np.where(nan_g & nan_w, 0, np.int64(2**62)), d)
    return d


# -- correctly rounded references ---------------------------------------------------------

def to_double(v) -> float:
    """An mpmath number correctly rounded to double (round to nearest even,
    subnormals and overflow included); a non-real value is nan."""
    if isinstance(v, mpmath.mpc):
        if v.imag != 0:
            return NAN
        v = v.real
    if not isinstance(v, mpmath.mpf):
        v = mpmath.mpf(v)
    if mpmath.isnan(v):
        return NAN
    if mpmath.isinf(v):
        return INF if v > 0 else -INF
    if v == 0:
        return 0.0
    sign, man, exp, bc = v._mpf_
    if exp + bc > 1100:
        d = INF
    elif exp + bc < -1100:
        d = 0.0
    else:
        fr = Fraction(man * 2 ** exp) if exp >= 0 else Fraction(man, 2 ** -exp)
        try:
            d = float(fr)        # int / int: correctly rounded in CPython
        except OverflowError:
            d = INF
    return -d if sign else d


def exact(x: float) -> Fraction:
    return Fraction(x)


def round_fraction(fr: Fraction) -> float:
    try:
        return float(fr)
    except OverflowError:
        return INF if fr > 0 else -INF


def _mp(f):
    """``f`` on mpf arguments, rounded to double."""
    def ref(*xs):
        return to_double(f(*[mpmath.mpf(x) for x in xs]))
    return ref


def _mp_sum_exp(*xs):
    """log(sum(exp(x))) as m + log1p(sum of exp(x - m) over the others), the
    differences exact (2300 bits hold any difference of doubles)."""
    k = max(range(len(xs)), key=lambda i: xs[i])
    with mpmath.workprec(2300):
        rest = mpmath.fsum(mpmath.exp(x - xs[k]) for i, x in enumerate(xs) if i != k)
        return xs[k] + mpmath.log1p(rest)


# op -> high-precision formula (None: no formula, the op is checked by tables)
MP_FORMULA = {
    "exp": mpmath.exp, "expm1": mpmath.expm1, "log": mpmath.log, "log1p": mpmath.log1p,
    "sin": mpmath.sin, "cos": mpmath.cos, "tan": mpmath.tan, "asin": mpmath.asin,
    "acos": mpmath.acos, "atan": mpmath.atan, "atan2": mpmath.atan2, "sinh": mpmath.sinh,
    "cosh": mpmath.cosh, "tanh": mpmath.tanh, "erf": mpmath.erf, "pow": mpmath.power,
    "sigmoid": lambda x: 1 / (1 + mpmath.exp(-x)),
    "softplus": lambda x: mpmath.log1p(mpmath.exp(x)),
    "logsumexp": _mp_sum_exp,
}

# the measured bound of ref against MP_FORMULA (doubles between them)
MP_ULPS = {name: 1 for name in MP_FORMULA}
MP_ULPS.update(sigmoid=2, softplus=2, logsumexp=2)


# -- input grids --------------------------------------------------------------------------

def _signed(xs):
    return sorted({v for x in xs for v in (x, -x)}, key=lambda v: (v, math.copysign(1, v)))


HARD = _signed([
    0.0, TINY, 2 * TINY, 1e-310, MINN, down(MINN), 1e-300, 1e-200, 1e-100, 1e-30, 1e-20,
    1e-17, 1e-16, 2.0 ** -53, 1e-10, 1e-8, 1e-5, 1e-3, 0.01, 0.1, 0.25, 0.3, 0.5, 0.7, 0.75,
    down(1.0), 1.0, up(1.0), 0.9999999, 1.0000001, 1.5, PI / 4, PI / 2, down(PI / 2), 2.0, 2.5,
    3.0, PI, 5.9, 6.0, 10.0, 19.0, 19.1, 22.0, 27.0, 30.0, 36.8, 37.0, 50.0, 100.0, 355.0,
    700.0, 708.4, 709.0, EXP_MAX, up(EXP_MAX), 710.0, SINH_MAX, up(SINH_MAX), 711.0, 745.0,
    745.1332191019411, 745.2, 746.0, 1000.0, 103993.0, 1e5, 1e10, 1e15, 2.0 ** 52 + 1,
    2.0 ** 53, 1e16, 1e22, 1e100, 1e300, MAXD,
])
"""Hard points for functions of one argument (both signs)."""

POW_X = _signed([0.0, TINY, 1e-300, 1e-10, 0.1, 0.5, 0.9999999, down(1.0), 1.0, up(1.0),
                 1.0000001, 1.5, 2.0, 3.0, 10.0, 1e10, 1e300, MAXD]) + [INF, -INF, NAN]
POW_Y = _signed([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 10.0, 22.0, 100.0, 308.0, 1023.0, 1024.0,
                 1074.0, 1075.0, 1e9, 7e9, 2.0 ** 53 - 1, 2.0 ** 53, 1e300, 0.1]) + [INF, -INF, NAN]
"""Bases and exponents for pow (its table of special cases and its hard points)."""

SPECIAL = [0.0, -0.0, TINY, -TINY, MINN, -1e-300, 1e-8, -1e-8, 0.5, -0.5, 1.0, -1.0, 1.5,
           2.0, -2.0, 3.0, -3.0, 0.3, -0.7, 10.0, -100.0, EXP_MAX, up(EXP_MAX), -745.2,
           SINH_MAX, -up(SINH_MAX), 1e22, -1e22, 1e300, -1e300, MAXD, -MAXD, INF, -INF, NAN]
"""Values every back end sees in every argument position (pairwise)."""


def _random(n: int, seed: int) -> np.ndarray:
    """Finite values of every magnitude and sign, and some random bit patterns."""
    rng = np.random.default_rng(seed)
    mag = 10.0 ** rng.uniform(-12, 4, n)
    vals = np.where(rng.random(n) < 0.5, -1.0, 1.0) * mag
    vals[: n // 4] = rng.normal(0, 3, n // 4)
    bits_ = rng.integers(0, 2 ** 63, n // 8, dtype=np.int64) * np.where(rng.random(n // 8) < 0.5, 1, -1)
    vals[n // 4: n // 4 + n // 8] = bits_.view(np.float64)
    return vals


# -- 1. references against mpmath ---------------------------------------------------------

def _unary_points(name):
    pts = [x for x in HARD if math.isfinite(x)]
    rnd = _random(120, 1 + sorted(ops.BUILTINS).index(name))
    pts += [float(x) for x in rnd if math.isfinite(x)]
    if name in ("asin", "acos"):
        pts += [float(x) for x in np.random.default_rng(5).uniform(-1, 1, 60)]
    return pts


def _points(name):
    """Argument tuples for the mpmath comparison of op ``name``."""
    if name == "pow":
        return [(x, y) for x in POW_X for y in POW_Y
                if math.isfinite(x) and math.isfinite(y) and x != 0.0]
    if name == "atan2":
        fin = [x for x in HARD if math.isfinite(x)][::3] + [1e-320, -1e-320]
        return [(y, x) for y in fin for x in fin]
    if name == "logsumexp":
        one = [(x,) for x in HARD if math.isfinite(x)]
        two = [(x, y) for x in HARD[::4] for y in HARD[1::5] if math.isfinite(x) and math.isfinite(y)]
        three = [(x, y, z) for x, y, z in zip(HARD, HARD[7:], HARD[13:])
                 if math.isfinite(x) and math.isfinite(y) and math.isfinite(z)]
        return one + two + three
    return [(x,) for x in _unary_points(name)]


def _mp_distances(name):
    ref, mp = ops.get(name).ref, _mp(MP_FORMULA[name])
    out = []
    for args in _points(name):
        if name == "pow" and args[1] in (2.0, -1.0, 0.5):
            continue   # exact exponents: test_pow_exact_exponents
        out.append((ulps(ref(*args), mp(*args)), args, ref(*args), mp(*args)))
    return out


def lse_tolerance(args, want):
    """The rounding error a backward-stable ``m + log1p(sum exp(x_i - m))``
    commits, ``m = max(args)``: an ulp of each of its two terms (``m`` and
    ``want - m``), and for each input the ulp of ``x_i - m`` weighted by its
    softmax (the error of the shift, amplified by exp). logsumexp is
    ill-conditioned where its result cancels to near 0
    (``logsumexp(-0.7, -0.7)``), so this, not an ulp of the result, bounds it."""
    m = max(args)
    tol = float(np.spacing(abs(m)) + np.spacing(abs(want - m)))
    for x in args:
        tol += math.exp(x - want) * float(np.spacing(abs(x - m)))
    return tol


def _mp_ok(name, args, got, want):
    if ulps(got, want) <= MP_ULPS[name]:
        return True
    if name == "logsumexp" and math.isfinite(want):
        return abs(got - want) <= 2 * lse_tolerance(args, want)
    return False


@pytest.mark.parametrize("name", sorted(MP_FORMULA))
def test_ref_against_mpmath(name):
    dist = _mp_distances(name)
    assert len(dist) > 100
    bad = [d for d in dist if not _mp_ok(name, d[1], d[2], d[3])]
    assert not bad, (f"{name}: {len(bad)} of {len(dist)} points beyond {MP_ULPS[name]} ulp; "
                     f"first (ulps, args, ref, mpmath): {bad[:5]}")


def test_mpmath_rounding_helper():
    """The reference rounding itself: halfway cases, subnormals, overflow."""
    assert to_double(mpmath.mpf(1) + mpmath.mpf(2) ** -53) == 1.0             # tie to even
    assert to_double(mpmath.mpf(1) + mpmath.mpf(2) ** -53 + mpmath.mpf(2) ** -100) == up(1.0)
    assert to_double(mpmath.mpf(2) ** -1075) == 0.0                            # tie to even 0
    assert to_double(mpmath.mpf(2) ** -1075 * 3) == 2 * TINY
    assert to_double(mpmath.mpf(MAXD) * (1 + mpmath.mpf(2) ** -54)) == MAXD
    assert to_double(mpmath.mpf(2) ** 1024) == INF
    assert to_double(-mpmath.mpf(2) ** 5000) == -INF
    assert math.isnan(to_double(mpmath.sqrt(-1)))
    assert ulps(1.0, up(1.0)) == 1 and ulps(-0.0, 0.0) == 0 and ulps(MAXD, INF) == 1
    assert ulps(TINY, -TINY) == 2


def _grid_finite():
    vals = [x for x in HARD if math.isfinite(x)]
    vals += [float(x) for x in _random(200, 77) if math.isfinite(x)]
    return vals


def test_add_mul_div_exact():
    """IEEE +, *, / are the exact result correctly rounded (0 ulp), add left to right."""
    xs = _grid_finite()[::3]
    add, mul, div = ops.get("add").ref, ops.get("mul").ref, ops.get("div").ref
    for a in xs:
        for b in xs[::2]:
            s = round_fraction(exact(a) + exact(b))
            if s == 0.0:   # an exact zero sum is +0 unless both terms are -0 (IEEE 754 6.3)
                s = -0.0 if math.copysign(1, a) < 0 and math.copysign(1, b) < 0 else 0.0
            assert same(add(a, b), s), (a, b)
            assert ulps(mul(a, b), round_fraction(exact(a) * exact(b))) == 0, (a, b)
            if b != 0.0:
                assert ulps(div(a, b), round_fraction(exact(a) / exact(b))) == 0, (a, b)
    for a, b, c in zip(xs, xs[5:], xs[11:]):
        want = round_fraction(exact(round_fraction(exact(a) + exact(b))) + exact(c))
        assert ulps(add(a, b, c), want) == 0, (a, b, c)
    assert add(1e16, 1.0, 1.0) == 1e16 and add(1.0, 1.0, 1e16) == 1e16 + 2.0


def test_floor_ceil_exact():
    fl, ce = ops.get("floor").ref, ops.get("ceil").ref
    for x in _grid_finite() + [2.0 ** 52 - 0.5, -(2.0 ** 52 - 0.5), 4503599627370495.5, 0.49999999999999994]:
        f, c = math.floor(exact(x)), math.ceil(exact(x))
        assert fl(x) == f and ce(x) == c, x
        assert np.signbit(fl(x)) == np.signbit(np.floor(x)) and fl(x) == np.floor(x), x
        assert np.signbit(ce(x)) == np.signbit(np.ceil(x)) and ce(x) == np.ceil(x), x


def test_pow_exact_exponents():
    """pow(x, 2), pow(x, -1), pow(x, 0.5) are x*x, 1/x, sqrt(x): correctly
    rounded (0 ulp against the exact value) and with pow's own values at
    -0.0 and -inf (not sqrt's -0.0 and nan)."""
    p = ops.get("pow").ref
    for x in _grid_finite():
        assert same(p(x, 2.0), x * x), x
        assert ulps(p(x, 2.0), round_fraction(exact(x) ** 2)) == 0, x
        if x != 0.0:
            assert ulps(p(x, -1.0), round_fraction(1 / exact(x))) == 0, x
            assert same(p(x, -1.0), 1.0 / x), x
        if x >= 0.0:
            assert ulps(p(x, 0.5), to_double(mpmath.sqrt(mpmath.mpf(x)))) == 0, x
            assert same(p(x, 0.5), math.sqrt(x)) or x == 0.0, x
        else:
            assert math.isnan(p(x, 0.5)), x
    for x, y, want in [(-0.0, 2.0, 0.0), (-0.0, -1.0, -INF), (0.0, -1.0, INF), (-0.0, 0.5, 0.0),
                       (0.0, 0.5, 0.0), (-INF, 0.5, INF), (INF, 0.5, INF), (-INF, -1.0, -0.0),
                       (INF, -1.0, 0.0), (-INF, 2.0, INF), (NAN, 2.0, NAN), (NAN, -1.0, NAN),
                       (NAN, 0.5, NAN), (-1.0, 0.5, NAN), (-TINY, 0.5, NAN), (1e200, 2.0, INF),
                       (TINY, 2.0, 0.0), (-TINY, 2.0, 0.0), (TINY, -1.0, INF), (-TINY, -1.0, -INF)]:
        assert same(p(x, y), want), (x, y, p(x, y), want)


# -- 1. references against C99 Annex F and the documented conventions --------------------

def _is_int(y):
    return math.isfinite(y) and y == math.floor(y)


def _is_odd(y):
    return _is_int(y) and abs(y) < 2.0 ** 53 and int(y) % 2 == 1


def c99_pow(x, y):
    """C99 F.10.4.4, clause by clause in the standard's order; None where no
    clause applies (an ordinary point: mpmath decides)."""
    if x == 0.0 and y < 0.0 and _is_odd(y):
        return math.copysign(INF, x)
    if x == 0.0 and y == -INF:
        return INF
    if x == 0.0 and y < 0.0 and not _is_odd(y):
        return INF
    if x == 0.0 and y > 0.0 and _is_odd(y):
        return x
    if x == 0.0 and y > 0.0 and not _is_odd(y):
        return 0.0
    if x == -1.0 and abs(y) == INF:
        return 1.0
    if x == 1.0:
        return 1.0                      # even for a nan y
    if y == 0.0:
        return 1.0                      # even for a nan x
    if math.isfinite(x) and x < 0.0 and math.isfinite(y) and not _is_int(y):
        return NAN
    if y == -INF and x == x:
        return INF if abs(x) < 1.0 else 0.0
    if y == INF and x == x:
        return 0.0 if abs(x) < 1.0 else INF
    if x == -INF and y == y:
        if y < 0.0:
            return -0.0 if _is_odd(y) else 0.0
        return -INF if _is_odd(y) else INF
    if x == INF and y == y:
        return 0.0 if y < 0.0 else INF
    if x != x or y != y:
        return NAN
    return None


POW_LITERAL = [
    ((0.0, -1.0), INF), ((-0.0, -1.0), -INF), ((-0.0, -3.0), -INF), ((0.0, -3.0), INF),
    ((-0.0, -2.0), INF), ((-0.0, -0.5), INF), ((-0.0, -INF), INF), ((0.0, -INF), INF),
    ((-0.0, 3.0), -0.0), ((0.0, 3.0), 0.0), ((-0.0, 1.0), -0.0), ((-0.0, 2.0), 0.0),
    ((-0.0, 0.5), 0.0), ((-0.0, INF), 0.0), ((-0.0, 2.0 ** 53), 0.0),
    ((-0.0, 2.0 ** 53 - 1), -0.0), ((-1.0, INF), 1.0), ((-1.0, -INF), 1.0), ((1.0, NAN), 1.0),
    ((1.0, INF), 1.0), ((1.0, -INF), 1.0), ((NAN, 0.0), 1.0), ((NAN, -0.0), 1.0),
    ((INF, 0.0), 1.0), ((-INF, -0.0), 1.0), ((-2.0, 0.5), NAN), ((-2.0, 1.5), NAN),
    ((-TINY, -2.5), NAN), ((0.5, -INF), INF), ((-0.5, -INF), INF), ((2.0, -INF), 0.0),
    ((-2.0, -INF), 0.0), ((0.5, INF), 0.0), ((-0.5, INF), 0.0), ((2.0, INF), INF),
    ((-2.0, INF), INF), ((-INF, -1.0), -0.0), ((-INF, -3.0), -0.0), ((-INF, -2.0), 0.0),
    ((-INF, -0.5), 0.0), ((-INF, 1.0), -INF), ((-INF, 3.0), -INF), ((-INF, 2.0), INF),
    ((-INF, 0.5), INF), ((-INF, 2.5), INF), ((INF, -1.0), 0.0), ((INF, -0.5), 0.0),
    ((INF, 0.5), INF), ((INF, 3.0), INF), ((NAN, 1.0), NAN), ((2.0, NAN), NAN),
    ((0.0, NAN), NAN), ((-1.0, NAN), NAN), ((-2.0, 3.0), -8.0), ((-2.0, -2.0), 0.25),
    ((-2.0, 2.0 ** 53), INF), ((-2.0, 2.0 ** 53 + 2), INF), ((-0.5, 2.0 ** 53 - 1), -0.0),
    ((2.0, 1024.0), INF), ((-2.0, 1025.0), -INF), ((2.0, -1074.0), TINY), ((2.0, -1075.0), 0.0),
    ((-2.0, -1075.0), -0.0), ((10.0, 308.0), 1e308),
]


@pytest.mark.parametrize("args,want", POW_LITERAL, ids=[repr(a) for a, _ in POW_LITERAL])
def test_pow_annex_f_rows(args, want):
    assert same(ops.get("pow").ref(*args), want), (args, ops.get("pow").ref(*args), want)
    c99 = c99_pow(*args)
    assert c99 is None or same(c99, want), ("the clause table disagrees with the literal row", args)


def test_pow_annex_f_table():
    """Every special base against every special exponent, by F.10.4.4's clauses."""
    p = ops.get("pow").ref
    bad = []
    for x in POW_X + [-1.0, 1.0, 0.0, -0.0]:
        for y in POW_Y + [-1.0, -3.0, 3.0, -2.0, 2.0 ** 53 - 1, -(2.0 ** 53 - 1)]:
            want = c99_pow(x, y)
            if want is not None and not same(p(x, y), want):
                bad.append((x, y, p(x, y), want))
    assert not bad, bad[:10]


def _atan2_c99(y, x):
    """F.10.1.4 (None: not a special case)."""
    if y != y or x != x:
        return NAN
    if y == 0.0:
        neg_x = x < 0.0 or (x == 0.0 and math.copysign(1, x) < 0)
        return math.copysign(PI, y) if neg_x else math.copysign(0.0, y)
    if x == 0.0:
        return -PI / 2 if y < 0.0 else PI / 2
    if math.isfinite(y) and x == -INF:
        return math.copysign(PI, y)
    if math.isfinite(y) and x == INF:
        return math.copysign(0.0, y)
    if abs(y) == INF and math.isfinite(x):
        return math.copysign(PI / 2, y)
    if abs(y) == INF and x == -INF:
        return math.copysign(3 * PI / 4, y)
    if abs(y) == INF and x == INF:
        return math.copysign(PI / 4, y)
    return None


def test_atan2_annex_f():
    vals = [0.0, -0.0, TINY, -TINY, 1.0, -1.0, 3.0, -7.5, MAXD, -MAXD, INF, -INF, NAN]
    ref, checked = ops.get("atan2").ref, 0
    for y in vals:
        for x in vals:
            want = _atan2_c99(y, x)
            if want is not None:
                checked += 1
                assert same(ref(y, x), want), (y, x, ref(y, x), want)
    assert checked > 100
    assert same(ref(-0.0, -0.0), -PI) and same(ref(0.0, -0.0), PI) and same(ref(-0.0, 0.0), -0.0)
    assert same(ref(INF, -INF), 2.356194490192345) and same(ref(-INF, INF), -PI / 4)


# op -> rows (args, expected), compared with same()
SPECIAL_VALUES = {
    "add": [((-0.0, -0.0), -0.0), ((0.0, -0.0), 0.0), ((-0.0, 0.0), 0.0), ((-0.0,), -0.0),
            ((0.0,), 0.0), ((), 0.0), ((-0.0, -0.0, -0.0), -0.0), ((-0.0, -0.0, 0.0), 0.0),
            ((INF, -INF), NAN), ((INF, 1.0), INF), ((NAN, 1.0), NAN), ((1.0, -1.0), 0.0),
            ((MAXD, MAXD), INF), ((MAXD, MAXD, -INF), NAN), ((1e16, 1.0, 1.0), 1e16),
            ((1.0, 1.0, 1e16), 1e16 + 2), ((-TINY, TINY), 0.0), ((TINY, TINY), 2 * TINY)],
    "mul": [((-0.0, 0.0), -0.0), ((-0.0, -0.0), 0.0), ((0.0, INF), NAN), ((-1.0, 0.0), -0.0),
            ((-1.0, -0.0), 0.0), ((-1.0, INF), -INF), ((-1.0, NAN), NAN), ((MAXD, 2.0), INF),
            ((-MAXD, 2.0), -INF), ((TINY, 0.5), 0.0), ((-TINY, 0.5), -0.0), ((NAN, 0.0), NAN),
            ((-INF, -INF), INF), ((-2.0, -0.0), 0.0)],
    "div": [((1.0, 0.0), INF), ((1.0, -0.0), -INF), ((-1.0, 0.0), -INF), ((-1.0, -0.0), INF),
            ((0.0, 0.0), NAN), ((-0.0, 0.0), NAN), ((NAN, 0.0), NAN), ((INF, 0.0), INF),
            ((-INF, 0.0), -INF), ((INF, -0.0), -INF), ((INF, INF), NAN), ((1.0, INF), 0.0),
            ((1.0, -INF), -0.0), ((-1.0, INF), -0.0), ((0.0, -1.0), -0.0), ((-0.0, -1.0), 0.0),
            ((MAXD, 0.5), INF), ((TINY, 2.0), 0.0), ((-TINY, 2.0), -0.0), ((TINY, -0.0), -INF),
            ((1.0, NAN), NAN), ((6.0, 3.0), 2.0)],
    "pow": POW_LITERAL,
    "exp": [((0.0,), 1.0), ((-0.0,), 1.0), ((-INF,), 0.0), ((INF,), INF), ((NAN,), NAN),
            ((up(EXP_MAX),), INF), ((710.0,), INF), ((MAXD,), INF), ((-746.0,), 0.0),
            ((-MAXD,), 0.0), ((-745.1332191019411,), TINY)],
    "expm1": [((0.0,), 0.0), ((-0.0,), -0.0), ((-INF,), -1.0), ((INF,), INF), ((NAN,), NAN),
              ((up(EXP_MAX),), INF), ((MAXD,), INF), ((-MAXD,), -1.0), ((-40.0,), -1.0),
              ((TINY,), TINY), ((-TINY,), -TINY)],
    "log": [((0.0,), -INF), ((-0.0,), -INF), ((1.0,), 0.0), ((-1.0,), NAN), ((-TINY,), NAN),
            ((-INF,), NAN), ((INF,), INF), ((NAN,), NAN), ((TINY,), -744.4400719213812)],
    "log1p": [((0.0,), 0.0), ((-0.0,), -0.0), ((-1.0,), -INF), ((down(-1.0),), NAN),
              ((-2.0,), NAN), ((-INF,), NAN), ((INF,), INF), ((NAN,), NAN), ((TINY,), TINY),
              ((-TINY,), -TINY)],
    "sin": [((0.0,), 0.0), ((-0.0,), -0.0), ((INF,), NAN), ((-INF,), NAN), ((NAN,), NAN),
            ((TINY,), TINY), ((-TINY,), -TINY), ((1e22,), -0.8522008497671888)],
    "cos": [((0.0,), 1.0), ((-0.0,), 1.0), ((INF,), NAN), ((-INF,), NAN), ((NAN,), NAN),
            ((-MAXD,), -0.9999876894265599)],
    "tan": [((0.0,), 0.0), ((-0.0,), -0.0), ((INF,), NAN), ((-INF,), NAN), ((NAN,), NAN),
            ((-TINY,), -TINY)],
    "asin": [((0.0,), 0.0), ((-0.0,), -0.0), ((1.0,), PI / 2), ((-1.0,), -PI / 2),
             ((up(1.0),), NAN), ((down(-1.0),), NAN), ((INF,), NAN), ((-INF,), NAN),
             ((NAN,), NAN), ((-TINY,), -TINY)],
    "acos": [((1.0,), 0.0), ((-1.0,), PI), ((0.0,), PI / 2), ((-0.0,), PI / 2),
             ((up(1.0),), NAN), ((down(-1.0),), NAN), ((INF,), NAN), ((-INF,), NAN), ((NAN,), NAN)],
    "atan": [((0.0,), 0.0), ((-0.0,), -0.0), ((INF,), PI / 2), ((-INF,), -PI / 2), ((NAN,), NAN),
             ((-TINY,), -TINY), ((MAXD,), PI / 2)],
    "atan2": [((0.0, -0.0), PI), ((-0.0, -0.0), -PI), ((0.0, 0.0), 0.0), ((-0.0, 0.0), -0.0),
              ((0.0, -1.0), PI), ((-0.0, -1.0), -PI), ((0.0, 1.0), 0.0), ((-0.0, 1.0), -0.0),
              ((-1.0, 0.0), -PI / 2), ((-1.0, -0.0), -PI / 2), ((1.0, 0.0), PI / 2),
              ((1.0, -0.0), PI / 2), ((1.0, -INF), PI), ((-1.0, -INF), -PI), ((1.0, INF), 0.0),
              ((-1.0, INF), -0.0), ((INF, 1.0), PI / 2), ((-INF, -1.0), -PI / 2),
              ((INF, -INF), 3 * PI / 4), ((-INF, -INF), -3 * PI / 4), ((INF, INF), PI / 4),
              ((-INF, INF), -PI / 4), ((NAN, 1.0), NAN), ((1.0, NAN), NAN), ((NAN, NAN), NAN)],
    "sinh": [((0.0,), 0.0), ((-0.0,), -0.0), ((INF,), INF), ((-INF,), -INF), ((NAN,), NAN),
             ((up(SINH_MAX),), INF), ((-up(SINH_MAX),), -INF), ((MAXD,), INF), ((-MAXD,), -INF),
             ((-TINY,), -TINY)],
    "cosh": [((0.0,), 1.0), ((-0.0,), 1.0), ((INF,), INF), ((-INF,), INF), ((NAN,), NAN),
             ((up(SINH_MAX),), INF), ((-up(SINH_MAX),), INF), ((-MAXD,), INF)],
    "tanh": [((0.0,), 0.0), ((-0.0,), -0.0), ((INF,), 1.0), ((-INF,), -1.0), ((NAN,), NAN),
             ((MAXD,), 1.0), ((-30.0,), -1.0), ((-TINY,), -TINY)],
    "erf": [((0.0,), 0.0), ((-0.0,), -0.0), ((INF,), 1.0), ((-INF,), -1.0), ((NAN,), NAN),
            ((6.0,), 1.0), ((-MAXD,), -1.0), ((-TINY,), -TINY)],
    "relu": [((0.0,), 0.0), ((-0.0,), 0.0), ((2.5,), 2.5), ((-2.5,), 0.0), ((INF,), INF),
             ((-INF,), 0.0), ((NAN,), NAN), ((TINY,), TINY), ((-TINY,), 0.0)],
    "sigmoid": [((0.0,), 0.5), ((-0.0,), 0.5), ((INF,), 1.0), ((-INF,), 0.0), ((NAN,), NAN),
                ((40.0,), 1.0), ((-800.0,), 0.0), ((MAXD,), 1.0), ((-MAXD,), 0.0),
                ((-TINY,), 0.5)],
    "softplus": [((0.0,), math.log(2.0)), ((-0.0,), math.log(2.0)), ((INF,), INF),
                 ((-INF,), 0.0), ((NAN,), NAN), ((MAXD,), MAXD), ((-MAXD,), 0.0),
                 ((1e300,), 1e300), ((-800.0,), 0.0), ((800.0,), 800.0)],
    "logsumexp": [((1.5,), 1.5), ((-0.0,), 0.0), ((-40.0, 1e-10), 1.0000000424835426e-10),
                  ((INF,), INF), ((-INF,), -INF), ((NAN,), NAN),
                  ((INF, -INF), INF), ((-INF, -INF), -INF), ((-INF, 3.0), 3.0),
                  ((INF, 1.0), INF), ((NAN, INF), NAN), ((1.0, NAN), NAN),
                  ((1000.0, 1000.0), 1000.0 + math.log(2.0)), ((MAXD, MAXD), MAXD),
                  ((-MAXD, -MAXD), -MAXD), ((INF, INF, NAN), NAN), ((0.0, -INF, -INF), 0.0)],
    "abs_": [((-0.0,), 0.0), ((0.0,), 0.0), ((-INF,), INF), ((-2.5,), 2.5), ((NAN,), NAN),
             ((-TINY,), TINY)],
    "sign": [((0.0,), 0.0), ((-0.0,), -0.0), ((NAN,), NAN), ((TINY,), 1.0), ((-TINY,), -1.0),
             ((INF,), 1.0), ((-INF,), -1.0), ((-3.0,), -1.0)],
    "heaviside": [((0.0, 0.5), 0.5), ((-0.0, 0.5), 0.5), ((0.0, NAN), NAN), ((0.0, -0.0), -0.0),
                  ((TINY, 0.5), 1.0), ((-TINY, 0.5), 0.0), ((INF, 0.5), 1.0),
                  ((-INF, 0.5), 0.0), ((NAN, 0.5), NAN), ((2.0, NAN), 1.0), ((-2.0, NAN), 0.0)],
    "max2": [((1.0, 2.0), 2.0), ((2.0, 1.0), 2.0), ((NAN, 1.0), NAN), ((1.0, NAN), NAN),
             ((-INF, -MAXD), -MAXD), ((-0.0, 0.0), -0.0), ((0.0, -0.0), 0.0), ((INF, NAN), NAN),
             ((-INF, INF), INF)],
    "min2": [((1.0, 2.0), 1.0), ((2.0, 1.0), 1.0), ((NAN, 1.0), NAN), ((1.0, NAN), NAN),
             ((INF, MAXD), MAXD), ((-0.0, 0.0), -0.0), ((0.0, -0.0), 0.0), ((-INF, NAN), NAN),
             ((-INF, INF), -INF)],
    "floor": [((-0.0,), -0.0), ((0.0,), 0.0), ((-0.5,), -1.0), ((0.5,), 0.0), ((-TINY,), -1.0),
              ((TINY,), 0.0), ((INF,), INF), ((-INF,), -INF), ((NAN,), NAN), ((1e300,), 1e300),
              ((-2.5,), -3.0), ((4503599627370495.5,), 4503599627370495.0),
              ((-4503599627370495.5,), -4503599627370496.0), ((0.49999999999999994,), 0.0)],
    "ceil": [((-0.0,), -0.0), ((0.0,), 0.0), ((-0.5,), -0.0), ((0.5,), 1.0), ((-TINY,), -0.0),
             ((TINY,), 1.0), ((INF,), INF), ((-INF,), -INF), ((NAN,), NAN), ((-1e300,), -1e300),
             ((2.5,), 3.0), ((4503599627370495.5,), 4503599627370496.0),
             ((-4503599627370495.5,), -4503599627370495.0), ((-0.49999999999999994,), -0.0)],
    "piecewise": [((1.0, 1.0), 1.0), ((1.0, 0.0), NAN), ((1.0, -0.0), NAN), ((1.0, NAN), 1.0),
                  ((1.0, 0.0, 2.0, 1.0), 2.0), ((1.0, 5.0, 2.0, 1.0), 1.0),
                  ((1.0, 0.0, 2.0, 0.0), NAN), ((-0.0, 1.0, 2.0, 1.0), -0.0),
                  ((NAN, 1.0, 2.0, 1.0), NAN), ((1.0, -TINY, 2.0, 1.0), 1.0), ((), NAN),
                  ((1.0, 0.0, 2.0, 0.0, 3.0, INF), 3.0)],
    "lt": [((1.0, 2.0), 1.0), ((2.0, 1.0), 0.0), ((1.0, 1.0), 0.0), ((-0.0, 0.0), 0.0),
           ((NAN, 1.0), 0.0), ((1.0, NAN), 0.0), ((-INF, INF), 1.0)],
    "le": [((1.0, 1.0), 1.0), ((-0.0, 0.0), 1.0), ((NAN, NAN), 0.0), ((INF, INF), 1.0),
           ((2.0, 1.0), 0.0)],
    "gt": [((2.0, 1.0), 1.0), ((1.0, 1.0), 0.0), ((0.0, -0.0), 0.0), ((NAN, 1.0), 0.0),
           ((INF, MAXD), 1.0)],
    "ge": [((1.0, 1.0), 1.0), ((0.0, -0.0), 1.0), ((NAN, NAN), 0.0), ((-INF, -INF), 1.0),
           ((1.0, 2.0), 0.0)],
    "eq": [((1.0, 1.0), 1.0), ((-0.0, 0.0), 1.0), ((NAN, NAN), 0.0), ((INF, INF), 1.0),
           ((1.0, 2.0), 0.0)],
    "ne": [((1.0, 1.0), 0.0), ((-0.0, 0.0), 0.0), ((NAN, NAN), 1.0), ((NAN, 1.0), 1.0),
           ((1.0, 2.0), 1.0)],
    "and_": [((), 1.0), ((1.0,), 1.0), ((0.0,), 0.0), ((-0.0,), 0.0), ((NAN,), 1.0),
             ((1.0, 2.0, 0.0), 0.0), ((1.0, -INF, NAN), 1.0), ((TINY, 1.0), 1.0)],
    "or_": [((), 0.0), ((0.0,), 0.0), ((-0.0, 0.0), 0.0), ((NAN,), 1.0), ((0.0, 0.0, TINY), 1.0),
            ((0.0, -0.0, -INF), 1.0)],
    "not_": [((0.0,), 1.0), ((-0.0,), 1.0), ((NAN,), 0.0), ((TINY,), 0.0), ((-INF,), 0.0)],
}


def test_tables_cover_every_primitive():
    """A primitive registered without references here fails."""
    names = ops.BUILTINS
    assert set(SPECIAL_VALUES) == names
    assert set(NUMPY_TWIN) | set(MP_FORMULA) | set(EXACT_CHECKED) | {"piecewise"} == names
    assert set(SIMD_ULPS) == {p.name for p in ops.all_primitives() if p.vector == "libmvec" and p.name in ops.BUILTINS}
    assert set(PROGRAM_ARITIES) == names


@pytest.mark.parametrize("name", sorted(ops.BUILTINS))
def test_special_values(name):
    ref = ops.get(name).ref
    rows = SPECIAL_VALUES[name]
    assert rows
    bad = [(args, ref(*args), want) for args, want in rows if not same(ref(*args), want)]
    assert not bad, f"{name}: (args, ref, expected): {bad}"


# ops with an IEEE / NumPy operation of the same meaning: a second opinion on every grid pair
NUMPY_TWIN = {
    "abs_": np.abs, "floor": np.floor, "ceil": np.ceil, "heaviside": np.heaviside,
    "lt": lambda a, b: np.less(a, b) * 1.0, "le": lambda a, b: np.less_equal(a, b) * 1.0,
    "gt": lambda a, b: np.greater(a, b) * 1.0, "ge": lambda a, b: np.greater_equal(a, b) * 1.0,
    "eq": lambda a, b: np.equal(a, b) * 1.0, "ne": lambda a, b: np.not_equal(a, b) * 1.0,
    "not_": lambda a: np.equal(a, 0.0) * 1.0,
    "and_": lambda *xs: np.all([np.not_equal(x, 0.0) for x in xs], axis=0) * 1.0,
    "or_": lambda *xs: np.any([np.not_equal(x, 0.0) for x in xs], axis=0) * 1.0,
    # max/min: nan if either is nan (np.maximum); a tie (+-0) gives the first argument
    "max2": lambda a, b: np.where(a == b, a, np.maximum(a, b)),
    "min2": lambda a, b: np.where(a == b, a, np.minimum(a, b)),
    "relu": lambda a: np.where(np.isnan(a), a, np.maximum(a, 0.0) + 0.0),
    # sign: +-1, and the argument itself at +-0 and nan
    "sign": lambda a: np.where((a == 0) | np.isnan(a), a, np.sign(a)),
    "mul": np.multiply, "div": np.divide,
}
EXACT_CHECKED = {"add", "mul", "div", "floor", "ceil"}   # test_add_mul_div_exact, test_floor_ceil_exact


@pytest.mark.parametrize("name", sorted(NUMPY_TWIN))
def test_ref_against_numpy(name):
    prim, twin = ops.get(name), NUMPY_TWIN[name]
    grid = np.array(SPECIAL + [float(x) for x in _random(64, 3)])
    arity = prim.arity if prim.arity is not None else 3
    if arity == 1:
        cols = [grid]
    elif arity == 2:
        cols = [np.repeat(grid, len(grid)), np.tile(grid, len(grid))]
    else:
        cols = [np.repeat(grid, len(grid)), np.tile(grid, len(grid)), np.roll(np.tile(grid, len(grid)), 7)]
    with np.errstate(all="ignore"):
        want = np.asarray(twin(*cols), dtype=float)
    got = np.array([prim.ref(*map(float, p)) for p in zip(*cols)])
    bad = mismatches(got, want)
    assert not bad.any(), [(tuple(c[i] for c in cols), got[i], want[i]) for i in np.flatnonzero(bad)[:8]]


# -- 2. every back end against the reference ---------------------------------------------

N_IN = 4
CONSTS = (0.0, -0.0, 1.0, -1.0, 2.0, 0.5, -0.5, 3.0, -2.5, INF, -INF, NAN, TINY, 1e300)

# op -> arities its program uses (variadic ops: several)
PROGRAM_ARITIES = {p.name: (p.arity,) for p in ops.all_primitives()
                  if p.arity is not None and p.name in ops.BUILTINS}
PROGRAM_ARITIES.update(add=(1, 2, 3, 4), logsumexp=(1, 2, 3), piecewise=(2, 4),
                       and_=(1, 2, 3), or_=(1, 2, 3))

# libmvec ops: doubles between a SIMD lane and ref (compiler.llvmsimd's docstring; atan2 and
# logsumexp are not listed there: glibc's 4 ulp for atan2, and logsumexp's own
# absolute bound, see _simd_ok)
SIMD_ULPS = {"exp": 3, "tanh": 3, "sin": 3, "cos": 3, "tan": 3, "sinh": 3, "log": 2,
             "expm1": 2, "log1p": 2, "asin": 2, "acos": 2, "atan": 2, "cosh": 2, "erf": 2,
             "pow": 1, "sigmoid": 4, "softplus": 5, "atan2": 4, "logsumexp": 4}


def _outputs(name):
    """The program's outputs: (label, args) with args ``("in", k)`` or ``("c", value)``."""
    outs = []
    for n in PROGRAM_ARITIES[name]:
        base = [("in", k) for k in range(n)]
        outs.append((f"{name}{n}", base))
        for pos in range(n):
            for c in CONSTS:
                args = list(base)
                args[pos] = ("c", c)
                if all(a[0] == "c" for a in args):
                    continue       # folded by the Builder: not a template case
                outs.append((f"{name}{n}[{pos}]={c!r}", args))
    return outs


@functools.lru_cache(maxsize=None)
def program(name):
    b = ir.Builder(N_IN)
    xs = [b.input(k) for k in range(N_IN)]
    vals = []
    for _, args in _outputs(name):
        vals.append(b.op(name, *[xs[a[1]] if a[0] == "in" else b.const(a[1]) for a in args]))
    return b.finish(vals)


@functools.lru_cache(maxsize=None)
def grid():
    """Points as columns (N_IN, n): every pair of SPECIAL values in (a, b) with c, d
    shifted copies, hard points in a, and random points."""
    s = np.array(SPECIAL)
    a, b = np.repeat(s, len(s)), np.tile(s, len(s))
    c, d = np.roll(a, 5), np.roll(b, 11)
    hard = np.array(HARD + [NAN])
    h = [hard, np.resize(s, len(hard)), np.resize(s[::-1], len(hard)), np.resize(s[3:], len(hard))]
    r = [_random(400, 100 + k) for k in range(N_IN)]
    r[1][:40] = [2.0, -1.0, 0.5] * 13 + [2.0]      # pow's exact exponents as variables
    cols = [np.concatenate([x, y, z]) for x, y, z in zip([a, b, c, d], h, r)]
    return np.ascontiguousarray(cols)


@functools.lru_cache(maxsize=None)
def expected(name):
    ref = ops.get(name).ref
    pts = grid()
    outs = _outputs(name)
    want = np.empty((len(outs), pts.shape[1]))
    for j, col in enumerate(pts.T):
        col = [float(x) for x in col]
        for o, (_, args) in enumerate(outs):
            want[o, j] = ref(*[col[a[1]] if a[0] == "in" else a[1] for a in args])
    return want


def _assert_identical(name, got, what):
    want = expected(name)
    bad = mismatches(got, want)
    if bad.any():
        outs, pts = _outputs(name), grid()
        rows = [(outs[o][0], tuple(pts[:, j]), got[o, j], want[o, j]) for o, j in np.argwhere(bad)[:8]]
        pytest.fail(f"{what} differs from ref at {int(bad.sum())} of {bad.size} values; "
                    f"(output, point, got, ref): {rows}")


def run_python(name):
    fn = program(name)
    k = sourceload.load_python(pysource.python_source(fn, "kernel"), "kernel")
    pts = grid()
    got = np.empty((fn.n_outputs, pts.shape[1]))
    out = np.empty(fn.n_outputs)
    for j, col in enumerate(pts.T.tolist()):
        k(col, out)
        got[:, j] = out
    return got


def run_numba(name):
    fn = program(name)
    mod, _, _ = sourceload.load_numba(pysource.python_source(fn, "kernel"), "kernel")
    pts = grid()
    got = np.empty((fn.n_outputs, pts.shape[1]))
    out = np.empty(fn.n_outputs)
    for j in range(pts.shape[1]):
        mod.kernel(np.ascontiguousarray(pts[:, j]), out)
        got[:, j] = out
    return got


def run_llvm(name):
    fn = program(name)
    k = llvmjit.load_llvm(fn)
    pts = grid()
    got = np.empty((fn.n_outputs, pts.shape[1]))
    k.call_batch(pts, got)
    out = np.empty(fn.n_outputs)
    for j in range(0, pts.shape[1], 37):          # and the one-point entry
        k.call(np.ascontiguousarray(pts[:, j]), out)
        assert not mismatches(out, got[:, j]).any()
    return got


def simd_modes():
    machine = llvmjit.simd_math()
    modes = {"machine": machine, "libm": SimdMath(machine.lanes, {})}
    if machine.lanes == 8 and llvmjit.vector_math():
        modes["avx2"] = SimdMath(4, dict(llvmjit.vector_math()))
        modes["libm4"] = SimdMath(4, {})
    return modes


def run_simd(name, mode):
    """The SIMD batch kernel of ``load_vector`` with the math of ``mode``."""
    fn = program(name)
    simd = simd_modes()[mode]
    saved = llvmjit.simd_math()
    host.set_simd_math(simd)
    try:
        k = llvmjit.load_vector(fn)
    finally:
        host.set_simd_math(saved)
    pts = grid()
    return k([(pts[i], 0, 1) for i in range(N_IN)], pts.shape[1])


BACKENDS = {"python": run_python, "numba": run_numba, "llvm": run_llvm}


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("name", sorted(ops.BUILTINS))
def test_backend_equals_ref(name, backend):
    _assert_identical(name, BACKENDS[backend](name), f"{backend} back end")


@pytest.mark.parametrize("name", sorted(ops.BUILTINS))
def test_simd_libm_equals_ref(name):
    """With libm forced (every width), every lane is the reference, bit for bit."""
    for mode in simd_modes():
        if mode.startswith("libm"):
            _assert_identical(name, run_simd(name, mode), f"SIMD kernel ({mode})")


def _exact_outputs(name):
    """Outputs (and points) a libmvec kernel must still compute exactly: pow's
    exponents 2, -1 and 0.5, as constants or as variables."""
    outs = _outputs(name)
    mask = np.zeros((len(outs), grid().shape[1]), dtype=bool)
    if name == "pow":
        b = grid()[1]
        for o, (_, args) in enumerate(outs):
            if args[1] == ("in", 1):
                mask[o] = np.isin(b, [2.0, -1.0, 0.5])
            else:
                mask[o] = args[1][1] in (2.0, -1.0, 0.5)
    return mask


@pytest.mark.parametrize("name", sorted(ops.BUILTINS))
def test_simd_libmvec_against_ref(name):
    """This machine's kernels (and AVX2's on AVX-512): exact ops bit for bit,
    libmvec ops within SIMD_ULPS with nan and signed zeros where ref has them."""
    prim = ops.get(name)
    want = expected(name)
    for mode, simd in simd_modes().items():
        if mode.startswith("libm"):
            continue
        got = run_simd(name, mode)
        if prim.vector == "exact" or not simd.table:
            _assert_identical(name, got, f"SIMD kernel ({mode})")
            continue
        exact_mask = _exact_outputs(name)
        bad = mismatches(got, want) & exact_mask
        assert not bad.any(), f"{mode}: pow's exact exponents differ: {np.argwhere(bad)[:5]}"
        d = ulps_array(got, want)
        zero = want == 0
        bad = (d > SIMD_ULPS[name]) | (np.isnan(got) != np.isnan(want)) | \
              (zero & (got == 0) & (np.signbit(got) != np.signbit(want)))
        if name == "logsumexp":   # see lse_tolerance
            with np.errstate(invalid="ignore"):
                bad &= ~(np.abs(got - want) <= SIMD_ULPS[name] * _lse_tolerance_array(want))
        if bad.any():
            outs, pts = _outputs(name), grid()
            rows = [(outs[o][0], tuple(pts[:, j]), got[o, j], want[o, j], int(d[o, j]))
                    for o, j in np.argwhere(bad)[:8]]
            pytest.fail(f"{mode}: {name} beyond {SIMD_ULPS[name]} ulp at {int(bad.sum())} values: {rows}")


def _lse_tolerance_array(want):
    """:func:`lse_tolerance` of every output and point of logsumexp's program."""
    pts, tol = grid(), np.zeros_like(want)
    with np.errstate(all="ignore"):
        for o, (_, args) in enumerate(_outputs("logsumexp")):
            xs = np.array([pts[a[1]] if a[0] == "in" else np.full(pts.shape[1], a[1]) for a in args])
            m = xs.max(axis=0)
            t = np.spacing(np.abs(m)) + np.spacing(np.abs(want[o] - m))
            for x in xs:
                w = np.exp(x - want[o])
                t += np.where(w > 0, w * np.spacing(np.abs(x - m)), 0.0)
            tol[o] = t
    return tol


# -- 3. the records themselves ------------------------------------------------------------

def test_vector_strategy_matches_template():
    for p in (ops.get(n) for n in sorted(ops.BUILTINS)):
        calls = ops.libm_calls(p.name)
        if p.vector == "exact":
            assert calls == (), (p.name, calls)
        elif p.vector == "libmvec":
            assert calls, p.name
        assert p.vector in ops.VECTOR_STRATEGIES, p.name
        assert p.doc, p.name


def _emit_module(name, lanes, args_spec, simd):
    mod = Module()
    e = FunctionEmitter(mod, lanes, simd)
    args = []
    for k, a in enumerate(args_spec):
        args.append(Val(f"%a{k}") if a is None else e.const(a))
    r = e.op(name, *args)
    params = ", ".join(f"{e.ty} %a{k}" for k in range(len(args_spec)))
    e.ret(e.ty, e.as_operand(r))
    mod.add(e.finish(f"{e.ty} @f({params})"))
    return mod.text()


@pytest.mark.parametrize("name", sorted(ops.BUILTINS))
def test_templates_verify(name):
    import llvmlite.binding as llvm

    llvmobject._llvm()
    machine = llvmjit.simd_math()
    maths = [(None, None), (4, SimdMath(4, {})), (8, SimdMath(8, {}))]
    if machine.table:
        maths.append((machine.lanes, machine))
    if machine.lanes == 8 and llvmjit.vector_math():
        maths.append((4, SimdMath(4, dict(llvmjit.vector_math()))))
    for lanes, simd in maths:
        for label, args in _outputs(name):
            spec = [None if a[0] == "in" else a[1] for a in args]
            text = _emit_module(name, lanes, spec, simd)
            try:
                llvm.parse_assembly(text).verify()
            except RuntimeError as exc:   # pragma: no cover - the message is the point
                pytest.fail(f"{label} with lanes={lanes}: {exc}\n{text}")
