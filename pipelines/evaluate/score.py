"""Scoring predictions against the answer key: per-item results, then one section per config.

Every key row of a scored config and split counts; a row without a prediction (or with a failed one) is
wrong, and the report says how many there were. Sections:
- main: accuracy (multi-answer items: exact set match) overall and per task / department / modality /
  granularity / dataset, analytic chance, GMAI-MMBench's ACC_mcq and recall for multi-answer items;
- circular: when the predictions hold rotations (index + k * 1,000,000) of main items, an item counts only if
  every rotation VLMEvalKit's convention gives it was answered right;
- consistency: a mirrored pair counts only if both members were answered right;
- robustness: accuracy of the perturbed copies against their main items, the paired drop and the share of
  right answers that flipped, per perturbation and severity;
- grounding: the share of boxes with IoU >= 0.5 against the key box, and the mean IoU.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from PIL import Image

from pipelines.evaluate.bench import CONFIGS, Benchmark, BenchmarkError
from pipelines.evaluate.intervals import mean_interval
from pipelines.export.answers import (
    extract_box,
    extract_choice,
    extract_letters,
    iou,
    multi_scores,
)
from pipelines.export.circular import OFFSET, rotate, rotated_answer, rotation_count
from pipelines.export.prompt import present_options

BREAKDOWNS = ("clinical_vqa_task", "department", "modality", "perceptual_granularity", "dataset_id")
BOX_SCALES = ("auto", "unit", "pixel", "1000")


@dataclass
class EvalSettings:
    split: str | None = None  # None: test when the predictions answer test rows, else val
    configs: tuple[str, ...] | None = None  # None: every config of the export the predictions answer
    rules: str = "medbench"
    interval: str = "wilson"
    seed: int = 20240806
    box_scale: str = "auto"
    breakdowns: tuple[str, ...] = field(default=BREAKDOWNS)


def _group(rows: pd.DataFrame) -> pd.Series:
    """The cluster of each row for the bootstrap: leakage component, else group, else the row itself."""
    out = pd.Series(rows["index"].astype(str).to_numpy(), index=rows.index)
    for col in ("group_id", "split_group"):
        if col in rows:
            out = rows[col].where(rows[col].notna(), out).astype(str)
    return out


def read_singles(items: list[tuple[str | None, dict, str]], rules: str, judge=None) -> list[tuple[str | None, str]]:
    """(letter, rule) per (reply, options, question); the judge reads what no rule could."""
    out = [extract_choice(reply, opts, rules) for reply, opts, _ in items]
    if judge is not None:
        todo = [i for i, (letter, _) in enumerate(out) if letter is None and items[i][0]]
        for i, choice in zip(todo, judge.choose([(items[i][2], items[i][1], items[i][0]) for i in todo])):
            if choice:
                out[i] = (choice, "judge")
    return out


class Scorer:
    def __init__(self, bench: Benchmark, preds: pd.DataFrame, settings: EvalSettings, judge=None):
        self.bench, self.settings, self.judge = bench, settings, judge
        self.replies = dict(zip(preds["index"], preds["prediction"]))
        self.rows = bench.key.merge(bench.public.drop(columns=["answer", "multi_answer", "n_options", "split",
                                                               "item_id", *BREAKDOWNS, "config"], errors="ignore"),
                                    on="index", how="left")
        self.rows["group"] = _group(self.rows)
        self._sizes: dict[int, tuple[int, int]] = {}

    # -- what to score ------------------------------------------------------------------------------------
    def split(self) -> str:
        if self.settings.split:
            return self.settings.split
        answered = self.rows[self.rows["index"].isin(self.replies)]
        return "test" if (answered["split"] == "test").any() else "val"

    def configs(self, split: str) -> list[str]:
        present = [c for c in CONFIGS if ((self.rows["config"] == c) & (self.rows["split"] == split)).any()]
        if self.settings.configs:
            for c in self.settings.configs:
                if c not in present:
                    raise BenchmarkError(self._absent(c, split))
            return [c for c in CONFIGS if c in self.settings.configs]
        rows = self.rows[self.rows["split"] == split]
        return [c for c in present if rows[(rows["config"] == c)]["index"].isin(self.replies).any()]

    def _absent(self, config: str, split: str) -> str:
        if not self.bench.private_key:
            return (f"{self.bench.folder}: no private/answer_key.parquet, so only val items with a public answer can "
                    f"be scored ({config} {split} cannot); score with the maintainers' copy of the export")
        return f"{self.bench.folder} has no {config} items in the {split} split (configs there: " \
               f"{', '.join(sorted(set(self.rows.loc[self.rows['split'] == split, 'config'])) or 'none')})"

    # -- per item -----------------------------------------------------------------------------------------
    def score_items(self, rows: pd.DataFrame) -> pd.DataFrame:
        rows = rows.copy()
        replies = [self.replies.get(i) for i in rows["index"]]
        rows["answered"] = [r is not None and r != "" for r in replies]
        rows["rule"], rows["extracted"] = "none", None
        rows["hit"], rows["acc_mcq"], rows["recall_mcq"], rows["iou"] = 0.0, np.nan, np.nan, np.nan
        records = rows.to_dict("records")
        singles = [i for i, r in enumerate(records) if r["config"] != "grounding" and not r["multi_answer"]]
        read = read_singles([(replies[i], present_options(records[i]), records[i]["question"]) for i in singles],
                            self.settings.rules, self.judge)
        for i, (letter, rule) in zip(singles, read):
            records[i].update(rule=rule, extracted=letter, hit=float(letter is not None and letter == records[i]["answer"]))
        for i, r in enumerate(records):
            if r["config"] == "grounding":
                box = self._box(replies[i], r["index"])
                r.update(rule="box" if box else "none", extracted=None if box is None else str(box))
                truth = r["box"]
                r["iou"] = iou(box, [float(v) for v in truth]) if isinstance(truth, (list, np.ndarray)) else 0.0
                r["hit"] = float(r["iou"] >= 0.5)
            elif r["multi_answer"]:
                letters, rule = extract_letters(replies[i], present_options(r))
                exact, acc, rec = multi_scores(letters, frozenset(str(r["answer"]).split(",")))
                r.update(rule=rule, extracted=",".join(sorted(letters)) or None, hit=float(exact), acc_mcq=acc,
                         recall_mcq=rec)
        return pd.DataFrame(records, columns=rows.columns)

    def _box(self, reply: str | None, index: int) -> list[float] | None:
        nums = extract_box(reply)
        if nums is None:
            return None
        scale = self.settings.box_scale
        if scale == "auto":
            scale = "unit" if all(0.0 <= v <= 1.0 for v in nums) else "pixel"
        if scale == "1000":
            return [v / 1000 for v in nums]
        if scale == "pixel":
            w, h = self._size(index)
            return [nums[0] / w, nums[1] / h, nums[2] / w, nums[3] / h]
        return nums

    def _size(self, index: int) -> tuple[int, int]:
        if index not in self._sizes:
            for idx, data in self.bench.images("grounding").items():
                with Image.open(io.BytesIO(data)) as im:
                    self._sizes[idx] = im.size
        return self._sizes[index]

    # -- sections -----------------------------------------------------------------------------------------
    def cell(self, values, groups, label: str, binary: bool = True) -> dict:
        s = self.settings
        return mean_interval(values, groups, s.interval, s.seed, label, binary)

    def breakdown(self, scored: pd.DataFrame, label: str, value: str = "hit", binary: bool = True,
                  chance: bool = True) -> dict:
        out = {}
        for col in self.settings.breakdowns:
            cells = []
            for v, part in scored.groupby(col, sort=True, dropna=False):
                c = {"value": "(none)" if pd.isna(v) else str(v),
                     **self.cell(part[value], part["group"], f"{label}/{col}/{v}", binary)}
                single = part[~part["multi_answer"].astype(bool)]
                if chance and len(single):
                    c["chance"] = round(float((1 / single["n_options"].astype(float)).mean()), 6)
                cells.append(c)
            out[col] = cells
        return out

    def main_section(self, scored: pd.DataFrame) -> dict:
        single = scored[~scored["multi_answer"]]
        multi = scored[scored["multi_answer"]]
        sec = {"items": len(scored), "answered": int(scored["answered"].sum()),
               "accuracy": self.cell(scored["hit"], scored["group"], "main"),
               "single_answer": {**self.cell(single["hit"], single["group"], "main/single"),
                                 "chance": round(float((1 / single["n_options"].astype(float)).mean()), 6)
                                 if len(single) else None},
               "extraction": {k: int(v) for k, v in sorted(scored["rule"].value_counts().items())},
               "by": self.breakdown(scored, "main")}
        if len(multi):
            sec["multi_answer"] = {"items": len(multi),
                                   "exact_match": self.cell(multi["hit"], multi["group"], "multi/exact"),
                                   "acc_mcq": self.cell(multi["acc_mcq"], multi["group"], "multi/acc", False),
                                   "recall_mcq": self.cell(multi["recall_mcq"], multi["group"], "multi/recall", False)}
        return sec

    def circular_section(self, scored: pd.DataFrame) -> dict | None:
        """All rotations right, per single-answer main item (rotation 0 is the main prediction)."""
        single = scored[~scored["multi_answer"]]
        rotated = {i for i in self.replies if i >= OFFSET and (i % OFFSET) in set(single["index"])}
        if not rotated:
            return None
        items, reqs, rows = [], [], single.to_dict("records")
        for r in rows:
            opts = present_options(r)
            n = rotation_count(opts)
            for k in range(1, n):
                items.append((r["index"], k, rotated_answer(r["answer"], len(opts), k)))
                reqs.append((self.replies.get(r["index"] + k * OFFSET), rotate(opts, k), r["question"]))
        read = read_singles(reqs, self.settings.rules, self.judge)
        wrong = {idx for (idx, _, key), (letter, _) in zip(items, read) if letter != key}
        missing = sum(1 for req in reqs if req[0] is None)
        circ = single.assign(hit=[float(h == 1.0 and i not in wrong) for i, h in zip(single["index"], single["hit"])])
        return {"items": len(circ), "rotations": len(circ) + len(items), "missing_rotations": missing,
                "accuracy": self.cell(circ["hit"], circ["group"], "circular"),
                "vanilla_accuracy": self.cell(single["hit"], single["group"], "circular/vanilla"),
                "by": {"clinical_vqa_task": self.breakdown(circ, "circular", chance=False)["clinical_vqa_task"]}
                if "clinical_vqa_task" in self.settings.breakdowns else {}}

    def consistency_section(self, scored: pd.DataFrame) -> dict:
        paired = scored[scored["pair_id"].notna()]
        pairs = paired.groupby("pair_id", sort=True).agg(hit=("hit", "min"), size=("hit", "size"),
                                                         group=("group", "first"), low=("hit", "min"),
                                                         high=("hit", "max"))
        pairs = pairs[pairs["size"] >= 2]
        mirrored = scored["variant_kind"].astype(str).eq("mirror")
        return {"items": len(scored), "pairs": len(pairs), "answered": int(scored["answered"].sum()),
                "both_right": self.cell(pairs["hit"], pairs["group"], "consistency"),
                "agreement": self.cell((pairs["low"] == pairs["high"]).astype(float), pairs["group"],
                                       "consistency/agreement"),
                "original_accuracy": self.cell(scored.loc[~mirrored, "hit"], scored.loc[~mirrored, "group"],
                                               "consistency/original"),
                "mirrored_accuracy": self.cell(scored.loc[mirrored, "hit"], scored.loc[mirrored, "group"],
                                               "consistency/mirrored"),
                "extraction": {k: int(v) for k, v in sorted(scored["rule"].value_counts().items())}}

    def robustness_section(self, scored: pd.DataFrame, main: pd.DataFrame) -> dict:
        base = main.set_index("item_id")["hit"]
        answered = main.set_index("item_id")["answered"]
        copies = scored.assign(base_hit=scored["variant_of"].map(base))
        base_answered = int(copies["variant_of"].map(answered).fillna(False).astype(bool).sum())
        unmatched = int(copies["base_hit"].isna().sum())
        copies = copies[copies["base_hit"].notna()]

        def row(part: pd.DataFrame, label: str) -> dict:
            right = part[part["base_hit"] == 1.0]
            return {"copies": len(part), "base_accuracy": round(float(part["base_hit"].mean()), 6),
                    "perturbed_accuracy": self.cell(part["hit"], part["group"], f"{label}/acc"),
                    "drop": self.cell(part["base_hit"] - part["hit"], part["group"], f"{label}/drop", False),
                    "flip_rate": round(float((right["hit"] == 0.0).mean()), 6) if len(right) else None}

        by_ks = [{"kind": str(k), "severity": int(s), **row(p, f"robustness/{k}/{s}")}
                 for (k, s), p in copies.groupby(["variant_kind", "variant_severity"], sort=True)]
        by_kind = [{"kind": str(k), **row(p, f"robustness/{k}")} for k, p in copies.groupby("variant_kind", sort=True)]
        return {"items": len(scored), "answered": int(scored["answered"].sum()), "unmatched_copies": unmatched,
                "base_answered": base_answered,
                "overall": row(copies, "robustness") if len(copies) else None, "by_kind": by_kind,
                "by_kind_severity": by_ks}

    def grounding_section(self, scored: pd.DataFrame) -> dict:
        return {"items": len(scored), "answered": int(scored["answered"].sum()),
                "unparsed": int((scored["answered"] & (scored["rule"] == "none")).sum()),
                "iou_at_0.5": self.cell(scored["hit"], scored["group"], "grounding/hit"),
                "mean_iou": self.cell(scored["iou"], scored["group"], "grounding/iou", False),
                "by": {"clinical_vqa_task": self.breakdown(scored, "grounding", chance=False)["clinical_vqa_task"]}
                if "clinical_vqa_task" in self.settings.breakdowns else {}}

    def run(self) -> tuple[dict, pd.DataFrame]:
        """(sections, per-item table) for the chosen split and configs."""
        split = self.split()
        if not ((self.rows["split"] == split).any()):
            raise BenchmarkError(self._absent("main", split))
        configs = self.configs(split)
        if not configs:
            raise BenchmarkError(f"none of the predictions names an item of the {split} split of "
                                 f"{self.bench.folder}: were they made on this export? (indices are the exported "
                                 "'index' column)")
        want = set(configs) | ({"main"} if "robustness" in configs else set())
        rows = self.rows[(self.rows["split"] == split) & self.rows["config"].isin(want)]
        scored = self.score_items(rows)
        by_config = {c: scored[scored["config"] == c] for c in CONFIGS}
        sections: dict = {}
        if "main" in configs:
            sections["main"] = self.main_section(by_config["main"])
            circ = self.circular_section(by_config["main"])
            if circ:
                sections["circular"] = circ
        if "consistency" in configs:
            sections["consistency"] = self.consistency_section(by_config["consistency"])
        if "robustness" in configs:
            sections["robustness"] = self.robustness_section(by_config["robustness"], by_config["main"])
        if "grounding" in configs:
            sections["grounding"] = self.grounding_section(by_config["grounding"])
        known = set(self.rows["index"])
        base_idx = {i % OFFSET for i in self.replies}
        coverage = {"split": split, "configs": configs,
                    "configs_absent": [c for c in CONFIGS if not (self.rows["config"] == c).any()],
                    "predictions_unknown_index": len(base_idx - known),
                    "predictions_other_split": int(self.rows[(self.rows["split"] != split)]["index"]
                                                   .isin(base_idx).sum())}
        return {"coverage": coverage, **sections}, scored[scored["config"].isin(configs)]


def score(bench: Benchmark, preds: pd.DataFrame, settings: EvalSettings, judge=None) -> tuple[dict, pd.DataFrame]:
    """(report sections, per-item results) of ``preds`` on ``bench``."""
    return Scorer(bench, preds, settings, judge).run()
