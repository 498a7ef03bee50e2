"""The rendered embedded data, kept on disk: uint8 safetensors plus JSON, sha256-verified.

Every chapter runs in its own process and needs the same 10,000 phantoms, which take tens of seconds to
render on two cores. A store entry is a folder `$MINI_MEDCLIP_CACHE/data/<key hash>/`:

* `pools.safetensors`: the training images (uint8) and labels, and each evaluation set's images, labels
  and targets (safetensors holds tensors only, so reading runs no code);
* `data.json`: the key it was built for (data config, data fingerprint, package version), the
  evaluation sets' class names, and the sha256 of `pools.safetensors`.

It is written atomically and read only after its key and hash check out; the caller renders again
otherwise. The key holds the data fingerprint, so phantoms of another renderer are never reused.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from ..files import atomic_folder, sha256_file
from ..runtime import cache_root
from .pools import EvalSet, InMemoryImagePool

STORE_DIR, POOLS, INFO = "data", "pools.safetensors", "data.json"


class DataStoreError(ValueError):
    """A store entry that cannot be used: unreadable, built for another key, or altered since it was written."""


def store_folder(key: dict) -> Path:
    blob = json.dumps(key, sort_keys=True).encode()
    return cache_root() / STORE_DIR / hashlib.sha256(blob).hexdigest()[:16]


def save_rendered(folder: Path, key: dict, image_pool: InMemoryImagePool, eval_sets: dict[str, EvalSet]) -> None:
    tensors = {"train/images": image_pool.images, "train/labels": image_pool.labels}
    for name, eval_set in eval_sets.items():
        tensors |= {f"{name}/images": eval_set.images.images, f"{name}/labels": eval_set.images.labels,
                    f"{name}/targets": eval_set.targets}
    with atomic_folder(folder) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp / POOLS)
        info = {"key": key, "class_names": {name: list(s.class_names) for name, s in eval_sets.items()},
                "sha256": sha256_file(tmp / POOLS)}
        (tmp / INFO).write_text(json.dumps(info, indent=1))


def load_rendered(folder: Path, key: dict) -> tuple[InMemoryImagePool, dict[str, EvalSet]]:
    """(training image pool, evaluation sets) from a store entry; `DataStoreError` if it cannot be trusted."""
    try:
        info = json.loads((folder / INFO).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DataStoreError(f"{folder / INFO}: unreadable ({err})") from err
    if info.get("key") != key:
        raise DataStoreError(f"{folder / INFO}: built for another key than the one requested")
    if not (folder / POOLS).is_file() or sha256_file(folder / POOLS) != info.get("sha256"):
        raise DataStoreError(f"{folder / POOLS}: missing, or its sha256 differs from the one in {INFO}")
    tensors = load_file(folder / POOLS)
    image_pool = InMemoryImagePool(tensors["train/images"], tensors["train/labels"])
    eval_sets = {
        name: EvalSet(name, tuple(classes), InMemoryImagePool(tensors[f"{name}/images"], tensors[f"{name}/labels"]),
                      tensors[f"{name}/targets"])
        for name, classes in info["class_names"].items()
    }
    return image_pool, eval_sets


__all__ = ["STORE_DIR", "DataStoreError", "load_rendered", "save_rendered", "store_folder"]
