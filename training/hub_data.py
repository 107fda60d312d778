"""Datasets by id: `hf:NAME[@REVISION][:SPLIT]` wherever a corpus or pairs path is taken.

NAME is a Hugging Face Hub dataset id (`org/name`) or a local dataset folder: one saved by
`datasets.Dataset.save_to_disk` / `DatasetDict.save_to_disk`, or a folder in the Hub layout (data files,
e.g. `data/train-00000-of-00001.parquet`, that `datasets.load_dataset(folder)` reads). SPLIT defaults to
`train`.

The rows are read through `datasets` in streaming mode (no Arrow copy of the whole dataset lands in the
cache) and written once, as they come, to a `.jsonl` snapshot under $TUNE_WIZARD_HOME/hf-data/, named by
the resolved revision. Everything downstream (scan, the stages, resume's sha256 check) then reads that
file as a local corpus or pairs file: the same document rule, the same dedup, the same format detection.

The resolved revision is the Hub commit sha (or, offline, the sha of the cached snapshot); for a local
folder it is the sha256 of its files' contents (`sha256:...`), and for a `save_to_disk` folder also its
`datasets` fingerprint. Unknown, gated or unreachable ids raise HubDataError (a DataError: one line,
exit status 2) before anything is launched. Nothing here imports `datasets` until an `hf:` id is used.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from training.data import DataError

PREFIX = "hf:"
TIMEOUT_S = float(os.environ.get("TUNE_WIZARD_HUB_TIMEOUT", "10"))
_SPEC = re.compile(r"^(?P<name>[^@:]+?)(?:@(?P<rev>[^:@]+))?(?::(?P<split>[A-Za-z0-9_.\-]+))?$")
_memo: dict[str, "HubData"] = {}


class HubDataError(DataError):
    """An `hf:` id that cannot be used: one line saying which and what to do."""


@dataclass
class HubData:
    id: str  # the spec as written
    name: str
    split: str
    revision: str  # resolved: commit sha, or sha256:... of a local folder
    rows: int
    file: str  # the .jsonl snapshot the run reads
    source: str  # hub | hub-cache | local-folder | saved-dataset
    fingerprint: str | None = None

    def record(self) -> dict:
        return asdict(self)


def is_hf(spec: object) -> bool:
    return str(spec).startswith(PREFIX)


def parse(spec: str) -> tuple[str, str | None, str]:
    m = _SPEC.match(spec[len(PREFIX):]) if is_hf(spec) else None
    if not m:
        raise HubDataError(f"{spec}: not a dataset id; write hf:NAME[@REVISION][:SPLIT], e.g. hf:org/name@main:train")
    return m["name"], m["rev"], m["split"] or "train"


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _is_local(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or os.path.isdir(name)


def _folder_sha(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and ".cache" not in p.parts):
        h.update(str(f.relative_to(folder)).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return "sha256:" + h.hexdigest()


def _quiet() -> None:
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import logging
    logging.getLogger("datasets").setLevel(logging.ERROR)


def _pick_split(spec: str, splits: list[str], split: str) -> None:
    if split not in splits:
        raise HubDataError(f"{spec}: no split '{split}' (splits: {', '.join(splits) or 'none'}); "
                           f"name one after a colon, e.g. hf:NAME:{splits[0] if splits else 'train'}")


def _open_local(spec: str, folder: Path, split: str):
    """(rows iterable, source, fingerprint) for a local folder."""
    import datasets
    if (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file():
        try:
            ds = datasets.load_from_disk(str(folder))
        except Exception as e:  # datasets raises several types for a damaged folder
            raise HubDataError(f"{spec}: {folder} cannot be read as a saved dataset ({str(e).splitlines()[0]}); "
                               f"save it again with save_to_disk")
        if isinstance(ds, datasets.DatasetDict):
            _pick_split(spec, list(ds), split)
            ds = ds[split]
        return ds, "saved-dataset", ds._fingerprint
    try:
        builder = datasets.load_dataset_builder(str(folder))
        splits = list(builder.config.data_files or {})
        _pick_split(spec, splits, split)
        return datasets.load_dataset(str(folder), split=split, streaming=True), "local-folder", None
    except HubDataError:
        raise
    except Exception as e:
        raise HubDataError(f"{spec}: {folder} is not a dataset folder datasets can read ({str(e).splitlines()[0]}); "
                           f"give a folder saved with save_to_disk or holding .parquet/.jsonl/.csv data files")


def _hub_revision(spec: str, name: str, revision: str | None) -> tuple[str, str]:
    """(commit sha, source) of a Hub dataset, or HubDataError saying which problem and what to do."""
    from huggingface_hub import errors
    if _offline():
        from huggingface_hub import snapshot_download
        try:
            path = snapshot_download(name, repo_type="dataset", revision=revision, local_files_only=True)
        except Exception:
            raise HubDataError(f"{spec}: not in the local Hugging Face cache and offline mode is on (HF_HUB_OFFLINE / "
                               f"HF_DATASETS_OFFLINE); download it once with the network on, or give a local "
                               f"dataset folder: hf:/path/to/folder")
        return Path(path).name, "hub-cache"
    from huggingface_hub import HfApi
    try:
        info = HfApi().dataset_info(name, revision=revision, timeout=TIMEOUT_S, files_metadata=True)
    except errors.GatedRepoError:
        raise HubDataError(f"{spec}: the dataset is gated; accept its terms on https://huggingface.co/datasets/{name} "
                           f"and set HF_TOKEN to a token of that account")
    except errors.RevisionNotFoundError:
        raise HubDataError(f"{spec}: revision '{revision}' not found in {name}; give a branch, tag or commit that exists")
    except errors.RepositoryNotFoundError:
        raise HubDataError(f"{spec}: no dataset '{name}' on the Hub (or it is private: set HF_TOKEN); check the id")
    except errors.HFValidationError:
        raise HubDataError(f"{spec}: '{name}' is not a valid dataset id (org/name) nor an existing local folder")
    except Exception as e:  # connection refused, DNS, timeouts: the Hub cannot be reached
        raise HubDataError(f"{spec}: the Hub cannot be reached ({type(e).__name__}); check the network or "
                           f"HF_ENDPOINT, or give a local dataset folder: hf:/path/to/folder")
    _check_disk(spec, info.siblings or [])
    return info.sha, "hub"


# a .jsonl snapshot holds the text uncompressed: parquet files grow about this much (a cautious guess)
GROWTH = {".parquet": 3.0, ".arrow": 1.2, ".jsonl": 1.0, ".json": 1.0, ".csv": 1.2, ".txt": 1.1, ".gz": 4.0,
          ".zst": 5.0}


def _check_disk(spec: str, siblings: list) -> None:
    """Refuse before downloading when the snapshot cannot fit where it would be written."""
    import shutil
    from training.demo import home
    need = sum((getattr(f, "size", None) or 0) * GROWTH.get(Path(f.rfilename).suffix.lower(), 0.0) for f in siblings)
    where = home()
    probe = next((p for p in [where, *where.parents] if p.exists()), Path("/"))
    free = shutil.disk_usage(probe).free
    if need > free:
        raise HubDataError(f"{spec}: its text needs about {need / 1e9:,.1f} GB on disk for the snapshot and "
                           f"{where} has {free / 1e9:,.1f} GB free; set TUNE_WIZARD_HOME to a larger disk, or "
                           f"name a smaller split or a pre-filtered copy of the dataset")


def resolve(spec: str) -> HubData:
    """Check the id, read its rows once into a .jsonl snapshot (cached by revision), return what was read."""
    if spec in _memo:
        return _memo[spec]
    name, revision, split = parse(spec)
    _quiet()
    if _is_local(name):
        folder = Path(os.path.expanduser(name)).resolve()
        if not folder.is_dir():
            raise HubDataError(f"{spec}: local dataset folder {folder} does not exist; check the path")
        sha = _folder_sha(folder)
        rows, source, fingerprint = _open_local(spec, folder, split)
        key_name = folder.name
    else:
        sha, source = _hub_revision(spec, name, revision)
        fingerprint = None
        key_name = name.replace("/", "--")
        rows = None
    from training.demo import home
    out = home() / "hf-data" / f"{key_name}-{split}-{sha.split(':')[-1][:16]}.jsonl"
    if not out.is_file():
        if rows is None:
            rows = _hub_rows(spec, name, sha, split, source)
        _write_jsonl(spec, rows, out)
    n = _count_lines(out)
    if n == 0:
        raise HubDataError(f"{spec}: split '{split}' has no rows")
    _memo[spec] = HubData(id=spec, name=name, split=split, revision=sha, rows=n, file=str(out), source=source,
                          fingerprint=fingerprint)
    return _memo[spec]


def _hub_rows(spec: str, name: str, sha: str, split: str, source: str):
    import datasets
    try:
        if source == "hub-cache":
            from huggingface_hub import snapshot_download
            folder = snapshot_download(name, repo_type="dataset", revision=sha, local_files_only=True)
            return _open_local(spec, Path(folder), split)[0]
        return datasets.load_dataset(name, revision=sha, split=split, streaming=True)
    except HubDataError:
        raise
    except ValueError as e:  # an unknown split
        raise HubDataError(f"{spec}: {str(e).splitlines()[0]}")


def _write_jsonl(spec: str, rows, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                # a column that is null in this row is absent from it: Arrow gives every row every column, so a
                # set mixing messages rows and prompt/completion rows would otherwise look broken to read_pairs
                row = {k: v for k, v in row.items() if v is not None}
                f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        os.replace(tmp, out)
    except OSError as e:
        raise HubDataError(f"{spec}: cannot write its snapshot to {out.parent} ({e.strerror}); free disk space or "
                           f"set TUNE_WIZARD_HOME to a larger disk")
    finally:
        if tmp.exists():
            tmp.unlink()


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 22), b""))


def local_file(path):
    """The .jsonl snapshot for an `hf:` id, the path itself otherwise (the hook of the data readers)."""
    return Path(resolve(str(path)).file) if is_hf(path) else path
