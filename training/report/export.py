"""`tune-wizard export RUN_DIR [--merge] [--out DIR] [--base PATH]`: take a run's result out of the run folder.

The run's result is the output of its last finished stage (a `stage_end` event):
  a LoRA/QLoRA adapter  --merge: load its base (the cpt stage's model when there was one; the path is in
                        adapter_config.json, or --base), fold the adapter into the weights (merge_and_unload)
                        and save a standalone model plus tokenizer that AutoModelForCausalLM.from_pretrained
                        loads. Without --merge: a copy of the adapter with a README saying how to load it.
  a full model          (cpt only, or full-weight sft) is already standalone: it is copied, with a README.
A merged or full model carries a generation_config.json whose eos_token_id lists every token that ends an
answer (its EOS list plus the chat template's end-of-turn), so plain `model.generate()` stops there.
The export is written to a temporary folder and renamed into place, so a failed export leaves nothing
half-written; an existing, non-empty --out folder is never overwritten.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from training.events import read_events


class ExportError(Exception):
    """Bad input for an export: one line saying what to do. Exit status 2."""


def final_output(run: Path) -> dict:
    ends = [e for e in read_events(run / "events.jsonl") if e.get("event") == "stage_end"]
    if not ends:
        raise ExportError(f"{run}: no stage finished in this run, so there is nothing to export")
    last = ends[-1]
    path = run / last["output"]
    if not path.is_dir():
        raise ExportError(f"{path}: the output of stage {last['stage']} is missing; was it moved or deleted?")
    return {"stage": last["stage"], "kind": last.get("kind", "model"), "path": path}


def _target(run: Path, out: str | None, default: str) -> Path:
    target = Path(out).expanduser() if out else run / "export" / default
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ExportError(f"{target} already exists and is not empty; choose another --out or remove it")
    return target


def adapter_base(adapter: Path, base: str | None) -> str:
    if base:
        b = base
    else:
        try:
            b = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
        except (OSError, ValueError, KeyError):
            raise ExportError(f"{adapter}: no adapter_config.json naming the base model; give it with --base PATH")
    if b.startswith(("/", ".", "~")) and not (Path(b).expanduser() / "config.json").is_file():
        raise ExportError(f"the adapter's base model '{b}' is not there (was the run folder moved?); "
                          f"give its new place with --base PATH")
    return b


def _readme(kind: str, target: Path, src: dict, run: Path, base: str | None) -> str:
    head = f"# Exported from tune-wizard run `{run.name}`\n\nSource: stage `{src['stage']}`, `{src['path']}`.\n\n"
    if kind == "merged":
        return head + (f"The LoRA adapter was merged into its base (`{base}`): this folder is a standalone model.\n\n"
                       "```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n"
                       f"model = AutoModelForCausalLM.from_pretrained(\"{target}\")\n"
                       f"tok = AutoTokenizer.from_pretrained(\"{target}\")\n"
                       "ids = tok.apply_chat_template([{\"role\": \"user\", \"content\": \"Hello\"}],\n"
                       "                              add_generation_prompt=True, return_tensors=\"pt\", return_dict=True)\n"
                       "print(tok.decode(model.generate(**ids, max_new_tokens=64)[0]))\n```\n")
    if kind == "adapter":
        local = base is not None and base.startswith("/")
        return head + (f"A LoRA adapter. It needs its base model: `{base}`"
                       + (" (a folder on the machine that trained it: copy that folder along, or export with --merge "
                          "for one standalone model)" if local else "") + ".\n\n"
                       "```python\nfrom peft import PeftModel\n"
                       "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
                       f"base = AutoModelForCausalLM.from_pretrained(\"{base}\")\n"
                       f"model = PeftModel.from_pretrained(base, \"{target}\")\n"
                       f"tok = AutoTokenizer.from_pretrained(\"{target}\")  # carries the chat template of training\n"
                       "model = model.merge_and_unload()  # optional: fold the adapter into the weights\n```\n")
    return head + ("A full model (every weight trained), standalone as it is.\n\n"
                   "```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n"
                   f"model = AutoModelForCausalLM.from_pretrained(\"{target}\")\n"
                   f"tok = AutoTokenizer.from_pretrained(\"{target}\")\n```\n")


def _quiet() -> None:
    """A command-line export prints one line: no progress bars, no library chatter below errors."""
    import logging
    import os
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _merge_into(tmp: Path, adapter: Path, base: str) -> None:
    _quiet()
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # the base in its own dtype, never 4-bit: a QLoRA adapter is merged into full-precision weights
    model = AutoModelForCausalLM.from_pretrained(base, dtype="auto")
    model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    model.save_pretrained(str(tmp))
    # the tokenizer saved with the adapter has the chat template the model was fine-tuned with
    tok_src = adapter if (adapter / "tokenizer_config.json").is_file() else Path(base)
    AutoTokenizer.from_pretrained(str(tok_src)).save_pretrained(str(tmp))
    write_generation_config(tmp)


def write_generation_config(folder: Path) -> list[int]:
    """generation_config.json that stops where the model was trained to stop: its own EOS list, the tokenizer's
    EOS and the chat template's end-of-turn (`<|eot_id|>`, `<end_of_turn>`, `<|end|>`, ...); returns those ids."""
    from transformers import AutoTokenizer, GenerationConfig
    from training.tokens import stop_ids

    tok = AutoTokenizer.from_pretrained(str(folder))
    try:
        gen = GenerationConfig.from_pretrained(str(folder))
    except OSError:  # none saved: start from the model's config
        gen = GenerationConfig.from_model_config(_config(folder))
    stops = stop_ids(tok, gen)
    gen.eos_token_id = stops if len(stops) > 1 else stops[0]
    if gen.pad_token_id is None:
        gen.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else stops[0]
    if tok.bos_token_id is not None and gen.bos_token_id is None:
        gen.bos_token_id = tok.bos_token_id
    gen.save_pretrained(str(folder))
    return stops


def _config(folder: Path):
    from transformers import AutoConfig
    return AutoConfig.from_pretrained(str(folder))


def export(run: str | Path, merge: bool = False, out: str | None = None, base: str | None = None) -> tuple[Path, str]:
    """Export the run's result; returns (folder written, kind: merged | adapter | model)."""
    run = Path(run)
    if not (run / "recipe.yaml").is_file():
        raise ExportError(f"{run} is not a run folder (no recipe.yaml)")
    src = final_output(run)
    if src["kind"] == "adapter":
        kind = "merged" if merge else "adapter"
        base_model = adapter_base(src["path"], base)
    else:
        kind, base_model = "model", None
    target = _target(run, out, kind)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        if kind == "merged":
            _merge_into(tmp, src["path"], base_model)
        else:
            shutil.copytree(src["path"], tmp, dirs_exist_ok=True)
            if kind == "model":
                _quiet()
                write_generation_config(tmp)
        (tmp / "README.md").write_text(_readme(kind, target, src, run, base_model), encoding="utf-8")
        if target.exists():
            target.rmdir()  # empty, checked above
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target, kind


# ---------------------------------------------------------------- serve and push (issue 16)

def serve_commands(folder: Path, kind: str, base: str | None = None, repo_id: str | None = None) -> dict[str, str]:
    """{name: shell command} that serves or loads `folder` (merged | model: a standalone model; adapter: on `base`).

    The transformers form is run by the tests on what was exported; the vLLM form is printed, not run here."""
    import shlex
    from training.report.model_card import lora_rank
    name = shlex.quote((repo_id or folder.name).split("/")[-1])
    where = repo_id or str(folder)
    py = ("from transformers import pipeline; "  # double quotes inside, so the shell quoting stays readable
          f"p = pipeline(\"text-generation\", model={json.dumps(where)}); "
          'print(p([{"role": "user", "content": "Hello"}], max_new_tokens=64)[0]["generated_text"][-1]["content"])')
    out = {}
    if kind == "adapter":
        tmpl = folder / "chat_template.jinja"
        out["vLLM (OpenAI-compatible server, the adapter on its base)"] = (
            f"vllm serve {shlex.quote(str(base))} --enable-lora --lora-modules {name}={shlex.quote(where)}"
            f" --max-lora-rank {max(16, lora_rank(folder) or 16)}"
            + (f" --chat-template {shlex.quote(str(tmpl))}" if tmpl.is_file() and not repo_id else ""))
    else:
        out["vLLM (OpenAI-compatible server)"] = f"vllm serve {shlex.quote(where)} --served-model-name {name}"
    out["transformers (loads it and answers one prompt" + (", base and adapter" if kind == "adapter" else "") + ")"] = \
        f"python -c {shlex.quote(py)}"
    return out


def serve_lines(run: Path) -> list[str]:
    """The report's `Serve it` section: commands for the run's own result, in place."""
    try:
        src = final_output(run)
        base = adapter_base(src["path"], None) if src["kind"] == "adapter" else None
    except ExportError as e:
        return [f"Nothing to serve yet: {e}."]
    out = [f"The result of stage `{src['stage']}` (`{src['path']}`), as it is; `tune-wizard export` copies it out "
           "(`--merge` for one standalone folder) and prints the same commands for the copy.", ""]
    for name, cmd in serve_commands(src["path"], src["kind"], base).items():
        out += [f"{name}:", "", "```bash", cmd, "```", ""]
    return out


REPO_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$"


def hub_token(repo_id: str) -> str:
    """The token to push with (HF_TOKEN, or the one `hf auth login` stored), checked before any work is done."""
    import os
    import re
    if not re.match(REPO_ID, repo_id):
        raise ExportError(f"--push-to-hub {repo_id!r}: give the repository as ORG/NAME (your user name or an "
                          f"organisation, a slash, the model's name)")
    from huggingface_hub import get_token
    token = os.environ.get("HF_TOKEN") or get_token()
    if not token:
        raise ExportError(f"--push-to-hub {repo_id}: no Hugging Face token; set HF_TOKEN to a token with write access "
                          f"(https://huggingface.co/settings/tokens) or run `hf auth login`; nothing was exported")
    return token


def push_to_hub(folder: Path, repo_id: str, private: bool, token: str) -> str:
    """Create the repository if needed and upload the folder in one commit; returns the commit URL."""
    from huggingface_hub import HfApi
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                                 commit_message=f"Upload {folder.name} from tune-wizard")
    except Exception as e:  # HTTP errors, auth, network: one line, the exported folder stays where it is
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ExportError(f"push to {repo_id} failed ({first}); the export is in {folder}: fix the cause "
                          f"(token with write access? network?) and push again with --push-to-hub")
    return getattr(info, "commit_url", None) or str(info)


def write_model_card(target: Path, run: Path, kind: str, base: str | None, repo_id: str) -> None:
    """README.md of the exported folder becomes the Hub model card (generated from report.md)."""
    from training.report.model_card import model_card
    card = model_card(run, kind, base, repo_id, serve_commands(target, kind, base, repo_id))
    (target / "README.md").write_text(card, encoding="utf-8")
