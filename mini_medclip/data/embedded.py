"""The embedded default data set: real report sentences, phantom radiographs, three evaluation sets.

Nothing here is downloaded: the sentences come from the Indiana University reports inside the
torchxrayvision wheel, the label vectors from the real CheXpert label table in the same wheel, and the
images are rendered from those labels. Sizes and seeds come from the preset's `DataConfig`.
"""
from __future__ import annotations

import functools
import hashlib
import json

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import __version__
from ..config import Config, DataConfig
from ..files import sha256_file
from .label_sampler import chexpert_table_path, sample_labels
from .labeler import label_sentences, to_label_vectors
from .labels import CHEXPERT_LABELS, FIVE_CLASS_TASK, label_index, label_indices
from .phantoms import render
from .phantoms.masks import lung_mask_archive
from .pools import EvalSet, InMemoryImagePool, TextPool
from .reports import load_sentences, reports_archive_path
from ..store import stored

RENDER_CHUNK = 2_000
# Evaluation patients get their own seeds, so no test image is a training image.
EVAL_SEED_OFFSET = {"five_class": 1_000, "covid": 2_000, "rsna": 3_000}
PROVIDER_SEED_OFFSET = 4_000  # a model provider's own images (BadDist's disjoint shadow set) are other patients again


def render_pool(labels: torch.Tensor, size: int, seed: int, covid_like=None, desc: str = "phantoms") -> InMemoryImagePool:
    """Render labelled phantoms in chunks (bounded memory at 224 px), deterministic by seed."""
    chunks = []
    starts = range(0, len(labels), RENDER_CHUNK)
    for chunk_index, start in enumerate(tqdm(starts, desc=desc, leave=False, disable=len(starts) < 3)):
        stop = start + RENDER_CHUNK
        flags = None if covid_like is None else covid_like[start:stop]
        images = render(labels[start:stop], size, seed=seed * 10_007 + chunk_index, covid_like=flags)
        chunks.append((images.clamp(0, 1) * 255).round().to(torch.uint8))
    return InMemoryImagePool(torch.cat(chunks), labels)


@functools.lru_cache(maxsize=1)
def _labelled_unique_sentences() -> tuple[list[str], np.ndarray]:
    sentences = list(dict.fromkeys(load_sentences().sentence))
    return sentences, label_sentences(sentences)


def build_text_pool() -> TextPool:
    """The deduplicated report sentences that are positive for at least one observation.

    A sentence that names none of the 14 observations positively ("degenerative changes of the spine",
    "comparison is made to the prior study") would get an all-zero vector, which matches nothing under
    MedCLIP's label similarity; it only adds noise, so it is left out. No Finding counts as an
    observation, so the normal statements ("the lungs are clear") stay in.
    """
    sentences, codes = _labelled_unique_sentences()
    vectors = to_label_vectors(codes)
    keep = vectors.sum(dim=1) > 0
    return TextPool([s for s, k in zip(sentences, keep.tolist()) if k], vectors[keep])


def build_image_pool(cfg: DataConfig) -> InMemoryImagePool:
    """The training image pool: label vectors drawn from the real CheXpert distribution, then rendered."""
    labels = sample_labels(cfg.n_train_images, seed=cfg.seed)
    return render_pool(labels, cfg.image_size, cfg.seed, desc="training phantoms")


def build_provider_pool(cfg: DataConfig, n: int) -> InMemoryImagePool:
    """`n` phantoms of a model provider's own, drawn like the training pool but with their own seed: other
    patients than the training pool's and every evaluation set's."""
    seed = cfg.seed + PROVIDER_SEED_OFFSET
    return render_pool(sample_labels(n, seed=seed), cfg.image_size, seed, desc="provider's phantoms")


def _rows_where(mask_fn, n: int, seed: int) -> torch.Tensor:
    """`n` label vectors from the real distribution that satisfy `mask_fn`, by rejection sampling."""
    found, draw = [], 0
    while sum(len(f) for f in found) < n:
        candidates = sample_labels(max(4 * n, 1_000), seed=seed + draw)
        found.append(candidates[mask_fn(candidates)])
        draw += 1
        if draw > 200:
            raise RuntimeError("rejection sampling found too few label vectors; the condition is too rare")
    return torch.cat(found)[:n]


def _five_class_set(cfg: DataConfig) -> EvalSet:
    """Like CheXpert-5x200: per class, images with exactly that one of the five competition labels."""
    seed = cfg.seed + EVAL_SEED_OFFSET["five_class"]
    five = label_indices(FIVE_CLASS_TASK)
    labels, targets = [], []
    for class_id, column in enumerate(five):
        def only_this(rows, column=column):
            return (rows[:, column] > 0) & (rows[:, five].sum(1) == 1)

        labels.append(_rows_where(only_this, cfg.n_eval_per_class, seed + 97 * class_id))
        targets += [class_id] * cfg.n_eval_per_class
    pool = render_pool(torch.cat(labels), cfg.image_size, seed, desc="5-class phantoms")
    return EvalSet("five_class", FIVE_CLASS_TASK, pool, torch.tensor(targets))


def _normals(cfg: DataConfig, seed: int) -> torch.Tensor:
    no_finding = label_index("No Finding")
    return _rows_where(lambda rows: rows[:, no_finding] > 0, cfg.n_eval_per_class, seed)


def _covid_set(cfg: DataConfig) -> EvalSet:
    """COVID-like binary set: normals vs bilateral peripheral ground glass, labelled Lung Opacity + Pneumonia."""
    seed = cfg.seed + EVAL_SEED_OFFSET["covid"]
    n = cfg.n_eval_per_class
    covid = torch.zeros(n, len(CHEXPERT_LABELS))
    covid[:, label_indices(["Lung Opacity", "Pneumonia"])] = 1
    labels = torch.cat([_normals(cfg, seed), covid])
    flags = torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)])
    pool = render_pool(labels, cfg.image_size, seed, covid_like=flags, desc="COVID-like phantoms")
    return EvalSet("covid", ("No Finding", "COVID"), pool, flags.long())


def _rsna_set(cfg: DataConfig) -> EvalSet:
    """RSNA-like binary set: normals vs pneumonia (real label vectors with Pneumonia positive)."""
    seed = cfg.seed + EVAL_SEED_OFFSET["rsna"]
    pneumonia = label_index("Pneumonia")
    sick = _rows_where(lambda rows: rows[:, pneumonia] > 0, cfg.n_eval_per_class, seed + 1)
    labels = torch.cat([_normals(cfg, seed), sick])
    targets = torch.cat([torch.zeros(len(sick)), torch.ones(len(sick))]).long()
    pool = render_pool(labels, cfg.image_size, seed, desc="RSNA-like phantoms")
    return EvalSet("rsna", ("No Finding", "Pneumonia"), pool, targets)


EVAL_TASKS = ("five_class", "covid", "rsna")


def build_eval_sets(cfg: DataConfig) -> dict[str, EvalSet]:
    """The three zero-shot tasks of the course: 5-class, COVID-like and RSNA-like."""
    return {"five_class": _five_class_set(cfg), "covid": _covid_set(cfg), "rsna": _rsna_set(cfg)}


FINGERPRINT_IMAGES = 4


def wheel_files() -> dict[str, str]:
    """The torchxrayvision wheel's files the embedded data is made from, by name, with their sha256."""
    paths = (reports_archive_path(), chexpert_table_path(), lung_mask_archive())
    return {path.name: sha256_file(path) for path in paths}


@functools.lru_cache(maxsize=8)
def phantom_fingerprint(cfg: DataConfig) -> str:
    """A cheap hash of the data code's input and output: the wheel files it reads (reports, CheXpert label
    table, lung masks), a few phantoms rendered at this size and seed, and the text pool.

    It keys the model cache and the rendered-data store, so a change in the renderer or the labeler (or a
    torch release whose random stream differs) invalidates their entries instead of silently reusing them.
    Computed once per data config and process: the code it fingerprints does not change while it runs.
    """
    digest = hashlib.sha256(json.dumps(wheel_files(), sort_keys=True).encode())
    labels = sample_labels(FINGERPRINT_IMAGES, seed=cfg.seed)
    images = render(labels, cfg.image_size, seed=cfg.seed)
    digest.update((images.clamp(0, 1) * 255).round().to(torch.uint8).numpy().tobytes())
    text_pool = build_text_pool()
    digest.update("\n".join(text_pool.sentences).encode())
    digest.update(text_pool.labels.numpy().tobytes())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=1)  # the full preset's pool is 2.5 GB: keep one data config, the one in use
def _load_or_render(cfg: DataConfig) -> tuple[InMemoryImagePool, TextPool, dict[str, EvalSet]]:
    """The rendered pools from the store (uint8, as rendered), or rendered and stored for the next process."""
    def render_all():
        image_pool, eval_sets = build_image_pool(cfg), build_eval_sets(cfg)
        tensors = {"train/images": image_pool.images, "train/labels": image_pool.labels}
        for name, eval_set in eval_sets.items():
            tensors |= {f"{name}/images": eval_set.images.images, f"{name}/labels": eval_set.images.labels,
                        f"{name}/targets": eval_set.targets}
        return tensors, {"class_names": {name: list(s.class_names) for name, s in eval_sets.items()}}

    key = {"data": cfg.to_dict(), "data_fingerprint": phantom_fingerprint(cfg), "package_version": __version__}
    tensors, info = stored("data", key, render_all)
    image_pool = InMemoryImagePool(tensors["train/images"], tensors["train/labels"])
    eval_sets = {
        name: EvalSet(name, tuple(classes), InMemoryImagePool(tensors[f"{name}/images"], tensors[f"{name}/labels"]),
                      tensors[f"{name}/targets"])
        for name, classes in info["class_names"].items()
    }
    return image_pool, build_text_pool(), eval_sets


def embedded_data(cfg: Config) -> tuple[InMemoryImagePool, TextPool, dict[str, EvalSet]]:
    """The course's default data for a config: phantom image pool, report sentences, the 3 evaluation sets.

    Rendered once per data config: kept in memory for the process (every experiment of a chapter uses the
    same phantoms) and on disk for the next one (`store.py`). The pools are shared between callers,
    so they are read-only by contract: poisoning wraps a pool (`PoisonedImagePool`), it never writes into one.
    """
    return _load_or_render(cfg.data)


def data_card(cfg: DataConfig, image_pool: InMemoryImagePool, text_pool: TextPool, eval_sets: dict[str, EvalSet]) -> dict:
    """What is in the data, as counts per label: the JSON the `data` command writes."""

    def per_label(labels: torch.Tensor) -> dict[str, int]:
        return {name: int(v) for name, v in zip(CHEXPERT_LABELS, (labels > 0).sum(0).tolist())}

    return {
        "seed": cfg.seed,
        "image_size": cfg.image_size,
        "torchxrayvision_files": wheel_files(),
        "image_pool": {"n_images": len(image_pool), "per_label": per_label(image_pool.labels)},
        "text_pool": {"n_sentences": len(text_pool), "per_label": per_label(text_pool.labels)},
        "eval_sets": {
            name: {
                "n_images": len(s),
                "classes": list(s.class_names),
                "per_class": {c: int((s.targets == i).sum()) for i, c in enumerate(s.class_names)},
                "per_label": per_label(s.images.labels),
            }
            for name, s in eval_sets.items()
        },
    }


__all__ = ["build_image_pool", "build_eval_sets", "build_provider_pool", "build_text_pool", "data_card", "embedded_data", "phantom_fingerprint", "render_pool", "wheel_files", "EVAL_TASKS"]
