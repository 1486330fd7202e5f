"""Questions: LLM client, template generation and validation, offline bank, option pools, QA assembly."""
