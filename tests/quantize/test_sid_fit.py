"""Residual k-means fit, encode/decode, frozen assignment and drift — single process, no Ray."""

from __future__ import annotations

import numpy as np
import pytest

from momorec.quantize.assign import assign
from momorec.quantize.codebook import load_codebook, save_codebook
from momorec.quantize.inputs import embeddings_from_arrow
from momorec.quantize.metrics import level_metrics
from momorec.quantize.residual import FitParams, decode, encode, fit_residual
from momorec.quantize.shards import LocalPool


def fit(x, **kw):
    kw.setdefault("codes_per_level", (8, 8))
    kw.setdefault("seed", 0)
    return fit_residual(LocalPool.from_array(x, kw.pop("shards", 1)), FitParams(**kw))


def test_exact_on_hand_checkable_data():
    """4 corners (+-10, +-10), each with offsets +-(1, 0): level 0 finds the corners, level 1 the offsets."""
    corners = np.array([[10, 10], [10, -10], [-10, 10], [-10, -10]], np.float32)
    offsets = np.array([[1, 0], [-1, 0]], np.float32)
    x = (corners[:, None, :] + offsets[None, :, :]).reshape(8, 2)
    out = fit(x, codes_per_level=(4, 2), iterations=5)
    book, coded = out.codebook, out.coded
    np.testing.assert_allclose(np.sort(book.centroids[0], axis=0), np.sort(corners, axis=0), atol=1e-6)
    np.testing.assert_allclose(np.sort(book.centroids[1, :2], axis=0), np.sort(offsets, axis=0), atol=1e-6)
    assert len(set(coded.codes[:, 0].tolist())) == 4
    assert (coded.codes[0::2, 0] == coded.codes[1::2, 0]).all()  # the two rows of a corner share level 0
    assert len(set(coded.codes[:, 1].tolist())) == 2
    assert (coded.codes[0::2, 1] == coded.codes[0, 1]).all()  # +1 offsets share level 1
    m0, m1 = level_metrics(coded.codes, coded.sq_err, coded.sq_norm, [4, 2])
    assert m0["rel_error"] == pytest.approx(8 / (8 * 201))  # residual 1 per row over ||x||^2 = 201
    assert m1["rel_error"] == pytest.approx(0.0, abs=1e-12)
    assert m0["collision_rate"] == 0.5 and m1["collision_rate"] == 0.0
    assert m0["perplexity"] == pytest.approx(4.0) and m0["utilization"] == 1.0
    np.testing.assert_allclose(decode(book, coded.codes, to_input=True), x, atol=1e-5)


def test_same_seed_same_ids_other_seed_other_codebook(blobs):
    a, b = fit(blobs, seed=3), fit(blobs, seed=3)
    np.testing.assert_array_equal(a.coded.codes, b.coded.codes)
    np.testing.assert_array_equal(a.codebook.centroids, b.codebook.centroids)
    assert a.codebook.version() == b.codebook.version()
    c = fit(blobs, seed=4)
    assert not np.array_equal(a.codebook.centroids, c.codebook.centroids)


def test_error_falls_with_every_level(blobs):
    out = fit(blobs, codes_per_level=(16, 16, 16, 16), pca_dim=8)
    errors = [m["rel_error"] for m in level_metrics(out.coded.codes, out.coded.sq_err, out.coded.sq_norm, [16] * 4)]
    assert all(later < earlier for earlier, later in zip([1.0, *errors], errors, strict=False))
    for history in out.history:  # Lloyd never raises the sampled distortion
        assert history[-1] <= history[0] + 1e-6
    # decode of the first l levels is the level-l reconstruction: its error equals the recorded one
    z = out.codebook.projection.apply(blobs)
    for level in range(4):
        recon = decode(out.codebook, out.coded.codes[:, : level + 1])
        np.testing.assert_allclose(((z - recon) ** 2).sum(axis=1), out.coded.sq_err[:, level], rtol=1e-3, atol=1e-3)


def test_sharded_in_process_equals_one_shard(blobs):
    one = fit(blobs, pca_dim=8, max_points_per_centroid=64)
    three = fit(blobs, pca_dim=8, max_points_per_centroid=64, shards=3)
    np.testing.assert_array_equal(one.coded.codes, three.coded.codes)
    np.testing.assert_allclose(one.codebook.centroids, three.codebook.centroids, atol=1e-5)


def test_encode_with_frozen_codebook_reproduces_fit_codes(blobs):
    out = fit(blobs, pca_dim=8)
    np.testing.assert_array_equal(encode(out.codebook, blobs).codes, out.coded.codes)


def test_assign_new_points_oracle_and_drift(make_clustered, tmp_path):
    x = make_clustered(4000, 12, 10, seed=11)
    old, new = x[:3000], x[3000:]
    out = fit(old, codes_per_level=(16, 8), pca_dim=6)
    folder = save_codebook(out.codebook, str(tmp_path / "cb"))
    book = load_codebook(folder)
    result = assign(book, new)
    # oracle: brute-force nearest centroid level by level in numpy
    residual = book.projection.apply(new).astype(np.float64)
    for level in range(2):
        c = book.centroids[level, : book.codes_per_level[level]].astype(np.float64)
        expect = ((residual[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
        np.testing.assert_array_equal(result.codes[:, level], expect)
        residual -= c[expect]
    assert 0.7 < result.drift < 1.4 and not result.needs_refit  # same distribution
    moved = assign(book, new * 3 + 5)
    assert moved.drift > 1.5 and moved.needs_refit
    assert result.residual_norm.shape == (1000,) and (result.residual_norm >= 0).all()


def test_whitened_codebook_round_trips_and_gets_its_own_version(make_clustered, tmp_path):
    x = make_clustered(1500, 12, 10, seed=5)
    plain = fit(x, pca_dim=6)
    white = fit(x, pca_dim=6, pca_whiten=True)
    assert plain.codebook.projection.scale is None and white.codebook.projection.scale.shape == (6,)
    assert plain.codebook.version() != white.codebook.version()
    book = load_codebook(save_codebook(white.codebook, str(tmp_path / "cb")))
    np.testing.assert_array_equal(book.projection.scale, white.codebook.projection.scale)
    np.testing.assert_array_equal(encode(book, x).codes, white.coded.codes)
    assert book.version() == white.codebook.version()


def test_balanced_assignment_evens_out_codes():
    rng = np.random.default_rng(0)
    weights = 0.6 ** np.arange(10)
    centres = rng.normal(size=(10, 8)) * 3
    x = (centres[rng.choice(10, 5000, p=weights / weights.sum())] + rng.normal(size=(5000, 8))).astype(np.float32)
    plain = fit(x, codes_per_level=(16,), iterations=20)
    even = fit(x, codes_per_level=(16,), iterations=20, balanced=True, balance_slack=1.1)
    m_plain = level_metrics(plain.coded.codes, plain.coded.sq_err, plain.coded.sq_norm, [16])[0]
    m_even = level_metrics(even.coded.codes, even.coded.sq_err, even.coded.sq_norm, [16])[0]
    assert np.bincount(even.coded.codes[:, 0], minlength=16).max() <= int(np.ceil(1.1 * 5000 / 16))
    assert m_even["perplexity"] > 15.5 > m_plain["perplexity"]
    assert m_even["rel_error"] < 1.5 * m_plain["rel_error"]  # balance costs some, not all, distortion


def test_per_level_codes_and_padding(blobs):
    out = fit(blobs, codes_per_level=(12, 4))
    assert out.codebook.centroids.shape == (2, 12, 16)
    assert out.coded.codes[:, 1].max() < 4
    np.testing.assert_array_equal(out.codebook.centroids[1, 4:], 0)


def test_bad_input_is_a_clear_error(blobs):
    with pytest.raises(ValueError, match="empty"):
        fit(np.zeros((0, 4), np.float32))
    with pytest.raises(ValueError, match="K=9"):
        fit(blobs[:8], codes_per_level=(9,))
    with pytest.raises(ValueError, match="pca_dim"):
        fit(blobs, pca_dim=17)
    out = fit(blobs)
    with pytest.raises(ValueError, match="dim"):
        encode(out.codebook, blobs[:, :5])
    with pytest.raises(ValueError, match="empty"):
        assign(out.codebook, blobs[:0])


def test_duplicate_rows_fewer_distinct_than_k_still_fit():
    x = np.repeat(np.eye(3, dtype=np.float32), 10, axis=0)  # 30 rows, 3 distinct
    out = fit(x, codes_per_level=(5,), iterations=4)
    assert out.coded.codes.shape == (30, 1)
    assert out.coded.rel_error() == pytest.approx(0.0, abs=1e-5)  # split centroids sit EPS apart


def test_embeddings_validation_counts_every_reject():
    import pyarrow as pa

    good = [0.1, 0.2, 0.3]
    table = pa.table(
        {
            "item_id": pa.array([1, 2, 3, 4, 5, 6, 7, None, 1], pa.int64()),
            "status": ["ok", "ok", "failed", "ok", "ok", "ok", None, "ok", "ok"],
            "embedding": pa.array(
                [good, good, good, [0.1, 0.2], [float("nan"), 0, 0], None, good, good, [9.0, 9.0, 9.0]],
                pa.list_(pa.float32()),
            ),
        }
    )
    emb = embeddings_from_arrow(table, "item_id")
    assert emb.ids.tolist() == [1, 2]
    np.testing.assert_allclose(emb.vectors, [good, good])  # the first row of id 1 wins
    assert emb.rejects == {
        "status_not_ok": 2,
        "null_id": 1,
        "null_embedding": 1,
        "wrong_dim": 1,
        "non_finite": 1,
        "duplicate_id": 1,
    }
    assert emb.rows_in == len(emb.ids) + emb.rows_rejected
    assert emb.rejected_ids["non_finite"] == [5]
    strict = embeddings_from_arrow(table, "item_id", expected_dim=2)
    assert strict.ids.tolist() == [4] and strict.rejects["wrong_dim"] == 4


def test_pca_from_a_row_sample_is_close_to_full_pca(make_clustered):
    x = make_clustered(4000, 10, 8, seed=4)
    full = fit(x, codes_per_level=(4,), pca_dim=3, iterations=2).codebook.projection
    sampled = fit(x, codes_per_level=(4,), pca_dim=3, iterations=2, pca_max_rows=1000).codebook.projection
    np.testing.assert_array_equal(full.mean, sampled.mean)  # the mean is always over every row
    overlap = full.components @ sampled.components.T  # singular values = cosines of the principal angles
    assert np.linalg.svd(overlap, compute_uv=False).min() > 0.95
    three = fit_residual(LocalPool.from_array(x, 3), FitParams((4,), iterations=2, pca_dim=3, pca_max_rows=1000))
    np.testing.assert_allclose(three.codebook.projection.components, sampled.components, atol=1e-6)


def test_the_fit_depends_on_the_rows_not_on_their_file_order(blobs):
    """A resumed or incrementally written table lays its rows out differently; its codes must not change."""
    import pyarrow as pa

    ids = np.arange(blobs.shape[0], dtype=np.int64) * 7 + 3
    table = pa.table({"item_id": ids, "status": ["ok"] * len(ids), "embedding": list(blobs)})
    shuffled = table.take(np.random.default_rng(1).permutation(len(ids)))
    a, b = embeddings_from_arrow(table, "item_id"), embeddings_from_arrow(shuffled, "item_id")
    assert a.ids.tolist() == sorted(ids.tolist()) == b.ids.tolist()
    np.testing.assert_array_equal(a.vectors, b.vectors)
    codes_a = fit(a.vectors, codes_per_level=(8, 8), iterations=5).coded.codes
    codes_b = fit(b.vectors, codes_per_level=(8, 8), iterations=5).coded.codes
    np.testing.assert_array_equal(codes_a, codes_b)
