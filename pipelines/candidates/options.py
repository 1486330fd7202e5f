"""Option pools and distractor sampling (GMAI-MMBench's rules plus the guards its release lacked)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.candidates.validate import granularity_group
from pipelines.config import QuestionSettings
from pipelines.vocab.fallback import load_fallback
from pipelines.vocab.frame import text, vocab_frame
from pipelines.vocab.hierarchy import Hierarchy


@dataclass(frozen=True)
class PoolKey:
    scope: str  # 'dataset:<id>': every pool is one dataset's labels of one modality, task and granularity
    modality: str
    task: str
    granularity: str


def build_pools(vocab: pd.DataFrame) -> dict[PoolKey, list[str]]:
    """Per dataset, modality, task and granularity group: the labels that dataset can ask about. Distractors come
    from the question's own dataset (and, for a plane of a volume, from the structures around that plane), so an
    option is always something that occurs where the image comes from, and adding another dataset changes no
    dataset's options."""
    pools: dict[PoolKey, set[str]] = defaultdict(set)
    for row in vocab_frame(vocab).itertuples(index=False):
        task, label = text(row.task), text(row.canonical_label)
        if not task or not label or row.status in ("unresolved", "excluded"):
            continue  # untagged labels (an `accept:` without a task pin) have no pool to join
        for g in {granularity_group(g) for g in row.granularities}:
            pools[PoolKey(f"dataset:{row.dataset_id}", row.modality, task, g)].add(label)
    return {k: sorted(v) for k, v in pools.items()}


def pool_key(dataset_id: str, modality: str, task: str, granularity: str) -> PoolKey:
    return PoolKey(f"dataset:{dataset_id}", modality, task, granularity_group(granularity))


def keys_elsewhere(pools: dict[PoolKey, list[str]], dataset_id: str, modality: str, task: str,
                   granularity: str) -> set[str]:
    """Labels other datasets ask about with the same modality, task and granularity: the keys of items elsewhere."""
    g, own = granularity_group(granularity), f"dataset:{dataset_id}"
    return {lab for k, labs in pools.items() if k.scope != own and k.modality == modality and k.task == task
            and k.granularity == g for lab in labs}


MIN_OWN_DISTRACTORS = 2  # fewer certainly-wrong options of its own: the pool is too small (items of < 3 options)


def pool_for(pools: dict[PoolKey, list[str]], dataset_id: str, modality: str, task: str, granularity: str,
             answers: list[str], hierarchy: Hierarchy, nearby: frozenset[str] | None = None
             ) -> tuple[list[str], dict[str, str]]:
    """The pool a question draws distractors from, and each label's origin ('dataset' or 'fallback').

    The dataset's own labels first, limited to ``nearby`` when given (the structures around a plane of a volume:
    an abdominal slice is never offered a structure of the arm or the head). Only when that leaves fewer than
    ``MIN_OWN_DISTRACTORS`` certainly-wrong options are curated fallback options for the same modality, task and
    answers added (mesh_vocab/fallback_options.yaml), and then only those that are keys of items elsewhere: an
    option that is never a key anywhere would mark the dataset's own label as the answer. The caller still filters
    the pool with :func:`distractor_candidates`, so the synonym/ancestor/descendant rule applies to both."""
    own = pools.get(pool_key(dataset_id, modality, task, granularity), [])
    if nearby is not None:
        own = [lab for lab in own if lab in nearby or lab in answers]
    origins = dict.fromkeys(own, "dataset")
    if len(distractor_candidates(answers, set(answers), own, hierarchy)) >= MIN_OWN_DISTRACTORS:
        return own, origins
    elsewhere = keys_elsewhere(pools, dataset_id, modality, task, granularity)
    extra = [lab for lab in load_fallback().options_for(modality, task, granularity_group(granularity), answers)
             if lab not in origins and lab in elsewhere]
    origins.update(dict.fromkeys(extra, "fallback"))
    return own + extra, origins


def distractor_candidates(answers: list[str], present: set[str], pool: list[str], hierarchy: Hierarchy) -> list[str]:
    """Pool labels that are certainly wrong: not an answer, not present in the image/region, and not a
    synonym, ancestor or descendant (or a mere spelling variant) of any answer."""
    return [lab for lab in pool
            if lab not in answers and lab not in present
            and all(hierarchy.compatible_distractor(a, lab) for a in answers)]


def n_distractors(rng: np.random.Generator, available: int, q: QuestionSettings) -> int:
    """randint(1, min(max, |pool|)) distractors, the evident intent of the paper's garbled rule; or a fixed count."""
    top = min(q.max_distractors, available)
    if q.fixed_distractors is not None:
        return min(q.fixed_distractors, top)
    return int(rng.integers(1, top + 1))


def count_options(rng: np.random.Generator, count: int, q: QuestionSettings) -> list[str]:
    """The true count first, then distractors, as strings. The key's rank among the sorted options is
    drawn uniformly (capped only where a lower option would be negative), and neighbouring options
    differ by a random step of 1 to ``count_spread`` x key, so neither the key's position nor the
    options' centre gives the answer away."""
    n = n_distractors(rng, q.max_count_options, QuestionSettings(max_distractors=q.max_count_options,
                                                                 fixed_distractors=q.fixed_distractors))
    rank = min(int(rng.integers(0, n + 1)), count)  # options below the key: at most `count` (0 is the floor)
    top = max(1, int(round(q.count_spread * count)))
    below = rng.integers(1, top + 1, size=rank)
    if below.sum() > count:
        below = np.ones(rank, int)
    above = rng.integers(1, top + 1, size=n - rank)
    lower = [count - int(s) for s in np.cumsum(below)]
    upper = [count + int(s) for s in np.cumsum(above)]
    return [str(count)] + [str(c) for c in sorted(lower + upper)]


POOL_COLUMNS = ["scope", "modality", "task", "granularity", "labels", "size"]


def pools_table(pools: dict[PoolKey, list[str]]) -> pd.DataFrame:
    """One row per pool; an empty frame keeps its columns (every label may be left out)."""
    if not pools:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == "size" else object) for c in POOL_COLUMNS})
    return pd.DataFrame([{"scope": k.scope, "modality": k.modality, "task": k.task, "granularity": k.granularity,
                          "labels": v, "size": len(v)} for k, v in sorted(pools.items(), key=lambda kv: tuple(vars(kv[0]).values()))])


def pools_from_table(df: pd.DataFrame) -> dict[PoolKey, list[str]]:
    return {PoolKey(r.scope, r.modality, r.task, r.granularity): list(r.labels) for r in df.itertuples(index=False)}
