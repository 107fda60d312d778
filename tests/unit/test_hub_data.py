"""hf: dataset ids on local folders (no network): snapshot, revision by content, the wizard's door."""
from __future__ import annotations

import json

import pytest

from training import hub_data


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNE_WIZARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(hub_data, "_memo", {})
    return tmp_path


def _hub_layout(folder, rows):
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_hub_layout_folder_snapshot_and_revision_follow_the_content(home):
    folder = home / "qa"
    _hub_layout(folder, [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(3)])
    first = hub_data.resolve(f"hf:{folder}")
    assert first.rows == 3 and first.source == "local-folder" and first.revision.startswith("sha256:")
    assert [json.loads(x)["prompt"] for x in open(first.file)] == ["q0", "q1", "q2"]
    from tui import engine  # the wizard's door reads the same snapshot
    assert engine.real_path(f"hf:{folder}") == first.file
    assert engine.scan_pairs(f"hf:{folder}")["valid"] == 3
    _hub_layout(folder, [{"prompt": "q", "completion": "a"}])
    hub_data._memo.clear()
    second = hub_data.resolve(f"hf:{folder}")
    assert second.revision != first.revision and second.rows == 1 and second.file != first.file


def test_saved_dataset_split_and_null_columns(home):
    import datasets
    rows = {"messages": [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], None],
            "prompt": [None, "p"], "completion": [None, "c"]}
    datasets.DatasetDict({"test": datasets.Dataset.from_dict(rows)}).save_to_disk(str(home / "saved"))
    with pytest.raises(hub_data.HubDataError, match=r"no split 'train' \(splits: test\)"):
        hub_data.resolve(f"hf:{home / 'saved'}")
    got = hub_data.resolve(f"hf:{home / 'saved'}:test")
    assert got.source == "saved-dataset" and got.fingerprint and got.rows == 2
    from training.pairs import read_pairs
    from training.hub_data import local_file  # the readers take files: an id reaches them as its snapshot
    res = read_pairs(local_file(f"hf:{home / 'saved'}:test"))  # a null column is an absent key: both rows are valid
    assert res.formats == {"messages": 1, "prompt_completion": 1} and not res.invalid


def test_missing_local_folder_says_so(home):
    with pytest.raises(hub_data.HubDataError, match="local dataset folder .* does not exist"):
        hub_data.resolve(f"hf:{home / 'nope'}")
