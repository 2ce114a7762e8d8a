"""Tests of symgrad.datasets: shapes, labels, determinism, geometry, argument checks."""

from __future__ import annotations

import numpy as np
import pytest

import symgrad as sg
from symgrad.datasets import make_blobs, make_moons, make_spiral


# --- make_moons ----------------------------------------------------------------------------

def test_moons_shapes_dtypes_labels():
    X, y = make_moons(n_samples=100, noise=0.1, seed=0)
    assert X.shape == (100, 2) and X.dtype == np.float64 and X.flags.c_contiguous
    assert y.shape == (100,) and y.dtype == np.float64
    assert set(y.tolist()) == {-1.0, 1.0}
    assert (y == -1).sum() == 50 and (y == 1).sum() == 50


def test_moons_odd_count_gives_the_extra_point_to_the_inner_moon():
    X, y = make_moons(n_samples=51, noise=0.0, seed=3)
    assert (y == -1).sum() == 25 and (y == 1).sum() == 26


def test_moons_deterministic_by_seed():
    X1, y1 = make_moons(100, 0.1, seed=7)
    X2, y2 = make_moons(100, 0.1, seed=7)
    X3, y3 = make_moons(100, 0.1, seed=8)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(X1, X3)
    assert sg.datasets.make_moons is make_moons


def test_moons_geometry_without_noise():
    X, y = make_moons(n_samples=100, noise=0.0, seed=0)
    outer, inner = X[y == -1], X[y == 1]
    # outer: (cos t, sin t) on the unit circle, upper half
    np.testing.assert_allclose(np.hypot(outer[:, 0], outer[:, 1]), 1.0, atol=1e-15)
    assert outer[:, 1].min() >= -1e-15
    # inner: (1 - cos t, 1 - sin t - 0.5): unit circle around (1, 0.5), lower half
    np.testing.assert_allclose(np.hypot(inner[:, 0] - 1.0, inner[:, 1] - 0.5), 1.0, atol=1e-15)
    assert inner[:, 1].max() <= 0.5 + 1e-15
    # the half circles' end points, t = 0 and t = pi
    assert any(np.allclose(p, [1.0, 0.0]) for p in outer)
    assert any(np.allclose(p, [-1.0, 0.0]) for p in outer)
    assert any(np.allclose(p, [0.0, 0.5]) for p in inner)
    assert any(np.allclose(p, [2.0, 0.5]) for p in inner)


def test_moons_class_means_differ_as_expected():
    X, y = make_moons(n_samples=1000, noise=0.1, seed=0)
    m_out, m_in = X[y == -1].mean(axis=0), X[y == 1].mean(axis=0)
    # exact means of the noiseless curves: outer (0, 2/pi), inner (1, 0.5 - 2/pi)
    np.testing.assert_allclose(m_out, [0.0, 2 / np.pi], atol=0.02)
    np.testing.assert_allclose(m_in, [1.0, 0.5 - 2 / np.pi], atol=0.02)


def test_moons_noise_has_the_requested_scale():
    X0, y0 = make_moons(2000, noise=0.0, seed=4)
    X1, y1 = make_moons(2000, noise=0.1, seed=4)
    np.testing.assert_array_equal(y0, y1)        # same shuffle, noise drawn afterwards
    assert np.std(X1 - X0) == pytest.approx(0.1, rel=0.05)


def test_moons_unshuffled_keeps_outer_then_inner():
    X, y = make_moons(10, noise=0.0, shuffle=False)
    assert y.tolist() == [-1.0] * 5 + [1.0] * 5
    np.testing.assert_allclose(X[0], [1.0, 0.0])
    np.testing.assert_allclose(X[4], [-1.0, 0.0], atol=1e-15)


@pytest.mark.parametrize("kwargs", [dict(n_samples=1), dict(n_samples=0), dict(n_samples=10.5),
                                    dict(n_samples=True), dict(noise=-0.1), dict(noise=float("nan")),
                                    dict(seed=-1), dict(seed="a"), dict(seed=1.5)])
def test_moons_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        make_moons(**kwargs)


def test_moons_error_message_names_the_argument():
    with pytest.raises(ValueError, match="n_samples must be an integer >= 2"):
        make_moons(n_samples=1)
    with pytest.raises(ValueError, match="noise"):
        make_moons(noise=-1)


# --- make_blobs ----------------------------------------------------------------------------

def test_blobs_shapes_labels_and_counts():
    X, y = make_blobs(n_samples=301, centers=3, n_features=4, seed=0)
    assert X.shape == (301, 4) and X.dtype == np.float64
    assert y.dtype == np.int64
    assert [int((y == j).sum()) for j in range(3)] == [101, 100, 100]


def test_blobs_deterministic_by_seed():
    a = make_blobs(seed=5)
    b = make_blobs(seed=5)
    c = make_blobs(seed=6)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_blobs_given_centers_and_stds():
    centers = np.array([[0.0, 0.0], [10.0, -10.0]])
    X, y = make_blobs(n_samples=4000, centers=centers, cluster_std=[0.5, 2.0], seed=1)
    for j, std in enumerate([0.5, 2.0]):
        pts = X[y == j]
        np.testing.assert_allclose(pts.mean(axis=0), centers[j], atol=0.15)
        np.testing.assert_allclose(pts.std(axis=0), std, rtol=0.08)


def test_blobs_random_centers_lie_in_the_box():
    X, y = make_blobs(n_samples=3000, centers=4, cluster_std=0.01, seed=2, center_box=(-1.0, 1.0))
    for j in range(4):
        m = X[y == j].mean(axis=0)
        assert np.all(np.abs(m) <= 1.0 + 0.01)


@pytest.mark.parametrize("kwargs", [dict(n_samples=0), dict(centers=0), dict(n_features=0),
                                    dict(cluster_std=-1.0), dict(centers=[1.0, 2.0]),
                                    dict(centers=[[0.0, 0.0]], cluster_std=[1.0, 2.0]),
                                    dict(centers="abc"), dict(center_box=(1.0, -1.0))])
def test_blobs_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        make_blobs(**kwargs)


# --- make_spiral ---------------------------------------------------------------------------

def test_spiral_shapes_labels_counts():
    X, y = make_spiral(n_samples=300, n_classes=3, noise=0.2, seed=0)
    assert X.shape == (300, 2) and y.dtype == np.int64
    assert [int((y == j).sum()) for j in range(3)] == [100, 100, 100]
    assert np.all(np.hypot(X[:, 0], X[:, 1]) <= 1.0 + 1e-15)
    X, y = make_spiral(n_samples=10, n_classes=4)
    assert [int((y == j).sum()) for j in range(4)] == [3, 3, 2, 2]


def test_spiral_is_the_cs231n_construction_without_noise():
    N = 50
    X, y = make_spiral(n_samples=2 * N, n_classes=2, noise=0.0, shuffle=False)
    for j in range(2):
        r = np.linspace(0.0, 1.0, N)
        t = np.linspace(4.0 * j, 4.0 * (j + 1), N)
        np.testing.assert_allclose(X[j * N:(j + 1) * N], np.c_[r * np.sin(t), r * np.cos(t)])
        assert np.all(y[j * N:(j + 1) * N] == j)


def test_spiral_deterministic_by_seed():
    a, b, c = make_spiral(seed=1), make_spiral(seed=1), make_spiral(seed=2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("kwargs", [dict(n_classes=0), dict(n_samples=2, n_classes=3),
                                    dict(noise=-0.2), dict(seed="x")])
def test_spiral_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        make_spiral(**kwargs)
