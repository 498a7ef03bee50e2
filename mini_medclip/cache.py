"""A model cache, so each chapter trains a configuration once and every later run (and the book build) reuses it.

An entry is a checkpoint folder (see `checkpoint.py`) under `$MINI_MEDCLIP_CACHE` (default
`~/.cache/mini_medclip`), named by a hash of everything that decides the weights:

* the whole config and the package version;
* `extra_key`: what the config does not say, e.g. a later chapter's attack settings;
* a data fingerprint: a hash of a few rendered phantoms and of the text pool, so a change in the renderer
  or the labeler invalidates old entries instead of silently reusing them.

A cached entry is loaded only after its manifest hashes, its version and its stored config and key check
out; anything else is reported with a warning and rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Callable

import torch

from . import __version__
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint, verify_checkpoint
from .config import Config
from .data.sources import data_fingerprint
from .runtime import cache_root, pick_device
from .train import TrainResult


def cache_key(cfg: Config, extra_key: dict | None = None) -> dict:
    """Everything an entry is keyed on, as JSON-able data (stored in the entry and compared on load)."""
    return {
        "config": cfg.to_dict(),
        "package_version": __version__,
        "extra_key": extra_key or {},
        "data_fingerprint": data_fingerprint(cfg.data),
    }


def entry_path(key: dict) -> Path:
    blob = json.dumps(key, sort_keys=True).encode()
    return cache_root() / f"{key['config']['preset']}-{hashlib.sha256(blob).hexdigest()[:16]}"


def _load_entry(path: Path, cfg: Config, key: dict, device) -> TrainResult:
    info = verify_checkpoint(path)
    stored = info["meta"].get("cache_key")
    if info["config"] != cfg.to_dict() or stored != key:
        raise CheckpointError(f"{path / 'config.json'}: stored config or cache key differs from the requested one")
    model, tokenizer, _ = load_checkpoint(path, device)
    return TrainResult(model, tokenizer, info["meta"]["history"], info["meta"]["train_seconds"], cache_key=key)


def cached_model(
    cfg: Config,
    *,
    device=None,
    extra_key: dict | None = None,
    build: Callable[[Config, torch.device], TrainResult],
) -> TrainResult:
    """The trained model for `cfg` (+ `extra_key`): from the cache, or built by `build(cfg, device)` and stored.

    Whatever `build` changes beyond `cfg` (poisoned data, a released encoder, a repair) must be named in
    `extra_key`; `experiments.protocols.pretrained_model` is the plain case, training on the embedded data.
    """
    device = torch.device(device) if device is not None else pick_device()
    key = cache_key(cfg, extra_key)
    path = entry_path(key)
    if path.exists():
        try:
            return _load_entry(path, cfg, key, device)
        except CheckpointError as err:
            warnings.warn(f"model cache entry {path} is unusable, rebuilding it: {err}", stacklevel=2)
    result = build(cfg, device)
    meta = {"history": result.history, "train_seconds": result.seconds, "cache_key": key}
    save_checkpoint(path, result.model, result.tokenizer, cfg, meta=meta)
    result.cache_key = key
    return result
