"""The tensor store: an entry is read back only for its own key and only while its sha256 checks out."""
from __future__ import annotations

import pytest
import torch

from mini_medclip.store import StoreError, entry_folder, list_store_entries, load_entry, stored


def _compute(calls):
    def compute():
        calls.append(1)
        return {"scores": torch.arange(5.0)}, {"note": "five scores"}
    return compute


def test_a_result_is_computed_once_per_key_and_read_back_exactly(isolated_model_cache):
    calls = []
    first = stored("results", {"victim": "a"}, _compute(calls))
    again = stored("results", {"victim": "a"}, _compute(calls))
    assert len(calls) == 1 and torch.equal(again[0]["scores"], first[0]["scores"]) and again[1] == first[1]
    stored("results", {"victim": "b"}, _compute(calls))
    assert len(calls) == 2
    assert entry_folder("results", {"victim": "a"}).parent == isolated_model_cache / "results"


def test_an_altered_or_foreign_entry_is_never_read(isolated_model_cache):
    calls = []
    stored("results", {"victim": "a"}, _compute(calls))
    folder = entry_folder("results", {"victim": "a"})
    with pytest.raises(StoreError, match="another key"):
        load_entry(folder, {"victim": "b"})
    tensors = folder / "tensors.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:-4] + bytes(4))
    with pytest.warns(UserWarning, match="sha256 differs"):
        result = stored("results", {"victim": "a"}, _compute(calls))
    assert len(calls) == 2 and torch.equal(result[0]["scores"], torch.arange(5.0))


def test_an_unknown_kind_names_the_valid_ones():
    with pytest.raises(ValueError, match="'models'.*data, results"):
        entry_folder("models", {})


def _rewrite(folder, edit):
    """Edit an entry as a hand or a forged bundle would, keeping its hash consistent."""
    import hashlib
    import json

    entry = json.loads((folder / "entry.json").read_text())
    edit(folder, entry)
    entry["sha256"] = hashlib.sha256((folder / "tensors.safetensors").read_bytes()).hexdigest()
    (folder / "entry.json").write_text(json.dumps(entry))


@pytest.mark.parametrize("edit, problem", [
    (lambda folder, entry: entry.pop("info"), "unreadable"),
    (lambda folder, entry: (folder / "tensors.safetensors").write_bytes(b"not safetensors"), "not a readable safetensors"),
])
def test_an_entry_that_verifies_but_cannot_be_read_is_computed_again(isolated_model_cache, edit, problem):
    calls = []
    stored("results", {"victim": "a"}, _compute(calls))
    _rewrite(entry_folder("results", {"victim": "a"}), edit)
    with pytest.warns(UserWarning, match=problem):
        result = stored("results", {"victim": "a"}, _compute(calls))
    assert len(calls) == 2 and torch.equal(result[0]["scores"], torch.arange(5.0))


def test_folders_being_written_are_not_listed_as_entries(isolated_model_cache):
    stored("results", {"victim": "a"}, _compute([]))
    (isolated_model_cache / "results" / ".0123456789abcdef.tmp-x").mkdir()
    assert list_store_entries() == [entry_folder("results", {"victim": "a"})]
