"""The files that the torchxrayvision wheel ships (reports, CheXpert labels, lung masks), found without importing it.

Importing torchxrayvision costs seconds (it pulls in its models and scikit-image); the course only reads
data files from its folder, so it asks the import system where the package lives instead.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path


def torchxrayvision_file(name: str) -> Path:
    """The path of `name` in the installed torchxrayvision's data folder; raises if the package is missing."""
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"{name} ships with the torchxrayvision wheel, which is not installed; run `pip install torchxrayvision`"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data" / name
