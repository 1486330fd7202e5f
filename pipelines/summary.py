"""A short, human-readable account of what a run produced and where it is."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from pipelines.storage import DataLayout


@dataclass
class Summary:
    root: Path
    samples: dict[str, int] = field(default_factory=dict)
    quarantine: dict[str, Counter] = field(default_factory=dict)
    tables: dict[str, int] = field(default_factory=dict)

    def quarantine_text(self, ds: str) -> str:
        c = self.quarantine.get(ds)
        if c is None:
            return "-"
        return ", ".join(f"{k}={v}" for k, v in sorted(c.items())) or "0"

    def render(self) -> str:
        lines = [f"outputs under {self.root}"]
        lines.append(f"  datasets: {len(self.samples)}   samples: {sum(self.samples.values())}   "
                     f"quarantined: {sum(sum(c.values()) for c in self.quarantine.values())}")
        for name, n in self.tables.items():
            lines.append(f"  {name}: {n} rows  ({self.root / 'tables' / name})")
        return "\n".join(lines)


def _rows(path: Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows


def summarize(data_root: Path, dataset_ids: list[str]) -> Summary:
    layout = DataLayout(data_root)
    s = Summary(root=Path(data_root))
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
    tables = layout.root / "tables"
    if tables.exists():
        for d in sorted(p for p in tables.iterdir() if p.is_dir() and p.name != "quarantine"):
            s.tables[d.name] = sum(_rows(f) for f in d.glob("*.parquet"))
        for f in sorted(tables.glob("*.parquet")):
            s.tables[f.stem] = _rows(f)
    return s
