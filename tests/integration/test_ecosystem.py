"""Where users' data and tools live (issue 16), end to end on one real tiny CPT -> LoRA SFT run:
- a corpus and a pairs set given as local dataset folders (one in the Hub layout, one saved by `datasets`) train
  through `hf:` ids in a recipe and in `plan`, with their revisions and row counts in the run's recipe.yaml;
  bad ids are refused before launch (offline mode, and a local stand-in of the Hub API for the online answers);
- `report_to: [tensorboard]` writes event files whose scalars are the losses of events.jsonl;
- `export --push-to-hub` is tested up to and including the upload, against a local stand-in of the Hub API
  (an HTTP server on 127.0.0.1 with HF_ENDPOINT pointed at it, answering create-repo, validate-yaml, preupload
  and commit as the Hub does, and recording them): the model card and the uploaded files are asserted;
- the transformers serve command that report.md and `export` print is run on what was exported."""
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
    from training.recipe_load import expand_data

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
    data = tiny_recipe(out, cpt_steps=6, sft_steps=4, report_to=["tensorboard", "wandb"])
    data["eval"] = {"max_new_tokens": 4, "max_domain_tokens": 1000, "max_general_tokens": 500, "max_pairs": 8}
    data["hardware"]["price_per_gpu_hour"] = 2.0
    data["stages"][0]["data"] = f"hf:{folders['corpus']}"
    data["stages"][1]["data"] = f"hf:{folders['pairs']}:train"
    # no wandb credentials anywhere: the detached run must go offline, not wait for a login (cli's timeout)
    no_login = {"WANDB_API_KEY": "", "WANDB_MODE": "", "NETRC": str(out / "no-netrc"), "HOME": str(out)}
    r = cli("--recipe", str(write_recipe(out / "r.yaml", data)), env={**offline_env(out), **no_login})
    assert r.returncode == 0, r.stdout + r.stderr
    run = only_run(out)
    (run / "headless.out").write_text(r.stdout + r.stderr)
    return run


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


def test_wandb_without_credentials_went_offline_and_said_so(run):
    warn = [e for e in events_of(run) if e["event"] == "warning" and e.get("kind") == "tracker"]
    assert len(warn) == 1 and "logs offline" in warn[0]["message"] and "wandb sync" in warn[0]["message"]
    assert "logs offline" in (run / "headless.out").read_text()
    assert list((run / "wandb").glob("offline-run-*")), "wandb wrote no offline run into the run folder"


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
    r = cli("plan", "--model", "builtin:tiny-llama", "--pairs", "hf:org/not-cached", "--budget", "50", "--gpu", "H100",
            env=offline_env(tmp_path))
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.splitlines()) == 1
    assert "--pairs hf:org/not-cached: not in the local Hugging Face cache and offline mode is on" in r.stderr


class _StandIn(BaseHTTPRequestHandler):
    """A local stand-in of the Hub API's dataset-info endpoint: answers as the Hub does for each case."""
    def do_GET(self):  # noqa: N802
        if "/org/huge" in self.path:  # exists, but its files would not fit any disk here
            body = json.dumps({"id": "org/huge", "sha": "b" * 40, "private": False, "siblings": [
                {"rfilename": "data/train-00000-of-00002.parquet", "size": 4 * 10 ** 15},
                {"rfilename": "README.md", "size": 100}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
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
        lines = _dry_run_lines(tmp_path, ["hf:org/missing", "hf:org/gated:train", "hf:org/huge"], online)
        assert any("hf:org/huge: its text needs about 12,000,000.0 GB on disk" in x and "TUNE_WIZARD_HOME" in x
                   for x in lines), lines
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


# ---------------------------------------------------------------- push to the Hub, serve

class _HubStandIn(BaseHTTPRequestHandler):
    """Answers the calls huggingface_hub makes for create_repo + upload_folder, and records them."""
    calls: list = []

    def _reply(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.calls.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": raw})
        here = f"http://127.0.0.1:{self.server.server_port}"
        if self.path == "/api/repos/create":
            self._reply({"url": f"{here}/org/demo-model", "name": "org/demo-model"})
        elif self.path == "/api/validate-yaml":
            self._reply({"errors": [], "warnings": []})
        elif "/preupload/" in self.path:  # every file inline ("regular"): the commit then carries their bytes
            self._reply({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                   for f in json.loads(raw)["files"]]})
        elif "/commit/" in self.path:
            self._reply({"commitUrl": f"{here}/org/demo-model/commit/{'a' * 40}", "commitOid": "a" * 40})
        else:
            self.send_response(404)
            self.end_headers()

    def do_GET(self):  # noqa: N802
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def _committed_files(calls) -> dict[str, bytes]:
    import base64
    (commit,) = [c for c in calls if "/commit/" in c["path"]]
    out = {}
    for line in commit["body"].decode().splitlines():
        item = json.loads(line)
        if item["key"] == "file":
            out[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
    return out


def test_push_refused_without_token_before_any_work(run, tmp_path):
    env = {"HF_TOKEN": "", "HF_HOME": str(tmp_path / "hf")}
    r = cli("export", str(run), "--merge", "--out", str(tmp_path / "m"), "--push-to-hub", "org/demo-model", env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "no Hugging Face token; set HF_TOKEN" in r.stderr and not (tmp_path / "m").exists()
    r = cli("export", str(run), "--push-to-hub", "no-slash", env={**env, "HF_TOKEN": "hf_x"})
    assert r.returncode == 2 and "give the repository as ORG/NAME" in r.stderr


def test_push_merged_model_with_card_to_a_hub_stand_in(run, tmp_path):
    _HubStandIn.calls = []
    srv = HTTPServer(("127.0.0.1", 0), _HubStandIn)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        env = {"HF_ENDPOINT": f"http://127.0.0.1:{srv.server_port}", "HF_TOKEN": "hf_standin_token",
               "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"}
        r = cli("export", str(run), "--merge", "--out", str(tmp_path / "m"), "--push-to-hub", "org/demo-model",
                "--private", env=env)
    finally:
        srv.shutdown()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "pushed to org/demo-model (private)" in r.stdout
    create = next(c for c in _HubStandIn.calls if c["path"] == "/api/repos/create")
    assert json.loads(create["body"]).items() >= {"name": "demo-model", "organization": "org",
                                                  "visibility": "private"}.items()
    assert all(c["auth"] == "Bearer hf_standin_token" for c in _HubStandIn.calls)
    files = _committed_files(_HubStandIn.calls)
    assert {"README.md", "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "chat_template.jinja"} <= set(files)
    assert files["model.safetensors"] == (tmp_path / "m" / "model.safetensors").read_bytes()
    card = files["README.md"].decode()
    rec = yaml.safe_load((run / "recipe.yaml").read_text())
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["library_name"] == "transformers" and {"tune-wizard", "cpt", "sft", "lora"} <= set(meta["tags"])
    assert card.index("## What was decided and why") < card.index("## Did it work?") < card.index("## Time and cost")
    assert "Plan: **cpt_sft**, method **lora**" in card  # the decision, from report.md
    assert "| domain perplexity" in card and "| cost (USD)" in card  # before/after table, cost
    for f, info in rec["resolved"]["files"].items():
        assert info["sha256"] in card  # data hashes
    for spec, d in rec["resolved"]["datasets"].items():
        assert f"| `{spec}` | `{d['revision']}` | {d['rows']:,} |" in card
    assert "vllm serve org/demo-model" in card and "![" not in card


def _transformers_command(stdout: str) -> str:
    lines = stdout.splitlines()
    i = next(i for i, x in enumerate(lines) if x.strip().startswith("# transformers"))
    return lines[i + 1].strip()


@pytest.mark.parametrize("merge", [False, True])
def test_the_printed_transformers_command_loads_the_export(run, tmp_path, merge):
    import subprocess
    import sys
    r = cli("export", str(run), *(["--merge"] if merge else []), "--out", str(tmp_path / "x"))
    assert r.returncode == 0, r.stderr
    cmd = _transformers_command(r.stdout)
    assert str(tmp_path / "x") in cmd
    assert (f"vllm serve {tmp_path / 'x'}" if merge else "--enable-lora --lora-modules x=") in r.stdout
    env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)}
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    # it loaded the export and printed the generation: a tiny random model may generate only whitespace (a CI
    # run printed "\n"), so the print itself is what is checked, not its words
    assert out.stdout.endswith("\n") and "Traceback" not in out.stderr
    if not merge:  # report.md prints the same forms for the run's own adapter
        report = (run / "report.md").read_text()
        assert "## Serve it" in report and "--enable-lora" in report and "pipeline(\"text-generation\"" in report
