"""Which embedder and which item texts, on the generated Beauty texts: training-free quality, no LLM generation.

The texts benchmarks/beauty_generation.py exported (benchmarks/results/beauty_texts/) are embedded again by
`momorec texts import` into fresh copies of the ingest tables, once per embedder, and scored by
`momorec inspect` (motivation retrieval, history-mean retrieval, popularity, random; grounding, specificity):

- embedders: the bundled all-MiniLM-L6-v2 (`embedder.kind=sentence`, what configs/beauty.yaml ships) and
  SmolLM2-135M's own pooled hidden states (`embedder.kind=llm`, the method as published);
- item texts: catalog texts (catalog_items) vs the item analyst's profiles (analyst_items, when exported).
  Only item embeddings and histories enter this one, so it is scored over every user with a validation
  item: the mean of the user's last `history_items` training items (what the prompts show) ranks all items.

The ranking is full (every catalog item, the user's training items excluded), the target the validation item;
test items are never read. Writes benchmarks/results/beauty_embedders.json (machine named) and prints it.

    .venv/bin/python benchmarks/beauty_embedders.py                    # both embedders, every exported folder
    .venv/bin/python benchmarks/beauty_embedders.py --embedders sentence
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.llm_engines import machine  # noqa: E402
from benchmarks.llm_engines import momorec as cli  # noqa: E402

CONFIG = REPO / "configs" / "beauty.yaml"
RESULTS = REPO / "benchmarks" / "results" / "beauty_embedders.json"
TEXTS = REPO / "benchmarks" / "results" / "beauty_texts"
INGEST_TABLES = ("items", "sequences", "interactions", "user_ids", "item_ids")
FOLDER_SETS = {"catalog_items": [], "analyst_items": ["motivate.agents.item_profiles=analyst"]}
EMBEDDER_SETS = {"sentence": ["motivate.embedder.kind=sentence"], "llm": ["motivate.embedder.kind=llm"]}


def momorec(args: list[str], work: Path, sets: list[str]) -> dict:
    return cli(args, work, sets, config=CONFIG, timeout=4 * 3600)


def item_text_retrieval(warehouse: Path, history_items: int) -> dict:
    """Every user with a validation item: the mean of the unit embeddings of the last `history_items` training
    items ranks the full catalog (training items excluded); HR@10 / NDCG@10 of the validation item."""
    from momorec.motivate import quality as q
    from momorec.storage import delta

    root = warehouse / "beauty"
    items = delta.read(str(root / "item_profiles"), columns=["item_id", "status", "embedding"]).to_pylist()
    item_ids = np.array(sorted(r["item_id"] for r in delta.read(str(root / "items"), columns=["item_id"]).to_pylist()))
    dim = max(len(r["embedding"] or []) for r in items)
    vecs = np.full((len(item_ids), dim), np.nan, dtype=np.float32)
    for r in items:
        if r["status"] == "ok" and r["embedding"] and len(r["embedding"]) == dim:
            vecs[q.columns(item_ids, [r["item_id"]])[0]] = r["embedding"]
    seq = delta.read(str(root / "sequences"), columns=["user_id", "train_items", "valid_item"]).to_pylist()
    seq = [s for s in seq if s["valid_item"] is not None and q.columns(item_ids, [s["valid_item"]])[0] >= 0]
    train = q.Ragged.from_lists([q.columns(item_ids, s["train_items"] or []).tolist() for s in seq])
    recent = q.Ragged.from_lists([q.columns(item_ids, (s["train_items"] or [])[-history_items:]).tolist() for s in seq])
    targets = q.columns(item_ids, [s["valid_item"] for s in seq])
    ranks = q.cosine_ranks(q.history_mean_vectors(vecs, recent), vecs, targets, train)
    out = q.rank_metrics(ranks)
    out["items_embedded"] = int(np.isfinite(vecs[:, 0]).sum())
    return out


def run_cell(folder: str, embedder: str, keep: Path | None) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"embedders-{folder}-{embedder}-"))
    try:
        warehouse = work / "warehouse"
        source = Path(os.environ.get("BEAUTY_WAREHOUSE", "/tmp/beauty-generation/warehouse")) / "beauty"
        common = [f"warehouse={warehouse}", f"tracking.tracking_uri=sqlite:///{work / 'mlflow.db'}"]
        if (source / "sequences").exists():  # the generation's own ingest tables: same ids, no Spark
            for table in INGEST_TABLES:
                shutil.copytree(source / table, warehouse / "beauty" / table)
        else:
            momorec(["ingest"], work, common)
        sets = [*common, *FOLDER_SETS[folder], *EMBEDDER_SETS[embedder]]
        start = time.perf_counter()
        imported = momorec(["texts", "import", str(TEXTS / folder)], work, sets)
        wall = time.perf_counter() - start
        quality = momorec(["inspect"], work, sets)
        history_items = json.loads((TEXTS / folder / "manifest.json").read_text())["motivate"]["agents"][
            "history_items"
        ]
        return {
            "folder": folder,
            "embedder": embedder,
            "import_wall_s": round(wall, 1),
            "counts": imported["counts"],
            "embedder_name": imported["embedder"],
            "generated_dtype": imported["generated_dtype"],
            "motivated_users": {
                k: quality.get(k) for k in ("retrieval", "grounding", "specificity", "retrieval_users")
            },
            "item_texts_all_users": item_text_retrieval(warehouse, history_items),
        }
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedders", default="sentence,llm")
    parser.add_argument("--folders", default=",".join(FOLDER_SETS))
    args = parser.parse_args()
    report = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    report.update({"machine": machine(), "config": "configs/beauty.yaml", "protocol": "full ranking, validation item"})
    cells = {(c["folder"], c["embedder"]): c for c in report.get("cells", [])}
    for folder in [f for f in args.folders.split(",") if (TEXTS / f / "manifest.json").exists()]:
        for embedder in args.embedders.split(","):
            print(f"{folder} x {embedder} ...", flush=True)
            cells[(folder, embedder)] = run_cell(folder, embedder, None)
            report["cells"] = list(cells.values())
            RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
