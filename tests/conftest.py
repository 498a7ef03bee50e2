"""Shared fixtures: every test gets its own empty model cache, so no test reads or writes the real one."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def isolated_model_cache(tmp_path_factory, monkeypatch):
    folder = tmp_path_factory.mktemp("model-cache")
    monkeypatch.setenv("MINI_MEDCLIP_CACHE", str(folder))
    return folder
