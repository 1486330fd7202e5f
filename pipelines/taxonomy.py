"""GMAI-MMBench's tag vocabularies: 18 clinical VQA tasks, 18 departments (+ N/A), 4 granularities."""

from __future__ import annotations

TASKS = (
    "Attribute Recognition", "Blood Vessels Recognition", "Bone", "Cell Recognition", "Counting",
    "Disease Diagnosis", "Image Quality Grading", "Microorganism Recognition", "Muscle", "Nervous Tissue",
    "Organ Recognition - Abdomen", "Organ Recognition - Head and Neck", "Organ Recognition - Pelvic",
    "Organ Recognition - Thorax", "Severity Grading", "Surgeon Action Recognition",
    "Surgical Instrument Recognition", "Surgical Workflow Recognition",
)
TASK_ABBREVIATIONS = {
    "Attribute Recognition": "AR", "Blood Vessels Recognition": "BVR", "Bone": "B", "Cell Recognition": "CR",
    "Counting": "C", "Disease Diagnosis": "DD", "Image Quality Grading": "IQG",
    "Microorganism Recognition": "MR", "Muscle": "M", "Nervous Tissue": "NT",
    "Organ Recognition - Abdomen": "OR-A", "Organ Recognition - Head and Neck": "OR-HN",
    "Organ Recognition - Pelvic": "OR-P", "Organ Recognition - Thorax": "OR-T", "Severity Grading": "SG",
    "Surgeon Action Recognition": "SAR", "Surgical Instrument Recognition": "SIR",
    "Surgical Workflow Recognition": "SWR",
}
# tasks of the geometric question generators (pipelines/candidates/generators): beyond GMAI-MMBench's 18
GENERATED_TASKS = ("Size Comparison", "Relative Position", "Instance Counting", "Measurement", "Laterality",
                   "Localization", "Grounding")
TASK_ABBREVIATIONS.update({"Size Comparison": "SC", "Relative Position": "RP", "Instance Counting": "IC",
                           "Measurement": "ME", "Laterality": "LAT", "Localization": "LOC", "Grounding": "GR"})
DEPARTMENTS = (
    "Cardiovascular Surgery", "Dermatology", "Endocrinology", "Gastroenterology and Hepatology",
    "General Surgery", "Hematology", "Infectious Diseases", "Laboratory Medicine and Pathology",
    "Nephrology and Hypertension", "Neurosurgery", "Obstetrics and Gynecology", "Oncology (Medical)",
    "Ophthalmology", "Orthopedic Surgery", "Otolaryngology (ENT)/Head and Neck Surgery",
    "Pulmonary Medicine", "Sports Medicine", "Urology", "N/A",
)
GRANULARITIES = ("image", "box", "mask", "contour")
GRANULARITY_NAMES = {"image": "Image level", "box": "Box level", "mask": "Mask level", "contour": "Contour level"}
SEMANTIC_TYPES = ("organ", "lesion", "cell", "microorganism", "instrument", "phase", "action", "grade",
                  "count", "attribute", "quality")
# region kind -> the granularities a region of that kind is asked at
KIND_GRANULARITIES = {"image": ("image",), "box": ("box",), "mask": ("mask", "contour")}
