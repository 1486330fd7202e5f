"""The one typed configuration object shared by the Dagster resources and the CLI.

Values come from (lowest to highest precedence): the defaults below, an optional YAML
file (``MEDBENCH_CONFIG`` or ``--config``), environment variables ``MEDBENCH_*`` for
the top-level paths and seed, and explicit keyword overrides.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from pipelines.sourcefiles import Limits

PROJECT_ROOT = Path(__file__).resolve().parent.parent

Axis = Literal["axial", "coronal", "sagittal"]


class CTWindow(BaseModel):
    """A named CT display window (centre/width in Hounsfield units)."""

    model_config = ConfigDict(frozen=True)
    level: float
    width: float


class IngestSettings(BaseModel):
    """Limits that make readers refuse hostile or broken input instead of crashing."""

    max_pixels: int = Field(200_000_000, description="largest decoded image/volume, in voxels")
    max_file_bytes: int = Field(8 << 30, description="largest source file read or hashed, in bytes (file_too_large)")
    read_timeout_s: float = Field(600.0, description="longest read, hash or decode of one source file or sample "
                                                     "(read_timeout): a stalled mount cannot hang the build")
    image_extensions: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm",
                                         ".pnm", ".webp")
    allow_external_symlinks: bool = Field(False, description="accept symlinks whose target is outside the dataset root")
    workers: int = Field(1, description="processes checking the volume pairs of one dataset (memory: one pair each)")
    data_dirs: tuple[Path, ...] = Field((), description="folders, besides the registry's own folder, that registry "
                                                        "roots may lie in (MEDBENCH_DATA_DIRS, ':'-separated)")

    @property
    def limits(self) -> "Limits":
        from pipelines.sourcefiles import Limits
        return Limits(max_bytes=self.max_file_bytes, timeout_s=self.read_timeout_s)


class ChangeSettings(BaseModel):
    """How source changes are detected (changes no output, so it is not part of the settings hash)."""

    verify: bool = Field(False, description="re-hash every source file instead of trusting unchanged size, mtime, "
                                            "inode and ctime (`medbench build --verify`; the sensor reads it too)")


class StandardizeSettings(BaseModel):
    """SA-Med2D-style slicing and intensity parameters."""

    canonical_orientation: str = "LPS"
    axes: tuple[Axis, ...] = ("axial", "coronal", "sagittal")
    min_region_pixels: int = Field(
        16, description="cross-sections smaller than this are dropped and counted"
    )
    min_region_fraction: float = Field(
        0.00015, description="...or smaller than this share of the slice (SA-Med2D cut ~0.0153%)"
    )
    min_plane_side: int = Field(
        16, description="skip an axis whose planes are thinner than this (e.g. coronal cuts of a 3-slice series)"
    )
    connectivity_3d: Literal[6, 18, 26] = 26
    connectivity_2d: Literal[4, 8] = 8
    resample_isotropic: bool = False
    oblique: Literal["resample", "quarantine"] = Field(
        "resample", description="a volume whose axes are rotated beyond oblique_tolerance_deg from the patient axes: "
                                "resampled onto the nearest axis-aligned grid (recorded), or quarantined")
    oblique_tolerance_deg: float = Field(1.0, description="largest axis rotation treated as axis-aligned")
    workers: int = Field(1, description="processes per dataset partition (memory: one volume each)")
    grid_tolerance: float = Field(1e-3, description="relative tolerance of the image/label grid check")
    mr_percentiles: tuple[float, float] = (0.5, 99.5)
    ct_windows: dict[str, CTWindow] = {
        "soft_tissue": CTWindow(level=40, width=400),
        "lung": CTWindow(level=-600, width=1500),
        "bone": CTWindow(level=400, width=1800),
        "brain": CTWindow(level=40, width=80),
        "liver": CTWindow(level=60, width=160),
    }
    default_ct_window: str = "soft_tissue"
    fill_outlines: bool = Field(True, description="a 2D mask drawn as a thin closed outline (a head circumference "
                                                  "ring) is described as the region it encloses, and marked so")
    outline_hole_ratio: float = Field(4.0, description="an outline encloses at least this many times its own area")
    outline_max_half_width: float = Field(3.0, description="an outline is at most about twice this many px thick")
    write_pngs: Literal["none", "all"] = Field(
        "none", description="'all' also writes every described slice as a PNG (the full SA-Med2D-style corpus); "
                            "by default only the selected items are rendered")


class DisplaySettings(BaseModel):
    """How a stored plane becomes the image a reader sees (square pixels, bounded size)."""

    max_image_side: int = Field(1024, description="longer sides are downscaled to this with area interpolation")


# The readability rules by name, in the order a unit is judged; the rules themselves live with the gates.
# Named here so a registry entry's opt-outs can be checked when the registry is read, before any gate runs.
RULE_NAMES = ("image_too_small", "image_too_elongated", "blank_image", "mark_too_small", "mark_too_thin",
              "mark_on_border")


class GateSettings(BaseModel):
    """Readability rules applied to candidates before selection; each drop is counted per rule and dataset.

    Defaults were chosen by viewing real items from ../shared: below 64 px a CT plane or X-ray is a blur of a
    few organs' worth of pixels; strips beyond 3:1 are thin-slab coronal/sagittal cuts; marks under 48 display
    pixels (about 7x7) or 0.1 % of the image are dots a reader cannot tell from noise."""

    min_image_side: int = Field(64, description="shorter display side (px, after square-pixel resampling)")
    max_aspect: float = Field(3.0, description="longer/shorter display side")
    min_mark_pixels: int = Field(48, description="display pixels the marked structure covers")
    min_mark_fraction: float = Field(0.001, description="share of the display image the marked structure covers")
    min_mark_side: int = Field(4, description="shorter side of the mark's box in display px")
    finding_types: list[str] = Field(
        ["lesion", "cell"], description="semantic types whose place anatomy does not predict: a reader must see them")
    min_finding_cnr: float = Field(
        1.5, description="a finding on a plane cut from a volume is located, boxed or placed in a quadrant only when "
                         "its contrast-to-noise against a 3-px band around it on the plane shown reaches this")
    border_band_fraction: float = Field(
        0.01, description="a mark lying wholly in this edge band (at least 4 px) is not shown")
    min_pixel_std: float = Field(2.0, description="an image whose grey levels vary less than this is blank")
    majority_warn: float = Field(0.5, description="a gate's check warns when it drops more than this share of a dataset")


class RenderSettings(BaseModel):
    """How visual prompts are drawn (defaults close to GMAI-MMBench: red, ~0.3 alpha fill, opaque lines)."""

    mark_palette: dict[str, tuple[int, int, int]] = Field(
        {"red": (255, 0, 0), "yellow": (255, 255, 0), "blue": (0, 0, 255), "green": (0, 255, 0),
         "cyan": (0, 255, 255), "magenta": (255, 0, 255), "navy": (0, 0, 128)},
        description="colours a single mark may take, in order of preference: the first that reaches min_contrast "
                    "against the pixels under and around the mark is used (else the one with the highest contrast). "
                    "Yellow and navy together reach 3.8 on any uniform background; pure black and white are left "
                    "out because image backgrounds take them")
    min_contrast: float = Field(3.0, description="WCAG contrast ratio (relative luminance) a mark needs against "
                                                 "its local background")
    halo: bool = Field(True, description="a named-colour outline of a generated question (its colour is in the "
                                         "question text) that falls below min_contrast gets a 1-px black or white "
                                         "edge on its outer side, so the colour stays the one the text names")
    alpha: float = 0.3
    line_fraction: float = Field(0.006, description="line thickness as a share of the image's shorter side")
    min_thickness: int = 1
    scope: Literal["label", "instance", "both"] = Field(
        "label", description="draw all components of a label together, each instance alone, or both")
    sheet_items: int = 24
    sheet_thumb: int = 160
    png_level: int = Field(2, ge=0, le=12, description="libdeflate level of the item PNGs, encoded once at render "
                                                       "and reused by every export (pixels are the same at any level)")
    png_filter: Literal["up", "sub", "none"] = Field(
        "up", description="PNG row filter of the item PNGs, one for every row ('up': each row against the one above, "
                          "what a slice's smooth anatomy and grey background favour)")


class VocabSettings(BaseModel):
    """Where MeSH and the curated vocabulary files come from."""

    mesh_source: Path | None = Field(
        None, description="folder of MeSH *terms*/*trees* tables or NLM descYYYY.xml; default: mesh_vocab/ subset")
    curated_dir: Path | None = Field(None, description="folder of abbreviations/concepts/spelling/tagging YAML")
    strict_labels: bool = Field(False, description="an unresolved label stops the run (MEDBENCH_STRICT=1, "
                                "`medbench build --strict`); by default its items are left out")


class LLMSettings(BaseModel):
    """The OpenAI-compatible endpoint used for question templates and tag suggestions."""

    model: str = "gpt-4o"
    base_url: str | None = Field(None, description="any OpenAI-compatible server; default: the SDK's (api.openai.com)")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the key (never in files)")
    timeout_s: float = 60.0
    max_retries: int = Field(4, description="retries on 429/5xx/connection errors, with the SDK's exponential backoff")
    max_concurrency: int = 4
    temperature: float = 0.7
    cache_dir: Path = PROJECT_ROOT / "data" / "llm_cache"
    price_input_per_mtok: float = Field(2.50, description="USD per million prompt tokens (for cost metadata)")
    price_output_per_mtok: float = Field(10.00, description="USD per million completion tokens")


class QuestionSettings(BaseModel):
    """Template generation and option sampling (GMAI-MMBench's procedure, with its count rule repaired)."""

    labels_per_combination: int = 10
    templates_per_label: int = 10
    use_llm: bool = Field(True, description="ask the LLM when a key is set; the offline bank is always available")
    near_duplicate_ratio: float = Field(90.0, description="rapidfuzz token-sort ratio above which two templates are one")
    max_distractors: int = 4
    image_level_options: int = Field(4, description="options of a whole-image (diagnosis) item: this many when the "
                                                    "dataset has as many classes, else all of them")
    fixed_distractors: int | None = Field(None, description="use exactly this many distractors (when the pool allows)")
    counting: bool = Field(True, description="ask counting questions on detection datasets")
    max_count_options: int = 4
    min_count_keys: int = Field(3, description="a label is counted only when its counts take at least this many "
                                               "values (a count that is nearly always 1 is answerable without the image)")
    distractor_slab: float = Field(0.15, description="a region of a volume is offered only structures drawn within this "
                                                     "share of the axis depth of its plane (its body region)")
    count_gap_px: int = Field(3, description="a count is asked only when every piece is separated from the others and "
                                            "from the image border by at least this much background (display px)")
    count_gap_fraction: float = Field(0.01, description="... or this share of the shorter display side, if larger")
    count_spread: float = Field(0.15, description="counting distractors step up to this share of the key apart "
                                                  "(at least 1), so the spread scales with the count")


class BenchmarkSettings(BaseModel):
    """Selection, splits and exports (GMAI-MMBench: 30 per answer, 4,550 val / 21,281 test)."""

    per_answer_cap: int = Field(30, description="most units per answer label within its task and granularity")
    per_component_task_cap: int = Field(30, description="most units one leakage component (a patient, a volume and "
                                                        "its copies) gives a task, so one patient cannot make a task "
                                                        "and a patient-disjoint val split can still reach its share")
    val_fraction: float = Field(0.176, description="share of items in val (GMAI-MMBench: 4550/25831)")
    val_share_range: tuple[float, float] = Field((0.15, 0.25), description="the val share the split aims to end in, "
                                                                           "patients and leakage components kept whole")
    val_cover_min_items: int = Field(30, description="a task or modality with this many test items gets val items "
                                                     "too when a component can be moved without leaving the range")
    near_duplicate_bits: int = Field(4, description="pHash Hamming distance at or under which two images are one")
    max_shard_bytes: int = Field(500_000_000, description="Parquet shard size limit")
    name: str = "medbench"
    render_workers: int = Field(1, description="processes rendering the selected items (memory: one volume each), "
                                               "writing the export's image files (memory: one row group each) and "
                                               "fitting the blind readers' folds (forks of the selection step)")
    text_only_confidence: float = Field(0.75, description="flag items a text-only prior answers this confidently")
    text_only_margin: float = Field(0.05, description="the blind baseline fails when its test accuracy exceeds "
                                                      "chance by more than this overall")
    text_only_task_margin: float = Field(0.10, description="... or by more than this in a task with enough items")
    text_only_fold_by: str = Field("image_id", description="column grouping the blind baseline's folds: items of one "
                                                           "image stay together; never a dataset or template")
    key_balance_margin: float = Field(0.15, description="the most frequent key of a task (and of a dataset within "
                                                        "a task) answers at most chance + this share of its units")
    key_balance_min_units: int = Field(8, description="a dataset's task (or a task) with fewer units is left as it "
                                                      "is: a modal share over a handful of units is no prior a reader "
                                                      "could learn, and trimming it would empty small datasets")
    text_only_min_items: int = Field(30, description="tasks with fewer test items are reported, not judged")
    balance_floor: int = Field(5, description="a key with fewer units is dropped from its balance group (generated "
                                              "questions whose keys are kept equally frequent)")
    text_only_folds: int = Field(5, description="cross-fitting folds of the blind baseline")
    text_only_rounds: int = Field(8, description="rounds of dropping units the blind baseline answers (0: report only)")
    item_reviews: Path | None = Field(None, description="reviewers' item decisions (`medbench review`); "
                                                        "default <data_root>/reviews/items.yaml")


class PublishSettings(BaseModel):
    """Publishing the exported benchmark to the Hugging Face Hub (opt-in: nothing is pushed without a repo id)."""

    repo_id: str | None = Field(None, description="ORG/NAME of the dataset repository; unset: hub_push is skipped")
    private: bool = Field(False, description="create the repository private (an existing one keeps its visibility)")
    revision: str = Field("main", description="branch to commit to (created from main when missing)")
    endpoint: str | None = Field(None, description="Hub URL; default HF_ENDPOINT or https://huggingface.co")
    max_retries: int = Field(5, description="retries on 429/5xx and connection errors")
    backoff_s: float = Field(1.0, description="first wait between retries; doubles each time (capped at 30 s)")


class PipelineConfig(BaseModel):
    """Everything a run needs to know; hashed into the outputs' provenance."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 20240806
    registry: Path = PROJECT_ROOT / "sources.yaml"
    data_root: Path = PROJECT_ROOT / "data"
    id_salt: str = Field(
        "medbench-demo-salt",
        description="salt for hashing patient identifiers; set your own secret for real data",
    )
    ingest: IngestSettings = IngestSettings()
    standardize: StandardizeSettings = StandardizeSettings()
    display: DisplaySettings = DisplaySettings()
    gates: GateSettings = GateSettings()
    render: RenderSettings = RenderSettings()
    vocab: VocabSettings = VocabSettings()
    llm: LLMSettings = LLMSettings()
    questions: QuestionSettings = QuestionSettings()
    benchmark: BenchmarkSettings = BenchmarkSettings()
    publish: PublishSettings = PublishSettings()
    changes: ChangeSettings = ChangeSettings()
    annotate: "AnnotateSettings" = Field(default_factory=lambda: AnnotateSettings())
    generators: "GeneratorSettings" = Field(default_factory=lambda: GeneratorSettings())
    robustness: "RobustnessSettings" = Field(default_factory=lambda: RobustnessSettings())

    @classmethod
    def load(cls, config_file: str | Path | None = None, **overrides: object) -> "PipelineConfig":
        """Build the config from file, environment and overrides (see module docstring)."""
        data: dict[str, object] = {}
        path = config_file or os.environ.get("MEDBENCH_CONFIG")
        if path:
            with open(path, encoding="utf-8") as fh:
                data.update(yaml.safe_load(fh) or {})
        for key, env in (("registry", "MEDBENCH_REGISTRY"), ("data_root", "MEDBENCH_DATA_ROOT"),
                         ("seed", "MEDBENCH_SEED"), ("id_salt", "MEDBENCH_ID_SALT")):
            if os.environ.get(env):
                data[key] = os.environ[env]
        if os.environ.get("MEDBENCH_DATA_DIRS"):
            ingest = dict(data.get("ingest") or {})
            ingest["data_dirs"] = [*ingest.get("data_dirs", []),
                                   *(d for d in os.environ["MEDBENCH_DATA_DIRS"].split(os.pathsep) if d)]
            data["ingest"] = ingest
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(data)

    def fingerprint(self) -> str:
        """Short hash of the settings that change outputs (paths, publishing and worker counts excluded: the same
        inputs give the same files with any number of workers, so retuning them rebuilds nothing)."""
        payload = self.model_dump(mode="json", exclude={"registry": True, "data_root": True, "publish": True,
                                                        "changes": True, "ingest": {"data_dirs", "workers"},
                                                        "llm": {"cache_dir"}, "standardize": {"workers"},
                                                        "benchmark": {"render_workers"}, "annotate": {"workers"},
                                                        "generators": {"workers"}})
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


class AutomationSettings(BaseModel):
    """When the registry schedule fires (kept out of PipelineConfig: it changes no output)."""

    cron: str = Field("0 3 * * *", description="MEDBENCH_SCHEDULE_CRON: when to look for changed datasets")
    timezone: str = Field("UTC", description="MEDBENCH_SCHEDULE_TIMEZONE")

    @classmethod
    def from_env(cls) -> "AutomationSettings":
        env = {"cron": "MEDBENCH_SCHEDULE_CRON", "timezone": "MEDBENCH_SCHEDULE_TIMEZONE"}
        return cls.model_validate({k: os.environ[v] for k, v in env.items() if os.environ.get(v)})


class AnnotateSettings(BaseModel):
    """MedTrinity-style ROI annotations (pipelines/annotate): ring, word thresholds, LLM use, export."""

    enabled: bool = Field(False, description="build roi_annotations/roi_exports in `medbench build` (they cost about "
                                             "9 s of CPU per small CT volume today, so they are opt-in)")

    ring_fraction: float = Field(0.25, description="ring width around an ROI, as a fraction of sqrt(area)")
    ring_min_px: int = 2
    ring_max_px: int = 12
    contrast_floor: float = Field(1.0, description="lower bound of the pooled std in the contrast d (flat regions)")
    iso_band: float = Field(0.5, description="|d| below this is iso-intense/-dense")
    sharp_edge: float = Field(0.06, description="boundary gradient (fraction of the Sobel maximum) called sharp")
    blurred_edge: float = Field(0.02, description="below this a boundary is ill-defined")
    nearest_structures: int = Field(2, description="unrelated structures named by distance, besides touching ones")
    workers: int = 1
    use_llm: bool = Field(True, description="write an LLM paragraph for exported ROIs when a key is set")
    llm_max_rows: int = Field(200, description="at most this many LLM paragraphs per build (cost bound)")
    export_images: str = Field("exported", description="'exported': images of exported rows only; 'all': every image")


GENERATOR_NAMES = ("size_compare", "relative_position", "instance_count", "measurement", "laterality", "localisation",
                   "coarse_position", "grounding")


class GeneratorSettings(BaseModel):
    """Questions computed from masks and geometry (pipelines/candidates/generators)."""

    enabled: tuple[str, ...] = Field(GENERATOR_NAMES, description="generators to run (size_compare also makes "
                                                                     "the ratio questions)")
    max_planes: int = Field(400, description="planes per dataset and generator considered (seeded sample): "
                                             "the generators' cost stays bounded per dataset")
    per_plane: int = Field(1, description="most units one generator makes from one plane")
    tries_per_plane: int = Field(12, description="random structure sets tried per plane")
    palette: dict[str, tuple[int, int, int]] = Field(
        {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 128, 255), "yellow": (255, 255, 0)},
        description="outline colours of the marked structures, by the name a stem uses")
    size_margin: float = Field(1.2, description="the largest (smallest) area must exceed (undercut) the next by this factor")
    ratio_ladder: tuple[float, ...] = (1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0)
    diameter_ladder_mm: tuple[float, ...] = (2.5, 5, 7.5, 10, 15, 20, 30, 40, 60, 80, 120, 160, 240, 320, 480)
    area_ladder_cm2: tuple[float, ...] = (0.125, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
    area_fraction_ladder_pct: tuple[float, ...] = Field(
        (0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 100), description="share of the image a structure covers (%), asked "
                                                                "where the pixel size is unknown")
    length_fraction_ladder_pct: tuple[float, ...] = Field(
        (2.5, 5, 7.5, 10, 15, 20, 30, 40, 60, 80, 120, 160), description="longest diameter as a share of the image "
                                                                         "width (%), where the pixel size is unknown")
    bin_margin: float = Field(0.08, description="a value within this relative distance of a bin edge is not asked")
    bin_options: int = Field(4, description="consecutive bins offered")
    direction_margin_deg: float = Field(10.0, description="the direction must lie this far inside its 45° sector")
    min_distance_fraction: float = Field(0.05, description="centroids at least this share of the diagonal apart")
    localise_pad: float = Field(0.15, description="the true box is the structure's box grown by this share of its size "
                                                  "on each side (no box is drawn tight around an edge)")
    localise_margin: float = Field(0.02, description="decoys keep this share of the shorter side inside the content box")
    localise_gap: float = Field(0.01, description="boxes keep this share of the shorter side apart from each other")
    localise_max_area: float = Field(0.2, description="a structure whose box covers more of the image is not asked "
                                                      "(no room for same-size decoys)")
    localise_max_boxes: int = Field(4, description="boxes drawn at most (the true one and 2 or 3 decoys)")
    locate_max_area: float = Field(0.5, description="a structure whose box covers more of the image has no location "
                                                    "to ask (no grounding item)")
    coarse_margin: float = Field(0.02, description="a structure's box must stay this share of the side away from a "
                                                   "midline for its quadrant or half to be asked")
    mirror_pairs: bool = Field(True, description="write the consistency config: each laterality item as shown and "
                                                 "mirrored left to right, with a stem that says it was mirrored")
    workers: int = Field(1, description="processes for candidates: with 2 or more, each dataset's generators run in "
                                        "other processes while the label questions are built (same output)")


class RobustnessSettings(BaseModel):
    """Perturbed copies of benchmark items (their own export config), to measure accuracy drop and flips."""

    fraction: float = Field(0.02, description="share of test items copied (each item decided by its seeded hash, so "
                                              "one dataset's copies do not depend on the others); 0 turns them off")
    max_items: int = Field(60, description="at most this many test items are copied (the lowest hashes)")
    kinds: tuple[str, ...] = ("gaussian_noise", "gaussian_blur", "contrast", "downsample")
    severities: tuple[int, ...] = (1, 2, 3)


PipelineConfig.model_rebuild()
