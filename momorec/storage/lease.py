"""One run at a time per dataset: a lease in a tiny Delta table beside the dataset's tables.

Two runs on one warehouse and dataset would interleave their commits (ingest's id maps, the codebook
pointer, the registry aliases). So a run holds `<warehouse>/<dataset>/_lease` while it works; a second
one waits up to `storage.lease_wait_s`, then fails with a message naming the holder.

Taking the lease is a Delta commit conditioned on the version just read (`max_commit_retries=0`):
delta-rs writes `_delta_log/<n>.json` only if it does not exist yet (an atomic create on a local disk;
a conditional PUT on S3, GCS and Azure), so of two runs racing for version n exactly one wins, on any
store the warehouse can be on, with no lock service. The holder renews the lease every third of its
TTL; a killed holder stops renewing and its lease expires (or is taken over at once on the same host,
when its pid is gone). Within one process the lease is re-entrant: the pipeline holds it, and each
stage it runs finds it held.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa

from momorec.config import PlatformConfig
from momorec.storage import objectstore

log = logging.getLogger(__name__)

TABLE = "_lease"
SCHEMA = pa.schema(
    [
        ("holder", pa.string()),
        ("command", pa.string()),
        ("host", pa.string()),
        ("pid", pa.int64()),
        ("acquired_at", pa.float64()),
        ("expires_at", pa.float64()),
    ]
)
POLL_S = 2.0


class LeaseHeld(RuntimeError):
    """Another run holds the dataset: the message says who, since when, and until when."""


@dataclass
class Lease:
    path: str
    holder: str
    command: str
    ttl_s: float
    acquired_at: float
    depth: int = 1
    lost: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)

    def row(self, now: float) -> dict:
        return {
            "holder": self.holder,
            "command": self.command,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "acquired_at": self.acquired_at,
            "expires_at": now + self.ttl_s,
        }


_held: dict[str, Lease] = {}
_guard = threading.Lock()


def _read(path: str) -> tuple[dict | None, int | None]:
    """(the current lease row or None, the table version or None when there is no table)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        table = DeltaTable(path)
    except TableNotFoundError:
        return None, None
    rows = table.to_pyarrow_table().to_pylist()
    return (rows[0] if rows else None), table.version()


def _commit(path: str, rows: list[dict], version: int | None) -> bool:
    """Write `rows` as the table's content if it is still at `version`; False when another run got there first."""
    from deltalake import CommitProperties, DeltaTable, write_deltalake
    from deltalake.exceptions import CommitFailedError, DeltaError

    data = pa.Table.from_pylist(rows, schema=SCHEMA)
    # No retry: delta-rs would otherwise rebase a losing commit onto the winner's version.
    once = CommitProperties(max_commit_retries=0)
    try:
        if version is None:
            objectstore.make_dirs(path)
            write_deltalake(path, data, mode="error", commit_properties=once)
        else:
            write_deltalake(DeltaTable(path, version=version), data, mode="overwrite", commit_properties=once)
    except CommitFailedError:
        return False
    except DeltaError as exc:
        if version is None and "exists" in str(exc).lower():
            return False  # another run created the table first
        raise
    return True


def _holder_gone(row: dict, now: float) -> bool:
    """An expired lease, or one whose process on this host no longer runs."""
    if row["expires_at"] <= now:
        return True
    if row["host"] != socket.gethostname():
        return False
    try:
        os.kill(int(row["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def describe(row: dict, now: float) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(row["acquired_at"]))
    return (
        f"`momorec {row['command']}` (pid {row['pid']} on {row['host']}) since {started}; "
        f"its lease expires in {max(0.0, row['expires_at'] - now):.0f} s unless it renews it"
    )


def acquire(path: str, command: str, ttl_s: float, wait_s: float) -> Lease:
    """Take the lease at `path`, waiting up to `wait_s` for a live holder; LeaseHeld after that."""
    lease = Lease(path=path, holder=uuid.uuid4().hex, command=command, ttl_s=ttl_s, acquired_at=time.time())
    deadline = time.monotonic() + wait_s
    while True:
        row, version = _read(path)
        now = time.time()
        if row is None or _holder_gone(row, now):
            if row is not None:
                log.warning("taking over the lease of %s: %s", path, describe(row, now))
            lease.acquired_at = now
            if _commit(path, [lease.row(now)], version):
                return lease
            continue  # another run committed first: read again
        if time.monotonic() >= deadline:
            waited = f" after waiting {wait_s:.0f} s" if wait_s else ""
            raise LeaseHeld(
                f"{objectstore.parent(path)} is in use by {describe(row, now)}{waited}. Wait for it, or set "
                "storage.lease_wait_s to queue behind it"
            )
        time.sleep(min(POLL_S, max(0.05, deadline - time.monotonic())))


def renew(lease: Lease) -> bool:
    """Push the expiry forward; False (and `lease.lost`) when another run took the lease meanwhile."""
    row, version = _read(lease.path)
    if row is None or row["holder"] != lease.holder or not _commit(lease.path, [lease.row(time.time())], version):
        lease.lost = True
        log.error("the lease on %s was lost: another run may be writing this dataset", lease.path)
        return False
    return True


def release(lease: Lease) -> None:
    """Give the lease up (an empty table), unless another run has taken it since."""
    for _ in range(3):
        row, version = _read(lease.path)
        if row is None or row["holder"] != lease.holder:
            return
        if _commit(lease.path, [], version):
            return


def _keep_renewed(lease: Lease) -> None:
    while not lease._stop.wait(lease.ttl_s / 3):
        try:
            if not renew(lease):
                return
        except Exception:  # a flaky store must not kill the run; the next renewal tries again
            log.exception("renewing the lease on %s failed", lease.path)


@contextlib.contextmanager
def held(cfg: PlatformConfig, command: str) -> Iterator[Lease]:
    """Hold the dataset's lease for the block (re-entrant within a process); applies the storage settings."""
    objectstore.configure(cfg.storage.options)
    path = objectstore.join(cfg.dataset_root, TABLE)
    with _guard:
        lease = _held.get(path)
        if lease is not None:
            lease.depth += 1
    if lease is not None:
        try:
            yield lease
        finally:
            with _guard:
                lease.depth -= 1
        return
    lease = acquire(path, command, cfg.storage.lease_ttl_s, cfg.storage.lease_wait_s)
    renewer = threading.Thread(target=_keep_renewed, args=(lease,), name="momorec-lease", daemon=True)
    renewer.start()
    with _guard:
        _held[path] = lease
    try:
        yield lease
    finally:
        lease._stop.set()
        renewer.join(timeout=30)
        with _guard:
            _held.pop(path, None)
        release(lease)
