"""Pure math: nearest centroid, k-means pieces, PCA, metrics, uniqueness — no Ray, no tables."""

from __future__ import annotations

import numpy as np
import pytest

from momorec.quantize.kmeans import (
    balanced_assign,
    kmeans_plus_plus,
    nearest,
    random_init,
    segment_sums,
    update_centroids,
)
from momorec.quantize.metrics import append_uniqueness_level, collision_rate, level_metrics, perplexity
from momorec.quantize.pca import centred_scatter, fit_projection, row_sum


def test_nearest_hand_checked():
    centroids = np.array([[0, 0], [10, 0], [0, 10]], np.float32)
    x = np.array([[1, 1], [9, 1], [1, 8], [6, 0]], np.float32)
    codes, dist = nearest(x, centroids)
    assert codes.tolist() == [0, 1, 2, 1]
    np.testing.assert_allclose(dist, [2, 2, 5, 16])


def test_nearest_top_k_sorted():
    centroids = np.array([[0, 0], [10, 0], [0, 10]], np.float32)
    codes, dist = nearest(np.array([[1, 1]], np.float32), centroids, k=3)
    assert codes.tolist() == [[0, 1, 2]]
    np.testing.assert_allclose(dist, [[2, 82, 82]])


def test_balanced_assign_respects_capacity_closest_first():
    centroids = np.array([[0.0], [10.0]], np.float32)
    x = np.array([[0.0], [1.0], [2.0], [3.0]], np.float32)  # all nearer to 0; capacity 2 each
    codes, dist = balanced_assign(x, centroids, slack=1.0)
    assert codes.tolist() == [0, 0, 1, 1]  # the two closest keep centroid 0, the others move
    np.testing.assert_allclose(dist, [0, 1, 64, 49])
    loose, _ = balanced_assign(x, centroids, slack=2.0)
    assert loose.tolist() == [0, 0, 0, 0]


def test_balanced_assign_falls_back_beyond_candidates():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    centroids = np.vstack([np.zeros((1, 4)), rng.normal(size=(29, 4)) * 20 + 50]).astype(np.float32)
    codes, _ = balanced_assign(x, centroids, slack=1.0, candidates=2)  # 2 rounds cannot place 300 rows
    assert (codes >= 0).all()
    assert np.bincount(codes, minlength=30).max() <= 10


def test_segment_sums():
    x = np.array([[1, 2], [3, 4], [5, 6]], np.float32)
    sums, counts = segment_sums(x, np.array([2, 0, 2]), 3)
    np.testing.assert_array_equal(sums, [[3, 4], [0, 0], [6, 8]])
    assert counts.tolist() == [1, 0, 2] and sums.dtype == np.float64


def test_update_centroids_splits_largest_cluster_into_empty_ones():
    old = np.array([[0, 0], [5, 5], [9, 9]], np.float32)
    sums = np.array([[10.0, 20.0], [0, 0], [9, 9]])
    counts = np.array([10, 0, 1])
    new, reseeded = update_centroids(old, sums, counts, mean_sq_dist=1.0)
    assert reseeded == 1
    np.testing.assert_allclose(new[2], [9, 9])
    np.testing.assert_allclose((new[0] + new[1]) / 2, [1, 2], atol=1e-6)  # the halves straddle the mean
    assert not np.allclose(new[0], new[1])


def test_inits_pick_distinct_rows_deterministically(blobs):
    a = kmeans_plus_plus(blobs, 20, np.random.default_rng(1))
    b = kmeans_plus_plus(blobs, 20, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a, axis=0)) == 20
    assert len(np.unique(random_init(blobs, 20, np.random.default_rng(1)), axis=0)) == 20
    with pytest.raises(ValueError):
        kmeans_plus_plus(blobs[:3], 4, np.random.default_rng(0))


def test_kmeans_plus_plus_spreads_over_separated_clusters(make_clustered):
    x = make_clustered(2000, 8, 5, seed=3, spread=50.0)
    seeds = kmeans_plus_plus(x, 5, np.random.default_rng(0))
    codes, _ = nearest(x, seeds)
    assert len(np.unique(codes)) == 5


def test_pca_matches_numpy_svd():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(500, 6)) * [5, 4, 3, 2, 1, 0.5] + 100).astype(np.float32)  # big common mean
    parts = [x[:200], x[200:]]  # two shards
    n, total = map(sum, zip(*(row_sum(p) for p in parts), strict=True))
    mean = total / n
    proj = fit_projection(n, mean, sum(centred_scatter(p, mean) for p in parts), dim=3)
    centred = x.astype(np.float64) - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    np.testing.assert_allclose(np.abs(np.sum(proj.components * vt[:3], axis=1)), 1.0, atol=1e-4)
    np.testing.assert_allclose(proj.explained_variance, (s[:3] ** 2).sum() / (s**2).sum(), rtol=1e-4)
    z = proj.apply(x)
    assert z.shape == (500, 3) and z.dtype == np.float32
    assert np.abs(z.mean(axis=0)).max() < 1e-3
    with pytest.raises(ValueError):
        fit_projection(n, mean, None, dim=7)


def test_whitened_pca_gives_unit_variance_and_inverts():
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(2000, 5)) * [50, 10, 3, 1, 0.2] + 7).astype(np.float32)
    n, total = row_sum(x)
    mean = total / n
    proj = fit_projection(n, mean, centred_scatter(x, mean), dim=5, whiten=True)
    z = proj.apply(x)
    np.testing.assert_allclose(z.std(axis=0, ddof=1), 1.0, rtol=1e-3)
    np.testing.assert_allclose(proj.invert(z), x, rtol=1e-3, atol=1e-3)  # all 5 components kept
    with pytest.raises(ValueError, match="needs PCA"):
        fit_projection(n, mean, None, dim=None, whiten=True)


def test_metrics_hand_computed():
    codes = np.array([[0, 1], [0, 2], [1, 1], [1, 1]])
    sq_norm = np.array([4.0, 4.0, 4.0, 4.0])
    sq_err = np.array([[2.0, 1.0], [2.0, 1.0], [2.0, 0.0], [2.0, 0.0]])
    m0, m1 = level_metrics(codes, sq_err, sq_norm, [4, 3], sq_norm_input=np.full(4, 5.0))
    assert m0["rel_error"] == pytest.approx(8 / 16) and m1["rel_error"] == pytest.approx(2 / 16)
    assert m0["rel_error_input"] == pytest.approx((4 + 8) / 20)  # PCA dropped 4 of 20
    assert m0["utilization"] == 0.5 and m1["utilization"] == pytest.approx(2 / 3)
    assert m0["perplexity"] == pytest.approx(2.0)
    assert m1["perplexity"] == pytest.approx(np.exp(-(0.75 * np.log(0.75) + 0.25 * np.log(0.25))))
    assert m0["collision_rate"] == pytest.approx(1 - 2 / 4) and m1["collision_rate"] == pytest.approx(1 - 3 / 4)
    assert perplexity(np.zeros(5, int), 8) == pytest.approx(1.0)
    assert collision_rate(np.zeros((0, 2), int)) == 0.0


def test_uniqueness_level_orders_collisions_by_id():
    codes = np.array([[1, 2], [1, 2], [0, 0], [1, 2]], np.int32)
    out = append_uniqueness_level(codes, np.array([30, 10, 5, 20]))
    assert out[:, -1].tolist() == [2, 0, 0, 1]
    assert collision_rate(out) == 0.0
    np.testing.assert_array_equal(out[:, :2], codes)
