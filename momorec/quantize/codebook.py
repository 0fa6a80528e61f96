"""Frozen codebooks: what a fit leaves behind, on disk, for assignment and for the recommenders.

Layout: `<dataset_root>/codebooks/<entity_type>/<version>/codebook.npz` + `meta.json`, and a pointer
file `<dataset_root>/codebooks/<entity_type>/LATEST` naming the newest version. The version is a
content hash, so refitting the same data with the same config gives the same version.

codebook.npz arrays:
  centroids        (L, K, d) float32  level centroids in the reduced (PCA) space; rows >= K_l are 0
  codes_per_level  (L,) int64         K_l of each level (levels may differ)
  pca_mean         (D,) float32       subtracted before projecting
  pca_components   (d, D) float32     orthonormal rows; absent when PCA is off (identity)
  pca_scale        (d,) float32       per-component standard deviation; present only when whitened
  fit_entity_ids   (n_fit,) int64     the entities the codebook was fit on
  coded_entity_ids (n,) int64         every entity coded when it was made (fit + assigned); later
                                      rows outside it are "new" for the drift measure
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from momorec.quantize.pca import Projection
from momorec.storage import objectstore

LATEST = "LATEST"


@dataclass(frozen=True)
class Codebook:
    """Residual codebooks plus the projection in front of them."""

    centroids: np.ndarray
    codes_per_level: np.ndarray
    projection: Projection
    fit_entity_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    coded_entity_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def levels(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def dim(self) -> int:
        """Dimension of the reduced space the centroids live in."""
        return int(self.centroids.shape[2])

    def level(self, index: int) -> np.ndarray:
        """Centroids (K_l, d) of one level (without the zero padding)."""
        return self.centroids[index, : int(self.codes_per_level[index])]

    @property
    def fit_rel_error(self) -> float:
        """Relative reconstruction error of the fit set after the last level (the drift baseline)."""
        return float(self.meta["fit_rel_error"])

    def version(self) -> str:
        """Content hash of the arrays that decide codes (12 hex digits)."""
        digest = hashlib.sha256()
        for array in (self.centroids, self.codes_per_level, self.projection.mean):
            digest.update(np.ascontiguousarray(array).tobytes())
        for optional in (self.projection.components, self.projection.scale):
            if optional is not None:
                digest.update(np.ascontiguousarray(optional).tobytes())
        return digest.hexdigest()[:12]


def save_codebook(codebook: Codebook, root: str) -> str:
    """Write codebook.npz + meta.json under `root/<version>/` and point `root/LATEST` at it; return the dir."""
    version = codebook.version()
    folder = objectstore.join(root, version)
    arrays = {
        "centroids": codebook.centroids.astype(np.float32),
        "codes_per_level": codebook.codes_per_level.astype(np.int64),
        "pca_mean": codebook.projection.mean.astype(np.float32),
        "fit_entity_ids": codebook.fit_entity_ids.astype(np.int64),
        "coded_entity_ids": codebook.coded_entity_ids.astype(np.int64),
    }
    if codebook.projection.components is not None:
        arrays["pca_components"] = codebook.projection.components.astype(np.float32)
    if codebook.projection.scale is not None:
        arrays["pca_scale"] = codebook.projection.scale.astype(np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    objectstore.write_bytes(objectstore.join(folder, "codebook.npz"), buffer.getvalue())
    meta = {**codebook.meta, "version": version, "pca_explained_variance": codebook.projection.explained_variance}
    objectstore.write_bytes(
        objectstore.join(folder, "meta.json"),
        json.dumps(meta, indent=2, sort_keys=True, default=float).encode("utf-8"),
    )
    # The pointer last, in one atomic write: readers see the old version or the new one, never half.
    objectstore.write_bytes(objectstore.join(root, LATEST), (version + "\n").encode("utf-8"))
    return folder


def load_codebook(folder: str) -> Codebook:
    """Read a codebook folder written by `save_codebook`."""
    path = objectstore.join(folder, "codebook.npz")
    if not objectstore.is_file(path):
        raise FileNotFoundError(f"no codebook.npz in {folder}")
    with np.load(io.BytesIO(objectstore.read_bytes(path))) as npz:
        arrays = {name: npz[name] for name in npz.files}
    meta = objectstore.read_json(objectstore.join(folder, "meta.json"))
    projection = Projection(
        arrays["pca_mean"],
        arrays.get("pca_components"),
        float(meta.get("pca_explained_variance", 1.0)),
        arrays.get("pca_scale"),
    )
    return Codebook(
        centroids=arrays["centroids"],
        codes_per_level=arrays["codes_per_level"],
        projection=projection,
        fit_entity_ids=arrays.get("fit_entity_ids", np.zeros(0, np.int64)),
        coded_entity_ids=arrays.get("coded_entity_ids", np.zeros(0, np.int64)),
        meta=meta,
    )


def codebook_root(dataset_root: str, entity_type: str) -> str:
    """Folder holding every version of one entity type's codebooks."""
    return objectstore.join(dataset_root, "codebooks", entity_type)


def latest_codebook_dir(cfg: Any, entity_type: str) -> str:
    """The newest codebook folder of `entity_type` ("item" | "user") for this config's dataset.

    `cfg` is a PlatformConfig (only `cfg.dataset_root` is read). Raises FileNotFoundError when the
    quantize stage has not produced one yet.
    """
    root = codebook_root(cfg.dataset_root, entity_type)
    pointer = objectstore.join(root, LATEST)
    if not objectstore.is_file(pointer):
        raise FileNotFoundError(f"no {entity_type} codebook under {root}: run `momorec quantize` first")
    version = objectstore.read_bytes(pointer).decode("utf-8").strip()
    folder = objectstore.join(root, version)
    if not objectstore.is_file(objectstore.join(folder, "codebook.npz")):
        raise FileNotFoundError(f"{pointer} names {version}, which is missing")
    return folder
