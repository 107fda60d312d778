"""Beyond one process: the `accelerate launch` command and its config, and who the current process is.

The runner writes RUN/accelerate_config.yaml (and, for DeepSpeed ZeRO-3, RUN/ds_zero3.json) and starts
`python -m accelerate.commands.launch --config_file ... -m training.runtime.worker RUN`. accelerate's launcher
runs torchrun in its own process, which starts one worker per GPU: DDP over NCCL on GPUs, over gloo on
the CPU (which is how the tests run two processes on a machine without a GPU).

Nothing here imports torch or accelerate: the face calls it and stays light. Rank helpers read the
environment torchrun sets (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import yaml

from training.recipe import Hardware

CONFIG_NAME = "accelerate_config.yaml"
DS_CONFIG_NAME = "ds_zero3.json"


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_world_size() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def is_main() -> bool:
    """The global rank 0: the only process that writes events and the run's outputs."""
    return rank() == 0


def ds_zero3_config(offload_optimizer: bool = False) -> dict:
    """DeepSpeed ZeRO-3 with every batch/precision field 'auto', so the HF Trainer fills them from each
    stage's arguments (the stages differ in batch size and accumulation); the full 16-bit weights are
    gathered on save so the run's model folder is an ordinary one."""
    return {
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "zero_optimization": {
            "stage": 3,
            "overlap_comm": True,
            "contiguous_gradients": True,
            "reduce_bucket_size": "auto",
            "stage3_prefetch_bucket_size": "auto",
            "stage3_param_persistence_threshold": "auto",
            "stage3_gather_16bit_weights_on_model_save": True,
            # the optimizer state in CPU RAM, stepped by DeepSpeed's CPU Adam: less GPU memory, slower steps
            **({"offload_optimizer": {"device": "cpu", "pin_memory": True}} if offload_optimizer else {}),
        },
    }


def accelerate_config(hw: Hardware, run: Path, main_address: str | None = None) -> dict:
    """The `accelerate launch` config for a recipe's hardware section (what `accelerate config` would write).

    num_processes is the total over all nodes (accelerate's meaning); the machine rank is given on each
    node's command line. Mixed precision stays 'no' here: each stage's Trainer sets bf16/fp16 itself."""
    cfg: dict = {
        "compute_environment": "LOCAL_MACHINE",
        "debug": False,
        "num_processes": hw.world_size,
        "num_machines": hw.num_nodes,
        "machine_rank": 0,
        "mixed_precision": "no",
        "use_cpu": False,
        "gpu_ids": "all",
        "downcast_bf16": "no",
        "rdzv_backend": "static",
        "same_network": True,
        "main_training_function": "main",
    }
    if hw.num_nodes > 1:
        cfg["main_process_ip"] = main_address or hw.main_address
        cfg["main_process_port"] = hw.main_port
    else:
        cfg["main_process_port"] = 0  # one node: any free port, so runs side by side never collide
    if hw.strategy == "ddp":
        cfg["distributed_type"] = "MULTI_GPU"  # torchrun; with no GPU the workers fall back to gloo on the CPU
    elif hw.strategy == "fsdp":
        cfg["distributed_type"] = "FSDP"
        cfg["fsdp_config"] = {
            "fsdp_version": 2,
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",  # one unit per decoder layer (_no_split_modules)
            "fsdp_reshard_after_forward": True,
            "fsdp_offload_params": False,
            "fsdp_cpu_ram_efficient_loading": True,
            "fsdp_state_dict_type": "FULL_STATE_DICT",  # the saved model is an ordinary folder
            "fsdp_activation_checkpointing": False,
        }
    else:
        cfg["distributed_type"] = "DEEPSPEED"
        cfg["deepspeed_config"] = {"deepspeed_config_file": str(run / DS_CONFIG_NAME), "zero3_init_flag": True}
    return cfg


def write_launch_files(run: Path, hw: Hardware, main_address: str | None = None) -> Path:
    """RUN/accelerate_config.yaml (and RUN/ds_zero3.json for ZeRO-3); returns the accelerate config path."""
    path = run / CONFIG_NAME
    path.write_text("# written by tune-wizard from the recipe's hardware section; used by `accelerate launch`\n"
                    + yaml.safe_dump(accelerate_config(hw, run, main_address), sort_keys=False))
    if hw.strategy == "deepspeed-zero3":
        (run / DS_CONFIG_NAME).write_text(json.dumps(ds_zero3_config(hw.offload_optimizer), indent=1) + "\n")
    return path


def launch_argv(run: Path, hw: Hardware, node_rank: int = 0, main_address: str | None = None,
                main_port: int | None = None) -> list[str]:
    """The command that starts this node's share of the run: plain python for one process, else accelerate."""
    worker = ["-m", "training.runtime.worker", str(run)]
    if not hw.distributed:
        return [sys.executable, *worker]
    argv = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(run / CONFIG_NAME),
            "--machine_rank", str(node_rank)]
    if hw.num_nodes > 1:
        argv += ["--main_process_ip", str(main_address or hw.main_address),
                 "--main_process_port", str(main_port or hw.main_port)]
    return argv + worker


def wait_for_run_dir(run: Path, timeout_s: float = 600, poll_s: float = 1.0, say=print) -> str | None:
    """On node K > 0: wait until node 0 has created the shared run folder and written its launch files.
    Returns None when ready, else one line saying what is wrong."""
    import time
    deadline = time.monotonic() + timeout_s
    said = False
    while not ((run / "recipe.yaml").exists() and (run / CONFIG_NAME).exists()):
        if time.monotonic() > deadline:
            return (f"no run folder {run} from node 0 after {timeout_s:.0f} s; start node 0 with the same "
                    f"--run-name, and check that output_dir is on a file system every node shares")
        if not said:
            say(f"waiting for node 0 to create {run} ...")
            said = True
        time.sleep(poll_s)
    from training.events import read_events
    if any(e.get("event") == "finished" for e in read_events(run / "events.jsonl")):
        return f"{run} is a finished run; give this run a new --run-name on every node"
    return None
