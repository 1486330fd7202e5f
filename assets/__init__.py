"""The Dagster layer of medbench. Importing it makes every log record of the process pass the one
redaction filter (pipelines.redact), so no stored event or log line can carry a credential."""

from pipelines.redact import install_log_redaction

install_log_redaction()
