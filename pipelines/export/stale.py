"""What an export leaves out when a dataset went stale after selection (its images could not be rendered)."""

from __future__ import annotations

import pandas as pd


def leave_out_unrendered(bench: pd.DataFrame, stale: set[str]) -> tuple[pd.DataFrame, dict[str, int]]:
    """Items of stale datasets that have no image, with every item tied to them (the other twin of their unit,
    their copies and their original), are left out; ``{dataset: items left out}``. A missing image of a dataset
    that is not stale stays an error for the caller."""
    gone = bench["image_path"].isna() & bench["dataset_id"].isin(stale)
    if not gone.any():
        return bench, {}
    while True:
        ids, units = set(bench.loc[gone, "item_id"]), set(bench.loc[gone, "unit_id"].dropna())
        originals = set(bench.loc[gone, "variant_of"].dropna())
        tied = gone | bench["unit_id"].isin(units) | bench["variant_of"].isin(ids | originals) | \
            bench["item_id"].isin(originals)
        if tied.sum() == gone.sum():
            break
        gone = tied
    counts = bench.loc[gone, "dataset_id"].value_counts().to_dict()
    return bench[~gone].reset_index(drop=True), {str(k): int(v) for k, v in counts.items()}
