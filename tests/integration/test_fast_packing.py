"""SFT packing: padding-free bins are exact on sdpa; a run that packs counts its epochs in packed rows; every
default is recorded with its reason in recipe.yaml (on the CPU: no packing, length-grouped micro-batches)."""
from __future__ import annotations

import math

import pytest
import yaml

from conftest import cli, events_of, only_run, tiny_recipe, write_recipe

pytestmark = pytest.mark.integration


def test_padding_free_rows_give_each_pair_its_own_logits_on_sdpa(demo_home):
    """TRL's padding-free collator flattens packed pairs into one row with restarting position_ids; on sdpa,
    with no cache (the SFT trainer passes use_cache=False), no pair may see another: its logits must equal
    those it gets alone."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from training.demo import resolve_builtin

    model = AutoModelForCausalLM.from_pretrained(resolve_builtin("builtin:tiny-llama"), attn_implementation="sdpa")
    model.eval()
    g = torch.Generator().manual_seed(0)
    pairs = [torch.randint(5, 4000, (n,), generator=g).tolist() for n in (23, 9, 40)]
    rows = [{"input_ids": pairs[0] + pairs[1], "seq_lengths": [23, 9]}, {"input_ids": pairs[2], "seq_lengths": [40]}]
    batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(rows)
    assert batch["input_ids"].shape == (1, 72) and "attention_mask" not in batch
    with torch.no_grad():
        flat = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
        start = 0
        for ids in pairs:
            alone = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]
            assert torch.allclose(flat[start:start + len(ids)], alone, atol=1e-4), start
            start += len(ids)


def test_packed_sft_counts_epochs_in_rows_and_records_the_defaults(tmp_path):
    out = tmp_path / "runs"
    data = tiny_recipe(out)
    sft = data["stages"][1]
    sft.pop("max_steps")
    sft.update(epochs=0.1, micro_batch_size=8, eval_fraction=0.0, packing=True)
    data["stages"] = [sft]
    rp = write_recipe(tmp_path / "r.yaml", data)
    res = cli("--recipe", str(rp))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    run = only_run(out)
    ev = events_of(run)
    start = next(e for e in ev if e["event"] == "stage_start")
    d = start["data"]
    assert d["packed"] is True and d["train_rows"] < d["train_pairs"] / 2  # short pairs share 256-token rows
    # epochs count packed rows, not pairs: 0.1 epoch of train_rows in micro-batches of 8
    assert start["total_steps"] == max(1, math.ceil(0.1 * math.ceil(d["train_rows"] / 8)))
    steps = [e for e in ev if e["event"] == "step"]
    assert steps[-1]["step"] == start["total_steps"] and ev[-1]["status"] == "ok"

    resolved = yaml.safe_load((run / "recipe.yaml").read_text())
    defaults = {(x["stage"], x["key"]): x for x in resolved["resolved"]["defaults"]}
    assert defaults[("sft", "packing")] == {"stage": "sft", "key": "packing", "value": True,
                                            "reason": "set in the recipe"}
    assert defaults[("sft", "micro_batch_size")]["reason"] == "set in the recipe"
    assert defaults[("sft", "attention")]["value"] == "sdpa"
    assert defaults[("sft", "group_by_length")]["value"] is False  # packed rows are all about max_seq_len long
    assert all(x["reason"] for x in defaults.values())
    st = resolved["stages"][0]
    assert (st["packing"], st["attention"], st["liger_kernel"]) == (True, "sdpa", False)


def test_dry_run_shows_the_cpu_defaults_with_reasons(tmp_path):
    rp = write_recipe(tmp_path / "r.yaml", tiny_recipe(tmp_path / "runs"))
    res = cli("--recipe", str(rp), "--dry-run")
    assert res.returncode == 0, res.stderr[-2000:]
    resolved = yaml.safe_load(res.stdout.split("--- resolved recipe ---", 1)[1])
    defaults = {(x["stage"], x["key"]): x for x in resolved["resolved"]["defaults"]}
    assert defaults[("sft", "packing")]["value"] is False and "flash-attention" in defaults[("sft", "packing")]["reason"]
    assert defaults[("sft", "group_by_length")]["value"] is True
    assert defaults[("cpt", "packing")]["value"] is True and defaults[("cpt", "liger_kernel")]["value"] is False
    assert defaults[(None, "dataloader_num_workers")]["value"] == 0
    sft = resolved["stages"][1]
    assert (sft["packing"], sft["group_by_length"], sft["attention"]) == (False, True, "sdpa")
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing
