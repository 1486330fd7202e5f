"""Prediction files: JSONL (ours, and lmms-eval's submission) or a VLMEvalKit result file (.xlsx/.tsv/.csv).

Every row names an exported ``index`` (circular rotations: ``index + k * 1,000,000``) and the model's reply:
JSONL rows carry it as ``prediction`` (raw text) or ``answer`` (a letter, letters, a list of letters, or a
box as a list of four numbers); VLMEvalKit result files have a ``prediction`` column. A null reply (a failed
request) counts as unanswered.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pandas as pd

from pipelines.storage import atomic_write_bytes

REPLY_KEYS = ("prediction", "answer", "response")


class PredictionsError(ValueError):
    """A predictions file that cannot be read (the message names the file, the line and the fix)."""


def _reply(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        return ",".join(str(v) for v in value) if all(isinstance(v, str) for v in value) else json.dumps(value)
    return str(value)


def _jsonl(path: Path, data: bytes) -> pd.DataFrame:
    rows = []
    for n, line in enumerate(data.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PredictionsError(f"{path}:{n}: not JSON ({exc.msg}); write one object per line, "
                                   '{"index": 12, "prediction": "B"}') from None
        if not isinstance(obj, dict) or "index" not in obj:
            raise PredictionsError(f'{path}:{n}: each line needs an "index" (the exported row) and a "prediction"')
        key = next((k for k in REPLY_KEYS if k in obj), None)
        if key is None:
            raise PredictionsError(f'{path}:{n}: no reply: give "prediction" (raw text) or "answer" (letters/box)')
        rows.append({"index": obj["index"], "prediction": _reply(obj[key])})
    return pd.DataFrame(rows, columns=["index", "prediction"])


def _table(path: Path, data: bytes) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix == ".xlsx":
        frame = pd.read_excel(io.BytesIO(data))
    else:
        frame = pd.read_csv(io.BytesIO(data), sep="\t" if suffix == ".tsv" else ",", dtype={"prediction": str},
                            keep_default_na=False, na_values=[""])
    if "index" not in frame or "prediction" not in frame:
        raise PredictionsError(f"{path}: a result file needs the columns 'index' and 'prediction' "
                               f"(found {', '.join(map(str, frame.columns[:12]))})")
    out = frame[["index", "prediction"]].copy()
    out["prediction"] = [None if pd.isna(v) else str(v) for v in out["prediction"]]
    return out


def read_predictions(path: Path) -> tuple[pd.DataFrame, dict]:
    """(index, prediction) rows sorted by index, and what identifies the file (name, sha256, format, rows)."""
    path = Path(path)
    if not path.is_file():
        raise PredictionsError(f"{path} does not exist: give a predictions file (.jsonl from `medbench run-model`, "
                               "or a VLMEvalKit result .xlsx/.tsv)")
    data = path.read_bytes()
    fmt = "jsonl" if path.suffix.lower() in (".jsonl", ".json") else path.suffix.lower().lstrip(".")
    if fmt not in ("jsonl", "xlsx", "tsv", "csv"):
        raise PredictionsError(f"{path}: unknown format {path.suffix!r}; use .jsonl, .xlsx, .tsv or .csv")
    frame = _jsonl(path, data) if fmt == "jsonl" else _table(path, data)
    try:
        frame["index"] = [int(v) for v in frame["index"]]
    except (TypeError, ValueError):
        raise PredictionsError(f"{path}: every index must be an integer (the exported row's index)") from None
    dup = frame["index"][frame["index"].duplicated()]
    if len(dup):
        raise PredictionsError(f"{path}: index {int(dup.iloc[0])} has more than one prediction; keep one per row")
    info = {"file": path.name, "sha256": hashlib.sha256(data).hexdigest(), "format": fmt, "rows": len(frame)}
    return frame.sort_values("index").reset_index(drop=True), info


def write_predictions(rows: list[dict], path: Path) -> Path:
    """JSONL sorted by index, one object per line (atomic; byte-identical for the same rows)."""
    rows = sorted(rows, key=lambda r: r["index"])
    text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
    atomic_write_bytes(Path(path), text.encode("utf-8"))
    return Path(path)
