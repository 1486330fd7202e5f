"""Reader-trust rules re-derived from the exported files alone: the public Parquet shards, the private answer key
and the provenance file. Nothing here reads the pipeline's tables, so a rule holds for what a user downloads.

* no public column predicts the key: a small cross-fitted model per public column (and per column joined with the
  question) must not beat chance by more than ``column_margin``;
* key priors: in every task x dataset with enough items the most frequent key answers at most chance + margin;
* no main item shows a mirrored image (a main image that is the left-right mirror of another main image, or a
  stem that says the image was mirrored);
* a real val split: its share of the main items, and every task and modality with enough test items in val too;
* one source, one identity: no two exported images of registrations reading the same folder lie within the
  near-duplicate distance;
* the text-only readers (text, options, metadata) stay near chance.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from PIL import Image
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

from pipelines.imageio import decode_png, mirror_key
from pipelines.processes import ordered_map
from pipelines.records import LETTERS
from pipelines.validity.folded_tfidf import FoldedTexts

EXPORT_CONFIGS = ("consistency", "robustness", "grounding")  # item configs beside data/ (not the ROI annotations)
# the image is the point; val's answer is public by design; the options are what every reader sees (their own
# priors are the blind readers' to judge)
NOT_JUDGED = {"image", "answer", *LETTERS}


def public_rows(out: Path, folder: str = "data", with_images: bool = False) -> pd.DataFrame:
    """The public rows of one config, joined by index with the private key (``key``) and provenance columns."""
    files = sorted((out / folder).glob("*.parquet"))
    if not files:
        return pd.DataFrame()
    cols = None if with_images else [c for c in pq.read_schema(files[0]).names if c != "image"]
    rows = pd.concat([pq.read_table(f, columns=cols).to_pandas() for f in files], ignore_index=True)
    key = pd.read_parquet(out / "private" / "answer_key.parquet")
    prov = pd.read_parquet(out / "private" / "provenance.parquet", columns=["index", "image_id", "source_path"])
    key = key.rename(columns={c: f"key_{c}" for c in key.columns if c != "index"})
    return rows.merge(key, on="index", how="left").merge(prov, on="index", how="left")


def _single(rows: pd.DataFrame) -> pd.DataFrame:
    if rows.empty:
        return rows
    ok = rows["key_answer"].isin(list(LETTERS)) & ~rows["multi_answer"].astype(bool)
    return rows[ok].reset_index(drop=True)


@lru_cache(maxsize=1 << 16)
def _numbers(text: str) -> frozenset[str]:
    """The numbers written in a text (cached: the same options and values recur over rows, columns and folds)."""
    return frozenset(re.findall(r"\d+(?:\.\d+)?", text))


_ANALYSE = TfidfVectorizer(ngram_range=(1, 1), token_pattern=r"[^\s|,;:{}\[\]\"']+").build_analyzer()


@lru_cache(maxsize=1 << 16)
def _tokens(text: str) -> tuple[str, ...]:
    """A text's tokens (cached: every option of a row carries the row's text, and each fold analyses it again)."""
    return tuple(_ANALYSE(text))


def _crossed(value: str) -> list[str]:
    """'<position>\\x1f<text>' -> the text's tokens crossed with the option's letter position."""
    pos, text = value.split("\x1f", 1)
    return [f"{pos}|{t}" for t in _tokens(text)] + [f"{pos}|~"]


class _OptionRows:
    """One row per option offered by a single-answer public row (its row, item, image, letter position, how many
    options the item offers, whether it is the key, its lower-cased text) and the folds over the items. None of it
    depends on the column judged: built once, it serves every column of a job; only the text the model reads and
    the option's matches in it change from column to column."""

    def __init__(self, rows: pd.DataFrame, folds: int):
        self.rows = _single(rows)
        cells = [self.rows[c].tolist() for c in ("index", "image_id", "key_answer", *LETTERS)]
        found = []  # (row, item, image, position, options offered, is the key, lower-cased text)
        for r, (index, image, key, *opts) in enumerate(zip(*cells)):
            offered = [i for i, o in enumerate(opts) if isinstance(o, str) and o]
            found += [(r, index, image, i, len(offered), LETTERS[i] == key, opts[i].lower()) for i in offered]
        owner, item, group, pos, k, correct, text = (list(c) for c in zip(*found)) if found else ([],) * 7
        self.owner, self.pos, self.options = np.array(owner, np.int64), pos, text
        self.questions = self.rows["question"].tolist()
        self.item, self.correct = pd.Series(item), np.array(correct, bool)
        firsts = pd.DataFrame({"item": item, "group": group, "k": k}).groupby("item")
        self.chance = float(np.mean(1.0 / firsts["k"].first())) if item else 0.0
        groups = firsts["group"].first()
        items = groups.index.to_numpy()
        self.folds: list[tuple[np.ndarray, np.ndarray]] = []
        if min(folds, groups.nunique()) >= 2:
            for train_i, test_i in GroupKFold(n_splits=min(folds, groups.nunique())).split(items,
                                                                                            groups=groups.to_numpy()):
                tr = np.flatnonzero(self.item.isin(items[train_i]).to_numpy())
                te = np.flatnonzero(self.item.isin(items[test_i]).to_numpy())
                if len(np.unique(self.correct[tr])) >= 2:
                    self.folds.append((tr, te))

    def accuracy(self, values: list[str], with_question: bool, seed: int) -> float:
        """Cross-fitted accuracy of a model that picks an option from one column's values (one per row, '' when
        missing), and the question when ``with_question``: the text's tokens crossed with the option's letter, and
        whether the option's text or number appears in the value. Folds group items by image."""
        texts, matches = [], np.zeros((len(self.pos), 2))
        for j, (r, p, o) in enumerate(zip(self.owner.tolist(), self.pos, self.options)):
            value = values[r]
            low = value.lower()
            nums = _numbers(o)
            texts.append(f"{p}\x1f{value} || {self.questions[r]}" if with_question else f"{p}\x1f{value}")
            matches[j] = (float(bool(o) and o in low), float(bool(nums) and nums <= _numbers(low)))
        words = FoldedTexts(texts, _crossed)
        hits: list[bool] = []
        for tr, te in self.folds:
            words_tr, words_te = words.split(tr, te)
            x_tr = hstack([words_tr, csr_matrix(matches[tr])]).tocsr()
            x_te = hstack([words_te, csr_matrix(matches[te])]).tocsr()
            model = LogisticRegression(C=1.0, max_iter=2000, random_state=seed).fit(x_tr, self.correct[tr])
            score = pd.Series(model.predict_proba(x_te)[:, 1])
            best = score.groupby(self.item.iloc[te].to_numpy()).idxmax().to_numpy()  # the first best of each item
            hits += self.correct[te][best].tolist()
        return float(np.mean(hits)) if hits else 0.0


def _values(rows: pd.DataFrame, column: str | None) -> list[str]:
    """A column's cells as the text the model reads ('' when missing; every cell when ``column`` is None)."""
    if column is None:
        return [""] * len(rows)
    return ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in rows[column].tolist()]


def _column_scores(job: tuple) -> list[tuple[float, float, float]]:
    """(alone, with the question, chance) of each of some public columns (None: the letters alone): one job of
    :func:`column_leaks`, the option rows and folds built once for all of them."""
    rows, columns, folds, seed = job
    options = _OptionRows(rows, folds)
    if not options.pos:  # no single-answer item offers options: nothing to fit
        return [(0.0, 0.0, 0.0)] * len(columns)
    out = []
    for col in columns:
        values = _values(options.rows, col)
        alone = options.accuracy(values, False, seed)
        joint = options.accuracy(values, True, seed) if col not in (None, "question") else alone
        out.append((alone, joint, options.chance))
    return out


@dataclass
class ColumnJobs:
    """The public-column check cut into jobs: ``jobs`` are (function, arguments) pairs, each scoring a few columns
    (None: the letters alone), to run anywhere; :meth:`report` reads their results, in job order."""
    judged: list[str | None]
    items: int
    jobs: list[tuple]

    def report(self, results: list, margin: float = 0.02, z: float = 3.0) -> dict:
        """Per public column of the main config: accuracy alone and with the question, vs chance; ``leaking`` names
        every column above both chance and the letters-alone model (a letter prior is the letter balance check's
        to judge, not a column's; on a balanced export the two references coincide) by more than ``margin`` and by
        more than ``z`` standard errors of an accuracy at that reference over this many items, so that a small
        export's noise (a dozen items) is not read as a leak while a real one (a key in a column) still stands
        far above."""
        if not self.judged:
            return {"columns": {}, "leaking": [], "letters_alone": 0.0}
        found = {c: s for (_, (job,)), got in zip(self.jobs, results) for c, s in zip(job[1], got)}
        letters = found[None][0]
        report, leaking = {}, []
        n = self.items
        for col in self.judged[1:]:
            alone, joint, chance = found[col]
            report[col] = {"alone": round(alone, 4), "with_question": round(joint, 4), "chance": round(chance, 4)}
            ref = max(chance, letters)
            if max(alone, joint) > ref + max(margin, z * math.sqrt(ref * (1 - ref) / n)):
                leaking.append(col)
        return {"columns": report, "leaking": leaking, "letters_alone": round(letters, 4), "items": n}


def column_jobs(out: Path, folds: int = 3, seed: int = 0, parts: int = 1) -> ColumnJobs:
    """The public columns of the main config to judge, dealt over ``parts`` jobs: the costly ones (many distinct
    values: many terms) first and round the jobs, each job carrying only the columns it reads."""
    rows = public_rows(out)
    if rows.empty:
        return ColumnJobs([], 0, [])
    judged = [None, *(c for c in rows.columns if not c.startswith("key_") and c not in NOT_JUDGED
                      and c not in ("image_id", "source_path"))]
    order = sorted(judged, key=lambda c: -(rows[c].nunique() if c else 0))
    shares = [order[i::max(1, parts)] for i in range(max(1, parts))]
    needed = ["index", "image_id", "question", "key_answer", "multi_answer", *LETTERS]
    return ColumnJobs(judged, len(rows), [
        (_column_scores, ((rows[list(dict.fromkeys([*needed, *(c for c in share if c)]))], share, folds, seed),))
        for share in shares if share])


def column_leaks(out: Path, margin: float = 0.02, folds: int = 3, seed: int = 0, z: float = 3.0,
                 workers: int = 1) -> dict:
    """The public-column check (:meth:`ColumnJobs.report`), its jobs over ``workers`` processes."""
    plan = column_jobs(out, folds, seed, workers)
    return plan.report(list(ordered_map(_column_scores, [args[0] for _, args in plan.jobs], workers)), margin, z)


def modal_keys(out: Path, margin: float = 0.15, min_items: int = 30) -> dict:
    """Per task x dataset of the main config: the most frequent key's share vs chance; ``over`` lists those with
    at least ``min_items`` single-answer items above chance + margin."""
    rows = _single(public_rows(out))
    table, over = {}, []
    if rows.empty or "key_answer" not in rows:
        return {"groups": table, "over": over}
    rows = rows.assign(key_text=[r[r["key_answer"]] for r in rows.to_dict("records")],
                       k=rows[list(LETTERS)].notna().sum(axis=1))
    for (task, ds), part in rows.groupby(["clinical_vqa_task", "dataset_id"]):
        share = float(part["key_text"].value_counts().iloc[0] / len(part))
        chance = float(np.mean(1.0 / part["k"]))
        table[f"{task} / {ds}"] = {"items": len(part), "modal_share": round(share, 4), "chance": round(chance, 4)}
        if len(part) >= min_items and share > chance + margin:
            over.append(f"{task} / {ds}")
    return {"groups": table, "over": over}


def _pixel_shas(png: bytes) -> tuple[str, str]:
    """sha256 of an image's RGB pixels as shown and mirrored left to right (one decode; cv2.flip copies faster
    than numpy's reversed view)."""
    a = decode_png(png)
    return hashlib.sha256(a).hexdigest(), hashlib.sha256(cv2.flip(a, 1)).hexdigest()  # 1: left-right


def _shard_rows(out: Path, folder: str, columns: list[str], batch: int = 64):
    """The rows of one config's Parquet shards, ``columns`` only, read ``batch`` rows at a time: a check that
    decodes every image holds a batch of them, never the export."""
    for f in sorted((out / folder).glob("*.parquet")):  # pre_buffer would read ahead most of the file's images
        for b in pq.ParquetFile(f, pre_buffer=False).iter_batches(batch_size=batch, columns=columns):
            yield from b.to_pylist()


def mirrored_in_main(out: Path, flipped_phrase: str = "mirrored left to right",
                     rendered_keys: dict[str, str] | None = None) -> dict:
    """Main items that show a mirrored image: the stem says so, or the image is the left-right mirror of another
    main image (a symmetric image, its own mirror, does not count).

    Images that mirror each other share a `mirror_key`; only images that share one with another image file (other
    bytes) are decoded and compared pixel for pixel. ``rendered_keys`` (sha256 of a rendered PNG file -> its key,
    from rendered_items) spares decoding an exported image whose bytes are those of a rendered file; any other
    image is decoded for its key, so an image changed after rendering is still judged by its own pixels."""
    phrase, known = flipped_phrase.lower(), rendered_keys or {}
    said, by_key = [], {}
    for r in _shard_rows(out, "data", ["index", "question", "image"]):
        data = r["image"]["bytes"]
        if phrase in (r["question"] or "").lower():
            said.append(r["index"])
        sha = hashlib.sha256(data).hexdigest()
        by_key.setdefault(known.get(sha) or mirror_key(decode_png(data)), []).append((r["index"], sha))
    # a group of one file's copies holds no pair of mirrors: its images are equal, so a member's mirror is its own
    # (a symmetric image, which does not count), and no image of another group can be it (mirrors share a key)
    shared = {i for group in by_key.values() if len({sha for _, sha in group}) > 1 for i, _ in group}
    shown = [(r["index"], *_pixel_shas(r["image"]["bytes"])) for r in _shard_rows(out, "data", ["index", "image"])
             if r["index"] in shared] if shared else []
    plain: dict[str, list] = {}
    for idx, sha, _ in shown:
        plain.setdefault(sha, []).append(idx)
    twins = [idx for idx, sha, mirrored in shown if mirrored in plain and mirrored != sha]
    bad = sorted(set(said) | set(twins))
    return {"items": len(bad), "examples": bad[:10]}


def val_split(out: Path, share_range: tuple[float, float] = (0.15, 0.25), min_items: int = 30) -> dict:
    """The val share of the main items; the tasks and modalities with at least ``min_items`` test items but none in
    val (``missing``); and those whose items all come from one leakage component (``one_component``: no
    patient-disjoint split can give them val items, so they are named, not failed)."""
    rows = public_rows(out)
    if rows.empty:
        return {"val_share": 0.0, "in_range": False, "missing": [], "one_component": []}
    share = float((rows["split"] == "val").mean())
    comp = rows["key_split_group"] if "key_split_group" in rows else pd.Series(rows.index, index=rows.index)
    missing, one = [], []
    for col in ("clinical_vqa_task", "modality"):
        for value, part in rows.groupby(col):
            if (part["split"] == "test").sum() >= min_items and not (part["split"] == "val").any():
                (one if comp[part.index].nunique() == 1 else missing).append(f"{col}={value}")
    return {"val_share": round(share, 4), "in_range": share_range[0] <= share <= share_range[1], "missing": missing,
            "one_component": one}


def same_source_duplicates(out: Path, same_root: list[tuple[str, str]], bits: int) -> dict:
    """Pairs of exported images (every config) from two registrations reading the same folder whose pHash lies
    within ``bits``: the same scan exported twice under two identities."""
    from pipelines.standardize.display import phash_hex
    from pipelines.validity.near_duplicates import hashes, near_duplicate_pairs
    if not same_root:  # no two registrations read one folder: nothing to compare, no image to read
        return {"pairs": 0, "examples": []}
    named = {d for pair in same_root for d in pair}  # only these registrations' images are decoded
    frames = []
    for folder in ["data", *(p.parent.name + "/data" for p in sorted(out.glob("*/data"))
                             if p.parent.name in EXPORT_CONFIGS)]:
        for r in _shard_rows(out, folder, ["image", "dataset_id"]):
            if r["dataset_id"] in named:
                with Image.open(io.BytesIO(r["image"]["bytes"])) as im:
                    frames.append((r["dataset_id"], phash_hex(np.asarray(im.convert("RGB")))))
    if not frames:
        return {"pairs": 0, "examples": []}
    df = pd.DataFrame(frames, columns=["dataset_id", "phash"])
    pairs, examples = 0, []
    for a, b in same_root:
        part = df[df["dataset_id"].isin([a, b])].drop_duplicates()
        if part["dataset_id"].nunique() < 2:
            continue
        h = hashes(part["phash"])
        ds = part["dataset_id"].to_numpy()
        uniq, inv = np.unique(h, return_inverse=True)
        owners = [set(ds[inv == u]) for u in range(len(uniq))]
        n = sum(1 for o in owners if len(o) > 1)
        if len(uniq) > 1:
            for i, j in near_duplicate_pairs(uniq, bits).tolist():
                n += int(len(owners[i] | owners[j]) > 1)
        pairs += n
        if n:
            examples.append(f"{a} ~ {b}: {n}")
    return {"pairs": pairs, "examples": examples}


def text_only(out: Path, b, seed: int) -> dict:
    """The blind readers (text, options, metadata; pipelines.validity.blind) re-fitted on the exported main items
    and the private key, folds grouped by image; judged on the test split: ``exceeds`` names 'overall' above chance
    + ``text_only_margin`` and each task with enough items above chance + ``text_only_task_margin``."""
    from pipelines.validity.blind import blind_predictions, blind_report, fold_rows
    rows = public_rows(out)
    if rows.empty:
        return {"readers": {}, "exceeds": []}
    items = rows.assign(answer=rows["key_answer"], unit_id=rows["key_unit_id"],
                        granularity=rows["perceptual_granularity"])
    items = items[items["key_answer"].isin(list(LETTERS))]
    prepared = fold_rows(items, b.text_only_folds, "image_id")
    readers, exceeds = {}, []
    for kind in ("text", "options", "metadata"):
        r = blind_report(blind_predictions(items, b.text_only_folds, seed, prepared, kind), b.text_only_margin,
                         b.text_only_min_items, b.text_only_task_margin)
        readers[kind] = {"accuracy": round(r["accuracy"], 4), "chance": round(r["chance"], 4),
                         "by_task": r["by_task"], "exceeds": r["exceeds"]}
        if kind == "text":
            exceeds = r["exceeds"]
    return {"readers": readers, "exceeds": exceeds}


def card_matches_files(out: Path) -> dict:
    """Every config and split the card declares loads with `datasets.load_dataset` and yields a first row (streamed:
    a non-streamed load copies every image into an Arrow cache and maps it, 1.2 GB for the real-size bench's
    export; each row's bytes are checked by exported_images_readable); every file the card names (TSVs, configs)
    exists and is not empty."""
    import tempfile

    import datasets
    from huggingface_hub import DatasetCard
    card = DatasetCard.load(out / "README.md")
    problems = []
    configs = card.data.to_dict().get("configs", [])
    with tempfile.TemporaryDirectory(prefix="medbench-load-") as cache:
        for c in configs:
            name = c["config_name"]
            for df in c["data_files"]:
                if not list(out.glob(df["path"])):
                    problems.append(f"{name}/{df['split']}: no file matches {df['path']}")
            try:
                ds = datasets.load_dataset(str(out), name, cache_dir=cache, streaming=True)
                empty = [df["split"] for df in c["data_files"]
                         if df["split"] not in ds or next(iter(ds[df["split"]]), None) is None]
            except Exception as exc:  # the failure itself is what this check reports
                problems.append(f"{name}: load_dataset failed: {type(exc).__name__}: {exc}")
                continue
            problems += [f"{name}/{split}: declared but empty" for split in empty]
    for named in re.findall(r"`([^`]+\.(?:tsv|parquet))`", card.text):
        path = out / named
        if not path.is_file() or path.stat().st_size == 0:
            problems.append(f"the card names {named}, which is missing or empty")
    return {"configs": [c["config_name"] for c in configs], "problems": problems}
