"""Contact sheets: a seeded sample of a dataset's rendered benchmark items in a grid, so a curator can
check at a glance that marks sit on their structures (the visual check GMAI-MMBench did by hand)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pipelines.config import PipelineConfig
from pipelines.ids import derived_rng
from pipelines.imageio import encode_png


def _thumb(path: Path, size: int, caption: str) -> np.ndarray:
    img = cv2.imread(str(path))
    h, w = img.shape[:2]
    scale = size / max(h, w)
    interp = cv2.INTER_NEAREST if scale > 1 else cv2.INTER_AREA
    img = cv2.resize(img, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=interp)
    tile = np.full((size + 18, size, 3), 32, np.uint8)
    tile[: img.shape[0], : img.shape[1]] = img
    cv2.putText(tile, caption[:26], (2, size + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def contact_sheet(dataset_id: str, items: list[dict], config: PipelineConfig, data_root: Path) -> tuple[bytes, int]:
    """PNG bytes of the sheet and the number of tiles. ``items`` carry ``image_path`` and ``caption``;
    the choice of tiles is seeded, so the same items give the same sheet."""
    items = sorted(items, key=lambda r: r["image_path"])
    rng = derived_rng(config.seed, "review", dataset_id)
    n = min(config.render.sheet_items, len(items))
    picked = [items[i] for i in sorted(rng.choice(len(items), size=n, replace=False))] if n else []
    size = config.render.sheet_thumb
    tiles = [_thumb(data_root / r["image_path"], size, r["caption"]) for r in picked]
    cols = 6
    grid_rows = max(1, -(-len(tiles) // cols))
    sheet = np.full((grid_rows * (size + 20), cols * (size + 2), 3), 16, np.uint8)
    for i, tile in enumerate(tiles):
        y, x = (i // cols) * (size + 20), (i % cols) * (size + 2)
        sheet[y:y + tile.shape[0], x:x + tile.shape[1]] = tile
    return encode_png(cv2.cvtColor(sheet, cv2.COLOR_BGR2RGB)), len(tiles)
