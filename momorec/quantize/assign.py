"""Codes for new entities from frozen codebooks, and how far they drifted from the fit.

drift = relative reconstruction error of the new rows / the fit set's, both after the last level in
the reduced space. Near 1: the codebook describes the new rows as well as the old ones. Well above
1: they live where the codebook has no centroids; refit (the nightly refresh does, above
`QuantizeConfig.drift_threshold`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from momorec.quantize.codebook import Codebook
from momorec.quantize.residual import Coded, encode


@dataclass
class Assignment:
    """codes (n, L) int32, per-row residual_norm (n,) float32, the rows' rel_error and drift."""

    coded: Coded
    rel_error: float
    drift: float
    needs_refit: bool

    @property
    def codes(self) -> np.ndarray:
        return self.coded.codes

    @property
    def residual_norm(self) -> np.ndarray:
        return self.coded.residual_norm


def drift_ratio(rel_error: float, fit_rel_error: float) -> float:
    """rel_error / fit_rel_error; 1.0 when both are 0, inf when only the fit was exact."""
    if fit_rel_error > 0:
        return rel_error / fit_rel_error
    return 1.0 if rel_error == 0 else float("inf")


def assign(codebook: Codebook, x: np.ndarray, drift_threshold: float = 1.5) -> Assignment:
    """Code rows x (n, D) float32 with the frozen `codebook`; raises ValueError on an empty or misshaped x."""
    if x.shape[0] == 0:
        raise ValueError("assign: no rows to code (empty input)")
    coded = encode(codebook, x)
    rel = coded.rel_error()
    drift = drift_ratio(rel, codebook.fit_rel_error)
    return Assignment(coded, rel, drift, drift > drift_threshold)
