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
