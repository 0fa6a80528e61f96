"""The k-means building blocks, pure numpy + faiss: nearest centroid, initialisation, centroid update.

Lloyd's algorithm (Lloyd 1982) split so that it shards: `nearest` / `balanced_assign` and
`segment_sums` run where the rows are; `update_centroids` runs on the driver from the reduced sums
and counts (the sharded Lloyd of e.g. Spark MLlib / faiss contrib). Empty clusters are re-seeded by
splitting the largest one (faiss `split_clusters`), which needs only the counts, not the rows.
"""

from __future__ import annotations

import os

# OpenMP threads that spin while waiting make faiss 5-8x slower when cores are shared (2-core CI,
# Ray actors beside each other); passive waiting costs little. Read once, when OpenMP loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

SPLIT_EPS = 1.0 / 1024.0  # relative perturbation of a split centroid (faiss uses the same EPS)


def nearest(x: np.ndarray, centroids: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest centroids per row by exact L2 search (faiss IndexFlatL2).

    x: (n, d) float32; centroids: (K, d) float32. Returns codes (n,) int32 and squared distances
    (n,) float32 when k == 1, else (n, k) each, nearest first.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    if x.shape[0] == 0:
        return np.zeros((0,) if k == 1 else (0, k), np.int32), np.zeros((0,) if k == 1 else (0, k), np.float32)
    dist, idx = index.search(x, k)
    dist, idx = np.maximum(dist, 0.0), idx.astype(np.int32)
    return (idx[:, 0], dist[:, 0]) if k == 1 else (idx, dist)


def _accept(codes, dist, free, wanted, wanted_dist, room):
    """Each cluster accepts its closest proposers (ties: lower row) up to its room; updates in place."""
    rows = np.flatnonzero(free)
    order = np.lexsort((rows, wanted_dist, wanted))  # by cluster, then distance, then row
    rows, clusters, dists = rows[order], wanted[order], wanted_dist[order]
    first = np.r_[True, clusters[1:] != clusters[:-1]] if rows.size else np.zeros(0, bool)
    rank = np.arange(rows.size) - np.maximum.accumulate(np.where(first, np.arange(rows.size), 0))
    ok = rank < room[clusters]
    codes[rows[ok]], dist[rows[ok]] = clusters[ok], dists[ok]
    free[rows[ok]] = False
    np.subtract.at(room, clusters[ok], 1)


def balanced_assign(
    x: np.ndarray, centroids: np.ndarray, slack: float = 1.0, candidates: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """Capacity-constrained assignment: no code takes more than ceil(slack * n / K) rows.

    Greedy rounds of proposals (the balanced k-means of OneRec's RQ-KMeans, made vectorised): in
    round r every unplaced row proposes to its r-th nearest centroid and each centroid accepts its
    closest proposers while it has room. Rows left after `candidates` rounds go, again closest
    first, to the nearest centroid that still has room. Deterministic; ties go to the lower row.
    Returns codes (n,) int32 and squared distances (n,) float32, like `nearest`.
    """
    n, k = x.shape[0], centroids.shape[0]
    codes = np.full(n, -1, np.int32)
    dist = np.zeros(n, np.float32)
    if n == 0:
        return codes, dist
    room = np.full(k, int(np.ceil(slack * n / k)), np.int64)
    free = np.ones(n, bool)
    cand_codes, cand_dist = nearest(x, centroids, min(candidates, k))
    for r in range(cand_codes.shape[1]):
        if not free.any():
            break
        _accept(codes, dist, free, cand_codes[free, r], cand_dist[free, r], room)
    while free.any():  # few rows: search only the centroids that still have room
        open_ = np.flatnonzero(room > 0)
        local, d = nearest(x[free], centroids[open_])
        _accept(codes, dist, free, open_[local].astype(np.int32), d, room)
    return codes, dist


def segment_sums(x: np.ndarray, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-centroid sums (k, d) float64 and counts (k,) int64 of the rows of x grouped by code.

    Pass x as float64 when calling repeatedly on the same rows, to skip a conversion per call.
    """
    n = x.shape[0]
    counts = np.bincount(codes, minlength=k).astype(np.int64)
    if n == 0:
        return np.zeros((k, x.shape[1]), np.float64), counts
    onehot = sp.csr_matrix((np.ones(n, np.float64), (codes, np.arange(n))), shape=(k, n))
    return np.asarray(onehot @ x.astype(np.float64, copy=False)), counts


def kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): each next centre drawn with prob. ~ D(x)^2.

    x: (m, d) float32 with m >= k. Returns (k, d) float32. When every remaining distance is 0
    (duplicate points) the next centre is drawn uniformly; the Lloyd update then splits empties.
    """
    m = x.shape[0]
    if k > m:
        raise ValueError(f"k-means++: k={k} centres from only {m} points")
    with threadpool_limits(limits=1, user_api="blas"):  # k small GEMVs: BLAS threads only add sync cost
        return _kmeans_plus_plus(x, k, rng)


def _kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    m = x.shape[0]
    x64 = x.astype(np.float64)
    sq = np.einsum("ij,ij->i", x64, x64)
    chosen = [int(rng.integers(m))]
    d2 = np.maximum(sq - 2.0 * x64 @ x64[chosen[0]] + sq[chosen[0]], 0.0)
    for _ in range(1, k):
        total = d2.sum()
        if total > 0:
            pick = int(np.searchsorted(np.cumsum(d2), rng.random() * total, side="right"))
            pick = min(pick, m - 1)
        else:
            pick = int(rng.integers(m))
        chosen.append(pick)
        d2 = np.minimum(d2, np.maximum(sq - 2.0 * x64 @ x64[pick] + sq[pick], 0.0))
    return x[np.asarray(chosen)].astype(np.float32)


def random_init(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k distinct rows of x drawn uniformly (faiss's default seeding). Returns (k, d) float32."""
    if k > x.shape[0]:
        raise ValueError(f"random init: k={k} centres from only {x.shape[0]} points")
    return x[np.sort(rng.choice(x.shape[0], size=k, replace=False))].astype(np.float32)


def update_centroids(
    centroids: np.ndarray, sums: np.ndarray, counts: np.ndarray, mean_sq_dist: float
) -> tuple[np.ndarray, int]:
    """New centroids = sums / counts; every empty cluster takes half of the currently largest one.

    centroids: (k, d) float32 (the previous ones); sums (k, d) float64; counts (k,).
    The split moves the two halves apart by a small deterministic +-pattern, scaled by the cluster
    spread, so the next assignment separates them. Returns (new centroids float32, clusters re-seeded).
    """
    k, d = centroids.shape
    counts = counts.astype(np.float64)
    new = centroids.astype(np.float64)
    full = counts > 0
    new[full] = sums[full] / counts[full, None]
    empty = np.flatnonzero(~full)
    signs = np.where(np.arange(d) % 2 == 0, 1.0, -1.0)
    spread = np.sqrt(max(mean_sq_dist, 0.0) / max(d, 1))
    for ci in empty:
        cj = int(np.argmax(counts))  # ties -> lowest index: deterministic
        if counts[cj] <= 1:
            break  # nothing left to split (fewer rows than centroids); keep the old position
        delta = SPLIT_EPS * (np.abs(new[cj]) + spread) * signs
        new[ci] = new[cj] + delta
        new[cj] = new[cj] - delta
        counts[ci] = counts[cj] / 2.0
        counts[cj] -= counts[ci]
    return new.astype(np.float32), int(len(empty))
