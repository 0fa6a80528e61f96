"""benchmarks/scale.py at the tiny scale, as CI runs it: the generator, then every stage in its own process (as
a cluster runs them) for the full run and for a refresh where 5 % of the users bought again. Asserts what makes
the refresh cost what changed (an incremental ingest whose commits hold only the night's rows and the files of
its users; tables it did not change keep their version), that no ingest row passes through the driver (Spark's
executors write every data file), and the figures the benchmark reports."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from momorec.storage import delta

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.spark, pytest.mark.ray]


def _benchmark():
    spec = importlib.util.spec_from_file_location("scale_benchmark", REPO / "benchmarks" / "scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _last_commit_files(path: str, version: int) -> tuple[list[dict], list[dict]]:
    """(add actions, remove actions) of the commit that made `version`."""
    table = DeltaTable(path)
    log = Path(path) / "_delta_log" / f"{version:020d}.json"
    import json

    actions = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert table.version() >= version
    return [a["add"] for a in actions if "add" in a], [a["remove"] for a in actions if "remove" in a]


def _records(add: dict) -> int:
    import json

    return json.loads(add["stats"])["numRecords"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    work = tmp_path_factory.mktemp("scale")
    bench = _benchmark()
    stages_done = []  # what a stop would keep: the figures after every stage

    def on_stage(figures):
        stages_done.append(sum(len(figures.get(phase, {})) for phase in ("full", "refresh")))

    # as a scale too long for one sitting runs: `--phases full`, then `--phases refresh` on the same run folder
    full = bench.run_scale("tiny", work, share=0.05, steps=3, overrides=[], seed=7, phases=("full",), on_stage=on_stage)
    assert "refresh" not in full
    figures = bench.run_scale(
        "tiny", work, share=0.05, steps=3, overrides=[], seed=7, phases=("refresh",), on_stage=on_stage, previous=full
    )
    assert stages_done == list(range(1, 2 * len(bench.FULL_STAGES) + 1))
    assert figures["full"] == full["full"], "the refresh phase keeps the full phase's figures"
    return bench, work, figures


def test_every_stage_is_measured_for_the_full_run_and_the_refresh(tiny):
    bench, _, figures = tiny
    for phase in ("full", "refresh"):
        assert list(figures[phase]) == bench.FULL_STAGES
        for stage, m in figures[phase].items():
            assert m["wall_s"] > 0 and m["driver_peak_rss_gb"] > 0, (phase, stage)
    assert figures["full"]["ingest"]["workers_peak_rss_gb"] > 0.1, "Spark's JVM is the ingest's worker"
    training = figures["full"]["train"]["training"]
    assert training["steps_run"] == min(3, training["full_epoch_steps"]) >= 1
    share = bench.refresh_share(figures)
    for label in ("measured", "as_configured"):
        assert math.isclose(share[label]["share"], share[label]["refresh_s"] / share[label]["full_s"], rel_tol=1e-2)
    assert share["as_configured"]["full_s"] > share["measured"]["full_s"], "a configured full run trains longer"
    assert figures["refresh"]["embeddings"]["rows"]["user_motivations"] == figures["night"]["users"]
    # the warm-started model trained on the night's users (exactly those whose sequence changed) plus a replay share
    selected = figures["refresh"]["train"]["users_selected"]
    assert selected["users.changed"] == figures["night"]["users"]
    assert selected["users.train"].endswith(f",listed={figures['night']['users']}")
    assert figures["full"]["train"]["users_selected"]["users.train"] == "all"
    assert (
        figures["refresh"]["train"]["training"]["full_epoch_steps"]
        <= figures["full"]["train"]["training"]["full_epoch_steps"]
    )
    assert figures["full"]["embeddings"]["rows"]["user_motivations"] == figures["users_ingested"]
    slopes = bench.exponents({"a": figures, "b": figures | {"events": figures["events"] * 2}})
    bigger = figures | {"users": figures["users"] * 2, "items": figures["items"] * 2}
    assert set(bench.scoring_work_exponents({"a": figures, "b": bigger})["tiny->tiny"]) == {"evaluate", "recommend"}
    assert set(slopes["tiny->tiny"]) == set(bench.FULL_STAGES)


def test_the_refresh_ingest_commits_only_what_the_night_changed(tiny):
    _, work, figures = tiny
    root = work / "run-tiny" / "warehouse" / "synth-tiny"
    refresh, full = figures["refresh"]["ingest"], figures["full"]["ingest"]
    assert full["mode"] == "full" and refresh["mode"] == "incremental"
    night = pq.read_table(work / "data-tiny" / "night.parquet")
    assert refresh["interactions"] == full["interactions"] + night.num_rows

    interactions = str(root / "interactions")
    added, removed = _last_commit_files(interactions, delta.version(interactions))
    assert not removed and sum(_records(a) for a in added) == night.num_rows, "interactions: an append of the night"

    # sequences: one commit that rewrites the files holding the night's users (same users: as many rows out as in)
    sequences = str(root / "sequences")
    version = delta.version(sequences)
    added, removed = _last_commit_files(sequences, version)
    before = pa.table(DeltaTable(sequences, version=version - 1).get_add_actions(flatten=True)).to_pydict()
    rows_before = dict(zip(before["path"], before["num_records"], strict=True))
    gone = [r["path"] for r in removed]
    assert gone and set(gone) <= set(rows_before)
    assert sum(_records(a) for a in added) == sum(rows_before[path] for path in gone)
    user_ids = delta.read(str(root / "user_ids"))
    night_ids = user_ids.filter(pc.is_in(user_ids.column("user"), pc.unique(night.column("user").cast("string"))))
    assert night_ids.num_rows == figures["night"]["users"]
    rewritten = pq.read_table([str(Path(sequences) / a["path"]) for a in added], columns=["user_id"])
    assert set(night_ids.column("user_id").to_pylist()) <= set(rewritten.column("user_id").to_pylist())
    assert delta.count_rows(sequences) == figures["users_ingested"], "one row per user after the refresh"

    # every data file of the ingest tables came from Spark's executors, none through the driver
    for name in ("interactions", "sequences", "user_ids", "item_ids", "items"):
        paths = pa.table(DeltaTable(str(root / name)).get_add_actions(flatten=True)).column("path").to_pylist()
        assert paths and all(str(p).startswith("spark-") for p in paths), name


def test_a_variant_reruns_one_stage_with_overrides_on_the_same_warehouse(tiny):
    bench, work, _ = tiny
    figures = bench.run_variant("tiny", work, "evaluate", ["evaluate.protocols=[sampled]"])
    assert figures["overrides"] == ["evaluate.protocols=[sampled]"]
    assert figures["wall_s"] > 0 and figures["driver_peak_rss_gb"] > 0 and figures["stage_wall_s"] > 0
    with pytest.raises(SystemExit, match="no run folder"):
        bench.run_variant("M", work, "evaluate", [])


def test_a_night_that_keeps_the_champion_rescores_only_its_users(tiny):
    bench, work, figures = tiny
    serve = bench.run_serve("tiny", work, share=0.05, seed=7, overrides=[])
    baseline, night = serve["baseline_recommend"], serve["recommend"]
    assert baseline["rescored"] == "all" and baseline["users"] == figures["users_ingested"]
    assert serve["ingest"]["mode"] == "incremental"
    assert night["rescored"] == "changed", night["reason"]
    bought = pc.count_distinct(pq.read_table(serve["night"]).column("user")).as_py()
    assert night["changed_by"]["sequences"] == bought, "every user of the second night, and only they, changed"
    assert bought <= night["users"] < figures["users_ingested"] / 4
    assert _rescored_users(work, figures) == night["users"], "the MERGE rewrote exactly the rescored users' rows"


def _rescored_users(work, figures) -> int:
    """How many rows the last recommendations commit (the night's MERGE) wrote: created after the baseline's commit."""
    path = str(work / "run-tiny" / "warehouse" / "synth-tiny" / "recommendations")
    rows = delta.read(path, columns=["user_id", "created_at"])
    assert rows.num_rows == figures["users_ingested"], "one row per user"
    baseline = DeltaTable(path).history(2)[-1]["timestamp"] / 1000.0
    return rows.filter(pc.greater(rows.column("created_at"), baseline)).num_rows
