"""Push the exported benchmark to a Hugging Face dataset repository, as one idempotent commit.

Only allowlisted public files leave the machine (nothing under private/ ever does). The data files of every
config the dataset card declares are part of the allowlist, read from the card's own YAML header, so a config
the card names is always uploaded, and a card naming a config whose files are missing stops the push. The
card's load lines get the repository id of the push. Files whose
content already matches the remote copy (git blob id, or LFS sha256) are skipped, so an unchanged benchmark
makes no commit. Transient Hub errors (429, 5xx, dropped connections) are retried with exponential backoff.
The token comes from HF_TOKEN or `hf auth login` and is scrubbed from every error text we raise or log.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TypeVar

from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    DatasetCard,
    HfApi,
    get_token,
)
from huggingface_hub.errors import HfHubHTTPError, RemoteEntryNotFoundError

from pipelines import PIPELINE_VERSION
from pipelines.config import PublishSettings
from pipelines.export.card import REPO_PLACEHOLDER, roi_config
from pipelines.redact import redact as redact_text

# What may be published, relative to the export folder, besides the data files of the card's configs (and the
# TSVs in each config's folder). Everything else stays local.
ALLOWED = ("README.md", "manifest.json", "data/*.parquet", "roi_annotations/data/*.parquet", "tsv/*.tsv",
           "lexical_tree.json", "lexical_tree.html", "summary/*.md", "summary/*.png", "lmms_eval/*/*.yaml",
           "lmms_eval/*/_default_template_yaml", "lmms_eval/*/utils.py")
NEVER = ("private/*", "*/private/*", "*answer_key*", "*provenance*")
# remote folders we own: stale files there are deleted (a config folder too, when a build no longer writes it)
CONFIGS = ("consistency", "robustness", "grounding")  # config folders beside the main data/ (each optional)
MANAGED = ("data/", "roi/", "roi_annotations/", "tsv/", "summary/", "lmms_eval/", *(f"{c}/" for c in CONFIGS))
RETRY_STATUS = {429, 500, 502, 503, 504}
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
T = TypeVar("T")


class PublishError(RuntimeError):
    """A push failed; the message names the step and never contains the token."""


@dataclass(frozen=True)
class LocalFile:
    """A file to publish: read from `source` in chunks (shards can be large), or given as `data` (card, manifest)."""

    path_in_repo: str
    source: Path | None = None
    data: bytes | None = None

    def chunks(self, size: int = 1 << 20):
        if self.data is not None:
            yield self.data
            return
        with open(self.source, "rb") as fh:
            while block := fh.read(size):
                yield block

    @cached_property
    def size(self) -> int:
        return len(self.data) if self.data is not None else self.source.stat().st_size

    @cached_property
    def sha256(self) -> str:
        h = hashlib.sha256()
        for block in self.chunks():
            h.update(block)
        return h.hexdigest()

    @cached_property
    def blob_id(self) -> str:
        """The git blob id (what the Hub reports for files not stored in LFS)."""
        h = hashlib.sha1(f"blob {self.size}\0".encode())
        for block in self.chunks():
            h.update(block)
        return h.hexdigest()

    def upload(self) -> str | bytes:
        return self.data if self.data is not None else str(self.source)


@dataclass
class PushReport:
    repo_id: str
    revision: str
    files: list[LocalFile]
    uploaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    configs: dict[str, list[str]] = field(default_factory=dict)  # config name -> data file patterns (from the card)
    commit_message: str = ""
    commit_oid: str | None = None
    dry_run: bool = False


def redact(text: str, token: str | None) -> str:
    """The one redaction filter (pipelines.redact), with this push's token as a known secret."""
    return redact_text(text, [token] if token else [])


def _matches(rel: str, patterns) -> bool:
    return any(fnmatch.fnmatch(rel, p) for p in patterns)


def declared_configs(readme: bytes) -> dict[str, list[str]]:
    """{config name: data file patterns} from the card's YAML `configs` (the Hub's and `datasets`' own reading)."""
    configs = DatasetCard(readme.decode("utf-8")).data.get("configs") or []
    out = {}
    for c in configs:
        entries = c.get("data_files") or []
        entries = [entries] if isinstance(entries, (str, dict)) else entries
        paths = []
        for e in entries:
            p = e.get("path") if isinstance(e, dict) else e
            paths += [p] if isinstance(p, str) else list(p or [])
        out[c.get("config_name", "default")] = paths
    return out


def config_folders(configs: dict[str, list[str]]) -> set[str]:
    """The top folders of the configs' data files other than data/ itself (robustness/, consistency/, ...)."""
    return {p.split("/", 1)[0] for paths in configs.values() for p in paths if "/" in p} - {"data"}


def public_manifest(manifest: dict, published: list[LocalFile]) -> bytes:
    """The export's manifest with its file list replaced by the files published, hashed as sent (the card gets
    the repo id on the way out): no trace of private files, and every entry matches the remote copy."""
    files = {f.path_in_repo: {"sha256": f.sha256, "bytes": f.size} for f in published}
    return (json.dumps({**manifest, "files": files}, indent=1, sort_keys=True) + "\n").encode()


def with_repo_id(readme: bytes, repo_id: str | None) -> bytes:
    """The card with its load lines naming the repository it is pushed to."""
    if not repo_id:
        return readme
    return readme.replace(f'"{REPO_PLACEHOLDER}"'.encode(), f'"{repo_id}"'.encode())


def card_with_roi(readme: bytes, folder: Path) -> bytes:
    """Declare the ROI annotations in the card when they sit in the folder but the card predates them."""
    roi = roi_config(folder)
    if roi is None:
        return readme
    card = DatasetCard(readme.decode("utf-8"))
    configs = [c for c in card.data.get("configs") or [] if c.get("config_name") != "roi_annotations"]
    infos = card.data.get("dataset_info") or []
    infos = [i for i in (infos if isinstance(infos, list) else [infos]) if i.get("config_name") != "roi_annotations"]
    if configs + [roi[0]] == (card.data.get("configs") or []) and infos + [roi[1]] == card.data.get("dataset_info"):
        return readme
    card.data.configs = [*configs, roi[0]]  # a re-export replaces the declaration (its split sizes may differ)
    card.data.dataset_info = [*infos, roi[1]]
    return str(card).encode("utf-8")


def plan_files(folder: Path, repo_id: str | None = None) -> tuple[list[LocalFile], dict[str, list[str]]]:
    """The allowlisted files of an export folder, with the card and manifest as they will be published, and the
    configs the card declares. A declared config without files is an error: the repo would not load."""
    folder = Path(folder)
    if not (folder / "README.md").is_file() or not (folder / "data").is_dir():
        raise PublishError(f"{folder} is not a benchmark export (no README.md or data/); "
                           "fix: run `medbench build` first or pass the export folder")
    readme = with_repo_id(card_with_roi((folder / "README.md").read_bytes(), folder), repo_id)
    configs = declared_configs(readme)
    allowed = (*ALLOWED, *(p for paths in configs.values() for p in paths),
               *(f"{f}/tsv/*.tsv" for f in config_folders(configs)))
    rels = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    chosen = [r for r in rels if _matches(r, allowed) and not _matches(r, NEVER)]
    for name, paths in configs.items():
        for pattern in paths:
            if not any(fnmatch.fnmatch(r, pattern) for r in chosen):
                raise PublishError(f"the card of {folder} declares config '{name}' with files {pattern}, but there "
                                   "are none; fix: rebuild the export (`medbench build --select benchmark_exports`)")
    files = [LocalFile(rel, data=readme) if rel == "README.md" else LocalFile(rel, source=folder / rel)
             for rel in chosen if rel != "manifest.json"]
    if "manifest.json" in chosen:
        manifest = json.loads((folder / "manifest.json").read_text())
        files = sorted([*files, LocalFile("manifest.json", data=public_manifest(manifest, files))],
                       key=lambda f: f.path_in_repo)
    assert not any(_matches(f.path_in_repo, NEVER) for f in files)
    return files, configs


def commit_message(folder: Path) -> str:
    """Names the pipeline version and config fingerprint from the export's manifest."""
    path = Path(folder) / "manifest.json"
    manifest = json.loads(path.read_text()) if path.is_file() else {}
    version = manifest.get("pipeline_version", PIPELINE_VERSION)
    return f"medbench {version}: benchmark export (config {manifest.get('config_fingerprint', 'unknown')})"


class Publisher:
    """One push: resolves the token, talks to the Hub through HfApi, retries and redacts."""

    def __init__(self, settings: PublishSettings, token: str | None = None, log: Callable[[str], None] = print,
                 sleep: Callable[[float], None] = time.sleep):
        self.settings = settings
        self.endpoint = (settings.endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
        self.token = token if token is not None else get_token()
        self.log = log
        self.sleep = sleep
        self.api = HfApi(endpoint=self.endpoint, token=self.token or False)

    def _call(self, step: str, fn: Callable[[], T]) -> T:
        """Run one Hub call with backoff on transient errors; failures become a redacted PublishError."""
        attempts = self.settings.max_retries + 1
        failure = ""
        for attempt in range(attempts):
            try:
                return fn()
            except PublishError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure is re-raised below, redacted
                status = getattr(getattr(exc, "response", None), "status_code", None)
                transient = status in RETRY_STATUS or (status is None and _is_connection_error(exc))
                failure = redact(f"{step} failed: {type(exc).__name__}: {exc}", self.token)
                if not transient or attempt == attempts - 1:
                    break
                wait = min(30.0, self.settings.backoff_s * 2 ** attempt)
                self.log(f"{step}: HTTP {status or 'connection error'}, retry {attempt + 1} in {wait:.2f}s")
                self.sleep(wait)
        # raised outside the except block: no chained exception carries the unredacted text
        raise PublishError(failure)

    def push(self, folder: Path, repo_id: str, private: bool | None = None, revision: str | None = None,
             dry_run: bool = False) -> PushReport:
        if not REPO_ID.match(repo_id or ""):
            raise PublishError(f"repo id '{repo_id}' is not ORG/NAME; fix: pass --repo-id ORG/NAME")
        revision = revision or self.settings.revision
        files, configs = plan_files(folder, repo_id)
        report = PushReport(repo_id, revision, files, configs=configs, commit_message=commit_message(folder),
                            dry_run=dry_run)
        if dry_run:
            report.uploaded = [f.path_in_repo for f in files]
            return report
        if not self.token:
            raise PublishError("no Hugging Face token; fix: set HF_TOKEN or run `hf auth login`")
        private = self.settings.private if private is None else private
        self._call("create repo", lambda: self.api.create_repo(repo_id, repo_type="dataset", private=private,
                                                                 exist_ok=True))
        if revision != "main":
            self._call("create branch", lambda: self.api.create_branch(repo_id, branch=revision, repo_type="dataset",
                                                                        exist_ok=True))
        return self._call("commit", lambda: self._commit(report))

    def _remote(self, repo_id: str, revision: str, paths: list[str]) -> dict[str, tuple[str, str | None]]:
        """{path: (git blob id, LFS sha256 or None)} of the given paths that exist on the remote revision."""
        infos = self.api.get_paths_info(repo_id, paths, repo_type="dataset", revision=revision)
        return {i.path: (i.blob_id, i.lfs.sha256 if i.lfs else None) for i in infos if hasattr(i, "blob_id")}

    def _stale(self, repo_id: str, revision: str, local: set[str], configs: dict[str, list[str]]) -> list[str]:
        try:
            tree = self.api.list_repo_tree(repo_id, repo_type="dataset", revision=revision, recursive=True)
            remote = [e.path for e in tree if hasattr(e, "blob_id")]
        except RemoteEntryNotFoundError:
            return []
        managed = (*MANAGED, *(f"{f}/" for f in config_folders(configs)))
        return sorted(p for p in remote if p.startswith(managed) and p not in local)

    def _commit(self, report: PushReport) -> PushReport:
        """Compare with the remote, then send one commit with what changed (none when nothing did)."""
        remote = self._remote(report.repo_id, report.revision, [f.path_in_repo for f in report.files])
        changed, report.unchanged = [], []
        for f in report.files:
            blob, lfs = remote.get(f.path_in_repo, (None, None))
            same = (lfs == f.sha256) if lfs else (blob == f.blob_id)
            (report.unchanged if same else changed).append(f)
        report.deleted = self._stale(report.repo_id, report.revision, {f.path_in_repo for f in report.files},
                                     report.configs)
        report.uploaded = [f.path_in_repo for f in changed]
        if not changed and not report.deleted:
            return report
        ops = [CommitOperationAdd(path_in_repo=f.path_in_repo, path_or_fileobj=f.upload()) for f in changed]
        ops += [CommitOperationDelete(path_in_repo=p) for p in report.deleted]
        description = (f"{len(changed)} file(s) added or updated, {len(report.deleted)} removed, "
                       f"{len(report.unchanged)} unchanged.")
        info = self.api.create_commit(report.repo_id, ops, commit_message=report.commit_message,
                                      commit_description=description, repo_type="dataset", revision=report.revision)
        report.commit_oid = info.oid
        return report


def _is_connection_error(exc: Exception) -> bool:
    import httpx2
    return isinstance(exc, (httpx2.TransportError, ConnectionError)) and not isinstance(exc, HfHubHTTPError)
