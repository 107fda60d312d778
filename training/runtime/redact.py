"""Secrets stay out of the run folder: tokens are read from the environment by the libraries that need
them, and any of their values that would reach events.jsonl or train.log is replaced by a placeholder."""
from __future__ import annotations

# the secrets rule belongs to the events contract (no value of a secret ever reaches events.jsonl), so it
# lives in training/events.py; this module adds the stream wrapper for train.log and keeps its old names
from training.events import SECRET_NAMES, redact, secret_values  # noqa: F401


class RedactingStream:
    """Wraps sys.stdout/sys.stderr of the worker so that train.log never holds a token."""

    def __init__(self, stream, secrets: list[str]):
        self._s, self._secrets = stream, secrets

    def write(self, text):
        return self._s.write(redact(text, self._secrets))

    def __getattr__(self, name):
        return getattr(self._s, name)
