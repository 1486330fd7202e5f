"""Which accepted template a question uses: LLM ones where present, the bank as fallback."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd


class TemplatePicker:
    """Accepted templates per (task, granularity, family); a family without its own falls back to 'any'."""

    def __init__(self, templates: pd.DataFrame):
        ok = templates[templates["review_status"].isin(["auto_accepted", "accepted"])]
        self.by_key: dict[tuple, list[tuple[str, str]]] = defaultdict(list)
        for r in ok.sort_values("template_id").itertuples(index=False):
            self.by_key[(r.task, r.granularity, r.modality_family)].append((r.template_id, r.text))

    def _options(self, task: str, granularity: str, family: str) -> list[tuple[str, str]]:
        return self.by_key.get((task, granularity, family)) or self.by_key.get((task, granularity, "any")) or []

    def available(self, task: str, granularity: str, family: str) -> bool:
        return bool(self._options(task, granularity, family))

    def pick(self, rng: np.random.Generator, task: str, granularity: str, family: str) -> tuple[str, str] | None:
        options = self._options(task, granularity, family)
        return options[int(rng.integers(len(options)))] if options else None
