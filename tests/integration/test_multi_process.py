"""Two processes through `accelerate launch` (DDP over gloo on the CPU), asserted through what the run wrote:
one events stream, a finished ok, and a model equal in shape to the single-process run's."""
from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, cli, events_of, only_run, tiny_recipe, write_recipe

pytestmark = pytest.mark.integration
CPT_STEPS, SFT_STEPS = 4, 2


def tensor_shapes(path) -> dict[str, list[int]]:
    """Parameter names and shapes from a .safetensors header (8-byte length, then JSON)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return {k: v["shape"] for k, v in header.items() if k != "__metadata__"}


def run_once(tmp_path, name: str, *overrides: str, steps=(CPT_STEPS, SFT_STEPS)):
    out = tmp_path / name
    rp = write_recipe(tmp_path / f"{name}.yaml", tiny_recipe(out, cpt_steps=steps[0], sft_steps=steps[1]))
    res = cli("--recipe", str(rp), *overrides)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return only_run(out), res


def test_two_processes_write_one_stream_and_the_same_model(tmp_path):
    single, _ = run_once(tmp_path, "single", steps=(1, 1))  # only its shapes are compared
    multi, res = run_once(tmp_path, "multi", "--set", "hardware.num_processes=2")

    ev = events_of(multi)
    kinds = [e["event"] for e in ev]
    assert kinds.count("run_start") == 1 and kinds.count("finished") == 1 and kinds[-1] == "finished"
    assert ev[-1]["status"] == "ok" and ev[0]["world_size"] == 2 and ev[0]["strategy"] == "ddp"
    for kind in ("stage_start", "stage_end"):
        assert [e["stage"] for e in ev if e["event"] == kind] == ["cpt", "sft"]
    for kind in ("step", "eval", "checkpoint"):  # each once: only rank 0 writes events
        keys = [(e["stage"], e["step"]) for e in ev if e["event"] == kind]
        assert keys and len(keys) == len(set(keys)), (kind, keys)
    measured = [(e["stage"], e["when"]) for e in ev if e["event"] == "measure"]  # rank 0 measures, once
    assert sorted(measured) == sorted((s, w) for s in ("cpt", "sft") for w in ("before", "after"))
    assert kinds.count("report") == 1 and (multi / "report.md").is_file()
    steps = {s: [e["step"] for e in ev if e["event"] == "step" and e["stage"] == s] for s in ("cpt", "sft")}
    assert steps["cpt"][-1] == CPT_STEPS and steps["sft"][-1] == SFT_STEPS
    # both ranks trained: the tokens counted at the last CPT step are two ranks' packed blocks
    cpt_last = [e for e in ev if e["event"] == "step" and e["stage"] == "cpt"][-1]
    cpt = tiny_recipe(tmp_path)["stages"][0]
    assert cpt_last["tokens"] == CPT_STEPS * cpt["micro_batch_size"] * cpt["seq_len"] * 2

    # launched by accelerate with the config written into the run folder; pid names the launcher
    cfg = yaml.safe_load((multi / "accelerate_config.yaml").read_text())
    assert cfg["num_processes"] == 2 and cfg["distributed_type"] == "MULTI_GPU"
    assert int((multi / "pid").read_text()) != ev[0]["pid"]
    log = (multi / "train.log").read_text()
    assert "rank 0/2" in log and "rank 1/2" in log  # every rank's output lands in train.log
    assert "cpt: rank 1/2, MULTI_CPU" in log  # data-parallel over gloo, as accelerate set it up

    # outputs saved once, equal in shape to the single-process run's
    for rel in ("cpt/model/model.safetensors", "sft/adapter/adapter_model.safetensors"):
        a, b = tensor_shapes(single / rel), tensor_shapes(multi / rel)
        assert a and a == b, rel
    assert not list(multi.glob("**/*.tmp*"))
    assert "[cpt] step 4/4" in res.stdout and "finished: ok" in res.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_on_one_host_share_one_run_folder(tmp_path):
    """The multi-node path for real: node 0 and node 1 (one process each) rendezvous at 127.0.0.1."""
    out = tmp_path / "runs"
    data = tiny_recipe(out, cpt_steps=CPT_STEPS)
    data["stages"] = data["stages"][:1]
    data["hardware"] = {"num_nodes": 2}
    rp = write_recipe(tmp_path / "r.yaml", data)
    common = ["--recipe", str(rp), "--run-name", "two-nodes", "--main-address", "127.0.0.1",
              "--main-port", str(free_port())]
    env = {"PYTHONPATH": str(ROOT)}
    node1 = subprocess.Popen([sys.executable, "-m", "tui.cli", *common, "--node-rank", "1"], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env={**__import__("os").environ, **env})
    res0 = cli(*common, "--node-rank", "0")
    out1, _ = node1.communicate(timeout=300)
    assert res0.returncode == 0 and node1.returncode == 0, res0.stdout[-1500:] + res0.stderr[-1500:] + out1[-1500:]
    run = out / "two-nodes"
    ev = events_of(run)
    assert ev[0]["world_size"] == 2 and ev[-1]["event"] == "finished" and ev[-1]["status"] == "ok"
    keys = [e["step"] for e in ev if e["event"] == "step"]
    assert keys[-1] == CPT_STEPS and len(keys) == len(set(keys))
    assert "node 1 of 2" in out1 and "finished: ok" in out1  # node 1 follows the shared stream too
    assert (run / "train.node1.log").exists() and (run / "pid.node1").exists() and (run / "cpt/model").is_dir()


def test_sharding_without_a_gpu_is_refused_before_anything_runs(tmp_path):
    out = tmp_path / "runs"
    rp = write_recipe(tmp_path / "r.yaml", tiny_recipe(out))
    res = cli("--recipe", str(rp), "--set", "hardware.num_processes=2", "--set", "hardware.strategy=fsdp")
    assert res.returncode == 2 and "hardware.strategy: fsdp shards the model across CUDA GPUs" in res.stderr
    assert "Traceback" not in res.stderr and not out.exists()
