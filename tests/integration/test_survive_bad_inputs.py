"""Bad input, one case at a time, through the real `tune-wizard` command.

Every case: exit status 2, the expected number of `tune-wizard: error:` lines (one, unless the input
really has several problems), each naming the recipe file and the key (and the line, or the data file
and its line, where there is one), no traceback, and not one byte or timestamp changed in the folders of
earlier runs, nor a new run folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import cli, tiny_recipe

CORPUS = "Module demo\n\nThe demo module explains how a recipe becomes a run folder.\n" * 40
PAIRS = [{"prompt": f"What is {i}?", "completion": f"{i} is a number."} for i in range(20)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Data files, a valid recipe, and an earlier run (stopped, resumable) whose files must never change."""
    d = tmp_path_factory.mktemp("bad")
    (d / "data").mkdir()
    (d / "data" / "corpus.txt").write_text(CORPUS)
    (d / "data" / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    base = tiny_recipe(d / "runs", 4, 4)
    base["stages"][0]["data"] = [str(d / "data" / "corpus.txt")]
    base["stages"][1]["data"] = str(d / "data" / "pairs.jsonl")
    (d / "good.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    earlier = make_run(d / "good.yaml")
    return {"dir": d, "base": base, "earlier": earlier}


def make_run(recipe_path: Path, finished: bool = False) -> Path:
    """A run folder as the runner makes it, with the events of a run that was stopped in its first stage."""
    from training.runtime.checkpoints import mark_complete
    from training.recipe_load import load_recipe
    from training.runtime.runner import create_run_dir, resolve
    run = create_run_dir(resolve(load_recipe(recipe_path), str(recipe_path)), str(recipe_path))
    (run / "events.jsonl").write_text(
        json.dumps({"v": 1, "t": 1.0, "event": "run_start"}) + "\n"
        + json.dumps({"v": 1, "t": 9.0, "event": "finished", "status": "stopped"}) + "\n")
    ck = run / "checkpoints" / "cpt" / "checkpoint-2"
    ck.mkdir(parents=True)
    (ck / "trainer_state.json").write_text("{}")
    mark_complete(ck, 2)
    if finished:
        (run / "cpt" / "model").mkdir(parents=True)
        (run / "sft" / "adapter").mkdir(parents=True)
    return run


def snapshot(*roots: Path) -> dict:
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")) if root.exists() else []:
            st = p.lstat()
            out[str(p)] = (st.st_mtime_ns, st.st_size, hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "")
    return out


def recipe_with(w, tmp: Path, edit=None, text: str | bytes | None = None) -> Path:
    p = tmp / "r.yaml"
    if text is not None:
        (p.write_bytes if isinstance(text, bytes) else p.write_text)(text)
        return p
    data = json.loads(json.dumps(w["base"]))
    if edit:
        edit(data)
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


def data_file(tmp: Path, name: str, content: str | bytes) -> str:
    p = tmp / name
    (p.write_bytes if isinstance(content, bytes) else p.write_text)(content)
    return str(p)


def cpt(data):
    return data["stages"][0]


def sft(data):
    return data["stages"][1]


# (id, setup(world, tmp) -> (argv after --recipe FILE, or a full argv list starting with "!"), expected, n_lines)
def case_list():
    C = []

    def add(cid, setup, expect, n=1):
        C.append(pytest.param(setup, expect, n, id=cid))

    # the recipe file itself
    add("yaml-syntax", lambda w, t: [recipe_with(w, t, text="name: demo\nmodel: {id: x\nstages: []\n")],
        [":3: ", "not valid YAML"])
    add("yaml-tab-indent", lambda w, t: [recipe_with(w, t, text="name: demo\nmodel:\n\tid: x\n")], ["not valid YAML"])
    add("yaml-list", lambda w, t: [recipe_with(w, t, text="- name: demo\n")], ["a recipe is a YAML mapping"])
    add("yaml-python-tag", lambda w, t: [recipe_with(w, t, text="name: !!python/object/apply:os.system ['true']\n")],
        [":1: ", "tag tag:yaml.org,2002:python/object/apply:os.system is not allowed"])
    add("empty-recipe", lambda w, t: [recipe_with(w, t, text="")], ["is empty", "recipes/demo.yaml"])
    add("comment-only-recipe", lambda w, t: [recipe_with(w, t, text="# nothing yet\n")], ["YAML mapping"])
    add("binary-recipe", lambda w, t: [recipe_with(w, t, text=b"\x00\x01\x02PK")], ["binary file"])
    add("recipe-not-found", lambda w, t: [t / "nope.yaml"], ["nope.yaml", "recipe file not found"])
    add("recipe-is-folder", lambda w, t: [t], ["is a folder"])
    # keys and types
    add("unknown-top-key", lambda w, t: [recipe_with(w, t, lambda d: d.update(seeds=3))], ["seeds: unknown key"])
    add("mistyped-stage-key", lambda w, t: [recipe_with(w, t, lambda d: cpt(d).update(learnig_rate=1e-5))],
        ["stages.0.learnig_rate: unknown key"])
    add("mistyped-lora-key", lambda w, t: [recipe_with(w, t, lambda d: sft(d)["lora"].update(rank=8))],
        ["stages.1.lora.rank: unknown key"])
    add("unknown-stage-type", lambda w, t: [recipe_with(w, t, lambda d: cpt(d).update(type="dpo"))],
        ["stages.0", "'cpt' or 'sft'"])
    add("lr-not-a-number", lambda w, t: [recipe_with(w, t, lambda d: cpt(d).update(learning_rate="fast"))],
        ["stages.0.learning_rate", "'fast'"])
    add("negative-max-steps", lambda w, t: [recipe_with(w, t, lambda d: cpt(d).update(max_steps=-3))],
        ["stages.0.max_steps"])
    add("float-batch", lambda w, t: [recipe_with(w, t, lambda d: sft(d).update(micro_batch_size=1.5))],
        ["stages.1.micro_batch_size"])
    add("lora-r-zero", lambda w, t: [recipe_with(w, t, lambda d: sft(d)["lora"].update(r=0))], ["stages.1.lora.r"])
    add("bad-run-name", lambda w, t: [recipe_with(w, t, lambda d: d.update(name="my run"))], ["name:"])
    add("version-2", lambda w, t: [recipe_with(w, t, lambda d: d.update(version=2))], ["version:"])
    add("eval-fraction-high", lambda w, t: [recipe_with(w, t, lambda d: cpt(d).update(eval_fraction=0.9))],
        ["stages.0.eval_fraction"])
    add("negative-budget", lambda w, t: [recipe_with(w, t, lambda d: d["hardware"].update(max_cost_usd=-5))],
        ["hardware.max_cost_usd"])
    add("duplicate-stage-names", lambda w, t: [recipe_with(w, t, lambda d: [s.update(name="x") for s in d["stages"]])],
        ["stage names must be unique"])
    add("set-without-equals", lambda w, t: [recipe_with(w, t), "--set", "stages.cpt.max_steps"],
        ["--set needs key.path=value"])
    add("set-unknown-key", lambda w, t: [recipe_with(w, t), "--set", "stages.cpt.max_step=3"],
        ["stages.0.max_step: unknown key"])
    # the model
    add("model-missing", lambda w, t: [recipe_with(w, t, lambda d: d.pop("model"))], ["model: required key is missing"])
    add("model-path-missing", lambda w, t: [recipe_with(w, t, lambda d: d["model"].update(id=str(t / "nope")))],
        ["model.id", "does not exist"])
    add("model-dir-no-config", lambda w, t: [recipe_with(w, t, lambda d: d["model"].update(id=str(t)))],
        ["model.id", "no config.json"])
    add("model-not-causal-lm", lambda w, t: [recipe_with(w, t, lambda d: d["model"].update(id=_bert(t)))],
        ["model.id", "BertForMaskedLM, not a causal language model"])
    add("model-unknown-builtin", lambda w, t: [recipe_with(w, t, lambda d: d["model"].update(id="builtin:gpt-5"))],
        ["model.id", "builtin:tiny-llama"])
    add("qlora-without-cuda", lambda w, t: [recipe_with(w, t, lambda d: sft(d).update(method="qlora"))],
        ["stages.1.method", "qlora needs an NVIDIA GPU"])
    # the corpus
    add("corpus-missing", lambda w, t: [recipe_with(w, t, lambda d: cpt(d).update(data=[str(t / "gone.txt")]))],
        ["stages.0.data.0", "gone.txt' does not exist"])
    add("corpus-empty", lambda w, t: [recipe_with(w, t, lambda d: cpt(d).update(data=[data_file(t, "e.txt", "")]))],
        ["stages.0.data.0", "e.txt is empty"])
    add("corpus-binary", lambda w, t: [recipe_with(w, t, lambda d: cpt(d).update(
        data=[data_file(t, "b.txt", b"\x7fELF\x00\x00\x01" * 50)]))], ["stages.0.data.0", "b.txt is binary"])
    add("corpus-not-utf8", lambda w, t: [recipe_with(w, t, lambda d: cpt(d).update(
        data=[data_file(t, "l.txt", "caf\xe9 cr\xe8me ".encode("latin-1") * 20)]))], ["l.txt is not UTF-8"])
    add("corpus-glob-matches-nothing", lambda w, t: [recipe_with(w, t, lambda d: cpt(d).update(
        data=[str(t / "*.md")]))], ["stages.0.data.0", "matches no"])
    add("corpus-jsonl-broken-line", lambda w, t: [recipe_with(w, t, lambda d: cpt(d).update(data=[data_file(
        t, "c.jsonl", '{"text": "a"}\n{"text": "b"}\n{"text": "c\n')]))], ["stages.0.data.0", "c.jsonl:3: not valid JSON"])
    add("corpus-jsonl-no-text-field", lambda w, t: [recipe_with(w, t, lambda d: cpt(d).update(data=[data_file(
        t, "c.jsonl", '{"body": "a"}\n')]))], ["c.jsonl:1: no string field 'text'"])
    # the pairs
    add("pairs-missing", lambda w, t: [recipe_with(w, t, lambda d: sft(d).update(data=str(t / "gone.jsonl")))],
        ["stages.1.data", "does not exist"])
    add("pairs-empty", lambda w, t: [recipe_with(w, t, lambda d: sft(d).update(data=data_file(t, "p.jsonl", "")))],
        ["stages.1.data", "p.jsonl is empty"])
    add("pairs-not-jsonl", lambda w, t: [recipe_with(w, t, lambda d: sft(d).update(data=data_file(t, "p.txt", "q a")))],
        ["stages.1.data", "must be .jsonl"])
    add("pairs-binary", lambda w, t: [recipe_with(w, t, lambda d: sft(d).update(
        data=data_file(t, "p.jsonl", b"\x00\x01" * 99)))], ["stages.1.data", "is binary"])
    add("pairs-broken-json", lambda w, t: [recipe_with(w, t, lambda d: sft(d).update(data=data_file(
        t, "p.jsonl", '{"prompt": "a", "completion": "b"}\n{"prompt": "a", \n')))],
        ["stages.1.data", "line 2: not valid JSON"])
    add("pairs-missing-field", lambda w, t: [recipe_with(w, t, lambda d: sft(d).update(data=data_file(
        t, "p.jsonl", '{"prompt": "only a prompt"}\n')))], ["line 1: no known fields"])
    add("pairs-unknown-role", lambda w, t: [recipe_with(w, t, lambda d: sft(d).update(data=data_file(
        t, "p.jsonl", json.dumps({"messages": [{"role": "user", "content": "hi"},
                                               {"role": "bot", "content": "hello"}]}) + "\n")))],
        ["line 1: messages[1] has role 'bot'"])
    add("chat-template-missing", lambda w, t: [recipe_with(w, t, lambda d: sft(d).update(
        chat_template=str(t / "chat.jinja")))], ["stages.1.chat_template", "is not a file"])
    # where the run would go
    add("output-dir-not-writable", lambda w, t: [recipe_with(w, t, lambda d: d.update(
        output_dir=data_file(t, "a-file", "x") + "/runs"))], ["output_dir: cannot write"])
    # resume
    add("resume-not-a-run", lambda w, t: [recipe_with(w, t), "--resume", str(t)], ["--resume", "is not a run folder"])
    add("resume-nothing-to-resume", lambda w, t: [recipe_with(w, t, lambda d: d.update(name="other")), "--resume"],
        ["--resume", "no unfinished run of recipe 'other'"])
    add("resume-recipe-changed", lambda w, t: [recipe_with(w, t, lambda d: cpt(d).update(learning_rate=1e-3)),
                                               "--resume", str(w["earlier"])],
        ["stages.0.learning_rate: is 0.002 in the run and 0.001 now"])
    add("resume-data-changed", _resume_data_changed, ["data: data file", "sha256 mismatch"])
    add("resume-finished-run", _resume_finished, ["--resume", "already finished"])
    add("resume-still-running", _resume_running, ["--resume", "is still running"])
    add("resume-without-recipe", lambda w, t: ["!", "--resume", str(w["earlier"])], ["need --recipe"])
    return C


def _bert(t: Path) -> str:
    d = t / "bert"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"architectures": ["BertForMaskedLM"], "model_type": "bert"}))
    return str(d)


def _own_run(w, t, finished=False, pairs_text=None):
    data = json.loads(json.dumps(w["base"]))
    data["output_dir"] = str(t / "runs")
    sft(data)["data"] = data_file(t, "own-pairs.jsonl", "".join(json.dumps(p) + "\n" for p in PAIRS))
    p = t / "r.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p, make_run(p, finished)


def _resume_data_changed(w, t):
    p, run = _own_run(w, t)
    with open(t / "own-pairs.jsonl", "a") as f:
        f.write(json.dumps({"prompt": "new row", "completion": "added after the run started"}) + "\n")
    return [p, "--resume", str(run)]


def _resume_finished(w, t):
    p, run = _own_run(w, t, finished=True)
    return [p, "--resume", str(run)]


def _resume_running(w, t):
    p, run = _own_run(w, t)
    # a live process that is this run's worker, as far as /proc can tell
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "training.runtime.worker", str(run)])
    (run / "pid").write_text(f"{proc.pid}\n")
    t.joinpath(".kill").write_text(str(proc.pid))
    return [p, "--resume", str(run)]


@pytest.mark.parametrize("setup,expect,n_lines", case_list())
def test_bad_input(world, tmp_path, setup, expect, n_lines):
    argv = setup(world, tmp_path)
    if argv[0] == "!":
        args = argv[1:]
        rfile = None
    else:
        rfile = str(argv[0])
        args = ["--recipe", rfile, *map(str, argv[1:])]
    roots = [world["dir"] / "runs", tmp_path / "runs"]
    before = snapshot(*roots)
    try:
        r = cli(*args, timeout=120)
    finally:
        if (tmp_path / ".kill").exists():
            os.kill(int((tmp_path / ".kill").read_text()), 9)
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert "Traceback" not in out, out
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("tune-wizard: error:")]
    assert len(errors) == n_lines, out
    if rfile:
        assert all(rfile in ln for ln in errors), out
    for s in expect:
        assert any(s in ln for ln in errors), (s, out)
    assert snapshot(*roots) == before, "an earlier run's files changed"


def test_trust_remote_code_is_off_by_default_and_warned_when_on(world, tmp_path):
    r = cli("--recipe", str(recipe_with(world, tmp_path)), "--dry-run")
    assert r.returncode == 0 and "trust_remote_code: false" in r.stdout and "warning" not in r.stderr
    r = cli("--recipe", str(recipe_with(world, tmp_path, lambda d: d["model"].update(trust_remote_code=True))),
            "--dry-run")
    assert r.returncode == 0
    assert "tune-wizard: warning: model.trust_remote_code is on" in r.stderr
