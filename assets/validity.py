"""Asset checks on benchmark_exports that judge the exported files as a reader gets them: no key in public
columns, no key priors, no mirrored main image, a real val split, one identity per source, blind readers near
chance, and a card whose every config loads."""

import dagster as dg

from assets.resources import MedbenchResource
from pipelines.processes import release_freed_memory
from pipelines.select.dedupe import same_folder_pairs
from pipelines.validity import exported as ex


def _root_pairs(medbench: MedbenchResource) -> list[tuple[str, str]]:
    """Registrations that read the same folder (their images may be one scan under two identities)."""
    known = [ds for ds in medbench.dataset_ids if medbench.sources.get(ds) is not None]
    return same_folder_pairs({ds: medbench.sources.get(ds).root for ds in known},
                             {ds: medbench.sources.get(ds).entry.task_type for ds in known})


def _out(medbench: MedbenchResource):
    """The export folder each check reads. Every check starts by handing back the memory the step before it
    freed: the checks run one after another in the export's process, each on top of the last one's heap."""
    release_freed_memory(collect=False)
    return medbench.layout.root / "benchmark"


def _md(rows: dict, cols: list[str]) -> str:
    lines = ["| name | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    lines += [f"| {k} | " + " | ".join(str(v.get(c, "")) for c in cols) + " |" for k, v in rows.items()]
    return "\n".join(lines) if rows else "-"


@dg.asset_check(asset="benchmark_exports", blocking=True,
                description="no public column, alone or with the question, lets a cross-fitted model pick the key "
                            "above chance + 2 pp")
def no_key_in_public_columns(medbench: MedbenchResource) -> dg.AssetCheckResult:
    r = ex.column_leaks(_out(medbench), seed=medbench.config.seed, workers=medbench.config.benchmark.render_workers)
    return dg.AssetCheckResult(passed=not r["leaking"], metadata={
        "leaking": ", ".join(r["leaking"]) or "-",
        "columns": dg.MetadataValue.md(_md(r["columns"], ["alone", "with_question", "chance"]))})


@dg.asset_check(asset="benchmark_exports", blocking=True,
                description="in every task x dataset with 30+ items the most frequent key answers at most chance "
                            "+ key_balance_margin")
def key_priors_within_margin(medbench: MedbenchResource) -> dg.AssetCheckResult:
    b = medbench.config.benchmark
    r = ex.modal_keys(_out(medbench), b.key_balance_margin, b.text_only_min_items)
    return dg.AssetCheckResult(passed=not r["over"], metadata={
        "over": ", ".join(r["over"]) or "-", "groups": dg.MetadataValue.md(_md(r["groups"], ["items", "modal_share",
                                                                                         "chance"]))})


@dg.asset_check(asset="benchmark_exports", blocking=True,
                description="no main item shows a mirrored image (mirrored copies live in the consistency config)")
def no_mirrored_image_in_main(medbench: MedbenchResource) -> dg.AssetCheckResult:
    rendered = medbench.layout.read("rendered_items")  # without keys (an older table), every image is decoded
    keys = dict(zip(rendered["sha256"].to_pylist(), rendered["mirror_key"].to_pylist())) \
        if "mirror_key" in rendered.column_names else {}
    r = ex.mirrored_in_main(_out(medbench), rendered_keys=keys)
    return dg.AssetCheckResult(passed=r["items"] == 0, metadata={"items": r["items"],
                                                                 "examples": str(r["examples"]) or "-"})


@dg.asset_check(asset="benchmark_exports", blocking=True,
                description="registrations reading the same folder export no near-identical images")
def one_source_one_identity(medbench: MedbenchResource) -> dg.AssetCheckResult:
    pairs = _root_pairs(medbench)
    r = ex.same_source_duplicates(_out(medbench), pairs, medbench.config.benchmark.near_duplicate_bits)
    return dg.AssetCheckResult(passed=r["pairs"] == 0, metadata={
        "registrations_sharing_a_folder": ", ".join(f"{a}+{b}" for a, b in pairs) or "-", "pairs": r["pairs"],
        "examples": "; ".join(r["examples"]) or "-"})


@dg.asset_check(asset="benchmark_exports", blocking=True,
                description="every config and split the card declares loads with datasets.load_dataset; every file "
                            "it names exists and is not empty")
def card_matches_files(medbench: MedbenchResource) -> dg.AssetCheckResult:
    r = ex.card_matches_files(_out(medbench))
    return dg.AssetCheckResult(passed=not r["problems"], metadata={
        "configs": ", ".join(r["configs"]), "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in r["problems"])
                                                                            or "-")})


@dg.asset_check(asset="benchmark_exports",
                description="val holds a share of the main items within benchmark.val_share_range, and every task and "
                            "modality with 30+ test items from two or more leakage components is in val too "
                            "(warns: patients are never cut)")
def val_split_is_usable(medbench: MedbenchResource) -> dg.AssetCheckResult:
    b = medbench.config.benchmark
    r = ex.val_split(_out(medbench), b.val_share_range, b.val_cover_min_items)
    return dg.AssetCheckResult(passed=r["in_range"] and not r["missing"], severity=dg.AssetCheckSeverity.WARN,
                               metadata={"val_share": r["val_share"], "missing_in_val": ", ".join(r["missing"]) or "-",
                                                         "one_patient_test_only": ", ".join(r["one_component"]) or "-"})


@dg.asset_check(asset="benchmark_exports",
                description="text-only, options-only and metadata-prior readers re-fitted on the exported files "
                            "(folds by image) stay within the blind margins on test")
def blind_readers_near_chance(medbench: MedbenchResource) -> dg.AssetCheckResult:
    r = ex.text_only(_out(medbench), medbench.config.benchmark, medbench.config.seed)
    rows = {k: {"accuracy": v["accuracy"], "chance": v["chance"], "exceeds": ", ".join(v["exceeds"]) or "-"}
            for k, v in r["readers"].items()}
    return dg.AssetCheckResult(passed=not r["exceeds"], severity=dg.AssetCheckSeverity.WARN, metadata={
        "exceeds": ", ".join(r["exceeds"]) or "-", "readers": dg.MetadataValue.md(_md(rows, ["accuracy", "chance",
                                                                                          "exceeds"]))})


CHECKS = [no_key_in_public_columns, key_priors_within_margin, no_mirrored_image_in_main, one_source_one_identity,
          card_matches_files, val_split_is_usable, blind_readers_near_chance]
