"""The fast-by-default layer (training/runtime/defaults.py): the batch-size chooser at its boundaries, and which
settings a recipe gets on which machine, with an explicit recipe key always winning."""
from __future__ import annotations

import pytest

from training.runtime.defaults import CONTEXT_GIB, SDPA_PACKED_ROW_TOKENS, Machine, apply_defaults, choose_batch, peak_gib
from training.recipe_load import validate_data
from training.plan.shapes import KNOWN, from_config

LLAMA_8B = KNOWN["llama-3.1-8b"]
LLAMA_1B = KNOWN["llama-3.2-1b"]
CPU = Machine(cuda=False, cpus=2)
H100 = Machine(cuda=True, gpu_name="NVIDIA H100 80GB HBM3", gpu_mem_gib=79.6, liger=True, flash_attn=False, cpus=16)
H100_FLASH = Machine(cuda=True, gpu_name="NVIDIA H100 80GB HBM3", gpu_mem_gib=79.6, liger=True, flash_attn=True)
RTX = Machine(cuda=True, gpu_name="NVIDIA GeForce RTX 4090", gpu_mem_gib=24.0, liger=False, flash_attn=False)


def linear(per_row: float, static: float = 0.0, ckpt_factor: float = 0.25):
    """A stand-in estimate: static GiB + per_row GiB per micro-batch row (a quarter of it with checkpointing)."""
    return lambda micro, ckpt: static + micro * per_row * (ckpt_factor if ckpt else 1.0)


# ---------------------------------------------------------------- choose_batch

def test_whole_batch_in_one_micro_batch_when_it_fits():
    c = choose_batch(16, linear(1.0), budget_gib=16.0)
    assert (c.micro, c.accum, c.checkpointing, c.fits) == (16, 1, False, True)


def test_largest_dividing_micro_batch_that_fits():
    c = choose_batch(16, linear(1.0), budget_gib=15.9)  # 16 rows need 16 GiB: 8 is the next divisor
    assert (c.micro, c.accum, c.checkpointing) == (8, 2, False)
    c = choose_batch(12, linear(1.0), budget_gib=5.5)   # divisors of 12: 12, 6, 4, ...
    assert (c.micro, c.accum) == (4, 3)
    assert c.micro * c.accum == 12


def test_checkpointing_only_when_not_even_one_row_fits_without_it():
    c = choose_batch(8, linear(4.0, static=10.0), budget_gib=14.0)  # one row: exactly 14 GiB, fits
    assert (c.micro, c.checkpointing) == (1, False)
    c = choose_batch(8, linear(4.0, static=10.0), budget_gib=13.9)  # now it needs recomputation
    assert c.checkpointing and c.fits
    assert (c.micro, c.accum) == (2, 4)  # 10 + 2 * 1.0 = 12 fits, 10 + 4 * 1.0 = 14 does not


def test_nothing_fits_says_so():
    c = choose_batch(4, linear(1.0, static=100.0), budget_gib=80.0)
    assert (c.micro, c.accum, c.checkpointing, c.fits) == (1, 4, True, False)


def test_micro_batch_cap():
    c = choose_batch(64, linear(0.1), budget_gib=80.0, max_micro=16)
    assert (c.micro, c.accum) == (16, 4)


def test_estimate_grows_with_rows_and_shrinks_with_checkpointing_and_fused_loss():
    a = peak_gib(LLAMA_1B, "full", 4, 2048, False, False)
    assert peak_gib(LLAMA_1B, "full", 8, 2048, False, False) > a
    assert peak_gib(LLAMA_1B, "full", 4, 2048, True, False) < a
    assert peak_gib(LLAMA_1B, "full", 4, 2048, False, True) < a
    assert peak_gib(LLAMA_8B, "qlora", 4, 1024, False, True) < peak_gib(LLAMA_8B, "lora", 4, 1024, False, True)


# ---------------------------------------------------------------- apply_defaults

def recipe(*stages):
    return validate_data({"name": "t", "model": {"id": "m"}, "stages": list(stages)}, check_paths=False)


def by_key(out, stage):
    return {d["key"]: d for d in out if d["stage"] == stage}


def test_cpu_defaults_and_reasons():
    r = recipe({"type": "cpt", "data": ["x"]}, {"type": "sft", "data": "p.jsonl"})
    out = apply_defaults(r, CPU, None)
    cpt, sft = r.stages
    assert (cpt.attention, cpt.liger_kernel, cpt.packing, cpt.gradient_checkpointing) == ("sdpa", False, True, False)
    assert (sft.attention, sft.liger_kernel, sft.packing, sft.group_by_length) == ("sdpa", False, False, True)
    assert (sft.micro_batch_size, sft.grad_accum) == (4, 1)
    for d in out:
        assert d["reason"], d
    run_wide = by_key(out, None)
    assert run_wide["dataloader_num_workers"]["value"] == 0 and run_wide["optim"]["value"] == "adamw_torch"


def test_explicit_keys_win():
    r = recipe({"type": "sft", "data": "p.jsonl", "packing": False, "micro_batch_size": 2, "attention": "eager",
                "liger_kernel": False, "gradient_checkpointing": True})
    out = apply_defaults(r, H100, LLAMA_1B)
    st = r.stages[0]
    assert (st.packing, st.micro_batch_size, st.grad_accum, st.attention, st.liger_kernel,
            st.gradient_checkpointing) == (False, 2, 1, "eager", False, True)
    got = by_key(out, "sft")
    for key in ("packing", "micro_batch_size", "attention", "liger_kernel", "gradient_checkpointing"):
        assert got[key]["reason"] == "set in the recipe"
    assert got["grad_accum"]["value"] == 1 and got["grad_accum"]["reason"].startswith("kept")


def test_cuda_with_liger_and_flash_attention():
    r = recipe({"type": "sft", "data": "p.jsonl", "max_seq_len": 1024})
    apply_defaults(r, H100_FLASH, LLAMA_1B)
    st = r.stages[0]
    assert (st.attention, st.liger_kernel, st.packing, st.group_by_length) == ("flash_attention_2", True, True, False)
    assert st.micro_batch_size * st.grad_accum == 4


def test_sdpa_caps_the_flattened_packed_row():
    r = recipe({"type": "sft", "data": "p.jsonl", "max_seq_len": 4096, "grad_accum": 1, "packing": True})
    r.stages[0].model_fields_set.discard("grad_accum")
    r.stages[0].micro_batch_size = 8
    r.stages[0].model_fields_set.discard("micro_batch_size")
    apply_defaults(r, H100, LLAMA_1B)
    st = r.stages[0]
    assert st.micro_batch_size * 4096 <= SDPA_PACKED_ROW_TOKENS and st.micro_batch_size * st.grad_accum == 8


def test_8b_full_on_an_80gib_card_takes_kahan_weights_and_checkpointing():
    r = recipe({"type": "cpt", "data": ["x"], "seq_len": 2048})
    out = apply_defaults(r, H100, LLAMA_8B)
    st = r.stages[0]
    budget = H100.gpu_mem_gib - CONTEXT_GIB
    # fp32 master weights (18 bytes per parameter, ~135 GiB) cannot fit: bf16 + Kahan (10 bytes, ~75 GiB)
    assert peak_gib(LLAMA_8B, "full", 1, 2048, True, True, master="fp32") > budget
    assert st.master_weights == "bf16_kahan" and "fp32 master weights need" in by_key(out, "cpt")["master_weights"]["reason"]
    # and even beside those, one row needs recomputation
    assert peak_gib(LLAMA_8B, "full", 1, 2048, False, True, master="bf16_kahan") > budget
    assert st.gradient_checkpointing and st.micro_batch_size * st.grad_accum == 4
    assert peak_gib(LLAMA_8B, "full", st.micro_batch_size, 2048, True, True, master="bf16_kahan") <= budget
    assert "micro-batch 1 does not fit" in by_key(out, "cpt")["gradient_checkpointing"]["reason"]
    assert "bf16_kahan master weights" in by_key(out, "cpt")["micro_batch_size"]["reason"]


def test_8b_full_on_a_141gib_card_keeps_fp32_master_weights():
    h200 = Machine(cuda=True, gpu_name="NVIDIA H200", gpu_mem_gib=139.8, liger=True, flash_attn=False, cpus=16)
    r = recipe({"type": "cpt", "data": ["x"], "seq_len": 2048, "micro_batch_size": 1, "grad_accum": 4})
    out = apply_defaults(r, h200, LLAMA_8B)
    assert r.stages[0].master_weights == "fp32" and "every update is kept" in by_key(out, "cpt")["master_weights"]["reason"]


def test_1b_cpt_on_an_80gib_card_keeps_the_batch_whole():
    small = recipe({"type": "cpt", "data": ["x"], "seq_len": 2048})
    apply_defaults(small, H100, LLAMA_1B)
    st = small.stages[0]
    assert (st.micro_batch_size, st.grad_accum, st.gradient_checkpointing) == (4, 1, False)
    assert peak_gib(LLAMA_1B, "full", 4, 2048, False, True) <= H100.gpu_mem_gib - CONTEXT_GIB


def test_a_step_that_cannot_fit_is_flagged():
    r = recipe({"type": "cpt", "data": ["x"], "seq_len": 2048})
    out = apply_defaults(r, RTX, LLAMA_8B)  # 8B full weights + AdamW on 24 GiB
    assert "NOT fitting" in by_key(out, "cpt")["micro_batch_size"]["reason"]


def test_small_card_splits_the_batch_and_keeps_tokens_per_step():
    r = recipe({"type": "sft", "data": "p.jsonl", "method": "lora", "max_seq_len": 2048})
    out = apply_defaults(r, RTX, LLAMA_8B)
    st = r.stages[0]
    assert st.micro_batch_size * st.grad_accum == 4
    assert st.micro_batch_size < 4 or st.gradient_checkpointing
    assert not st.liger_kernel and "not installed" in by_key(out, "sft")["liger_kernel"]["reason"]


@pytest.mark.parametrize("key", ["attention", "liger_kernel"])
def test_schema_accepts_the_new_keys(key):
    value = {"attention": "sdpa", "liger_kernel": True}[key]
    st = recipe({"type": "cpt", "data": ["x"], key: value}).stages[0]
    assert getattr(st, key) == value and key in st.model_fields_set


TINY_DEMO = from_config(dict(vocab_size=4096, hidden_size=128, intermediate_size=352, num_hidden_layers=4,
                             num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True), "tiny", "test")


def test_cpu_takes_the_whole_batch_in_one_micro_batch_when_host_memory_allows():
    r = recipe({"type": "cpt", "data": ["x"], "seq_len": 256, "micro_batch_size": 4, "grad_accum": 8})
    r.stages[0].model_fields_set.difference_update({"micro_batch_size", "grad_accum"})  # the schema's batch
    out = apply_defaults(r, Machine(cuda=False, host_mem_gib=16.0), TINY_DEMO)
    st = r.stages[0]
    assert (st.micro_batch_size, st.grad_accum, st.gradient_checkpointing) == (32, 1, False)
    assert "host memory" in by_key(out, "cpt")["micro_batch_size"]["reason"]
    r = recipe({"type": "cpt", "data": ["x"], "seq_len": 256, "micro_batch_size": 4, "grad_accum": 8})
    r.stages[0].model_fields_set.difference_update({"micro_batch_size", "grad_accum"})
    one_row = peak_gib(TINY_DEMO, "full", 1, 256, False, False, compute="fp32")  # the CPU trains in fp32
    apply_defaults(r, Machine(cuda=False, host_mem_gib=2 * 8.5 * one_row), TINY_DEMO)  # room for ~8 rows
    assert r.stages[0].micro_batch_size < 32 and r.stages[0].micro_batch_size * r.stages[0].grad_accum == 32


# ---------------------------------------------------------------- precision and master weights

def test_cpu_precision_auto_is_fp32_and_explicit_bf16_is_honoured_and_called_slower():
    r = recipe({"type": "cpt", "data": ["x"]}, {"type": "cpt", "name": "b", "data": ["x"], "precision": "bf16"})
    out = apply_defaults(r, Machine(cuda=False, host_mem_gib=16.0), TINY_DEMO)
    assert by_key(out, "cpt")["precision"]["value"] == "fp32"
    assert by_key(out, "cpt")["master_weights"]["value"] == "fp32"
    b = by_key(out, "b")
    assert b["precision"]["value"] == "bf16" and "can be slower than fp32" in b["precision"]["reason"]
    assert b["master_weights"]["value"] == "fp32" and "every update is kept" in b["master_weights"]["reason"]


def test_gpu_without_bf16_trains_full_weights_with_fp32_master_and_fp16_autocast():
    t4 = Machine(cuda=True, gpu_name="Tesla T4", gpu_mem_gib=15.0, bf16=False)
    r = recipe({"type": "cpt", "data": ["x"]}, {"type": "sft", "data": "p.jsonl", "method": "lora"})
    out = apply_defaults(r, t4, TINY_DEMO)
    assert by_key(out, "cpt")["precision"]["value"] == "fp16"
    assert by_key(out, "cpt")["master_weights"]["value"] == "fp32" and "loss scaling" in by_key(out, "cpt")["master_weights"]["reason"]
    assert "master_weights" not in by_key(out, "sft")  # LoRA: the adapters are fp32 anyway


def test_bf16_on_a_gpu_without_it_is_a_recipe_problem():
    from training.recipe import RecipeError
    t4 = Machine(cuda=True, gpu_name="Tesla T4", gpu_mem_gib=15.0, bf16=False)
    with pytest.raises(RecipeError, match="stages.0.precision.*precision: fp16 or auto"):
        apply_defaults(recipe({"type": "cpt", "data": ["x"], "precision": "bf16"}), t4, TINY_DEMO)


def test_sharded_full_training_keeps_fp32_master_shards_and_an_explicit_mode_wins():
    r = validate_data({"name": "t", "model": {"id": "m"}, "hardware": {"num_processes": 8, "strategy": "fsdp"},
                       "stages": [{"type": "cpt", "data": ["x"]}]}, check_paths=False)
    out = apply_defaults(r, H100, LLAMA_8B)
    assert by_key(out, "cpt")["master_weights"]["value"] == "fp32" and "fp32 master shards" in by_key(out, "cpt")["master_weights"]["reason"]
    r = recipe({"type": "cpt", "data": ["x"], "master_weights": "bf16_kahan"})
    out = apply_defaults(r, H100, LLAMA_1B)
    assert by_key(out, "cpt")["master_weights"] == {"stage": "cpt", "key": "master_weights", "value": "bf16_kahan",
                                                    "reason": "set in the recipe"}
