"""A short, human-readable account of what a run produced and where it is.

Only registered datasets are counted: tables left by a dataset since removed from the registry
are not added in. Failed datasets and unresolved labels are named with their reasons.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from pipelines.config import GateSettings
from pipelines.gates import unreadable_planes
from pipelines.run_state import failed_datasets, llm_calls, stale_datasets
from pipelines.storage import DataLayout

# why a dataset makes no candidate, when that is the data's nature and not a fault: every label excluded by its
# label map, or no image large enough to read
EXPECTED_SKIPS = {"excluded_label": "its label map excludes every label it has",
                  "no_readable_image": "none of its images passes the readability gates (too small or too elongated)",
                  "one_label_covers_image": "its one label covers most of every image, so its key never varies and "
                                            "there is no location to ask about"}


def expected_without_candidates(skipped: dict[str, int]) -> str | None:
    """The expected reason a dataset has no candidate, from its skip counts (None: not an expected outcome)."""
    for reason in ("no_readable_image", "one_label_covers_image"):
        if reason in skipped:
            return EXPECTED_SKIPS[reason]
    if skipped and set(skipped) == {"excluded_label"}:
        return EXPECTED_SKIPS["excluded_label"]
    return None


SMALL_REGISTRATION = 30  # items (every config): fewer cannot score a registration on its own; the summary says why


@dataclass
class Summary:
    root: Path
    samples: dict[str, int] = field(default_factory=dict)
    quarantine: dict[str, Counter] = field(default_factory=dict)
    tables: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    unresolved: list[str] = field(default_factory=list)
    benchmark: Path | None = None
    gated: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)  # dataset -> rule -> (dropped, units)
    regions: dict[str, int] = field(default_factory=dict)  # dataset -> described regions
    items: dict[str, int] = field(default_factory=dict)  # dataset -> benchmark items (when a benchmark was built)
    not_built: dict[str, dict[str, int]] = field(default_factory=dict)  # dataset -> why candidates were not made
    audit: dict = field(default_factory=dict)  # the benchmark audit's figures (tables/benchmark_audit.json)
    changes: dict = field(default_factory=dict)  # the changelog's counts (tables/benchmark_changelog.json)
    stale: dict[str, dict] = field(default_factory=dict)  # dataset -> why its items could not all be rendered
    llm: dict[str, dict] = field(default_factory=dict)  # step -> LLM requests and failures of its last run
    unreadable: dict[str, dict[str, int]] = field(default_factory=dict)  # dataset -> image rule -> planes, none readable

    def stale_lines(self) -> list[str]:
        return [f"  STALE dataset {ds}: {v.get('reason', '?')}; {v.get('reused', 0)} item(s) keep their last good "
                f"image, {v.get('left_out', 0)} left out (re-materialize its slices/regions: `medbench build "
                f"--dataset {ds}`)" for ds, v in sorted(self.stale.items())]

    def llm_lines(self) -> list[str]:
        out = []
        for step, c in sorted(self.llm.items()):
            if c.get("requests"):
                line = f"  LLM {step}: {c['requests']} request(s), {c.get('failed', 0)} failed"
                if c.get("failed"):
                    line += f" (first: {(c.get('errors') or ['?'])[0]})"
                out.append(line)
        return out

    def selection_lines(self) -> list[str]:
        """What selection left out on purpose (reviewers' rejections, units the text alone answers) and what moved
        since the previous build, with why."""
        a, out = self.audit, []
        if self.changes and not self.changes.get("first_build"):
            c = self.changes.get("counts", {})
            why = ", ".join(f"{k} {v}" for k, v in self.changes.get("removed_by_reason", {}).items())
            out.append(f"  since the previous build: {c.get('added', 0)} item(s) added, {c.get('removed', 0)} removed"
                       + (f" ({why})" if why else "") + f", {c.get('changed', 0)} changed "
                       "(tables/benchmark_changelog.json)")
        if a.get("review_rejected_units"):
            out.append(f"  review: {a['review_rejected_units']} unit(s) rejected by reviewers left out "
                       "(medbench review; decisions in benchmark.item_reviews)")
        if a.get("text_only_dropped_units"):
            out.append(f"  blind baseline: {a['text_only_dropped_units']} text-answerable unit(s) dropped; test accuracy "
                       f"{a.get('text_only_accuracy_before', 0):.3f} -> {a.get('text_only_accuracy', 0):.3f} "
                       f"(chance {a.get('text_only_chance', 0):.3f})")
        if a.get("text_only_exceeds", "-") != "-":
            out.append(f"  ERROR blind baseline still above chance + margin: {a['text_only_exceeds']}")
        return out

    def gate_text(self, ds: str) -> str:
        """'image_too_small 624/624' style, or '-' when nothing was gated out (or not built yet)."""
        rules = self.gated.get(ds, {})
        return ", ".join(f"{r} {d}/{u}" for r, (d, u) in sorted(rules.items())) or "-"

    def _fully_gated(self, ds: str) -> bool:
        rules = self.gated.get(ds, {})
        units = max((u for _, u in rules.values()), default=0)
        return bool(units) and sum(d for d, _ in rules.values()) == units

    def gated_out(self) -> set[str]:
        """Datasets the readability gates leave without items: every candidate unit dropped, or no plane
        readable at all. The gates doing their job, so an expected outcome rather than an error."""
        return {ds for ds in self.gated if self._fully_gated(ds)} | {
            ds for ds in self.unreadable if not self.items.get(ds) and ds not in self.failed}

    def gate_warnings(self) -> list[str]:
        """Datasets the readability gates leave out: a user must know, though nothing went wrong."""
        out = []
        for ds in sorted(self.gated_out()):
            if self._fully_gated(ds):
                units = max(u for _, u in self.gated[ds].values())
                out.append(f"  {ds}: all {units} candidate units fail the readability gates ({self.gate_text(ds)}); "
                           "see docs/gates.md 'Readability gates' (readability_opt_out exempts a dataset explicitly)")
            else:
                rules = ", ".join(f"{r} {n}" for r, n in sorted(self.unreadable[ds].items()))
                out.append(f"  {ds}: none of its planes passes the readability gates' image rules ({rules}); "
                           "see docs/gates.md 'Readability gates' (readability_opt_out exempts a dataset explicitly)")
        return out

    def quarantine_text(self, ds: str) -> str:
        c = self.quarantine.get(ds)
        if c is None:
            return "-"
        return ", ".join(f"{k}={v}" for k, v in sorted(c.items())) or "0"

    def expected_empty(self, ds: str) -> str | None:
        """Why a dataset without items is an expected outcome (its images are all below the readability gates, it
        reads the same images as an earlier registration, or its label map excludes every label), else None."""
        if self._fully_gated(ds):
            return f"every candidate fails the readability gates ({self.gate_text(ds)})"
        if ds in self.unreadable:
            rules_text = ", ".join(f"{r} {n}" for r, n in sorted(self.unreadable[ds].items()))
            return f"none of its planes passes the readability gates' image rules ({rules_text})"
        same = [a for a, b, _ in self.audit.get("duplicates", []) if b == ds]
        if same:
            return f"it reads the same images as {same[0]}, which keeps them (one source, one identity)"
        return expected_without_candidates(self.not_built.get(ds, {}))

    def empty_datasets(self) -> list[str]:
        """Datasets with described regions but no benchmark item, with why: expected outcomes are said as such,
        anything else is an error a user must see."""
        if not self.items and "benchmark" not in self.tables:
            return []
        out = []
        for ds, n in sorted(self.regions.items()):
            if n and not self.items.get(ds) and ds not in self.failed:
                expected = self.expected_empty(ds)
                if expected:
                    out.append(f"  {ds}: 0 items, as expected: {expected}")
                    continue
                why = ", ".join(f"{r} {c}" for r, c in sorted(self.not_built.get(ds, {}).items()))
                gate = self.gate_text(ds)
                blind = self.audit.get("text_only_dropped_by_dataset", {}).get(ds)
                out.append(f"  ERROR {ds}: {n} regions, 0 items"
                           + (f"; candidates not made: {why}" if why else "")
                           + (f"; gated out: {gate}" if gate != "-" else "")
                           + (f"; {blind} selected unit(s) dropped as answerable from the text alone (docs/validity.md "
                              "'Blind baseline drives selection')" if blind else ""))
        return out

    def small_registrations(self) -> list[str]:
        """Registrations with items, but fewer than SMALL_REGISTRATION, with what each step left out: a small sample
        is the usual cause, and a user should see it counted rather than guess."""
        out = []
        for ds, n in sorted(self.items.items()):
            if n >= SMALL_REGISTRATION or ds in self.failed:
                continue
            parts = [f"{n} item(s) from {self.samples.get(ds, 0)} sample(s)"]
            if why := ", ".join(f"{r} {c}" for r, c in sorted(self.not_built.get(ds, {}).items())):
                parts.append(f"candidates not made: {why}")
            if (gate := self.gate_text(ds)) != "-":
                parts.append(f"gated out: {gate}")
            if dropped := self.audit.get("dropped_by_dataset", {}).get(ds):
                parts.append("units left out by selection: " + ", ".join(f"{r} {c}" for r, c in sorted(dropped.items())))
            out.append(f"  {ds}: " + "; ".join(parts))
        return out

    def render(self) -> str:
        lines = [f"outputs under {self.root}"]
        excluded = sum(c.get("excluded_file", 0) for c in self.quarantine.values())
        lines.append(f"  datasets: {len(self.samples)}   samples: {sum(self.samples.values())}   "
                     f"quarantined: {sum(sum(c.values()) for c in self.quarantine.values()) - excluded}"
                     + (f"   files excluded by pattern or as masks beside their images: {excluded} (reason "
                        "excluded_file in the quarantine tables)" if excluded else ""))
        for name, n in self.tables.items():
            lines.append(f"  {name}: {n} rows  ({self.root / 'tables' / name})")
        for ds, why in sorted(self.failed.items()):
            lines.append(f"  FAILED dataset {ds}: {why} (left out of the benchmark)")
        lines += self.stale_lines() + self.llm_lines()
        if self.unresolved:
            lines.append(f"  unresolved labels ({len(self.unresolved)}; their items are left out; resolve them "
                         "in the label map with canonical/mesh_id/no_mesh/accept):")
            lines += [f"    {name}" for name in self.unresolved[:30]]
            if len(self.unresolved) > 30:
                lines.append(f"    ... and {len(self.unresolved) - 30} more (table label_vocab, status unresolved)")
        if self.benchmark is not None:
            lines.append(f"  benchmark: {self.benchmark}  (load with datasets.load_dataset(\"{self.benchmark}\"); "
                         f"VLMEvalKit TSVs in {self.benchmark / 'tsv'})")
        sections = [
            ("readability gates (units dropped / candidate units):",
             [f"  {ds}: {self.gate_text(ds)}" for ds in sorted(self.gated) if self.gated[ds]]),
            ("datasets left out by the readability gates (expected: their images cannot be shown readably):",
             self.gate_warnings()),
            ("datasets that yield no benchmark item (see docs/candidates.md 'Questions', 'Small pools'):", self.empty_datasets()),
            (f"registrations with fewer than {SMALL_REGISTRATION} items (what each step left out; "
             "docs/select.md 'Small registrations'):", self.small_registrations()),
            ("selection:", self.selection_lines())]
        for title, body in sections:  # a section is printed only when it has something to say
            if body:
                lines += [title, *body]
        return "\n".join(lines)


def _rows(path: Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows


def _unresolved(path: Path) -> list[str]:
    if not path.exists():
        return []
    t = pq.read_table(path, columns=["dataset_id", "raw_label", "status"]).to_pylist()
    return sorted(f"{r['dataset_id']}: {r['raw_label']}" for r in t if r["status"] == "unresolved")


def _unreadable(path: Path, gates: GateSettings) -> dict[str, int]:
    columns = ["display_width", "display_height", "contrast"]
    if not path.is_file() or not set(columns) <= set(pq.read_schema(path).names):
        return {}
    return unreadable_planes(pq.read_table(path, columns=columns).to_pandas(), gates)


def summarize(data_root: Path, dataset_ids: list[str], gates: GateSettings | None = None) -> Summary:
    """``gates``: the run's readability settings (defaults when not given), to tell datasets none of whose
    planes can be shown from datasets that went wrong."""
    layout = DataLayout(data_root)
    s = Summary(root=Path(data_root))
    registered = set(dataset_ids)
    s.failed = {k: v for k, v in failed_datasets(data_root).items() if k in registered}
    s.stale = {k: v for k, v in stale_datasets(data_root).items() if k in registered}
    s.llm = llm_calls(data_root)
    for ds in dataset_ids:
        p = layout.table("raw_samples", ds)
        if p.exists():
            s.samples[ds] = _rows(p)
        q = layout.root / "tables" / "quarantine"
        files = sorted(q.glob(f"*/{ds}.parquet")) if q.exists() else []
        if files:
            s.quarantine[ds] = Counter()
            for f in files:
                s.quarantine[ds].update(pq.read_table(f, columns=["reason_code"]).column(0).to_pylist())
    drops = layout.table("gate_drops")
    if drops.exists():
        for r in pq.read_table(drops).to_pylist():
            if r["dataset_id"] in dataset_ids and r["dropped"]:
                s.gated.setdefault(r["dataset_id"], {})[r["rule"]] = (r["dropped"], r["units"])
    tables = layout.root / "tables"
    if tables.exists():
        for d in sorted(p for p in tables.iterdir() if p.is_dir() and p.name != "quarantine"):
            s.tables[d.name] = sum(_rows(f) for f in d.glob("*.parquet") if f.stem in registered and f.is_file())
        for f in sorted(tables.glob("*.parquet")):
            s.tables[f.stem] = _rows(f)
    s.unresolved = _unresolved(layout.table("label_vocab"))
    for ds in dataset_ids:
        p = layout.table("regions", ds)
        if p.is_file() and ds not in s.failed:
            s.regions[ds] = _rows(p)
            if unreadable := _unreadable(layout.table("slices", ds), gates or GateSettings()):
                s.unreadable[ds] = unreadable
    if layout.table("benchmark").exists():
        ids = pq.read_table(layout.table("benchmark"), columns=["dataset_id"]).column(0).to_pylist()
        s.items = dict(Counter(ids))
    if layout.table("candidate_skips").exists():
        for r in pq.read_table(layout.table("candidate_skips")).to_pylist():
            s.not_built.setdefault(r["dataset_id"], {})[r["reason"]] = r["items"]
    audit = layout.table("benchmark_audit").with_suffix(".json")
    if audit.exists():
        s.audit = json.loads(audit.read_text())
    log = layout.table("benchmark_changelog").with_suffix(".json")
    if log.exists():
        full = json.loads(log.read_text())
        s.changes = {k: full.get(k) for k in ("counts", "removed_by_reason", "first_build") if k in full}
    bench = layout.root / "benchmark"
    if (bench / "manifest.json").exists() or (bench / "data").exists():
        s.benchmark = bench
    return s
