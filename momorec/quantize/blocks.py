"""Blocked passes over large row matrices: temporaries stay ~CHUNK_ROWS x d floats, never (n, d) float64."""

from __future__ import annotations

import numpy as np

CHUNK_ROWS = 65_536


def row_sq_norms(x: np.ndarray, shift: np.ndarray | None = None) -> np.ndarray:
    """||x_i - shift||^2 per row, (n,) float64 (shift None = 0)."""
    out = np.empty(x.shape[0], np.float64)
    for start in range(0, x.shape[0], CHUNK_ROWS):
        block = x[start : start + CHUNK_ROWS]
        if shift is not None:
            block = block.astype(np.float64) - shift
        out[start : start + CHUNK_ROWS] = np.einsum("ij,ij->i", block, block, dtype=np.float64)
    return out
