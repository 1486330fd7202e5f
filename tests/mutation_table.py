"""Print mutmut's results as the per-module table of docs/mutation.md (run from the directory mutmut ran in).

The modules come from ``[tool.mutmut] only_mutate`` in pyproject.toml, the one list of mutated modules. The
rate is killed / (killed + survived): a timeout counts as killed (the mutant changed behaviour enough to hang a
test that passes in a second), a mutant no selected test reaches ("no tests") counts as survived, and mutants
not yet checked are reported apart and left out of the rate. Exit status 1 when any module is below 90 %.
"""

from __future__ import annotations

import json
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


def tally(meta: Path) -> Counter:
    c: Counter = Counter()
    for code in json.loads(meta.read_text())["exit_code_by_key"].values():
        if code is None:
            c["not checked"] += 1
        elif code in KILLED:
            c["killed"] += 1
        elif code in SURVIVED:
            c["survived"] += 1
        elif code in NO_TESTS:
            c["no tests"] += 1
        elif code in TIMEOUT:
            c["timeout"] += 1
        else:
            c["other"] += 1
    return c


def main(root: Path = Path(".")) -> int:
    modules = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["mutmut"]["only_mutate"]
    rows, total, low = [], Counter(), []
    for mod in modules:
        meta = root / "mutants" / (mod + ".meta")
        c = tally(meta) if meta.is_file() else Counter()
        n = sum(c.values())
        dead, alive = c["killed"] + c["timeout"], c["survived"] + c["no tests"]
        rate = dead / (dead + alive) if dead + alive else None
        if rate is not None and rate < TARGET:
            low.append(mod)
        total += c
        rows.append((mod, n, c["killed"], c["timeout"], c["survived"], c["no tests"], c["not checked"] + c["other"],
                     "n/a" if rate is None else f"{100 * rate:.1f} %"))
    dead, alive = total["killed"] + total["timeout"], total["survived"] + total["no tests"]
    rows.append(("**all**", sum(total.values()), total["killed"], total["timeout"], total["survived"],
                 total["no tests"], total["not checked"] + total["other"],
                 "n/a" if not dead + alive else f"{100 * dead / (dead + alive):.1f} %"))
    print("| module | mutants | killed | timeout | survived | no tests | not checked | kill rate |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print("| " + " | ".join(str(v) for v in r) + " |")
    if low:
        print(f"below {TARGET:.0%}: {', '.join(low)}", file=sys.stderr)
    return 1 if low else 0


if __name__ == "__main__":
    sys.exit(main())
