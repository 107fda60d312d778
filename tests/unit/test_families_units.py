"""Model families without training: resolution of the model id (offline), nested text configs, the attention
each class supports, what the dry-run catches, run-name validation, stop tokens."""
from __future__ import annotations

import json

import pytest

from training.family import ModelError, attention, model_problems, resolve_model, text_config
from training.runtime.runner import check_run_name
from training.tokens import cut_at_stop, fold_system

GEMMA3_VL = {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
             "text_config": {"model_type": "gemma3_text", "num_hidden_layers": 34, "hidden_size": 2560,
                             "intermediate_size": 10240, "num_attention_heads": 8, "num_key_value_heads": 4,
                             "vocab_size": 262208, "max_position_embeddings": 131072},
             "vision_config": {"hidden_size": 1152}}


def test_nested_text_config_gives_the_language_model_sizes():
    from training.plan.shapes import from_config
    s = from_config(GEMMA3_VL, "google/gemma-3-4b-it", "config.json")
    assert (s.layers, s.hidden, s.vocab, s.max_positions) == (34, 2560, 262208, 131072)
    assert text_config({"num_hidden_layers": 2})["num_hidden_layers"] == 2


def test_gemma3_conditional_generation_is_a_causal_lm_for_the_dry_run(tmp_path):
    from training.recipe_load import _not_causal_lm
    (tmp_path / "config.json").write_text(json.dumps(GEMMA3_VL))
    assert _not_causal_lm(tmp_path / "config.json") is None
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertForMaskedLM"], "model_type": "bert"}))
    assert "not a causal language model" in _not_causal_lm(tmp_path / "config.json")


def test_attention_is_asked_of_the_model_class():
    from transformers import Gemma2Config, LlamaConfig
    assert attention(Gemma2Config(), "auto", False, False)[0] == "eager"
    impl, why = attention(Gemma2Config(), "sdpa", False, False)
    assert impl == "eager" and "does not support sdpa" in why
    assert attention(LlamaConfig(), "auto", False, False) == ("sdpa", None)
    assert attention(LlamaConfig(), "flash_attention_2", False, False)[0] == "sdpa"
    assert attention(LlamaConfig(), "auto", True, True)[0] == "flash_attention_2"
    assert attention(Gemma2Config(), "eager", True, True) == ("eager", None)


def _recipe(targets="all-linear", seq=1024):
    from training.recipe import Recipe
    return Recipe.model_validate({"name": "t", "model": {"id": "m"}, "stages": [
        {"type": "cpt", "data": ["x.txt"], "seq_len": seq},
        {"type": "sft", "method": "lora", "data": "p.jsonl", "lora": {"target_modules": targets}}]})


def test_dry_run_problems_targets_and_positions():
    phi3 = {"model_type": "phi3", "max_position_embeddings": 4096}
    probs = dict(model_problems(_recipe(["q_proj", "v_proj"], 8192), phi3))
    assert "qkv_proj" in probs["stages.1.lora.target_modules"]
    assert "beyond the model's max_position_embeddings (4096)" in probs["stages.0.seq_len"]
    assert model_problems(_recipe("all-linear", 4096), phi3) == []
    assert model_problems(_recipe(["qkv_proj"], 2048), phi3) == []
    llama = {"model_type": "llama", "max_position_embeddings": 131072}
    assert model_problems(_recipe(["q_proj", "v_proj"]), llama) == []
    # a vision-language config: the text model's positions and layers count
    assert dict(model_problems(_recipe(["q_proj"], 200000), GEMMA3_VL)).keys() == {"stages.0.seq_len"}


@pytest.mark.parametrize("model_id, kind, words", [
    ("./no-such-model", "missing_folder", "does not exist"),
    ("models/llama3", "missing_folder", "there is no folder 'models/llama3' here"),
    ("a/b/c", "missing_folder", "does not exist"),
    ("meta-llama/Llama-3.1-8B", "offline", "not in the local Hugging Face cache"),
    ("bad id!", "bad_id", "not a Hugging Face id"),
])
def test_model_resolution_says_which_case(model_id, kind, words, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    with pytest.raises(ModelError) as e:
        resolve_model(model_id, timeout=10)
    assert e.value.kind == kind and words in str(e.value), str(e.value)


def test_folder_without_config_and_a_good_folder(tmp_path):
    with pytest.raises(ModelError) as e:
        resolve_model(str(tmp_path))
    assert e.value.kind == "not_a_model"
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    assert resolve_model(str(tmp_path)) == {"model_type": "llama"}


def _hub_error(cls, msg):
    e = cls.__new__(cls)
    BaseException.__init__(e, msg)
    return e


def test_gated_and_unknown_ids_are_told_apart(monkeypatch):
    from huggingface_hub import errors as hfe
    from training.family import _explain_hub_error
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    g = _explain_hub_error("meta-llama/Llama-3.1-8B", _hub_error(hfe.GatedRepoError, "401 gated"))
    assert g.kind == "gated" and "HF_TOKEN is not set" in str(g) and "export HF_TOKEN" in str(g)
    n = _explain_hub_error("meta-lama/Llama-3.1-8B", _hub_error(hfe.RepositoryNotFoundError, "404"))
    assert n.kind == "not_found" and "a typo" in str(n)


def test_runner_refuses_an_unresolvable_model_before_anything_is_written(tmp_path, monkeypatch):
    from training.recipe import Recipe, RecipeError
    from training.runtime.runner import resolve
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    (tmp_path / "p.jsonl").write_text(json.dumps({"prompt": "q", "completion": "a"}) + "\n")
    r = Recipe.model_validate({"name": "t", "model": {"id": "org/typo-model"}, "output_dir": str(tmp_path / "runs"),
                               "hardware": {"gpu": "cpu"},
                               "stages": [{"type": "sft", "method": "lora", "data": str(tmp_path / "p.jsonl")}]})
    with pytest.raises(RecipeError) as e:
        resolve(r)
    assert any("model.id: 'org/typo-model' is not in the local Hugging Face cache" in x for x in e.value.lines())
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", ["../x", "/tmp/x", "a/b", "..", ".", "", "~x"])
def test_run_name_must_be_a_plain_folder_name(name):
    assert "plain folder name" in check_run_name(name)


def test_run_name_ok_and_create_run_dir_refuses_escape(tmp_path):
    from training.recipe import Recipe, RecipeError
    from training.runtime.runner import create_run_dir
    assert check_run_name("exp-1.v2") is None
    r = Recipe.model_validate({"name": "t", "model": {"id": "m"}, "output_dir": str(tmp_path / "runs"),
                               "stages": [{"type": "cpt", "data": ["x.txt"]}]})
    r.resolved = {"files": {}}
    with pytest.raises(RecipeError):
        create_run_dir(r, None, "../escaped")
    assert not (tmp_path / "escaped").exists()


def test_cli_rejects_a_bad_run_name_with_exit_2(tmp_path):
    from tests.conftest import cli
    p = cli("--recipe", "recipes/demo.yaml", "--run-name", "../x", "--dry-run")
    assert p.returncode == 2 and "--run-name '../x' must be a plain folder name" in p.stderr
    assert "Traceback" not in p.stderr


def test_stop_helpers():
    assert cut_at_stop([5, 6, 9, 7], [9, 1]) == ([5, 6], True)
    assert cut_at_stop([5, 6], [9]) == ([5, 6], False)
    assert fold_system([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]) == \
        [{"role": "user", "content": "S\n\nU"}]


def test_plan_and_the_recipe_front_say_the_same_for_an_unresolvable_model(tmp_path, monkeypatch, capsys):
    from training.plan.cli import main as plan_main
    from tui.engine import check_model
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    assert plan_main(["--model", "org/typo-model", "--gpu", "H100"]) == 2
    err = capsys.readouterr().err
    assert "--model: 'org/typo-model' is not in the local Hugging Face cache" in err and err.count("\n") == 1
    assert plan_main(["--model", "./models/nope", "--gpu", "H100"]) == 2
    assert "the folder './models/nope' does not exist" in capsys.readouterr().err
    # the wizard's model step: a missing folder stops it; unreachable from here is only a note
    problem, note = check_model("./models/nope")
    assert "does not exist" in problem and note is None
    problem, note = check_model("org/typo-model")
    assert problem is None and "not in the local Hugging Face cache" in note
    assert check_model("builtin:tiny-llama") == (None, None)
