"""The distributed transport: each shard of rows lives in its own Ray actor.

`RayPool` has the `ShardPool` interface of `shards.LocalPool`; the actors hold `ArrayShard`s, so the
driver code in `residual.py` and the per-shard math are the very same objects as the single-process
path. Rows go to the object store once (one `ray.put` per shard); afterwards only centroids, sums,
counts and the final codes travel.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import ray

from momorec.quantize.shards import ArrayShard

log = logging.getLogger(__name__)


@ray.remote
class ShardActor:
    """Holds one ArrayShard; runs its methods by name."""

    def __init__(self, x: np.ndarray, threads: int) -> None:
        import faiss

        faiss.omp_set_num_threads(threads)
        self.shard = ArrayShard(x)

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.shard, method)(*args)


def _shared(value: Any) -> Any:
    """Put arrays (and other bulky arguments) in the object store once, not once per actor."""
    return ray.put(value) if not isinstance(value, int | float | str | type(None)) else value


class RayPool:
    """Shards in Ray actors, called in shard order. Use as a context manager (kills the actors)."""

    def __init__(self, actors: Sequence[Any]) -> None:
        self.actors = list(actors)

    @classmethod
    def from_array(cls, x: np.ndarray, num_shards: int, cpus_per_shard: float = 1.0) -> RayPool:
        """Split rows into contiguous blocks (the same bounds as LocalPool.from_array), one actor each."""
        bounds = np.linspace(0, x.shape[0], num_shards + 1).astype(int)
        threads = max(1, int(cpus_per_shard))
        actors = [
            ShardActor.options(num_cpus=cpus_per_shard).remote(ray.put(np.ascontiguousarray(x[a:b])), threads)
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ]
        log.info("ray pool: %d shards of ~%d rows", num_shards, x.shape[0] // max(num_shards, 1))
        return cls(actors)

    def map(self, method: str, *args: Any) -> list[Any]:
        shared = [_shared(a) for a in args]
        return ray.get([actor.call.remote(method, *shared) for actor in self.actors])

    def each(self, method: str, args_per_shard: Sequence[tuple]) -> list[Any]:
        return ray.get(
            [actor.call.remote(method, *args) for actor, args in zip(self.actors, args_per_shard, strict=True)]
        )

    def close(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
