"""Content fingerprints: a touch changes nothing, a byte does; unchanged files are not re-read."""

from __future__ import annotations

import os

from pipelines.cleanup import dataset_outputs, remove_dataset_outputs
from pipelines.sources.fingerprint import HashCache, content_fingerprint, hash_cache_path
from pipelines.sources.registry import load_registry


def test_touch_keeps_fingerprint_content_change_does_not(demo_registry, tmp_path):
    import shutil

    import yaml
    doc = yaml.safe_load(demo_registry.read_text())
    doc["datasets"] = [d for d in doc["datasets"] if d["id"] == "demo_polyp"]
    shutil.copytree(doc["datasets"][0]["root"], tmp_path / "polyp")
    doc["datasets"][0]["root"] = str(tmp_path / "polyp")
    (tmp_path / "sources.yaml").write_text(yaml.safe_dump(doc))
    source = load_registry(tmp_path / "sources.yaml").get("demo_polyp")
    n_files = sum(len(f) for _, _, f in os.walk(source.root))

    cache = HashCache.load(hash_cache_path(tmp_path / "data"))
    fp = content_fingerprint(source, cache)
    assert cache.hashed == n_files
    cache.save()
    again = HashCache.load(hash_cache_path(tmp_path / "data"))
    assert content_fingerprint(source, again) == fp and again.hashed == 0  # nothing re-read

    img = sorted((source.root / "images").iterdir())[0]
    st = img.stat()
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))
    assert content_fingerprint(source, again) == fp and again.hashed == 1  # touch: re-hashed, same content

    img.write_bytes(img.read_bytes() + b"\0")
    assert content_fingerprint(source, again) != fp


def test_damaged_cache_only_costs_a_rehash(tmp_path):
    path = tmp_path / "c.json"
    path.write_text("{not json")
    assert HashCache.load(path).entries == {}


def test_remove_dataset_outputs(tmp_path):
    for rel in ("tables/raw_samples/ds1.parquet", "tables/quarantine/ingest/ds1.parquet", "images/ds1/a/x.png",
                "rendered/ds1/p.png", "review/ds1.png", "tables/raw_samples/ds10.parquet", "images/ds10/y.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    assert len(dataset_outputs(tmp_path, "ds1")) == 5
    remove_dataset_outputs(tmp_path, "ds1")
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == ["images/ds10/y.png", "tables/raw_samples/ds10.parquet"]


def test_code_version_hashes_the_project_sources_and_follows_an_edit(tmp_path):
    """The code version covers pipelines/ and assets/ of the project (a module that moved once hashed an empty
    folder: every output then looked up to date whatever the code). An edit to one module changes it."""
    import hashlib
    import shutil
    from pipelines.config import PROJECT_ROOT
    from pipelines.sources.fingerprint import code_version
    empty = hashlib.sha256().hexdigest()[:12]
    assert code_version() != empty
    for d in ("pipelines", "assets"):
        shutil.copytree(PROJECT_ROOT / d, tmp_path / d, ignore=shutil.ignore_patterns("__pycache__"))
    assert code_version(tmp_path) == code_version()
    target = tmp_path / "pipelines" / "select" / "units.py"
    target.write_text(target.read_text() + "\n# an edit\n")
    assert code_version(tmp_path) != code_version()
    shutil.rmtree(tmp_path / "pipelines")
    shutil.rmtree(tmp_path / "assets")
    import pytest
    with pytest.raises(FileNotFoundError):
        code_version(tmp_path)
