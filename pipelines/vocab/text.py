"""Text forms of labels: the comparison key, laterality words, and MeSH names made readable."""

from __future__ import annotations

import re
import unicodedata

_NON_ALNUM = re.compile(r"[^0-9a-z]+")
SIDE_WORDS = {"left": "left", "lt": "left", "l": "left", "right": "right", "rt": "right", "r": "right",
              "bilateral": "bilateral", "both": "bilateral"}


def form_key(text: str) -> str:
    """Case-, punctuation- and spacing-free form: 'High-grade  Dysplasia' -> 'high grade dysplasia'."""
    text = unicodedata.normalize("NFKC", str(text)).lower()
    return " ".join(_NON_ALNUM.sub(" ", text).split())


def split_side(words: list[str]) -> tuple[list[str], str | None]:
    """Remove side words at either end ('kidney right', 'Lt Lung'); single letters only in longer labels."""
    side = None
    changed = True
    while changed and len(words) > 1:
        changed = False
        for pos in (0, -1):
            w = words[pos]
            if w in SIDE_WORDS and (len(w) > 1 or len(words) > 1):
                side = SIDE_WORDS[w] if side in (None, SIDE_WORDS[w]) else "bilateral"
                words = words[1:] if pos == 0 else words[:-1]
                changed = True
                break
    return words, side


def singulars(form: str) -> list[str]:
    """Singular candidates of the last word ('kidneys' -> 'kidney', 'arteries' -> 'artery')."""
    head, _, last = form.rpartition(" ")
    pre = f"{head} " if head else ""
    out = []
    if last.endswith("ies") and len(last) > 4:
        out.append(pre + last[:-3] + "y")
    if last.endswith("es") and len(last) > 4:
        out.append(pre + last[:-2])
    if last.endswith("s") and not last.endswith("ss") and len(last) > 3:
        out.append(pre + last[:-1])
    return out


def inflections(form: str) -> list[str]:
    """Singular, then plural variants of the last word, tried after the exact form."""
    head, _, last = form.rpartition(" ")
    pre = f"{head} " if head else ""
    plural = [pre + last[:-1] + "ies"] if last.endswith("y") and len(last) > 3 else []
    return [v for v in [*singulars(form), *plural, pre + last + "s"] if v != form]


def display_name(mesh_name: str) -> str:
    """'Intestine, Small' -> 'small intestine'; keeps acronyms ('COVID-19') as written."""
    parts = [p.strip() for p in mesh_name.split(",")]
    words = " ".join(reversed(parts)).split()
    return " ".join(w if sum(c.isupper() for c in w) >= 2 or any(c.isdigit() for c in w) else w.lower()
                    for w in words)
