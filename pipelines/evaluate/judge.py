"""An LLM judge for replies no extraction rule could read, through the project's cached OpenAI-compatible client.

The prompt is VLMEvalKit's matching prompt (``build_prompt`` of its multiple_choice utils); the reply is
constrained to a JSON object whose ``choice`` is one of the item's letters or Z (no option matches). The
client caches every answer by (model, messages, parameters), so a re-evaluation asks nothing and gives the
same choices; temperature is 0. A judge that fails to answer leaves the item unanswered (never a random
letter, as VLMEvalKit falls back to).
"""

from __future__ import annotations

from pipelines.config import LLMSettings
from pipelines.llm import LLMClient, usage_summary

PROMPT = (
    "You are an AI assistant who will help me to match an answer with several options of a single-choice question. "
    "You are provided with a question, several options, and an answer, and you need to find which option is most "
    "similar to the answer. If the meaning of all options are significantly different from the answer, output Z. "
    "Your should output a single uppercase character in A, B, C, D (if they are valid options), and Z. \n"
    "Example 1: \n"
    "Question: What is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat D. dog\n"
    "Answer: a cute teddy bear\nYour output: A\n"
    "Example 2: \n"
    "Question: What is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat D. dog\n"
    "Answer: Spider\nYour output: Z\n"
    "Example 3: \n"
    "Question: {question}?\nOptions: {options}\nAnswer: {prediction}\nYour output: ")


def _schema(letters: list[str]) -> dict:
    return {"type": "object", "additionalProperties": False, "required": ["choice"],
            "properties": {"choice": {"type": "string", "enum": [*letters, "Z"]}}}


class Judge:
    """Maps replies to letters with an LLM; ``describe()`` goes into the report."""

    def __init__(self, settings: LLMSettings, api_key: str | None = None):
        self.client = LLMClient(settings.model_copy(update={"temperature": 0.0}), api_key=api_key)
        self.client.require_key()
        self.records = []

    def choose(self, requests: list[tuple[str, dict[str, str], str]]) -> list[str | None]:
        """One letter (or None when the judge failed) per (question, options, reply)."""
        batch = []
        for question, options, reply in requests:
            text = PROMPT.format(question=question, prediction=reply,
                                 options=" ".join(f"{k}. {v}" for k, v in options.items()))
            batch.append(([{"role": "user", "content": text}], "choice", _schema(list(options))))
        results = self.client.map_json(batch)
        self.records += [rec for _, rec in results]
        return [(data or {}).get("choice") for data, _ in results]

    def describe(self) -> dict:
        """What the report records: the same for a first run and a cached re-run (no call counts)."""
        return {"model": self.client.model, "base_url": self.client.settings.base_url, "temperature": 0.0,
                "prompt": PROMPT}

    def usage(self) -> dict:
        """Requests, API calls, cache hits, errors, tokens and cost of this evaluation's judge calls."""
        return {k: v for k, v in usage_summary(self.records).items() if k != "calls"}
