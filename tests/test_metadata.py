"""UI metadata helpers: table previews carry schema and row count; image previews stay small."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from PIL import Image

from assets.metadata import image_preview, table_metadata


def test_table_metadata_previews_scalar_columns():
    t = pa.table({"id": list(range(30)), "label": ["a"] * 30, "bbox": [[1, 2, 3, 4]] * 30})
    md = table_metadata(t)
    assert md["dagster/row_count"] == 30
    assert [c.name for c in md["dagster/column_schema"].columns] == ["id", "label", "bbox"]
    preview = md["preview"].value
    assert len(preview.records) == 10 and [c.name for c in preview.schema.columns] == ["id", "label"]


def test_image_preview_is_a_small_thumbnail_with_a_link(tmp_path):
    path = tmp_path / "sheet.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (1200, 1600, 3), dtype=np.uint8)).save(path)
    md = image_preview(path, max_side=128).value
    assert "data:image/jpeg;base64," in md and f"file://{path}" in md
    assert len(md) < path.stat().st_size / 20
