"""The pipeline: stages in order under one parent MLflow run, each stage a child run.

ingest -> motivate -> quantize -> train -> evaluate -> recommend. Each stage decides itself what
is unchanged and skips that work (ingest: file hashes; motivate: content hashes per row), and the
pipeline skips a whole stage whose inputs and config are those of its last finished run
(momorec.stage_state). The nightly refresh (momorec.refresh) is this pipeline with the night's logs,
frozen codebooks and a warm start.
"""

from __future__ import annotations

import importlib
import logging
import time

from pydantic import Field

from momorec import progress, tracking
from momorec.config import PlatformConfig
from momorec.run_log import StageFailed
from momorec.storage import lease
from momorec.typed import StageResult

log = logging.getLogger(__name__)

STAGE_FUNCTIONS: dict[str, str] = {
    "ingest": "momorec.ingest.stage:run_ingest",
    "motivate": "momorec.motivate.stage:run_motivate",
    "quantize": "momorec.quantize.stage:run_quantize",
    "train": "momorec.train.stage:run_train",
    "evaluate": "momorec.evaluate.stage:run_evaluate",
    "recommend": "momorec.recommend.stage:run_recommend",
}


class PipelineResult(StageResult):
    stage: str = "pipeline"
    dataset: str
    warehouse: str
    tracking_uri: str
    experiment: str
    stages: dict[str, dict] = Field(default_factory=dict, description="Each stage's own result.")


def stage_function(name: str):
    if name not in STAGE_FUNCTIONS:
        raise ValueError(f"unknown stage {name!r}; known: {list(STAGE_FUNCTIONS)}")
    module_name, func_name = STAGE_FUNCTIONS[name].split(":")
    return getattr(importlib.import_module(module_name), func_name)


def job_main(stage: str, argv: list[str] | None = None) -> int:
    """The body of every `jobs/<stage>.py` (spark-submit, Ray Jobs, MLproject): parse `-c CONFIG
    [--set k=v ...]`, run the one stage, print its result as one JSON line."""
    import argparse
    import sys

    from momorec.config import load_config

    parser = argparse.ArgumentParser(description=f"MoMoREC {stage} stage")
    parser.add_argument("-c", "--config", required=True, help="YAML config file (see configs/).")
    parser.add_argument("-s", "--set", dest="overrides", action="append", default=[], help="section.key=value")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    result = run_one_stage(load_config(args.config, args.overrides), stage, show_progress=False)
    sys.stdout.write(result.model_dump_json() + "\n")
    return 0


def run_one_stage(cfg: PlatformConfig, name: str, show_progress: bool = True) -> StageResult:
    """One stage on its own (`momorec <stage>`, jobs/<stage>.py), holding the dataset's lease."""
    func = stage_function(name)
    with lease.held(cfg, name):
        return func(cfg, show_progress=show_progress)


def _run_stage(cfg: PlatformConfig, name: str, func, show_progress: bool, extra_sources) -> dict:
    """One stage, or the record of its last run when nothing it depends on changed."""
    from momorec import registry, stage_state

    if name == "ingest":
        return func(cfg, show_progress=show_progress, extra_sources=extra_sources).model_dump(mode="json")
    extra = {"champion": registry.alias_version(cfg)} if name == "recommend" else None
    current = stage_state.fingerprint(cfg, name, extra)
    last = stage_state.previous(cfg, name, current) if cfg.pipeline.skip_unchanged else None
    if last is not None:
        log.info("stage %s: inputs unchanged since %s, skipped", name, time.ctime(last["finished_at"]))
        return {
            "stage": name,
            "skipped": True,
            "wall_time_s": 0.0,
            "reason": "inputs and config unchanged",
            "inputs": current["inputs"],
            "last_result": last["result"],
        }
    result = func(cfg, show_progress=show_progress).model_dump(mode="json")
    stage_state.record(cfg, name, current, result)
    return result


def _promote(cfg: PlatformConfig, train_run_id: str) -> dict:
    """The new model against the @champion (momorec.registry.promote), tagged on the parent run."""
    import mlflow
    from momorec import registry

    start = time.perf_counter()
    promotion = registry.promote(cfg, train_run_id, cfg.pipeline.promote_tolerance)
    mlflow.set_tags(
        {"momorec.promotion": promotion.decision, "momorec.model_version": str(promotion.candidate_version)}
    )
    wall = round(time.perf_counter() - start, 3)  # the champion's rescoring, when it has no figure for these users
    return {"stage": "promote", "wall_time_s": wall, **promotion.model_dump(mode="json")}


def run_pipeline(
    cfg: PlatformConfig,
    show_progress: bool = True,
    stages: list[str] | None = None,
    extra_sources: list | None = None,
    kind: str = "pipeline",
) -> PipelineResult:
    """Run `stages` (default: the config's `pipeline.stages`) in order under one parent run.

    extra_sources: event files for ingest besides the config's (the nightly refresh's new logs).
    After a train stage that ran, the new model competes for the registry's @champion alias
    (momorec.registry.promote); recommend then serves the champion. The run holds the dataset's
    lease (momorec.storage.lease) throughout.
    """
    import mlflow

    names = stages or list(cfg.pipeline.stages)
    functions = [(name, stage_function(name)) for name in names]  # fail fast on a bad name
    uri = tracking.configure(cfg.tracking)
    start = time.perf_counter()
    results: dict[str, dict] = {}
    with (
        lease.held(cfg, kind),  # one run at a time per dataset: a second one waits or fails here
        mlflow.start_run(run_name=f"{kind}:{cfg.dataset}", tags={"momorec.stage": kind}) as parent,
    ):
        mlflow.log_params(tracking.flat_params({"pipeline.stages": names, "dataset": cfg.dataset}))
        for number, (name, func) in enumerate(functions, start=1):
            position = f"[{number}/{len(functions)}]"
            log.info("stage %s %s", position, name)
            if show_progress:
                progress.stage_started(position, name)
            try:
                results[name] = _run_stage(cfg, name, func, show_progress, extra_sources)
                if show_progress:
                    progress.stage_finished(position, name, results[name])
                if name == "train" and not results[name].get("skipped") and cfg.train.log_model:
                    results["promote"] = _promote(cfg, results[name]["mlflow_run_id"])
                    if show_progress:
                        progress.stage_finished(position, "promote", results["promote"])
            except Exception as exc:
                raise StageFailed(name, exc) from exc  # the CLI prints it as one line
        skipped = [name for name, r in results.items() if r.get("skipped")]
        mlflow.log_metrics({"wall_time_s": time.perf_counter() - start, "stages_skipped": len(skipped)})
    return PipelineResult(
        stage=kind,
        dataset=cfg.dataset,
        warehouse=cfg.dataset_root,
        tracking_uri=uri,
        experiment=cfg.tracking.experiment,
        mlflow_run_id=parent.info.run_id,
        wall_time_s=round(time.perf_counter() - start, 3),
        stages=results,
    )
