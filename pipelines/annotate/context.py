"""The metadata layer of an annotation: what the registry, the label map and the sample's own labels say
about the image (MedTrinity's "metadata integration"), never what they do not say.

- sequence: from the registry's modality when it names one ('T2 weighted MRI'); else not recorded;
- view: the slicing plane of a volume; a 2D image's view is not recorded by any of our readers;
- diagnosis: the labels of the image that are findings (semantic type lesion: an image-level class such as
  'pneumonia', or a lesion outlined on the plane);
- body region: the vocabulary's organ task of a label on the plane, else the label map's `context`.
"""

from __future__ import annotations

SEQUENCES = {"T1 weighted MRI": "T1-weighted", "T1 contrast-enhanced MRI": "contrast-enhanced T1-weighted",
             "T2 weighted MRI": "T2-weighted", "FLAIR MRI": "FLAIR", "ADC MRI": "apparent diffusion coefficient map",
             "DWI MRI": "diffusion-weighted", "CTA": "CT angiography"}
VIEWS = ("axial", "coronal", "sagittal")


def sequence(modality: str) -> str | None:
    return SEQUENCES.get(modality)


def view(axis: str | None) -> str | None:
    return axis if axis in VIEWS else None


REGION_NOUNS = {"pelvic": "pelvis"}  # the vocabulary's organ tasks name some regions by an adjective
VIEW_MODALITIES = {"X-ray", "Mammography"}  # projection images: their view (PA, AP, lateral...) matters


def region(task_regions: list[str]) -> str:
    return ", ".join(REGION_NOUNS.get(r, r) for r in task_regions)


def context_text(modality: str, axis: str | None, body_region: str | None, diagnosis: list[str]) -> str:
    """One sentence of the recorded metadata: "Metadata: MRI, axial plane, sequence not recorded; anatomical
    region: chest; diagnosis label: pneumonia." Absent facts are said to be absent, not guessed."""
    seq = sequence(modality)
    v = f"{view(axis)} plane" if view(axis) else ("view not recorded" if modality in VIEW_MODALITIES else None)
    parts = [modality, v, f"{seq} sequence" if seq else ("sequence not recorded" if "MRI" in modality else None)]
    text = "Metadata: " + ", ".join(p for p in parts if p)
    if body_region:
        text += f"; anatomical region: {body_region}"
    if diagnosis:
        text += f"; diagnosis label{'s' if len(diagnosis) > 1 else ''}: {', '.join(diagnosis)}"
    else:
        text += "; no diagnosis label"
    return text + "."
