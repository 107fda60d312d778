"""events.jsonl: the versioned stream a run writes and every monitor reads.

One JSON object per line, always with `v` (schema version), `t` (unix time) and `event`:

  run_start    run_id, name, stages [{name, type, method}], device, pid, world_size, strategy (ddp | fsdp | deepspeed-zero3)
  stage_start  stage, index, type, method, total_steps, epochs, tokens_per_step, params, trainable_params,
               data {...; cpt with replay: replay_blocks, replay_tokens, replay_unique_blocks, replay_repeats,
               replay_fraction}
  step         stage, step, total_steps, epoch, loss, lr, grad_norm, tokens, tokens_per_s, step_time_s, eta_s
  eval         stage, step, eval_loss, perplexity; cpt stages with the forgetting watch (training/runtime/forgetting.py)
               also general_perplexity, general_perplexity_change_pct (against the stage's start)
  checkpoint   stage, step, path
  stage_end    stage, output, kind (model | adapter), train_loss, runtime_s, steps,
               peak_mem_gib, peak_mem_kind (cuda_max_allocated: since the stage started | rss_peak: process so far)
  measure      stage, type, when (before | after), model, seconds, and (training/runtime/evaluate.py):
               domain_ppl, domain_tokens (held-out corpus slice; null without a cpt stage), general_ppl,
               general_tokens, eval_seq_len, lm_eval {status: ok | no_tasks | not_installed | failed, results};
               sft stages: heldout_pairs_loss, heldout_pairs, heldout_pairs_tokens, answers [{prompt, answer}];
               when=after: domain_ppl_change_pct, general_ppl_change_pct; cpt stages also
               forgetting_threshold_pct, forgetting_warning. `error` instead when a measurement failed.
  report       path (report.md, relative to the run folder) or error; written just before `finished`
  gpu          gpus [{index, name, mem_used_gib, mem_total_gib, util_pct, temp_c, power_w}] or host {...}
  error        stage, kind, message, hint
  stopped      stage, step, reason (SIGTERM | SIGINT | budget), checkpoint, spent_usd
  finished     status (ok | failed | stopped), outputs {stage: path}, runtime_s, spent_usd
  resume       stage, done (true: finished earlier, output), else checkpoint, step, discarded [{checkpoint, why}]
  budget_warning  stage, step, spent_usd, projected_usd, cap_usd, message
  budget_reached  stage, step, spent_usd, cap_usd
  warning      kind, message
  forgetting_warning  stage, step, general_perplexity, baseline, change_pct, threshold_pct, stopping (true:
               eval.stop_on_forgetting checkpoints and stops; the `stopped` event then has reason "forgetting"), message

run_start has `resumed` (true when the run continues an earlier segment); a resumed run appends to the
same file, so a reader that wants only the latest segment starts at the last run_start.
Values of secret environment variables (HF_TOKEN and the like, training/runtime/redact.py) are never written.

Readers must ignore event types and keys they do not know (the schema only grows within a version).
The writer appends and flushes each line, so a reader tailing the file never sees half a line
except the last, which it must hold back until the newline arrives.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Iterator

SCHEMA_VERSION = 1


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
        from training.runtime.redact import secret_values
        self.path = Path(path)
        self.enabled = enabled
        self._secrets = secret_values()
        self._f = open(self.path, "a", encoding="utf-8") if enabled else None

    def emit(self, event: str, **fields: Any) -> dict:
        rec = {"v": SCHEMA_VERSION, "t": round(time.time(), 3), "event": event}
        rec.update(_clean(fields))
        if self._f is not None:
            line = json.dumps(rec, ensure_ascii=False)
            if self._secrets:
                from training.runtime.redact import redact
                line = redact(line, self._secrets)
            self._f.write(line + "\n")
            self._f.flush()
        return rec

    def close(self) -> None:
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
