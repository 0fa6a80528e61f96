"""The recommend stage on the demo: real ingest (Spark), a real trained model, a real Delta table."""

from __future__ import annotations

import numpy as np
import pytest

from momorec.config import load_config
from momorec.ingest.stage import run_ingest
from momorec.recommend.stage import run_recommend
from momorec.storage import delta
from momorec.train.stage import run_train
from tests.conftest import DEMO_CONFIG

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def test_top_k_per_user_excludes_history_and_is_sorted(spark, tmp_path, tracking_env):
    cfg = load_config(
        DEMO_CONFIG,
        [
            f"warehouse={tmp_path / 'wh'}",
            "spark.master=local[2]",
            "train.launcher=local",
            "train.epochs=2",
            "train.seeds=[1]",
            "train.model.item_semantic.mode=none",
            "train.model.user_semantic.mode=none",
            "train.log_model=false",
            "recommend.top_k=7",
        ],
    )
    with pytest.raises(FileNotFoundError, match="momorec train"):
        run_recommend(cfg, show_progress=False)
    run_ingest(cfg, show_progress=False)
    trained = run_train(cfg, show_progress=False)

    result = run_recommend(cfg, show_progress=False)
    assert result.users == trained.users and result.top_k == 7
    assert result.train_run_id == trained.mlflow_run_id

    recs = delta.read(cfg.table_path("recommendations")).to_pandas().set_index("user_id")
    seqs = delta.read(cfg.table_path("sequences")).to_pandas().set_index("user_id")
    num_items = delta.read(cfg.table_path("item_ids")).num_rows
    assert len(recs) == len(seqs)
    for user, row in recs.iterrows():
        items = list(row["items"])
        assert len(items) == 7 == len(set(items))
        assert all(1 <= i <= num_items for i in items)
        assert not set(items) & set(seqs.loc[user, "items"]), "an already-seen item was recommended"
        scores = np.asarray(row["scores"])
        assert np.all(np.diff(scores) <= 0)
    # No motivate / quantize ran: the explanation columns are empty, not invented.
    assert recs["motivation_text"].isna().all() and recs["user_codes"].isna().all()
    assert result.with_motivation == 0
