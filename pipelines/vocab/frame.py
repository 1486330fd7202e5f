"""The label_vocab table as a DataFrame whose missing text is None.

pandas 3 reads Arrow strings into its `str` dtype, where a missing value is NaN: NaN is truthy,
so `if not row.task` let untagged labels through and NaN then met strings in a sort (the option
pools' "'<' not supported between 'float' and 'str'"). Every consumer of the vocabulary reads it
through here so a missing tag is always None.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa


def vocab_frame(table: pa.Table | pd.DataFrame) -> pd.DataFrame:
    df = table.to_pandas() if isinstance(table, pa.Table) else table.copy()
    for col in df.columns:
        if pd.api.types.is_string_dtype(df[col]):
            s = df[col].astype(object)
            df[col] = s.where(s.notna(), None)
    return df


def text(value: object) -> str | None:
    """A cell as text, or None when missing (None, NaN, empty)."""
    if value is None or (isinstance(value, float) and value != value) or value == "":
        return None
    return str(value)
