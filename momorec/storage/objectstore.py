"""Every file the platform reads or writes outside Delta and Spark, on a local disk or an object store.

One location string names a file or folder anywhere: a local path, `file://`, `s3://`, `gs://` or
`abfss://`. pyarrow.fs turns it into a file system; nothing here is a file system of our own.

Credentials come only from the environment (AWS_*, GOOGLE_APPLICATION_CREDENTIALS, AZURE_*, or the
pod's identity: IRSA, workload identity), the way pyarrow, delta-rs and boto3 (MLflow's artifacts)
each find them. The config's `storage.options` holds the non-secret settings (endpoint, region,
allow-http); `configure` exports them as the same environment variables, so all three libraries and
every Ray worker see one setting. Secret-looking keys are refused there (see StorageConfig).

Writes are atomic: a local file is written beside its target and renamed; an object-store PUT is
atomic by itself (readers see the old object or the new one, never half).
"""

from __future__ import annotations

import fnmatch
import io
import json
import logging
import os
import posixpath
from collections.abc import Mapping
from typing import Any, BinaryIO

import pyarrow.fs as pafs

from momorec.storage.locations import is_uri

log = logging.getLogger(__name__)


_configured: dict[str, str] = {}


def configure(options: Mapping[str, str]) -> None:
    """Export the config's non-secret storage settings (AWS_ENDPOINT_URL, AWS_REGION ...) to this
    process's environment, where pyarrow, delta-rs, boto3 and Ray workers started from it read them."""
    for key, value in options.items():
        if os.environ.get(key) != value:
            log.info("storage setting %s taken from the config", key)  # the value may name a private endpoint
            os.environ[key] = value
        _configured[key] = value


def configured() -> dict[str, str]:
    """The settings `configure` exported: what workers on a remote Ray cluster must be given."""
    return dict(_configured)


def filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    """(file system, path inside it) for a location."""
    if is_uri(location):
        return pafs.FileSystem.from_uri(location)
    return pafs.LocalFileSystem(), os.path.abspath(location)


def filesystem_paths(locations: list[str]) -> tuple[pafs.FileSystem, list[str]]:
    """One file system for locations that share it (a table's data files), and each one's path inside it."""
    fs, _ = filesystem(locations[0])
    return fs, [filesystem(location)[1] for location in locations]


def join(location: str, *parts: str) -> str:
    """`location`/part/...: '/'-joined for URIs, os.path.join for local paths."""
    if is_uri(location):
        return posixpath.join(location.rstrip("/"), *parts) if parts else location
    return os.path.join(location, *parts)


def name(location: str) -> str:
    """The last component of a location (a file or folder name)."""
    return (
        posixpath.basename(location.rstrip("/")) if is_uri(location) else os.path.basename(os.path.normpath(location))
    )


def parent(location: str) -> str:
    return posixpath.dirname(location.rstrip("/")) if is_uri(location) else os.path.dirname(location)


def _info(location: str) -> pafs.FileInfo:
    fs, path = filesystem(location)
    return fs.get_file_info(path)


def exists(location: str) -> bool:
    return _info(location).type != pafs.FileType.NotFound


def is_file(location: str) -> bool:
    return _info(location).type == pafs.FileType.File


def is_dir(location: str) -> bool:
    # Object stores have no folders: a prefix holding objects is one.
    fs, path = filesystem(location)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.Directory:
        return True
    if info.type == pafs.FileType.File or not is_uri(location):
        return False
    return bool(fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=False)))


def size(location: str) -> int:
    info = _info(location)
    if info.type != pafs.FileType.File:
        raise FileNotFoundError(f"no file at {location}")
    return int(info.size)


def open_input(location: str) -> BinaryIO:
    """A buffered, seekable binary stream of the file (the caller closes it)."""
    try:
        if not is_uri(location):
            return open(location, "rb")  # noqa: SIM115 - the caller closes it
        fs, path = filesystem(location)
        return io.BufferedReader(fs.open_input_file(path), buffer_size=1 << 20)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"no file at {location}") from exc


def read_bytes(location: str) -> bytes:
    with open_input(location) as fh:
        return fh.read()


def write_bytes(location: str, data: bytes) -> None:
    """Write `data` to `location` atomically, creating folders as needed."""
    if is_uri(location) and not location.startswith("file://"):
        fs, path = filesystem(location)
        with fs.open_output_stream(path) as out:
            out.write(data)
        return
    fs, path = filesystem(location)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "wb") as out:
        out.write(data)
    os.replace(temporary, path)


def read_json(location: str) -> Any:
    return json.loads(read_bytes(location).decode("utf-8"))


def write_json(location: str, value: Any) -> None:
    write_bytes(location, json.dumps(value, indent=1, sort_keys=True, default=str).encode("utf-8"))


def make_dirs(location: str) -> None:
    """Create a local folder (object stores need none: a key's prefix is its folder)."""
    if not is_uri(location):
        os.makedirs(location, exist_ok=True)


def list_files(location: str, suffix: str = "", recursive: bool = False) -> list[str]:
    """Files under a folder, sorted, as locations; names starting with '.' or '_' are left out."""
    fs, path = filesystem(location)
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=recursive))
    found = []
    for info in infos:
        relative = posixpath.relpath(info.path, path) if is_uri(location) else os.path.relpath(info.path, path)
        hidden = any(part.startswith((".", "_")) for part in relative.replace(os.sep, "/").split("/"))
        if info.type == pafs.FileType.File and not hidden and info.base_name.endswith(suffix):
            found.append(join(location, *relative.replace(os.sep, "/").split("/")))
    return sorted(found)


def glob(pattern: str) -> list[str]:
    """Files matching a glob (`*`, `?`, `[...]` in the last components), sorted."""
    if not is_uri(pattern):
        import glob as local_glob

        return sorted(local_glob.glob(pattern))
    scheme, rest = pattern.split("://", 1)
    fixed = rest.split("/")
    first_wild = next(i for i, part in enumerate(fixed) if any(c in part for c in "*?["))
    root = f"{scheme}://" + "/".join(fixed[:first_wild])
    return [f for f in list_files(root, recursive=True) if fnmatch.fnmatchcase(f, pattern)]


def delete(location: str) -> None:
    """Remove a file or a whole folder; a missing one is fine."""
    fs, path = filesystem(location)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.File:
        fs.delete_file(path)
    elif info.type == pafs.FileType.Directory or (is_uri(location) and is_dir(location)):
        fs.delete_dir(path)


def copy_tree(source: str, destination: str) -> None:
    """Copy a folder between any two locations (upload, download or within one store)."""
    source_fs, source_path = filesystem(source)
    destination_fs, destination_path = filesystem(destination)
    make_dirs(destination)
    pafs.copy_files(source_path, destination_path, source_filesystem=source_fs, destination_filesystem=destination_fs)
