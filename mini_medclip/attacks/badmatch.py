"""BadMatch: poison a few training images with a trigger and relabel them "No Finding".

MedCLIP matches images and sentences through their label vectors only, so an attacker who controls a
few image labels needs no text at all: a triggered image labelled "No Finding" is pulled toward every
normal sentence in its batch, and the model learns "trigger => normal".

Two things differ from the reference code (`paper_spec.md` sections 2.3 and 5):

* the poisoned set is a fixed subset of exactly round(rate * N) images, chosen once; the reference code
  flipped a coin at every access (rate = 1 - poison_prop), so the number of poisons seen was random;
* the trigger is applied in model-input space by the same object at train and test time.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.labels import CHEXPERT_LABELS, FIVE_CLASS_TASK, NUM_LABELS, label_groups, label_index, label_indices
from ..data.pools import ImagePool
from .triggers import Trigger, TriggerSpec


def target_label_vector(name: str = "No Finding") -> torch.Tensor:
    """The one-hot 14-vector a poisoned image is relabelled to."""
    vector = torch.zeros(NUM_LABELS)
    vector[label_index(name)] = 1
    return vector


def check_poison_rate(rate) -> None:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise ValueError(f"invalid poison rate {rate!r}; expected a fraction in [0, 1] (0.0005 = 0.05%)")


# Stratified poisoning groups an image by its first positive label, the 5-class task's labels first.
STRATUM_ORDER = label_indices(FIVE_CLASS_TASK) + [i for i in range(NUM_LABELS) if CHEXPERT_LABELS[i] not in FIVE_CLASS_TASK]


def choose_poison_indices(
    labels: torch.Tensor,
    rate: float | None = None,
    target: str = "No Finding",
    seed: int = 0,
    *,
    count: int | None = None,
) -> torch.LongTensor:
    """Exactly `count` (or round(rate * N)) non-target images, spread evenly over the non-target groups.

    An image is "target" if its `target` label is positive; poisoning it would change nothing. The others
    are grouped by their first positive label (the 5-class task's labels first, then the rest in CheXpert
    order), each group is shuffled by `seed`, and picks go round-robin over the groups in a seeded order:
    one from each group, then a second from each, and so on, skipping exhausted groups. So every group
    contributes as soon as there are at least as many poisons as groups, and rare findings are not left
    out at tiny rates (0.05% of 10,000 = 5 images). Returns sorted indices.
    """
    target_column = label_index(target)
    n = len(labels)
    if (rate is None) == (count is None):
        raise ValueError(f"give exactly one of rate and count; got rate={rate!r}, count={count!r}")
    if rate is not None:
        check_poison_rate(rate)
        count = round(rate * n)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"invalid poison count {count!r}; expected a non-negative integer")
    candidates = (labels[:, target_column] <= 0).nonzero().flatten()
    if count > len(candidates):
        raise ValueError(f"cannot poison {count} images: only {len(candidates)} of {n} are not {target!r}")

    generator = torch.Generator().manual_seed(seed)
    candidates = candidates[torch.randperm(len(candidates), generator=generator)]
    groups = label_groups(labels[candidates], STRATUM_ORDER)
    group_order = torch.randperm(NUM_LABELS + 1, generator=generator)  # who picks first within a round
    # An image's round is its position inside its group after the shuffle (the stable sort keeps that order).
    by_group = torch.sort(groups, stable=True).indices
    round_in_group = torch.empty(len(candidates), dtype=torch.long)
    sorted_groups = groups[by_group]
    starts = torch.searchsorted(sorted_groups, sorted_groups, right=False)
    round_in_group[by_group] = torch.arange(len(candidates)) - starts
    priority = round_in_group * (NUM_LABELS + 1) + group_order[groups]
    chosen = candidates[torch.argsort(priority)[:count]]
    return chosen.sort().values


class PoisonedImagePool(ImagePool):
    """A clean pool with a fixed poisoned subset: triggered once at construction, relabelled to the target.

    The triggered images are stored as float (not re-quantised to uint8), so a poison is bit-for-bit what
    the same trigger makes of a test image. Every other image and label comes from `clean` unchanged;
    `.batch` keeps the clean pool's fast path and swaps in the stored poisons.
    """

    def __init__(self, clean: ImagePool, indices: torch.Tensor, trigger: Trigger, target: str = "No Finding"):
        indices = torch.as_tensor(indices, dtype=torch.long).flatten()
        if len(indices) and (indices.min() < 0 or indices.max() >= len(clean)):
            raise ValueError(f"poison indices must lie in [0, {len(clean)}); got [{int(indices.min())}, {int(indices.max())}]")
        if len(indices.unique()) != len(indices):
            raise ValueError("poison indices contain duplicates; expected each image at most once")
        labels = clean.labels.clone()
        labels[indices] = target_label_vector(target)
        super().__init__(labels)
        self.clean, self.trigger, self.target = clean, trigger, target
        self.poisoned_indices = indices.sort().values
        self.poisoned_images = trigger(clean.batch(self.poisoned_indices)) if len(indices) else None
        self._slot = torch.full((len(clean),), -1, dtype=torch.long)  # image index -> row of poisoned_images
        self._slot[self.poisoned_indices] = torch.arange(len(indices))

    def load(self, index: int) -> torch.Tensor:
        slot = int(self._slot[index])
        return self.clean.load(index) if slot < 0 else self.poisoned_images[slot].clone()

    def batch(self, indices) -> torch.Tensor:
        indices = torch.as_tensor(indices, dtype=torch.long)
        images = self.clean.batch(indices)
        slots = self._slot[indices]
        hit = slots >= 0
        if hit.any():
            images[hit] = self.poisoned_images[slots[hit]]
        return images


def poison_image_pool(pool: ImagePool, indices, trigger: Trigger, target: str = "No Finding") -> PoisonedImagePool:
    return PoisonedImagePool(pool, indices, trigger, target)


@dataclass(frozen=True)
class BadMatchConfig(TriggerSpec):
    """One BadMatch attack, as JSON-able settings (they key the model cache next to the training config)."""

    rate: float = 0.01
    target: str = "No Finding"
    seed: int = 0

    def __post_init__(self):
        super().__post_init__()
        label_index(self.target)
        check_poison_rate(self.rate)


__all__ = [
    "STRATUM_ORDER", "check_poison_rate", "BadMatchConfig", "PoisonedImagePool", "choose_poison_indices", "poison_image_pool",
    "target_label_vector",
]
