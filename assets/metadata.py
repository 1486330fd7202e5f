"""Metadata the UI shows well: table previews with schema and row count, small image thumbnails.

Large base64 PNGs make the asset page slow (a contact sheet is ~600 KB); `image_preview` embeds a
JPEG thumbnail of at most `max_side` pixels (a few KB) and links the full file instead.
"""

from __future__ import annotations

import base64
import io
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pyarrow as pa
from PIL import Image

from pipelines.redact import redact, redacted_error

PREVIEW_ROWS = 10
SCALARS = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean, pa.types.is_string)


def _column_type(t: pa.DataType) -> str:
    for name, test in zip(("int", "float", "bool", "string"), SCALARS):
        if test(t):
            return name
    return str(t)


def column_schema(table: pa.Table) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(f.name, _column_type(f.type)) for f in table.schema])


def _cell(value):
    if value is None or isinstance(value, (int, float, bool, str)):
        return value if not isinstance(value, str) or len(value) <= 120 else value[:117] + "..."
    return str(value)[:120]


def table_metadata(table: pa.Table, rows: int = PREVIEW_ROWS) -> dict[str, object]:
    """`dagster/row_count`, `dagster/column_schema` and a preview of the first rows (scalar columns)."""
    scalar = [f.name for f in table.schema if any(test(f.type) for test in SCALARS)]
    head = table.select(scalar).slice(0, rows).to_pylist()
    preview_schema = dg.TableSchema(columns=[dg.TableColumn(n, _column_type(table.schema.field(n).type))
                                             for n in scalar])
    return {"dagster/row_count": table.num_rows, "dagster/column_schema": column_schema(table),
            "preview": dg.MetadataValue.table([dg.TableRecord({k: _cell(v) for k, v in r.items()}) for r in head],
                                              schema=preview_schema)}


def thumbnail_b64(path: Path, max_side: int = 256) -> str:
    """A small JPEG of `path` as base64 (for markdown metadata: kilobytes, not the PNG's hundreds)."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((max_side, max_side))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=80)
    return base64.b64encode(buf.getvalue()).decode()


def image_preview(path: Path, max_side: int = 256, title: str = "preview") -> dg.MetadataValue:
    """Markdown with a small JPEG thumbnail of `path` and a link to the full-size file."""
    return dg.MetadataValue.md(preview_markdown(path, max_side, title))


def preview_markdown(path: Path, max_side: int = 256, title: str = "preview") -> str:
    return f"![{title}](data:image/jpeg;base64,{thumbnail_b64(path, max_side)})\n\n[full size: {path}](file://{path})"


@contextmanager
def redacted_failures():
    """Steps that talk to a service holding a credential run inside this: an exception leaving them becomes a
    dg.Failure whose text is redacted, with nothing chained (Dagster stores causes and contexts verbatim)."""
    try:
        yield
    except dg.Failure as exc:
        raise dg.Failure(description=redact(exc.description or ""), metadata=exc.metadata) from None
    except Exception as exc:  # noqa: BLE001 - every failure is re-raised, redacted
        raise dg.Failure(description=redacted_error(exc)) from None
