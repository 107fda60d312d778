"""Secrets stay out of the run folder: tokens are read from the environment by the libraries that need
them, and any of their values that would reach events.jsonl or train.log is replaced by a placeholder."""
from __future__ import annotations

import os
import re

# environment variables whose values are credentials (exact names, plus anything that looks like one)
SECRET_NAMES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_TOKEN", "WANDB_API_KEY", "OPENAI_API_KEY",
                "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "GITHUB_TOKEN")
_LOOKS_SECRET = re.compile(r"(TOKEN|SECRET|API_KEY|PASSWORD)$")


def secret_values(env: dict | None = None) -> list[str]:
    env = os.environ if env is None else env
    vals = {v for k, v in env.items() if (k in SECRET_NAMES or _LOOKS_SECRET.search(k)) and len(v) >= 6}
    return sorted(vals, key=len, reverse=True)


def redact(text: str, secrets: list[str]) -> str:
    for s in secrets:
        if s in text:
            text = text.replace(s, "***")
    return text


class RedactingStream:
    """Wraps sys.stdout/sys.stderr of the worker so that train.log never holds a token."""

    def __init__(self, stream, secrets: list[str]):
        self._s, self._secrets = stream, secrets

    def write(self, text):
        return self._s.write(redact(text, self._secrets))

    def __getattr__(self, name):
        return getattr(self._s, name)
