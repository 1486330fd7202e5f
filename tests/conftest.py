"""Shared fixtures: paths to ../shared, the demo sources, and isolated configs/Dagster homes."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from pipelines.config import PROJECT_ROOT, PipelineConfig

# `datasets.load_dataset(folder)` caches by folder name and file list, not content: a shared
# ~/.cache/huggingface would hand this session another checkout's "benchmark". Set before
# `datasets` is imported (it reads the variable once).
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="medbench-test-hf-")
atexit.register(shutil.rmtree, os.environ["HF_DATASETS_CACHE"], ignore_errors=True)

SHARED = (PROJECT_ROOT.parent / "shared" / "datasets").resolve()
SHARED_REGISTRY = PROJECT_ROOT / "tests" / "shared_registry" / "sources.yaml"
HAVE_SHARED = SHARED.is_dir()
needs_shared = pytest.mark.skipif(
    not HAVE_SHARED, reason=f"real sample datasets not found at {SHARED} (clone with ../shared beside the repo)")


@pytest.fixture(scope="session", autouse=True)
def _allowed_data_dirs(tmp_path_factory):
    """Registries in tests point at ../shared and at the session's temporary folders: both are allowed data
    folders (ingest.data_dirs via MEDBENCH_DATA_DIRS), as a user's config would list their data disks."""
    old = os.environ.get("MEDBENCH_DATA_DIRS")
    os.environ["MEDBENCH_DATA_DIRS"] = os.pathsep.join([str(SHARED), str(tmp_path_factory.getbasetemp())])
    yield
    os.environ.pop("MEDBENCH_DATA_DIRS", None) if old is None else os.environ.__setitem__("MEDBENCH_DATA_DIRS", old)


@pytest.fixture(scope="session")
def demo_sources(tmp_path_factory) -> Path:
    """The demo datasets written once per test session (also used by the demo registry copy)."""
    from pipelines.demo import prepare_demo_sources
    out = tmp_path_factory.mktemp("demo") / "demo_sources"
    return prepare_demo_sources(out)


@pytest.fixture(scope="session")
def demo_registry(demo_sources, tmp_path_factory) -> Path:
    """The project's sources.yaml rewritten to point at the session's demo sources."""
    import yaml
    doc = yaml.safe_load((PROJECT_ROOT / "sources.yaml").read_text())
    for d in doc["datasets"]:
        d["root"] = str(demo_sources / Path(d["root"]).name)
        d["label_map"] = str(PROJECT_ROOT / d["label_map"])
    path = tmp_path_factory.mktemp("registry") / "sources.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture()
def demo_config(demo_registry, tmp_path) -> PipelineConfig:
    return PipelineConfig.load(registry=demo_registry, data_root=tmp_path / "data")


@pytest.fixture(scope="session")
def shared_build(tmp_path_factory) -> PipelineConfig:
    """The ../shared registry built end to end once per test session (several slow test modules read its exports).
    Under pytest-xdist the workers share one build: the first to ask builds it under a file lock in the session's
    common temporary folder, the others wait and read it (they only read it)."""
    if not HAVE_SHARED:
        pytest.skip(f"real sample datasets not found at {SHARED}")
    import fcntl
    import pickle
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared_bench"
    cfg = None
    with open(f"{root}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        done = root / "report.pickle"
        if not done.is_file():
            shutil.rmtree(root, ignore_errors=True)  # a build a killed worker left half done
            cfg = _build_shared(root)
            done.write_bytes(pickle.dumps(SHARED_REPORT["report"]))
        SHARED_REPORT["report"] = pickle.loads(done.read_bytes())
    if cfg is None:
        cfg = _shared_config(root)
    return cfg


def _shared_config(root: Path) -> PipelineConfig:
    cfg = PipelineConfig.load(registry=SHARED_REGISTRY, data_root=root / "data")
    return cfg.model_copy(update={"standardize": cfg.standardize.model_copy(update={"workers": 2})})


def _build_shared(root: Path) -> PipelineConfig:
    home = root / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    keep = {k: os.environ.get(k) for k in ("DAGSTER_HOME", "OPENAI_API_KEY")}
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ.pop("OPENAI_API_KEY", None)
    try:
        cfg = _shared_config(root)
        from cli.build import build, export_config_env
        export_config_env(cfg, None)
        SHARED_REPORT["report"] = build(cfg, log=lambda m: None)
    finally:
        for k, v in keep.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    return cfg


SHARED_REPORT: dict = {}  # the shared build's BuildReport, for the tests that judge the build itself


@pytest.fixture(scope="session")
def shared_report(shared_build):
    return SHARED_REPORT["report"]


def exported_rows(out: Path, folder: str = "data"):
    """Every exported Parquet row of one config folder, with its private key (`key`, and the key file's columns
    generator, variant_of, variant_kind, variant_severity, pair_id, box, group_id, split_group) and provenance
    (generator_params, variant) joined by index."""
    import pandas as pd
    rows = pd.concat([pd.read_parquet(p) for p in sorted((out / folder).glob("*.parquet"))], ignore_index=True)
    key = pd.read_parquet(out / "private" / "answer_key.parquet")
    prov = pd.read_parquet(out / "private" / "provenance.parquet")[["index", "generator_params", "variant"]]
    cols = ["index", "answer", "generator", "variant_of", "variant_kind", "variant_severity", "pair_id", "box",
            "group_id", "split_group", "config"]
    rows = rows.merge(key[cols].rename(columns={"answer": "key"}), on="index", how="left").merge(prov, on="index",
                                                                                                how="left")
    return rows


@pytest.fixture()
def shared_config(tmp_path) -> PipelineConfig:
    return PipelineConfig.load(registry=SHARED_REGISTRY, data_root=tmp_path / "data")


@pytest.fixture()
def dagster_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def _isolate_env(monkeypatch):
    for var in ("MEDBENCH_REGISTRY", "MEDBENCH_DATA_ROOT", "MEDBENCH_SEED", "MEDBENCH_CONFIG", "MEDBENCH_STRICT"):
        monkeypatch.delenv(var, raising=False)
    yield


def built_config(registry: Path, root: Path, settings: dict | None = None):
    """Build every default asset of ``registry`` under ``root`` in its own Dagster home (no LLM key), yield
    the config, then restore the environment. ``settings`` (a settings file's content) are written beside and
    used for the build. For module-scoped fixtures of end-to-end tests."""
    import yaml
    from cli.build import build, export_config_env
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    old = {k: os.environ.get(k) for k in ("DAGSTER_HOME", "MEDBENCH_REGISTRY", "MEDBENCH_DATA_ROOT", "OPENAI_API_KEY",
                                          "MEDBENCH_CONFIG")}
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ.pop("OPENAI_API_KEY", None)
    os.environ.pop("MEDBENCH_CONFIG", None)
    config_file = None
    if settings:
        config_file = root / "settings.yaml"
        config_file.write_text(yaml.safe_dump(settings, sort_keys=False))
    try:
        cfg = PipelineConfig.load(config_file, registry=registry, data_root=root / "data")
        export_config_env(cfg, str(config_file) if config_file else None)
        yield cfg, build(cfg, log=lambda m: None)
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def private_registry(demo_registry: Path, folder: Path, ids) -> Path:
    """A registry over private copies of some demo datasets, so a test may change or drop them."""
    import yaml
    doc = yaml.safe_load(demo_registry.read_text())
    doc["datasets"] = [d for d in doc["datasets"] if d["id"] in ids]
    for d in doc["datasets"]:
        dst = folder / os.path.basename(d["root"])
        shutil.copytree(d["root"], dst)
        d["root"] = str(dst)
    reg = folder / "sources.yaml"
    reg.write_text(yaml.safe_dump(doc))
    return reg
