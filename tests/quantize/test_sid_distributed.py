"""The sharded fit on a real local Ray agrees with the single-process fit (same math, other transport)."""

from __future__ import annotations

import numpy as np
import pytest

from momorec.quantize.residual import FitParams, encode_pool, fit_residual
from momorec.quantize.shards import LocalPool

pytestmark = pytest.mark.ray


def test_ray_fit_equals_single_process(ray_local, make_clustered):
    from momorec.quantize.ray_pool import RayPool

    x = make_clustered(6000, 24, 40, seed=5)
    params = FitParams((32, 16, 16), iterations=10, pca_dim=12, max_points_per_centroid=128, seed=9)
    single = fit_residual(LocalPool.from_array(x), params)
    with RayPool.from_array(x, num_shards=3, cpus_per_shard=1.0) as pool:
        sharded = fit_residual(pool, params)
        again = encode_pool(pool, single.codebook)  # frozen-codebook assignment on the actors
    np.testing.assert_allclose(sharded.codebook.projection.components, single.codebook.projection.components, atol=1e-6)
    np.testing.assert_allclose(sharded.codebook.centroids, single.codebook.centroids, atol=1e-4)
    assert (sharded.coded.codes == single.coded.codes).mean() >= 0.999
    assert sharded.coded.rel_error() == pytest.approx(single.coded.rel_error(), rel=1e-4)
    np.testing.assert_array_equal(again.codes, single.coded.codes)


def test_ray_balanced_equals_local_with_same_shards(ray_local, make_clustered):
    """Balanced capacity is per shard, so compare with the same three shards in process."""
    from momorec.quantize.ray_pool import RayPool

    x = make_clustered(3000, 8, 12, seed=2)
    params = FitParams((16,), iterations=8, balanced=True, balance_slack=1.0, seed=1)
    local = fit_residual(LocalPool.from_array(x, 3), params)
    with RayPool.from_array(x, num_shards=3) as pool:
        remote = fit_residual(pool, params)
    assert (remote.coded.codes == local.coded.codes).mean() >= 0.999
    counts = np.bincount(remote.coded.codes[:, 0], minlength=16)
    assert counts.max() <= 3 * int(np.ceil(1000 / 16))
