"""Paired significance tests and seed aggregation.

Two runs evaluated on the same users give paired per-user values (e.g. NDCG@10 of each user under
the baseline and under its MoMoREC variant). We report both the paired t-test (mean difference,
parametric) and the Wilcoxon signed-rank test (no normality assumption; per-user NDCG is far from
normal, mostly zeros), as recommended by Sakai (SIGIR 2016, "Statistical significance, power, and
sample sizes").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats


def paired_test(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Compare per-user values of run A and run B on the same users, in the same order.

    a, b: (U,) float. Returns {"n", "mean_a", "mean_b", "mean_diff" (b - a), "t_stat", "t_pvalue",
    "wilcoxon_stat", "wilcoxon_pvalue"}; when all differences are 0 the p-values are 1.0.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired test needs two 1-D arrays of the same users, got {a.shape} and {b.shape}")
    if a.size < 2:
        raise ValueError("paired test needs at least 2 users")
    diff = b - a
    out = {"n": float(a.size), "mean_a": float(a.mean()), "mean_b": float(b.mean()), "mean_diff": float(diff.mean())}
    if not np.any(diff):
        out.update(t_stat=0.0, t_pvalue=1.0, wilcoxon_stat=0.0, wilcoxon_pvalue=1.0)
        return out
    t = stats.ttest_rel(b, a)
    w = stats.wilcoxon(b, a, zero_method="wilcox")
    out.update(
        t_stat=float(t.statistic),
        t_pvalue=float(t.pvalue),
        wilcoxon_stat=float(w.statistic),
        wilcoxon_pvalue=float(w.pvalue),
    )
    return out


def align_users(
    users_a: np.ndarray, values_a: np.ndarray, users_b: np.ndarray, values_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pair two runs' per-user values by user id; raises if the user sets differ.

    Returns (users (U,), a (U,), b (U,)) sorted by user id.
    """
    order_a = np.argsort(users_a)
    order_b = np.argsort(users_b)
    ua, ub = np.asarray(users_a)[order_a], np.asarray(users_b)[order_b]
    if ua.shape != ub.shape or not np.array_equal(ua, ub):
        raise ValueError(
            f"runs were evaluated on different users ({len(ua)} vs {len(ub)}); a paired test needs the same users"
        )
    return ua, np.asarray(values_a)[order_a], np.asarray(values_b)[order_b]


def mean_std(per_seed: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """[{"ndcg_10": x, ...} per seed] -> {"ndcg_10": {"mean": m, "std": s, "n": seeds}} (sample std, ddof=1)."""
    if not per_seed:
        raise ValueError("no seeds to aggregate")
    keys = sorted(set.intersection(*(set(m) for m in per_seed)))
    out: dict[str, dict[str, float]] = {}
    for key in keys:
        values = np.array([m[key] for m in per_seed], dtype=np.float64)
        std = float(values.std(ddof=1)) if values.size > 1 else 0.0
        out[key] = {"mean": float(values.mean()), "std": std, "n": float(values.size)}
    return out
