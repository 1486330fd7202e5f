"""LLM tag suggestions for labels the rules cannot tag (through the cached template client)."""

from __future__ import annotations

from pipelines.llm import (
    CallRecord,
    LLMClient,
    LLMResponseError,
    LLMUnavailable,
    request_hash,
)


def llm_suggester(client: LLMClient, records: list[CallRecord]):
    """A ``Suggest`` callable: asks the model to pick one allowed value; None when it cannot."""

    def suggest(label: str, field: str, allowed: tuple[str, ...], ctx: dict) -> str | None:
        schema = {"type": "object", "additionalProperties": False, "required": ["value"],
                  "properties": {"value": {"type": "string", "enum": list(allowed)}}}
        messages = [
            {"role": "system", "content": "You classify labels of medical imaging datasets. Reply with JSON only."},
            {"role": "user", "content": f"Label: '{label}' (modality {ctx.get('modality')}, MeSH {ctx.get('mesh_id') or 'none'}, "
                                        f"tree numbers {ctx.get('tree_numbers') or 'none'}). Choose its {field.replace('_', ' ')} "
                                        f"from: {', '.join(allowed)}."}]
        try:
            data, record = client.complete_json(messages, f"label_{field}", schema)
        except LLMUnavailable:
            return None
        except LLMResponseError as exc:  # counted: a failed call is never silent
            records.append(CallRecord(request_hash(client.model, messages, {}), client.model, False, error=str(exc)))
            return None
        records.append(record)
        value = data.get("value")
        return value if value in allowed else None

    return suggest
