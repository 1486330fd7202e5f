"""One redaction filter for every text that may be stored: log records, event metadata, exception
messages, HTTP errors.

A credential reaches storage through error paths: a server echoes the key in a 401 body, a client
library puts the Authorization header or a ``?api-key=`` URL into its exception, a traceback quotes
it. Every such text passes :func:`redact` before it is logged, raised or written. Known secret
values (the environment variables that hold keys, and any value a client registers) are replaced
wherever they appear; credential shapes (bearer tokens, ``api-key`` fields, key-like query-string
parameters, OpenAI/Hugging Face key formats) are replaced even when their value is not known.
Installing :func:`install_log_redaction` makes every log record of the process pass the filter.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable

MASK = "[REDACTED]"
# environment variables that hold credentials medbench or its libraries use
SECRET_ENV = ("OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_TOKEN",
              "MEDBENCH_LLM_API_KEY", "MEDBENCH_ID_SALT")
MIN_SECRET_LEN = 6  # shorter values would blank ordinary words

_lock = threading.Lock()
_registered: set[str] = set()

PATTERNS: list[tuple[re.Pattern, str]] = [
    # Authorization: Bearer xxx / Authorization: Basic xxx / "authorization": "..."
    (re.compile(r"(?i)(\bauthorization[\"']?\s*[:=]\s*[\"']?)(?:(bearer|basic|token)\s+)?[^\s\"',;}]+"),
     r"\1\2 " + MASK),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{4,}"), r"\1 " + MASK),
    # api-key / x-api-key / api_key / apikey / access_token / client_secret / password fields, JSON or header style
    (re.compile(r"(?i)([\"']?\b(?:x-)?(?:api[-_]?key|access[-_]?token|refresh[-_]?token|client[-_]?secret|"
                r"secret[-_]?key|password|passwd|auth[-_]?token|hf[-_]?token)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;}&]+"),
     r"\1" + MASK),
    # key-like query-string parameters: ?key=..., &token=..., &sig=...
    (re.compile(r"(?i)([?&](?:key|api[-_]?key|apikey|token|access[-_]?token|auth|sig|signature|secret|"
                r"password|code)=)[^&#\s\"']+"), r"\1" + MASK),
    # key formats: OpenAI (sk-..., sk-proj-...), Hugging Face (hf_...), Anthropic, GitHub, Slack, AWS access keys
    (re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{8,}"), MASK),
    (re.compile(r"\bhf_[A-Za-z0-9]{8,}\b"), MASK),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}\b"), MASK),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b"), MASK),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), MASK),
]


def register_secret(value: str | None) -> None:
    """Redact this exact value from now on (a key a client was given directly, not through the environment)."""
    if value and len(value) >= MIN_SECRET_LEN:
        with _lock:
            _registered.add(value)


def known_secrets(extra: Iterable[str] = ()) -> list[str]:
    """Every exact value to replace, longest first (so a key containing another is replaced whole)."""
    values = {os.environ.get(name, "") for name in SECRET_ENV} | set(extra)
    with _lock:
        values |= _registered
    return sorted((v for v in values if v and len(v) >= MIN_SECRET_LEN), key=len, reverse=True)


def redact(text: object, extra: Iterable[str] = ()) -> str:
    """``text`` with every known secret value and every credential-shaped substring replaced by [REDACTED]."""
    out = text if isinstance(text, str) else str(text)
    for value in known_secrets(extra):
        if value in out:
            out = out.replace(value, MASK)
    for pattern, repl in PATTERNS:
        out = pattern.sub(repl, out)
    return out


def redact_obj(obj: object) -> object:
    """A JSON-like value with every string in it redacted (metadata dictionaries, lists of call records)."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {k: redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact_obj(v) for v in obj)
    return obj


def redacted_error(exc: BaseException) -> str:
    """'Type: message' of an exception, redacted (what may be stored or raised again)."""
    return redact(f"{type(exc).__name__}: {exc}")


_installed = False


def install_log_redaction() -> None:
    """Make every log record of this process pass :func:`redact` (message, arguments and exception text).

    A log-record factory is the one place every record passes through, whichever logger or handler (the
    Dagster event log included) it goes to."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    base = logging.getLogRecordFactory()

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = base(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed %-format keeps its raw text
            message = str(record.msg)
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, ()
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return record

    logging.setLogRecordFactory(factory)
