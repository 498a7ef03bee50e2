"""Tensors plus JSON kept on disk, keyed and sha256-verified: results that cost seconds to minutes to recompute.

An entry is a folder `$MINI_MEDCLIP_CACHE/<kind>/<hash of its key>/`:

* `tensors.safetensors`: the result's tensors (safetensors holds tensors only, so reading runs no code);
* `entry.json`: the key it was computed for, the result's JSON part, and the sha256 of the tensors.

It is written atomically and read only after its key and hash check out; otherwise the result is computed
again (with a warning if an entry was there). A key must name everything the result depends on: the
rendered phantoms (kind "data") are keyed by their data config and the renderer's fingerprint, a defense's
scores (kind "results") by the victim's model-cache key and the defense's settings.
"""
from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .files import atomic_folder, sha256_file
from .runtime import cache_root

KINDS = ("data", "results")  # the folders of the cache root that hold store entries
ENTRY_NAME = re.compile(r"^[0-9a-f]{16}$")  # `entry_name`; `atomic_folder`'s temporary folders do not match
TENSORS, ENTRY = "tensors.safetensors", "entry.json"


class StoreError(ValueError):
    """An entry that cannot be used: unreadable, computed for another key, or altered since it was written."""


def entry_name(key: dict) -> str:
    """An entry's folder name: the first 16 hex digits of its key's sha256."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def entry_folder(kind: str, key: dict, root: Path | None = None) -> Path:
    if kind not in KINDS:
        raise ValueError(f"invalid store kind {kind!r}; expected one of: {', '.join(KINDS)}")
    return Path(root or cache_root()) / kind / entry_name(key)


def list_store_entries(root: Path | None = None) -> list[Path]:
    """Every entry folder of every kind under the cache root (verified or not; not the ones being written)."""
    root = Path(root or cache_root())
    return sorted(p for kind in KINDS if (root / kind).is_dir() for p in (root / kind).iterdir()
                  if p.is_dir() and ENTRY_NAME.match(p.name))


def save_entry(folder: Path, key: dict, tensors: dict[str, torch.Tensor], info: dict) -> None:
    with atomic_folder(folder) as tmp:
        save_file({name: t.contiguous() for name, t in tensors.items()}, tmp / TENSORS)
        entry = {"key": key, "info": info, "sha256": sha256_file(tmp / TENSORS)}
        (tmp / ENTRY).write_text(json.dumps(entry, indent=1))


def verify_entry(folder: Path) -> dict:
    """An entry's `entry.json` once its folder is named after its key and its tensors match its sha256.

    The name check means an entry moved under another key's name (by hand or in a bundle) is never served.
    """
    try:
        entry = json.loads((folder / ENTRY).read_text())
        named = entry_name(entry["key"])
        if not isinstance(entry["info"], dict):
            raise TypeError(f"info is {type(entry['info']).__name__}, expected an object")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise StoreError(f"{folder / ENTRY}: unreadable ({err})") from err
    if folder.name != named:
        raise StoreError(f"{folder}: its key belongs in a folder named {named}, not {folder.name}")
    if not (folder / TENSORS).is_file() or sha256_file(folder / TENSORS) != entry.get("sha256"):
        raise StoreError(f"{folder / TENSORS}: missing, or its sha256 differs from the one in {ENTRY}")
    return entry


def load_entry(folder: Path, key: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, info) of an entry; `StoreError` if it cannot be trusted."""
    entry = verify_entry(folder)
    if entry["key"] != key:
        raise StoreError(f"{folder / ENTRY}: computed for another key than the one requested")
    try:
        return load_file(folder / TENSORS), entry["info"]
    except SafetensorError as err:
        raise StoreError(f"{folder / TENSORS}: not a readable safetensors file ({err})") from err


def stored(kind: str, key: dict, compute: Callable[[], tuple[dict[str, torch.Tensor], dict]]) -> tuple[dict[str, torch.Tensor], dict]:
    """`compute()`'s (tensors, JSON-able info), from the store when an entry for `key` checks out, else computed and stored."""
    folder = entry_folder(kind, key)
    if folder.exists():
        try:
            return load_entry(folder, key)
        except StoreError as err:
            warnings.warn(f"{kind} store entry {folder} is unusable, computing it again: {err}", stacklevel=2)
    tensors, info = compute()
    save_entry(folder, key, tensors, info)
    return tensors, info


__all__ = ["ENTRY", "KINDS", "TENSORS", "StoreError", "entry_folder", "entry_name", "list_store_entries", "load_entry", "save_entry",
           "stored", "verify_entry"]
