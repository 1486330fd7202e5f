"""Reading text files whose encoding the user did not choose: UTF-8 (with or without BOM) first,
then charset-normalizer's best guess, or the encoding the registry names.

Real manifests come in latin-1 or cp1252 (the Figure1 metadata does); reading them as UTF-8
crashed the reader. The encoding used is returned so it can be reported.
"""

from __future__ import annotations

from pathlib import Path

from charset_normalizer import from_bytes

from pipelines.errors import Reason, SampleError
from pipelines.sourcefiles import DEFAULT_LIMITS, Limits, read_bytes


def decode_text(data: bytes, rel: str, encoding: str | None = None) -> tuple[str, str]:
    """(text, encoding). An explicit `encoding` wins; undecodable input is a SampleError naming the fix."""
    if encoding:
        try:
            return data.decode(encoding), encoding
        except (UnicodeDecodeError, LookupError) as exc:
            raise SampleError(Reason.CORRUPT_FILE, f"'{rel}' cannot be read as {encoding}: {exc}; fix the "
                              "'encoding' option or re-save the file", rel) from exc
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    best = from_bytes(data).best()
    if best is None:
        raise SampleError(Reason.CORRUPT_FILE, f"'{rel}' is not text in any encoding charset-normalizer knows; "
                          "set the 'encoding' option or re-save it as UTF-8", rel)
    return str(best), best.encoding


def read_text(path: Path, rel: str, encoding: str | None = None, limits: Limits = DEFAULT_LIMITS) -> str:
    """A source text file (regular files only, read under the size cap and deadline), decoded."""
    return decode_text(read_bytes(path, rel, limits), rel, encoding)[0]
