"""Synthetic embeddings with known structure for the semantic-ID tests."""

from __future__ import annotations

import numpy as np
import pytest


def clustered(n: int, dim: int, clusters: int, seed: int, spread: float = 6.0) -> np.ndarray:
    """n rows (n, dim) float32 around `clusters` Gaussian centres `spread` apart, unit noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)) * spread
    return (centres[rng.integers(0, clusters, n)] + rng.normal(size=(n, dim))).astype(np.float32)


@pytest.fixture()
def blobs() -> np.ndarray:
    return clustered(3000, 16, 20, seed=7)


@pytest.fixture()
def make_clustered():
    """The `clustered` generator, for tests that need other shapes."""
    return clustered
