"""Unpaired pools and evaluation sets: the containers every data source fills in.

MedCLIP decouples images from texts: an image pool (image, 14-label vector) and a text pool (sentence,
14-label vector) are sampled independently and matched only through their labels. The embedded phantoms
and the real-data adapters both produce these classes, so training and evaluation never ask where the
data came from.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from .labels import NUM_LABELS


def _check_labels(labels: torch.Tensor, what: str) -> torch.Tensor:
    if labels.ndim != 2 or labels.shape[1] != NUM_LABELS:
        raise ValueError(f"{what} labels have shape {tuple(labels.shape)}; expected (N, {NUM_LABELS})")
    if len(labels) == 0:
        raise ValueError(f"{what} is empty; expected at least one item")
    return labels.float()


class ImagePool(Dataset):
    """Images of one size in [0, 1], shape (1, H, W), each with a 14-label vector.

    Subclasses implement `load(i)`; `batch(indices)` may be overridden when a faster path exists.
    """

    def __init__(self, labels: torch.Tensor):
        self.labels = _check_labels(labels, type(self).__name__)

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, index: int) -> torch.Tensor:
        raise NotImplementedError

    def __getitem__(self, index: int):
        return self.load(index), self.labels[index]

    def batch(self, indices) -> torch.Tensor:
        return torch.stack([self.load(int(i)) for i in indices])


class InMemoryImagePool(ImagePool):
    """A pool held as one uint8 tensor (N, 1, H, W): a 10,000-image 64 px pool is 40 MB."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        super().__init__(labels)
        if images.ndim != 4 or images.shape[1] != 1 or len(images) != len(self.labels):
            raise ValueError(
                f"images have shape {tuple(images.shape)}; expected ({len(self.labels)}, 1, H, W)"
            )
        if images.dtype != torch.uint8:
            images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
        self.images = images

    def load(self, index: int) -> torch.Tensor:
        return self.images[index].float() / 255

    def batch(self, indices) -> torch.Tensor:
        return self.images[torch.as_tensor(indices, dtype=torch.long)].float() / 255


class TextPool(Dataset):
    """Report sentences, each with a 14-label vector from the labeler."""

    def __init__(self, sentences: list[str], labels: torch.Tensor):
        self.labels = _check_labels(torch.as_tensor(labels), "TextPool")
        if len(sentences) != len(self.labels):
            raise ValueError(f"{len(sentences)} sentences but {len(self.labels)} label rows; expected equal counts")
        self.sentences = list(sentences)

    def __len__(self) -> int:
        return len(self.sentences)

    def __getitem__(self, index: int):
        return self.sentences[index], self.labels[index]


@dataclass
class EvalSet:
    """A zero-shot classification set: images, the class names the prompts describe, and class targets."""

    name: str
    class_names: tuple[str, ...]
    images: ImagePool
    targets: torch.Tensor  # (N,) long, an index into class_names

    def __post_init__(self):
        self.targets = torch.as_tensor(self.targets, dtype=torch.long)
        if len(self.targets) != len(self.images):
            raise ValueError(f"{self.name}: {len(self.targets)} targets for {len(self.images)} images")
        if len(self.targets) == 0:
            raise ValueError(f"{self.name}: evaluation set is empty; expected at least one image")
        bad = (self.targets < 0) | (self.targets >= len(self.class_names))
        if bad.any():
            raise ValueError(f"{self.name}: target {int(self.targets[bad][0])} outside [0, {len(self.class_names)})")

    def __len__(self) -> int:
        return len(self.targets)


def main_eval_set(eval_sets: dict[str, EvalSet]) -> EvalSet:
    """The first evaluation set (the embedded data's 5-class task; a data spec's first): the one the
    validation curve, retrieval and the linear probe use."""
    return next(iter(eval_sets.values()))
