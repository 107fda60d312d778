"""Beyond one GPU, the pure parts: hardware keys, the accelerate config and command, node arguments."""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys

import pytest
import yaml

from training.runtime.distributed import accelerate_config, launch_argv, wait_for_run_dir, write_launch_files
from training.recipe import Hardware, RecipeError
from training.recipe_load import load_recipe
from training.runtime.runner import resolve
from tui.cli import node_args

GOOD = """\
name: t
model:
  id: builtin:tiny-llama
hardware:
  gpu: H100
{hw}
stages:
  - type: cpt
    data: builtin:demo-corpus
"""


def recipe(tmp_path, hw="", overrides=None):
    p = tmp_path / "r.yaml"
    p.write_text(GOOD.format(hw=hw))
    return load_recipe(p, overrides)


def test_defaults_are_one_plain_process(tmp_path):
    hw = recipe(tmp_path).hardware
    assert (hw.num_processes, hw.num_nodes, hw.strategy, hw.gpu_count) == (1, 1, "ddp", 1)
    assert not hw.distributed
    assert launch_argv(tmp_path, hw) == [sys.executable, "-m", "training.runtime.worker", str(tmp_path)]


def test_gpu_count_follows_processes_unless_set(tmp_path):
    hw = recipe(tmp_path, overrides=["hardware.num_processes=8", "hardware.num_nodes=2"]).hardware
    assert hw.gpu_count == 16 and hw.world_size == 16 and hw.distributed
    hw = recipe(tmp_path, "  gpu_count: 4", overrides=["hardware.num_processes=2"]).hardware
    assert hw.gpu_count == 4  # what the user wrote wins (estimates count it)


def test_bad_strategy_and_counts_name_the_key_and_line(tmp_path):
    with pytest.raises(RecipeError) as e:
        recipe(tmp_path, "  strategy: zero2\n  num_processes: 0")
    lines = e.value.lines()
    assert any(":6: hardware.strategy: must be 'ddp', 'fsdp' or 'deepspeed-zero3'" in x for x in lines), lines
    assert any(":7: hardware.num_processes:" in x for x in lines), lines


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is not None, reason="deepspeed is installed here")
def test_zero3_without_deepspeed_says_what_to_install(tmp_path):
    r = recipe(tmp_path, "  strategy: deepspeed-zero3\n  num_processes: 8")  # a valid recipe: plans write it
    with pytest.raises(RecipeError) as e:
        resolve(r, "r.yaml")  # but this machine cannot run it
    lines = e.value.lines()
    assert any("hardware.strategy: deepspeed-zero3 needs the deepspeed package" in x and "pip install deepspeed" in x
               for x in lines), lines


def test_two_processes_one_node_is_torchrun_ddp_on_a_free_port(tmp_path):
    hw = Hardware(num_processes=2)
    cfg = accelerate_config(hw, tmp_path)
    assert cfg["distributed_type"] == "MULTI_GPU" and cfg["num_processes"] == 2 and cfg["num_machines"] == 1
    assert cfg["main_process_port"] == 0 and "main_process_ip" not in cfg
    path = write_launch_files(tmp_path, hw)
    assert yaml.safe_load(path.read_text()) == cfg and not (tmp_path / "ds_zero3.json").exists()
    argv = launch_argv(tmp_path, hw)
    assert argv[1:3] == ["-m", "accelerate.commands.launch"] and argv[-3:] == ["-m", "training.runtime.worker", str(tmp_path)]
    assert argv[argv.index("--config_file") + 1] == str(path)


def test_multi_node_counts_every_process_and_names_the_rendezvous(tmp_path):
    hw = Hardware(num_processes=8, num_nodes=4, main_address="10.0.0.1", main_port=29400, strategy="fsdp")
    cfg = accelerate_config(hw, tmp_path)
    assert cfg["num_processes"] == 32 and cfg["num_machines"] == 4  # accelerate counts all nodes' processes
    assert (cfg["main_process_ip"], cfg["main_process_port"]) == ("10.0.0.1", 29400)
    assert cfg["distributed_type"] == "FSDP"
    assert cfg["fsdp_config"]["fsdp_state_dict_type"] == "FULL_STATE_DICT"  # the saved model is a plain folder
    argv = launch_argv(tmp_path, hw, node_rank=3, main_address="10.0.0.9", main_port=1234)
    flags = dict(zip(argv[3::2], argv[4::2]))
    assert flags["--machine_rank"] == "3" and flags["--main_process_ip"] == "10.0.0.9"
    assert flags["--main_process_port"] == "1234"


def test_zero3_writes_a_deepspeed_config_the_trainer_fills(tmp_path):
    hw = Hardware(num_processes=8, strategy="deepspeed-zero3")
    write_launch_files(tmp_path, hw)
    cfg = yaml.safe_load((tmp_path / "accelerate_config.yaml").read_text())
    assert cfg["distributed_type"] == "DEEPSPEED"
    ds = json.loads((tmp_path / "ds_zero3.json").read_text())
    assert ds["zero_optimization"]["stage"] == 3 and ds["gradient_accumulation_steps"] == "auto"
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert cfg["deepspeed_config"]["deepspeed_config_file"] == str(tmp_path / "ds_zero3.json")
    assert "offload_optimizer" not in ds["zero_optimization"]
    write_launch_files(tmp_path, Hardware(num_processes=8, strategy="deepspeed-zero3", offload_optimizer=True))
    ds = json.loads((tmp_path / "ds_zero3.json").read_text())
    assert ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"


def test_optimizer_offload_needs_zero3(tmp_path):
    with pytest.raises(RecipeError) as e:
        recipe(tmp_path, "  strategy: fsdp\n  offload_optimizer: true")
    (line,) = e.value.lines()
    assert ":7: hardware.offload_optimizer:" in line and "deepspeed-zero3" in line


def test_single_process_fsdp_still_goes_through_accelerate(tmp_path):
    hw = Hardware(strategy="fsdp")
    assert hw.distributed and "accelerate.commands.launch" in launch_argv(tmp_path, hw)


def args(**kw):
    base = dict(node_rank=None, main_address=None, main_port=None, run_name=None)
    return argparse.Namespace(**{**base, **kw})


def test_node_args(monkeypatch):
    for v in ("NODE_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(v, raising=False)
    one, two = Hardware(), Hardware(num_nodes=2, num_processes=8)
    assert node_args(args(), one) == (0, None, None, None)
    assert "need hardware.num_nodes > 1" in node_args(args(node_rank=1), one)[3]
    assert "--main-address" in node_args(args(run_name="x"), two)[3]
    assert "--run-name" in node_args(args(main_address="10.0.0.1"), two)[3]
    assert "outside 0..1" in node_args(args(node_rank=2, main_address="h", run_name="x"), two)[3]
    assert node_args(args(node_rank=1, main_address="h", run_name="x"), two) == (1, "h", None, None)
    # the usual cluster variables fill what the flags leave out, for multi-node recipes only
    monkeypatch.setenv("NODE_RANK", "1")
    monkeypatch.setenv("MASTER_ADDR", "10.1.1.1")
    monkeypatch.setenv("MASTER_PORT", "29999")
    assert node_args(args(run_name="x"), two) == (1, "10.1.1.1", 29999, None)
    assert node_args(args(), one) == (0, None, None, None)


def test_joining_node_refuses_a_finished_run_and_times_out_clearly(tmp_path):
    run = tmp_path / "r1"
    msg = wait_for_run_dir(run, timeout_s=0.2, poll_s=0.05, say=lambda s: None)
    assert "same --run-name" in msg and "shares" in msg
    run.mkdir()
    (run / "recipe.yaml").write_text("x")
    (run / "accelerate_config.yaml").write_text("x")
    assert wait_for_run_dir(run, timeout_s=1) is None
    (run / "events.jsonl").write_text('{"v": 1, "t": 1.0, "event": "finished", "status": "ok"}\n')
    assert "finished run" in wait_for_run_dir(run, timeout_s=1)
