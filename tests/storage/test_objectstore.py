"""The storage layer on a local disk and on a real S3-compatible server: the same calls, the same results."""

from __future__ import annotations

import pytest

from momorec.storage import objectstore


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "root")
    return request.getfixturevalue("s3_bucket") + "/root"


def test_write_read_list_glob_delete(root):
    objectstore.write_bytes(objectstore.join(root, "a", "x.parquet"), b"1")
    objectstore.write_json(objectstore.join(root, "a", "b", "meta.json"), {"k": [1, 2]})
    objectstore.write_bytes(objectstore.join(root, "a", "_hidden", "y.parquet"), b"2")
    assert objectstore.read_json(objectstore.join(root, "a", "b", "meta.json")) == {"k": [1, 2]}
    assert objectstore.is_file(objectstore.join(root, "a", "x.parquet"))
    assert objectstore.is_dir(objectstore.join(root, "a"))
    assert objectstore.size(objectstore.join(root, "a", "x.parquet")) == 1
    assert objectstore.list_files(objectstore.join(root, "a")) == [objectstore.join(root, "a", "x.parquet")]
    assert objectstore.list_files(objectstore.join(root, "a"), recursive=True) == [
        objectstore.join(root, "a", "b", "meta.json"),
        objectstore.join(root, "a", "x.parquet"),
    ]
    assert objectstore.glob(objectstore.join(root, "a", "*.parquet")) == [objectstore.join(root, "a", "x.parquet")]
    objectstore.delete(objectstore.join(root, "a"))
    assert not objectstore.exists(objectstore.join(root, "a", "x.parquet"))
    assert objectstore.list_files(objectstore.join(root, "a")) == []
    with pytest.raises(FileNotFoundError, match="no file at"):
        objectstore.read_bytes(objectstore.join(root, "missing"))


def test_an_overwrite_replaces_the_whole_file(root):
    target = objectstore.join(root, "pointer")
    objectstore.write_bytes(target, b"version-1-long-content")
    objectstore.write_bytes(target, b"v2")
    assert objectstore.read_bytes(target) == b"v2"
    assert objectstore.list_files(root) == [target]  # no temporary file left beside it


def test_copy_tree_between_local_and_s3(s3_bucket, tmp_path):
    local = tmp_path / "src"
    (local / "sub").mkdir(parents=True)
    (local / "sub" / "f.bin").write_bytes(b"abc")
    remote = s3_bucket + "/copy"
    objectstore.copy_tree(str(local), remote)
    back = tmp_path / "back"
    objectstore.copy_tree(remote, str(back))
    assert (back / "sub" / "f.bin").read_bytes() == b"abc"


def test_configure_exports_settings_but_the_config_refuses_credentials(monkeypatch):
    from momorec.config import StorageConfig

    monkeypatch.delenv("MOMOREC_TEST_SETTING", raising=False)
    objectstore.configure({"MOMOREC_TEST_SETTING": "on"})
    import os

    assert os.environ["MOMOREC_TEST_SETTING"] == "on"
    monkeypatch.delenv("MOMOREC_TEST_SETTING")
    assert StorageConfig(options={"AWS_REGION": "eu-west-1"}).options == {"AWS_REGION": "eu-west-1"}
    for key in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AZURE_STORAGE_ACCOUNT_KEY", "aws_region"):
        with pytest.raises(ValueError):
            StorageConfig(options={key: "x"})
