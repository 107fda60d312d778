"""Runs that survive, trained for real on the CPU with the tiny demo model: hard kill, graceful stop,
exact resume across stages, NaN loss, disk full while checkpointing.

Resume tolerance: every loss after a resume equals the uninterrupted run's loss at the same step within
1e-4 (absolute). On the CPU in fp32 they agree to the 6 significant digits events.jsonl keeps.
"""
from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest

from tests.conftest import cli, events_of, only_run, tiny_recipe, write_recipe
from training.runtime.checkpoints import MARKER, checkpoint_problem

pytestmark = pytest.mark.integration
TOL = 1e-4
STEPS = {"cpt": 4, "sft": 4}


def recipe(tmp_path, name="r.yaml", **top):
    data = tiny_recipe(tmp_path / "runs", STEPS["cpt"], STEPS["sft"], **top)
    for st in data["stages"]:
        st.update(logging_steps=1, save_steps=2, eval_steps=st["max_steps"])
    data["stages"][0]["micro_batch_size"] = 4
    data["stages"][1]["micro_batch_size"] = 8
    return write_recipe(tmp_path / name, data)


def losses(events) -> dict:
    """{(stage, step): loss}; a step trained twice (after a hard kill) keeps its last value."""
    return {(e["stage"], e["step"]): e["loss"] for e in events if e["event"] == "step"}


def segments(events) -> list[list[dict]]:
    out = []
    for e in events:
        if e["event"] == "run_start":
            out.append([])
        out[-1].append(e)
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    r = cli("--recipe", str(recipe(tmp)))
    assert r.returncode == 0, r.stdout + r.stderr
    return losses(events_of(only_run(tmp / "runs")))


def test_hard_kill_then_stop_then_resume_matches_an_uninterrupted_run(tmp_path, reference):
    r_yaml = recipe(tmp_path)
    # 1. kill -9 in cpt after step 3 (checkpoint-2 is the last complete one)
    r = cli("--recipe", str(r_yaml), env={"TUNE_WIZARD_FAULT": "sigkill@cpt:3"})
    assert r.returncode == 1 and "died" in r.stdout and "Traceback" not in r.stdout + r.stderr
    run = only_run(tmp_path / "runs")
    # a save that was cut short: the folder exists, its marker does not
    half = run / "checkpoints" / "cpt" / "checkpoint-3"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"\0" * 64)
    assert checkpoint_problem(half) is not None

    # 2. resume; SIGTERM arrives in sft after step 1: checkpoint, `stopped`, exit 0
    r = cli("--recipe", str(r_yaml), "--resume", env={"TUNE_WIZARD_FAULT": "sigterm@sft:1"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"resuming {run}" in r.stdout and "cpt: from checkpoint-2" in r.stdout
    seg = segments(events_of(run))[-1]
    res = [e for e in seg if e["event"] == "resume"]
    assert res[0]["stage"] == "cpt" and res[0]["checkpoint"] == "checkpoints/cpt/checkpoint-2"
    assert [d["checkpoint"] for d in res[0]["discarded"]] == ["checkpoint-3"] and not half.exists()
    assert [e["step"] for e in seg if e["event"] == "step" and e["stage"] == "cpt"] == [3, 4]
    stopped = next(e for e in seg if e["event"] == "stopped")
    assert stopped["stage"] == "sft" and stopped["reason"] == "SIGTERM" and stopped["step"] == 1
    assert checkpoint_problem(run / stopped["checkpoint"]) is None
    assert seg[-1]["event"] == "finished" and seg[-1]["status"] == "stopped"

    # 3. resume again: cpt is not redone, sft continues from its checkpoint to the planned step count
    r = cli("--recipe", str(r_yaml), "--resume", str(run))
    assert r.returncode == 0, r.stdout + r.stderr
    seg = segments(events_of(run))[-1]
    assert {"event": "resume", "stage": "cpt", "done": True}.items() <= next(
        e for e in seg if e["event"] == "resume").items()
    assert not [e for e in seg if e["event"] == "step" and e["stage"] == "cpt"]
    assert [e["step"] for e in seg if e["event"] == "step"] == [2, 3, 4]
    assert seg[-1]["status"] == "ok" and (run / "sft" / "adapter" / "adapter_model.safetensors").is_file()

    got = losses(events_of(run))
    assert set(got) == set(reference)  # every planned step of every stage, no more
    for key, ref in reference.items():
        assert abs(got[key] - ref) <= TOL, (key, got[key], ref)

    # 4. a finished run is not resumed again, and that refusal touches nothing
    before = (run / "events.jsonl").read_bytes()
    r = cli("--recipe", str(r_yaml), "--resume", str(run))
    assert r.returncode == 2 and "already finished" in r.stderr
    assert (run / "events.jsonl").read_bytes() == before
    # run folders are private: owner-only directories and files
    for p in [run, *run.rglob("*")]:
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode & 0o077 == 0, (p, oct(mode))


def test_nan_loss_stops_at_once_and_names_the_learning_rate(tmp_path):
    data = json.loads(json.dumps(tiny_recipe(tmp_path / "runs", 6, 2)))
    data["stages"] = data["stages"][:1]
    data["stages"][0].update(learning_rate=1e20, warmup_ratio=0.0, save_steps=1, logging_steps=1,
                             micro_batch_size=2, eval_steps=6)
    r = cli("--recipe", str(write_recipe(tmp_path / "nan.yaml", data)), env={"HF_TOKEN": "hf_neverWrittenAnywhere42"})
    assert r.returncode == 1, r.stdout + r.stderr
    run = only_run(tmp_path / "runs")
    evs = events_of(run)
    err = next(e for e in evs if e["event"] == "error")
    assert err["kind"] == "nan_loss" and "learning_rate 1e+20 is high for continued pre-training" in err["hint"]
    bad_step = int(err["message"].split("at step ")[1].split(";")[0])
    assert bad_step < 6  # stopped at once, not at the end
    ckpts = sorted(int(p.name.split("-")[1]) for p in (run / "checkpoints" / "cpt").glob("checkpoint-*"))
    assert ckpts and max(ckpts) < bad_step  # nothing saved from the step that went bad
    assert f"checkpoint-{max(ckpts)}" in err["message"]
    assert "error [nan_loss]" in r.stdout and "likely causes" in r.stdout
    # the token from the environment is nowhere in the run folder
    for p in run.rglob("*"):
        if p.is_file():
            assert b"hf_neverWrittenAnywhere42" not in p.read_bytes(), p


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(tmp_path):
    data = tiny_recipe(tmp_path / "runs", 4, 2)
    data["stages"] = data["stages"][:1]
    data["stages"][0].update(save_steps=2, logging_steps=1, micro_batch_size=2, eval_steps=4)
    r = cli("--recipe", str(write_recipe(tmp_path / "full.yaml", data)), env={"TUNE_WIZARD_FAULT": "enospc@cpt:4"})
    assert r.returncode == 1, r.stdout + r.stderr
    run = only_run(tmp_path / "runs")
    err = next(e for e in events_of(run) if e["event"] == "error")
    assert err["kind"] == "disk_full"
    assert "removed the half-written checkpoint-4" in err["message"]
    assert "checkpoints/cpt/checkpoint-2, intact" in err["message"]
    assert "free disk space" in err["hint"]
    ck = run / "checkpoints" / "cpt"
    assert sorted(p.name for p in ck.iterdir() if p.name.startswith("checkpoint-")) == ["checkpoint-2"]
    assert checkpoint_problem(ck / "checkpoint-2") is None and (ck / "checkpoint-2" / MARKER).is_file()
    assert not (run / "cpt" / "model").exists()
    assert "error [disk_full]" in r.stdout and os.path.getsize(ck / "checkpoint-2" / "optimizer.pt") > 0


def test_a_really_full_disk_keeps_the_previous_checkpoint(tmp_path):
    """A real tmpfs as the output folder, big enough for the launch's disk check; once the first checkpoint is
    complete, another writer fills the disk to about 4 MB free (what a user's other jobs do), so the next
    checkpoint (16 MB) cannot be written: the run reports disk_full and the checkpoint before it stays intact."""
    import threading
    import time
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        data = tiny_recipe(mnt, 40, 2)
        data["stages"] = data["stages"][:1]
        data["stages"][0].update(save_steps=2, logging_steps=1, micro_batch_size=2, eval_steps=40)
        done = threading.Event()

        def fill_after_first_checkpoint():
            while not done.is_set():
                if any(mnt.glob(f"*/checkpoints/cpt/checkpoint-*/{MARKER}")):
                    st = os.statvfs(mnt)
                    with open(mnt / "other-job.bin", "wb") as f:
                        f.truncate(0)
                        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - (4 << 20)))
                    return
                time.sleep(0.05)

        filler = threading.Thread(target=fill_after_first_checkpoint, daemon=True)
        filler.start()
        r = cli("--recipe", str(write_recipe(tmp_path / "full.yaml", data)))
        done.set()
        assert r.returncode == 1, r.stdout + r.stderr
        run = only_run(mnt)
        errs = [e for e in events_of(run) if e["event"] == "error"]
        assert errs, (run / "train.log").read_text()[-3000:]
        err = errs[0]
        assert err["kind"] == "disk_full", err
        ck = run / "checkpoints" / "cpt"
        kept = sorted((p for p in ck.iterdir() if p.name.startswith("checkpoint-")), key=lambda p: int(p.name[11:]))
        assert kept, "no checkpoint survived"
        assert f"checkpoints/cpt/{kept[-1].name}, intact" in err["message"], err["message"]
        assert all(checkpoint_problem(p) is None for p in kept)  # the half-written one was removed
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
