"""Quality of residual semantic IDs per level: pure functions of codes and squared errors.

For level l (codes of levels 0..l):
  rel_error        sum ||x - x_hat_l||^2 / sum ||x||^2 in the clustered (reduced, centred) space,
                   i.e. the share of variance the first l+1 levels leave unexplained;
  rel_error_input  the same in the input space (centred), so it also counts what PCA dropped;
  utilization      distinct codes used at level l / K_l;
  perplexity       exp(entropy of the level-l code distribution); K_l when perfectly even;
  collision_rate   1 - distinct full prefixes (levels 0..l) / rows (LETTER, Wang et al. 2024).
"""

from __future__ import annotations

import numpy as np


def prefix_keys(codes: np.ndarray) -> np.ndarray:
    """One int64 key per row that is equal iff the rows' code tuples are equal. codes: (n, L) int."""
    if codes.shape[1] == 0:
        return np.zeros(codes.shape[0], np.int64)
    _, inverse = np.unique(codes, axis=0, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64)


def collision_rate(codes: np.ndarray) -> float:
    """1 - distinct code tuples / rows (0 when every row has its own ID)."""
    n = codes.shape[0]
    return 0.0 if n == 0 else 1.0 - len(np.unique(prefix_keys(codes))) / n


def perplexity(level_codes: np.ndarray, k: int) -> float:
    """exp(H) of the code histogram of one level (n,) over k codes."""
    counts = np.bincount(level_codes, minlength=k).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(np.exp(-(p * np.log(p)).sum())) if p.size else 0.0


def level_metrics(
    codes: np.ndarray,
    sq_err: np.ndarray,
    sq_norm: np.ndarray,
    codes_per_level: list[int] | np.ndarray,
    sq_norm_input: np.ndarray | None = None,
) -> list[dict[str, float]]:
    """One dict per level with the keys above (plus level, codes).

    codes (n, L) int; sq_err (n, L) ||residual||^2 after each level; sq_norm (n,) ||x||^2 in the
    clustered space; sq_norm_input (n,) ||x - mean||^2 in the input space (None = same as sq_norm).
    """
    total = float(sq_norm.sum())
    total_input = float(sq_norm_input.sum()) if sq_norm_input is not None else total
    dropped = total_input - total  # variance outside the PCA subspace: no level can recover it
    out = []
    for level, k in enumerate(int(k) for k in codes_per_level):
        err = float(sq_err[:, level].sum())
        out.append(
            {
                "level": level,
                "codes": k,
                "rel_error": err / total if total > 0 else 0.0,
                "rel_error_input": (dropped + err) / total_input if total_input > 0 else 0.0,
                "utilization": len(np.unique(codes[:, level])) / k,
                "perplexity": perplexity(codes[:, level], k),
                "collision_rate": collision_rate(codes[:, : level + 1]),
            }
        )
    return out


def append_uniqueness_level(codes: np.ndarray, entity_ids: np.ndarray) -> np.ndarray:
    """Add a last column: the index of each row among rows with the same codes, ordered by entity id.

    codes (n, L) int32, entity_ids (n,) int64 -> (n, L + 1) int32 whose rows are all distinct
    (TIGER, Rajput et al. 2023). Ordering by id keeps an old item's index when newer (larger) ids join.
    """
    n = codes.shape[0]
    keys = prefix_keys(codes)
    order = np.lexsort((entity_ids, keys))
    sorted_keys = keys[order]
    starts = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]] if n else np.zeros(0, bool)
    group_start = np.maximum.accumulate(np.where(starts, np.arange(n), 0)) if n else np.zeros(0, np.int64)
    index = np.empty(n, np.int32)
    index[order] = np.arange(n) - group_start
    return np.hstack([codes.astype(np.int32), index[:, None]])
