"""Datasets by id and trackers, end to end: a corpus and a pairs set given as local dataset folders (one in the
Hub layout, one saved by `datasets`) train through `hf:` ids in a recipe and in `plan`, with their revisions
and row counts in the run's recipe.yaml; `report_to: [tensorboard]` writes event files whose scalars are the
losses of events.jsonl; bad ids are refused before launch (offline mode, and a local stand-in of the Hub API
for the online answers)."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml

from conftest import cli, events_of, only_run, tiny_recipe, write_recipe

pytestmark = pytest.mark.integration


def offline_env(tmp: Path) -> dict:
    return {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp / "hf-datasets"),
            "HF_HOME": str(tmp / "hf-home")}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """The demo's corpus as a Hub-layout folder (data/train-*.parquet) and its pairs saved with save_to_disk."""
    import datasets
    from training.data import iter_documents
    from training.demo import resolve_builtin
    from training.recipe import expand_data

    root = tmp_path_factory.mktemp("datasets")
    docs = [{"text": t, "source": str(p.name)} for p, _, t in iter_documents(expand_data(resolve_builtin("builtin:demo-corpus")))]
    (root / "corpus" / "data").mkdir(parents=True)
    datasets.Dataset.from_list(docs).to_parquet(str(root / "corpus" / "data" / "train-00000-of-00001.parquet"))
    pairs = [json.loads(x) for x in Path(resolve_builtin("builtin:demo-pairs")).read_text().splitlines() if x.strip()]
    keys = sorted({k for p in pairs for k in p})  # the demo mixes formats: every column, null where a row lacks it
    table = datasets.Dataset.from_dict({k: [p.get(k) for p in pairs] for k in keys})
    datasets.DatasetDict({"train": table}).save_to_disk(str(root / "pairs"))
    return {"corpus": root / "corpus", "pairs": root / "pairs", "n_docs": len(docs), "n_pairs": len(pairs)}


@pytest.fixture(scope="module")
def run(folders, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    data = tiny_recipe(out, cpt_steps=6, sft_steps=4, report_to=["tensorboard"])
    data["eval"] = {"enabled": False}
    data["stages"][0]["data"] = f"hf:{folders['corpus']}"
    data["stages"][1]["data"] = f"hf:{folders['pairs']}:train"
    r = cli("--recipe", str(write_recipe(out / "r.yaml", data)), env=offline_env(out))
    assert r.returncode == 0, r.stdout + r.stderr
    return only_run(out)


def test_hf_ids_train_and_are_recorded(run, folders):
    rec = yaml.safe_load((run / "recipe.yaml").read_text())
    ds = rec["resolved"]["datasets"]
    corpus, pairs = ds[f"hf:{folders['corpus']}"], ds[f"hf:{folders['pairs']}:train"]
    assert corpus["rows"] == folders["n_docs"] and pairs["rows"] == folders["n_pairs"]
    assert corpus["source"] == "local-folder" and pairs["source"] == "saved-dataset" and pairs["fingerprint"]
    for d in (corpus, pairs):
        assert d["revision"].startswith("sha256:") and len(d["revision"]) == 7 + 64
        assert d["file"] in rec["resolved"]["files"]  # the snapshot trained on is hashed like a local file
    assert rec["stages"][0]["data"] == [corpus["file"]] and rec["stages"][1]["data"] == pairs["file"]
    ends = {e["stage"]: e for e in events_of(run) if e["event"] == "stage_end"}
    assert set(ends) == {"cpt", "sft"} and (run / "sft" / "adapter" / "adapter_config.json").is_file()


def test_tensorboard_scalars_match_events(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for stage in ("cpt", "sft"):
        logdir = run / "tensorboard" / stage
        assert any(p.name.startswith("events.out.tfevents") for p in logdir.iterdir())
        acc = EventAccumulator(str(logdir))
        acc.Reload()
        tb = {s.step: s.value for s in acc.Scalars("train/loss")}
        ev = {e["step"]: e["loss"] for e in events_of(run) if e["event"] == "step" and e["stage"] == stage}
        assert tb.keys() == ev.keys() and len(ev) >= 2
        for step, loss in ev.items():
            assert tb[step] == pytest.approx(loss, rel=1e-4)


def test_plan_scans_hf_ids_like_local_data(folders, tmp_path):
    out = tmp_path / "plan.yaml"
    r = cli("plan", "--model", "builtin:tiny-llama", "--corpus", f"hf:{folders['corpus']}",
            "--pairs", f"hf:{folders['pairs']}", "--budget", "50", "--gpu", "H100", "--gap", "knowledge",
            "--json", "-o", str(out), env=offline_env(tmp_path))
    assert r.returncode == 0, r.stderr
    facts = json.loads(r.stdout)["facts"]
    assert facts["corpus"]["documents"] == folders["n_docs"] and facts["pairs"]["valid"] == folders["n_pairs"]
    datas = [s["data"] for s in yaml.safe_load(out.read_text())["stages"]]
    assert f"hf:{folders['pairs']}" in datas  # the recipe keeps the id, not the snapshot


class _StandIn(BaseHTTPRequestHandler):
    """A local stand-in of the Hub API's dataset-info endpoint: answers as the Hub does for each case."""
    def do_GET(self):  # noqa: N802
        if "/org/gated" in self.path:
            self.send_response(401)
            self.send_header("X-Error-Code", "GatedRepo")
            self.send_header("X-Error-Message", "Access to dataset org/gated is restricted.")
        else:
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
            self.send_header("X-Error-Message", "Repository not found")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *a):
        pass


def _dry_run_lines(tmp_path, specs, env) -> list[str]:
    data = tiny_recipe(tmp_path / "runs")
    data["stages"][0]["data"] = specs
    r = cli("--recipe", str(write_recipe(tmp_path / "r.yaml", data)), "--dry-run", env=env, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "runs").exists()
    return r.stderr.splitlines()


def test_unknown_gated_unreachable_ids_refused_before_launch(tmp_path):
    import socket
    srv = HTTPServer(("127.0.0.1", 0), _StandIn)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    with socket.socket() as s:  # a port nobody listens on: the Hub unreachable
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    try:
        online = {"HF_ENDPOINT": f"http://127.0.0.1:{srv.server_port}", "HF_HOME": str(tmp_path / "hf"),
                  "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0", "HF_HUB_ETAG_TIMEOUT": "3"}
        lines = _dry_run_lines(tmp_path, ["hf:org/missing", "hf:org/gated:train"], online)
        assert any("hf:org/missing: no dataset 'org/missing' on the Hub" in x and "HF_TOKEN" in x for x in lines)
        assert any("hf:org/gated:train: the dataset is gated" in x and "set HF_TOKEN" in x for x in lines)
        lines = _dry_run_lines(tmp_path, ["hf:org/anything"], {**online, "HF_ENDPOINT": f"http://127.0.0.1:{dead}"})
        assert any("hf:org/anything: the Hub cannot be reached" in x for x in lines), lines
    finally:
        srv.shutdown()
    lines = _dry_run_lines(tmp_path, ["hf:org/nothing-cached", "hf:bad@@id"], offline_env(tmp_path))
    assert any("stages.0.data.0" in x and "hf:org/nothing-cached: not in the local Hugging Face cache and offline "
               "mode is on" in x for x in lines), lines
    assert any("stages.0.data.1" in x and "hf:bad@@id: not a dataset id" in x for x in lines)


def test_missing_split_and_tracker_package_refused(folders, tmp_path):
    data = tiny_recipe(tmp_path / "runs", report_to=["mlflow"])
    data["stages"][1]["data"] = f"hf:{folders['pairs']}:validation"
    r = cli("--recipe", str(write_recipe(tmp_path / "r.yaml", data)), "--dry-run", env=offline_env(tmp_path))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "no split 'validation' (splits: train)" in r.stderr
    import importlib.util
    if importlib.util.find_spec("mlflow") is None:  # not installed here: say how to get it
        assert "report_to: mlflow needs the mlflow package" in r.stderr and "pip install mlflow" in r.stderr
