"""Ask an OpenAI-compatible vision chat endpoint (vLLM, SGLang, a hosted API) every exported item.

Each request is one user message: the image (a base64 data URL) and then the prompt text of
pipelines/export/prompt.py. Replies are cached by (model, item, image bytes, prompt, generation parameters),
so an interrupted run resumes where it stopped and a re-run asks nothing. Retries with exponential backoff on
429/5xx/connection errors are the openai SDK's; concurrency is a thread pool. A request that still fails is
written with ``prediction: null`` and its error, and evaluation counts it as unanswered.

Image modes for blind baselines: ``blank`` sends a mid-grey image of the same size, ``shuffled`` sends the
image of another item of the same Parquet shard (one config and split; a seeded derangement), so the model
sees the question and options with an uninformative image.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from pipelines.evaluate.bench import CONFIGS, Benchmark
from pipelines.export.circular import OFFSET, rotate, rotation_count
from pipelines.export.prompt import LETTERS, build_prompt, present_options
from pipelines.storage import atomic_write_bytes

IMAGE_MODES = ("image", "blank", "shuffled")


@dataclass
class ModelSettings:
    base_url: str
    model: str
    api_key: str = "EMPTY"  # local servers accept any key
    concurrency: int = 8
    max_retries: int = 4
    timeout_s: float = 120.0
    max_tokens: int = 256
    temperature: float = 0.0
    cache_dir: Path = Path("model_cache")


@dataclass
class Request:
    index: int
    item_id: str
    image: bytes
    prompt: str


def _mime(data: bytes) -> str:
    return "image/jpeg" if data[:3] == b"\xff\xd8\xff" else "image/png"


def blank_like(data: bytes) -> bytes:
    """A mid-grey PNG of the same size as the image ``data``."""
    with Image.open(io.BytesIO(data)) as im:
        size = im.size
    buf = io.BytesIO()
    Image.new("RGB", size, (128, 128, 128)).save(buf, format="PNG")
    return buf.getvalue()


def derangement(n: int, seed: int, label: str) -> list[int]:
    """A seeded permutation of range(n) with no fixed point (n >= 2): each item gets another's image."""
    if n < 2:
        return list(range(n))
    order = np.random.default_rng([seed, zlib.crc32(label.encode())]).permutation(n)
    out = [0] * n
    for i in range(n):  # each item takes the image of the next item in a random cycle
        out[order[i]] = int(order[(i + 1) % n])
    return out


def _rotations(row: dict, circular: bool, config: str) -> list[tuple[int, dict]]:
    """(index, row as shown) for rotation 0 and, with ``circular``, every further rotation of a main item."""
    out = [(int(row["index"]), row)]
    opts = present_options(row)
    if circular and config == "main" and not row["multi_answer"] and len(opts) >= 2:
        for k in range(1, rotation_count(opts)):
            out.append((int(row["index"]) + k * OFFSET, {**row, **{c: None for c in LETTERS}, **rotate(opts, k)}))
    return out


def count_requests(bench: Benchmark, splits: tuple[str, ...] = ("val", "test"), configs: tuple[str, ...] = CONFIGS,
                   circular: bool = False) -> int:
    """How many requests ``request_batches`` will yield (for a progress bar), from the public text alone."""
    rows = bench.public[bench.public["config"].isin(configs) & bench.public["split"].isin(splits)]
    return sum(len(_rotations(r, circular, r["config"])) for r in rows.to_dict("records"))


def request_batches(bench: Benchmark, splits: tuple[str, ...] = ("val", "test"), configs: tuple[str, ...] = CONFIGS,
                    circular: bool = False, image_mode: str = "image", seed: int = 0) -> Iterator[list[Request]]:
    """The requests for every exported row of the chosen configs and splits (and every rotation with
    ``circular``), one Parquet shard at a time: memory holds one shard's images, never the whole export. Shuffled
    images are exchanged within a shard (shards hold one split of one config)."""
    for config in [c for c in CONFIGS if c in configs]:
        for path in bench.shards(config):
            table = pq.read_table(path)
            rows = [r for r in table.to_pylist() if r["split"] in splits]
            if not rows:
                continue
            images = [r["image"]["bytes"] for r in rows]
            if image_mode == "blank":
                images = [blank_like(b) for b in images]
            elif image_mode == "shuffled":
                images = [images[j] for j in derangement(len(images), seed, f"{config}/{path.name}")]
            yield [Request(idx, r["item_id"], img, build_prompt(shown))
                   for r, img in zip(rows, images) for idx, shown in _rotations(r, circular, config)]


class ModelClient:
    def __init__(self, settings: ModelSettings):
        import openai
        self.settings = settings
        self._sdk = openai.OpenAI(api_key=settings.api_key, base_url=settings.base_url, timeout=settings.timeout_s,
                                  max_retries=settings.max_retries)

    def _params(self) -> dict:
        return {"max_tokens": self.settings.max_tokens, "temperature": self.settings.temperature}

    def cache_key(self, req: Request) -> str:
        payload = {"model": self.settings.model, "item": req.item_id, "index": req.index, "prompt": req.prompt,
                   "image_sha256": hashlib.sha256(req.image).hexdigest(), "params": self._params()}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def ask(self, req: Request) -> tuple[dict, bool]:
        """({index, item_id, prediction[, error]}, whether it came from the cache)."""
        import openai
        key = self.cache_key(req)
        path = Path(self.settings.cache_dir) / key[:2] / f"{key}.json"
        if path.exists():
            return {"index": req.index, "item_id": req.item_id, "prediction": json.loads(path.read_text())["reply"]}, True
        url = f"data:{_mime(req.image)};base64,{base64.b64encode(req.image).decode('ascii')}"
        messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                                 {"type": "text", "text": req.prompt}]}]
        try:
            resp = self._sdk.chat.completions.create(model=self.settings.model, messages=messages, **self._params())
        except openai.APIError as exc:
            return {"index": req.index, "item_id": req.item_id, "prediction": None,
                    "error": f"{type(exc).__name__}: {exc}"}, False
        reply = resp.choices[0].message.content or ""
        atomic_write_bytes(path, json.dumps({"model": self.settings.model, "reply": reply}, sort_keys=True).encode())
        return {"index": req.index, "item_id": req.item_id, "prediction": reply}, False


def run_model(batches: Iterable[list[Request]], settings: ModelSettings,
              progress: Callable[[int], None] | None = None) -> tuple[list[dict], dict]:
    """(prediction rows in request order, counts: requests, cached, errors); ``progress`` gets the number done."""
    client = ModelClient(settings)
    done, lock = [0], threading.Lock()

    def one(req: Request):
        out = client.ask(req)
        with lock:
            done[0] += 1
            if progress:
                progress(done[0])
        return out

    results = []
    with ThreadPoolExecutor(max_workers=max(1, settings.concurrency)) as pool:
        for batch in batches:
            results += list(pool.map(one, batch))
    rows = [r for r, _ in results]
    return rows, {"requests": len(rows), "cached": sum(c for _, c in results),
                  "errors": sum(1 for r in rows if r.get("error"))}
