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

# Spellings users write -> our controlled name (matched case-insensitively, ignoring '-', '_' and spaces)
ALIASES: dict[str, str] = {
    "MR": "MRI", "MRI": "MRI", "MAGNETIC RESONANCE": "MRI", "T1": "T1 weighted MRI", "T1W": "T1 weighted MRI",
    "T1 MRI": "T1 weighted MRI", "T1CE": "T1 contrast-enhanced MRI", "T1C": "T1 contrast-enhanced MRI",
    "T1GD": "T1 contrast-enhanced MRI", "T1CE MRI": "T1 contrast-enhanced MRI", "T2": "T2 weighted MRI",
    "T2W": "T2 weighted MRI", "T2 MRI": "T2 weighted MRI", "FLAIR": "FLAIR MRI", "ADC": "ADC MRI",
    "DWI": "DWI MRI", "CT": "CT", "COMPUTED TOMOGRAPHY": "CT", "CTA": "CTA", "CT ANGIOGRAPHY": "CTA",
    "PET": "PET", "PT": "PET", "XRAY": "X-ray", "X RAY": "X-ray", "CXR": "X-ray", "CR": "X-ray", "DX": "X-ray",
    "RADIOGRAPHY": "X-ray", "MG": "Mammography", "MAMMOGRAM": "Mammography", "US": "Ultrasound",
    "ULTRASOUND": "Ultrasound", "ULTRASONOGRAPHY": "Ultrasound", "ENDOSCOPY": "Endoscopy",
    "COLONOSCOPY": "Endoscopy", "DERMOSCOPY": "Dermoscopy", "DERMATOSCOPY": "Dermoscopy",
    "FUNDUS": "Fundus Photography", "OCT": "OCT", "HISTOPATHOLOGY": "Histopathology",
    "PATHOLOGY": "Histopathology", "MICROSCOPY": "Microscopy", "EM": "Electron Microscopy",
}


def _alias_key(name: str) -> str:
    return " ".join(name.upper().replace("-", " ").replace("_", " ").split())


_ALIAS_KEYS = {_alias_key(k): v for k, v in ALIASES.items()} | {_alias_key(m): m for m in MODALITIES}


def resolve_modality(name: str) -> str | None:
    """Our controlled modality for a user's spelling ('MR', 't2', 'X-Ray'), or None when unknown."""
    return name if name in MODALITIES else _ALIAS_KEYS.get(_alias_key(str(name)))
