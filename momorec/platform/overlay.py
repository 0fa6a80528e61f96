"""A partial config YAML (an overlay, e.g. infra/spark-cluster.yaml) as `--set` overrides.

`momorec --config` reads one file; an overlay adds cluster settings on top of any dataset config
without copying it. Each leaf becomes `section.key=<value as JSON>` (JSON is YAML, so `--set` parses
it back to the same value). Mappings are followed down to their leaves, except a mapping whose keys
contain dots (`spark.conf: {spark.executor.memory: 8g}`): that one is set as a whole, because a
dotted key cannot be told apart from nesting in an override.

    momorec submit run -c configs/beauty.yaml --overlay infra/spark-cluster.yaml --address ...
    python -m momorec.platform.overlay infra/cluster.yaml infra/spark-cluster.yaml -- run -c configs/beauty.yaml
    python -m momorec.platform.overlay infra/spark-cluster.yaml      # prints the --set flags

Overlays come first, so a `--set` given on the command line still wins (overrides apply in order).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from typing import Any

from momorec.config import ConfigError, read_yaml_mapping


def _leaves(prefix: str, value: Any, out: list[str]) -> None:
    if isinstance(value, dict) and value and not any("." in str(k) for k in value):
        for key, child in value.items():
            _leaves(f"{prefix}.{key}" if prefix else str(key), child, out)
    else:
        out.append(f"{prefix}={json.dumps(value, separators=(',', ':'))}")


def overlay_sets(path: str | os.PathLike[str]) -> list[str]:
    """The overrides (`a.b=value`) that apply the overlay file at `path`, in file order."""
    tree = read_yaml_mapping(path, "overlay file")
    out: list[str] = []
    _leaves("", tree, out)
    return out


def with_overlays(overlay_paths: list[str], momorec_args: list[str]) -> list[str]:
    """`momorec_args` (command first) with the overlays' --set flags placed right after the command."""
    if not momorec_args:
        raise ConfigError("no momorec command after `--`")
    sets = [arg for path in overlay_paths for s in overlay_sets(path) for arg in ("--set", s)]
    return [momorec_args[0], *sets, *momorec_args[1:]]


def main(argv: list[str] | None = None) -> int:
    """`OVERLAY... -- COMMAND ARGS...` runs `momorec COMMAND` with the overlays; `OVERLAY...` prints the flags."""
    args = sys.argv[1:] if argv is None else argv
    if "--" in args:
        cut = args.index("--")
        from momorec.cli import app

        app(args=with_overlays(args[:cut], args[cut + 1 :]), prog_name="momorec")
        return 0
    sys.stdout.write(" ".join(f"--set {shlex.quote(s)}" for path in args for s in overlay_sets(path)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
