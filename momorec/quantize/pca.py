"""PCA from sufficient statistics, so it can be fit over shards: two passes, mean then scatter.

Pass 1 sums rows (-> mean); pass 2 sums the centred scatter (x - mean)^T (x - mean). Centring before
the scatter avoids the cancellation of X^T X - n mu mu^T, which is large for LLM hidden states (they
share a big common direction). The components are the top eigenvectors of the covariance.

Whitening (optional) divides each component by its standard deviation, so k-means weighs every kept
direction alike. LLM hidden states are anisotropic (on Beauty's catalog embeddings the top 5 of 576
components hold 49 % of the variance), so plain PCA + k-means splits mostly along those few. On Amazon
Beauty (SmolLM2-135M catalog embeddings, 3 x 256 codes) whitening raised the share of consecutive
training purchases that share a level-1 code from 0.059 to 0.090 (pca 64) and 0.105 (pca 128);
TF-IDF codes reach 0.074 (benchmarks/semantic_id_coherence.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from momorec.quantize.blocks import CHUNK_ROWS


@dataclass(frozen=True)
class Projection:
    """x -> (x - mean) @ components.T / scale; components None means centring only (PCA off).

    mean: (D,) float32; components: (d, D) float32 with orthonormal rows, or None.
    explained_variance: fraction of the total variance the d components keep (1.0 when off).
    scale: (d,) float32 standard deviation of each component when whitened, else None.
    """

    mean: np.ndarray
    components: np.ndarray | None
    explained_variance: float = 1.0
    scale: np.ndarray | None = None

    @property
    def input_dim(self) -> int:
        return int(self.mean.shape[0])

    @property
    def output_dim(self) -> int:
        return self.input_dim if self.components is None else int(self.components.shape[0])

    def apply(self, x: np.ndarray) -> np.ndarray:
        """(n, D) -> (n, d) float32, in blocks so no (n, D) float64 temporary is made."""
        out = np.empty((x.shape[0], self.output_dim), np.float32)
        for start in range(0, x.shape[0], CHUNK_ROWS):
            block = x[start : start + CHUNK_ROWS].astype(np.float32) - self.mean
            out[start : start + CHUNK_ROWS] = block if self.components is None else block @ self.components.T
        if self.scale is not None:
            out /= self.scale
        return out

    def invert(self, z: np.ndarray) -> np.ndarray:
        """(n, d) reduced vectors back to the input space (n, D) float32 (the PCA reconstruction)."""
        if self.scale is not None:
            z = z * self.scale
        back = z if self.components is None else z @ self.components
        return (back + self.mean).astype(np.float32)


def row_sum(x: np.ndarray) -> tuple[int, np.ndarray]:
    """Pass 1 on one shard: (row count, column sums (D,) float64)."""
    return int(x.shape[0]), x.sum(axis=0, dtype=np.float64)


def centred_scatter(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Pass 2 on one shard: sum over rows of (x - mean)(x - mean)^T, (D, D) float64.

    Computed in float64 throughout (half the speed of float32 GEMM): shards then differ from one
    process only at ~1e-16, which `fit_projection` rounds away, so any sharding gives the same PCA.
    """
    dim = x.shape[1]
    scatter = np.zeros((dim, dim), np.float64)
    centre = mean.astype(np.float32).astype(np.float64)  # the float32 mean every shard subtracts
    for start in range(0, x.shape[0], CHUNK_ROWS):
        block = x[start : start + CHUNK_ROWS].astype(np.float64) - centre
        scatter += block.T @ block
    return scatter


def fit_projection(
    count: int, mean: np.ndarray, scatter: np.ndarray | None, dim: int | None, whiten: bool = False
) -> Projection:
    """The top-`dim` principal components from the reduced statistics (dim None = centring only),
    each divided by its standard deviation when `whiten`.

    Signs are fixed (largest-magnitude coordinate of each component positive) so the same data give
    the same components on any sharding.
    """
    mean32 = mean.astype(np.float32)
    if dim is None:
        if whiten:
            raise ValueError("whitening needs PCA (set pca_dim)")
        return Projection(mean32, None, 1.0)
    input_dim = mean.shape[0]
    if dim > input_dim:
        raise ValueError(f"pca_dim={dim} exceeds the embedding dimension {input_dim}")
    if scatter is None:
        raise ValueError("fit_projection: PCA needs the centred scatter")
    # Rounded to float32: sums over different shardings differ in the last float64 bits, and the
    # eigenvectors of near-equal eigenvalues would amplify that; the rounding makes them identical.
    cov = (scatter / max(count - 1, 1)).astype(np.float32).astype(np.float64)
    eigval, eigvec = np.linalg.eigh(cov)  # ascending
    order = np.argsort(eigval)[::-1][:dim]
    comps = eigvec[:, order].T  # (dim, D)
    flip = np.sign(comps[np.arange(dim), np.argmax(np.abs(comps), axis=1)])
    comps *= np.where(flip == 0, 1.0, flip)[:, None]
    total = float(np.clip(eigval, 0, None).sum())
    kept = float(np.clip(eigval[order], 0, None).sum())
    scale = None
    if whiten:
        std = np.sqrt(np.clip(eigval[order], 0, None))
        # a direction with (numerically) no variance is left unscaled rather than blown up
        scale = (
            np.where(std > std.max() * 1e-6, std, 1.0).astype(np.float32) if std.max() > 0 else np.ones(dim, np.float32)
        )
    return Projection(mean32, comps.astype(np.float32), kept / total if total > 0 else 1.0, scale)
