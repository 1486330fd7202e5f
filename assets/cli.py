"""The `medbench` command line: validate sources, prepare the demo, build assets, summarize.

User mistakes (a missing file, a bad registry, an unknown asset) end with a one-line error and
exit code 1, never a traceback; see `UserErrorGroup`.
"""

from pathlib import Path
from typing import Annotated

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperGroup

from pipelines import __version__
from pipelines.config import PROJECT_ROOT, PipelineConfig
from pipelines.housekeeping import BuildLocked
from pipelines.label_maps import LabelMapError
from pipelines.registry import RegistryError, load_registry
from pipelines.summary import summarize


class UserError(Exception):
    """A mistake the user can fix from the message alone."""


USER_ERRORS = (UserError, RegistryError, LabelMapError, BuildLocked, ValidationError, yaml.YAMLError, OSError)


class UserErrorGroup(TyperGroup):
    """Turns user errors raised by any subcommand into `error: ...` on stderr and exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None


app = typer.Typer(help="Build a GMAI-MMBench-style medical VQA benchmark with Dagster.", no_args_is_help=True,
                  cls=UserErrorGroup)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"medbench {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="print the version and exit")] = False):
    """Build a GMAI-MMBench-style medical VQA benchmark with Dagster."""
sources_app = typer.Typer(help="Inspect and validate the source registry.", no_args_is_help=True)
demo_app = typer.Typer(help="The bundled demo datasets.", no_args_is_help=True)
app.add_typer(sources_app, name="sources")
app.add_typer(demo_app, name="demo")
vocab_app = typer.Typer(help="The MeSH label vocabulary.", no_args_is_help=True)
app.add_typer(vocab_app, name="vocab")
console = Console(soft_wrap=True)  # long paths and reasons are never cut or re-wrapped

RegistryOpt = Annotated[Path | None, typer.Option("--registry", "-r", help="registry YAML (env MEDBENCH_REGISTRY)")]
DataRootOpt = Annotated[Path | None, typer.Option("--data-root", help="output folder (env MEDBENCH_DATA_ROOT)")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="settings YAML (env MEDBENCH_CONFIG)")]


def _config(config: Path | None, registry: Path | None, data_root: Path | None) -> PipelineConfig:
    return PipelineConfig.load(config, registry=registry, data_root=data_root)


@sources_app.command("check")
def sources_check(registry: RegistryOpt = None, config: ConfigOpt = None, data_root: DataRootOpt = None,
                  scan: Annotated[bool, typer.Option(help="read every dataset now and count quarantined input")] = False):
    """Validate the registry; show each dataset and its quarantine counts."""
    cfg = _config(config, registry, data_root)
    try:
        reg = load_registry(cfg.registry, cfg.standardize.ct_windows)
    except RegistryError as exc:
        console.print(str(exc), style="red", markup=False, highlight=False)
        raise typer.Exit(1) from exc
    title = f"{reg.path} — {len(reg.ids)} dataset(s) OK"
    table = Table(title=title)
    columns = ("id", "format", "modality", "dim", "task", "samples", "quarantined", "gated out (last build)",
               "counted (exhaustive)")
    for col in columns:
        table.add_column(col, overflow="fold", no_wrap=False)
    summary = summarize(cfg.data_root, reg.ids, cfg.gates)
    for ds in reg.ids:
        e = reg.get(ds).entry
        samples, quarantined = summary.samples.get(ds, "-"), summary.quarantine_text(ds)
        if scan:
            from pipelines.ingest import ingest
            res = ingest(reg.get(ds), cfg)
            samples = res.samples.num_rows
            quarantined = ", ".join(f"{k}={v}" for k, v in sorted(res.reason_counts.items())) or "0"
        counted = ", ".join(sorted(reg.get(ds).label_map.exhaustive_labels())) if e.task_type == "det" else ""
        table.add_row(ds, e.format, e.modality, str(e.dimension), e.task_type, str(samples), quarantined,
                      summary.gate_text(ds), counted or "-")
    print_table(table, title, columns)
    for line in summary.gate_warnings():
        console.print(line, markup=False, highlight=False, style="yellow")
    for line in summary.empty_datasets():
        console.print(line, markup=False, highlight=False, style="red")


def print_table(table: Table, title: str, columns: tuple[str, ...]) -> None:
    """A rich table on a terminal; plain tab-separated lines (nothing cut) when piped or captured."""
    if console.is_terminal:
        console.print(table)
        return
    typer.echo(title)
    typer.echo("\t".join(columns))
    for row in zip(*(c.cells for c in table.columns)):
        typer.echo("\t".join(str(v) for v in row))


@demo_app.command("prepare")
def demo_prepare(force: Annotated[bool, typer.Option(help="rewrite even if present")] = False,
                 out: Annotated[Path, typer.Option(help="where the demo sources go")] = PROJECT_ROOT / "data" / "demo_sources"):
    """Write the demo source datasets (real package images + generated phantoms)."""
    from pipelines.demo import prepare_demo_sources
    path = prepare_demo_sources(out, force=force)
    console.print(f"demo sources ready in {path}")


@app.command()
def build(select: Annotated[list[str] | None, typer.Option("--select", "-s", help="asset name(s); default all")] = None,
          dataset: Annotated[list[str] | None, typer.Option("--dataset", "-d", help="dataset id(s); default all")] = None,
          registry: RegistryOpt = None, config: ConfigOpt = None, data_root: DataRootOpt = None,
          strict: Annotated[bool, typer.Option(help="an unresolved label stops the run (vocab.strict_labels)")] = False,
          force: Annotated[bool, typer.Option(help="re-run datasets that are up to date")] = False,
          workers: Annotated[int | None, typer.Option(help="datasets at once (default: CPU cores)")] = None):
    """Materialize what changed with Dagster (no UI), then print a summary."""
    from assets.build import BuildError, check_request, export_config_env, planned_steps
    from assets.build import build as run_build
    cfg = _config(config, registry, data_root)
    try:
        reg = load_registry(cfg.registry, cfg.standardize.ct_windows)
    except RegistryError as exc:
        console.print(str(exc), markup=False, highlight=False, style="red")
        raise typer.Exit(1) from exc
    try:
        check_request(reg.ids, select, dataset)
    except BuildError as exc:
        raise UserError(str(exc)) from None
    export_config_env(cfg, str(config) if config else None, strict=strict)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("building", total=planned_steps(reg.ids, select, dataset))

        def step(label: str) -> None:
            if progress.tasks[task].description != "building":
                progress.advance(task)
            progress.update(task, description=label)

        try:
            report = run_build(cfg, select=select, datasets=dataset, step=step, force=force, workers=workers,
                               log=lambda m: progress.console.print(m, highlight=False, markup=False))
        except BuildLocked as exc:
            raise UserError(str(exc)) from None
        progress.update(task, completed=progress.tasks[task].total, description="done")
    console.print(summarize(cfg.data_root, reg.ids, cfg.gates).render(), highlight=False, markup=False)
    if report.failed:
        for name in report.failed:
            console.print(f"failed: {name}: {report.reasons.get(name, '?')}", style="red", markup=False,
                          highlight=False)
        console.print("details in the Dagster run logs (`make dev` opens the UI)", highlight=False)
        raise typer.Exit(1)


@app.command()
def summary(registry: RegistryOpt = None, config: ConfigOpt = None, data_root: DataRootOpt = None):
    """Print where the outputs are and what they hold."""
    cfg = _config(config, registry, data_root)
    console.print(summarize(cfg.data_root, load_registry(cfg.registry).ids, cfg.gates).render(), highlight=False, markup=False)


@app.command("dagster-home")
def dagster_home():
    """Create the project's embedded Dagster home (.dagster/) and print its path."""
    from assets.build import ensure_dagster_home
    print(ensure_dagster_home())


@vocab_app.command("subset")
def vocab_subset(mesh_dir: Annotated[Path, typer.Option(help="folder with the full MeSH *terms*/*trees* tables")],
                 out: Annotated[Path, typer.Option(help="where the subset goes")] = PROJECT_ROOT / "mesh_vocab",
                 version: str = "2024"):
    """Regenerate the shipped MeSH subset (branches A, B, C, E plus every curated descriptor)."""
    from pipelines.vocab.curated import load_curated
    from pipelines.vocab.subset import build_subset
    extra = {c.mesh_id for c in load_curated(out).concepts if c.mesh_id}
    manifest = build_subset(mesh_dir, out, version=version, extra_ids=extra)
    console.print(f"{manifest['descriptors']} descriptors written to {out}")


@vocab_app.command("check")
def vocab_check(registry: RegistryOpt = None, config: ConfigOpt = None, data_root: DataRootOpt = None):
    """Validate curated MeSH mappings (mesh_vocab/ incl. the fallback options, every label map) against MeSH."""
    from pipelines.vocab.build import DatasetLabels, pin_problems
    from pipelines.vocab.curated import load_curated
    from pipelines.vocab.fallback import load_fallback
    from pipelines.vocab.mesh import load_mesh
    cfg = _config(config, registry, data_root)
    mesh = load_mesh(cfg.vocab.mesh_source)
    reg = load_registry(cfg.registry)
    problems = load_curated(cfg.vocab.curated_dir).problems(mesh) + load_fallback().problems(mesh)
    for ds in reg.ids:
        src = reg.get(ds)
        problems += pin_problems(DatasetLabels(ds, src.entry.modality, src.entry.task_type, src.label_map,
                                               str(src.label_map_path), {}), mesh)
    for p in problems:
        console.print(p, style="red", markup=False, highlight=False)
    console.print(f"MeSH {mesh.version}: {len(mesh.descriptors)} descriptors; {len(problems)} problem(s)")
    raise typer.Exit(1 if problems else 0)


labels_app = typer.Typer(help="Label maps: write a first one from the data.", no_args_is_help=True)
app.add_typer(labels_app, name="labels")


@labels_app.command("init")
def labels_init(dataset: Annotated[str, typer.Option("--dataset", "-d", help="the dataset id in the registry")],
                registry: RegistryOpt = None, config: ConfigOpt = None, data_root: DataRootOpt = None,
                names: Annotated[Path | None, typer.Option(help="JSON/YAML of value -> name (default: the "
                                                           "dataset's dataset.json or labels.json)")] = None,
                value: Annotated[list[str] | None, typer.Option(help="name an integer value: 1=lung (repeatable)")] = None,
                force: Annotated[bool, typer.Option(help="overwrite an existing label map")] = False):
    """Scan a registered dataset and write its label map (the file its entry's `label_map` names), with the
    vocabulary's suggestion for each label and TODO markers for what needs a decision."""
    from pipelines.label_init import render, scan
    from pipelines.storage import atomic_write_bytes
    cfg = _config(config, registry, data_root)
    pairs = {}
    for item in value or []:
        key, sep, name = item.partition("=")
        if not sep or not key.strip().isdigit() or not name.strip():
            raise UserError(f"--value {item!r}: write VALUE=NAME, e.g. --value 1=lung")
        pairs[int(key)] = name.strip()
    entry, path, found = scan(cfg.registry, dataset, cfg, names, pairs)
    if path.exists() and not force:
        raise UserError(f"{path} exists; pass --force to overwrite it")
    text = render(entry, found, cfg)
    atomic_write_bytes(path, text.encode())
    todo = text.splitlines()[3]
    console.print(f"{path}: {len(found.labels)} label(s), {len(found.values)} value(s) from {found.samples} "
                  f"sample(s) {todo.lstrip('# ')}", highlight=False, markup=False)
    if found.quarantined:
        console.print("quarantined while scanning: " + ", ".join(f"{k}={v}" for k, v in sorted(found.quarantined.items())),
                      highlight=False, markup=False)


templates_app = typer.Typer(help="Question templates: review what validation could not decide.", no_args_is_help=True)
app.add_typer(templates_app, name="templates")


@templates_app.command("review")
def templates_review(config: ConfigOpt = None, data_root: DataRootOpt = None,
                     reviews: Annotated[Path | None, typer.Option(help="decision file (default templates/reviews.yaml)")] = None):
    """Go through templates marked needs_review; decisions are saved in the repo and win on the next run."""
    from pipelines.questions.templates import (
        REVIEWS_PATH,
        load_reviews,
        pending,
        save_review,
    )
    from pipelines.storage import DataLayout
    cfg = _config(config, None, data_root)
    path = reviews or REVIEWS_PATH
    table = DataLayout(cfg.data_root).read("question_templates").to_pandas()
    done = load_reviews(path)
    todo = pending(table)
    todo = todo[~todo["template_id"].isin(done)]
    console.print(f"{len(todo)} template(s) need review")
    for row in todo.itertuples(index=False):
        console.print(f"\n[bold]{row.text}[/bold]\n  {row.task} / {row.granularity} / {row.modality_family} "
                      f"({row.origin})\n  flags: {'; '.join(row.validation)}", highlight=False)
        choice = typer.prompt("[a]ccept, [r]eject, [s]kip, [q]uit", default="s").strip().lower()[:1]
        if choice == "q":
            break
        if choice in ("a", "r"):
            note = typer.prompt("note", default="")
            save_review(row.template_id, "accepted" if choice == "a" else "rejected", note, path)
    console.print(f"decisions in {path}; re-materialize question_templates to apply them")


review_app = typer.Typer(help="Item review: an HTML sheet of seeded random exported items, and reject decisions "
                                "that later builds honour.", no_args_is_help=True)
app.add_typer(review_app, name="review")


@review_app.command("sheet")
def review_sheet(n: Annotated[int, typer.Option("--n", "-n", min=1, help="items on the sheet")] = 40,
                 seed: Annotated[int | None, typer.Option(help="sampling seed (default: the config's)")] = None,
                 out: Annotated[Path | None, typer.Option(help="HTML file (default data/review/items_seed<S>.html)")] = None,
                 config: ConfigOpt = None, data_root: DataRootOpt = None):
    """Write an HTML sheet of N seeded random exported items: image, question, options, key, ids."""
    from pipelines.benchmark.reviews import ReviewError, decisions_path, sheet
    cfg = _config(config, None, data_root)
    try:
        path, shown = sheet(cfg, n, seed, out)
    except ReviewError as exc:
        raise UserError(str(exc)) from None
    console.print(f"{shown} item(s) in {path}\nreject one with `medbench review reject ITEM_ID --reason TEXT` "
                  f"(decisions in {decisions_path(cfg)})", highlight=False)


@review_app.command("reject")
def review_reject(item_ids: Annotated[list[str], typer.Argument(help="item id(s) from the review sheet")],
                  reason: Annotated[str, typer.Option(help="why (kept with the decision)")],
                  config: ConfigOpt = None, data_root: DataRootOpt = None):
    """Record reject decisions; the next `medbench build` leaves the items' units out and says so."""
    from pipelines.benchmark.reviews import ReviewError, decisions_path, reject
    cfg = _config(config, None, data_root)
    try:
        units = reject(cfg, item_ids, reason)
    except ReviewError as exc:
        raise UserError(str(exc)) from None
    console.print(f"{len(units)} unit(s) rejected; decisions in {decisions_path(cfg)}; run `medbench build` to "
                  "rebuild the benchmark without them", highlight=False)


@app.command("select")
def select_cmd(table: Annotated[Path, typer.Argument(help="a benchmark or qa_candidates Parquet file")],
               out: Annotated[Path, typer.Option(help="where the selected rows go (.parquet or .tsv)")],
               task: Annotated[list[str] | None, typer.Option(help="clinical VQA task (repeatable)")] = None,
               department: Annotated[list[str] | None, typer.Option()] = None,
               modality: Annotated[list[str] | None, typer.Option()] = None,
               granularity: Annotated[list[str] | None, typer.Option(help="e.g. 'Mask level'")] = None):
    """Write a sub-benchmark: the rows matching every given tag."""
    import pandas as pd

    from pipelines.vocab.tree import select
    if not table.is_file():
        raise UserError(f"{table} does not exist; give a benchmark or qa_candidates Parquet file "
                        "(e.g. data/tables/benchmark.parquet)")
    df = pd.read_parquet(table)
    sub = select(df, task=task or (), department=department or (), modality=modality or (), granularity=granularity or ())
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".tsv":
        sub.drop(columns=[c for c in ("image",) if c in sub.columns]).to_csv(out, sep="\t", index=False)
    else:
        sub.to_parquet(out, index=False)
    console.print(f"{len(sub)} of {len(df)} rows -> {out}")


@app.command()
def push(repo_id: Annotated[str | None, typer.Option("--repo-id", help="ORG/NAME (default: publish.repo_id)")] = None,
         private: Annotated[bool | None, typer.Option("--private/--public", help="visibility of a new repo")] = None,
         revision: Annotated[str | None, typer.Option(help="branch to commit to (default: publish.revision)")] = None,
         dry_run: Annotated[bool, typer.Option("--dry-run", help="list what would be uploaded; contact nothing")] = False,
         folder: Annotated[Path | None, typer.Option(help="export folder (default: DATA_ROOT/benchmark)")] = None,
         config: ConfigOpt = None, data_root: DataRootOpt = None):
    """Publish the benchmark export to a Hugging Face dataset repo (token: HF_TOKEN or `hf auth login`)."""
    from pipelines.publish import Publisher, PublishError
    cfg = _config(config, None, data_root)
    repo = repo_id or cfg.publish.repo_id
    if not repo:
        console.print("no repository: pass --repo-id ORG/NAME or set publish.repo_id in the config", style="red")
        raise typer.Exit(2)
    try:
        report = Publisher(cfg.publish, log=lambda m: console.print(m, markup=False, highlight=False)).push(
            folder or cfg.data_root / "benchmark", repo, private=private, revision=revision, dry_run=dry_run)
    except PublishError as exc:
        console.print(str(exc), style="red", markup=False, highlight=False)
        raise typer.Exit(1) from None
    table = Table(title=f"{report.repo_id}@{report.revision}" + (" (dry run: nothing sent)" if dry_run else ""))
    for col in ("file", "bytes", "status"):
        table.add_column(col)
    status = {**{p: "would upload" if dry_run else "upload" for p in report.uploaded},
              **{p: "unchanged" for p in report.unchanged}}
    for f in report.files:
        table.add_row(f.path_in_repo, str(f.size), status.get(f.path_in_repo, "-"))
    for p in report.deleted:
        table.add_row(p, "-", "delete (stale)")
    console.print(table)
    console.print(f"commit message: {report.commit_message}", markup=False, highlight=False)
    if not dry_run:
        console.print(f"commit {report.commit_oid}" if report.commit_oid else "up to date: nothing to commit",
                      markup=False, highlight=False)


if __name__ == "__main__":
    app()
