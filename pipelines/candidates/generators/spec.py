"""One generated question before it becomes a candidate row: what it marks, its key and its parameters."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Spec:
    generator: str
    task: str
    image_id: str
    marks: list[dict]  # the structures drawn (structure rows), in colour order (empty: an image-level question)
    colours: list[str]
    answers: list[str]
    answer_label: str
    department: str
    semantic_type: str
    params: dict = field(default_factory=dict)
    count: int | None = None
    count_label: str | None = None
    labels: list[str] | None = None
    balance_group: str | None = None  # units whose keys selection keeps equally frequent
    drawn: str = "outline"  # what the image shows: coloured outlines of the marks, lettered boxes, or nothing

    def row(self) -> dict:
        """Candidate columns (the gates read the smallest mark's geometry; a question that draws nothing has none,
        its generator checked that the structure is visible)."""
        region_ids = [m["region_id"] for m in self.marks]
        marks = [{"colour": c, "regions": [m["region_id"]], "raw_label": m["raw_label"]}
                 for c, m in zip(self.colours, self.marks)]
        params = {"generator": self.generator, **self.params, "marks": marks}
        if self.marks and self.drawn != "none":
            small = min(self.marks, key=lambda m: (m["area_px"], m["region_id"]))
            geo = dict(x0=small["x0"], y0=small["y0"], x1=small["x1"], y1=small["y1"], area_px=small["area_px"])
            kind, granularity = "marks", ("box" if self.drawn == "boxes" else "contour")
        else:
            geo = dict(x0=np.nan, y0=np.nan, x1=np.nan, y1=np.nan, area_px=np.nan)
            kind, granularity = "image", "image"
        labels = self.labels if self.labels is not None else [m["raw_label"] for m in self.marks]
        return {"image_id": self.image_id, "generator": self.generator, "clinical_vqa_task": self.task,
                "granularity": granularity, "kind": kind, "scope": "generated", "target_id": None,
                "member_region_ids": region_ids, "labels": labels, "raw_label": labels[0] if labels else None,
                "answers": self.answers, "answer_label": self.answer_label, "department": self.department,
                "semantic_type": self.semantic_type, "canonical": None, "count": self.count,
                "count_label": self.count_label, "n_items": 1, "pool_size": None, "distractors_available": None,
                "generator_params": json.dumps(params, sort_keys=True, default=float), "balance_group": self.balance_group,
                "unit_key": ("gen", self.generator, self.image_id, *region_ids, json.dumps(self.params, sort_keys=True,
                                                                                           default=float)),
                **geo}
