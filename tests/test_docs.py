"""The docs are checked like code: README.md and every docs/*.md page.

- every ```yaml block parses with yaml.safe_load;
- a yaml block that is a registry (a `datasets:` list) or registry entries goes through the project's own loader,
  `pipelines.sources.registry.load_registry` (roots and tables are stood in by temporary folders, since the examples name
  a user's data disks); a label map goes through `pipelines.label_maps.load_label_map`; a settings file through
  `PipelineConfig.load`. A block that is none of these must say why it is not checked, with a marker comment
  `# doc-check: skip <reason>`;
- every ```python block runs in a temporary folder; a block marked `# doc-check: needs-demo-build` runs in a
  folder whose `data/` holds a demo build (with the ROI annotations), made once per session (slow);
- every relative link points to a file that exists (and to a heading that exists, when it names one);
- README.md is at most 150 lines and names `make demo` and `make test` in its first 40 lines.

The checks are plain functions over a page's text, so a broken page can be checked without touching the real
ones (see the tests at the end of this file)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from pipelines.config import PROJECT_ROOT, PipelineConfig
from pipelines.label_maps import LabelMap, LabelMapError, load_label_map
from pipelines.source import RegistryError
from pipelines.sources.registry import load_registry

PAGES = sorted((PROJECT_ROOT / "docs").glob("*.md")) + [PROJECT_ROOT / "README.md"]
SKIP = re.compile(r"#[ \t]*doc-check:[ \t]*skip\b[ \t]*(.*)")
NEEDS_BUILD = re.compile(r"#\s*doc-check:\s*needs-demo-build\b")
SHARED_LABEL_MAPS = PROJECT_ROOT / "tests" / "shared_registry"


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str

    def __str__(self) -> str:
        return f"{self.page.relative_to(PROJECT_ROOT) if self.page.is_relative_to(PROJECT_ROOT) else self.page}:{self.line}"


def fenced_blocks(page: Path, text: str | None = None) -> list[Block]:
    """Fenced code blocks (``` or ~~~, possibly indented inside a list), with their language."""
    lines = (page.read_text(encoding="utf-8") if text is None else text).splitlines()
    out, i = [], 0
    while i < len(lines):
        m = re.match(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.groups()
        body, j = [], i + 1
        while j < len(lines) and not re.match(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[j]):
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        if j == len(lines):
            raise AssertionError(f"{page}:{i + 1}: code fence never closed")
        out.append(Block(page, i + 1, lang.lower(), "\n".join(body) + "\n"))
        i = j + 1
    return out


def all_blocks(lang: str) -> list[Block]:
    return [b for p in PAGES for b in fenced_blocks(p) if b.lang == lang]


# ---- YAML -------------------------------------------------------------------------------------------------------

def yaml_kind(doc) -> str:
    """What a YAML example is: 'registry', 'entries', 'label_map', 'settings' or 'other'."""
    if isinstance(doc, dict) and "datasets" in doc:
        return "registry"
    if isinstance(doc, dict) and {"id", "format"} <= set(doc):
        return "entries"
    if isinstance(doc, list) and doc and all(isinstance(d, dict) and "id" in d for d in doc):
        return "entries"
    if isinstance(doc, dict) and doc and set(doc) <= set(LabelMap.model_fields) and ({"values", "labels"} & set(doc)):
        return "label_map"
    if isinstance(doc, dict) and doc and set(doc) <= set(PipelineConfig.model_fields):
        return "settings"
    return "other"


def _stand_in_label_map(ref: str, folder: Path) -> Path:
    """The label map an example names: the project's own file when it has one (demo maps, the ../shared maps),
    else an empty map (a user's file the example only names)."""
    for base in (PROJECT_ROOT, SHARED_LABEL_MAPS):
        if (base / ref).is_file():
            return base / ref
    path = folder / "label_maps" / Path(ref).name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}\n")
    return path


def check_registry_example(doc, folder: Path) -> None:
    """Run an example registry (or its entries) through `load_registry`. The example's roots are a user's data
    folders, so each is replaced by an empty folder under `folder`, and a per-image pixel-size table by a CSV with
    the named columns; everything else is checked as written."""
    if isinstance(doc, dict) and "datasets" in doc:
        registry = dict(doc)
        entries = doc["datasets"]
    else:
        entries = doc if isinstance(doc, list) else [doc]
        registry = {"version": 1, "datasets": entries}
    fixed = []
    for i, entry in enumerate(entries or []):
        entry = dict(entry)
        if "root" in entry:
            root = folder / "roots" / f"{i}_{Path(str(entry['root'])).name}"
            root.mkdir(parents=True, exist_ok=True)
            entry["root"] = str(root)
        if "label_map" in entry:
            entry["label_map"] = str(_stand_in_label_map(str(entry["label_map"]), folder))
        ps = entry.get("pixel_size")
        if isinstance(ps, dict) and ps.get("table"):
            table = folder / "tables" / f"{i}_{Path(str(ps['table'])).name}"
            table.parent.mkdir(parents=True, exist_ok=True)
            table.write_text(f"{ps.get('id_column', 'id')},{ps.get('value_column', 'value')}\nx.png,0.1\n")
            entry["pixel_size"] = {**ps, "table": str(table)}
        fixed.append(entry)
    registry["datasets"] = fixed
    path = folder / "sources.yaml"
    path.write_text(yaml.safe_dump(registry, sort_keys=False, allow_unicode=True), encoding="utf-8")
    load_registry(path, data_dirs=[folder])


def check_yaml_block(block: Block, folder: Path) -> str:
    """Parse the block and validate it against its schema; returns its kind. Raises on any problem."""
    try:
        doc = yaml.safe_load(block.text)
    except yaml.YAMLError as exc:
        raise AssertionError(f"{block}: not valid YAML: {exc}") from exc
    skip = SKIP.search(block.text)
    if skip:
        assert skip.group(1).strip(" -—:"), f"{block}: a `doc-check: skip` marker needs a reason"
        return "skipped"
    kind = yaml_kind(doc)
    folder.mkdir(parents=True, exist_ok=True)
    if kind in ("registry", "entries"):
        try:
            check_registry_example(doc, folder)
        except RegistryError as exc:
            raise AssertionError(f"{block}: the registry loader refuses the example:\n{exc}") from exc
    elif kind == "label_map":
        path = folder / "label_map.yaml"
        path.write_text(block.text, encoding="utf-8")
        try:
            load_label_map(path)
        except LabelMapError as exc:
            raise AssertionError(f"{block}: {exc}") from exc
    elif kind == "settings":
        path = folder / "settings.yaml"
        path.write_text(block.text, encoding="utf-8")
        try:
            PipelineConfig.load(path)
        except ValueError as exc:
            raise AssertionError(f"{block}: not valid settings: {exc}") from exc
    else:
        raise AssertionError(f"{block}: a YAML example that is not a registry, registry entry, label map or "
                             "settings file; mark it `# doc-check: skip <reason>` if it is meant to be unchecked")
    return kind


YAML_BLOCKS = all_blocks("yaml")


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=str)
def test_yaml_examples_parse_and_match_their_schema(block, tmp_path):
    check_yaml_block(block, tmp_path)


def test_registry_and_label_map_examples_are_checked():
    """The docs do show registry entries and label maps, and they are validated, not skipped."""
    kinds = set()
    for b in YAML_BLOCKS:
        try:
            kinds.add(yaml_kind(yaml.safe_load(b.text)))
        except yaml.YAMLError:  # reported by the test above
            continue
    assert {"registry", "entries", "label_map", "settings"} <= kinds


# ---- Python -----------------------------------------------------------------------------------------------------

def run_python_block(block: Block, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", block.text], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


PYTHON_BLOCKS = all_blocks("python")
QUICK = [b for b in PYTHON_BLOCKS if not NEEDS_BUILD.search(b.text)]
BUILT = [b for b in PYTHON_BLOCKS if NEEDS_BUILD.search(b.text)]


@pytest.mark.parametrize("block", QUICK, ids=str)
def test_python_examples_run(block, tmp_path):
    res = run_python_block(block, tmp_path)
    assert res.returncode == 0, f"{block}: the example fails:\n{res.stderr[-3000:]}"


@pytest.fixture(scope="session")
def demo_build(tmp_path_factory, demo_registry) -> Path:
    """A folder whose data/ holds a demo build with the ROI annotations (what `make demo` builds, plus the
    opt-in annotations the docs load)."""
    root = tmp_path_factory.mktemp("docs_demo")
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    settings = root / "settings.yaml"
    settings.write_text("annotate:\n  enabled: true\n")
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    env.pop("OPENAI_API_KEY", None)
    res = subprocess.run([str(Path(sys.executable).parent / "medbench"), "build"], cwd=root, env={**env, "MEDBENCH_REGISTRY": str(demo_registry),
                                        "MEDBENCH_CONFIG": str(settings), "MEDBENCH_DATA_ROOT": str(root / "data")},
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return root


@pytest.mark.slow
@pytest.mark.parametrize("block", BUILT, ids=str)
def test_python_examples_run_on_a_demo_build(block, demo_build):
    res = run_python_block(block, demo_build)
    assert res.returncode == 0, f"{block}: the example fails on a demo build:\n{res.stderr[-3000:]}"


# ---- Links ------------------------------------------------------------------------------------------------------

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|!\[[^\]]*\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for the headings of a page (lower case, punctuation dropped, spaces to '-')."""
    text = re.sub(r"(?ms)^\s*```.*?^\s*```", "", page.read_text(encoding="utf-8"))
    out = set()
    for m in re.finditer(r"(?m)^#{1,6}\s+(.*?)\s*#*\s*$", text):
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


def dead_links(page: Path, text: str | None = None) -> list[str]:
    """Relative links (and images) of a page whose file, or heading, does not exist."""
    text = page.read_text(encoding="utf-8") if text is None else text
    text = re.sub(r"(?ms)^\s*```.*?^\s*```", "", text)  # code is not prose
    text = re.sub(r"`[^`\n]*`", "", text)
    dead = []
    for m in LINK.finditer(text):
        target = m.group(1) or m.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("//"):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            dead.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            dead.append(f"{target} (no heading '{anchor}' in {dest.name})")
    return dead


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name if p.parent.name != "docs" else f"docs/{p.name}")
def test_relative_links_resolve(page):
    assert dead_links(page) == []


def test_every_docs_page_is_reachable_from_the_readme():
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    linked = {Path(t).name for t in re.findall(r"\(docs/([^)#\s]+)", text)}
    assert {p.name for p in PAGES if p.parent.name == "docs"} <= linked


# ---- The README's shape -----------------------------------------------------------------------------------------

def readme_problems(text: str) -> list[str]:
    lines = text.splitlines()
    problems = []
    if len(lines) > 150:
        problems.append(f"README.md has {len(lines)} lines (at most 150)")
    first = "\n".join(lines[:40])
    problems += [f"`{cmd}` is not in the README's first 40 lines" for cmd in ("make demo", "make test") if cmd not in first]
    return problems


def test_readme_is_short_and_starts_with_the_two_commands():
    assert readme_problems((PROJECT_ROOT / "README.md").read_text(encoding="utf-8")) == []


# ---- The checks can fail ----------------------------------------------------------------------------------------

def test_the_checks_catch_planted_faults(tmp_path):
    """A broken YAML block, an entry the registry refuses, a label map with an unknown key, a dead link, a
    failing example and a long README are each caught (so the tests above would fail on such a page)."""
    page = tmp_path / "docs" / "bad.md"
    page.parent.mkdir()
    page.write_text("""# Bad page

See [a page that is not there](nowhere.md) and [a heading that is not there](bad.md#no-such-heading).

```yaml
datasets: [id: x
```

```yaml
- id: my_ct
  root: /data/ct
  format: volume_pairz
  modality: CT
  dimension: 3
  task_type: seg
  label_map: label_maps/my_ct.yaml
  license: CC0-1.0
```

```yaml
values: {1: liver}
labels: {liver: {window: liver}}
```

```yaml
something: else
```

```python
raise SystemExit(3)
```
""")
    blocks = fenced_blocks(page)
    for i, block in enumerate(b for b in blocks if b.lang == "yaml"):
        with pytest.raises(AssertionError) as err:
            check_yaml_block(block, tmp_path / f"y{i}")
        assert str(block) in str(err.value)
    assert "volume_pairz" not in str(err.value)  # the last one is refused for being unmarked, not by a schema
    (python_block,) = [b for b in blocks if b.lang == "python"]
    assert run_python_block(python_block, tmp_path).returncode == 3
    assert dead_links(page) == ["nowhere.md (no such file)", "bad.md#no-such-heading (no heading 'no-such-heading' "
                                                              "in bad.md)"]
    assert len(readme_problems("x\n" * 151)) == 3
    # and the same checks pass once the faults are gone
    good = tmp_path / "good"
    check_yaml_block(Block(page, 1, "yaml", "annotate:\n  enabled: true\n"), good)
    check_yaml_block(Block(page, 1, "yaml", "# doc-check: skip a Helm values file, not ours\nimage: x\n"), good)
    with pytest.raises(AssertionError, match="needs a reason"):
        check_yaml_block(Block(page, 1, "yaml", "# doc-check: skip\nimage: x\n"), good)
