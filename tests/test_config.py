"""The typed config: YAML + overrides, clear errors."""

from __future__ import annotations

import pytest

from momorec.config import ConfigError, load_config, parse_override
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


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)
