"""The four defender roles, one interface each, and the registry that builds a defense by name.

Who defends decides what a defense may see:

* `DataDetector`, the data curator before training: the training images, their labels, and a model to
  embed them with. Scores every training image.
* `InputDetector`, the deployer at test time: clean inputs to fit on, then one score per incoming input.
* `ModelScanner`, the consumer of a downloaded encoder before using it: the encoder and a few clean
  images, no training data. One anomaly score per model.
* `Mitigation`, the owner of a suspect model: a small clean set to repair it with. Returns a new model.

Scores are always oriented "higher = more suspicious" (the convention of `defenses.metrics`). A new
defense is one subclass decorated with `@register_defense("its-name")`, plus one test.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch

from ..data.labels import label_groups
from ..data.pools import ImagePool, TextPool
from ..embeddings import embed_images
from ..registry import build_named

DEFENSES: dict[str, type] = {}


def register_defense(name: str):
    """Class decorator: make the defense buildable as `make_defense(name, ...)`."""
    def register(cls: type) -> type:
        if name in DEFENSES:
            raise ValueError(f"defense name {name!r} is already taken by {DEFENSES[name].__name__}")
        DEFENSES[name] = cls
        cls.name = name
        return cls
    return register


def make_defense(name: str, **params):
    """A defense from its registered name and constructor parameters (JSON-able settings)."""
    return build_named("defense", DEFENSES, name, params)


def groups_to_score(labels: torch.Tensor, min_group_size: int) -> list[torch.Tensor]:
    """Index tensors of the label groups with at least `min_group_size` images (smaller ones are left out).

    A statistic fitted on a handful of images is noise, so per-group detectors score such groups 0.
    """
    groups = label_groups(labels)
    members = [(groups == g).nonzero().flatten() for g in groups.unique()]
    return [m for m in members if len(m) >= min_group_size]


class DataDetector(ABC):
    """The curator's detector: one suspicion score per training image, from embeddings and labels."""

    name: str

    def score(self, model, image_pool: ImagePool) -> torch.Tensor:
        """(N,) CPU scores for the pool's images, embedded by `model.encode_image` (any trained model)."""
        return self.score_embeddings(embed_images(model, image_pool).cpu(), image_pool.labels)

    @abstractmethod
    def score_embeddings(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(N,) scores from (N, D) embeddings and (N, 14) labels; what a test can call on synthetic data."""


class InputDetector(ABC):
    """The deployer's detector: fit on clean material, then score incoming inputs; calibrate a cut."""

    name: str
    threshold: float | None = None

    @abstractmethod
    def fit(self, *args, **kwargs) -> "InputDetector":
        """Store what the detector needs from clean data; returns self."""

    @abstractmethod
    def score(self, images: torch.Tensor) -> torch.Tensor:
        """(N,) scores for (N, 1, H, W) inputs in [0, 1]."""

    def calibrate(self, clean_images: torch.Tensor, frr: float = 0.05) -> float:
        """Set the threshold so that a share `frr` of clean held-out inputs is rejected; returns it.

        Only clean inputs are needed: the deployer never sees the trigger, so the cut is fixed by the
        false-rejection rate it can afford.
        """
        if isinstance(frr, bool) or not isinstance(frr, (int, float)) or not 0 < frr < 1:
            raise ValueError(f"invalid frr {frr!r}; expected a false-rejection rate in (0, 1)")
        self.threshold = float(torch.quantile(self.score(clean_images).double(), 1 - frr))
        return self.threshold

    def flag(self, images: torch.Tensor) -> torch.Tensor:
        """(N,) booleans: score above the calibrated threshold."""
        if self.threshold is None:
            raise RuntimeError(f"{type(self).__name__} has no threshold; call calibrate(clean_images) first")
        return self.score(images) > self.threshold


@dataclass
class ScanResult:
    """A model scanner's verdict material: one anomaly score (higher = more suspicious) and what led to it."""

    score: float
    details: dict = field(default_factory=dict)


class ModelScanner(ABC):
    """The consumer's scanner: inspects an encoder (or a whole model) with a few clean images."""

    name: str

    @abstractmethod
    def scan(self, model: torch.nn.Module, clean_images: torch.Tensor) -> ScanResult:
        """Scan a `MedCLIP` (its image tower is used) or a bare image encoder."""


class Mitigation(ABC):
    """The model owner's repair: a new (model, tokenizer) from a suspect one and a small clean set."""

    name: str

    @abstractmethod
    def apply(self, model, tokenizer, clean_pool: ImagePool, text_pool: TextPool):
        """Returns (repaired model, tokenizer); the input model is left unchanged."""

    def settings(self) -> dict | None:
        """JSON-able settings that decide the repaired weights, so that an experiment can cache the repaired
        model like a trained one; None (the default) means "always recompute"."""
        return None


__all__ = [
    "DEFENSES", "DataDetector", "InputDetector", "Mitigation", "ModelScanner", "ScanResult", "groups_to_score",
    "label_groups", "make_defense", "register_defense",
]
