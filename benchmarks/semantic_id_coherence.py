"""Do an item codebook's codes follow what people buy together? A check that needs no recommender.

For every consecutive pair of TRAINING purchases (a, b) of a user on Amazon Beauty, does b share
a's code prefix of length 1, 2, 3 (the full ID)? A codebook that groups items bought together
scores high; chance is the same share for independently drawn pairs with the same code
frequencies. Also the full-ID collision rate (items that share all codes).

Two parts:
- `--codes NAME=PATH.npz ...`: existing codebooks (SemanticInputs .npz from beauty_llm_ids.py or
  train_semantic_proxy.py), e.g. the LLM IDs and the TF-IDF text proxy;
- `--sweep`: refits the LLM item embeddings (the `item_profiles` table) with the real residual
  quantizer with the quantize settings of --config (configs/beauty.yaml: 3 x 256 codes), fit on
  training items only, for each PCA dim in --pca-dims, with and without whitening (~1 min a fit).

    python benchmarks/semantic_id_coherence.py --data-npz .bench/beauty.npz --sweep \
        --codes llm=.bench/beauty_item_llm.npz textproxy=.bench/beauty_item_textproxy.npz

Results: benchmarks/results/semantic_id_coherence.json. Not a substitute for training (see
train_quality.py); it explains why one codebook helps the recommender more than another.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results" / "semantic_id_coherence.json"


def training_prefixes(data) -> list[np.ndarray]:
    """Each user's training items, oldest first (never the validation or test item)."""
    return [data.items[data.offsets[u] : data.offsets[u] + data.train_len[u]] for u in range(data.num_users)]


def consecutive_training_pairs(data) -> np.ndarray:
    """(P, 2) item ids of every consecutive pair inside each user's training prefix."""
    return np.concatenate([np.stack([seq[:-1], seq[1:]], axis=1) for seq in training_prefixes(data)])


def prefix_keys(codes: np.ndarray, length: int) -> np.ndarray:
    """One integer per row for its first `length` codes (codes are small non-negative ints)."""
    base = int(codes.max()) + 1
    return codes[:, :length].astype(np.int64) @ (base ** np.arange(length, dtype=np.int64))


def coherence(codes: np.ndarray, pairs: np.ndarray, items: np.ndarray) -> dict:
    """codes: (N+1, L) indexed by item id; items: the item ids that have codes (for the collision rate)."""
    out = {}
    for length in range(1, codes.shape[1] + 1):
        key = prefix_keys(codes, length)
        a, b = key[pairs[:, 0]], key[pairs[:, 1]]
        (va, ca), (vb, cb) = np.unique(a, return_counts=True), np.unique(b, return_counts=True)
        _, ia, ib = np.intersect1d(va, vb, assume_unique=True, return_indices=True)
        chance = float((ca[ia] / len(a) * cb[ib] / len(b)).sum())
        same = float(np.mean(a == b))
        out[f"level_{length}"] = {"same": round(same, 4), "chance": round(chance, 5), "lift": round(same / chance, 1)}
    full = prefix_keys(codes, codes.shape[1])[items]
    out["full_id_collision_rate"] = round(1 - np.unique(full).size / items.size, 4)
    return out


def sweep(cfg, data, pairs: np.ndarray, dims: list[int]) -> dict:
    """The quantize stage's own fit (its FitParams from cfg) for each PCA dim, plain and whitened."""
    import dataclasses

    from momorec.quantize.inputs import embeddings_from_arrow
    from momorec.quantize.residual import encode, fit_residual
    from momorec.quantize.shards import LocalPool
    from momorec.quantize.stage import fit_params
    from momorec.storage import delta

    emb = embeddings_from_arrow(
        delta.read(cfg.table_path("item_profiles"), columns=["item_id", "status", "embedding"]), "item_id"
    )
    train_items = np.unique(np.concatenate(training_prefixes(data)))
    fit_rows = np.flatnonzero(np.isin(emb.ids, train_items))
    results = {}
    for dim in dims:
        for whiten in (False, True):
            start = time.perf_counter()
            params = dataclasses.replace(fit_params(cfg), pca_dim=dim, pca_whiten=whiten)
            fitted = fit_residual(LocalPool.from_array(emb.vectors[fit_rows]), params)
            codes = np.zeros((data.num_items + 1, len(params.codes_per_level)), np.int64)
            codes[emb.ids] = encode(fitted.codebook, emb.vectors).codes + 1  # 0 = no code
            name = f"llm_pca{dim}{'_whiten' if whiten else ''}"
            results[name] = {
                **coherence(codes, pairs, emb.ids),
                "fit_s": round(time.perf_counter() - start, 1),
                "pca_explained_variance": round(fitted.codebook.projection.explained_variance, 3),
            }
            logging.info("%s: %s", name, results[name])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-npz",
        default=str(ROOT / ".bench" / "beauty.npz"),
        help="the Beauty split (train_quality.py --export-npz)",
    )
    parser.add_argument("--codes", nargs="*", default=[], help="NAME=PATH.npz SemanticInputs files to score")
    parser.add_argument(
        "--sweep", action="store_true", help="refit the LLM item embeddings over --pca-dims x whitening"
    )
    parser.add_argument(
        "--config", default=str(ROOT / "configs" / "beauty.yaml"), help="quantize settings and warehouse of --sweep"
    )
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], help="config overrides, e.g. warehouse=...")
    parser.add_argument("--pca-dims", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from momorec.core.sequences import SequenceData
    from momorec.models.interface import SemanticInputs

    data = SequenceData.load_npz(args.data_npz)
    pairs = consecutive_training_pairs(data)
    out = {
        "protocol": "consecutive pairs of training purchases (validation and test items never used); "
        "same = share of pairs whose item codes agree on the first k levels; chance = the same "
        "for independent pairs with the same code frequencies",
        "pairs": int(len(pairs)),
        "codebooks": {},
    }
    for spec in args.codes:
        name, path = spec.split("=", 1)
        semantic = SemanticInputs.load_npz(path)
        coded = np.flatnonzero(semantic.codes.numpy().any(axis=1))
        out["codebooks"][name] = {"source": path, **coherence(semantic.codes.numpy(), pairs, coded)}
    if args.sweep:
        from momorec.config import load_config

        cfg = load_config(args.config, args.overrides)
        out["sweep_config"] = {
            "config": args.config,
            "overrides": args.overrides,
            "quantize": cfg.quantize.model_dump(mode="json"),
        }
        out["codebooks"].update(sweep(cfg, data, pairs, args.pca_dims))
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(out, indent=2, sort_keys=True))
    print(json.dumps(out, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
