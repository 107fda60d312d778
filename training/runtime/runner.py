"""From a validated recipe to a run directory and a detached training process.

resolve()  builtin: paths -> real paths, data globs -> files, input checks that need the files
           (empty, binary, broken pairs, QLoRA without a GPU), all problems collected at once.
create_run_dir() writes the resolved recipe.yaml (sha256 of every data file, package versions).
launch()   starts `python -m training.runtime.worker RUN_DIR` (or `accelerate launch` of it when the recipe asks for
           more than one process) in its own session, output to train.log.

Nothing here imports torch: the face (headless or TUI) calls it and stays light.
"""
from __future__ import annotations

import datetime as _dt
import importlib.util
import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path

from training.data import DataError, iter_documents, sha256_file, sniff_text_file
from training.pairs import read_pairs
from training.recipe import BUILTIN, CptStage, Problem, Recipe, RecipeError, SftStage
from training.recipe_load import expand_data

GENERAL_REFERENCE = Path(__file__).resolve().parents[2] / "recipes" / "general_reference.txt"
PACKAGES = ("torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets", "liger-kernel")


def package_versions() -> dict[str, str | None]:
    out = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def nvidia_gpus() -> list[str]:
    """GPU names through NVML (cheap; no torch). Empty when there is no NVIDIA driver."""
    try:
        import pynvml
        pynvml.nvmlInit()
    except Exception:
        return []
    try:
        names = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            n = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
            names.append(n.decode() if isinstance(n, bytes) else n)
        return names
    except Exception:
        return []
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def _abs(p: str) -> str:
    return str(Path(os.path.expanduser(p)).resolve())


def _corpus_jsonl_problem(path: Path, text_field: str, max_lines: int = 200_000) -> str | None:
    """The first broken line of a .jsonl corpus file (its first `max_lines` lines; the worker checks the rest)."""
    try:
        for _, ln, _ in iter_documents([path], text_field):
            if ln >= max_lines:
                break
    except DataError as e:
        return str(e)
    return None


def _resolve_hub_ids(r: Recipe, problems: list[Problem]) -> dict[str, dict]:
    """Replace every `hf:` data id by its .jsonl snapshot; {id: revision, rows, file, ...} for recipe.yaml."""
    from training.hub_data import HubDataError, is_hf, resolve as resolve_id
    out: dict[str, dict] = {}
    for i, st in enumerate(r.stages):
        specs = st.data if isinstance(st, CptStage) else [st.data]
        for j, spec in enumerate(specs):
            if not is_hf(spec):
                continue
            try:
                hub = resolve_id(spec)
            except HubDataError as e:
                problems.append(Problem(path=f"stages.{i}.data" + (f".{j}" if isinstance(st, CptStage) else ""),
                                        message=str(e)))
                continue
            out[spec] = hub.record()
            if isinstance(st, CptStage):
                st.data[j] = hub.file
            else:
                st.data = hub.file
    return out


def resolve(recipe: Recipe, file: str | None = None, check_data: bool = True) -> Recipe:
    """A copy of the recipe with real absolute paths, and every input problem found before training."""
    from training.demo import resolve_builtin

    r = recipe.model_copy(deep=True)
    problems: list[Problem] = []
    mid = r.model.id
    if mid.startswith(BUILTIN):
        r.model.id = resolve_builtin(mid)
    elif mid.startswith((".", "/", "~")) or os.path.isdir(mid):
        r.model.id = _abs(mid)
    files_seen: dict[str, Path] = {}
    gpus = None
    datasets = _resolve_hub_ids(r, problems)
    for i, st in enumerate(r.stages):
        if isinstance(st, CptStage):
            specs = [resolve_builtin(s) if s.startswith(BUILTIN) else s for s in st.data]
            st.data = [_abs(s) if not any(c in s for c in "*?[") else os.path.abspath(os.path.expanduser(s))
                       for s in specs]
            if st.replay:  # absolute, and hashed with the data like the corpus
                st.replay.data = [_abs(s) if not any(c in s for c in "*?[") else os.path.abspath(os.path.expanduser(s))
                                  for s in st.replay.data]
                files_seen.update({str(f.resolve()): f for s in st.replay.data for f in expand_data(s)})
            readable, unreadable = 0, []
            for j, spec in enumerate(st.data):
                for f in expand_data(spec):
                    files_seen[str(f.resolve())] = f
                    if check_data and (why := sniff_text_file(f)):
                        # a file named on its own must be fixed; one inside a folder is skipped (and counted)
                        if Path(spec).resolve() == f.resolve():
                            problems.append(Problem(path=f"stages.{i}.data.{j}", message=f"{f} {why}; fix or remove it"))
                            readable += 1  # reported above; not again as "nothing readable"
                        else:
                            unreadable.append(f"{f} {why}")
                    elif check_data and f.suffix.lower() == ".jsonl" and (why := _corpus_jsonl_problem(f, st.text_field)):
                        problems.append(Problem(path=f"stages.{i}.data.{j}", message=why))
                    else:
                        readable += 1
            if check_data and unreadable and not readable:
                problems.append(Problem(path=f"stages.{i}.data", message=(
                    f"no readable text file: all {len(unreadable)} skipped (first: {unreadable[0]}); "
                    f"add UTF-8 .txt/.md/.jsonl/.parquet files")))
        elif isinstance(st, SftStage):
            st.data = _abs(resolve_builtin(st.data) if st.data.startswith(BUILTIN) else st.data)
            f = Path(st.data)
            files_seen[str(f)] = f
            if check_data:
                if why := sniff_text_file(f):
                    problems.append(Problem(path=f"stages.{i}.data", message=f"{f} {why}"))
                else:
                    try:
                        res = read_pairs(f, st.format)
                    except DataError as e:
                        problems.append(Problem(path=f"stages.{i}.data", message=str(e)))
                    else:
                        if res.invalid and not st.skip_invalid_rows:
                            shown = "; ".join(f"line {ln}: {why}" for ln, why in res.invalid[:3])
                            more = f" (+{len(res.invalid) - 3} more)" if len(res.invalid) > 3 else ""
                            problems.append(Problem(path=f"stages.{i}.data", message=(
                                f"{f}: {len(res.invalid)} bad rows: {shown}{more}; fix them or set "
                                f"skip_invalid_rows: true")))
                        elif not res.rows:
                            problems.append(Problem(path=f"stages.{i}.data", message=f"{f}: no valid pairs"))
            if st.method == "qlora":
                gpus = nvidia_gpus() if gpus is None else gpus
                if not gpus:
                    problems.append(Problem(path=f"stages.{i}.method", message=(
                        "qlora needs an NVIDIA GPU with CUDA (4-bit bitsandbytes) and none was found; "
                        "use method: lora on this machine")))
            if st.chat_template not in ("auto", "plain") and not Path(st.chat_template).is_file():
                problems.append(Problem(path=f"stages.{i}.chat_template",
                                        message=f"'{st.chat_template}' is not a file; use auto, plain or a .jinja file"))
    # the general reference text of the before/after measurements is hashed with the data
    r.eval.general_text = _abs(r.eval.general_text) if r.eval.general_text else str(GENERAL_REFERENCE)
    files_seen[r.eval.general_text] = Path(r.eval.general_text)
    if check_data and (why := sniff_text_file(Path(r.eval.general_text))):
        problems.append(Problem(path="eval.general_text", message=f"{r.eval.general_text} {why}; give a UTF-8 text file"))
    if r.hardware.strategy == "deepspeed-zero3" and importlib.util.find_spec("deepspeed") is None:
        problems.append(Problem(path="hardware.strategy", message=(
            "deepspeed-zero3 needs the deepspeed package, which is not installed; `pip install deepspeed` "
            "(on a CUDA machine) or use strategy: fsdp")))
    if r.hardware.strategy != "ddp" and not (gpus if gpus is not None else nvidia_gpus()):
        # on the CPU the Trainer runs plain data-parallel whatever accelerate is told: say so instead
        problems.append(Problem(path="hardware.strategy", message=(
            f"{r.hardware.strategy} shards the model across CUDA GPUs and none was found; "
            "use strategy: ddp on this machine")))
    problems += model_checks(r)
    if problems:
        raise RecipeError(problems, file)
    from training.plan.shapes import model_shape
    from training.runtime.defaults import apply_defaults, detect
    r.resolved = {"files": {k: None for k in sorted(files_seen)}, "datasets": datasets,
                  "defaults": apply_defaults(r, detect(), model_shape(r.model.id))}
    return r


def model_checks(r: Recipe) -> list[Problem]:
    """The model resolved before anything is launched (its config, bounded time), and what the recipe asks that
    it cannot do (a seq_len beyond its positions, LoRA targets that match none of its layers)."""
    from training.family import ModelError, model_problems, resolve_model
    try:
        cfg = resolve_model(r.model.id, r.model.revision)
    except ModelError as e:
        return [Problem(path="model.id", message=str(e).removeprefix("model.id: "))]
    except (OSError, ValueError) as e:
        return [Problem(path="model.id", message=f"its config.json cannot be read ({e}); is the download complete?")]
    return [Problem(path=path, message=msg) for path, msg in model_problems(r, cfg)]


def check_run_name(name: str) -> str | None:
    """Why --run-name cannot name a folder inside output_dir, or None."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or os.sep in name or name.startswith("~") \
            or os.path.isabs(name) or "\x00" in name:
        return (f"--run-name '{name}' must be a plain folder name (no '/', no '..', not absolute): the run folder "
                f"is made inside output_dir")
    return None


def new_run_dir(recipe: Recipe) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    root = Path(os.path.expanduser(recipe.output_dir))
    base = root / f"{recipe.name}-{stamp}"
    d, n = base, 1
    while d.exists():
        n += 1
        d = Path(f"{base}-{n}")
    return d


def create_run_dir(resolved: Recipe, source: str | None, name: str | None = None) -> Path:
    """Make the run folder (owner-only), hash the data, write recipe.yaml. Never touches another run.

    `name` fixes the folder's name (a multi-node run: every node must find the same folder)."""
    from training.recipe import dump_recipe
    from training.runtime.diskcheck import check_disk

    check_disk(resolved, source, (resolved.resolved or {}).get("preflight_disk"))  # refuses before anything is written
    root = Path(os.path.expanduser(resolved.output_dir))
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise RecipeError([Problem(path="output_dir", message=(
            f"cannot write to '{root}' ({e.strerror}); choose another output_dir or fix its permissions"))], source)
    if name is not None and (why := check_run_name(name)):
        raise RecipeError([Problem(path="", message=why)], source)
    run = root / name if name else new_run_dir(resolved)
    try:
        run.mkdir(mode=0o700)
    except FileExistsError:
        raise RecipeError([Problem(path="", message=(
            f"run folder '{run}' already exists; choose another --run-name (an earlier run is never reused)"))],
            source)
    (run / "checkpoints").mkdir(mode=0o700)
    files = {f: sha256_file(f) for f in resolved.resolved["files"]}
    resolved.resolved = {
        "run_id": run.name,
        "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "source_recipe": os.path.abspath(source) if source else None,
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "gpus": nvidia_gpus(),
        "versions": package_versions(),
        "files": {f: {"sha256": h, "bytes": os.path.getsize(f)} for f, h in files.items()},
        "datasets": resolved.resolved.get("datasets") or {},  # hf: ids: revision, rows, the snapshot trained on
        "defaults": resolved.resolved.get("defaults", []),  # speed settings chosen for this machine, with reasons
    }
    _write_private(run / "recipe.yaml", dump_recipe(resolved))
    return run


def write_private_atomic(path: Path, text: str) -> None:
    """Replace a file (owner-only) with new text: a temporary file renamed over it."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _write_private(tmp, text)
    os.replace(tmp, path)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def launch(run: Path, node_rank: int = 0, main_address: str | None = None,
           main_port: int | None = None) -> subprocess.Popen:
    """Start this node's training detached: its own session and process group, no terminal, output to
    train.log (train.node<K>.log on node K > 0 of a multi-node run, whose run folder is shared).

    One process: `python -m training.runtime.worker RUN`. More (or a sharded strategy): `accelerate launch` with
    the config written into the run folder; the pid file then names the launcher, whose children are the
    workers. Every rank's output goes to the same log; only rank 0 writes events."""
    from training.runtime.distributed import launch_argv, write_launch_files
    from training.recipe_load import load_recipe

    run = run.resolve()
    hw = load_recipe(run / "recipe.yaml", check_paths=False).hardware
    if hw.distributed and node_rank == 0:
        write_launch_files(run, hw, main_address)
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    # the worker must import this very checkout of the project, whatever the current directory is
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    suffix = f".node{node_rank}" if node_rank else ""
    log_path = run / f"train{suffix}.log"
    log = open(log_path, "ab", buffering=0)
    os.chmod(log_path, 0o600)
    try:
        proc = subprocess.Popen(launch_argv(run, hw, node_rank, main_address, main_port), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=str(run))
    finally:
        log.close()
    write_private_atomic(run / f"pid{suffix}", f"{proc.pid}\n")
    return proc
