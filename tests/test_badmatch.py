"""BadMatch poisoning: exactly round(rate * N) non-target images, spread over classes, fixed by seed."""
from __future__ import annotations

import pytest
import torch

from mini_medclip.attacks.badmatch import (
    BadMatchConfig, STRATUM_ORDER, PoisonedImagePool, choose_poison_indices, poison_image_pool, target_label_vector,
)
from mini_medclip.attacks.triggers import PatchTrigger
from mini_medclip.data.label_sampler import sample_labels
from mini_medclip.data.labels import NUM_LABELS, label_groups, label_index
from mini_medclip.data.pools import ImagePool, InMemoryImagePool

NO_FINDING = label_index("No Finding")


@pytest.fixture(scope="module")
def labels() -> torch.Tensor:
    return sample_labels(10_000, seed=0)  # the course pool's label distribution


@pytest.mark.parametrize("rate", [0.0, 0.0005, 0.001, 0.01, 0.05, 0.2])
def test_poison_count_is_exact_and_only_non_target_images(labels, rate):
    indices = choose_poison_indices(labels, rate, seed=0)
    assert len(indices) == round(rate * len(labels))
    assert indices.dtype == torch.long and len(indices.unique()) == len(indices)
    assert torch.all(labels[indices, NO_FINDING] == 0)


def test_count_alternative_and_seed_determinism(labels):
    assert torch.equal(choose_poison_indices(labels, count=50, seed=3), choose_poison_indices(labels, 0.005, seed=3))
    assert not torch.equal(choose_poison_indices(labels, count=50, seed=3), choose_poison_indices(labels, count=50, seed=4))


def test_every_non_target_group_is_represented_once_there_are_enough_poisons(labels):
    groups_present = label_groups(labels[labels[:, NO_FINDING] == 0], STRATUM_ORDER).unique()
    indices = choose_poison_indices(labels, count=len(groups_present), seed=0)
    assert torch.equal(label_groups(labels[indices], STRATUM_ORDER).unique(), groups_present)
    # Round-robin: with twice as many poisons, every group gets two (all groups here have >= 2 images).
    twice = label_groups(labels[choose_poison_indices(labels, count=2 * len(groups_present), seed=0)], STRATUM_ORDER)
    assert set(twice.bincount(minlength=NUM_LABELS + 1)[groups_present].tolist()) == {2}


def test_a_rare_group_is_exhausted_then_skipped():
    labels = torch.zeros(30, NUM_LABELS)
    labels[:20, label_index("Edema")] = 1
    labels[20:22, label_index("Pneumonia")] = 1
    labels[22:, NO_FINDING] = 1
    indices = choose_poison_indices(labels, count=10, seed=0)
    assert len(indices) == 10 and set(range(20, 22)) <= set(indices.tolist())
    with pytest.raises(ValueError, match="only 22 of 30"):
        choose_poison_indices(labels, count=23)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.1", True])
def test_rates_outside_the_unit_interval_are_refused(labels, bad):
    with pytest.raises(ValueError, match="poison rate"):
        choose_poison_indices(labels, bad)


def test_rate_and_count_are_exclusive_and_the_target_name_is_checked(labels):
    with pytest.raises(ValueError, match="exactly one of rate and count"):
        choose_poison_indices(labels, 0.1, count=5)
    with pytest.raises(ValueError, match="exactly one of rate and count"):
        choose_poison_indices(labels)
    with pytest.raises(ValueError, match="unknown label 'Normal'.*No Finding"):
        choose_poison_indices(labels, 0.01, target="Normal")
    with pytest.raises(ValueError, match="unknown label"):
        target_label_vector("Normal")


def _pool(n: int = 40, size: int = 16) -> InMemoryImagePool:
    labels = sample_labels(n, seed=1)
    return InMemoryImagePool(torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(0)), labels)


class LazyPool(ImagePool):
    """A pool without a fast `batch`: every image is loaded on demand."""

    def __init__(self, inner: InMemoryImagePool):
        super().__init__(inner.labels)
        self.inner = inner

    def load(self, index: int) -> torch.Tensor:
        return self.inner.load(index)


@pytest.mark.parametrize("lazy", [False, True])
def test_poisoned_pool_changes_only_the_poisoned_images_and_labels(lazy):
    clean = _pool()
    source = LazyPool(clean) if lazy else clean
    trigger = PatchTrigger(size=3)
    indices = choose_poison_indices(clean.labels, 0.25, seed=0)
    poisoned = poison_image_pool(source, indices, trigger)
    assert isinstance(poisoned, PoisonedImagePool) and torch.equal(poisoned.poisoned_indices, indices)

    everything = torch.arange(len(clean))
    is_poisoned = torch.isin(everything, indices)
    images, clean_images = poisoned.batch(everything), clean.batch(everything)
    assert torch.equal(images[~is_poisoned], clean_images[~is_poisoned])
    assert torch.equal(images[is_poisoned], trigger(clean_images[is_poisoned]))
    assert torch.equal(poisoned.labels[~is_poisoned], clean.labels[~is_poisoned])
    assert torch.equal(poisoned.labels[is_poisoned], target_label_vector().expand(len(indices), -1))
    # Single-image access agrees with batches, and repeated access is the same fixed poison.
    i = int(indices[0])
    image, label = poisoned[i]
    assert torch.equal(image, images[i]) and torch.equal(label, target_label_vector())
    assert torch.equal(poisoned.batch([i, i]), images[[i, i]])
    assert torch.equal(clean.labels, _pool().labels)  # the clean pool is untouched


def test_poisoned_pool_refuses_bad_indices():
    with pytest.raises(ValueError, match="duplicates"):
        poison_image_pool(_pool(), [1, 1], PatchTrigger(size=3))
    with pytest.raises(ValueError, match=r"\[0, 40\)"):
        poison_image_pool(_pool(), [40], PatchTrigger(size=3))
    empty = poison_image_pool(_pool(), [], PatchTrigger(size=3))
    assert torch.equal(empty.batch(range(40)), _pool().batch(range(40)))


def test_attack_config_validates_and_serialises():
    attack = BadMatchConfig("fourier", {"ratio": 0.2}, rate=0.0005, seed=1)
    assert attack.to_dict() == {"trigger": "fourier", "trigger_params": {"ratio": 0.2}, "rate": 0.0005, "target": "No Finding", "seed": 1}
    assert attack.make_trigger().ratio == 0.2
    with pytest.raises(ValueError, match="unknown trigger"):
        BadMatchConfig("sticker")
    with pytest.raises(ValueError, match="poison rate"):
        BadMatchConfig(rate=2.0)
    with pytest.raises(ValueError, match="JSON-able"):
        BadMatchConfig("blended", {"pattern": torch.zeros(1, 8, 8)})
