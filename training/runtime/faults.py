"""Fault injection for tests and the fault drill: TUNE_WIZARD_FAULT="KIND@STAGE:STEP[,KIND@STAGE:STEP...]".

  sigterm@cpt:3   the worker sends itself SIGTERM at the end of cpt step 3 (the real graceful-stop path)
  sigkill@sft:2   the worker kills itself with SIGKILL at the end of sft step 2 (a hard kill, no cleanup)
  enospc@cpt:4    saving the checkpoint of cpt step 4 fails with "No space left on device" half-way
                  (the weights are written, the optimizer file is cut short), as on a full disk

Unset in normal use; nothing else in the project reads it.
"""
from __future__ import annotations

import os

ENV = "TUNE_WIZARD_FAULT"
KINDS = ("sigterm", "sigkill", "enospc")


def parse(spec: str | None) -> list[tuple[str, str, int]]:
    """[(kind, stage, step)]; malformed items raise ValueError naming them."""
    out = []
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        try:
            kind, rest = item.split("@", 1)
            stage, step = rest.rsplit(":", 1)
            n = int(step)
        except ValueError:
            raise ValueError(f"{ENV}: '{item}' is not KIND@STAGE:STEP")
        if kind not in KINDS:
            raise ValueError(f"{ENV}: unknown fault '{kind}' (known: {', '.join(KINDS)})")
        out.append((kind, stage, n))
    return out


def for_stage(stage: str) -> dict[int, list[str]]:
    """{step: [kinds]} of the faults planned for this stage in this process."""
    plan: dict[int, list[str]] = {}
    for kind, st, step in parse(os.environ.get(ENV)):
        if st == stage:
            plan.setdefault(step, []).append(kind)
    return plan
