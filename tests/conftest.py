"""Shared fixtures: an empty model cache for every test, and the tiny data in place of the embedded phantoms."""
from __future__ import annotations

import importlib
import sys

import pytest

from helpers import tiny_data

# Every module that reads the embedded data; `tiny_embedded_data` replaces it in each of them.
_READERS = ("mini_medclip.data.embedded", "mini_medclip.data.sources")


@pytest.fixture(autouse=True)
def isolated_model_cache(tmp_path_factory, monkeypatch):
    folder = tmp_path_factory.mktemp("model-cache")
    monkeypatch.setenv("MINI_MEDCLIP_CACHE", str(folder))
    return folder


@pytest.fixture
def tiny_embedded_data(monkeypatch):
    """`embedded_data(cfg)` returns `tiny_data` at the config's image size, wherever it is called from.

    The poisoning protocol reads the pool's labels without rendering it (`_training_labels`); it gets the
    tiny pool's labels too, so poisoned indices refer to the tiny pool. Returns the fake.
    """
    def fake(cfg):
        return tiny_data(size=cfg.data.image_size)

    for name in _READERS:
        module = importlib.import_module(name)
        monkeypatch.setattr(module, "embedded_data", fake)
    monkeypatch.setattr(sys.modules["mini_medclip.experiments.protocols"], "_training_labels", lambda cfg: fake(cfg)[0].labels)
    return fake
