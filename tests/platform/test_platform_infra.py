"""infra/: every manifest parses, names what it must, and points at commands, files and versions that exist."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import yaml

from momorec.config import load_config
from momorec.platform.overlay import overlay_sets

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
IMAGE_ROOT = "/app"  # WORKDIR of infra/docker/Dockerfile: the repository inside the image
DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
IMAGE = re.compile(r"^registry\.example\.com/momorec(-gpu)?:(?P<tag>[\w.-]+)$")


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _kube(kind: str) -> dict:
    found = [d for p in sorted((INFRA / "kuberay").glob("*.yaml")) for d in _docs(p) if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def _walk(node, key: str):
    """Every value stored under `key` anywhere in a nested YAML tree."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield v
            yield from _walk(v, key)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item, key)


def _in_repo(path: str) -> Path:
    assert path.startswith(IMAGE_ROOT + "/"), f"{path} is not inside the image's {IMAGE_ROOT}"
    return REPO / path.removeprefix(IMAGE_ROOT + "/")


def _commands() -> set[str]:
    from momorec.platform.cli_commands import _registered_commands

    return set(_registered_commands())


def _check_command(name: str) -> None:
    assert name in _commands(), f"momorec has no command {name!r}"


def _ray_version() -> str:
    import ray

    return ray.__version__


# ---- cron -------------------------------------------------------------------------------------

CRON_FIELDS = [
    (0, 59, {}),
    (0, 23, {}),
    (1, 31, {}),
    (1, 12, {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())}),
    (0, 7, {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}),
]


def valid_cron(expr: str) -> bool:
    """A standard 5-field cron expression (Kubernetes CronJob syntax: lists, ranges, steps, names, @macros)."""
    if expr in ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"):
        return True
    fields = expr.split()
    if len(fields) != 5:
        return False
    for text, (low, high, names) in zip(fields, CRON_FIELDS, strict=True):
        for item in text.split(","):
            base, _, step = item.partition("/")
            if step and not (step.isdigit() and int(step) > 0):
                return False
            if base in ("*", "?"):
                continue
            bounds = base.split("-")
            if len(bounds) > 2:
                return False
            values = [names.get(b.lower(), int(b) if b.isdigit() else None) for b in bounds]
            if any(v is None or not low <= v <= high for v in values) or (len(values) == 2 and values[0] > values[1]):
                return False
    return True


def test_cron_validator():
    assert valid_cron("30 2 * * *") and valid_cron("*/15 0-6 1,15 jan-jun mon-fri") and valid_cron("@daily")
    assert not valid_cron("61 2 * * *") and not valid_cron("30 2 * *") and not valid_cron("30 2 * * 8")
    assert not valid_cron("*/0 * * * *") and not valid_cron("5-1 * * * *")


# ---- every file -------------------------------------------------------------------------------


def test_every_manifest_parses_and_kubernetes_objects_have_identity():
    files = sorted(INFRA.rglob("*.yaml"))
    assert {p.name for p in files} >= {
        "ray-cluster.yaml",
        "spark-cluster.yaml",
        "cluster.yaml",
        "rayjob-pipeline.yaml",
        "raycluster.yaml",
        "refresh-cronjob.yaml",
    }
    for path in files:
        assert _docs(path), f"{path} is empty"
    for path in sorted((INFRA / "kuberay").glob("*.yaml")):
        for doc in _docs(path):
            assert doc["apiVersion"] and doc["kind"], path
            assert DNS_1123.match(doc["metadata"]["name"]) and len(doc["metadata"]["name"]) <= 63, path


def test_containers_use_the_momorec_image_and_set_resources():
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    for path in sorted((INFRA / "kuberay").glob("*.yaml")):
        for doc in _docs(path):
            containers = [c for group in _walk(doc, "containers") for c in group]
            assert containers, f"{path}: {doc['kind']} has no containers"
            for c in containers:
                match = IMAGE.match(c["image"])
                assert match and match["tag"] == version, f"{path}: image {c['image']} is not momorec:{version}"
                for part in ("requests", "limits"):
                    assert {"cpu", "memory"} <= set(c["resources"][part]), f"{path}: {c['name']} {part}"


def test_no_secret_is_written_into_a_manifest():
    for path in sorted(INFRA.rglob("*.yaml")):
        for doc in _docs(path):
            for env in _walk(doc, "env"):
                for var in env if isinstance(env, list) else []:
                    if re.search(r"TOKEN|SECRET|PASSWORD|KEY", var["name"]):
                        assert "valueFrom" in var and "value" not in var, f"{path}: {var['name']} is a literal"
        assert "RAY_AUTH_TOKEN=" not in path.read_text(), path


def test_ray_versions_match_the_pinned_ray():
    version = _ray_version()
    assert _kube("RayJob")["spec"]["rayClusterSpec"]["rayVersion"] == version
    assert _kube("RayCluster")["spec"]["rayVersion"] == version
    dockerfile = (INFRA / "docker" / "Dockerfile").read_text()
    assert re.search(rf"^FROM rayproject/ray:{re.escape(version)}-py311", dockerfile, re.M)
    for source in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", dockerfile, re.M):
        for name in source.split():
            assert (REPO / name).exists(), f"Dockerfile copies {name}, which does not exist"


# ---- the pipeline RayJob ----------------------------------------------------------------------


def test_rayjob_runs_the_pipeline_with_a_config_that_validates():
    job = _kube("RayJob")
    spec = job["spec"]
    assert job["apiVersion"] == "ray.io/v1"
    assert spec["rayClusterSpec"]["authOptions"]["mode"] == "token"
    assert spec["shutdownAfterJobFinishes"] is True
    yaml.safe_load(spec["runtimeEnvYAML"])
    args = shlex.split(spec["entrypoint"])
    assert args[:3] == ["python", "-m", "momorec.platform.overlay"]
    cut = args.index("--")
    overlays, momorec_args = [_in_repo(p) for p in args[3:cut]], args[cut + 1 :]
    assert momorec_args[0] == "run"
    _check_command(momorec_args[0])
    config = _in_repo(momorec_args[momorec_args.index("--config") + 1])
    cfg = load_config(config, [s for o in overlays for s in overlay_sets(o)])
    assert cfg.warehouse.startswith("s3://") and cfg.spark.master.startswith("spark://")
    assert cfg.tracking.tracking_uri.startswith("http")
    head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {p["containerPort"] for p in head["ports"]} >= {8265, 6379, int(cfg.spark.conf["spark.driver.port"])}


# ---- the nightly refresh ----------------------------------------------------------------------


def test_nightly_cronjob_submits_refresh_to_the_raycluster():
    cron, cluster = _kube("CronJob"), _kube("RayCluster")
    assert cron["apiVersion"] == "batch/v1"
    assert valid_cron(cron["spec"]["schedule"])
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    container = pod["containers"][0]
    assert container["command"] == ["/bin/sh", "-c"]
    args = shlex.split(container["args"][0].removeprefix("exec "))
    assert args[:2] == ["momorec", "submit"]
    assert "--follow" in args and "--new-logs" in args[args.index("--") :]
    assert args[args.index("--address") + 1] == f"http://{cluster['metadata']['name']}-head-svc:8265"
    token = {v["name"]: v for v in container["env"]}["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert token["name"] == cluster["spec"]["authOptions"]["secretName"]
    overlays = [_in_repo(args[i + 1]) for i, a in enumerate(args) if a == "--overlay"]
    config = _in_repo(args[args.index("--config") + 1])
    load_config(config, [s for o in overlays for s in overlay_sets(o)])
    _check_command(args[2])
    assert args[2] == "refresh"


# ---- the VM cluster launcher ------------------------------------------------------------------


def test_cluster_launcher_config_passes_rays_schema_with_token_auth():
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((INFRA / "ray-cluster.yaml").read_text())
    validate_config(prepare_config(dict(raw)))  # Ray's own JSON schema (ray/autoscaler/ray-schema.json)
    assert raw["head_node_type"] in raw["available_node_types"]
    assert IMAGE.match(raw["docker"]["image"])
    assert "~/.ray/auth_token" in raw["file_mounts"]
    for command in raw["head_start_ray_commands"][1:] + raw["worker_start_ray_commands"][1:]:
        assert "RAY_AUTH_MODE=token ray start" in command
