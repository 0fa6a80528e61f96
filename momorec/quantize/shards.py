"""Where the rows live: one shard's share of every pass, and the pools that call all shards.

The driver (`residual.fit_residual`) never touches rows; it calls shard methods by name through a
pool and reduces what they return (sums, counts, a few sampled rows). `LocalPool` calls in-process
shards; `ray_pool.RayPool` calls the same `ArrayShard` inside Ray actors. Same math, two transports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from momorec.quantize.blocks import CHUNK_ROWS, row_sq_norms
from momorec.quantize.kmeans import balanced_assign, nearest, segment_sums
from momorec.quantize.pca import Projection, centred_scatter, row_sum


def _assign(x: np.ndarray, centroids: np.ndarray, slack: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid, or (slack given) the capacity-constrained assignment of balanced mode.

    Balanced capacity is per shard (ceil(slack * shard rows / K)), so a balanced fit depends on the
    number of shards; an unbalanced one does not.
    """
    return nearest(x, centroids) if slack is None else balanced_assign(x, centroids, slack)


class ArrayShard:
    """One contiguous block of rows (n, D) float32 and its residual state across levels.

    Life cycle: row_sum / centred_scatter (PCA statistics) -> project -> set_sample ->
    per level: rows (init), lloyd_stats x iterations, commit_level -> outputs.
    """

    def __init__(self, x: np.ndarray) -> None:
        if x.ndim != 2:
            raise ValueError(f"a shard holds a (rows, dim) matrix, got shape {x.shape}")
        self._x = x  # read only (a view, or Ray's zero-copy object-store buffer); kept to re-project
        self._residual = np.zeros((0, 0), np.float32)
        self._sq_norm = np.zeros(0, np.float64)
        self._sq_norm_input = np.zeros(0, np.float64)
        self._sample_rows = np.arange(0, dtype=np.int64)
        self._sample: np.ndarray | None = None  # sampled residuals, float32 (search) ...
        self._sample64: np.ndarray | None = None  # ... and float64 (exact sums), cached per level
        self._codes: list[np.ndarray] = []
        self._sq_err: list[np.ndarray] = []

    # ---- statistics and projection ---------------------------------------------------------------
    def n_rows(self) -> int:
        return int(self._x.shape[0])

    def row_sum(self) -> tuple[int, np.ndarray]:
        return row_sum(self._x)

    def centred_scatter(self, mean: np.ndarray, local_rows: np.ndarray | None = None) -> np.ndarray:
        """The PCA scatter of all rows, or of the given (sampled) local rows."""
        return centred_scatter(self._x if local_rows is None else self._x[np.asarray(local_rows, np.int64)], mean)

    def project(self, projection: Projection) -> float:
        """Residual := projected rows (restarting the levels); returns sum ||x - mean||^2 in the input space."""
        self._residual = np.zeros((0, 0), np.float32)  # free the old residual before making the new one
        self._sq_norm_input = row_sq_norms(self._x, projection.mean)
        self._residual = projection.apply(self._x)
        self._sq_norm = row_sq_norms(self._residual)
        self._codes, self._sq_err = [], []
        self._sample = self._sample64 = None
        return float(self._sq_norm_input.sum())

    # ---- Lloyd iterations on the sampled rows -----------------------------------------------------
    def set_sample(self, local_rows: np.ndarray) -> None:
        """The rows (local indices, sorted) that the Lloyd iterations of every level run on."""
        self._sample_rows = np.asarray(local_rows, np.int64)
        self._sample = self._sample64 = None

    def rows(self, local_rows: np.ndarray) -> np.ndarray:
        """Current residuals of some rows (k-means++ seeding gathers these on the driver)."""
        return self._residual[np.asarray(local_rows, np.int64)]

    def lloyd_stats(self, centroids: np.ndarray, slack: float | None) -> tuple[np.ndarray, np.ndarray, float]:
        """Assign the sampled rows; return per-centroid sums (k, d) f64, counts (k,), sum of sq. distances."""
        if self._sample is None:
            self._sample = self._residual[self._sample_rows]
            self._sample64 = self._sample.astype(np.float64)
        codes, dist = _assign(self._sample, centroids, slack)
        sums, counts = segment_sums(self._sample64, codes, centroids.shape[0])
        return sums, counts, float(dist.sum(dtype=np.float64))

    # ---- close a level: assign every row, subtract, remember -------------------------------------
    def commit_level(self, centroids: np.ndarray, slack: float | None = None) -> tuple[np.ndarray, float]:
        """Give every row its code, subtract the centroid; return counts (k,) and sum ||residual||^2."""
        codes, _ = _assign(self._residual, centroids, slack)
        for start in range(0, codes.shape[0], CHUNK_ROWS):
            self._residual[start : start + CHUNK_ROWS] -= centroids[codes[start : start + CHUNK_ROWS]]
        sq_err = row_sq_norms(self._residual)
        self._codes.append(codes)
        self._sq_err.append(sq_err)
        self._sample = self._sample64 = None
        return np.bincount(codes, minlength=centroids.shape[0]).astype(np.int64), float(sq_err.sum())

    def outputs(self) -> dict[str, np.ndarray]:
        """codes (n, L) int32, sq_err (n, L) float64 after each level, sq_norm (n,), sq_norm_input (n,)."""
        n = self.n_rows()
        return {
            "codes": np.stack(self._codes, axis=1) if self._codes else np.zeros((n, 0), np.int32),
            "sq_err": np.stack(self._sq_err, axis=1) if self._sq_err else np.zeros((n, 0), np.float64),
            "sq_norm": self._sq_norm,
            "sq_norm_input": self._sq_norm_input,
        }


class ShardPool(Protocol):
    """Calls one shard method on every shard, in shard order (the injected transport)."""

    def map(self, method: str, *args: Any) -> list[Any]:
        """The same arguments to every shard."""
        ...

    def each(self, method: str, args_per_shard: Sequence[tuple]) -> list[Any]:
        """Shard i gets args_per_shard[i]."""
        ...


class LocalPool:
    """Shards in this process: the single-process path (and the unit tests)."""

    def __init__(self, shards: Sequence[ArrayShard]) -> None:
        self.shards = list(shards)

    @classmethod
    def from_array(cls, x: np.ndarray, num_shards: int = 1) -> LocalPool:
        """Split rows into `num_shards` contiguous blocks (views, no copy)."""
        bounds = np.linspace(0, x.shape[0], num_shards + 1).astype(int)
        return cls([ArrayShard(x[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)])

    def map(self, method: str, *args: Any) -> list[Any]:
        return [getattr(shard, method)(*args) for shard in self.shards]

    def each(self, method: str, args_per_shard: Sequence[tuple]) -> list[Any]:
        return [getattr(shard, method)(*args) for shard, args in zip(self.shards, args_per_shard, strict=True)]
