"""Starting (or joining) Ray from config."""

from __future__ import annotations

import logging
import os

from momorec.config import RayConfig
from momorec.storage import objectstore

log = logging.getLogger(__name__)


def cluster_address(cfg: RayConfig | None) -> str | None:
    """The cluster this process joins (`cfg.address`, else RAY_ADDRESS); None: a local Ray of its own."""
    return (cfg.address if cfg is not None else None) or os.environ.get("RAY_ADDRESS")


def init_ray(cfg: RayConfig):
    """Join the cluster at `cfg.address` / RAY_ADDRESS, or start a local Ray; idempotent.

    A local Ray gets `num_cpus` logical CPUs when set: on 2 cores an actor pool of 2 x 1-CPU actors
    starves Ray Data's readers, so local runs advertise more logical CPUs than cores.
    """
    import ray

    if ray.is_initialized():
        return ray
    # Local runs only: Ray 2.60 turns token auth on by default, which a laptop run does not need.
    address = cluster_address(cfg)
    kwargs: dict = {"ignore_reinit_error": True, "include_dashboard": False, "log_to_driver": False}
    if address:
        kwargs["address"] = address
        settings = objectstore.configured()
        if settings:  # a cluster's workers did not inherit this process's environment
            kwargs["runtime_env"] = {"env_vars": settings}
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        if cfg.num_cpus is not None:
            kwargs["num_cpus"] = cfg.num_cpus
        if cfg.object_store_memory_mb is not None:
            kwargs["object_store_memory"] = cfg.object_store_memory_mb * 1024 * 1024
    ray.init(**kwargs)
    log.info("ray up: %s", ray.cluster_resources())
    return ray
