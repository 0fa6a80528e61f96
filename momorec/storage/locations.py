"""Locations in a config: what is a URI, and how a relative path becomes absolute.

Every location is resolved once, when the config is loaded, so that what travels to Ray workers,
Spark executors and submitted jobs never depends on their working folder (a Ray Train worker runs in
/tmp/ray/session_*/artifacts/..., where a relative `warehouse` points nowhere).

The rule, the same for every location: a path written in a config file for an *input* is relative to
that file's folder; every other relative path (the warehouse, staging, checkpoints, caches, the
tracking store, and any path given with `--set`) is relative to the folder the command was started in.
URIs (`s3://`, `gs://`, `abfss://`, `file://`, `http://` ...) are left as they are.
"""

from __future__ import annotations

import os
import re

# A scheme is at least two characters, so a Windows drive letter (C:\x) is not mistaken for one.
# MLflow's model and run URIs (models:/name@champion, runs:/id/path) have a single slash.
_URI = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]+://|models:/|runs:/)")
# MLflow's local stores: sqlite:///relative.db (three slashes + a relative path), file:relative.
_SQLITE = "sqlite:///"


def is_uri(location: str) -> bool:
    """True for `scheme://...` (object stores, file://, http://) and MLflow's models:/ and runs:/ URIs;
    False for plain paths."""
    return bool(_URI.match(location))


def resolve_path(location: str, base: str) -> str:
    """`location` as an absolute path (against `base`, with `~` expanded), or unchanged when a URI."""
    if is_uri(location):
        return location
    expanded = os.path.expanduser(location)
    return os.path.normpath(expanded if os.path.isabs(expanded) else os.path.join(base, expanded))


def resolve_optional(location: str | None, base: str) -> str | None:
    return None if location is None else resolve_path(location, base)


def resolve_tracking_uri(uri: str, base: str) -> str:
    """An MLflow tracking URI with a relative sqlite or plain-path store made absolute.

    `sqlite:///mlflow.db` is relative to the working folder in MLflow itself, so it is resolved here;
    `sqlite:////abs/x.db`, `http://`, `databricks` and other URIs are left as they are.
    """
    if uri.startswith(_SQLITE):
        path = uri[len(_SQLITE) :]
        return uri if path.startswith("/") else _SQLITE + resolve_path(path, base)
    if ":" not in uri:  # a bare folder: MLflow's file store
        return resolve_path(uri, base)
    return uri
