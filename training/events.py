"""events.jsonl: the versioned stream a run writes and every monitor reads.

One JSON object per line, always with `v` (schema version), `t` (unix time) and `event`. The keys each
event type may carry are EVENTS below: the one place the schema lives. `problems(record)` checks a line
against it (the tests run real tiny runs and check every line, and check each `emit(...)` call in the
source); README's events table is generated from it (`python -m training.events --markdown`).
Adding an event type or a key is one line here.

run_start has `resumed` (true when the run continues an earlier segment); a resumed run appends to the
same file, so a reader that wants only the latest segment starts at the last run_start.
Values of secret environment variables (HF_TOKEN and the like, SECRET_NAMES below) are never written.

Readers must ignore event types and keys they do not know (the schema only grows within a version).
The writer appends and flushes each line, so a reader tailing the file never sees half a line
except the last, which it must hold back until the newline arrives.
"""
from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any, Iterator

SCHEMA_VERSION = 1
COMMON = ("v", "t", "event")

# event type -> {key: what it holds}. Every key is optional unless a reader needs it; none other may appear.
EVENTS: dict[str, dict[str, str]] = {
    "run_start": {"run_id": "the run folder's name", "name": "recipe name", "pid": "worker pid",
                  "device": "cuda device name or cpu", "resumed": "true when continuing an earlier segment",
                  "world_size": "training processes", "strategy": "ddp | fsdp | deepspeed-zero3",
                  "stages": "[{name, type, method}]"},
    "gpu": {"gpus": "[{index, name, mem_used_gib, mem_total_gib, util_pct, temp_c, power_w}] of the run's machine",
            "host": "{cpu_pct, ram_used_gib, ram_total_gib, cores} when it has no NVIDIA GPU",
            "note": "why there is no GPU sample", "hostname": "the machine the run is on"},
    "stage_start": {"stage": "stage name", "index": "0-based", "type": "cpt | sft", "method": "full | lora | qlora",
                    "base": "model the stage starts from", "total_steps": "optimizer steps",
                    "steps_per_epoch": "", "epochs": "", "tokens_per_step": "cpt: tokens in one optimizer step",
                    "precision": "compute dtype: bf16 | fp16 | fp32",
                    "master_weights": "full training: fp32 | bf16_kahan (null for LoRA/QLoRA)",
                    "optimizer": "the optimizer class the stage trains with", "params": "parameters", "trainable_params": "",
                    "data": "what the stage reads: documents/pairs, tokens, duplicates dropped, eval split (cpt: "
                            "train_/eval_ documents, tokens, blocks; duplicates_dropped, exact_dropped, near_dropped, "
                            "dedup, dropped_tokens, files, skipped_files, cached; with replay: replay_blocks, replay_tokens, "
                            "replay_unique_blocks, replay_repeats, replay_fraction)"},
    "step": {"stage": "", "step": "", "total_steps": "", "epoch": "", "loss": "training loss", "lr": "",
             "grad_norm": "", "tokens": "tokens so far", "tokens_per_s": "", "step_time_s": "",
             "elapsed_s": "since the stage started", "eta_s": "stage time left at this pace"},
    "eval": {"stage": "", "step": "", "eval_loss": "", "perplexity": "exp(eval_loss)",
             "general_perplexity": "cpt with the forgetting watch (training/runtime/forgetting.py)",
             "general_perplexity_change_pct": "against the stage's start"},
    "checkpoint": {"stage": "", "step": "", "path": "relative to the run folder"},
    "stage_end": {"stage": "", "output": "relative path", "kind": "model | adapter", "train_loss": "mean",
                  "last_loss": "last logged", "steps": "", "runtime_s": "", "peak_mem_gib": "",
                  "peak_mem_kind": "cuda_max_allocated (since the stage started) | rss_peak (process so far)"},
    "measure": {"stage": "", "type": "cpt | sft", "when": "before | after", "model": "what was measured",
                "seconds": "", "domain_ppl": "held-out corpus slice (null without a cpt stage)", "domain_tokens": "",
                "general_ppl": "general reference text", "general_tokens": "", "eval_seq_len": "",
                "lm_eval": "{status: ok | no_tasks | not_installed | failed, results}",
                "heldout_pairs_loss": "sft stages", "heldout_pairs": "", "heldout_pairs_tokens": "",
                "heldout_pairs_truncated": "pairs whose completion max_seq_len cut away (absent when none)",
                "answers": "[{prompt, answer, new_tokens, stopped_by (eos | max_new_tokens)}]", "domain_ppl_change_pct": "when=after",
                "general_ppl_change_pct": "when=after", "forgetting_threshold_pct": "cpt, when=after",
                "forgetting_warning": "cpt, when=after", "error": "instead of the numbers when a measurement failed"},
    "report": {"path": "report.md, relative to the run folder", "error": "why no report was written"},
    "error": {"stage": "", "kind": "bad_input | oom | ... (training/runtime/failures.py)", "message": "",
              "hint": "what to do"},
    "stopped": {"stage": "", "step": "", "reason": "SIGTERM | SIGINT | budget | forgetting | signal", "checkpoint": "",
                "spent_usd": ""},
    "finished": {"status": "ok | failed | stopped", "outputs": "{stage: path}", "runtime_s": "this segment",
                 "spent_usd": "every segment so far"},
    "resume": {"stage": "", "done": "true: finished earlier", "output": "when done", "checkpoint": "else",
               "step": "", "discarded": "[{checkpoint, why}]"},
    "budget_warning": {"stage": "", "step": "", "spent_usd": "", "projected_usd": "", "cap_usd": "", "message": ""},
    "budget_reached": {"stage": "", "step": "", "spent_usd": "", "cap_usd": ""},
    "warning": {"kind": "trust_remote_code | no_chat_template (a base model trained with the plain template) | "
                        "system_folded (pairs whose system text went into the first user turn) | tracker (how a "
                        "report_to tracker logs, e.g. wandb offline) | replay_is_general_text",
                "stage": "", "message": "", "pairs": "system_folded: how many pairs"},
    "forgetting_warning": {"stage": "", "step": "", "general_perplexity": "", "baseline": "at the stage's start",
                           "change_pct": "", "threshold_pct": "eval.forgetting_threshold_pct",
                           "stopping": "true: eval.stop_on_forgetting checkpoints and stops (stopped.reason "
                                       "forgetting)", "message": ""},
    "prepare": {"stage": "cpt stages, about once a second before stage_start (training/runtime/prepare.py)",
                "phase": "dedup | tokenize | done | cached", "fraction": "0-1 of the whole data step",
                "bytes_done": "corpus bytes read in this pass", "bytes_total": ""},
}


# environment variables whose values are credentials (exact names, plus anything that looks like one);
# their values are never written to events.jsonl (and, through training/runtime/redact.py, to train.log)
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


def problems(rec: dict) -> list[str]:
    """What in one events.jsonl record is outside the contract (empty: it is inside)."""
    out = [f"missing {k}" for k in COMMON if k not in rec]
    allowed = EVENTS.get(rec.get("event"))
    if allowed is None:
        return out + [f"unknown event type {rec.get('event')!r}"]
    return out + [f"{rec['event']}: unknown key {k!r}" for k in rec if k not in COMMON and k not in allowed]


def markdown_table() -> str:
    """README's events table, generated from EVENTS."""
    rows = ["| event | keys |", "|---|---|"]
    for name, keys in EVENTS.items():
        rows.append(f"| `{name}` | " + ", ".join(f"`{k}`" + (f" ({d})".replace("|", "\\|") if d else "") for k, d in keys.items()) + " |")
    return "\n".join(rows)


def _clean(v: Any) -> Any:
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)  # JSON has no NaN; keep it visible
        return float(f"{v:.6g}")
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


class EventWriter:
    def __init__(self, path: str | os.PathLike, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        self._secrets = secret_values()
        self._f = open(self.path, "a", encoding="utf-8") if enabled else None
        import threading
        self._lock = threading.Lock()

    def emit(self, event: str, **fields: Any) -> dict:
        rec = {"v": SCHEMA_VERSION, "t": round(time.time(), 3), "event": event}
        rec.update(_clean(fields))
        with self._lock:  # the machine sampler emits from its own thread
            self._write(rec)
        return rec

    def _write(self, rec: dict) -> None:
        if self._f is not None:
            line = json.dumps(rec, ensure_ascii=False)
            if self._secrets:
                line = redact(line, self._secrets)
            self._f.write(line + "\n")
            self._f.flush()

    def close(self) -> None:
        with self._lock:
            if self._f is not None:
                self._f.close()
                self._f = None


def read_events(path: str | os.PathLike) -> list[dict]:
    out = []
    p = Path(path)
    if not p.exists():
        return out
    with open(p, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


class EventTail:
    """Incremental reader: call poll() repeatedly; it returns the complete new lines since last time."""

    def __init__(self, path: str | os.PathLike, offset: int = 0):
        self.path = Path(path)
        self._pos = offset
        self._buf = ""

    def poll(self) -> list[dict]:
        try:
            with open(self.path, encoding="utf-8") as f:
                f.seek(self._pos)
                chunk = f.read()
                self._pos = f.tell()
        except FileNotFoundError:
            return []
        if not chunk:
            return []
        self._buf += chunk
        *lines, self._buf = self._buf.split("\n")
        out = []
        for line in lines:
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        return out

    def follow(self, interval: float = 0.5, stop=lambda: False) -> Iterator[dict]:
        while True:
            got = self.poll()
            yield from got
            if not got:
                if stop():
                    yield from self.poll()
                    return
                time.sleep(interval)


if __name__ == "__main__":
    import sys
    if sys.argv[1:] == ["--markdown"]:
        print(markdown_table())
