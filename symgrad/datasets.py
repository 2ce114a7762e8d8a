"""Small synthetic classification datasets, NumPy only, deterministic by seed.

* :func:`make_moons`  two interleaving half circles (scikit-learn's
  construction), labels in {-1, +1} as micrograd's demo uses them;
* :func:`make_blobs`  isotropic Gaussian clusters, integer labels ``0..k-1``;
* :func:`make_spiral` the CS231n spiral, integer labels ``0..k-1``.

Every generator draws from ``numpy.random.default_rng(seed)`` only, so the
same arguments give the same arrays on every platform and NumPy version that
keeps the ``PCG64`` stream stable. ``X`` is a C-contiguous float64 array
``(n_samples, n_features)``.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import numpy as np

__all__ = ["make_moons", "make_blobs", "make_spiral"]

Seed = Optional[int]


def _count(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def _nonneg(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0.0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def _rng(seed: Seed) -> np.random.Generator:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise ValueError(f"seed must be an integer or None, got {seed!r}")
    if seed is not None and seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return np.random.default_rng(seed)


def _split(n: int, k: int) -> list:
    """``n`` items into ``k`` groups, sizes differing by at most 1 (larger first)."""
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def make_moons(n_samples: int = 100, noise: float = 0.1, seed: Seed = 0,
               shuffle: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles, micrograd's toy problem.

    The outer moon is ``(cos t, sin t)`` with label -1, the inner one
    ``(1 - cos t, 1 - sin t - 0.5)`` with label +1, ``t`` evenly spaced in
    ``[0, pi]`` (``n_samples // 2`` outer points, the rest inner), then the
    points are shuffled and Gaussian noise of standard deviation ``noise``
    is added: scikit-learn's ``make_moons`` with micrograd's ``y*2 - 1``.

    Parameters
    ----------
    n_samples : int
        Number of points, >= 2.
    noise : float
        Standard deviation of the Gaussian noise added to every coordinate.
    seed : int or None
        Seed of ``numpy.random.default_rng``; ``None`` draws fresh entropy.
    shuffle : bool
        Shuffle the points (the noise is drawn after shuffling either way).

    Returns
    -------
    X : ndarray, shape (n_samples, 2), float64
    y : ndarray, shape (n_samples,), float64, values in {-1.0, +1.0}

    Examples
    --------
    >>> import symgrad as sg
    >>> X, y = sg.datasets.make_moons(n_samples=100, noise=0.1, seed=0)
    >>> X.shape, y.shape, sorted(set(y.tolist()))
    ((100, 2), (100,), [-1.0, 1.0])
    >>> int((y == 1).sum())
    50
    """
    n = _count(n_samples, "n_samples", 2)
    sigma = _nonneg(noise, "noise")
    rng = _rng(seed)
    n_out = n // 2
    n_in = n - n_out
    t_out = np.linspace(0.0, math.pi, n_out)
    t_in = np.linspace(0.0, math.pi, n_in)
    X = np.empty((n, 2))
    X[:n_out, 0] = np.cos(t_out)
    X[:n_out, 1] = np.sin(t_out)
    X[n_out:, 0] = 1.0 - np.cos(t_in)
    X[n_out:, 1] = 1.0 - np.sin(t_in) - 0.5
    y = np.concatenate([np.full(n_out, -1.0), np.full(n_in, 1.0)])
    if shuffle:
        perm = rng.permutation(n)
        X, y = X[perm], y[perm]
    if sigma > 0.0:
        X += rng.normal(scale=sigma, size=X.shape)
    return np.ascontiguousarray(X), y


def make_blobs(n_samples: int = 300, centers: Union[int, Sequence, np.ndarray] = 3,
               n_features: int = 2, cluster_std: Union[float, Sequence[float]] = 1.0,
               seed: Seed = 0, shuffle: bool = True,
               center_box: tuple = (-10.0, 10.0)) -> tuple[np.ndarray, np.ndarray]:
    """Isotropic Gaussian blobs, one per class (scikit-learn's ``make_blobs``).

    Parameters
    ----------
    n_samples : int
        Total number of points, split as evenly as possible between the
        centers (the first ``n_samples % k`` centers get one more).
    centers : int or array_like (k, n_features)
        Number of centers, drawn uniformly from ``center_box`` in every
        coordinate, or the centers themselves.
    n_features : int
        Dimension of the points (ignored when ``centers`` is an array).
    cluster_std : float or sequence of k floats
        Standard deviation of each blob.
    seed : int or None
        Seed of ``numpy.random.default_rng``.
    shuffle : bool
        Shuffle the points.
    center_box : (float, float)
        Bounds of the random centers.

    Returns
    -------
    X : ndarray, shape (n_samples, n_features), float64
    y : ndarray, shape (n_samples,), int64, labels ``0..k-1``

    Examples
    --------
    >>> import symgrad as sg
    >>> X, y = sg.datasets.make_blobs(n_samples=300, centers=3, seed=0)
    >>> X.shape, y.dtype.name, sorted(set(y.tolist()))
    ((300, 2), 'int64', [0, 1, 2])
    >>> X, y = sg.datasets.make_blobs(10, centers=[[0, 0], [5, 5]], cluster_std=0.1)
    >>> bool(abs(X[y == 1].mean(axis=0) - 5).max() < 0.2)
    True
    """
    n = _count(n_samples, "n_samples", 1)
    rng = _rng(seed)
    if isinstance(centers, (int, np.integer)) and not isinstance(centers, bool):
        k = _count(centers, "centers", 1)
        d = _count(n_features, "n_features", 1)
        lo, hi = (float(v) for v in center_box)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise ValueError(f"center_box must be (low, high) with low <= high, got {center_box!r}")
        c = rng.uniform(lo, hi, size=(k, d))
    else:
        try:
            c = np.array(centers, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"centers must be an integer or a (k, n_features) array, "
                             f"got {centers!r}") from None
        if c.ndim != 2 or c.shape[0] < 1 or c.shape[1] < 1:
            raise ValueError(f"centers must be an integer or a (k, n_features) array, "
                             f"got shape {c.shape}")
        if not np.all(np.isfinite(c)):
            raise ValueError("centers must be finite")
        k, d = c.shape
    if isinstance(cluster_std, (int, float, np.integer, np.floating)) and not isinstance(cluster_std, bool):
        stds = [_nonneg(cluster_std, "cluster_std")] * k
    else:
        stds = [_nonneg(s, "cluster_std[i]") for s in cluster_std]
        if len(stds) != k:
            raise ValueError(f"cluster_std has {len(stds)} entries for {k} centers")
    sizes = _split(n, k)
    X = np.empty((n, d))
    y = np.empty(n, dtype=np.int64)
    start = 0
    for j, (m, s) in enumerate(zip(sizes, stds)):
        X[start:start + m] = c[j] + rng.normal(scale=s, size=(m, d))
        y[start:start + m] = j
        start += m
    if shuffle:
        perm = rng.permutation(n)
        X, y = X[perm], y[perm]
    return np.ascontiguousarray(X), y


def make_spiral(n_samples: int = 300, n_classes: int = 3, noise: float = 0.2,
                seed: Seed = 0, shuffle: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The CS231n spiral: ``n_classes`` arms winding out from the origin.

    Arm ``j`` has radius ``r = linspace(0, 1, m)`` and angle
    ``t = linspace(4j, 4(j+1), m) + noise * N(0, 1)``; its points are
    ``(r sin t, r cos t)``. The points are split as evenly as possible
    between the classes.

    Parameters
    ----------
    n_samples : int
        Total number of points, >= n_classes.
    n_classes : int
        Number of arms (classes), >= 1.
    noise : float
        Standard deviation of the noise on the angle (CS231n uses 0.2).
    seed : int or None
        Seed of ``numpy.random.default_rng``.
    shuffle : bool
        Shuffle the points (CS231n does not; the arms are then in order).

    Returns
    -------
    X : ndarray, shape (n_samples, 2), float64
    y : ndarray, shape (n_samples,), int64, labels ``0..n_classes-1``

    Examples
    --------
    >>> import symgrad as sg
    >>> X, y = sg.datasets.make_spiral(n_samples=300, n_classes=3, seed=0)
    >>> X.shape, [int((y == j).sum()) for j in range(3)]
    ((300, 2), [100, 100, 100])
    >>> bool(abs(X).max() <= 1.0)
    True
    """
    k = _count(n_classes, "n_classes", 1)
    n = _count(n_samples, "n_samples", k)
    sigma = _nonneg(noise, "noise")
    rng = _rng(seed)
    X = np.empty((n, 2))
    y = np.empty(n, dtype=np.int64)
    start = 0
    for j, m in enumerate(_split(n, k)):
        r = np.linspace(0.0, 1.0, m)
        t = np.linspace(4.0 * j, 4.0 * (j + 1), m) + rng.normal(scale=sigma, size=m)
        X[start:start + m, 0] = r * np.sin(t)
        X[start:start + m, 1] = r * np.cos(t)
        y[start:start + m] = j
        start += m
    if shuffle:
        perm = rng.permutation(n)
        X, y = X[perm], y[perm]
    return np.ascontiguousarray(X), y
