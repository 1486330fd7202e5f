"""What changed between two builds of the benchmark, item by item, and why.

A benchmark version is compared with the next by item id: an item is added, removed, or changed (its question,
options, key or split differ). Each removed item carries the reason its unit left (the rule that dropped it in
this build, its dataset leaving the registry, or its candidate no longer existing), so a reader can tell a source
change from a rule that binds across datasets.
"""

from __future__ import annotations

import pandas as pd

from pipelines.records import LETTERS

COMPARED = ("question", *LETTERS, "answer", "split")


def changelog(before: pd.DataFrame | None, after: pd.DataFrame, fates: dict[str, str], registry_ids: set[str],
              candidate_units: set[str]) -> dict:
    """{'added': [...], 'removed': [...], 'changed': [...], 'counts': {...}, 'by_dataset': {...}} over the main
    config's items (copies follow their originals). Each entry: item_id, dataset_id, reason (and, for a change,
    the fields that differ)."""
    after = after[after["subset"] == "main"] if "subset" in after else after
    if before is None or before.empty:
        added = [{"item_id": i, "dataset_id": d, "reason": "first build"}
                 for i, d in zip(after["item_id"], after["dataset_id"])]
        return {**_summary(added, [], []), "first_build": True}
    before = before[before["subset"] == "main"] if "subset" in before else before
    old, new = before.set_index("item_id"), after.set_index("item_id")
    known = set(before["dataset_id"])
    fresh = sorted(set(new.index) - set(old.index))
    added = [{"item_id": i, "dataset_id": ds, "reason": "dataset added" if ds not in known else "selected"}
             for i, ds in zip(fresh, new.loc[fresh, "dataset_id"].tolist())]
    removed = []
    gone = sorted(set(old.index) - set(new.index))
    for i, ds, unit in zip(gone, old.loc[gone, "dataset_id"].tolist(), old.loc[gone, "unit_id"].tolist()):
        if ds not in registry_ids:
            why = "dataset removed from the registry"
        elif unit in fates:
            why = fates[unit]
        elif unit not in candidate_units:
            why = "no longer a candidate (its source, label map or a gate changed)"
        else:
            why = "not selected"
        removed.append({"item_id": i, "dataset_id": ds, "reason": why})
    both = sorted(set(old.index) & set(new.index))
    was, now = old.loc[both], new.loc[both]  # the kept items aligned once
    # one column at a time, as lists: a cell lookup per item and field cost seconds on a few thousand items
    differs = {c: [not _same(a, b) for a, b in zip(was[c].tolist(), now[c].tolist())]
               for c in COMPARED if c in old and c in new}
    changed = []
    for n, (i, ds) in enumerate(zip(both, now["dataset_id"].tolist())):
        fields = [c for c, d in differs.items() if d[n]]
        if fields:
            changed.append({"item_id": i, "dataset_id": ds, "reason": "changed", "fields": fields})
    return _summary(added, removed, changed)


def _same(a, b) -> bool:
    return (pd.isna(a) and pd.isna(b)) if not isinstance(a, str) or not isinstance(b, str) else a == b


def _summary(added: list[dict], removed: list[dict], changed: list[dict]) -> dict:
    by_dataset: dict[str, dict[str, int]] = {}
    for kind, entries in (("added", added), ("removed", removed), ("changed", changed)):
        for e in entries:
            by_dataset.setdefault(e["dataset_id"], {"added": 0, "removed": 0, "changed": 0})[kind] += 1
    reasons: dict[str, int] = {}
    for e in removed:
        key = e["reason"].split(":")[0]
        reasons[key] = reasons.get(key, 0) + 1
    return {"counts": {"added": len(added), "removed": len(removed), "changed": len(changed)},
            "removed_by_reason": dict(sorted(reasons.items())), "by_dataset": dict(sorted(by_dataset.items())),
            "added": added, "removed": removed, "changed": changed}


def changelog_markdown(log: dict) -> str:
    c = log["counts"]
    lines = [f"added {c['added']}, removed {c['removed']}, changed {c['changed']}", "",
             "| dataset | added | removed | changed |", "|---|---:|---:|---:|"]
    lines += [f"| {ds} | {v['added']} | {v['removed']} | {v['changed']} |" for ds, v in log["by_dataset"].items()]
    if log["removed_by_reason"]:
        lines += ["", "| removed because | items |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in log["removed_by_reason"].items()]
    return "\n".join(lines)
