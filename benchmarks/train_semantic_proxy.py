"""Item semantic IDs for Amazon Beauty WITHOUT the LLM: a text proxy, to exercise the semantic-ID
recommenders on the full dataset before the motivate stage has embedded 12k items on this CPU.

Each item's title + category path -> TF-IDF (word 1-2 grams) -> truncated SVD to 256 dims ->
L2-normalised: the `item_profiles` embeddings the motivate stage would write (status "ok"). Then
the real quantize stage (PCA + residual k-means, 3 levels x 256 codes, fit on training items only)
writes `semantic_ids` and the frozen codebook, in a SEPARATE warehouse (a copy of the ingested
`sequences`/`item_ids`/`items` tables), so the real pipeline's tables are never touched.
The result is exported as .npz files that train_quality.py reads on a machine without Delta:

    python benchmarks/train_semantic_proxy.py --source warehouse/beauty --warehouse /tmp/proxywh \
        --out .bench/beauty_item_textproxy.npz
    python benchmarks/train_quality.py --data-npz .bench/beauty.npz \
        --semantic-npz .bench/beauty_item_textproxy.npz --variants plain item_frozen item_trainable

These are NOT MoMoREC's LLM semantic IDs; results from them are labelled "text proxy".
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def text_embeddings(items: pa.Table, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(item_ids (n,), embeddings (n, dim) float32) from title + categories."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    rows = items.to_pylist()
    texts = [f"{r.get('title') or ''} | {' > '.join(r.get('categories') or [])}" for r in rows]
    tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit_transform(texts)
    dense = TruncatedSVD(n_components=dim, random_state=seed).fit_transform(tfidf)
    dense /= np.maximum(np.linalg.norm(dense, axis=1, keepdims=True), 1e-12)
    return np.array([r["item_id"] for r in rows], dtype=np.int64), dense.astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(ROOT / "warehouse" / "beauty"), help="ingested Beauty tables")
    parser.add_argument("--warehouse", default="/tmp/momorec_proxy_warehouse")
    parser.add_argument("--out", default=str(ROOT / ".bench" / "beauty_item_textproxy.npz"))
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--codes", type=int, default=256)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from momorec.config import load_config
    from momorec.core.sequences import load_sequences
    from momorec.models.config import SemanticInputConfig
    from momorec.quantize.stage import run_quantize
    from momorec.storage import delta
    from momorec.train.semantic import load_semantic_inputs

    target = Path(args.warehouse) / "beauty"
    for table in ("sequences", "item_ids", "items"):
        if not (target / table).exists():
            shutil.copytree(Path(args.source) / table, target / table)
    cfg = load_config(
        ROOT / "configs" / "beauty.yaml",
        [
            f"warehouse={args.warehouse}",
            "quantize.entities=[item]",
            f"quantize.levels={args.levels}",
            f"quantize.codes={args.codes}",
            "quantize.pca_dim=64",
            "quantize.use_ray=never",
        ],
    )
    ids, emb = text_embeddings(
        delta.read(cfg.table_path("items"), columns=["item_id", "title", "categories"]), args.dim, cfg.seed
    )
    profiles = pa.table(
        {
            "item_id": pa.array(ids, pa.int64()),
            "status": ["ok"] * len(ids),
            "embedding": pa.array(list(emb), pa.list_(pa.float32())),
        }
    )
    delta.write(cfg.table_path("item_profiles"), profiles)
    result = run_quantize(cfg, show_progress=False)
    logging.info("quantize: %s", result.model_dump_json()[:2000])

    from momorec.quantize.codebook import latest_codebook_dir

    data = load_sequences(cfg.table_path("sequences"), cfg.table_path("item_ids"))
    inputs, facts = load_semantic_inputs(
        cfg.table_path("semantic_ids"),
        "item",
        data.num_items,
        np.unique(data.items),
        SemanticInputConfig(mode="frozen", on_missing="reserved"),
        latest_codebook_dir(cfg, "item"),
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    inputs.save_npz(args.out)
    logging.info("wrote %s: %s", args.out, facts)


if __name__ == "__main__":
    main()
