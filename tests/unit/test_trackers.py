"""Where each tracker logs, and that wandb can never wait for a login in a detached run."""
from __future__ import annotations

from pathlib import Path

import pytest

from training.hub_data import HubDataError, is_hf, parse
from training.runtime.trackers import missing_packages, tracker_env


def test_tensorboard_logs_per_stage_into_the_run_folder(tmp_path):
    env, notes = tracker_env(["tensorboard"], tmp_path, "sft", "r1", env={})
    assert env == {"TENSORBOARD_LOGGING_DIR": str(tmp_path / "tensorboard" / "sft")} and notes == []


def test_wandb_without_credentials_goes_offline_and_says_so(tmp_path):
    env, notes = tracker_env(["wandb"], tmp_path, "cpt", "r1", env={"HOME": str(tmp_path)})
    assert env["WANDB_MODE"] == "offline" and env["WANDB_DIR"] == str(tmp_path)
    assert len(notes) == 1 and "offline" in notes[0] and "wandb sync" in notes[0] and "WANDB_API_KEY" in notes[0]


@pytest.mark.parametrize("given", [{"WANDB_API_KEY": "x"}, {"WANDB_MODE": "online"}, "netrc"])
def test_wandb_with_credentials_or_an_explicit_mode_is_left_alone(tmp_path, given):
    if given == "netrc":
        (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password k\n")
        given = {}
    env, notes = tracker_env(["wandb"], tmp_path, "cpt", "r1", env={"HOME": str(tmp_path), **given})
    assert "WANDB_MODE" not in env and notes == []


def test_mlflow_file_store_in_the_run_folder_unless_a_server_is_named(tmp_path):
    env, _ = tracker_env(["mlflow"], tmp_path, "cpt", "r1", env={})
    assert env["MLFLOW_TRACKING_URI"] == (tmp_path / "mlruns").resolve().as_uri()
    assert "MLFLOW_TRACKING_URI" not in tracker_env(["mlflow"], tmp_path, "cpt", "r1",
                                                   env={"MLFLOW_TRACKING_URI": "http://srv"})[0]


def test_missing_tracker_package_names_the_pip_command(monkeypatch):
    import importlib.util
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    (msg,) = missing_packages(["trackio"])
    assert "pip install trackio" in msg and "report_to" in msg


@pytest.mark.parametrize("spec,want", [
    ("hf:org/name", ("org/name", None, "train")),
    ("hf:org/name@v1.0", ("org/name", "v1.0", "train")),
    ("hf:org/name@abc123:test", ("org/name", "abc123", "test")),
    ("hf:/data/my set:validation", ("/data/my set", None, "validation")),
    ("hf:./local", ("./local", None, "train")),
])
def test_dataset_ids_parse(spec, want):
    assert is_hf(spec) and parse(spec) == want


@pytest.mark.parametrize("spec", ["hf:", "hf:a@@b", "hf:a@:x", "hf:a:b:c"])
def test_bad_dataset_ids_say_the_form(spec):
    with pytest.raises(HubDataError, match=r"hf:NAME\[@REVISION\]\[:SPLIT\]"):
        parse(spec)
    assert not is_hf(Path("data/x.jsonl"))
