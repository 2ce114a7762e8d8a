"""A compiled function's calling convention: argument slots and output layout.

A kernel computes a flat output vector from a flat input vector. What a user
passes and gets back is richer, and :class:`Signature` is the one place that
maps between the two:

* **Arguments.** Each argument is a float or a 1-D array of length k,
  occupying one or k consecutive input slots. A call passes either one point
  (floats and length-k vectors) or a batch of n points: 1-D arrays of length
  n for float arguments and ``(n, k)`` arrays for array arguments, where any
  argument may also be given unbatched and is then broadcast over the batch.
  :meth:`Signature.pack` checks and converts the arguments (naming the
  argument and the fix in every error); :meth:`Signature.flat`,
  :meth:`Signature.columns` and :meth:`Signature.gather` give a kernel its
  inputs in the three forms kernels read (one vector; in-place columns of the
  caller's arrays, by stride; one row per input).
* **Outputs.** A gradient kernel writes m values and then the m x k Jacobian
  by rows (k = the number of variables differentiated); a forward kernel
  writes the m values. :meth:`Signature.result` turns a kernel's output (one
  point, or ``(width, n)`` for a batch) into what ``value_and_grad``,
  ``grad``, ``jacobian`` and plain calls return, with ``reduce=`` sums.

Built from positions and lengths only; the names it shows in messages are
passed in by the front end.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

__all__ = ["Signature", "KINDS"]

KINDS = ("value_and_grad", "grad", "jacobian", "values")
"""What a call returns: ``(value, gradient)``; the gradient; the Jacobian; the values."""

_REDUCE = (None, "sum", "mean")


class Signature:
    """Argument slots and output layout of a compiled function.

    Parameters
    ----------
    lengths : sequence of int or None
        Per argument, None for a float or k for a 1-D array of length k.
    n_values : int
        How many outputs (m) the function has.
    n_wrt : int
        How many variables (k) the gradient kernel differentiates by.
    names : sequence of str, optional
        Per argument, the name error messages use (default ``a0``, ``a1``, ...).

    Examples
    --------
    >>> sig = Signature([None, 2], n_values=1, n_wrt=3, names=["x", "w"])
    >>> sig.layout, sig.n_inputs, sig.width("value_and_grad")
    ([(0, None), (1, 2)], 3, 4)
    >>> arrays, n = sig.pack((0.5, [1.0, 2.0]))
    >>> sig.flat(arrays), n
    (array([0.5, 1. , 2. ]), None)
    """

    def __init__(self, lengths: Sequence[Optional[int]], n_values: int, n_wrt: int,
                 names: Optional[Sequence[str]] = None) -> None:
        self.lengths = tuple(None if k is None else int(k) for k in lengths)
        if any(k is not None and k < 1 for k in self.lengths):
            raise ValueError(f"array arguments need a length >= 1, got {self.lengths}")
        self.names = tuple(names) if names is not None else tuple(f"a{i}" for i in range(len(lengths)))
        if len(self.names) != len(self.lengths):
            raise ValueError(f"{len(self.names)} names for {len(self.lengths)} arguments")
        starts, total = [], 0
        for k in self.lengths:
            starts.append(total)
            total += 1 if k is None else k
        self.starts = tuple(starts)
        self.n_inputs = total
        self.n_values, self.n_wrt = int(n_values), int(n_wrt)

    @property
    def layout(self) -> list:
        """Per argument ``(first input slot, length or None)`` (the call glue's form)."""
        return list(zip(self.starts, self.lengths))

    def width(self, kind: str) -> int:
        """Outputs of the kernel that serves ``kind``: m(1 + k) with the gradient, m without."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        return self.n_values if kind == "values" else self.n_values * (1 + self.n_wrt)

    # -- arguments ------------------------------------------------------------------
    def pack(self, args: Sequence) -> tuple[list, Optional[int]]:
        """Check and convert call arguments: ``(float64 arrays, n)``.

        One array per argument: 0-d (a float) or ``(k,)`` unbatched, ``(n,)`` or
        ``(n, k)`` batched; ``n`` is None for a single point.
        """
        if len(args) != len(self.lengths):
            raise TypeError(f"expected {len(self.lengths)} arguments "
                            f"({', '.join(self.names)}), got {len(args)}")
        n = None
        arrays = []
        for name, length, value in zip(self.names, self.lengths, args):
            if isinstance(value, (str, bytes)) or value is None:
                raise TypeError(f"argument {name} must be numeric, got {value!r}")
            kind_of = getattr(value, "dtype", None)
            if kind_of is not None and kind_of.kind not in "biuf":
                raise TypeError(f"argument {name} must be numeric, got dtype {kind_of}")
            try:
                arr = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError):
                raise TypeError(f"argument {name} must be numeric, got {value!r}") from None
            if kind_of is None and np.asarray(value).dtype.kind not in "biuf":
                raise TypeError(f"argument {name} must be numeric, got {value!r}")
            want = 0 if length is None else 1
            if length is not None and arr.ndim >= 1 and arr.shape[-1] != length:
                raise ValueError(f"argument {name} must have length {length}, got shape {arr.shape}")
            if arr.ndim == want + 1:
                if n is None:
                    n = arr.shape[0]
                elif arr.shape[0] != n:
                    raise ValueError(f"batched arguments disagree in length: {n} and "
                                     f"{arr.shape[0]} (argument {name})")
            elif arr.ndim != want:
                shape = "a number or a 1-D array" if length is None else f"shape ({length},) or (n, {length})"
                raise ValueError(f"argument {name} must be {shape}, got shape {arr.shape}")
            arrays.append(arr)
        return arrays, n

    def flat(self, arrays: list) -> np.ndarray:
        """The input vector ``(n_inputs,)`` of one point."""
        flat = np.empty(self.n_inputs)
        for start, length, arr in zip(self.starts, self.lengths, arrays):
            if length is None:
                flat[start] = arr
            else:
                flat[start:start + length] = arr
        return flat

    def gather(self, arrays: list, n: int) -> np.ndarray:
        """The inputs of a batch as ``(n_inputs, n)``: one row per input, points are columns."""
        flat = np.empty((self.n_inputs, n))
        for start, length, arr in zip(self.starts, self.lengths, arrays):
            if length is None:
                flat[start] = arr
            else:
                flat[start:start + length] = arr.T if arr.ndim == 2 else arr[:, None]
        return flat

    def columns(self, arrays: list) -> list:
        """``(array, offset, stride)`` of every input, in elements, reading the
        callers' float64 arrays in place (unbatched values have stride 0)."""
        cols = []
        for length, arr in zip(self.lengths, arrays):
            if any(s % 8 for s in arr.strides) or arr.ctypes.data % 8:
                arr = np.ascontiguousarray(arr)       # misaligned views: copy once
            if length is None:
                cols.append((arr, 0, arr.strides[0] // 8 if arr.ndim else 0))
            else:
                step = arr.strides[-1] // 8
                stride = arr.strides[0] // 8 if arr.ndim == 2 else 0
                cols.extend((arr, j * step, stride) for j in range(length))
        return cols

    # -- results --------------------------------------------------------------------
    def check(self, kind: str, reduce: Optional[str] = None) -> None:
        """Raise the user's error for a call ``kind`` cannot take."""
        if kind in ("value_and_grad", "grad"):
            self.need_scalar("value_and_grad")
            if reduce not in _REDUCE:
                raise ValueError(f"reduce must be None, 'sum' or 'mean', got {reduce!r}")

    def need_scalar(self, what: str) -> None:
        """Raise unless the function has one output (gradients and Hessians need it)."""
        if self.n_values != 1:
            raise ValueError(f"{what} needs a single scalar output; this function has "
                             f"{self.n_values} outputs: use jacobian()")

    def result(self, kind: str, out: np.ndarray, n: Optional[int], reduce: Optional[str] = None):
        """What a ``kind`` call returns, from a kernel's ``out``: ``(width,)`` at
        one point, ``(width, n)`` for a batch."""
        m, k = self.n_values, self.n_wrt
        if kind == "values":
            vals = out if out.shape[0] == m else out[:m]
            if m == 1:
                return float(vals[0]) if n is None else vals[0]
            return vals if n is None else vals.T
        if kind == "jacobian":
            if n is None:
                return out[m:].reshape(m, k)
            return out[m:].reshape(m, k, n).transpose(2, 0, 1)
        if n is None:
            value, grad = float(out[0]), out[1:]
        elif reduce is None:
            value, grad = out[0], out[1:].T
        else:
            total = out.sum(axis=1)
            if reduce == "mean":
                total /= max(n, 1)
            value, grad = float(total[0]), total[1:]
        return (value, grad) if kind == "value_and_grad" else grad
