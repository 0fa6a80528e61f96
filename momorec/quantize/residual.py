"""Residual k-means (RQ-KMeans, as in TIGER / OneRec): level l clusters what levels < l left over.

The driver side of a sharded fit. Rows stay in the shards of a `ShardPool`; the driver reduces
statistics and sends centroids back:

  1. projection: mean (pass 1) and, with PCA, the centred scatter (pass 2, on a seeded sample of
     at most pca_max_rows rows) -> `pca.fit_projection`; each shard projects its rows (the level-0
     residual).
  2. a seeded sample of rows (K x max_points_per_centroid) that the Lloyd iterations run on.
  3. per level l with K_l codes: seed K_l centroids (k-means++ or random) from sampled rows gathered
     to the driver; `iterations` x [shards assign sampled rows (nearest, or capacity-constrained
     when balanced) and return per-centroid sums/counts -> driver updates centroids, splitting
     empty clusters]; then every row of every shard is assigned and its residual updated.

Only sums and counts cross the wire, so the same code is the single-process fit (LocalPool with one
shard) and the distributed one (RayPool); their results agree up to float summation order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from momorec.quantize.codebook import Codebook
from momorec.quantize.kmeans import kmeans_plus_plus, random_init, update_centroids
from momorec.quantize.pca import fit_projection
from momorec.quantize.shards import LocalPool, ShardPool

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (level, iteration) after each Lloyd iteration


@dataclass(frozen=True)
class FitParams:
    """What decides a fit (see QuantizeConfig for each field's meaning)."""

    codes_per_level: tuple[int, ...]
    iterations: int = 20
    pca_dim: int | None = None
    pca_whiten: bool = False
    pca_max_rows: int | None = 131_072
    init: str = "kmeans++"
    init_points_per_centroid: int = 16
    max_points_per_centroid: int | None = 256
    balanced: bool = False
    balance_slack: float = 1.0
    seed: int = 0


@dataclass
class Coded:
    """Per-row results of a fit or an encode, in shard order.

    codes (n, L) int32; sq_err (n, L) float64: ||residual||^2 after each level (reduced space);
    sq_norm (n,): ||projected row||^2, the level-0 residual; sq_norm_input (n,): ||x - mean||^2 in
    the input space (differs from sq_norm by what PCA dropped).
    """

    codes: np.ndarray
    sq_err: np.ndarray
    sq_norm: np.ndarray
    sq_norm_input: np.ndarray

    @property
    def residual_norm(self) -> np.ndarray:
        """Per-row relative reconstruction error ||x - x_hat|| / ||x|| (reduced space), (n,) float32."""
        final = self.sq_err[:, -1] if self.sq_err.shape[1] else self.sq_norm
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(self.sq_norm > 0, np.sqrt(final / self.sq_norm), 0.0)
        return ratio.astype(np.float32)

    def rel_error(self) -> float:
        """Sum ||x - x_hat||^2 / sum ||x||^2 over the rows after the last level (reduced space)."""
        total = float(self.sq_norm.sum())
        final = float(self.sq_err[:, -1].sum()) if self.sq_err.shape[1] else total
        return final / total if total > 0 else 0.0


@dataclass
class FitOutput:
    codebook: Codebook
    coded: Coded
    history: list[list[float]] = field(default_factory=list)  # mean sampled sq. distance per iteration
    reseeded: list[int] = field(default_factory=list)  # empty clusters re-seeded per level


def _split_by_shard(global_rows: np.ndarray, offsets: np.ndarray) -> list[tuple[np.ndarray]]:
    """Sorted global row indices -> per-shard local indices (as 1-tuples of call arguments)."""
    cuts = np.searchsorted(global_rows, offsets)
    return [(global_rows[cuts[i] : cuts[i + 1]] - offsets[i],) for i in range(len(offsets) - 1)]


def _gather(pool: ShardPool) -> Coded:
    parts = pool.map("outputs")
    return Coded(*(np.concatenate([p[key] for p in parts]) for key in ("codes", "sq_err", "sq_norm", "sq_norm_input")))


def fit_residual(pool: ShardPool, params: FitParams, progress: Progress | None = None) -> FitOutput:
    """Fit the projection and L levels of residual codebooks over the pool's shards.

    Raises ValueError on empty input or when some K_l exceeds the number of rows.
    """
    sizes = [int(s) for s in pool.map("n_rows")]
    n = sum(sizes)
    if n == 0:
        raise ValueError("quantize: no rows to fit (empty input)")
    ks = [int(k) for k in params.codes_per_level]
    if max(ks) > n:
        raise ValueError(f"quantize: K={max(ks)} codes per level but only {n} rows to fit; lower `codes`")
    rng = np.random.default_rng(params.seed)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    # 1. projection: mean, then (PCA only) the centred scatter, of a row sample when n is large
    mean = sum(s for _, s in pool.map("row_sum")) / n
    scatter, scatter_rows = None, n
    if params.pca_dim is not None:
        if params.pca_max_rows is None or n <= params.pca_max_rows:
            scatter = sum(pool.map("centred_scatter", mean))
        else:
            rows = np.sort(rng.choice(n, size=params.pca_max_rows, replace=False))
            scatter, scatter_rows = (
                sum(pool.each("centred_scatter", [(mean, *a) for a in _split_by_shard(rows, offsets)])),
                rows.size,
            )
    projection = fit_projection(scatter_rows, mean, scatter, params.pca_dim, params.pca_whiten)
    pool.map("project", projection)

    # 2. the rows the Lloyd iterations run on
    m = n if params.max_points_per_centroid is None else min(n, params.max_points_per_centroid * max(ks))
    sample = np.arange(n, dtype=np.int64) if m == n else np.sort(rng.choice(n, size=m, replace=False))
    pool.each("set_sample", _split_by_shard(sample, offsets))

    # 3. levels
    dim = projection.output_dim
    centroids = np.zeros((len(ks), max(ks), dim), np.float32)
    history: list[list[float]] = []
    reseeded: list[int] = []
    for level, k in enumerate(ks):
        init_m = min(m, max(k, params.init_points_per_centroid * k))
        init_rows = sample if init_m == m else np.sort(rng.choice(sample, size=init_m, replace=False))
        seeds = np.concatenate(pool.each("rows", _split_by_shard(init_rows, offsets)))
        c = kmeans_plus_plus(seeds, k, rng) if params.init == "kmeans++" else random_init(seeds, k, rng)
        slack = params.balance_slack if params.balanced else None
        level_history, level_reseeded = [], 0
        for iteration in range(params.iterations):
            parts = pool.map("lloyd_stats", c, slack)
            sums = sum(p[0] for p in parts)
            counts = sum(p[1] for p in parts)
            mean_sq = sum(p[2] for p in parts) / m
            c, empty = update_centroids(c, sums, counts, mean_sq)
            level_history.append(mean_sq)
            level_reseeded += empty
            if progress is not None:
                progress(level, iteration)
        pool.map("commit_level", c, slack)
        centroids[level, :k] = c
        history.append(level_history)
        reseeded.append(level_reseeded)
        log.info("level %d: K=%d, mean sq. distance %.4g -> %.4g", level, k, level_history[0], level_history[-1])

    coded = _gather(pool)
    codebook = Codebook(centroids, np.asarray(ks, np.int64), projection, meta={"fit_rel_error": coded.rel_error()})
    return FitOutput(codebook, coded, history, reseeded)


def encode_pool(pool: ShardPool, codebook: Codebook) -> Coded:
    """Codes of the pool's rows under a frozen codebook: nearest centroid, level by level.

    The same passes as an unbalanced fit's commit, so encoding the fit rows gives their fit codes.
    """
    pool.map("project", codebook.projection)
    for level in range(codebook.levels):
        pool.map("commit_level", codebook.level(level))
    return _gather(pool)


def encode(codebook: Codebook, x: np.ndarray) -> Coded:
    """Codes of rows x (n, D) float32 under a frozen codebook, single process."""
    if x.ndim != 2 or x.shape[1] != codebook.projection.input_dim:
        raise ValueError(f"encode: rows of dim {codebook.projection.input_dim} expected, got shape {x.shape}")
    return encode_pool(LocalPool.from_array(x), codebook)


def decode(codebook: Codebook, codes: np.ndarray, to_input: bool = False) -> np.ndarray:
    """Sum of the chosen centroids: (n, L') codes -> (n, d) reduced vectors (or (n, D) with to_input).

    Only the first L' <= L levels are used, so decode(codes[:, :l]) is the level-l reconstruction;
    a uniqueness column beyond L is ignored.
    """
    used = min(codes.shape[1], codebook.levels)
    z = np.zeros((codes.shape[0], codebook.dim), np.float32)
    for level in range(used):
        z += codebook.centroids[level, codes[:, level]]
    return codebook.projection.invert(z) if to_input else z
