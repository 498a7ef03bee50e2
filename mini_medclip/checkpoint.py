"""Checkpoints: a folder that rebuilds a trained model without unpickling anything.

Layout of a checkpoint folder:

* `model.safetensors`: the weights (safetensors holds tensors only, so loading runs no code);
* `config.json`: the whole `Config`, its key, the package version, and free-form `meta` (training history,
  seconds, the model cache's extra key, ...);
* the tokenizer's files, from `save_pretrained`;
* `train_state.pt` (optional): optimizer, scheduler, step and RNG states, so training can resume. It is
  written with `torch.save` and read back with `weights_only=True`, which refuses to unpickle objects;
* `manifest.json`: the sha256 of every other file, so a truncated or edited file is caught on load.

A folder is written whole into a temporary sibling, fsynced, then swapped in with `os.replace`: a crash
leaves either the old checkpoint or the new one, never half of each.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import PreTrainedTokenizerFast

from . import __version__
from .config import Config
from .files import atomic_folder, sha256_file
from .models import MedCLIP

WEIGHTS, CONFIG, MANIFEST, TRAIN_STATE = "model.safetensors", "config.json", "manifest.json", "train_state.pt"


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be trusted: missing, corrupt, or built by another version/config."""


def save_checkpoint(folder, model: MedCLIP, tokenizer, cfg: Config, meta: dict | None = None, train_state: dict | None = None) -> Path:
    """Write model, tokenizer and config (and optionally the state to resume training) atomically."""
    folder = Path(folder)
    with atomic_folder(folder) as tmp:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, tmp / WEIGHTS)
        tokenizer.save_pretrained(tmp)
        info = {
            "package_version": __version__,
            "config_key": cfg.key(),
            "preset": cfg.preset,
            "data_seed": cfg.data.seed,
            "vocab_size": len(tokenizer),
            "config": cfg.to_dict(),
            "meta": meta or {},
        }
        (tmp / CONFIG).write_text(json.dumps(info, indent=2))
        if train_state is not None:
            torch.save(train_state, tmp / TRAIN_STATE)
        files = sorted(p.name for p in tmp.iterdir() if p.is_file())
        (tmp / MANIFEST).write_text(json.dumps({name: sha256_file(tmp / name) for name in files}, indent=2))
    return folder


def verify_checkpoint(folder) -> dict:
    """Check the manifest's hashes and the package version; return the parsed `config.json`."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(f"{manifest_path}: missing; expected a checkpoint folder written by save_checkpoint")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{manifest_path}: unreadable JSON ({err})") from None
    for name in (WEIGHTS, CONFIG):
        if name not in manifest:
            raise CheckpointError(f"{manifest_path}: does not list {name}")
    for name, expected in manifest.items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{path}: missing (listed in {MANIFEST})")
        if sha256_file(path) != expected:
            raise CheckpointError(f"{path}: sha256 differs from {MANIFEST}; the file is corrupt or was edited")
    try:
        info = json.loads((folder / CONFIG).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{folder / CONFIG}: unreadable JSON ({err})") from None
    if info.get("package_version") != __version__:
        raise CheckpointError(
            f"{folder / CONFIG}: written by mini_medclip {info.get('package_version')!r}; "
            f"expected {__version__!r} (retrain, or load it with that version)"
        )
    return info


def load_checkpoint(folder, device=None) -> tuple[MedCLIP, PreTrainedTokenizerFast, Config]:
    """Rebuild (model, tokenizer, cfg) from a checkpoint folder; the model is in eval mode."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such checkpoint folder")
    info = verify_checkpoint(folder)
    try:
        cfg = Config.from_dict(info["config"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{folder / CONFIG}: invalid config ({err})") from None
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    model = MedCLIP(cfg.model, vocab_size=info["vocab_size"], image_size=cfg.data.image_size)
    try:
        model.load_state_dict(load_file(folder / WEIGHTS), strict=True)
    except Exception as err:  # safetensors' header errors and torch's shape/key errors alike
        raise CheckpointError(f"{folder / WEIGHTS}: does not match {CONFIG} ({str(err).splitlines()[0]})") from None
    return model.to(device or "cpu").eval(), tokenizer, cfg


def load_train_state(folder) -> dict | None:
    """The resume state of a verified checkpoint folder, or None if it has none."""
    path = Path(folder) / TRAIN_STATE
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def checkpoint_meta(folder) -> dict:
    """The free-form `meta` of a verified checkpoint (history, seconds, cache key parts)."""
    return verify_checkpoint(folder)["meta"]
