"""The architecture matrix: tiny random-init models of the families users bring (tests/families.py: real config
classes, each family's tokenizer conventions), each through CPT -> LoRA SFT -> export --merge -> load -> generate,
with the masking checked on a real batch. A few steps each: the whole matrix stays around a minute or two."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.conftest import events_of, write_recipe
from tests.families import FAMILIES, build

pytestmark = pytest.mark.integration

NAMES = list(FAMILIES)
DOCS = ["The court held that the statute of limitations runs from the date the claim accrues.",
        "The defendant bears the burden of proof on each element of an affirmative defense.",
        "The plaintiff must show damages caused by the breach of contract under the law of the state.",
        "A contract signed in the state is governed by the law of the state where it was signed."] * 6
PAIRS = [{"messages": ([{"role": "system", "content": "Answer as a lawyer."}] if i % 3 == 0 else [])
          + [{"role": "user", "content": f"Who bears the burden of proof {i}?"},
             {"role": "assistant", "content": "The defendant bears the burden of proof on each element."}]}
         for i in range(16)]


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    return {n: build(n, root / n) for n in NAMES}


@pytest.fixture(scope="session")
def data(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("family-data")
    (d / "corpus").mkdir()
    for i, doc in enumerate(DOCS):
        (d / "corpus" / f"doc{i:02d}.txt").write_text(f"{doc} Case {i}.\n")
    (d / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    return {"corpus": d / "corpus", "pairs": d / "pairs.jsonl"}


# before/after measurements (four model loads per run) only where they test something: Gemma2's eager attention,
# Phi3's end-of-turn differing from its EOS
MEASURED = ("gemma2", "phi3")


def recipe(model: Path, data: dict, out: Path, measure: bool = True, **sft) -> dict:
    return {"name": "fam", "seed": 1, "output_dir": str(out), "model": {"id": str(model)},
            "hardware": {"gpu": "cpu", "price_per_gpu_hour": 0.05},
            "eval": {"enabled": measure, "probe_prompts": ["Who bears the burden?"], "max_new_tokens": 4,
                     "max_domain_tokens": 64, "max_general_tokens": 64, "max_pairs": 4},
            "stages": [{"type": "cpt", "name": "cpt", "data": [str(data["corpus"])], "seq_len": 32,
                        "learning_rate": 1e-3, "max_steps": 2, "micro_batch_size": 2, "grad_accum": 1,
                        "eval_fraction": 0.2, "logging_steps": 1, "save_steps": 100, "eval_steps": 100},
                       {"type": "sft", "name": "sft", "method": "lora", "data": str(data["pairs"]),
                        "learning_rate": 1e-3, "max_steps": 2, "micro_batch_size": 2, "grad_accum": 1,
                        "max_seq_len": 96, "eval_fraction": 0.25, "logging_steps": 1, "packing": False,
                        "save_steps": 100, "eval_steps": 100, **sft}]}


def run_in_process(data: dict, tmp: Path, resolved=None) -> Path:
    """The real worker on a real run folder, in this process (one torch import for the whole matrix)."""
    from training.recipe import Recipe
    from training.runtime import worker
    from training.runtime.runner import create_run_dir, resolve
    r = resolved or resolve(Recipe.model_validate(data))
    run = create_run_dir(r, None)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    umask = os.umask(0o022)
    os.umask(umask)
    try:
        worker.main(str(run))
    finally:
        os.umask(umask)
        for s, h in handlers.items():
            signal.signal(s, h)
    return run


class ForceAt:
    """A logits processor that makes token `tok` the only choice at new token number `at` (a trained model
    would emit its end-of-turn there; a random-init one needs the nudge)."""

    def __init__(self, prompt_len: int, at: int, tok: int):
        self.prompt_len, self.at, self.tok = prompt_len, at, tok

    def __call__(self, input_ids, scores):
        if input_ids.shape[1] - self.prompt_len == self.at:
            scores[:] = -1e9
            scores[:, self.tok] = 0.0
        return scores


@pytest.mark.parametrize("name", NAMES)
def test_family_trains_exports_and_stops_at_end_of_turn(name, models, data, tmp_path, capfd):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessorList
    from training.report.export import export

    f = FAMILIES[name]
    run = run_in_process(recipe(models[name], data, tmp_path / "runs", measure=name in MEASURED), tmp_path)
    log = capfd.readouterr().out  # what train.log holds in a detached run
    ev = events_of(run)
    errors = [e for e in ev if e["event"] == "error"]
    assert not errors, errors
    assert ev[-1]["event"] == "finished" and ev[-1]["status"] == "ok"
    if name in MEASURED:  # every before/after measurement ran (Gemma2's with eager attention: sdpa fails)
        meas = [e for e in ev if e["event"] == "measure"]
        assert len(meas) == 4 and not [m for m in meas if "error" in m], meas
        sft_after = next(m for m in meas if m["stage"] == "sft" and m["when"] == "after")
        assert sft_after["heldout_pairs_loss"] > 0 and sft_after["heldout_pairs_tokens"] > 0
        assert all("stopped_by" in a for a in sft_after["answers"])
    if name == "gemma2":
        assert "-> eager (Gemma2ForCausalLM does not support sdpa)" in log  # defaults.py resolves auto to sdpa
    warns = {e.get("kind") for e in ev if e["event"] == "warning"}
    assert ("system_folded" in warns) == f.refuses_system, warns
    assert ("no_chat_template" in warns) == (f.template is None), warns
    if f.template is None:
        assert "no chat template" in (run / "report.md").read_text()
        assert "[sft] the tokenizer has no chat template (a base model): training with the plain template" in log

    out, kind = export(run, merge=True, out=str(tmp_path / "merged"))
    assert kind == "merged"
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    eot = tok.convert_tokens_to_ids(f.end_of_turn)
    gen_eos = model.generation_config.eos_token_id
    assert eot in ([gen_eos] if isinstance(gen_eos, int) else gen_eos)
    msgs = [{"role": "user", "content": "Who bears the burden?"}]
    ids = torch.tensor([tok.apply_chat_template(msgs, add_generation_prompt=True, return_dict=True)["input_ids"]])
    force = LogitsProcessorList([ForceAt(ids.shape[1], 2, eot)])
    out_ids = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12,
                             do_sample=False, logits_processor=force)
    new = out_ids[0, ids.shape[1]:].tolist()
    assert new[-1] == eot and len(new) == 3, tok.convert_ids_to_tokens(new)


@pytest.mark.parametrize("name", NAMES)
def test_masking_on_a_real_batch_and_the_document_convention(name, models, data, tmp_path):
    """TRL's own batch trains exactly the completion and its end-of-turn; the held-out loss masks the same way;
    CPT and perplexity put BOS where the tokenizer does and join documents with end-of-text, not end-of-turn."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer
    from training.pairs import load_pairs_strict
    from training.runtime.stages.common import Ctx, load_tokenizer
    from training.runtime.stages.sft import chat_template
    from training.tokens import doc_affixes, fit_to_template, sft_example

    f = FAMILIES[name]
    ctx = Ctx(run_dir=tmp_path, events=None, stage_index=0, base_model=str(models[name]),
              tokenizer_src=str(models[name]), revision=None, trust_remote_code=False, seed=0)
    tok = load_tokenizer(ctx)
    prefix, suffix = doc_affixes(tok)
    assert tok.convert_ids_to_tokens(prefix) == ([f.bos] if f.add_bos else [])
    assert tok.convert_ids_to_tokens(suffix) == [f.end_of_text]

    tok.chat_template = chat_template(tok, "auto")
    pairs = load_pairs_strict(data["pairs"])
    rows, folded = fit_to_template(tok, pairs.rows, pairs.lines, str(data["pairs"]))
    assert (folded > 0) == f.refuses_system
    args = SFTConfig(output_dir=str(tmp_path / "o"), max_length=96, completion_only_loss=True, report_to="none",
                     use_cpu=True, per_device_train_batch_size=2, dataset_num_proc=None)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(models[name]), args=args,
                         train_dataset=Dataset.from_list(rows[:2]), processing_class=tok)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    for b in range(2):
        ids, trained = sft_example(tok, rows[b], 96)
        n = len(ids)
        labels = batch["labels"][b, :n].tolist()
        assert batch["input_ids"][b, :n].tolist() == ids
        assert [x != -100 for x in labels] == trained  # evaluate.pairs_loss masks exactly as training
        learned = [t for t, keep in zip(ids, trained) if keep]
        assert tok.convert_tokens_to_ids(f.end_of_turn) in learned  # the model learns to stop
        assert "burden of proof" in tok.decode(learned)
        assert "Who bears" not in tok.decode(learned)


def test_a_failure_inside_a_stage_leaves_error_finished_and_report(models, data, tmp_path):
    """Phi3 fuses q/k/v: LoRA on q_proj/v_proj fails inside the stage (PEFT's ValueError). Past the dry-run's
    check (forced here), the worker still ends with an error event, a report and a finished event."""
    from training.recipe import Recipe
    from training.runtime.runner import resolve
    r = resolve(Recipe.model_validate(recipe(models["phi3"], data, tmp_path / "runs")))
    r.stages = r.stages[1:]  # the sft stage only
    r.stages[0].lora.target_modules = ["q_proj", "v_proj"]
    run = run_in_process(None, tmp_path, resolved=r)
    ev = events_of(run)
    err = [e for e in ev if e["event"] == "error"]
    assert err and "q_proj" in err[0]["message"], err
    assert ev[-1]["event"] == "finished" and ev[-1]["status"] == "failed"
    assert (run / "report.md").is_file() and any(e["event"] == "report" and e.get("path") for e in ev)


def test_dry_run_catches_targets_and_positions_and_accepts_gemma3_conditional(models, data, tmp_path, capsys,
                                                                              monkeypatch):
    from training.plan.cli import main as plan_main
    from tui.cli import main as cli_main
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    typo = recipe(models["phi3"], data, tmp_path / "runs")
    typo["model"]["id"] = "org/typo-model"
    assert cli_main(["--recipe", str(write_recipe(tmp_path / "typo.yaml", typo)), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "model.id: 'org/typo-model' is not in the local Hugging Face cache" in err and "Traceback" not in err
    bad = recipe(models["phi3"], data, tmp_path / "runs", lora={"target_modules": ["q_proj", "v_proj"]})
    bad["stages"][0]["seq_len"] = 512
    assert cli_main(["--recipe", str(write_recipe(tmp_path / "bad.yaml", bad)), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "stages.1.lora.target_modules: q_proj, v_proj match no layer of this phi3 model" in err, err
    assert "qkv_proj" in err and "stages.0.seq_len: 512 is beyond the model's max_position_embeddings (256)" in err
    assert "Traceback" not in err and not (tmp_path / "runs").exists()
    ok = write_recipe(tmp_path / "ok.yaml", recipe(models["gemma3-vl"], data, tmp_path / "runs"))
    assert cli_main(["--recipe", str(ok), "--dry-run"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    # the plan reads its nested text_config (it crashed with KeyError: 'num_hidden_layers')
    assert plan_main(["--model", str(models["gemma3-vl"]), "--pairs", str(data["pairs"]), "--gpu", "H100",
                      "--json"]) == 0
    shape = json.loads(capsys.readouterr().out)["facts"]["shape"]
    assert shape["layers"] == 2 and shape["hidden"] == 32


def test_heldout_pairs_loss_counts_every_pair_when_the_prompt_is_not_a_prefix(models, data):
    """A template whose generation prompt differs from the rendered conversation (an empty think block, as
    Qwen3's adds): the old loss skipped every such pair and vanished; now it masks as training does."""
    from transformers import AutoModelForCausalLM
    from training.pairs import load_pairs_strict
    from training.runtime.evaluate import pairs_loss
    from training.runtime.stages.common import Ctx, load_tokenizer
    ctx = Ctx(run_dir=models["qwen2"], events=None, stage_index=0, base_model=str(models["qwen2"]),
              tokenizer_src=str(models["qwen2"]), revision=None, trust_remote_code=False, seed=0)
    tok = load_tokenizer(ctx)
    tok.chat_template = tok.chat_template.replace("<|im_start|>assistant\n{% endif %}",
                                                  "<|im_start|>assistant\n<think>\n\n</think>\n\n{% endif %}")
    rows = [r for r in load_pairs_strict(data["pairs"]).rows if r["prompt"][0]["role"] == "user"][:4]
    model = AutoModelForCausalLM.from_pretrained(models["qwen2"])
    loss, tokens, truncated = pairs_loss(model, tok, rows, 96)
    assert loss is not None and loss > 0 and tokens > 4 * 8 and truncated == 0
    loss, tokens, truncated = pairs_loss(model, tok, rows, 8)  # completions cut away: counted, not hidden
    assert loss is None and tokens == 0 and truncated == 4


def test_report_answers_stop_at_the_templates_end_of_turn(models):
    """Gemma2 base: generation_config stops on <eos> only, the template ends a turn with <end_of_turn>. The
    report's answers stop there (they ran on to max_new_tokens when only the tokenizer's EOS counted)."""
    from transformers import AutoModelForCausalLM
    from training.runtime.evaluate import answers
    from training.runtime.stages.common import Ctx, load_tokenizer
    ctx = Ctx(run_dir=models["gemma2"], events=None, stage_index=0, base_model=str(models["gemma2"]),
              tokenizer_src=str(models["gemma2"]), revision=None, trust_remote_code=False, seed=0)
    tok = load_tokenizer(ctx)
    model = AutoModelForCausalLM.from_pretrained(models["gemma2"], attn_implementation="eager")
    eot = tok.convert_tokens_to_ids("<end_of_turn>")
    calls = []

    def force_third(module, inputs, output):  # a trained model would say <end_of_turn> here
        calls.append(1)
        if len(calls) == 3:
            output[:, -1, :] = -1e9
            output[:, -1, eot] = 0.0
        return output

    model.lm_head.register_forward_hook(force_third)
    (a,) = answers(model, tok, ["Who bears the burden?"], max_new_tokens=10)
    assert a["stopped_by"] == "eos" and a["new_tokens"] == 2 and "end_of_turn" not in a["answer"], a
