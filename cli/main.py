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
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from typer.core import TyperGroup

from pipelines import __version__
from pipelines.config import PROJECT_ROOT, PipelineConfig
from pipelines.housekeeping import BuildLocked
from pipelines.label_maps import LabelMapError
from pipelines.source import RegistryError
from pipelines.sources.registry import registry_of
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
        reg = registry_of(cfg)
    except RegistryError as exc:
        console.print(str(exc), style="red", markup=False, highlight=False)
        raise typer.Exit(1) from exc
    title = f"{reg.path} — {len(reg.ids)} dataset(s) OK"
    table = Table(title=title)
    columns = ("id", "format", "modality", "dim", "task", "samples", "quarantined", "pixel size",
               "gated out (last build)", "counted (exhaustive)")
    for col in columns:
        table.add_column(col, overflow="fold", no_wrap=False)
    summary = summarize(cfg.data_root, reg.ids)
    notes: list[str] = []
    for ds in reg.ids:
        e = reg.get(ds).entry
        samples, quarantined = summary.samples.get(ds, "-"), summary.quarantine_text(ds)
        sizes = _pixel_size_text(e)
        if scan:
            from pipelines.ingest import ingest
            res = ingest(reg.get(ds), cfg)
            samples = res.samples.num_rows
            quarantined = ", ".join(f"{k}={v}" for k, v in sorted(res.reason_counts.items())) or "0"
            sizes = ", ".join(f"{k}={v}" for k, v in sorted(res.spacing_counts.items())) or sizes
            notes += [f"{ds}: {n}" for n in res.notes]
        counted = ", ".join(sorted(reg.get(ds).label_map.exhaustive_labels())) if e.task_type in ("det", "seg") else ""
        table.add_row(ds, e.format, e.modality, str(e.dimension), e.task_type, str(samples), quarantined, sizes,
                      summary.gate_text(ds), counted or "-")
    print_table(table, title, columns)
    for line in notes:
        console.print(line, markup=False, highlight=False, style="yellow")
    for line in summary.gate_warnings():
        console.print(line, markup=False, highlight=False, style="yellow")
    from pipelines.select.dedupe import same_folder_pairs
    for a, b in same_folder_pairs({ds: reg.get(ds).root for ds in reg.ids},
                                  {ds: reg.get(ds).entry.task_type for ds in reg.ids}):
        console.print(f"  warning: {a} and {b} read the same folder; where they hold the same images, the build keeps "
                      f"them once (under {a}) and leaves {b}'s copies out", markup=False, highlight=False,
                      style="yellow")
    for line in summary.empty_datasets():
        console.print(line, markup=False, highlight=False, style="red")


def _pixel_size_text(e) -> str:
    """Where the entry's pixel size comes from, before a scan has counted it per sample."""
    if e.dimension == 3:
        return "header"
    ps = e.pixel_size
    if ps is None:
        return "unknown"
    return f"registry {ps.value:g} {ps.unit}" if ps.value is not None else f"table {ps.table.name}"


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
def build(select: Annotated[list[str] | None, typer.Option("--select", "-s", help="stage(s) (ingest, standardize, vocab, candidates, gates, select, render, export, annotate, publish, evaluate) or asset name(s); default all")] = None,
          dataset: Annotated[list[str] | None, typer.Option("--dataset", "-d", help="dataset id(s); default all")] = None,
          registry: RegistryOpt = None, config: ConfigOpt = None, data_root: DataRootOpt = None,
          strict: Annotated[bool, typer.Option(help="an unresolved label stops the run (vocab.strict_labels)")] = False,
          force: Annotated[bool, typer.Option(help="re-run datasets that are up to date")] = False,
          workers: Annotated[int | None, typer.Option(help="datasets at once (default: CPU cores)")] = None,
          verify: Annotated[bool, typer.Option(help="re-hash every source file to detect changes (changes.verify; "
                                                    "costs one full read of every dataset)")] = False,
          allow_llm_failures: Annotated[bool, typer.Option(
              "--allow-llm-failures", help="exit 0 although LLM template requests failed (the offline bank "
                                           "covers them); by default such a run exits 1")] = False):
    """Materialize what changed with Dagster (no UI), then print a summary."""
    from assets.workers import WORKER_MODULES
    from pipelines.processes import start_spare_server, start_workers_early
    if not select:  # the worker servers, loading their libraries on a core of their own while this process loads
        # Dagster and the definitions: one for the dataset partitions (ingest, describe), whose runs fork from here
        # and take their workers from it, and one for the cross-dataset runs (render, export) that fork after
        start_workers_early(*WORKER_MODULES["raw_samples"])
        start_spare_server(*(m for step, modules in WORKER_MODULES.items() if step != "raw_samples" for m in modules))
    from cli.build import BuildError, check_request, export_config_env, planned_steps
    from cli.build import build as run_build
    cfg = _config(config, registry, data_root)
    if verify:
        cfg = cfg.model_copy(update={"changes": cfg.changes.model_copy(update={"verify": True})})
    try:
        reg = registry_of(cfg)
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
    summary = summarize(cfg.data_root, reg.ids)
    console.print(summary.render(), highlight=False, markup=False)
    if summary.stale and not report.failed:
        console.print(f"stale: {', '.join(sorted(summary.stale))} (the other datasets were exported)", style="red",
                      markup=False, highlight=False)
        raise typer.Exit(1)
    if report.failed:
        for name in report.failed:
            console.print(f"failed: {name}: {report.reasons.get(name, '?')}", style="red", markup=False,
                          highlight=False)
        console.print("details in the Dagster run logs (`make dev` opens the UI)", highlight=False)
        raise typer.Exit(1)
    if report.templates_missing and not allow_llm_failures:
        failed, requests = report.llm_failed["question_templates"]
        console.print(f"failed: {failed} of {requests} LLM template request(s) could not be made (the offline bank "
                      "was used for them); fix the endpoint/key and rerun with --force, or pass "
                      "--allow-llm-failures to accept the run", style="red", markup=False, highlight=False)
        raise typer.Exit(1)


@app.command()
def summary(registry: RegistryOpt = None, config: ConfigOpt = None, data_root: DataRootOpt = None):
    """Print where the outputs are and what they hold."""
    cfg = _config(config, registry, data_root)
    console.print(summarize(cfg.data_root, registry_of(cfg).ids).render(), highlight=False, markup=False)


@app.command("dagster-home")
def dagster_home():
    """Create the project's embedded Dagster home (.dagster/) and print its path."""
    from cli.build import ensure_dagster_home
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
    reg = registry_of(cfg)
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
    from pipelines.storage import atomic_write_bytes
    from pipelines.vocab.label_init import render, scan
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
    from pipelines.candidates.templates import (
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
    from pipelines.validity.reviews import ReviewError, decisions_path, sheet
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
    from pipelines.validity.reviews import ReviewError, decisions_path, reject
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


SettingsOpt = Annotated[Path | None, typer.Option("--settings", help="settings YAML (env MEDBENCH_CONFIG); "
                                                                    "--config names a benchmark config here")]
BenchOpt = Annotated[Path | None, typer.Option("--bench", help="export folder (default: DATA_ROOT/benchmark)")]
EvalConfigOpt = Annotated[list[str] | None, typer.Option(
    "--config", help="benchmark config: main, consistency, robustness or grounding (repeatable; default: every "
                     "config the predictions answer)")]


def _choice(value: str | None, allowed: tuple[str, ...], option: str) -> None:
    if value is not None and value not in allowed:
        raise UserError(f"{option} {value!r}: choose one of {', '.join(allowed)}")


def _eval_settings(cfg: PipelineConfig, split, eval_config, rules, interval, box_scale):
    from pipelines.evaluate.bench import CONFIGS
    from pipelines.evaluate.intervals import METHODS
    from pipelines.evaluate.score import BOX_SCALES, EvalSettings
    from pipelines.export.answers import RULES
    _choice(split, ("val", "test"), "--split")
    for c in eval_config or []:
        _choice(c, CONFIGS, "--config")
    _choice(rules, RULES, "--rules")
    _choice(interval, METHODS, "--interval")
    _choice(box_scale, BOX_SCALES, "--box-scale")
    return EvalSettings(split=split, configs=tuple(eval_config) if eval_config else None, rules=rules,
                        interval=interval, seed=cfg.seed, box_scale=box_scale)


@app.command()
def evaluate(predictions: Annotated[Path, typer.Argument(help="predictions: .jsonl (index + prediction) or a "
                                                              "VLMEvalKit result .xlsx/.tsv")],
             split: Annotated[str | None, typer.Option(help="val or test (default: test when the predictions "
                                                            "answer test items, else val)")] = None,
             eval_config: EvalConfigOpt = None,
             out: Annotated[Path | None, typer.Option(help="report folder (default: PREDICTIONS_STEM.eval/ "
                                                           "beside the predictions)")] = None,
             rules: Annotated[str, typer.Option(help="extraction rules: medbench (VLMEvalKit's plus 'answer is X') "
                                                     "or vlmevalkit (exactly its exact-matching rules)")] = "medbench",
             interval: Annotated[str, typer.Option(help="wilson, or bootstrap (clustered by leakage group)")] = "wilson",
             box_scale: Annotated[str, typer.Option(help="grounding boxes: auto (fractions if all in 0..1, else "
                                                         "pixels), unit, pixel or 1000")] = "auto",
             judge: Annotated[bool, typer.Option(help="ask the LLM (settings llm.*, key in llm.api_key_env) to read "
                                                      "replies no rule could; cached")] = False,
             bench: BenchOpt = None, settings: SettingsOpt = None, data_root: DataRootOpt = None):
    """Score predictions on the exported benchmark: accuracy with 95 % intervals per task, department,
    modality, granularity and dataset; circular, consistency, robustness and grounding sections."""
    from pipelines.evaluate.bench import BenchmarkError
    from pipelines.evaluate.predictions import PredictionsError
    from pipelines.evaluate.run import evaluate as run_evaluation
    from pipelines.llm import LLMUnavailable
    cfg = _config(settings, None, data_root)
    es = _eval_settings(cfg, split, eval_config, rules, interval, box_scale)
    try:
        judge_client = None
        if judge:
            from pipelines.evaluate.judge import Judge
            judge_client = Judge(cfg.llm)
        result = run_evaluation(bench or cfg.data_root / "benchmark", predictions, es, out, judge_client)
    except (BenchmarkError, PredictionsError, LLMUnavailable) as exc:
        raise UserError(str(exc)) from None
    from pipelines.evaluate.report import overview_cells
    sec = result.report["sections"]
    table = Table(title=f"{predictions.name} on {sec['coverage']['split']}")
    for col in ("section", "items", "score % [95 % CI]"):
        table.add_column(col)
    for label, cell in overview_cells(sec):
        table.add_row(label, str(cell["n"]), f"{100 * cell['mean']:.1f} [{100 * cell['lo']:.1f}, {100 * cell['hi']:.1f}]")
    print_table(table, table.title, ("section", "items", "score % [95 % CI]"))
    if judge_client:
        u = judge_client.usage()
        console.print(f"judge: {u['requests']} request(s), {u['api_calls']} API call(s), {u['cache_hits']} cached, "
                      f"{u['errors']} error(s)", highlight=False, markup=False)
    console.print(f"report: {result.paths['markdown']} (JSON, items.csv and charts beside it)", highlight=False,
                  markup=False)


def _slug(text: str) -> str:
    import re
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def _run_model(cfg: PipelineConfig, bench_dir: Path, base_url: str, model: str, out: Path, splits, configs,
               circular: bool, image_mode: str, concurrency: int, max_retries: int, timeout: float, max_tokens: int,
               api_key_env: str, cache_dir: Path | None) -> dict:
    import os

    from pipelines.evaluate.bench import CONFIGS, load_benchmark
    from pipelines.evaluate.predictions import write_predictions
    from pipelines.evaluate.runner import (
        ModelSettings,
        count_requests,
        request_batches,
        run_model,
    )
    bench = load_benchmark(bench_dir)
    splits, configs = tuple(splits or ("val", "test")), tuple(configs or CONFIGS)
    batches = request_batches(bench, splits, configs, circular, image_mode, cfg.seed)
    ms = ModelSettings(base_url=base_url, model=model, api_key=os.environ.get(api_key_env) or "EMPTY",
                       concurrency=concurrency, max_retries=max_retries, timeout_s=timeout, max_tokens=max_tokens,
                       cache_dir=cache_dir or cfg.data_root / "model_cache")
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task(f"{model} ({image_mode})", total=count_requests(bench, splits, configs, circular))
        rows, counts = run_model(batches, ms, lambda done: progress.update(task, completed=done))
    write_predictions(rows, out)
    console.print(f"{out}: {counts['requests']} prediction(s), {counts['cached']} from the cache, "
                  f"{counts['errors']} failed (written with prediction null)", highlight=False, markup=False)
    return counts


ImageModeOpt = Annotated[str, typer.Option(help="image (the item's), blank (grey) or shuffled (another item's): "
                                                "the last two are blind baselines")]


@app.command("run-model")
def run_model_cmd(base_url: Annotated[str, typer.Option("--base-url", help="OpenAI-compatible endpoint, e.g. "
                                                                           "http://127.0.0.1:8000/v1")],
                  model: Annotated[str, typer.Option("--model", help="model name the endpoint serves")],
                  out: Annotated[Path | None, typer.Option(help="predictions JSONL (default: DATA_ROOT/evaluations/"
                                                                "MODEL[_MODE].jsonl)")] = None,
                  split: Annotated[list[str] | None, typer.Option(help="val/test (repeatable; default both)")] = None,
                  eval_config: EvalConfigOpt = None,
                  circular: Annotated[bool, typer.Option(help="also ask every rotation of the main single-answer "
                                                              "items (index + k*1,000,000)")] = False,
                  image_mode: ImageModeOpt = "image",
                  concurrency: Annotated[int, typer.Option(min=1, help="requests in flight")] = 8,
                  max_retries: Annotated[int, typer.Option(min=0, help="retries on 429/5xx/connection errors")] = 4,
                  timeout: Annotated[float, typer.Option(help="seconds per request")] = 120.0,
                  max_tokens: Annotated[int, typer.Option(min=1, help="reply length limit")] = 256,
                  api_key_env: Annotated[str, typer.Option(help="environment variable holding the key (local "
                                                                "servers: any value, or unset)")] = "OPENAI_API_KEY",
                  cache_dir: Annotated[Path | None, typer.Option(help="reply cache (default DATA_ROOT/model_cache)")] = None,
                  bench: BenchOpt = None, settings: SettingsOpt = None, data_root: DataRootOpt = None):
    """Ask an OpenAI-compatible vision chat endpoint every exported item and write its predictions (cached by
    model, item, image and prompt; resumable)."""
    from pipelines.evaluate.bench import CONFIGS, BenchmarkError
    from pipelines.evaluate.runner import IMAGE_MODES
    cfg = _config(settings, None, data_root)
    _choice(image_mode, IMAGE_MODES, "--image-mode")
    for s in split or []:
        _choice(s, ("val", "test"), "--split")
    for c in eval_config or []:
        _choice(c, CONFIGS, "--config")
    suffix = "" if image_mode == "image" else f"_{image_mode}"
    out = out or cfg.data_root / "evaluations" / f"{_slug(model)}{suffix}{'_circular' if circular else ''}.jsonl"
    try:
        counts = _run_model(cfg, bench or cfg.data_root / "benchmark", base_url, model, out, split, eval_config,
                            circular, image_mode, concurrency, max_retries, timeout, max_tokens, api_key_env, cache_dir)
    except BenchmarkError as exc:
        raise UserError(str(exc)) from None
    if counts["errors"]:
        raise typer.Exit(1)


@app.command()
def baselines(split: Annotated[str, typer.Option(help="val or test")] = "test",
              predictions: Annotated[Path | None, typer.Option(help="the model's predictions (for the gain)")] = None,
              blank: Annotated[Path | None, typer.Option(help="the model's predictions with blank images")] = None,
              shuffled: Annotated[Path | None, typer.Option(help="...with shuffled images")] = None,
              base_url: Annotated[str | None, typer.Option("--base-url", help="run the model, blank- and shuffled-"
                                                                              "image runs through run-model")] = None,
              model: Annotated[str | None, typer.Option("--model")] = None,
              out: Annotated[Path | None, typer.Option(help="report folder (default DATA_ROOT/evaluations/baselines"
                                                            "[_MODEL])")] = None,
              rules: Annotated[str, typer.Option(help="extraction rules: medbench or vlmevalkit")] = "medbench",
              bench: BenchOpt = None, settings: SettingsOpt = None, data_root: DataRootOpt = None):
    """Blind baselines (chance, random, text-only, options-only; blank- and shuffled-image model runs) and the
    model's multimodal gain per task."""
    from pipelines.evaluate.baselines import baselines as run_baselines
    from pipelines.evaluate.baselines import write_baselines
    from pipelines.evaluate.bench import BenchmarkError, load_benchmark
    from pipelines.evaluate.predictions import PredictionsError, read_predictions
    from pipelines.export.answers import RULES
    cfg = _config(settings, None, data_root)
    _choice(split, ("val", "test"), "--split")
    _choice(rules, RULES, "--rules")
    if (base_url is None) != (model is None):
        raise UserError("--base-url and --model go together (they run the model three times through run-model)")
    bench_dir = bench or cfg.data_root / "benchmark"
    out = out or cfg.data_root / "evaluations" / (f"baselines_{_slug(model)}" if model else "baselines")
    files = {"model": predictions, "blank_image": blank, "shuffled_image": shuffled}
    try:
        if base_url and model:
            for name, mode in (("model", "image"), ("blank_image", "blank"), ("shuffled_image", "shuffled")):
                files[name] = out / f"{_slug(model)}_{mode}.jsonl"
                _run_model(cfg, bench_dir, base_url, model, files[name], (split,), ("main",), False, mode, 8, 4,
                           120.0, 256, "OPENAI_API_KEY", None)
        preds = {k: read_predictions(v)[0] for k, v in files.items() if v is not None}
        report = run_baselines(load_benchmark(bench_dir), split, cfg.seed, preds, rules)
    except (BenchmarkError, PredictionsError) as exc:
        raise UserError(str(exc)) from None
    paths = write_baselines(report, out)
    table = Table(title=f"blind baselines ({split})")
    for col in ("run", "items", "accuracy % [95 % CI]"):
        table.add_column(col)
    for name, r in report["runs"].items():
        o = r["overall"]
        table.add_row(name, str(o["n"]), f"{100 * o['mean']:.1f} [{100 * o['lo']:.1f}, {100 * o['hi']:.1f}]")
    print_table(table, table.title, ("run", "items", "accuracy % [95 % CI]"))
    console.print(f"report: {paths['markdown']}", highlight=False, markup=False)


if __name__ == "__main__":
    app()
