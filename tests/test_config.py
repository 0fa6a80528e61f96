"""The typed config: YAML + overrides, clear errors."""

from __future__ import annotations

import os

import pytest

from momorec.config import ConfigError, load_config, parse_override
from tests.conftest import DEMO_CONFIG as DEMO
from tests.conftest import REPO


def test_shipped_configs_load_and_resolve_input_paths():
    for name in ("demo", "beauty", "ml100k"):
        cfg = load_config(REPO / "configs" / f"{name}.yaml")
        assert cfg.dataset == name
        for source in cfg.ingest.sources:
            assert source.path.startswith("/"), "input paths resolve against the config file's folder"
    assert load_config(REPO / "configs/demo.yaml").ingest.sources[0].path == str(REPO / "data/demo/sequences.txt")


def test_overrides_apply_in_order_and_parse_values_as_yaml():
    cfg = load_config(REPO / "configs/demo.yaml", ["ingest.kcore=3", "ingest.kcore=5", "spark.conf={a.b: c}"])
    assert cfg.ingest.kcore == 5
    assert cfg.spark.conf == {"a.b": "c"}
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])


@pytest.mark.parametrize(
    "override, message",
    [
        ("ingest.kcore=many", "ingest.kcore"),
        ("ingest.nope=1", "ingest.nope"),
        ("nosection.key=1", "nosection"),
        ("ingest.kcore", "section.key=value"),
        ("ingest.min_user_events=2", "ingest.min_user_events"),
    ],
)
def test_bad_keys_and_types_are_clear_errors(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(REPO / "configs/demo.yaml", [override])


def test_whitening_without_pca_is_a_clear_error():
    with pytest.raises(ConfigError, match="pca_whiten needs PCA"):
        load_config(REPO / "configs/demo.yaml", ["quantize.pca_whiten=true", "quantize.pca_dim=null"])
    assert load_config(REPO / "configs/demo.yaml", ["quantize.pca_whiten=true"]).quantize.pca_whiten


def test_per_entity_quantize_settings_override_only_the_keys_given():
    cfg = load_config(
        REPO / "configs/demo.yaml",
        ["quantize.pca_dim=64", "quantize.per_entity={item: {pca_dim: 128, pca_whiten: true}, user: {pca_dim: null}}"],
    )
    item, user = cfg.quantize.for_entity("item"), cfg.quantize.for_entity("user")
    assert (item.pca_dim, item.pca_whiten, item.levels) == (128, True, cfg.quantize.levels)
    assert (user.pca_dim, user.pca_whiten) == (None, False)  # an explicit null sets PCA off
    assert cfg.quantize.pca_dim == 64 and item.per_entity == {}
    with pytest.raises(ConfigError, match="per_entity.item: codes lists 3 sizes but levels is 2"):
        load_config(REPO / "configs/demo.yaml", ["quantize.per_entity={item: {levels: 2, codes: [4, 4, 4]}}"])
    with pytest.raises(ConfigError, match="per_entity"):
        load_config(REPO / "configs/demo.yaml", ["quantize.per_entity={shop: {levels: 2}}"])


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_every_location_is_resolved_once_at_load(tmp_path, monkeypatch):
    """Relative inputs in the file: against the file's folder; everything else: against the working folder."""
    conf = tmp_path / "conf"
    work = tmp_path / "work"
    conf.mkdir()
    work.mkdir()
    (conf / "c.yaml").write_text(
        "dataset: d\nwarehouse: wh\ningest:\n  sources: [{path: ../data/ev.csv}]\n  catalog: {path: items.jsonl}\n"
        "train:\n  checkpoint_dir: ckpt\n  fault_injection: {marker: m.flag}\n"
        "tracking: {tracking_uri: 'sqlite:///ml.db', artifact_location: art}\n"
    )
    monkeypatch.chdir(work)
    cfg = load_config(
        conf / "c.yaml", ["ingest.staging_dir=stage", "train.warm_start=~/w.pt", "motivate.llm.cache_dir=cache"]
    )
    assert cfg.ingest.sources[0].path == str(tmp_path / "data" / "ev.csv")
    assert cfg.ingest.catalog.path == str(conf / "items.jsonl")
    assert cfg.warehouse == str(work / "wh") and cfg.dataset_root == str(work / "wh" / "d")
    assert cfg.ingest.staging_dir == str(work / "stage")
    assert cfg.train.checkpoint_dir == str(work / "ckpt")
    assert cfg.train.fault_injection.marker == str(work / "m.flag")
    assert cfg.train.warm_start == os.path.expanduser("~/w.pt")
    assert cfg.motivate.llm.cache_dir == str(work / "cache")
    assert cfg.tracking.tracking_uri == f"sqlite:///{work / 'ml.db'}"
    assert cfg.tracking.artifact_location == str(work / "art")
    assert cfg.log_dir == str(work / "logs")
    # An override of an input path means the working folder, like every other --set path.
    assert load_config(conf / "c.yaml", ["ingest.catalog.path=cat.jsonl"]).ingest.catalog.path == str(
        work / "cat.jsonl"
    )


def test_uris_are_left_as_they_are(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(
        DEMO,
        [
            "warehouse=s3://bucket/wh",
            "tracking.tracking_uri=http://127.0.0.1:5000",
            "tracking.artifact_location=s3://bucket/mlartifacts",
            "train.checkpoint_dir=gs://b/ck",
        ],
    )
    assert cfg.warehouse == "s3://bucket/wh" and cfg.dataset_root == "s3://bucket/wh/demo"
    assert cfg.tracking.tracking_uri == "http://127.0.0.1:5000"
    assert cfg.tracking.artifact_location == "s3://bucket/mlartifacts"
    assert cfg.train.checkpoint_dir == "gs://b/ck"
    # Loading a resolved config again (as a worker or a submitted job does) changes nothing.
    from momorec.config import resolve_locations

    assert resolve_locations(cfg, cwd="/somewhere/else") == cfg
