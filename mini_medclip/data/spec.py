"""A data spec: one small JSON file that points the command line (and `Config.data.source`) at real data.

The adapters (`adapters.py`) are Python functions; a spec says which of them to call on which files, so
that `train`, `evaluate`, `defend` and `reproduce` run on real radiographs with one flag, `--data SPEC`.
Paths in a spec are read relative to the spec's own folder. Three formats, one per adapter family:

    {"format": "medclip", "images": "train.csv", "sentences": "sentences.csv", "image_root": "images",
     "eval": {"five_class": {"csv": "chexpert_5x200.csv", "classes": ["Atelectasis", "Cardiomegaly", ...]}}}
    {"format": "torchxrayvision", "dataset": {"class": "RSNA_Pneumonia_Dataset", "imgpath": "png", ...},
     "eval": {"rsna": {"dataset": {"class": ..., ...}, "pathology": "Pneumonia"}}}
    {"format": "medmnist", "npz": "chestmnist.npz", "train_split": "train", "eval_split": "test"}

torchxrayvision and MedMNIST carry no text: their sentence pool is a MedCLIP sentence CSV given as
`sentences`, or by default the embedded Indiana University report sentences. `bad_images` says what an
unreadable image does: "fail" (the default: the run stops at the first one read, naming it) or "skip"
(every image is decoded once before training; unreadable ones are left out and counted in the data
card). The first evaluation set listed is the main one (the validation curve, retrieval, linear probe).
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..files import sha256_file
from ..registry import build_named, check_choice
from . import adapters
from .labels import CHEXPERT_LABELS, label_indices
from .pools import EvalSet, TextPool

BAD_IMAGE_POLICIES = {"fail": "stop at the first unreadable image, naming it",
                      "skip": "decode every image before training, leave out and count the unreadable ones"}
FORMAT_KEYS = {  # format -> (required keys, optional keys)
    "medclip": (("images", "sentences", "eval"), ("image_root", "bad_images")),
    "torchxrayvision": (("dataset", "eval"), ("sentences", "bad_images")),
    "medmnist": (("npz",), ("flavour", "train_split", "eval_split", "sentences", "bad_images")),
}
# Keys whose values are paths (read against the spec's folder), wherever they appear in a spec.
PATH_KEYS = ("images", "sentences", "image_root", "csv", "npz", "imgpath", "csvpath")


@dataclass
class SpecData:
    image_pool: adapters.SquareImagePool
    text_pool: TextPool
    eval_sets: dict[str, EvalSet]
    card: dict  # what was read: the spec, its files with their sha256, row counts, images left out


def read_spec(path) -> dict:
    """The spec's JSON with its keys checked and its paths made absolute; errors name the file and the key."""
    path = adapters._existing_file(path)
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a JSON data spec ({err}); expected an object such as "
                         '{"format": "medclip", "images": ..., "sentences": ..., "eval": {...}}') from err
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: holds a JSON {type(spec).__name__}; expected an object with a \"format\" key")
    check_choice(f"format in {path}:", spec.get("format"), FORMAT_KEYS)
    required, optional = FORMAT_KEYS[spec["format"]]
    missing = [key for key in required if key not in spec]
    unknown = sorted(set(spec) - {"format", *required, *optional})
    if missing or unknown:
        problem = f"missing key(s) {missing}" if missing else f"unknown key(s) {unknown}"
        raise ValueError(f"{path}: {problem} for format {spec['format']!r}; expected {', '.join(required)}"
                         + (f" and optionally {', '.join(optional)}" if optional else ""))
    check_choice(f"bad_images in {path}:", spec.get("bad_images", "fail"), BAD_IMAGE_POLICIES)
    if "eval" in spec and (not isinstance(spec["eval"], dict) or not spec["eval"]):
        raise ValueError(f"{path}: \"eval\" is {spec['eval']!r}; expected an object naming at least one evaluation set")
    return {**_absolute_paths(spec, path.parent), "spec": str(path.absolute())}


def _absolute_paths(value, folder: Path, key: str | None = None):
    if isinstance(value, dict):
        return {k: _absolute_paths(v, folder, k) for k, v in value.items()}
    if key in PATH_KEYS and isinstance(value, str):
        return str(folder / value)  # an absolute value stays as it is
    return value


def spec_files(spec: dict) -> list[str]:
    """The files (not image folders) a spec reads: their digests identify the data."""
    found = []

    def walk(value, key=None):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif key in PATH_KEYS and key not in ("image_root", "imgpath"):
            found.append(value)

    walk(spec)
    return sorted(set(found))


def spec_fingerprint(path) -> str:
    """A hash of the spec and of every file it lists (the image files themselves are not read: a pool of
    377,000 would take minutes; their paths and labels are in the CSVs that are hashed)."""
    spec = read_spec(path)
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode())
    for file in spec_files(spec):
        digest.update(sha256_file(adapters._existing_file(file)).encode())
    return digest.hexdigest()[:16]


def load_spec_data(path, image_size: int) -> SpecData:
    """The pools and evaluation sets a spec describes, at `image_size` (built once per spec content and size)."""
    return _load(str(Path(path).absolute()), image_size, spec_fingerprint(path))


@functools.lru_cache(maxsize=2)
def _load(path: str, image_size: int, fingerprint: str) -> SpecData:
    spec = read_spec(path)
    builder = {"medclip": _medclip, "torchxrayvision": _torchxrayvision, "medmnist": _medmnist}[spec["format"]]
    image_pool, text_pool, eval_sets = builder(spec, image_size)
    skipped = {}
    if spec.get("bad_images", "fail") == "skip":
        image_pool, skipped["image_pool"] = _readable(image_pool, "training images")
        for name, eval_set in eval_sets.items():
            rows, skipped[name] = _readable_rows(eval_set.images, f"{name} images")
            eval_sets[name] = EvalSet(name, eval_set.class_names, eval_set.images.subset(rows), eval_set.targets[rows])
    card = {
        "source": path, "format": spec["format"], "fingerprint": fingerprint,
        "files": {file: sha256_file(Path(file)) for file in spec_files(spec)},
        "bad_images": spec.get("bad_images", "fail"),
        "n_images": len(image_pool), "n_sentences": len(text_pool),
        "eval_sets": {name: len(s) for name, s in eval_sets.items()}, "skipped_unreadable": skipped,
    }
    return SpecData(image_pool, text_pool, eval_sets, card)


def _readable_rows(pool: adapters.SquareImagePool, what: str) -> tuple[torch.Tensor, dict]:
    """Decode every image once: the rows that read, and a count of those that did not with the first few."""
    keep, failed = [], []
    for row in tqdm(range(len(pool)), desc=f"checking {what}", leave=False):
        try:
            pool.read(row)
            keep.append(row)
        except ValueError as err:
            failed.append(str(err))
    if not keep:
        raise ValueError(f"none of the {len(pool)} {what} could be read; first: {failed[0]}")
    return torch.tensor(keep), {"count": len(failed), "first": failed[:5]}


def _readable(pool, what: str):
    rows, skipped = _readable_rows(pool, what)
    return pool.subset(rows), skipped


def _sentences(spec: dict) -> TextPool:
    if "sentences" in spec:
        return adapters.medclip_sentence_pool(spec["sentences"])
    from .embedded import build_text_pool  # the IU report sentences of the torchxrayvision wheel

    return build_text_pool()


def _medclip(spec: dict, image_size: int):
    root = spec.get("image_root")
    eval_sets = {}
    for name, entry in spec["eval"].items():
        _check_entry(spec, name, entry, ("csv", "classes"))
        classes = tuple(entry["classes"])
        label_indices(classes)  # unknown label names fail here, with the valid ones
        eval_sets[name] = adapters.medclip_eval_set(entry["csv"], classes, image_size, root, name)
    return adapters.medclip_image_pool(spec["images"], image_size, root), _sentences(spec), eval_sets


def _xrv_dataset(spec: dict, entry: dict, where: str):
    """`{"class": "NIH_Dataset", **kwargs}` -> that torchxrayvision dataset over local files."""
    import torchxrayvision as xrv

    where = f"{spec['spec']}: {where}"
    if not isinstance(entry, dict) or "class" not in entry:
        raise ValueError(f"{where} is {entry!r}; expected an object with \"class\" (a torchxrayvision dataset) and "
                         "its arguments, e.g. {\"class\": \"NIH_Dataset\", \"imgpath\": \"images\"}")
    registry = {name: cls for name, cls in vars(xrv.datasets).items()
                if isinstance(cls, type) and issubclass(cls, xrv.datasets.Dataset) and name.endswith("_Dataset")}
    params = {k: v for k, v in entry.items() if k != "class"}
    try:
        return build_named(f"torchxrayvision dataset in {where}:", registry, entry["class"], params)
    except (OSError, KeyError, pd.errors.ParserError) as err:
        raise ValueError(f"{where}: torchxrayvision's {entry['class']} could not read its files "
                         f"({type(err).__name__}: {err}); expected imgpath/csvpath of a local copy") from err


def _torchxrayvision(spec: dict, image_size: int):
    image_pool = adapters.xrv_image_pool(_xrv_dataset(spec, spec["dataset"], '"dataset"'), image_size)
    eval_sets = {}
    for name, entry in spec["eval"].items():
        _check_entry(spec, name, entry, ("dataset", "pathology"))
        dataset = _xrv_dataset(spec, entry["dataset"], f"eval set {name!r}")
        eval_sets[name] = adapters.xrv_eval_set(dataset, entry["pathology"], image_size, name)
    return image_pool, _sentences(spec), eval_sets


def _medmnist(spec: dict, image_size: int):
    flavour = spec.get("flavour")
    pool = adapters.medmnist_image_pool(spec["npz"], spec.get("train_split", "train"), image_size, flavour)
    eval_set = adapters.medmnist_eval_set(spec["npz"], spec.get("eval_split", "test"), image_size, flavour)
    name = "five_class" if len(eval_set.class_names) == 5 else "pneumonia"  # the embedded data's task names
    return pool, _sentences(spec), {name: EvalSet(name, eval_set.class_names, eval_set.images, eval_set.targets)}


def _check_entry(spec: dict, name: str, entry, keys: tuple[str, ...]) -> None:
    if not isinstance(entry, dict) or set(entry) != set(keys):
        raise ValueError(f"{spec['spec']}: eval set {name!r} is {entry!r}; expected an object with exactly the "
                         f"keys {', '.join(keys)}")


__all__ = ["BAD_IMAGE_POLICIES", "FORMAT_KEYS", "SpecData", "load_spec_data", "read_spec", "spec_fingerprint"]
