"""The house contract: imports run down the flow, never up, and never in a circle.

The graph is read from the source (every import statement, those inside functions included), so a lazy
import cannot hide an arrow. Rooms are the packages and modules right under ``pipelines/``; the shared
services sit on the ground floor and the stages stand above them in flow order. The checker is tested on
planted trees too, so a contract that could never fail would show.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Ground floor: records, the registry's record types, settings and services every stage may use.
SERVICES = {"pipelines", "errors", "sourcefiles", "textio", "imageio", "volume", "geometry", "ids", "processes",
            "storage", "redact", "modalities", "taxonomy", "records", "config", "llm", "run_state", "cleanup",
            "housekeeping", "demo", "label_maps", "source"}
# The stages in flow order: each may use the services and the stages before it, never one after it.
STAGES = ["sources", "ingest", "standardize", "vocab", "gates", "candidates", "validity", "select", "render",
          "export", "annotate", "publish", "evaluate", "summary"]
# assets/: shared wiring below the stage modules, the one Definitions object on top.
ASSET_SHARED = ["partitions", "resources", "metadata", "changes", "automation", "cluster", "workers"]
ASSET_STAGES = ["ingest", "standardize", "vocab", "candidates", "gates", "select", "render", "export", "validity",
                "annotate", "publish", "evaluate", "sensors"]
FRONT = ["pipelines", "assets", "cli"]  # pipelines knows neither dagster nor the others; cli may use both


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path, packages: list[str]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (a name imported from a package counts as its submodule when
    one exists by that name)."""
    files = {module_name(p, root): p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in files else node.module
                           for a in node.names]
            for t in targets:
                while t and t not in files:  # `import a.b.c` of a module file: the longest known prefix
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def room(mod: str) -> tuple[str, str]:
    """(package, room): ``pipelines.select.build`` -> ("pipelines", "select")."""
    parts = mod.split(".")
    return parts[0], parts[1] if len(parts) > 1 else parts[0]


def floor(mod: str) -> tuple[int, int]:
    """A sortable height: (front-end, floor inside it). Unknown rooms raise: every room must be placed."""
    pkg, name = room(mod)
    if name == pkg and pkg != "pipelines":  # a front-end's package face stands under its rooms
        return FRONT.index(pkg), -1
    if pkg == "pipelines":
        if name in SERVICES:
            return 0, 0
        return 0, 1 + STAGES.index(name)
    if pkg == "assets":
        if name in ASSET_SHARED:
            return 1, ASSET_SHARED.index(name)
        if name == "definitions":
            return 1, 100
        return 1, 50 + ASSET_STAGES.index(name)
    return FRONT.index(pkg), 0


def upward(graph: dict[str, set[str]]) -> list[str]:
    """Arrows from a room to a room above it or beside it; ground-floor rooms may use each other (circles among
    them are caught by :func:`circles`)."""
    bad = []
    for mod, targets in sorted(graph.items()):
        for t in sorted(targets):
            if room(mod) == room(t):
                continue  # inside one room only circles matter
            if floor(t) > floor(mod) or (floor(t) == floor(mod) and floor(mod)[1] != 0):
                bad.append(f"{mod} -> {t}")
    return bad


def dagster_in_pipelines(root: Path) -> list[str]:
    """Domain code stays importable without Dagster."""
    hits = []
    for p in sorted((root / "pipelines").rglob("*.py")):
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n.split(".")[0] in ("dagster", "assets", "cli") for n in names):
                hits.append(str(p.relative_to(root)))
    return hits


def test_the_house_has_no_circles():
    graph = import_graph(ROOT, FRONT)
    assert circles(graph) == []


def test_every_import_runs_down_the_flow():
    graph = import_graph(ROOT, FRONT)
    assert upward(graph) == []


def test_every_room_is_placed_on_a_floor():
    """A new package under pipelines/ or module under assets/ must be given its place in the contract."""
    unplaced = sorted({room(m) for m in import_graph(ROOT, FRONT) if not _placed(m)})
    assert unplaced == []


def _placed(mod: str) -> bool:
    try:
        floor(mod)
        return True
    except ValueError:
        return False


def test_pipelines_imports_no_front_end():
    assert dagster_in_pipelines(ROOT) == []


def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        f = tmp_path / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(textwrap.dedent(text))
    return tmp_path


def test_a_planted_circle_is_found(tmp_path):
    root = _plant(tmp_path, {
        "pipelines/__init__.py": "",
        "pipelines/select/__init__.py": "",
        "pipelines/select/a.py": "def f():\n    from pipelines.select.b import g  # inside a function\n",
        "pipelines/select/b.py": "from pipelines.select import a\n",
        "pipelines/select/c.py": "import pipelines.select.b\n",
    })
    assert circles(import_graph(root, ["pipelines"])) == [["pipelines.select.a", "pipelines.select.b"]]


def test_a_planted_upward_import_is_found(tmp_path):
    root = _plant(tmp_path, {
        "pipelines/__init__.py": "",
        "pipelines/records.py": "from pipelines.select.build import x\n",  # ground floor reaching up
        "pipelines/select/__init__.py": "",
        "pipelines/select/build.py": "from pipelines.records import y\nfrom pipelines.render.items import z\n",
        "pipelines/render/__init__.py": "",
        "pipelines/render/items.py": "from pipelines.select import build\n",  # a later stage: fine
    })
    assert upward(import_graph(root, ["pipelines"])) == [
        "pipelines.records -> pipelines.select.build",
        "pipelines.select.build -> pipelines.render.items",
    ]


def test_a_room_off_the_plan_is_refused():
    with pytest.raises(ValueError):
        floor("pipelines.scratch")


def test_the_build_command_loads_scikit_learn_and_hf_datasets_only_for_the_steps_that_use_them():
    """Loading the command line and the asset definitions leaves out what only selection and the export use
    (scikit-learn, HF datasets: over a second before the first run could start); `load_step_modules` brings them
    in, which `medbench build` does while the dataset partitions run."""
    from tests.fresh_python import run_fresh
    out = run_fresh("import cli.main, cli.build\nheavy = ('sklearn', 'datasets')\n"
                    "print([m for m in heavy if m in sys.modules])\n"
                    "from assets.workers import load_step_modules\n"
                    "load_step_modules(['benchmark', 'benchmark_exports'])\n"
                    "print([m for m in heavy if m in sys.modules])\n", timeout=120)
    assert out.split("\n")[:2] == ["[]", "['sklearn', 'datasets']"]
