"""Print mutmut's results as the per-module table of docs/mutation.md (run from the directory mutmut ran in).

The modules come from ``[tool.mutmut] only_mutate`` in pyproject.toml, the one list of mutated modules. The
rate is killed / (killed + survived): a timeout counts as killed (the mutant changed behaviour enough to hang a
test that passes in a second), a mutant no selected test reaches ("no tests") counts as survived, and mutants
not yet checked are reported apart and left out of the rate.

Equivalent mutants are not marked in the source (no pragmas): docs/mutation.md lists them by name, each with
its reason, under the heading "Equivalent mutants". The table gives the rate both ways: counting them as
survivors ("kill rate") and leaving them out ("excl. equivalent"). A listed name that did not survive is
reported (the list is stale: the code moved, or a test now kills it). Exit status 1 when any module is below
90 % with the listed equivalent mutants left out.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from collections import Counter
from pathlib import Path

# mutmut's exit-code meanings (mutmut/stats.py)
KILLED = {1, 3}
SURVIVED = {0}
NO_TESTS = {5, 33}
TIMEOUT = {36, -24, 24, 152, 255}
TARGET = 0.90
NAME = re.compile(r"`(pipelines\.[\w.]+__mutmut_\d+)`")


def equivalent_names(doc: Path) -> set[str]:
    """Mutant names listed in the "Equivalent mutants" section of docs/mutation.md (up to the next heading of the
    same or a higher level)."""
    if not doc.is_file():
        return set()
    names, inside, level = set(), False, 0
    for line in doc.read_text(encoding="utf-8").splitlines():
        head = re.match(r"^(#+)\s+(.*)", line)
        if head:
            if inside and len(head.group(1)) <= level:
                break
            if head.group(2).strip().lower().startswith("equivalent mutants"):
                inside, level = True, len(head.group(1))
            continue
        if inside:
            names |= set(NAME.findall(line))
    return names


def tally(meta: Path, equivalent: set[str] = frozenset()) -> tuple[Counter, set[str]]:
    """Counts per outcome, and the listed equivalent names that were found among the survivors."""
    c: Counter = Counter()
    seen: set[str] = set()
    for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
        if code is None:
            c["not checked"] += 1
        elif code in KILLED:
            c["killed"] += 1
        elif code in SURVIVED:
            c["survived"] += 1
            if name in equivalent:
                c["equivalent"] += 1
                seen.add(name)
        elif code in NO_TESTS:
            c["no tests"] += 1
        elif code in TIMEOUT:
            c["timeout"] += 1
        else:
            c["other"] += 1
    return c, seen


def _rate(dead: int, alive: int) -> str:
    return "n/a" if not dead + alive else f"{100 * dead / (dead + alive):.1f} %"


def main(root: Path = Path(".")) -> int:
    modules = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["mutmut"]["only_mutate"]
    equivalent = equivalent_names(root / "docs" / "mutation.md")
    rows, total, low, seen = [], Counter(), [], set()
    for mod in modules:
        meta = root / "mutants" / (mod + ".meta")
        c, found = tally(meta, equivalent) if meta.is_file() else (Counter(), set())
        seen |= found
        n = sum(v for k, v in c.items() if k != "equivalent")
        dead, alive = c["killed"] + c["timeout"], c["survived"] + c["no tests"]
        if dead + alive - c["equivalent"] and dead / (dead + alive - c["equivalent"]) < TARGET:
            low.append(mod)
        total += c
        rows.append((mod, n, c["killed"], c["timeout"], c["survived"], c["no tests"], c["not checked"] + c["other"],
                     _rate(dead, alive), c["equivalent"], _rate(dead, alive - c["equivalent"])))
    dead, alive = total["killed"] + total["timeout"], total["survived"] + total["no tests"]
    rows.append(("**all**", sum(v for k, v in total.items() if k != "equivalent"), total["killed"], total["timeout"],
                 total["survived"], total["no tests"], total["not checked"] + total["other"], _rate(dead, alive),
                 total["equivalent"], _rate(dead, alive - total["equivalent"])))
    print("| module | mutants | killed | timeout | survived | no tests | not checked | kill rate "
          "| equivalent | excl. equivalent |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print("| " + " | ".join(str(v) for v in r) + " |")
    stale = sorted(equivalent - seen)
    checked = {m for m in modules if (root / "mutants" / (m + ".meta")).is_file()}
    stale = [s for s in stale if any(s.startswith(m[:-3].replace("/", ".") + ".") for m in checked)]
    if stale:
        print(f"listed as equivalent but not a survivor of this run: {', '.join(stale)}", file=sys.stderr)
    if low:
        print(f"below {TARGET:.0%} (equivalent mutants left out): {', '.join(low)}", file=sys.stderr)
    return 1 if low else 0


if __name__ == "__main__":
    sys.exit(main())
