"""The `medbench` command line: validate sources, prepare the demo, build assets, summarize."""

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipelines.config import PROJECT_ROOT, PipelineConfig
from pipelines.registry import RegistryError, load_registry
from pipelines.summary import summarize

app = typer.Typer(help="Build a GMAI-MMBench-style medical VQA benchmark with Dagster.", no_args_is_help=True)
sources_app = typer.Typer(help="Inspect and validate the source registry.", no_args_is_help=True)
demo_app = typer.Typer(help="The bundled demo datasets.", no_args_is_help=True)
app.add_typer(sources_app, name="sources")
app.add_typer(demo_app, name="demo")
vocab_app = typer.Typer(help="The MeSH label vocabulary.", no_args_is_help=True)
app.add_typer(vocab_app, name="vocab")
console = Console()

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
        reg = load_registry(cfg.registry)
    except RegistryError as exc:
        console.print(f"[red]{exc}[/red]", markup=False, highlight=False)
        raise typer.Exit(1) from exc
    table = Table(title=f"{reg.path} — {len(reg.ids)} dataset(s) OK")
    for col in ("id", "format", "modality", "dim", "task", "samples", "quarantined"):
        table.add_column(col)
    summary = summarize(cfg.data_root, reg.ids)
    for ds in reg.ids:
        e = reg.get(ds).entry
        samples, quarantined = summary.samples.get(ds, "-"), summary.quarantine_text(ds)
        if scan:
            from pipelines.ingest import ingest
            res = ingest(reg.get(ds), cfg)
            samples = res.samples.num_rows
            quarantined = ", ".join(f"{k}={v}" for k, v in sorted(res.reason_counts.items())) or "0"
        table.add_row(ds, e.format, e.modality, str(e.dimension), e.task_type, str(samples), quarantined)
    console.print(table)


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
          force: Annotated[bool, typer.Option(help="re-run datasets that are up to date")] = False,
          workers: Annotated[int | None, typer.Option(help="datasets at once (default: CPU cores)")] = None):
    """Materialize what changed with Dagster (no UI), then print a summary."""
    from assets.build import build as run_build
    from assets.build import export_config_env
    cfg = _config(config, registry, data_root)
    try:
        load_registry(cfg.registry)
    except RegistryError as exc:
        console.print(str(exc), markup=False, highlight=False, style="red")
        raise typer.Exit(1) from exc
    export_config_env(cfg, str(config) if config else None)
    report = run_build(cfg, select=select, datasets=dataset, log=lambda m: console.print(m, highlight=False),
                       force=force, workers=workers)
    console.print(summarize(cfg.data_root, load_registry(cfg.registry).ids).render(), highlight=False)
    if report.failed:
        console.print(f"[red]failed: {', '.join(report.failed)}[/red] (details in the Dagster run logs; "
                      "`make dev` opens the UI)")
        raise typer.Exit(1)


@app.command()
def summary(registry: RegistryOpt = None, config: ConfigOpt = None, data_root: DataRootOpt = None):
    """Print where the outputs are and what they hold."""
    cfg = _config(config, registry, data_root)
    console.print(summarize(cfg.data_root, load_registry(cfg.registry).ids).render(), highlight=False)


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
    """Validate curated MeSH mappings (mesh_vocab/ and every label map) against the MeSH tables."""
    from pipelines.vocab.build import DatasetLabels, pin_problems
    from pipelines.vocab.curated import load_curated
    from pipelines.vocab.mesh import load_mesh
    cfg = _config(config, registry, data_root)
    mesh = load_mesh(cfg.vocab.mesh_source)
    reg = load_registry(cfg.registry)
    problems = load_curated(cfg.vocab.curated_dir).problems(mesh)
    for ds in reg.ids:
        src = reg.get(ds)
        problems += pin_problems(DatasetLabels(ds, src.entry.modality, src.entry.task_type, src.label_map,
                                               str(src.label_map_path), {}), mesh)
    for p in problems:
        console.print(p, style="red", markup=False, highlight=False)
    console.print(f"MeSH {mesh.version}: {len(mesh.descriptors)} descriptors; {len(problems)} problem(s)")
    raise typer.Exit(1 if problems else 0)


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
    df = pd.read_parquet(table)
    sub = select(df, task=task or (), department=department or (), modality=modality or (), granularity=granularity or ())
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".tsv":
        sub.drop(columns=[c for c in ("image",) if c in sub.columns]).to_csv(out, sep="\t", index=False)
    else:
        sub.to_parquet(out, index=False)
    console.print(f"{len(sub)} of {len(df)} rows -> {out}")


if __name__ == "__main__":
    app()
