"""The text a model is shown for one exported item, in VLMEvalKit's default MCQ wording.

One builder serves `medbench run-model`, the lmms-eval task and the evaluation report (which records the
templates), so a score from any of them was obtained with the same words. Single-answer items use
VLMEvalKit's ``ImageMCQDataset.build_prompt`` text; multi-answer items add GMAI-MMBench's instruction for
several letters; grounding items (no options) ask for a normalized box unless their stem already does.
"""

from __future__ import annotations

# This module is embedded verbatim in the exported lmms-eval task (utils.py), where the project is not installed:
# it imports nothing of the project, so it holds its own copy of the option letters (pipelines.records.LETTERS;
# a test keeps the two equal).
LETTERS = "ABCDE"

SINGLE_INSTRUCTION = "Please select the correct answer from the options above. \n"
MULTI_INSTRUCTION = ("Please select all correct answers from the options above. Note that there is more than one "
                     "correct answer. Please output the answer options directly, separated by commas. For example: A,B\n")
BOX_INSTRUCTION = ("Answer with the bounding box of the asked structure as [x0, y0, x1, y1], coordinates as "
                   "fractions (0 to 1) of the image width and height, origin at the top left.\n")
TEMPLATES = {
    "single": "Question: {question}\nOptions:\n{letter}. {option}\n...\n" + SINGLE_INSTRUCTION,
    "multi": "Question: {question}\nOptions:\n{letter}. {option}\n...\n" + MULTI_INSTRUCTION,
    "box": "Question: {question}\n" + BOX_INSTRUCTION + "(the instruction only where the stem does not state the "
           "[x0, y0, x1, y1] format)\n",
}


def present_options(row: dict) -> dict[str, str]:
    """The item's options by letter (empty and missing cells are not options)."""
    out = {}
    for c in LETTERS:
        v = row.get(c)
        if isinstance(v, str) and v != "":
            out[c] = v
    return out


def build_prompt(row: dict) -> str:
    """The prompt text for one item (question, options, instruction); the image is sent before it."""
    options = present_options(row)
    text = f"Question: {row['question']}\n"
    if not options:  # grounding: the stem may already state the box format; say it once
        return text if "[x0, y0, x1, y1]" in str(row["question"]) else text + BOX_INSTRUCTION
    text += "Options:\n" + "".join(f"{k}. {v}\n" for k, v in options.items())
    return text + (MULTI_INSTRUCTION if bool(row.get("multi_answer")) else SINGLE_INSTRUCTION)
