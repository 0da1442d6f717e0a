import pytest

from east_tasks.io import atomic_dir, atomic_write, fingerprint, hash_dir


def test_atomic_dir_keeps_the_old_version_when_writing_fails(tmp_path) -> None:
    final = tmp_path / "ckpt"
    with atomic_dir(final) as tmp:
        (tmp / "model.safetensors").write_bytes(b"v1")
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("killed mid-save")
    assert (final / "model.safetensors").read_bytes() == b"v1"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_atomic_dir_leaves_an_equal_dir_in_place_and_replaces_a_different_one(tmp_path) -> None:
    final = tmp_path / "ckpt"
    with atomic_dir(final) as tmp:
        (tmp / "model.safetensors").write_bytes(b"v1")
    inode = (final / "model.safetensors").stat().st_ino
    with atomic_dir(final, keep_equal=True) as tmp:  # another process wrote the same model meanwhile
        (tmp / "model.safetensors").write_bytes(b"v1")
    assert (final / "model.safetensors").stat().st_ino == inode  # untouched: a reader of it is never cut off
    with atomic_dir(final, keep_equal=True) as tmp:
        (tmp / "model.safetensors").write_bytes(b"v2")
    assert (final / "model.safetensors").read_bytes() == b"v2"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_atomic_write_and_hashes(tmp_path) -> None:
    atomic_write(tmp_path / "config.json", lambda p: p.write_text("{}"))
    h1 = hash_dir(tmp_path)
    (tmp_path / "bootstrap_manifest.json").write_text("{}")  # notes and manifests do not change the model
    assert hash_dir(tmp_path) == h1
    (tmp_path / "config.json").write_text('{"x": 1}')
    assert hash_dir(tmp_path) != h1
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
