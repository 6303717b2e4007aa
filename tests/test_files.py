"""common.files.built_directory: a directory appears whole, manifest last, or not at all."""

from __future__ import annotations

import hashlib
import json

import pytest

from common.files import MANIFEST, built_directory


def test_a_built_directory_replaces_the_old_one_whole_with_its_manifest(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with built_directory(final, exclude=["README.md"], kind="test", step=3) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.tmp-") and not any(tmp.iterdir())
        (tmp / "sub").mkdir()
        (tmp / "sub" / "a.bin").write_bytes(b"\x00\x01")
        (tmp / "README.md").write_text("card")
        assert (final / "old.txt").read_text() == "old"  # untouched while the new one is built
    assert sorted(p.relative_to(final).as_posix() for p in final.rglob("*")) == [
        "README.md",
        MANIFEST,
        "sub",
        "sub/a.bin",
    ]
    manifest = json.loads((final / MANIFEST).read_text())
    assert manifest["kind"] == "test" and manifest["step"] == 3
    assert manifest["files"] == {"sub/a.bin": {"size": 2, "sha256": hashlib.sha256(b"\x00\x01").hexdigest()}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no folder left beside it


@pytest.mark.parametrize("existed", [True, False])
def test_a_failure_inside_the_block_leaves_the_old_directory_and_nothing_else(tmp_path, existed):
    final = tmp_path / "out"
    if existed:
        final.mkdir()
        (final / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with built_directory(final) as tmp:
            (tmp / "half.bin").write_bytes(b"x")
            raise RuntimeError("disk full")
    assert sorted(p.name for p in tmp_path.iterdir()) == (["out"] if existed else [])
    if existed:
        assert [p.name for p in final.iterdir()] == ["old.txt"] and (final / "old.txt").read_text() == "old"


def test_a_manifest_that_cannot_be_written_leaves_the_old_directory_and_nothing_else(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(TypeError, match="not JSON serializable"):
        with built_directory(final, kind=object()) as tmp:  # the block succeeds; its manifest fails
            (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert [p.name for p in final.iterdir()] == ["old.txt"]
