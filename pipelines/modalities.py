"""The controlled modality list and the family each modality belongs to (drives intensity handling)."""

from __future__ import annotations

from typing import Literal

Family = Literal["ct", "mr", "pet", "photo"]

# modality -> intensity family. Photographic families keep their pixel values.
MODALITIES: dict[str, Family] = {
    "CT": "ct",
    "CTA": "ct",
    "MRI": "mr",
    "T1 weighted MRI": "mr",
    "T1 contrast-enhanced MRI": "mr",
    "T2 weighted MRI": "mr",
    "FLAIR MRI": "mr",
    "ADC MRI": "mr",
    "DWI MRI": "mr",
    "PET": "pet",
    "X-ray": "photo",
    "Mammography": "photo",
    "Ultrasound": "photo",
    "Endoscopy": "photo",
    "Dermoscopy": "photo",
    "Fundus Photography": "photo",
    "OCT": "photo",
    "Histopathology": "photo",
    "Microscopy": "photo",
    "Electron Microscopy": "photo",
}


def family(modality: str) -> Family:
    return MODALITIES[modality]


# Our modality name -> the string GMAI-MMBench used for it (its spellings kept for comparability;
# ours fix the odd ones, e.g. 'UltraSound'). Modalities GMAI never had map to the nearest of its own.
GMAI_MODALITY: dict[str, str] = {
    "CT": "CT", "CTA": "CTA", "MRI": "MRI", "T1 weighted MRI": "T1 weighted MRI",
    "T1 contrast-enhanced MRI": "T1ce MRI", "T2 weighted MRI": "T2 weighted MRI", "FLAIR MRI": "FLAIR MRI",
    "ADC MRI": "ADC MRI", "DWI MRI": "DWI MRI", "PET": "PET", "X-ray": "X-ray", "Mammography": "X-ray",
    "Ultrasound": "UltraSound", "Endoscopy": "Endoscopy", "Dermoscopy": "Dermoscopy",
    "Fundus Photography": "Fundus Photography", "OCT": "OCT", "Histopathology": "Histopathology",
    "Microscopy": "Microscopy", "Electron Microscopy": "Microscopy",
}

# Coarser groups for question templates: wording that suits every modality of a group
QUESTION_FAMILY: dict[str, str] = {
    "CT": "radiology", "CTA": "radiology", "MRI": "radiology", "T1 weighted MRI": "radiology",
    "T1 contrast-enhanced MRI": "radiology", "T2 weighted MRI": "radiology", "FLAIR MRI": "radiology",
    "ADC MRI": "radiology", "DWI MRI": "radiology", "PET": "radiology", "X-ray": "radiology",
    "Mammography": "radiology", "Ultrasound": "radiology", "Endoscopy": "endoscopy",
    "Dermoscopy": "photography", "Fundus Photography": "photography", "OCT": "photography",
    "Histopathology": "microscopy", "Microscopy": "microscopy", "Electron Microscopy": "microscopy",
}
