"""The kill matrix: SIGKILL `momorec run` and `momorec refresh` at points inside every stage, re-run, and
end with the tables an uninterrupted run writes.

Two worlds on the demo data (warehouse + MLflow store each, real Spark, Ray, the real small LLM on a
3-user slice): `reference` runs the pipeline, then one nightly refresh, each once without a kill. `killed`
runs the same commands, but each attempt is SIGKILLed (the whole process tree: the CLI, its Spark JVM,
its Ray) at the next point of KILL_POINTS, and the next attempt goes on from what the dead one left; the
attempt after the last point runs to the end. So each point's re-run passes through the stage that was
killed, and the stages before it must have converged by the time the next point is reached. A point
inside a stage's work is a condition polled from outside; a point between two commits, a window some
milliseconds wide, is a pause point in the code (momorec/core/pause_points.py) that waits to be killed.

After every kill, on the tables as the dead process left them: the killed stage's MLflow run is still
RUNNING (the kill landed inside it, not after it), no table holds a key twice, and every id a table names
is in the id maps (ingest commits the maps first). At the end the two worlds hold the same row sets.

Size: 9 kill points in 2 commands (7 in the pipeline, 2 in the refresh), 11 attempts in the killed world,
2 in the reference; on 2 cores about 6-8 minutes in all.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from momorec.config import load_config
from momorec.core.pause_points import PAUSE_AT, PAUSE_MARKER
from momorec.storage import delta, objectstore
from scripts.make_new_logs import new_events, write_csv

pytestmark = [pytest.mark.spark, pytest.mark.ray, pytest.mark.llm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "configs" / "demo.yaml"
MOMOREC = str(Path(sys.executable).parent / "momorec")
STAGES = "[ingest, motivate, quantize, train, evaluate, recommend]"
SETTINGS = (
    "spark.master=local[2]",
    f"pipeline.stages={STAGES}",
    f"refresh.stages={STAGES}",
    "ray.num_cpus=2",
    # motivate: the real model on 3 users, one row a commit, so a kill can land between commits
    "motivate.llm.engine=hf",
    "motivate.llm.dtype=float32",
    "motivate.llm.block_size=null",
    "motivate.llm.batch_size=4",
    "motivate.execution.limit_users=3",
    "motivate.execution.batch_rows=1",
    "motivate.execution.commit_rows=1",
    "motivate.agents.history_items=3",
    "motivate.agents.motivation_max_tokens=32",
    "motivate.agents.max_attempts=1",
    # 3 motivated users are too few for a user codebook, and their 9 items need a small one: item IDs only
    "quantize.entities=[item]",
    "quantize.codes=4",
    "quantize.levels=2",
    "train.model.user_semantic.mode=none",
    "train.launcher=local",
    "train.epochs=4",
    "train.patience=4",
    "train.seeds=[2026]",
    "train.torch_threads=2",
    "refresh.epochs=2",
    "evaluate.protocols=[full]",
)
ATTEMPT_TIMEOUT_S = 600
POLL_S = 0.05


@dataclass(frozen=True)
class World:
    root: Path

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse"

    @property
    def db(self) -> Path:
        return self.root / "mlflow.db"

    def cfg(self):
        return load_config(DEMO, [f"warehouse={self.warehouse}", *SETTINGS])

    def table(self, name: str) -> str:
        return str(self.warehouse / "demo" / name)

    def version(self, name: str) -> int | None:
        return delta.version(self.table(name)) if delta.exists(self.table(name)) else None

    def command(self, *args: str) -> list[str]:
        sets = [a for s in (f"warehouse={self.warehouse}", *SETTINGS) for a in ("--set", s)]
        return [MOMOREC, *args, "-c", str(DEMO), *sets, "--json"]

    def env(self) -> dict[str, str]:
        return {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{self.db}"}

    def stage_status(self, stage: str) -> list[str]:
        """Statuses of the MLflow runs of `stage`, oldest first (read straight from the store's tables).

        A read-write connection, though it only reads: a process killed inside an MLflow write leaves a hot
        journal, which a read-only connection cannot roll back (it fails; CI once read that as "no run"); the
        next opener rolls it back, as the resumed run's MLflow would. A busy store is retried, not read as empty."""
        if not self.db.exists():
            return []
        for attempt in range(5):
            try:
                with sqlite3.connect(str(self.db), timeout=5) as db:
                    rows = db.execute(
                        "SELECT r.status FROM runs r JOIN tags t ON r.run_uuid = t.run_uuid "
                        "WHERE t.key = 'momorec.stage' AND t.value = ? ORDER BY r.start_time",
                        (stage,),
                    ).fetchall()
                return [r[0] for r in rows]
            except sqlite3.OperationalError as err:
                if "no such table" in str(err):  # the store is being created or migrated
                    return []
                time.sleep(0.2 * (attempt + 1))  # busy or locked
        return []

    def running(self, stage: str) -> bool:
        statuses = self.stage_status(stage)
        return bool(statuses) and statuses[-1] == "RUNNING"


@dataclass(frozen=True)
class KillPoint:
    """Where to kill: a condition polled from outside (`reached`), or, for a window between two commits
    too narrow to hit from outside, a pause point in the code (`pause_at`). `holds` is then checked on
    what the dead process left."""

    name: str
    stage: str  # whose MLflow run must still be RUNNING after the kill
    reached: Callable[[World, psutil.Process, dict], bool] | None = None
    pause_at: str | None = None
    holds: Callable[[World, dict], bool] | None = None


def _spark_running(world: World, proc: psutil.Process, state: dict) -> bool:
    """Inside ingest's Spark work: its JVM has been up 3 s and no ingest table is committed yet."""
    if not world.running("ingest") or world.version("user_ids") is not None:
        return False
    jvm = [p for p in _tree(proc) if "java" in _name(p)]
    if jvm and "jvm_seen" not in state:
        state["jvm_seen"] = time.monotonic()
    return bool(jvm) and time.monotonic() - state["jvm_seen"] > 3.0


def _between_ingest_commits(world: World, state: dict) -> bool:
    return world.version("item_ids") is not None and world.version("sources") is None


def _after_first_motivation(world: World, proc: psutil.Process, state: dict) -> bool:
    return world.running("motivate") and (world.version("user_motivations") or -1) >= 0


def _running(stage: str) -> Callable[[World, psutil.Process, dict], bool]:
    return lambda world, proc, state: world.running(stage)


def _after_checkpoint(world: World, proc: psutil.Process, state: dict) -> bool:
    """Mid-train: a seed checkpoint newer than this attempt's start (a refresh's train writes new ones)."""
    if not world.running("train"):
        return False
    found = objectstore.glob(f"{world.warehouse}/demo/checkpoints/*/seed_*/checkpoint.pt")
    return any(os.path.getmtime(p) > state["started"] for p in found)


def _after_ranks_commit(world: World, state: dict) -> bool:
    """evaluate committed its ranks and has not recorded itself finished: the nastiest point."""
    return world.version("evaluation_ranks") != state["before"]["evaluation_ranks"]


def _between_refresh_commits(world: World, state: dict) -> bool:
    """The refresh's ingest committed the night's interactions and not yet its sources (the night's logs
    name known users and items, so the id maps keep their versions)."""
    before = state["before"]
    return world.version("interactions") != before["interactions"] and world.version("sources") == before["sources"]


PIPELINE_POINTS = (
    KillPoint("ingest: Spark job running", "ingest", _spark_running),
    KillPoint(
        "ingest: between table commits", "ingest", pause_at="ingest.after_item_ids", holds=_between_ingest_commits
    ),
    KillPoint("motivate: after the first user commit", "motivate", _after_first_motivation),
    KillPoint("quantize: running", "quantize", _running("quantize")),
    KillPoint("train: after a checkpoint", "train", _after_checkpoint),
    KillPoint(
        "evaluate: after its ranks commit",
        "evaluate",
        pause_at="evaluate.after_ranks_commit",
        holds=_after_ranks_commit,
    ),
    KillPoint("recommend: running", "recommend", _running("recommend")),
)
REFRESH_POINTS = (
    KillPoint(
        "refresh: ingest between table commits",
        "ingest",
        pause_at="ingest.after_interactions",
        holds=_between_refresh_commits,
    ),
    KillPoint("refresh: train after a checkpoint", "train", _after_checkpoint),
)


def _name(proc: psutil.Process) -> str:
    """The process's name, or "" when it ended after the tree was listed (a Spark or Ray helper exiting)."""
    try:
        return proc.name()
    except psutil.NoSuchProcess:
        return ""


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the CLI's session and every descendant (Ray's daemons start their own sessions)."""
    try:
        family = _tree(psutil.Process(proc.pid))
    except psutil.NoSuchProcess:  # it ended first (the caller reports how); its session may still hold children
        family = []
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for p in family:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=60)
    psutil.wait_procs(family, timeout=30)


def _finish(world: World, args: list[str]) -> dict:
    done = subprocess.run(
        world.command(*args), cwd=world.root, env=world.env(), capture_output=True, text=True, timeout=ATTEMPT_TIMEOUT_S
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return json.loads(done.stdout)


def _kill_at(world: World, args: list[str], point: KillPoint) -> None:
    state = {"started": time.time(), "before": {name: world.version(name) for name in KEYS}}
    env, reached = world.env(), point.reached
    if point.pause_at:
        marker = world.root / "paused"
        marker.unlink(missing_ok=True)
        env |= {PAUSE_AT: point.pause_at, PAUSE_MARKER: str(marker)}
        reached = lambda world, proc, state: marker.exists()  # noqa: E731
    proc = subprocess.Popen(
        world.command(*args),
        cwd=world.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    watched = psutil.Process(proc.pid)
    deadline = time.monotonic() + ATTEMPT_TIMEOUT_S
    try:
        while not reached(world, watched, state):
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"{point.name}: the run ended ({proc.returncode}) first:\n{out[-1500:]}\n{err[-2500:]}")
            assert time.monotonic() < deadline, f"{point.name}: not reached in {ATTEMPT_TIMEOUT_S} s"
            time.sleep(POLL_S)
    finally:
        _kill_tree(proc)
    assert proc.returncode == -signal.SIGKILL, f"{point.name}: the run was not killed but ended {proc.returncode}"
    assert world.running(point.stage), f"{point.name}: the {point.stage} run is {world.stage_status(point.stage)}"
    assert point.holds is None or point.holds(world, state), f"{point.name}: the tables are not where it says"
    _assert_consistent(world, point.name)


# ---- the tables ------------------------------------------------------------------------------------

KEYS = {
    "user_ids": ["user_id"],
    "item_ids": ["item_id"],
    "items": ["item_id"],
    "sequences": ["user_id"],
    "interactions": ["user_id", "batch", "event_order"],
    "sources": ["path"],
    "item_profiles": ["item_id"],
    "user_motivations": ["user_id"],
    "semantic_ids": ["entity_type", "entity_id"],
    "trained_models": ["train_run_id", "seed"],
    "evaluation_ranks": ["eval_run_id", "seed", "protocol", "user_id"],
    "recommendations": ["user_id"],
}
# What must be equal between the worlds. Run ids and float weights are each world's own: the model tables
# compare by what they cover (seeds, users, list lengths), the others by value.
COMPARED = {
    "user_ids": ["user", "user_id"],
    "item_ids": ["item", "item_id"],
    "items": ["item_id", "item", "title", "categories", "brand", "price", "description", "has_catalog"],
    "sequences": ["user_id", "items", "train_items", "valid_item", "test_item", "length"],
    "interactions": ["user_id", "item_id", "timestamp", "batch", "event_order", "source"],
    "rejects": ["source", "input", "line", "reason", "raw"],
    "sources": ["path", "input", "sha256", "batch", "rows_read"],
    "item_profiles": ["item_id", "status", "profile_text", "content_hash"],
    "user_motivations": ["user_id", "status", "motivation_text", "history_item_ids", "content_hash"],
    "semantic_ids": ["entity_type", "entity_id", "codes", "fit_member"],
    "trained_models": ["seed", "architecture"],
    "recommendations": ["user_id"],
}


def _rows(world: World, name: str, columns: list[str]) -> list[tuple]:
    table = delta.read(world.table(name), columns=columns).to_pylist()
    return sorted(tuple(json.dumps(r[c], sort_keys=True) for c in columns) for r in table)


def _ids(world: World, name: str, column: str) -> set[int]:
    if world.version(name) is None:
        return set()
    values = delta.read(world.table(name), columns=[column]).column(column).to_pylist()
    flat: set[int] = set()
    for v in values:
        if isinstance(v, list):
            flat.update(x for x in v if x is not None)
        elif v is not None:
            flat.add(v)
    return flat


def _assert_consistent(world: World, when: str) -> None:
    """No key twice in any table; every id any table names is in the id maps (which only grow)."""
    for name, keys in KEYS.items():
        if world.version(name) is None:
            continue
        rows = _rows(world, name, keys)
        assert len(rows) == len(set(rows)), f"{when}: {name} holds a key twice"
    users, items = _ids(world, "user_ids", "user_id"), _ids(world, "item_ids", "item_id")
    for name, column in (("interactions", "user_id"), ("sequences", "user_id"), ("user_motivations", "user_id")):
        assert _ids(world, name, column) <= users, f"{when}: {name}.{column} names users not in user_ids"
    for name, column in (
        ("interactions", "item_id"),
        ("sequences", "items"),
        ("items", "item_id"),
        ("item_profiles", "item_id"),
        ("recommendations", "items"),
    ):
        assert _ids(world, name, column) <= items, f"{when}: {name}.{column} names items not in item_ids"
    if world.version("semantic_ids") is not None:
        coded = delta.read(world.table("semantic_ids"), columns=["entity_type", "entity_id"]).to_pylist()
        assert {r["entity_id"] for r in coded if r["entity_type"] == "item"} <= items
        assert {r["entity_id"] for r in coded if r["entity_type"] == "user"} <= users
    if world.version("recommendations") is not None:
        assert _ids(world, "recommendations", "user_id") <= users


def _assert_same_tables(reference: World, killed: World, when: str) -> None:
    for name, columns in COMPARED.items():
        assert (reference.version(name) is None) == (killed.version(name) is None), f"{when}: {name}"
        if reference.version(name) is None:
            continue
        assert _rows(killed, name, columns) == _rows(reference, name, columns), f"{when}: {name} differs"
    # evaluation_ranks is appended to by every evaluate: a dead run's rows must not count twice, so each
    # trained model (train run, seed, protocol) has exactly one set of ranks, for the same users.
    for world in (reference, killed):
        ranks = delta.read(world.table("evaluation_ranks")).to_pylist()
        per_model: dict[tuple, set] = {}
        for r in ranks:
            per_model.setdefault((r["train_run_id"], r["seed"], r["protocol"]), set()).add(r["eval_run_id"])
        assert all(len(runs) == 1 for runs in per_model.values()), f"{when}: a model ranked twice: {per_model}"
    assert len(_rows(killed, "evaluation_ranks", ["seed", "protocol", "user_id"])) == len(
        _rows(reference, "evaluation_ranks", ["seed", "protocol", "user_id"])
    )
    for world in (reference, killed):
        recs = delta.read(world.table("recommendations"), columns=["items"]).column("items").to_pylist()
        assert recs and all(len(r) == len(recs[0]) for r in recs)


def test_killed_runs_converge_to_the_uninterrupted_tables(tmp_path):
    reference, killed = World(tmp_path / "reference"), World(tmp_path / "killed")
    for world in (reference, killed):
        world.root.mkdir()

    _finish(reference, ["run"])
    _assert_consistent(reference, "reference pipeline")

    for point in PIPELINE_POINTS:
        _kill_at(killed, ["run"], point)
    _finish(killed, ["run"])
    _assert_consistent(killed, "pipeline after 7 kills")
    _assert_same_tables(reference, killed, "pipeline")

    # The same night's logs for both worlds (their sequences are equal now, so the same users and items).
    logs = tmp_path / "night.csv"
    write_csv(new_events(reference.cfg(), users=3, events=2, seed=0), str(logs))
    refresh = ["refresh", "--new-logs", str(logs)]
    _finish(reference, refresh)
    for point in REFRESH_POINTS:
        _kill_at(killed, refresh, point)
    _finish(killed, refresh)
    _assert_consistent(killed, "refresh after 2 kills")
    _assert_same_tables(reference, killed, "refresh")
