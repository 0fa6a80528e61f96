"""The dataset lease: one holder at a time, on a local disk and on S3; a dead or expired holder is taken over."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import pytest

from momorec.config import PlatformConfig
from momorec.storage import lease, objectstore


@pytest.fixture(params=["local", "s3"])
def warehouse(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "wh")
    return request.getfixturevalue("s3_bucket") + "/wh"


def _cfg(warehouse: str, wait: float = 0.0, ttl: float = 60.0) -> PlatformConfig:
    return PlatformConfig(dataset="d", warehouse=warehouse, storage={"lease_wait_s": wait, "lease_ttl_s": ttl})


def _plant(path: str, **row) -> None:
    """Write a lease row as another run would have left it."""
    base = {"holder": "other", "command": "run", "host": socket.gethostname(), "pid": 1, "acquired_at": time.time()}
    assert lease._commit(path, [{**base, **row}], lease._read(path)[1])


def test_a_second_holder_fails_fast_with_the_holder_named(warehouse):
    with lease.held(_cfg(warehouse), "ingest") as first:
        with lease.held(_cfg(warehouse), "train") as again:  # re-entrant in one process
            assert again is first
        with pytest.raises(lease.LeaseHeld, match="momorec ingest"):
            lease.acquire(first.path, "refresh", ttl_s=60, wait_s=0)  # another run (no re-entry)
        row, _ = lease._read(first.path)
        assert row["holder"] == first.holder and row["command"] == "ingest"
    assert lease._read(first.path)[0] is None  # released


def test_a_live_foreign_lease_blocks_and_names_its_holder(warehouse):
    path = objectstore.join(_cfg(warehouse).dataset_root, lease.TABLE)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _plant(path, pid=sleeper.pid, expires_at=time.time() + 60)
        start = time.monotonic()
        with pytest.raises(lease.LeaseHeld, match=rf"momorec run` \(pid {sleeper.pid} on"):
            with lease.held(_cfg(warehouse, wait=1.0), "ingest"):
                pass
        assert 0.9 <= time.monotonic() - start < 10
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_dead_holder_on_this_host_is_taken_over_at_once(warehouse):
    path = objectstore.join(_cfg(warehouse).dataset_root, lease.TABLE)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _plant(path, pid=dead.pid, expires_at=time.time() + 600)
    with lease.held(_cfg(warehouse), "ingest") as mine:
        assert lease._read(path)[0]["holder"] == mine.holder


def test_an_expired_lease_of_another_host_is_taken_over(warehouse):
    path = objectstore.join(_cfg(warehouse).dataset_root, lease.TABLE)
    _plant(path, host="another-host", pid=1, expires_at=time.time() - 1)
    with lease.held(_cfg(warehouse), "ingest") as mine:
        assert lease._read(path)[0]["holder"] == mine.holder


def test_racing_acquirers_get_exactly_one_lease(warehouse):
    path = objectstore.join(_cfg(warehouse).dataset_root, lease.TABLE)
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def contend() -> None:
        barrier.wait()
        try:
            lease.acquire(path, "run", ttl_s=60, wait_s=0)
            outcomes.append("won")
        except lease.LeaseHeld:
            outcomes.append("held")

    threads = [threading.Thread(target=contend) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["held", "held", "held", "won"]


def test_renewal_moves_the_expiry_and_detects_a_takeover(warehouse):
    path = objectstore.join(_cfg(warehouse).dataset_root, lease.TABLE)
    mine = lease.acquire(path, "run", ttl_s=60, wait_s=0)
    before = lease._read(path)[0]["expires_at"]
    time.sleep(0.05)
    assert lease.renew(mine)
    assert lease._read(path)[0]["expires_at"] > before
    _plant(path, host="another-host", expires_at=time.time() + 60)
    assert not lease.renew(mine) and mine.lost


def test_a_conflicting_commit_is_retried_then_reported(tmp_path):
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake
    from deltalake.exceptions import CommitFailedError

    from momorec.storage import delta

    path = str(tmp_path / "t")
    delta.write(path, pa.table({"k": [1], "v": ["a"]}))
    stale = DeltaTable(path)
    attempts = []

    def conflicting_then_fine() -> None:  # the first attempt commits on a stale snapshot, as a racing writer would
        attempts.append(1)
        table = stale if len(attempts) == 1 else DeltaTable(path)
        write_deltalake(table, pa.table({"k": [2], "v": ["b"]}), mode="overwrite")

    write_deltalake(path, pa.table({"k": [3], "v": ["c"]}), mode="overwrite")  # the other writer
    delta.committed(path, conflicting_then_fine)
    assert len(attempts) == 2 and delta.read(path).to_pylist() == [{"k": 2, "v": "b"}]

    def always_conflicting() -> None:
        raise CommitFailedError("concurrent overwrite")

    with pytest.raises(delta.CommitConflict, match="conflicted with concurrent writers 3 times"):
        delta.committed(path, always_conflicting, attempts=3)


def test_concurrent_upserts_keep_every_row(tmp_path):
    import pyarrow as pa

    from momorec.storage import delta

    path = str(tmp_path / "t")
    delta.write(path, pa.table({"k": pa.array([0], pa.int64()), "v": ["seed"]}))
    errors: list[BaseException] = []

    def upsert(worker: int) -> None:
        try:
            for step in range(3):
                keys = pa.array([worker * 10 + step, 0], pa.int64())
                delta.upsert(path, pa.table({"k": keys, "v": [f"w{worker}", f"w{worker}"]}), ["k"])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=upsert, args=(w,)) for w in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    rows = {r["k"]: r["v"] for r in delta.read(path).to_pylist()}
    assert set(rows) == {0, 10, 11, 12, 20, 21, 22, 30, 31, 32}
    assert rows[0] in {"w1", "w2", "w3"}
