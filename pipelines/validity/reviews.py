"""Human review of exported items: a seeded HTML sheet to read, and reject decisions that builds honour.

The sheet shows what a benchmark user gets (the exported image, question and options) next to the key,
so a reviewer can judge whether exactly one option is right. Decisions live in one YAML file
(``benchmark.item_reviews``, default ``<data_root>/reviews/items.yaml``) keyed by item id; each records
the item's unit, so the next build leaves that unit out of selection (its mask/contour twin too) and
counts it in the summary. Unit ids are stable hashes of the target, so a decision survives rebuilds.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd
import yaml

from pipelines.config import PipelineConfig
from pipelines.ids import seeded_order
from pipelines.records import LETTERS
from pipelines.storage import atomic_write_bytes

HEADER = ("# Reviewers' decisions on benchmark items (medbench review). A rejected item's unit is never\n"
          "# selected again; edit with `medbench review reject ITEM_ID --reason TEXT` or by hand.\n")


class ReviewError(ValueError):
    """A decision file or request that cannot be used (the message names the file and the fix)."""


def decisions_path(config: PipelineConfig) -> Path:
    return Path(config.benchmark.item_reviews or config.data_root / "reviews" / "items.yaml")


def load_decisions(path: Path) -> dict[str, dict]:
    """item_id -> {unit_id, decision, reason, ...}; a missing file is no decisions."""
    if not path.exists():
        return {}
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ReviewError(f"{path}: not valid YAML ({exc}); fix the file or delete it") from None
    items = doc.get("items", {}) if isinstance(doc, dict) else None
    if not isinstance(items, dict):
        raise ReviewError(f"{path}: expected a mapping 'items: {{ITEM_ID: {{unit_id: ..., decision: reject}}}}'")
    for item_id, d in items.items():
        if not isinstance(d, dict) or d.get("decision") not in ("reject", "accept") or not d.get("unit_id"):
            raise ReviewError(f"{path}: item {item_id}: needs 'unit_id' and 'decision: reject' (or accept)")
    return {str(k): v for k, v in items.items()}


def rejected_units(path: Path) -> set[str]:
    return {d["unit_id"] for d in load_decisions(path).values() if d["decision"] == "reject"}


def save_decisions(path: Path, decisions: dict[str, dict]) -> None:
    body = yaml.safe_dump({"items": dict(sorted(decisions.items()))}, sort_keys=True, allow_unicode=True)
    atomic_write_bytes(path, (HEADER + body).encode("utf-8"))


def exported_items(root: Path) -> pd.DataFrame:
    """Every exported row (image bytes as shipped) with its item id, unit id, key and option origins
    from the benchmark table (the export keeps test keys out of the public files)."""
    shards = sorted((root / "benchmark" / "data").glob("*.parquet"))
    bench_path = root / "tables" / "benchmark.parquet"
    if not shards or not bench_path.exists():
        raise ReviewError(f"no exported benchmark under {root / 'benchmark'}: run `medbench build` first")
    rows = pd.concat([pd.read_parquet(p) for p in shards], ignore_index=True)
    rows = rows.drop(columns=[c for c in ("answer", "item_id") if c in rows])  # the table's are authoritative
    cols = ["index", "item_id", "unit_id", "answer", "answer_label"]
    bench = pd.read_parquet(bench_path)
    if "option_origins" in bench:
        cols.append("option_origins")
    return rows.merge(bench[cols], on="index", how="inner").sort_values("index").reset_index(drop=True)


def sample(rows: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """``n`` items in a seeded order of their ids (the same seed, the same sheet)."""
    key = seeded_order(rows["item_id"], seed, "item-review")
    return rows.iloc[key.argsort(kind="stable")[:n]].reset_index(drop=True)


def _image_tag(image) -> str:
    data = image.get("bytes") if isinstance(image, dict) else None
    if not data:
        return "<em>no image bytes</em>"
    b64 = base64.b64encode(data if isinstance(data, bytes) else bytes(data)).decode()
    return f'<img src="data:image/png;base64,{b64}" style="max-width:420px;max-height:420px">'


def _card(r: dict, decided: dict | None) -> str:
    origins = list(r["option_origins"]) if r.get("option_origins") is not None else []
    keys = set(str(r["answer"]).split(","))
    opts = []
    for i, c in enumerate(LETTERS):
        if isinstance(r.get(c), str) and r[c]:
            origin = f' <small>[{html.escape(origins[i])}]</small>' if i < len(origins) and origins[i] else ""
            mark = "<b>&#10003;</b> " if c in keys else ""
            opts.append(f"<li>{mark}{c}. {html.escape(r[c])}{origin}</li>")
    state = f'<p class="done">already {html.escape(decided["decision"])}ed: {html.escape(decided.get("reason", ""))}</p>' \
        if decided else ""
    return (f'<div class="item" id="{r["item_id"]}">{_image_tag(r["image"])}<div class="text">'
            f'<p><b>{html.escape(r["question"])}</b></p><ol type="A" style="list-style:none;padding:0">{"".join(opts)}</ol>'
            f'<p>key: <b>{html.escape(str(r["answer"]))}</b> ({html.escape(str(r["answer_label"]))})</p>'
            f'<p class="meta">item <code>{r["item_id"]}</code> · unit <code>{r["unit_id"]}</code> · '
            f'{html.escape(r["dataset_id"])} · {html.escape(r["split"])} · {html.escape(r["clinical_vqa_task"])} · '
            f'{html.escape(r["perceptual_granularity"])}</p>{state}'
            f'<p class="cmd"><code>medbench review reject {r["item_id"]} --reason "..."</code></p></div></div>')


def write_sheet(rows: pd.DataFrame, decisions: dict[str, dict], out: Path, seed: int, decisions_file: Path) -> Path:
    """The HTML sheet (images embedded, so it can be mailed or archived as one file)."""
    cards = "\n".join(_card(r, decisions.get(r["item_id"])) for r in rows.to_dict("records"))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>medbench item review (seed {seed})</title>
<style>body{{font-family:sans-serif;margin:1em}} .item{{display:flex;gap:1em;border-bottom:1px solid #ccc;padding:1em 0}}
.meta{{color:#555;font-size:small}} .done{{color:#a00}} .cmd{{font-size:small}}</style></head><body>
<h1>medbench item review</h1><p>{len(rows)} items drawn with seed {seed}.
For each item: is exactly one option right, and does the question need the image? Reject an item with the
command under it; decisions are kept in <code>{html.escape(str(decisions_file))}</code> and the next
<code>medbench build</code> leaves the item's unit out.</p>
{cards}
</body></html>"""
    atomic_write_bytes(out, page.encode("utf-8"))
    return out


def reject(config: PipelineConfig, item_ids: list[str], reason: str) -> list[str]:
    """Record reject decisions for exported items; returns the units now excluded."""
    rows = exported_items(config.data_root).set_index("item_id")
    unknown = sorted(set(item_ids) - set(rows.index))
    if unknown:
        raise ReviewError(f"item(s) {', '.join(unknown)} are not in the current export under "
                          f"{config.data_root / 'benchmark'}; copy ids from the review sheet")
    path = decisions_path(config)
    decisions = load_decisions(path)
    for item_id in item_ids:
        r = rows.loc[item_id]
        decisions[item_id] = {"unit_id": str(r["unit_id"]), "decision": "reject", "reason": reason,
                              "dataset_id": str(r["dataset_id"]), "question": str(r["question"])}
    save_decisions(path, decisions)
    return sorted({decisions[i]["unit_id"] for i in item_ids})


def sheet(config: PipelineConfig, n: int, seed: int | None = None, out: Path | None = None) -> tuple[Path, int]:
    """Write the sheet of ``n`` seeded random exported items; returns its path and how many it shows."""
    seed = config.seed if seed is None else seed
    rows = sample(exported_items(config.data_root), n, seed)
    path = out or config.data_root / "review" / f"items_seed{seed}.html"
    return write_sheet(rows, load_decisions(decisions_path(config)), path, seed, decisions_path(config)), len(rows)


def decisions_newer_than(config: PipelineConfig, table: Path) -> bool:
    """True when the decision file changed after ``table`` was written (the benchmark must be rebuilt)."""
    path = decisions_path(config)
    return path.exists() and (not table.exists() or path.stat().st_mtime > table.stat().st_mtime)

