"""The forgetting watch: general-text perplexity at every eval step of a CPT stage, not only after it.

At the start of training it scores the general text (eval.general_text, capped at eval.max_general_tokens)
as the baseline; at each eval step it scores it again and puts `general_perplexity` and
`general_perplexity_change_pct` into the eval metrics, so the `eval` event carries them. The first time the
rise passes eval.forgetting_threshold_pct it emits `forgetting_warning`; with eval.stop_on_forgetting it then
asks the Trainer to save a checkpoint and stop (the stage ends as stopped, reason "forgetting").

Runs on every rank (sharded models need every rank in a forward pass); only rank 0 writes events. Listed
before the EventCallback, so its keys are in the logs when that callback writes the eval event.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from transformers import TrainerCallback

from training.runtime.evaluate import change_pct, token_blocks


class ForgettingWatch(TrainerCallback):
    def __init__(self, ctx, stage, spec, general_text: str, tok):
        self.ctx, self.stage, self.spec, self.tok = ctx, stage, spec, tok
        self.text = Path(general_text).read_text(encoding="utf-8")
        self.blocks: list[list[int]] | None = None
        self.baseline: float | None = None
        self.warned = False
        self.stopped = False

    def perplexity(self, model, tok) -> float | None:
        import torch
        if self.blocks is None:
            ids = tok(self.text, add_special_tokens=False)["input_ids"]
            self.blocks = token_blocks(ids, self.stage.seq_len, self.spec.max_general_tokens)
        if not self.blocks:
            return None
        was_training = model.training
        model.eval()
        nll, n = 0.0, 0
        dev = next(model.parameters()).device
        with torch.no_grad():
            for b in self.blocks:
                x = torch.tensor([b], device=dev)
                nll += model(input_ids=x, labels=x).loss.float().item() * (len(b) - 1)
                n += len(b) - 1
        if was_training:
            model.train()
        return math.exp(min(nll / n, 50.0))

    def on_train_begin(self, args, state, control, model=None, **kw):
        # the baseline is the stage's starting model, kept beside its checkpoints so a resumed stage compares
        # with where the stage began, not with where it was stopped
        saved = self.ctx.run_dir / "checkpoints" / self.stage.name / "general_perplexity_baseline.json"
        if saved.is_file():
            self.baseline = json.loads(saved.read_text())["general_perplexity"]
            return
        self.baseline = self.perplexity(model, self.tok)
        if self.ctx.is_main and self.baseline is not None:
            saved.parent.mkdir(parents=True, exist_ok=True)
            saved.write_text(json.dumps({"general_perplexity": self.baseline, "step": state.global_step}))

    def on_log(self, args, state, control, logs=None, model=None, **kw):
        if not logs or "eval_loss" not in logs or self.baseline is None:
            return
        ppl = self.perplexity(model, self.tok)
        ch = change_pct(self.baseline, ppl)
        logs["general_perplexity"] = ppl
        logs["general_perplexity_change_pct"] = ch
        threshold = self.spec.forgetting_threshold_pct
        if ch is None or ch <= threshold or self.warned:
            return
        self.warned = True
        stop = self.spec.stop_on_forgetting
        if self.ctx.is_main:
            self.ctx.events.emit(
                "forgetting_warning", stage=self.stage.name, step=state.global_step, general_perplexity=ppl,
                baseline=self.baseline, change_pct=ch, threshold_pct=threshold, stopping=stop,
                message=(f"general-text perplexity {self.baseline:.4g} -> {ppl:.4g} ({ch:+.1f}%, threshold "
                         f"{threshold:g}%): the model is forgetting general text; "
                         + ("checkpointing and stopping (eval.stop_on_forgetting)" if stop else
                            "consider replay (stages.<cpt>.replay) or a lower learning rate")))
        if stop:
            from training.runtime.stages.common import StopFlag
            StopFlag.reason = "forgetting"
            self.stopped = True
            control.should_save = True
            control.should_training_stop = True
        return control
