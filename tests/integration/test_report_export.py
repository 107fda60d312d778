"""Did it work, end to end: a real tiny CPT -> SFT run writes before/after measurements and report.md with
loss-curve PNGs and cost; `export --merge` writes a standalone model that loads and generates."""
from __future__ import annotations

import pytest
import yaml

from conftest import cli, events_of, only_run, tiny_recipe, write_recipe

pytestmark = pytest.mark.integration
PROMPTS = ["What does the function `json.dumps` do?", "Give the signature of `os.path.join`."]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    data = tiny_recipe(out, cpt_steps=8, sft_steps=4)
    data["eval"] = {"probe_prompts": PROMPTS, "max_new_tokens": 8, "max_domain_tokens": 3000,
                    "max_general_tokens": 1000, "max_pairs": 12}
    data["estimate"] = {"hours": 0.01, "source": "test"}
    data["hardware"]["price_per_gpu_hour"] = 3.0
    r = cli("--recipe", str(write_recipe(out / "r.yaml", data)))
    assert r.returncode == 0, r.stdout + r.stderr
    return only_run(out)


def _measures(run):
    return {(e["stage"], e["when"]): e for e in events_of(run) if e["event"] == "measure"}


def test_measure_events_show_cpt_lowering_domain_perplexity(run):
    m = _measures(run)
    assert set(m) == {("cpt", "before"), ("cpt", "after"), ("sft", "before"), ("sft", "after")}
    assert not any("error" in e for e in m.values())
    b, a = m["cpt", "before"], m["cpt", "after"]
    assert 0 < a["domain_tokens"] <= 3000 and a["general_tokens"] > 0
    assert a["domain_ppl"] < b["domain_ppl"]
    assert a["general_ppl_change_pct"] == pytest.approx((a["general_ppl"] - b["general_ppl"]) / b["general_ppl"] * 100,
                                                        rel=1e-3)
    assert a["forgetting_threshold_pct"] == 10.0 and isinstance(a["forgetting_warning"], bool)
    assert a["lm_eval"]["status"] in ("not_installed", "no_tasks")
    sb, sa = m["sft", "before"], m["sft", "after"]
    assert sb["domain_ppl"] == a["domain_ppl"]  # the sft stage starts from the cpt model: same numbers
    assert 0 < sa["heldout_pairs"] <= 12 and sa["heldout_pairs_loss"] > 0
    assert [x["prompt"] for x in sa["answers"]] == PROMPTS and [x["prompt"] for x in sb["answers"]] == PROMPTS
    end = {e["stage"]: e for e in events_of(run) if e["event"] == "stage_end"}
    assert end["cpt"]["peak_mem_kind"] == "rss_peak" and end["cpt"]["peak_mem_gib"] > 0


def test_report_has_the_outcome_curves_and_cost(run):
    events = events_of(run)
    assert [e["event"] for e in events][-2:] == ["report", "finished"]
    text = (run / "report.md").read_text()
    assert "domain perplexity fell" in text and "Forgetting check" in text
    assert "lm-eval-harness" in text and "Probe answers, sft" in text
    for stage in ("cpt", "sft"):
        png = run / "plots" / f"loss-{stage}.png"
        assert f"(plots/loss-{stage}.png)" in text
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cost = next(line for line in text.splitlines() if line.startswith("| cost (USD)"))
    spent, est = cost.split("|")[2].strip(), cost.split("|")[3].strip()
    assert spent.startswith("$") and float(spent[1:]) > 0
    assert est == "$0.0300"  # 0.01 h x $3 x 1
    # the demo recipe says why it is what it is (its decision section), and the report shows it
    assert "Plan: **cpt_sft**, method **lora**" in text and "hand-written to show both stages" in text
    assert "far below the guide's 500 MB" in text
    for info in yaml.safe_load((run / "recipe.yaml").read_text())["resolved"]["files"].values():
        assert info["sha256"] in text  # data hashes, the general reference text's included
    # regenerated on demand, from the run folder alone
    (run / "report.md").unlink()
    r = cli("report", str(run))
    assert r.returncode == 0, r.stderr
    assert (run / "report.md").read_text() == text


def test_export_merge_loads_and_matches_the_adapter(run, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "merged"
    r = cli("export", str(run), "--merge", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert (out / "config.json").is_file() and not (out / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    ids = tok.apply_chat_template([{"role": "user", "content": PROMPTS[0]}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    gen = model.generate(**ids, max_new_tokens=6, do_sample=False, min_new_tokens=6)
    assert gen.shape[1] == ids["input_ids"].shape[1] + 6
    # merged weights compute what base (the cpt result) + adapter compute
    ref = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(run / "cpt" / "model"), run / "sft" / "adapter")
    with torch.no_grad():
        assert torch.allclose(model(**ids).logits, ref.eval()(**ids).logits, atol=1e-4)
    again = cli("export", str(run), "--merge", "--out", str(out))
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr


def test_export_adapter_with_readme(run):
    r = cli("export", str(run))
    assert r.returncode == 0, r.stderr
    out = run / "export" / "adapter"
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    readme = (out / "README.md").read_text()
    assert "PeftModel.from_pretrained" in readme and str(run / "cpt" / "model") in readme


def test_report_refuses_a_folder_that_is_not_a_run(tmp_path):
    r = cli("report", str(tmp_path))
    assert r.returncode == 2 and "not a run folder" in r.stderr and "Traceback" not in r.stderr
