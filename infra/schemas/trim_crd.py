"""Trim a KubeRay CRD to what validation reads, so the repo can ship it: the served `v1` schema without prose.

    git -C kuberay show v1.7.0:helm-chart/kuberay-operator/crds/ray.io_rayclusters.yaml \
        | python infra/schemas/trim_crd.py > infra/schemas/kuberay-v1.7.0/ray.io_rayclusters.json

Dropped: every schema's `description` (prose, most of the bytes), the other API versions, printer columns and
subresources. Everything that constrains a manifest (types, required, enums, patterns, int-or-string,
preserve-unknown-fields, CEL rules) is kept as the CRD states it.
"""

from __future__ import annotations

import json
import sys

import yaml

VERSION = "v1"


def _without_prose(schema):
    """The schema with its `description` keywords removed; field names under `properties` are left alone."""
    if isinstance(schema, list):
        return [_without_prose(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "description":
            continue
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {name: _without_prose(sub) for name, sub in value.items()}
        else:
            out[key] = _without_prose(value)
    return out


def trim(crd: dict) -> dict:
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == VERSION]
    return {
        "apiVersion": crd["apiVersion"],
        "kind": crd["kind"],
        "metadata": {"name": crd["metadata"]["name"], "annotations": crd["metadata"].get("annotations", {})},
        "spec": {
            "group": crd["spec"]["group"],
            "names": crd["spec"]["names"],
            "scope": crd["spec"]["scope"],
            "versions": [
                {
                    "name": version["name"],
                    "served": version["served"],
                    "storage": version["storage"],
                    "schema": {"openAPIV3Schema": _without_prose(version["schema"]["openAPIV3Schema"])},
                }
            ],
        },
    }


if __name__ == "__main__":
    json.dump(trim(yaml.safe_load(sys.stdin)), sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")
