"""Evaluation on the real ../shared export: the exporter's circular TSV and lmms-eval task, oracle and
half-wrong predictions scored against counts taken from the private key, and VLMEvalKit's own scorer on the
exported VAL TSV."""

from __future__ import annotations

import importlib
import json
import string

import pandas as pd
import pytest

from pipelines.evaluate.run import evaluate
from pipelines.evaluate.score import EvalSettings
from tests.conftest import needs_shared
from pipelines.records import LETTERS

pytestmark = [needs_shared, pytest.mark.slow]


def _wrong(row: dict) -> str:
    return next(c for c in LETTERS if isinstance(row[c], str) and c != row["answer"])


def test_scores_on_the_shared_export(shared_build, tmp_path):
    from tests.test_evaluate import lmms_eval_loader, vlmeval_file
    out = shared_build.data_root / "benchmark"
    name = shared_build.benchmark.name
    key = pd.read_parquet(out / "private" / "answer_key.parquet")
    public = pd.concat([pd.read_parquet(p, columns=["index", *LETTERS]) for p in sorted(out.rglob("data/*.parquet"))])
    rows = key.merge(public, on="index").to_dict("records")
    test = [r for r in rows if r["split"] == "test"]
    assert test, "the shared build exports test items"

    # oracle: every key answer (boxes for grounding) -> 100 % everywhere, no drop, every pair right
    oracle = [{"index": r["index"], "prediction": json.dumps(list(r["box"])) if r["config"] == "grounding"
               else r["answer"]} for r in rows]
    (tmp_path / "oracle.jsonl").write_text("".join(json.dumps(o) + "\n" for o in oracle))
    sec = evaluate(out, tmp_path / "oracle.jsonl", EvalSettings(), tmp_path / "o").report["sections"]
    assert sec["main"]["accuracy"]["mean"] == 1.0
    assert sec["main"]["items"] == sum(r["config"] == "main" for r in test)
    if "consistency" in sec:
        assert sec["consistency"]["pairs"] > 0 and sec["consistency"]["both_right"]["mean"] == 1.0
    if "robustness" in sec:
        assert sec["robustness"]["overall"]["drop"]["mean"] == 0.0 and sec["robustness"]["unmatched_copies"] == 0

    # every third single-answer main test item answered wrong: accuracy as counted from the key
    half = []
    for r in rows:
        if r["config"] == "main" and r["split"] == "test":
            bad = not r["multi_answer"] and r["index"] % 3 == 0
            half.append({"index": r["index"], "prediction": _wrong(r) if bad else r["answer"]})
    (tmp_path / "half.jsonl").write_text("".join(json.dumps(o) + "\n" for o in half))
    main = evaluate(out, tmp_path / "half.jsonl", EvalSettings(configs=("main",)), tmp_path / "h").report
    expected = 1 - sum(1 for r in test if r["config"] == "main" and not r["multi_answer"] and r["index"] % 3 == 0) \
        / sum(r["config"] == "main" for r in test)
    assert main["sections"]["main"]["accuracy"]["mean"] == pytest.approx(expected, abs=1e-6)

    # the circular TSV holds every rotation of every single-answer item of the TSV
    for split in ("VAL", "TEST"):
        base = out / "tsv" / f"{name}_{split}.tsv"
        if not base.exists():
            continue
        tsv = pd.read_csv(base, sep="\t", keep_default_na=False)
        circ = pd.read_csv(out / "tsv" / f"{name}_CIRCULAR_{split}.tsv", sep="\t")
        assert set(circ["g_index"]) == set(tsv["index"]) and len(circ) <= (tsv[list(LETTERS)] != "").sum(axis=1).sum()

    # VLMEvalKit's own scorer on the exported VAL TSV agrees with `evaluate --rules vlmevalkit`
    val_tsv = out / "tsv" / f"{name}_VAL.tsv"
    if val_tsv.exists():
        mcq = vlmeval_file("dataset/utils/multiple_choice.py", "vlmeval_multiple_choice")
        smp = importlib.import_module("vlmeval.smp")
        meta = smp.load(str(val_tsv))
        replies = [r["answer"] if r["index"] % 4 else f"I think it is {r['B']}" for r in meta.to_dict("records")]
        data = meta.drop(columns=["image"]).assign(prediction=replies)
        data.to_csv(tmp_path / "val_result.tsv", sep="\t", index=False)
        loaded = smp.load(str(tmp_path / "val_result.tsv"))
        loaded = loaded.rename(columns={k: k.lower() for k in loaded.columns if k not in string.ascii_uppercase})
        loaded["prediction"] = [str(x) for x in loaded["prediction"]]
        theirs = mcq.mcq_vanilla_eval(None, loaded, meta, 1, str(tmp_path / "v.pkl"), f"{name}_VAL")["hit"].mean()
        ours = evaluate(out, tmp_path / "val_result.tsv", EvalSettings(split="val", configs=("main",),
                                                                        rules="vlmevalkit"), tmp_path / "v").report
        assert abs(ours["sections"]["main"]["single_answer"]["mean"] - float(theirs)) < 0.001

    # the lmms-eval val task loads the shards and scores the public keys
    import datasets
    load_yaml_config, fields = lmms_eval_loader()
    task = out / "lmms_eval" / name / f"{name}_val.yaml"
    if task.exists():
        cfg = load_yaml_config(str(task))
        assert set(cfg) <= fields
        docs = datasets.load_dataset(cfg["dataset_path"], **cfg["dataset_kwargs"])["val"]
        results = [cfg["process_results"](d, [d["answer"]]) for d in docs]
        assert cfg["metric_list"][0]["aggregation"]([r["accuracy"] for r in results]) == 1.0
