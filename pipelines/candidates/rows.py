"""Candidates as rows: every question the described regions allow, with the geometry the gates read.

Nothing here touches pixels. A *target* is what a question marks (one instance, all instances of a
label on one plane, a box, or the whole image); a *unit* is one question (mask and contour twins of a
target are one unit, two items). Eligibility that does not depend on chance (label resolved and
tagged, a pool with a certainly-wrong option, a template) is decided here per distinct label set,
so selection never picks a unit that cannot be built; the seeded choices (template, options,
letters) are made later, for the selected units only.
"""

from __future__ import annotations

import json
import multiprocessing
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from pipelines import PIPELINE_VERSION
from pipelines.candidates.generators.run import generated
from pipelines.candidates.options import PoolKey, distractor_candidates, pool_for
from pipelines.candidates.picker import TemplatePicker
from pipelines.candidates.validate import granularity_group
from pipelines.config import PipelineConfig
from pipelines.gates import readable_planes
from pipelines.ids import stable_id, stable_ids
from pipelines.modalities import GMAI_MODALITY, QUESTION_FAMILY
from pipelines.processes import forked_pool
from pipelines.records import CANDIDATES, LETTERS
from pipelines.taxonomy import KIND_GRANULARITIES
from pipelines.vocab.hierarchy import Hierarchy

# what candidates read of the described rows (masks themselves are not needed until render)
SLICE_COLUMNS = ["image_id", "sample_id", "group_id", "source_path", "axis", "index", "width", "height",
                 "display_width", "display_height", "phash", "contrast", "orientation", "spacing", "spacing_source",
                 "intensity_params", "faint_labels", "content_bbox"]
REGION_COLUMNS = ["region_id", "image_id", "kind", "raw_label", "labels", "component_index", "bbox", "area_px",
                  "centroid", "outline_filled", "ring_cnr"]


@dataclass
class DatasetRows:
    """What one dataset contributes: its registry facts and its described rows."""

    dataset_id: str
    modality: str
    task_type: str
    slices: pd.DataFrame
    regions: pd.DataFrame
    samples: pd.DataFrame  # sample_id, dim
    exhaustive: frozenset[str] = frozenset()  # raw labels annotated exhaustively: the only ones counted
    rle_lookup: Callable[[list[str]], dict[str, str]] | None = None  # region id -> stored mask, on demand
    partial: frozenset[str] = frozenset()  # raw labels the label map says are annotated only in part


@dataclass
class CandidateSet:
    table: pa.Table
    skipped: Counter = field(default_factory=Counter)  # reason -> items
    skipped_by_dataset: dict[str, Counter] = field(default_factory=dict)


def targets(regions: pd.DataFrame, scope: str) -> pd.DataFrame:
    """One row per thing a question marks. Mask instances of one label on one plane are grouped
    (``scope='label'``), kept apart (``'instance'``) or both; boxes and whole images stay single."""
    cols = ["target_id", "scope", "kind", "image_id", "raw_label", "labels", "member_region_ids",
            "x0", "y0", "x1", "y1", "area_px"]
    if regions.empty:
        return pd.DataFrame(columns=cols)
    bbox = np.array(regions["bbox"].tolist(), float).reshape(-1, 4)
    r = regions.assign(x0=bbox[:, 0], y0=bbox[:, 1], x1=bbox[:, 2], y1=bbox[:, 3])
    alone = r["kind"] != "mask"
    single = r[alone].assign(scope=np.where(r.loc[alone, "kind"] == "image", "image", "instance"),
                             target_id=r.loc[alone, "region_id"],
                             member_region_ids=[[x] for x in r.loc[alone, "region_id"]])
    out = [single]
    masks = r[~alone].sort_values(["image_id", "raw_label", "component_index"], kind="stable")
    if not masks.empty:
        same = (masks["image_id"].to_numpy()[1:] == masks["image_id"].to_numpy()[:-1]) & \
               (masks["raw_label"].to_numpy()[1:] == masks["raw_label"].to_numpy()[:-1])
        bounds = np.flatnonzero(~same) + 1
        starts = np.r_[0, bounds]
        code = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(masks)]))
        ids, ends = masks["region_id"].tolist(), np.r_[bounds, len(masks)]
        members = [ids[a:b] for a, b in zip(starts.tolist(), ends.tolist())]
        agg = masks.iloc[starts][["image_id", "raw_label", "labels", "kind"]].reset_index(drop=True)
        num = masks[["x0", "y0", "x1", "y1", "area_px"]].groupby(code)
        agg = agg.assign(x0=num["x0"].min().to_numpy(), y0=num["y0"].min().to_numpy(), x1=num["x1"].max().to_numpy(),
                         y1=num["y1"].max().to_numpy(), area_px=num["area_px"].sum().to_numpy(),
                         member_region_ids=members)
        one = np.array([len(m) == 1 for m in members], bool)
        if scope in ("label", "both"):
            grouped = agg[~one].assign(scope="label")
            grouped["target_id"] = [stable_id("label-group", *m) for m in grouped["member_region_ids"]]
            out.append(grouped)
        out.append(agg[one].assign(scope="instance", target_id=[m[0] for m in agg.loc[one, "member_region_ids"]]))
        if scope in ("instance", "both"):
            multi = masks[~one[code]]
            out.append(multi.assign(scope="instance", target_id=multi["region_id"],
                                    member_region_ids=[[x] for x in multi["region_id"]]))
    return pd.concat([o[cols] for o in out], ignore_index=True)


class Eligibility:
    """Why a label set cannot become a question (cached per distinct combination), else ''."""

    def __init__(self, vocab: pd.DataFrame, pools: dict[PoolKey, list[str]], picker: TemplatePicker):
        self.vocab = vocab
        self.vmap = {(r.dataset_id, r.raw_label): r for r in vocab.itertuples(index=False)}
        self.canonical = {k: r.canonical_label for k, r in self.vmap.items()
                          if r.status not in ("unresolved", "excluded")}
        self.hierarchy = Hierarchy.from_vocab(vocab)
        self.pools, self.picker = pools, picker
        self._cache: dict[tuple, tuple] = {}

    def resolve(self, ds: DatasetRows, labels: tuple[str, ...], granularity: str, counting: bool = False,
                nearby: frozenset[str] | None = None) -> tuple:
        """(reason, entry, answers, pool_size, distractors available) for one label set (``nearby``: the labels
        around the plane, for a region of a volume)."""
        key = (ds.dataset_id, labels, granularity_group(granularity), counting, nearby)
        if key not in self._cache:
            self._cache[key] = self._resolve(ds, labels, granularity, counting, nearby)
        return self._cache[key]

    def _resolve(self, ds: DatasetRows, labels: tuple[str, ...], granularity: str, counting: bool,
                 nearby: frozenset[str] | None) -> tuple:
        entries = [self.vmap.get((ds.dataset_id, lab)) for lab in labels]
        if any(e is None or e.status == "unresolved" for e in entries):
            return "unresolved_label", None, [], None, 0
        if any(e.status == "excluded" for e in entries):
            return "excluded_label", None, [], None, 0
        if not counting and any(not e.task for e in entries):
            return "untagged_label", None, [], None, 0
        answers = sorted({e.canonical_label for e in entries})
        family = QUESTION_FAMILY.get(ds.modality, "other")
        if counting:
            entry = entries[0]._replace(task="Counting", semantic_type="count")
            ok = self.picker.available("Counting", "image", family)
            return ("" if ok else "no_template"), entry, answers, None, 0
        if len({e.task for e in entries}) > 1:
            return "mixed_tasks", None, answers, None, 0
        task = entries[0].task
        pool, _ = pool_for(self.pools, ds.dataset_id, ds.modality, task, granularity, answers, self.hierarchy, nearby)
        n = len(distractor_candidates(answers, set(answers), pool, self.hierarchy))
        if len(pool) < 2 or n == 0:
            return "pool_too_small", entries[0], answers, len(pool), n
        if len(answers) > 1 and len(LETTERS) - len(answers) < 1:
            return "too_many_answers", entries[0], answers, len(pool), n
        if not self.picker.available(task, granularity_group(granularity), family):
            return "no_template", entries[0], answers, len(pool), n
        return "", entries[0], answers, len(pool), n


def plural(label: str) -> str:
    return label if label.endswith("s") else label + "s"


def _slice_frame(slices: pd.DataFrame) -> pd.DataFrame:
    """Per image: display geometry and the diversity features (axis, relative position, pHash)."""
    s = slices[[c for c in SLICE_COLUMNS if c in slices]].copy()
    s["depth"] = s.groupby(["sample_id", "axis"])["index"].transform("max") + 1
    s["position"] = np.where(s["depth"] <= 1, 0.5, s["index"] / np.maximum(s["depth"] - 1, 1))
    return s


def _marks(df: pd.DataFrame, gates) -> pd.DataFrame:
    """Display-pixel geometry of each target's mark (null for whole-image items)."""
    sx, sy = df["display_width"] / df["width"], df["display_height"] / df["height"]
    dw, dh = df["display_width"].astype(float), df["display_height"].astype(float)
    x0, y0, x1, y1 = df["x0"] * sx, df["y0"] * sy, df["x1"] * sx, df["y1"] * sy
    has = (df["kind"] != "image").to_numpy() & df["x0"].notna().to_numpy()
    px = df["area_px"].astype(float) * sx * sy
    bx, by = np.maximum(4.0, gates.border_band_fraction * dw), np.maximum(4.0, gates.border_band_fraction * dh)
    border = (x1 <= bx) | (x0 >= dw - bx) | (y1 <= by) | (y0 >= dh - by)
    bbox = [[a, b, c, d] for a, b, c, d in zip(x0, y0, x1, y1)]
    return pd.DataFrame({
        "mark_pixels": np.where(has, px, np.nan), "mark_fraction": np.where(has, px / (dw * dh), np.nan),
        "mark_min_side": np.where(has, np.minimum(x1 - x0, y1 - y0), np.nan),
        "mark_bbox": [b if h else None for b, h in zip(bbox, has)], "border_only": np.where(has, border, False)},
        index=df.index)


def _image_labels(regions: pd.DataFrame, image_ids: pd.Series) -> list[list[str]]:
    """Per row: the sorted distinct labels present on its image (what a reader could name on it)."""
    labs = regions[["image_id", "labels"]].explode("labels").dropna().drop_duplicates()
    labs = labs.sort_values(["image_id", "labels"])
    present: dict[str, list[str]] = {}
    for image_id, label in zip(labs["image_id"].tolist(), labs["labels"].tolist()):
        present.setdefault(image_id, []).append(label)
    return [present[i] if i in present else [] for i in image_ids.tolist()]  # rows of one image share its list


def nearby_labels(ds: DatasetRows, sl: pd.DataFrame, canonical: dict[str, str], slab: float
                  ) -> dict[str, frozenset[str]]:
    """Per plane of a volume: the canonical labels drawn on the planes of the same scan and axis within ``slab``
    of the axis depth (the body region the plane shows). Region-level distractors come from these, so an option
    is a structure that occurs around the plane, never one an anatomy atlas would rule out at a glance."""
    dims = dict(zip(ds.samples["sample_id"], ds.samples["dim"]))
    planes = sl[sl["sample_id"].map(dims) == 3][["image_id", "sample_id", "axis", "index", "depth"]]
    if planes.empty:
        return {}
    marked = ds.regions.loc[ds.regions["kind"] != "image", ["image_id", "raw_label"]].drop_duplicates()
    marked = marked.assign(label=marked["raw_label"].map(canonical)).dropna(subset=["label"])
    on_plane: dict[str, set[str]] = {}
    for image_id, label in zip(marked["image_id"].tolist(), marked["label"].tolist()):
        on_plane.setdefault(image_id, set()).add(label)
    out: dict[str, frozenset[str]] = {}
    for _, part in planes.groupby(["sample_id", "axis"], sort=True):
        part = part.sort_values("index")
        index, ids = part["index"].to_numpy(), part["image_id"].tolist()
        reach = max(1.0, slab * float(part["depth"].iloc[0]))
        los = np.searchsorted(index, index - reach).tolist()
        his = np.searchsorted(index, index + reach, side="right").tolist()
        seen: Counter = Counter()  # labels of the planes inside the window, which only ever moves forward
        lo = hi = 0
        for image_id, new_lo, new_hi in zip(ids, los, his):
            for j in ids[hi:new_hi]:
                seen.update(on_plane.get(j, ()))
            for j in ids[lo:new_lo]:
                seen.subtract(on_plane.get(j, ()))
                for label in on_plane.get(j, ()):
                    if not seen[label]:
                        del seen[label]
            lo, hi = new_lo, new_hi
            out[image_id] = frozenset(seen)
    return out


def _one_label_everywhere(ds: DatasetRows, elig: "Eligibility", config: PipelineConfig) -> bool:
    """A dataset whose one label covers most of every image (a membrane network, a whole-field mask): its key never
    varies and it has no location to ask about, so no question would need the image."""
    marked = ds.regions[ds.regions["kind"] != "image"]
    if marked.empty:
        return False
    labels = {elig.canonical.get((ds.dataset_id, raw)) for raw in marked["raw_label"]}
    if len(labels) != 1 or None in labels:  # an excluded or unresolved label is another story
        return False
    b = np.array(marked["bbox"].tolist(), float).reshape(-1, 4)
    boxes = pd.DataFrame({"image_id": marked["image_id"].to_numpy(), "x0": b[:, 0], "y0": b[:, 1], "x1": b[:, 2],
                          "y1": b[:, 3]}).groupby("image_id").agg(x0=("x0", "min"), y0=("y0", "min"), x1=("x1", "max"),
                                                                   y1=("y1", "max"))
    geo = ds.slices.set_index("image_id").loc[boxes.index, ["width", "height"]].to_numpy(float)
    share = (boxes["x1"] - boxes["x0"]) * (boxes["y1"] - boxes["y0"]) / (geo[:, 0] * geo[:, 1])
    return bool((share > config.generators.locate_max_area).all())


def _crowded_boxes(boxes: pd.DataFrame, sl: pd.DataFrame, config: PipelineConfig) -> set[tuple[str, str]]:
    """(image, label) pairs whose boxes a reader could not count: two boxes of the label closer than the count gap
    (overlapping ones included), or one within the gap of the image border."""
    from pipelines.candidates.generators.pieces import count_gap
    geo = sl.set_index("image_id")[["width", "height", "display_width", "display_height"]]
    out: set[tuple[str, str]] = set()
    for (image_id, label), part in boxes.groupby(["image_id", "raw_label"], sort=True):
        w, h, dw, dh = (float(v) for v in geo.loc[image_id])
        gap = count_gap(dw, dh, config.questions)
        b = np.array(part["bbox"].tolist(), float).reshape(-1, 4) * [dw / w, dh / h, dw / w, dh / h]
        if (b[:, :2] < gap).any() or (b[:, 2] > dw - gap).any() or (b[:, 3] > dh - gap).any():
            out.add((image_id, label))
            continue
        for i in range(len(b)):
            apart_x = np.maximum(b[i + 1:, 0] - b[i, 2], b[i, 0] - b[i + 1:, 2])
            apart_y = np.maximum(b[i + 1:, 1] - b[i, 3], b[i, 1] - b[i + 1:, 3])
            if (np.maximum(apart_x, apart_y) < gap).any():
                out.add((image_id, label))
                break
    return out


def _ids(df: pd.DataFrame, seed: int, dataset_id: str) -> pd.DataFrame:
    """unit, prompt and item ids: stable hashes of the target. Twins share the unit, so unit ids are hashed
    before the contour twins are added and copied to them (the twins are appended after ``df``'s rows)."""
    key = ["\x1e".join(k) for k in df["unit_key"].tolist()]
    unit_id = stable_ids([seed] * len(df), [dataset_id] * len(df), key)
    twins = (df["kind"] == "mask").to_numpy()
    unit_id += [u for u, t in zip(unit_id, twins.tolist()) if t]
    key += [k for k, t in zip(key, twins.tolist()) if t]
    out = pd.concat([df, df[twins].assign(granularity="contour")], ignore_index=True)
    target = [k if t is None else t for k, t in zip(key, out["target_id"].tolist())]
    prompt = stable_ids(target, out["granularity"])
    item = stable_ids(unit_id, prompt, out["granularity"])
    return out.assign(unit_id=unit_id, prompt_id=prompt, item_id=item)


def _resolve_all(frame: pd.DataFrame, ds: DatasetRows, elig: Eligibility, skipped: Counter,
                 counting: bool = False) -> pd.DataFrame:
    """Join each target's eligibility (decided once per distinct label set) and drop what cannot be built,
    counting it per reason (once per item a target would have given)."""
    near = frame["nearby"].tolist() if "nearby" in frame else [None] * len(frame)
    keys = list(zip(frame["lab_key"].tolist(), frame["granularity"].tolist(), near))
    cache = {k: elig.resolve(ds, k[0], k[1], counting, k[2]) for k in set(keys)}
    res = [cache[k] for k in keys]
    reason = pd.Series([r[0] for r in res], index=frame.index)
    for why, n in frame.groupby(reason)["n_items"].sum().items():
        if why:
            skipped[why] += int(n)
    entry = [r[1] for r in res]
    frame = frame.assign(
        reason=reason, clinical_vqa_task=[e.task if e is not None else None for e in entry],
        department=[e.department if e is not None else None for e in entry],
        semantic_type=[e.semantic_type if e is not None else None for e in entry],
        canonical=[e.canonical_label if e is not None else None for e in entry],
        answers=[list(r[2]) for r in res], pool_size=[r[3] for r in res], distractors_available=[r[4] for r in res])
    return frame[frame["reason"] == ""]


def _generated(ds: DatasetRows, vocab: pd.DataFrame, config: PipelineConfig) -> tuple[pd.DataFrame, Counter]:
    """The generators' rows of one dataset and what they skipped."""
    skipped: Counter = Counter()
    rows = generated(ds.regions, ds.slices, ds.samples, vocab[vocab["dataset_id"] == ds.dataset_id], ds.exhaustive,
                     config, skipped, ds.rle_lookup, ds.modality, ds.partial)
    return rows, skipped


_FORKED: tuple = ()  # (datasets, vocab, config), set before the generator processes fork: they inherit it


def _generated_forked(i: int) -> tuple[pd.DataFrame, Counter]:
    """Run in a forked process: dataset ``i``'s generators on the rows inherited from the parent (pickling the
    rows to send them would cost more than the generators themselves)."""
    datasets, vocab, config = _FORKED
    return _generated(datasets[i], vocab, config)


def dataset_candidates(ds: DatasetRows, elig: Eligibility, config: PipelineConfig, skipped: Counter,
                       pending: Future | None = None) -> pd.DataFrame:
    """Item rows of one dataset (twins as two rows sharing a unit id), built column-wise. ``pending``: the
    dataset's generator rows, already under way in another process."""
    if ds.slices.empty or ds.regions.empty:
        return pd.DataFrame(columns=CANDIDATES.names)
    sl = _slice_frame(ds.slices)
    dims = dict(zip(ds.samples["sample_id"], ds.samples["dim"]))
    geo = ds.slices.rename(columns={"display_width": "image_width", "display_height": "image_height"})
    if not readable_planes(geo, config.gates).any():  # nothing a reader could see: the reason when nothing is made
        skipped["no_readable_image"] += len(ds.slices)
    if _one_label_everywhere(ds, elig, config):
        skipped["one_label_covers_image"] += int((ds.regions["kind"] != "image").sum())
    t = targets(ds.regions, config.render.scope)
    kinds, target_ids = t["kind"].tolist(), t["target_id"].tolist()
    canonical = {raw: c for (d, raw), c in elig.canonical.items() if d == ds.dataset_id}
    near = nearby_labels(ds, sl, canonical, config.questions.distractor_slab)
    t = t.assign(lab_key=[tuple(v) for v in t["labels"].tolist()], granularity=[KIND_GRANULARITIES[k][0] for k in kinds],
                 n_items=[len(KIND_GRANULARITIES[k]) for k in kinds],
                 unit_key=[("twin", i) if k == "mask" else (i,) for i, k in zip(target_ids, kinds)],
                 count=None, count_label=None,
                 nearby=[near.get(i) if k != "image" else None for i, k in zip(t["image_id"].tolist(), kinds)])
    frames = [_resolve_all(t, ds, elig, skipped)]
    if ds.task_type == "det" and config.questions.counting:
        boxes = ds.regions[ds.regions["kind"] == "box"]
        partial = ~boxes["raw_label"].isin(ds.exhaustive)
        if partial.any():  # a count of a label not annotated everywhere would have no right answer
            skipped["not_exhaustive"] += int(boxes.loc[partial, ["image_id", "raw_label"]].drop_duplicates().shape[0])
        boxes = boxes[~partial]
        close = _crowded_boxes(boxes, sl, config)
        if close:
            skipped["count_pieces_touch"] += len(close)
        keep = [(i, r) not in close for i, r in zip(boxes["image_id"].tolist(), boxes["raw_label"].tolist())]
        c = boxes[keep].groupby(["image_id", "raw_label"]).size().rename("count").reset_index()
        keys = c.groupby("raw_label")["count"].transform("nunique")
        narrow = keys < config.questions.min_count_keys
        if narrow.any():  # e.g. BCCD's white cells: 1 in 96 % of fields, so the key is known without the image
            skipped["narrow_count_range"] += int(narrow.sum())
            c = c[~narrow]
        c = c.assign(lab_key=c["raw_label"].map(lambda r: (r,)), labels=c["raw_label"].map(lambda r: [r]),
                     granularity="image", n_items=1, kind="image", target_id=None, member_region_ids=[[]] * len(c),
                     scope="image", unit_key=[("count", i, r) for i, r in zip(c["image_id"], c["raw_label"])],
                     x0=np.nan, y0=np.nan, x1=np.nan, y1=np.nan, area_px=np.nan)
        c = _resolve_all(c, ds, elig, skipped, counting=True)
        frames.append(c.assign(count_label=c["canonical"].where(c["canonical"].notna(), c["raw_label"]),
                               answers=[[str(int(n))] for n in c["count"]]))
    # row-wise, so finished apart (the same rows): these while the generators may still be running
    built_in = _finish(pd.concat(frames, ignore_index=True), ds, sl, dims, config) if any(len(f) for f in frames) \
        else None
    gen, gen_skipped = pending.result() if pending is not None else _generated(ds, elig.vocab, config)
    skipped.update(gen_skipped)
    parts = [built_in, _finish(gen, ds, sl, dims, config) if len(gen) else None]
    parts = [p for p in parts if p is not None and len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=CANDIDATES.names)


def _finish(df: pd.DataFrame, ds: DatasetRows, sl: pd.DataFrame, dims: dict, config: PipelineConfig) -> pd.DataFrame:
    """Candidate rows (CANDIDATES columns) from target or generator rows: plane facts, labels on the image, mark
    geometry, answer text, contour twins and ids. Row by row, so blocks of rows can be finished separately."""
    df = df.merge(sl, on="image_id", how="left")
    if "generator_params" in df:  # where a generated question's plane is, for anyone re-deriving its key
        gen = df["generator_params"].notna()
        df.loc[gen, "generator_params"] = [
            json.dumps({**json.loads(p), "plane": {"source_path": sp, "axis": ax, "index": int(ix)}}, sort_keys=True)
            for p, sp, ax, ix in zip(*(df.loc[gen, c].tolist() for c in ("generator_params", "source_path", "axis",
                                                                            "index")))]
    df["image_labels"] = _image_labels(ds.regions, df["image_id"])
    near = df["nearby"].tolist() if "nearby" in df else [None] * len(df)
    df["nearby_labels"] = [sorted(v) if isinstance(v, frozenset) else None for v in near]
    df = pd.concat([df, _marks(df, config.gates)], axis=1)
    given = df["answer_label"] if "answer_label" in df else pd.Series(None, index=df.index, dtype=object)
    df["answer_label"] = [g if isinstance(g, str) and g else
                          f"the number of {plural(cl)}: {int(n)}" if isinstance(cl, str) and pd.notna(n) else ";".join(a)
                          for g, cl, n, a in zip(given.tolist(), df["count_label"].tolist(), df["count"].tolist(),
                                                 df["answers"].tolist())]
    built_in = pd.Series(np.where(df["count"].notna(), "box_count", "recognition"), index=df.index)
    df["generator"] = df["generator"].where(df["generator"].notna(), built_in) if "generator" in df else built_in
    for col in ("generator_params", "balance_group"):
        if col not in df:
            df[col] = pd.Series(None, index=df.index, dtype="str")
    df = _ids(df, config.seed, ds.dataset_id)  # adds the contour twin of every mask row
    df = df.rename(columns={"index": "slice_index", "display_width": "image_width", "display_height": "image_height"})
    return df.assign(
        modality=ds.modality, gmai_modality=GMAI_MODALITY.get(ds.modality, ds.modality),
        question_family=QUESTION_FAMILY.get(ds.modality, "other"),
        original_task=df["sample_id"].map(lambda s: f"{ds.task_type.upper()}_{int(dims.get(s, 2))}D"),
        dataset_id=ds.dataset_id, pipeline_version=PIPELINE_VERSION, seed=config.seed,
        count=df["count"].astype("Int64"))[CANDIDATES.names]


def build_candidates(datasets: list[DatasetRows], vocab: pd.DataFrame, templates: pd.DataFrame,
                     pools: dict[PoolKey, list[str]], config: PipelineConfig) -> CandidateSet:
    """Every candidate item of every dataset, sorted by item id (deterministic)."""
    frames: list[pd.DataFrame] = []
    total: Counter = Counter()
    per_ds: dict[str, Counter] = {}
    global _FORKED
    ordered = sorted(datasets, key=lambda d: d.dataset_id)
    workers = config.generators.workers
    fork = workers > 1 and bool(config.generators.enabled) and "fork" in multiprocessing.get_all_start_methods()
    _FORKED = (ordered, vocab, config) if fork else ()
    try:
        with forked_pool(workers - 1) if fork else nullcontext() as pool:
            pending = {ds.dataset_id: pool.submit(_generated_forked, i) for i, ds in enumerate(ordered)
                       if not (ds.slices.empty or ds.regions.empty)} if pool else {}  # the ones dataset_candidates uses
            elig = Eligibility(vocab, pools, TemplatePicker(templates))  # loads MeSH while the generators run
            for ds in ordered:
                skipped: Counter = Counter()
                frames.append(dataset_candidates(ds, elig, config, skipped, pending.get(ds.dataset_id)))
                per_ds[ds.dataset_id] = skipped
                total.update(skipped)
    finally:
        _FORKED = ()  # the rows are not kept alive after a failed generator either
    frames = [f for f in frames if len(f)]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=CANDIDATES.names)
    df = df.sort_values("item_id", kind="stable").reset_index(drop=True)
    table = pa.Table.from_pandas(df, schema=CANDIDATES, preserve_index=False)
    return CandidateSet(table, total, per_ds)
