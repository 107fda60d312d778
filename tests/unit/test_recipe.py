"""Recipe schema: defaults, every problem at once with key path and line, overrides."""
from __future__ import annotations

import pytest
import yaml

from training.recipe import CptStage, RecipeError, SftStage, apply_override
from training.recipe_load import load_recipe, validate_data

GOOD = """\
name: t
model:
  id: builtin:tiny-llama
stages:
  - type: cpt
    data: builtin:demo-corpus
  - type: sft
    data: builtin:demo-pairs
"""


def write(tmp_path, text, name="r.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def problems(tmp_path, text, overrides=None):
    with pytest.raises(RecipeError) as e:
        load_recipe(write(tmp_path, text), overrides)
    return e.value


def test_defaults_follow_the_guide_where_it_is_right(tmp_path):
    r = load_recipe(write(tmp_path, GOOD))
    cpt, sft = r.stages
    assert isinstance(cpt, CptStage) and isinstance(sft, SftStage)
    assert cpt.learning_rate == 1e-5 and cpt.packing and cpt.dedup and cpt.lr_scheduler == "cosine"
    assert sft.learning_rate == 2e-4 and sft.epochs == 3 and sft.method == "lora"
    assert (sft.lora.r, sft.lora.alpha, sft.lora.dropout) == (16, 32, 0.05)
    assert sft.lora.target_modules == "all-linear"  # not the guide's q_proj/v_proj
    assert sft.completion_only_loss
    assert r.model.trust_remote_code is False
    assert [s.name for s in r.stages] == ["cpt", "sft"]
    assert cpt.data == ["builtin:demo-corpus"]  # a single string is accepted as a list


def test_three_mistakes_reported_at_once_with_lines(tmp_path):
    text = GOOD.replace("    data: builtin:demo-corpus\n", "    data: builtin:demo-corpus\n    seq_len: long\n"
                        "    learnin_rate: 1e-5\n").replace("    data: builtin:demo-pairs\n",
                                                           "    data: builtin:demo-pairs\n    method: qlora2\n")
    err = problems(tmp_path, text)
    lines = err.lines()
    assert len(lines) == 3, lines
    assert any(":7: stages.0.seq_len" in x and "integer" in x for x in lines)
    assert any(":8: stages.0.learnin_rate" in x and "learning_rate" in x for x in lines)  # did you mean
    assert any(":11: stages.1.method" in x and "'lora'" in x for x in lines)


@pytest.mark.parametrize("text,needle", [
    ("name: [unclosed\n", "not valid YAML"),
    ("- just\n- a list\n", "YAML mapping"),
    ("", "is empty"),
    ("# only a comment\n", "YAML mapping"),
    (GOOD.replace("name: t", "name: 'bad name!'"), "name"),
    (GOOD.replace("  - type: sft", "  - type: rlhf"), "'cpt' or 'sft'"),
    (GOOD + "extra: 1\n", "extra: unknown key"),
    (GOOD.replace("model:\n  id: builtin:tiny-llama\n", ""), "model: required key is missing"),
    (GOOD.replace("stages:", "seed: 1\nstages: []\nx:").replace("x:\n", "x:\n"), "stages"),
    (GOOD.replace("builtin:tiny-llama", "./no/such/model"), "does not exist"),
    (GOOD.replace("builtin:demo-corpus", "/no/such/corpus.txt"), "does not exist"),
    (GOOD.replace("builtin:demo-pairs", "builtin:nothing"), "built-in data"),
    (GOOD.replace("    data: builtin:demo-pairs", "    data: builtin:demo-pairs\n    lora: {r: 0}"), "stages.1.lora.r"),
    (GOOD.replace("name: t", "name: t\nseed: !!python/object:os.system ls"), "not allowed"),
])
def test_bad_recipes_name_the_key(tmp_path, text, needle):
    err = problems(tmp_path, text)
    assert any(needle in x for x in err.lines()), err.lines()


@pytest.mark.parametrize("edit,needle", [
    (("model:\n  id: builtin:tiny-llama\n", "model:\n  id: builtin:tiny-llama\n  name: x\n"),
     "model.name: unknown key; did you mean 'id'?"),
    (("model:\n  id: builtin:tiny-llama\n", "model:\n  id: builtin:tiny-llama\n  color: red\n"),
     "model.color: unknown key; model takes: id, revision, trust_remote_code"),
    (("    data: builtin:demo-corpus\n", "    data: builtin:demo-corpus\n    lora: {r: 8}\n"),
     "stages.0.lora: unknown key for a cpt stage; lora belongs to sft stages"),
    (("    data: builtin:demo-corpus\n", "    data: builtin:demo-corpus\n    gradient_accumulation_steps: 2\n"),
     "stages.0.gradient_accumulation_steps: unknown key; did you mean 'grad_accum'?"),
    (("    data: builtin:demo-pairs\n", "    data: builtin:demo-pairs\n    doc_separator: line\n"),
     "stages.1.doc_separator: unknown key for an sft stage; doc_separator belongs to cpt stages"),
])
def test_an_unknown_key_gets_the_key_of_its_own_section(tmp_path, edit, needle):
    """The suggestion comes from the section the key sits in (model.name is not the recipe's name), a key of
    the other stage type says so, and a section with no close key lists its keys."""
    err = problems(tmp_path, GOOD.replace(*edit))
    assert any(needle in x for x in err.lines()), err.lines()


def test_python_tags_are_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    text = GOOD + f"x: !!python/object/apply:os.system ['touch {marker}']\n"
    problems(tmp_path, text)
    assert not marker.exists()


def test_model_folder_without_config_is_not_a_model(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    err = problems(tmp_path, GOOD.replace("builtin:tiny-llama", str(d)))
    assert any("config.json" in x for x in err.lines())


def test_overrides_by_index_and_by_stage_name(tmp_path):
    r = load_recipe(write(tmp_path, GOOD), ["stages.0.max_steps=7", "stages.sft.lora.r=8", "seed=3",
                                            "stages.sft.lora.target_modules=[q_proj, v_proj]"])
    assert r.stages[0].max_steps == 7 and r.stages[1].lora.r == 8 and r.seed == 3
    assert r.stages[1].lora.target_modules == ["q_proj", "v_proj"]


def test_bad_overrides_are_problems_too(tmp_path):
    err = problems(tmp_path, GOOD, ["stages.9.max_steps=1", "nokey", "stages.0.seq_len=x"])
    text = "\n".join(err.lines())
    assert "no list item '9'" in text and "key.path=value" in text and "seq_len" in text


def test_unique_stage_names_are_made_and_checked():
    base = {"name": "t", "model": {"id": "x"}}
    r = validate_data({**base, "stages": [{"type": "sft", "data": "a.jsonl"}, {"type": "sft", "data": "b.jsonl"}]},
                      check_paths=False)
    assert [s.name for s in r.stages] == ["sft", "sft-2"]
    with pytest.raises(RecipeError, match="unique"):
        validate_data({**base, "stages": [{"type": "sft", "data": "a", "name": "x"},
                                          {"type": "cpt", "data": "b", "name": "x"}]}, check_paths=False)


def test_apply_override_parses_yaml_values():
    d = {"stages": [{"type": "cpt"}]}
    apply_override(d, "stages.cpt.learning_rate=3e-5")
    apply_override(d, "hardware.gpu=H100")
    assert d["stages"][0]["learning_rate"] == 3e-5 and d["hardware"]["gpu"] == "H100"


def test_demo_recipe_is_valid():
    from pathlib import Path
    r = load_recipe(Path(__file__).resolve().parents[2] / "recipes" / "demo.yaml")
    assert [s.type for s in r.stages] == ["cpt", "sft"]
    assert yaml.safe_load((Path(__file__).resolve().parents[2] / "recipes" / "demo.yaml").read_text())["version"] == 1


def test_model_dtype_auto_still_loads_and_is_not_written_back(tmp_path):
    from training.recipe import dump_recipe
    r = load_recipe(write(tmp_path, GOOD.replace("  id: builtin:tiny-llama\n", "  id: builtin:tiny-llama\n  dtype: auto\n")))
    assert "dtype" not in yaml.safe_load(dump_recipe(r))["model"]  # run folders no longer carry the dead key


@pytest.mark.parametrize("value", ["bf16", "fp16", "fp32"])
def test_model_dtype_other_than_auto_names_the_key_and_what_to_set(tmp_path, value):
    # model.dtype was accepted and never read; the stages' precision and master_weights decide the weights
    err = problems(tmp_path, GOOD.replace("  id: builtin:tiny-llama\n", f"  id: builtin:tiny-llama\n  dtype: {value}\n"))
    (line,) = err.lines()
    assert ":4: model.dtype" in line and f"set precision: {value} on the stages" in line


def test_master_weights_key(tmp_path):
    r = load_recipe(write(tmp_path, GOOD.replace("    data: builtin:demo-corpus\n",
                                                 "    data: builtin:demo-corpus\n    master_weights: bf16_kahan\n")))
    assert r.stages[0].master_weights == "bf16_kahan" and r.stages[1].master_weights == "auto"
    err = problems(tmp_path, GOOD.replace("    data: builtin:demo-corpus\n",
                                          "    data: builtin:demo-corpus\n    master_weights: fp8\n"))
    assert any("stages.0.master_weights" in x and "bf16_kahan" in x for x in err.lines())
