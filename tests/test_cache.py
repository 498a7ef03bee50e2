"""The model cache: a hit loads without training; a miss, a corrupt entry or a mismatched entry trains again."""
from __future__ import annotations

import json

import pytest
import torch

from mini_medclip.data import embedded
from mini_medclip.cache import cache_key, cached_model, data_fingerprint, entry_path
from mini_medclip.checkpoint import CONFIG, MANIFEST, WEIGHTS
from mini_medclip.files import sha256_file
from mini_medclip.train import train
from helpers import tiny_config, tiny_data


@pytest.fixture
def builds(tmp_path, monkeypatch):
    """A cache in tmp_path and a fast build function that records its calls."""
    monkeypatch.setenv("MINI_MEDCLIP_CACHE", str(tmp_path / "cache"))
    data = tiny_data()
    calls = []

    def build(cfg, device):
        calls.append(cfg)
        return train(cfg, *data, device=device, progress=False)

    return build, calls


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _equal(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_miss_then_hit(builds, tmp_path):
    build, calls = builds
    cfg = tiny_config()
    first = cached_model(cfg, device="cpu", build=build)
    assert len(calls) == 1 and entry_path(cache_key(cfg)).parent == tmp_path / "cache"
    second = cached_model(cfg, device="cpu", build=build)
    assert len(calls) == 1  # loaded, not trained
    assert _equal(_state(first.model), _state(second.model))
    assert second.history == first.history and second.seconds == first.seconds
    # Another config or another extra key is another entry.
    cached_model(tiny_config(train__seed=1), device="cpu", build=build)
    cached_model(cfg, device="cpu", build=build, extra_key={"attack": "badmatch"})
    assert len(calls) == 3
    assert len(list((tmp_path / "cache").iterdir())) == 3


def test_a_truncated_entry_is_reported_and_rebuilt(builds):
    build, calls = builds
    cfg = tiny_config()
    cached_model(cfg, device="cpu", build=build)
    weights = entry_path(cache_key(cfg)) / WEIGHTS
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.warns(UserWarning, match="sha256 differs"):
        rebuilt = cached_model(cfg, device="cpu", build=build)
    assert len(calls) == 2 and rebuilt.model is not None
    cached_model(cfg, device="cpu", build=build)  # the rebuilt entry is a valid hit
    assert len(calls) == 2


def test_unreadable_json_is_reported_and_rebuilt(builds):
    build, calls = builds
    cfg = tiny_config()
    cached_model(cfg, device="cpu", build=build)
    (entry_path(cache_key(cfg)) / MANIFEST).write_text("{not json")
    with pytest.warns(UserWarning, match="unreadable JSON"):
        cached_model(cfg, device="cpu", build=build)
    assert len(calls) == 2


def test_an_entry_whose_stored_config_differs_is_rebuilt(builds):
    build, calls = builds
    cfg = tiny_config()
    cached_model(cfg, device="cpu", build=build)
    folder = entry_path(cache_key(cfg))
    info = json.loads((folder / CONFIG).read_text())
    info["config"]["train"]["lr"] = 0.5  # consistent hashes, wrong content: as if another run wrote here
    (folder / CONFIG).write_text(json.dumps(info))
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest[CONFIG] = sha256_file(folder / CONFIG)
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match="stored config or cache key differs"):
        cached_model(cfg, device="cpu", build=build)
    assert len(calls) == 2


def test_the_data_fingerprint_follows_the_renderer_and_the_data_config(monkeypatch):
    cfg = tiny_config()
    base = data_fingerprint(cfg.data)
    assert base == data_fingerprint(cfg.data)
    assert base != data_fingerprint(tiny_config(data__seed=1).data)
    monkeypatch.setattr(embedded, "render", lambda labels, size, seed: torch.zeros(len(labels), 1, size, size))
    assert data_fingerprint(cfg.data) == base  # remembered for the process ...
    embedded.phantom_fingerprint.cache_clear()
    assert data_fingerprint(cfg.data) != base  # ... and recomputed from the renderer's output
    embedded.phantom_fingerprint.cache_clear()


def test_the_data_fingerprint_follows_the_wheel_files_the_data_is_made_from(monkeypatch, tmp_path):
    """A torchxrayvision release with another label table must not reuse models trained on the old one,
    even where the few rendered phantoms of the fingerprint happen to come out the same."""
    cfg = tiny_config()
    base = data_fingerprint(cfg.data)
    assert set(embedded.wheel_files()) == {"NLMCXR_reports.tgz", "chexpert_train.csv.gz", "semantic_masks_v7labs_lungs.zip"}
    edited = tmp_path / "chexpert_train.csv.gz"
    edited.write_bytes(embedded.chexpert_table_path().read_bytes() + b"\n")
    monkeypatch.setattr(embedded, "chexpert_table_path", lambda: edited)
    embedded.phantom_fingerprint.cache_clear()
    try:
        assert data_fingerprint(cfg.data) != base
    finally:
        embedded.phantom_fingerprint.cache_clear()
