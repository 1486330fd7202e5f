"""Audits that decide whether a benchmark can be trusted, judged from what was exported."""
