"""Asset checks on benchmark_exports that judge the exported files as a reader gets them: no key in public
columns, no key priors, no mirrored main image, a real val split, one identity per source, blind readers near
chance, and a card whose every config loads.

They are one Dagster step (a multi-asset check, each check still its own key, result and blocking rule, and
each one runnable alone): the public-column check spreads over the render workers while the others run beside
it in one more worker, instead of seven steps one after another with a core idle for most of them."""

from functools import partial

import dagster as dg

from assets.resources import MedbenchResource
from pipelines.processes import release_freed_memory, run_spread
from pipelines.select.dedupe import same_folder_pairs

ASSET = "benchmark_exports"
WARN = {"val_split_is_usable", "blind_readers_near_chance"}  # report, never block
DESCRIPTIONS = {
    "no_key_in_public_columns": "no public column, alone or with the question, lets a cross-fitted model pick the "
                                "key above chance + 2 pp",
    "key_priors_within_margin": "in every task x dataset with 30+ items the most frequent key answers at most "
                                "chance + key_balance_margin",
    "no_mirrored_image_in_main": "no main item shows a mirrored image (mirrored copies live in the consistency "
                                 "config)",
    "one_source_one_identity": "registrations reading the same folder export no near-identical images",
    "card_matches_files": "every config and split the card declares loads with datasets.load_dataset; every file "
                          "it names exists and is not empty",
    "val_split_is_usable": "val holds a share of the main items within benchmark.val_share_range, and every task "
                           "and modality with 30+ test items from two or more leakage components is in val too "
                           "(warns: patients are never cut)",
    "blind_readers_near_chance": "text-only, options-only and metadata-prior readers re-fitted on the exported "
                                 "files (folds by image) stay within the blind margins on test",
}
# the short checks, queued after the column fits in this order (the others, longer, go before them)
LAST = ["card_matches_files", "key_priors_within_margin", "val_split_is_usable", "one_source_one_identity"]
SPECS = [dg.AssetCheckSpec(name, asset=ASSET, blocking=name not in WARN, description=text)
         for name, text in DESCRIPTIONS.items()]


def _root_pairs(medbench: MedbenchResource) -> list[tuple[str, str]]:
    """Registrations that read the same folder (their images may be one scan under two identities)."""
    known = [ds for ds in medbench.dataset_ids if medbench.sources.get(ds) is not None]
    return same_folder_pairs({ds: medbench.sources.get(ds).root for ds in known},
                             {ds: medbench.sources.get(ds).entry.task_type for ds in known})


def _md(rows: dict, cols: list[str]) -> str:
    lines = ["| name | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    lines += [f"| {k} | " + " | ".join(str(v.get(c, "")) for c in cols) + " |" for k, v in rows.items()]
    return "\n".join(lines) if rows else "-"


def _jobs(medbench: MedbenchResource, out, pairs: list[tuple[str, str]]) -> dict:
    """Each check but the public-column one: the function that judges the export folder and its arguments."""
    from pipelines.validity import exported as ex  # scikit-learn: loaded by the runs that judge, not at definition
    cfg = medbench.config
    b = cfg.benchmark
    jobs = {"key_priors_within_margin": (ex.modal_keys, (out, b.key_balance_margin, b.text_only_min_items)),
            "one_source_one_identity": (ex.same_source_duplicates, (out, pairs, b.near_duplicate_bits)),
            "card_matches_files": (ex.card_matches_files, (out,)),
            "val_split_is_usable": (ex.val_split, (out, b.val_share_range, b.val_cover_min_items)),
            "blind_readers_near_chance": (ex.text_only, (out, b, cfg.seed))}
    rendered = medbench.layout.read("rendered_items")  # without keys (an older table), every image is decoded
    keys = dict(zip(rendered["sha256"].to_pylist(), rendered["mirror_key"].to_pylist())) \
        if "mirror_key" in rendered.column_names else {}
    jobs["no_mirrored_image_in_main"] = (partial(ex.mirrored_in_main, rendered_keys=keys), (out,))
    return jobs


def _result(name: str, r: dict, pairs: list[tuple[str, str]]) -> dg.AssetCheckResult:
    """The Dagster result of one check's report (``pairs``: the registrations sharing a folder)."""
    if name == "no_key_in_public_columns":
        passed, meta = not r["leaking"], {
            "leaking": ", ".join(r["leaking"]) or "-",
            "columns": dg.MetadataValue.md(_md(r["columns"], ["alone", "with_question", "chance"]))}
    elif name == "key_priors_within_margin":
        passed, meta = not r["over"], {
            "over": ", ".join(r["over"]) or "-",
            "groups": dg.MetadataValue.md(_md(r["groups"], ["items", "modal_share", "chance"]))}
    elif name == "no_mirrored_image_in_main":
        passed, meta = r["items"] == 0, {"items": r["items"], "examples": str(r["examples"]) or "-"}
    elif name == "one_source_one_identity":
        passed, meta = r["pairs"] == 0, {
            "registrations_sharing_a_folder": ", ".join(f"{a}+{b}" for a, b in pairs) or "-",
            "pairs": r["pairs"], "examples": "; ".join(r["examples"]) or "-"}
    elif name == "card_matches_files":
        passed, meta = not r["problems"], {
            "configs": ", ".join(r["configs"]),
            "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in r["problems"]) or "-")}
    elif name == "val_split_is_usable":
        passed, meta = r["in_range"] and not r["missing"], {
            "val_share": r["val_share"], "missing_in_val": ", ".join(r["missing"]) or "-",
            "one_patient_test_only": ", ".join(r["one_component"]) or "-"}
    else:  # blind_readers_near_chance
        rows = {k: {"accuracy": v["accuracy"], "chance": v["chance"], "exceeds": ", ".join(v["exceeds"]) or "-"}
                for k, v in r["readers"].items()}
        passed, meta = not r["exceeds"], {"exceeds": ", ".join(r["exceeds"]) or "-",
                                          "readers": dg.MetadataValue.md(_md(rows, ["accuracy", "chance",
                                                                                    "exceeds"]))}
    return dg.AssetCheckResult(asset_key=ASSET, check_name=name, passed=passed, metadata=meta,
                               severity=dg.AssetCheckSeverity.WARN if name in WARN else dg.AssetCheckSeverity.ERROR)


@dg.multi_asset_check(specs=SPECS, can_subset=True,
                      description="the exported files judged as a reader gets them (see each check)")
def exported_files_judged(context: dg.AssetCheckExecutionContext, medbench: MedbenchResource):
    from pipelines.validity import exported as ex
    release_freed_memory(collect=False)  # the export ran in this process: start from what is alive
    workers = medbench.config.benchmark.render_workers
    wanted = {k.name for k in context.selected_asset_check_keys}
    out = medbench.layout.root / "benchmark"
    pairs = _root_pairs(medbench)
    jobs = {n: job for n, job in _jobs(medbench, out, pairs).items() if n in wanted}
    columns = ex.column_jobs(out, seed=medbench.config.seed, parts=2 * workers) \
        if "no_key_in_public_columns" in wanted else None
    # one queue over the workers, the long jobs first (decoding images, fitting readers, then the column fits), so
    # that no core waits on one long job at the end
    long, short = [n for n in jobs if n not in LAST], [n for n in LAST if n in jobs]
    fits = columns.jobs if columns else []
    found = run_spread([jobs[n] for n in long] + fits + [jobs[n] for n in short], workers)
    reports = dict(zip(long + short, found[:len(long)] + found[len(long) + len(fits):]))
    if columns:
        scored = found[len(long):len(long) + len(fits)]
        failures = [r for r in scored if isinstance(r, BaseException)]
        reports["no_key_in_public_columns"] = failures[0] if failures else columns.report(scored)
    failed = [(n, r) for n, r in reports.items() if isinstance(r, BaseException)]
    for name in DESCRIPTIONS:  # every check that ran is recorded before a failed one ends the step
        if name in reports and not isinstance(reports[name], BaseException):
            yield _result(name, reports[name], pairs)
    if failed:
        name, exc = failed[0]
        raise RuntimeError(f"check {name} could not judge the export: {type(exc).__name__}: {exc}") from exc


CHECKS = [exported_files_judged]
