"""PlatformConfig.dataset becomes a folder under the warehouse: only safe names are accepted."""

from __future__ import annotations

import pytest

from momorec.config import ConfigError, load_config


@pytest.mark.parametrize("name", ["demo", "beauty", "ml100k", "a.b-c_1", "-x", "_staging2"])
def test_safe_dataset_names_are_kept(name, tmp_path):
    cfg = load_config(None, [f"dataset={name}", f"warehouse={tmp_path}"])
    assert cfg.dataset == name and cfg.dataset_root == str(tmp_path / name)


@pytest.mark.parametrize("name", ["../x", "..", ".", ".hidden", "/abs/path", "a/b", "a\\b", "", "a b", "é", "x" * 129])
def test_unsafe_dataset_names_are_a_config_error_naming_the_key(name, tmp_path):
    with pytest.raises(ConfigError, match=r"dataset: .*not a safe dataset name"):
        load_config(None, [f"dataset='{name}'", f"warehouse={tmp_path}"])
