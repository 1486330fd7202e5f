"""A cached, rate-limited client for OpenAI-compatible chat completions (structured JSON output).

Every response is stored under cache_dir by the hash of (model, messages, parameters), so a re-run
with unchanged inputs makes no request. Retries with exponential backoff on 429/5xx and timeouts
are the openai SDK's own (``max_retries``); concurrency is bounded by a thread pool.

Errors are redacted before they leave this module (a server may echo the key in its 401/500 body, the
SDK may quote headers or a keyed URL) and raised without the SDK's exception chained to them, so no
stored event, log line or metadata value can carry the key.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from pipelines.config import LLMSettings
from pipelines.redact import redact, register_secret
from pipelines.storage import atomic_write_bytes


class LLMUnavailable(RuntimeError):
    """No key (or LLM use switched off): callers fall back to the offline bank and say so."""


class LLMResponseError(RuntimeError):
    """The server answered, but not with the JSON the request's schema asked for."""


@dataclass
class CallRecord:
    prompt_hash: str
    model: str
    cached: bool
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    error: str | None = None


def request_hash(model: str, messages: list[dict], params: dict) -> str:
    payload = json.dumps({"model": model, "messages": messages, "params": params}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class LLMClient:
    def __init__(self, settings: LLMSettings, api_key: str | None = None):
        self.settings = settings
        self.api_key = api_key if api_key is not None else os.environ.get(settings.api_key_env)
        register_secret(self.api_key)  # whatever path an error takes, this value is redacted
        self.cache_dir = Path(settings.cache_dir)
        self._client = None

    @property
    def model(self) -> str:
        return self.settings.model

    @property
    def endpoint(self) -> str:
        """The server, for messages: the base URL without its query string (which may hold a key)."""
        return redact((self.settings.base_url or "OpenAI").split("?")[0])

    def _sdk(self):
        if not self.api_key:
            raise LLMUnavailable(f"no API key: set {self.settings.api_key_env} (or llm.api_key_env) to use "
                                 f"{self.settings.model}; falling back to the offline template bank")
        if self._client is None:
            import openai
            self._client = openai.OpenAI(api_key=self.api_key, base_url=self.settings.base_url,
                                         timeout=self.settings.timeout_s, max_retries=self.settings.max_retries)
        return self._client

    def _cache_path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.json"

    def require_key(self) -> None:
        """Raise LLMUnavailable (with what to set) when no key is configured."""
        self._sdk()

    def _params(self, schema_name: str, schema: dict) -> dict:
        return {"temperature": self.settings.temperature, "response_format": {
            "type": "json_schema", "json_schema": {"name": schema_name, "schema": schema, "strict": True}}}

    def complete_json(self, messages: list[dict], schema_name: str, schema: dict) -> tuple[dict, CallRecord]:
        """One chat completion constrained to ``schema``; served from the cache when possible."""
        params = self._params(schema_name, schema)
        key = request_hash(self.model, messages, params)
        path = self._cache_path(key)
        if path.exists():
            cached = json.loads(path.read_text(encoding="utf-8"))
            return cached["data"], CallRecord(key, self.model, True, cached["prompt_tokens"], cached["completion_tokens"], 0.0)
        import openai
        failure = None
        try:
            resp = self._sdk().chat.completions.create(model=self.model, messages=messages, **params)
        except openai.APIError as exc:
            failure = redact(f"{self.endpoint}: {type(exc).__name__}: {exc}")
        if failure is not None:  # raised outside the except block: the SDK's unredacted error is not chained
            raise LLMResponseError(failure)
        text = resp.choices[0].message.content or ""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LLMResponseError(redact(f"model returned malformed JSON ({exc.msg} at {exc.pos}): {text[:120]!r}")) \
                from None
        if not isinstance(data, dict):
            raise LLMResponseError(f"model returned {type(data).__name__}, expected an object")
        usage = resp.usage
        pt, ct = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
        cost = pt * self.settings.price_input_per_mtok / 1e6 + ct * self.settings.price_output_per_mtok / 1e6
        record = {"model": self.model, "data": data, "prompt_tokens": pt, "completion_tokens": ct}
        atomic_write_bytes(path, json.dumps(record, sort_keys=True, ensure_ascii=False, indent=1).encode("utf-8"))
        return data, CallRecord(key, self.model, False, pt, ct, round(cost, 6))

    def map_json(self, requests: Iterable[tuple[list[dict], str, dict]],
                 on_error: Callable[[Exception], None] | None = None) -> list[tuple[dict | None, CallRecord]]:
        """Run many requests with at most ``max_concurrency`` in flight; results keep the input order."""
        requests = list(requests)

        def one(req):
            messages, name, schema = req
            try:
                return self.complete_json(messages, name, schema)
            except LLMResponseError as exc:
                if on_error:
                    on_error(exc)
                key = request_hash(self.model, messages, self._params(name, schema))
                return None, CallRecord(key, self.model, False, error=redact(str(exc)))

        with ThreadPoolExecutor(max_workers=max(1, self.settings.max_concurrency)) as pool:
            return list(pool.map(one, requests))


def usage_summary(records: list[CallRecord]) -> dict:
    """Totals for asset metadata: calls made, cache hits, tokens, cost, errors."""
    made = [r for r in records if not r.cached and not r.error]
    return {"requests": len(records), "api_calls": len(made), "cache_hits": sum(r.cached for r in records),
            "errors": sum(bool(r.error) for r in records),
            "prompt_tokens": sum(r.prompt_tokens for r in made), "completion_tokens": sum(r.completion_tokens for r in made),
            "cost_usd": round(sum(r.cost_usd for r in made), 4),
            "calls": [asdict(r) for r in records[:200]]}
