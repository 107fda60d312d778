"""Reading instruction pairs: one JSON object per line in one of three formats, detected per row:
  messages            {"messages": [{"role": "system|user|assistant", "content": "..."}, ...]}
  prompt_completion   {"prompt": "...", "completion": "..."}
  instruction         {"instruction": "...", "input": "...", "output": "..."}   (input optional)
Every valid row is normalised to the conversational prompt/completion form TRL trains on:
  {"prompt": [messages before the last assistant turn], "completion": [the last assistant turn]}
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from training.data import DataError

ROLES = {"system", "user", "assistant"}
PAIR_FORMATS = ("messages", "prompt_completion", "instruction")


def detect_pair_format(row: dict) -> str | None:
    if "messages" in row:
        return "messages"
    if "prompt" in row and "completion" in row:
        return "prompt_completion"
    if "instruction" in row and "output" in row:
        return "instruction"
    return None


def normalize_pair(row: dict, fmt: str) -> tuple[dict | None, str | None]:
    """(normalised row, None) or (None, reason)."""
    if fmt == "messages":
        msgs = row.get("messages")
        if not isinstance(msgs, list) or not msgs:
            return None, "'messages' must be a non-empty list"
        clean = []
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or not isinstance(m.get("content"), str):
                return None, f"messages[{i}] needs a string 'content'"
            if m.get("role") not in ROLES:
                return None, f"messages[{i}] has role {m.get('role')!r}; use system, user or assistant"
            clean.append({"role": m["role"], "content": m["content"]})
        last_a = max((i for i, m in enumerate(clean) if m["role"] == "assistant"), default=None)
        if last_a is None:
            return None, "no assistant message to learn from"
        if not any(m["role"] == "user" for m in clean[:last_a]):
            return None, "no user message before the last assistant message"
        if not clean[last_a]["content"].strip():
            return None, "the last assistant message is empty"
        return {"prompt": clean[:last_a], "completion": [clean[last_a]]}, None
    if fmt == "prompt_completion":
        p, c = row.get("prompt"), row.get("completion")
        if not isinstance(p, str) or not isinstance(c, str):
            return None, "'prompt' and 'completion' must be strings"
        if not p.strip() or not c.strip():
            return None, "empty prompt or completion"
        return {"prompt": [{"role": "user", "content": p}], "completion": [{"role": "assistant", "content": c}]}, None
    if fmt == "instruction":
        ins, inp, out = row.get("instruction"), row.get("input", ""), row.get("output")
        if not isinstance(ins, str) or not isinstance(out, str) or not isinstance(inp, (str, type(None))):
            return None, "'instruction', 'input' and 'output' must be strings"
        if not ins.strip() or not out.strip():
            return None, "empty instruction or output"
        user = ins if not inp else f"{ins}\n\n{inp}"
        return {"prompt": [{"role": "user", "content": user}], "completion": [{"role": "assistant", "content": out}]}, None
    return None, f"unknown format {fmt}"


@dataclass
class PairsResult:
    rows: list[dict] = field(default_factory=list)
    formats: dict[str, int] = field(default_factory=dict)
    invalid: list[tuple[int, str]] = field(default_factory=list)  # (line, reason), all of them
    lines: list[int] = field(default_factory=list)  # the file line of each row in `rows`
    blank_lines: int = 0


def read_pairs(path: Path, fmt: str = "auto") -> PairsResult:
    res = PairsResult()
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror})")
    with f:
        try:
            for ln, line in enumerate(f, 1):
                if not line.strip():
                    res.blank_lines += 1
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    res.invalid.append((ln, f"not valid JSON ({e.msg})"))
                    continue
                if not isinstance(row, dict):
                    res.invalid.append((ln, "not a JSON object"))
                    continue
                rf = detect_pair_format(row) if fmt == "auto" else fmt
                if rf is None:
                    res.invalid.append((ln, "no known fields (messages | prompt+completion | instruction+output)"))
                    continue
                norm, why = normalize_pair(row, rf)
                if norm is None:
                    res.invalid.append((ln, why))
                    continue
                res.formats[rf] = res.formats.get(rf, 0) + 1
                res.rows.append(norm)
                res.lines.append(ln)
        except UnicodeDecodeError:
            raise DataError(f"{path}: is not UTF-8 text; is this the pairs file?")
    return res


def load_pairs_strict(path: Path, fmt: str = "auto", skip_invalid: bool = False) -> PairsResult:
    res = read_pairs(path, fmt)
    if res.invalid and not skip_invalid:
        ln, why = res.invalid[0]
        more = f" (and {len(res.invalid) - 1} more bad rows)" if len(res.invalid) > 1 else ""
        raise DataError(f"{path}:{ln}: {why}{more}; fix the rows or set skip_invalid_rows: true in the sft stage")
    if not res.rows:
        raise DataError(f"{path}: no valid pairs; expected messages, prompt/completion or instruction/output rows")
    return res
