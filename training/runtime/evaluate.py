"""Did it work? Measurements before and after every stage, emitted as `measure` events.

For every stage, before it trains and after it saved its output:
  domain_ppl          perplexity on the held-out slice of the domain corpus: the documents the cpt stage
                      keeps out of training by content hash (`held_out_key()` in runtime/prepare.py), capped at
                      eval.max_domain_tokens. None when the recipe has no cpt stage or it holds nothing out.
  general_ppl         perplexity on a general English text (eval.general_text, default
                      recipes/general_reference.txt), capped at eval.max_general_tokens.
For sft stages also:
  heldout_pairs_loss  mean loss per trained token on the pairs the sft stage holds out (same split and the
                      same masking as training, capped at eval.max_pairs), through the chat template the stage
                      trains with; heldout_pairs_truncated counts pairs whose completion max_seq_len cut away.
  answers             greedy answers to eval.probe_prompts (eval.max_new_tokens each).
After a cpt stage the forgetting check compares general_ppl after with before: a rise above
eval.forgetting_threshold_pct percent sets forgetting_warning. lm-eval-harness tasks run only when the
recipe lists eval.lm_eval_tasks, the `lm_eval` package is installed and its task data loads offline.

A failed measurement never fails the run: the event then carries `error` and training goes on.
"""
from __future__ import annotations

import importlib.util
import math
import resource
import time
import traceback
from pathlib import Path

from training.recipe import CptStage, Recipe, SftStage


# ---------------------------------------------------------------- memory

def reset_peak_memory() -> None:
    import torch
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory() -> dict:
    """CUDA max_memory_allocated since the last reset on a GPU, else the process's peak RSS so far."""
    import torch
    if torch.cuda.is_available():
        return {"peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30, "peak_mem_kind": "cuda_max_allocated"}
    return {"peak_mem_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "peak_mem_kind": "rss_peak"}


# ---------------------------------------------------------------- pure helpers

def change_pct(before: float | None, after: float | None) -> float | None:
    if before is None or after is None or not before or not math.isfinite(before) or not math.isfinite(after):
        return None
    return (after - before) / before * 100.0


def forgetting(before: float | None, after: float | None, threshold_pct: float) -> tuple[float | None, bool]:
    """(change of general perplexity in percent, whether it rose by more than the threshold)."""
    ch = change_pct(before, after)
    return ch, ch is not None and ch > threshold_pct


def token_blocks(ids: list[int], seq_len: int, max_tokens: int) -> list[list[int]]:
    """Non-overlapping blocks of at most seq_len tokens from the first max_tokens (+1, as the first token of
    a block is context only). A trailing block shorter than 2 tokens predicts nothing and is dropped."""
    ids = ids[: max_tokens + 1]
    blocks = [ids[i:i + seq_len] for i in range(0, len(ids), seq_len)]
    return [b for b in blocks if len(b) >= 2]


# ---------------------------------------------------------------- data to score

HELDOUT_CHARS = 16 << 20  # the before/after measurements score far fewer tokens than this


def domain_texts(recipe: Recipe) -> list[str]:
    """The held-out documents of the first cpt stage (the split its training never sees)."""
    from training.runtime.prepare import heldout_texts
    st = next((s for s in recipe.stages if isinstance(s, CptStage)), None)
    if st is None or st.eval_fraction <= 0:
        return []
    return heldout_texts(st, max_chars=HELDOUT_CHARS)


def heldout_pairs(st: SftStage, cap: int) -> list[dict]:
    from training.pairs import load_pairs_strict
    from training.runtime.stages.sft import split_pairs
    pairs = load_pairs_strict(Path(st.data), st.format, st.skip_invalid_rows)
    return split_pairs(pairs.rows, st.eval_fraction)[1][:cap]


# ---------------------------------------------------------------- model side

def load_for_eval(model_path: str, adapter: str | None, precision: str, quant4: bool, trust_remote_code: bool,
                  attention: str = "auto"):
    """The model to measure, with the attention kernel training chose for it (its class decides: Gemma2 eager)."""
    import torch
    from transformers import AutoModelForCausalLM
    from training.runtime.stages.common import attn_implementation, torch_dtype

    attn = attn_implementation(None, model_path, trust_remote_code=trust_remote_code, requested=attention)
    kw = dict(trust_remote_code=trust_remote_code, dtype=torch_dtype(precision), attn_implementation=attn)
    if quant4:
        from transformers import BitsAndBytesConfig
        kw["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch_dtype(precision))
        kw["device_map"] = {"": torch.cuda.current_device()}
    model = AutoModelForCausalLM.from_pretrained(model_path, **kw)
    if not quant4 and torch.cuda.is_available():
        model.to("cuda")
    if adapter:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, adapter)
        if not quant4:  # the same function, and plain forward passes are faster than adapter ones
            model = model.merge_and_unload()
    model.eval()
    return model


def perplexity(model, tok, texts: list[str], seq_len: int, max_tokens: int) -> tuple[float | None, int]:
    """exp(mean next-token loss) over blocks of the texts joined as CPT joins documents (tokens.doc_affixes:
    BOS before each where the tokenizer adds one, its end-of-text token after); (None, 0) when there is nothing."""
    import torch
    from training.tokens import doc_affixes
    prefix, suffix = doc_affixes(tok)
    ids: list[int] = []
    for t in texts:
        ids.extend(prefix + tok(t, add_special_tokens=False, verbose=False)["input_ids"] + suffix)
        if len(ids) > max_tokens:
            break
    total_nll, n = 0.0, 0
    with torch.no_grad():
        for block in token_blocks(ids, seq_len, max_tokens):
            x = torch.tensor([block], device=model.device)
            loss = model(input_ids=x, labels=x).loss.float().item()
            total_nll += loss * (len(block) - 1)
            n += len(block) - 1
    if n == 0:
        return None, 0
    return math.exp(min(total_nll / n, 50.0)), n


def pairs_loss(model, tok, rows: list[dict], max_len: int, completion_only: bool = True) -> tuple[float | None, int, int]:
    """Mean loss per trained token on held-out pairs, masked exactly as the sft stage trains (tokens.sft_example);
    (loss, tokens, rows with no trained token left after truncation to max_len: counted, never dropped silently)."""
    import torch
    from training.tokens import sft_example
    total, n, empty = 0.0, 0, 0
    with torch.no_grad():
        for r in rows:
            ids, trained = sft_example(tok, r, max_len, completion_only)
            # the label at position i is predicted from position i-1: the first token never counts
            count = sum(trained[1:])
            if count == 0:
                empty += 1
                continue
            x = torch.tensor([ids], device=model.device)
            labels = x.clone()
            labels[0, ~torch.tensor(trained, device=model.device)] = -100
            total += model(input_ids=x, labels=labels).loss.float().item() * count
            n += count
    return (total / n if n else None), n, empty


def answers(model, tok, prompts: list[str], max_new_tokens: int) -> list[dict]:
    """Greedy answers through the chat template, stopped at the generation config's EOS, the tokenizer's EOS or
    the template's end-of-turn (tokens.stop_ids), and cut there."""
    import torch
    from training.tokens import chat_ids, cut_at_stop, stop_ids
    stops = stop_ids(tok, getattr(model, "generation_config", None))
    out = []
    with torch.no_grad():
        for p in prompts:
            ids = torch.tensor([chat_ids(tok, [{"role": "user", "content": p}], True)], device=model.device)
            gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                 do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=stops)
            new, stopped = cut_at_stop(gen[0, ids.shape[1]:].tolist(), stops)
            out.append({"prompt": p, "answer": tok.decode(new, skip_special_tokens=True).strip(), "new_tokens": len(new),
                        "stopped_by": "eos" if stopped else "max_new_tokens"})
    return out


def lm_eval(spec, model_path: str, adapter: str | None) -> dict:
    """lm-eval-harness on the recipe's tasks, or why it did not run (status: no_tasks | not_installed | failed)."""
    if importlib.util.find_spec("lm_eval") is None:
        return {"status": "not_installed"}
    if not spec.lm_eval_tasks:
        return {"status": "no_tasks"}
    try:
        import lm_eval as harness
        args = f"pretrained={model_path}" + (f",peft={adapter}" if adapter else "")
        res = harness.simple_evaluate(model="hf", model_args=args, tasks=list(spec.lm_eval_tasks),
                                      limit=spec.lm_eval_limit)
        scores = {task: {k: v for k, v in m.items() if isinstance(v, (int, float))}
                  for task, m in (res or {}).get("results", {}).items()}
        return {"status": "ok", "results": scores, "limit": spec.lm_eval_limit}
    except Exception as e:  # task data not local, no network, ...: said in the report, never fatal
        return {"status": "failed", "message": " ".join(str(e).split())[:300]}


# ---------------------------------------------------------------- the measurements of a run

class Measurer:
    """Measures every stage before and after; keeps perplexities per model so nothing is scored twice."""

    def __init__(self, recipe: Recipe, run_dir: Path, events):
        self.recipe, self.run, self.events, self.spec = recipe, run_dir, events, recipe.eval
        self._domain: list[str] | None = None
        self._general: str | None = None
        self._cache: dict[tuple, dict] = {}
        self._before: dict[str, dict] = {}
        cpt = next((s for s in recipe.stages if isinstance(s, CptStage)), None)
        self.seq_len = cpt.seq_len if cpt else 1024

    def measure(self, index: int, when: str, model_path: str, tok_src: str, adapter: str | None = None) -> dict | None:
        if not self.spec.enabled:
            return None
        st = self.recipe.stages[index]
        t0 = time.time()
        try:
            fields = self._measure(st, when, model_path, tok_src, adapter)
        except Exception as e:  # noqa: BLE001 - a measurement must never cost the run
            traceback.print_exc()
            fields = {"error": f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"}
        if when == "before":
            self._before[st.name] = fields
        else:
            b = self._before.get(st.name, {})
            fields["domain_ppl_change_pct"] = change_pct(b.get("domain_ppl"), fields.get("domain_ppl"))
            ch, warn = forgetting(b.get("general_ppl"), fields.get("general_ppl"), self.spec.forgetting_threshold_pct)
            fields["general_ppl_change_pct"] = ch
            if isinstance(st, CptStage):
                fields["forgetting_threshold_pct"] = self.spec.forgetting_threshold_pct
                fields["forgetting_warning"] = warn
        shown = adapter or model_path
        try:
            shown = str(Path(shown).relative_to(self.run))
        except ValueError:
            pass
        return self.events.emit("measure", stage=st.name, type=st.type, when=when, model=shown,
                                seconds=time.time() - t0, **fields)

    def _measure(self, st, when: str, model_path: str, tok_src: str, adapter: str | None) -> dict:
        import torch
        from training.runtime.stages.common import load_tokenizer, resolve_precision, Ctx

        precision = resolve_precision(st.precision)
        quant4 = isinstance(st, SftStage) and st.method == "qlora"
        if quant4 and precision == "fp32":
            precision = "bf16"
        ctx = Ctx(run_dir=self.run, events=self.events, stage_index=0, base_model=model_path, tokenizer_src=tok_src,
                  revision=None, trust_remote_code=self.recipe.model.trust_remote_code, seed=self.recipe.seed)
        tok = load_tokenizer(ctx)
        model = load_for_eval(model_path, adapter, precision, quant4, self.recipe.model.trust_remote_code, st.attention)
        try:
            key = (model_path, adapter, quant4)
            if key not in self._cache:
                self._cache[key] = self._perplexities(model, tok, model_path, adapter)
            fields = dict(self._cache[key])
            if isinstance(st, SftStage):
                from training.runtime.stages.sft import chat_template
                from training.tokens import fit_to_template
                tok.chat_template = chat_template(tok, st.chat_template)
                rows, _ = fit_to_template(tok, heldout_pairs(st, self.spec.max_pairs))
                fields["heldout_pairs_loss"], fields["heldout_pairs_tokens"], empty = pairs_loss(
                    model, tok, rows, st.max_seq_len, st.completion_only_loss)
                fields["heldout_pairs"] = len(rows)
                if empty:  # said, never dropped silently
                    fields["heldout_pairs_truncated"] = empty
                fields["answers"] = answers(model, tok, self.spec.probe_prompts, self.spec.max_new_tokens)
        finally:
            del model
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        return fields

    def _perplexities(self, model, tok, model_path: str, adapter: str | None) -> dict:
        if self._domain is None:
            self._domain = domain_texts(self.recipe)
        if self._general is None:
            from training.runtime.runner import GENERAL_REFERENCE
            self._general = Path(self.spec.general_text or GENERAL_REFERENCE).read_text(encoding="utf-8")
        limit = getattr(model.config, "max_position_embeddings", None) or self.seq_len
        seq = min(self.seq_len, limit)
        d_ppl, d_n = perplexity(model, tok, self._domain, seq, self.spec.max_domain_tokens)
        g_ppl, g_n = perplexity(model, tok, [self._general] if self._general else [], seq, self.spec.max_general_tokens)
        return {"domain_ppl": d_ppl, "domain_tokens": d_n, "general_ppl": g_ppl, "general_tokens": g_n,
                "eval_seq_len": seq, "lm_eval": lm_eval(self.spec, model_path, adapter)}
