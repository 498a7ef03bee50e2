"""CleanCLIP (Bansal et al., ICCV 2023): clean fine-tuning plus an in-modal term that breaks the shortcut.

A backdoor ties the trigger to the target text across modalities. CleanCLIP adds a self-supervised term
inside the image modality: each image must be recognised among the batch from an augmented view of itself.
That forces the image features to describe each image on its own, which weakens a trigger feature that
only means "go to the No Finding texts". For BadDist, which poisons only the image tower, this image term
is the part that matters.

The text in-modal term of CleanCLIP (EDA-augmented captions) is left out: our report sentences are short,
template-built and full of negations ("no effusion"), so random word swaps or deletions change their
findings, and EDA's synonym step needs WordNet.
"""
from __future__ import annotations

import torch
from torchvision.transforms import v2

from ..config import Config
from ..losses import clip_loss
from .base import register_defense
from .finetune import FineTune


def radiograph_augmentation(image_size: int) -> v2.Transform:
    """Mild geometric and exposure changes that keep a radiograph a plausible radiograph of the same study."""
    return v2.Compose([
        v2.RandomResizedCrop(image_size, scale=(0.7, 1.0), ratio=(0.9, 1.1), antialias=True),
        v2.RandomRotation(10),
        v2.ColorJitter(brightness=0.2, contrast=0.2),
    ])


@register_defense("cleanclip")
class CleanCLIP(FineTune):
    """`FineTune` with `inmodal_weight` x image InfoNCE between each image and an augmented view of it.

    The in-modal logits use the model's own temperature, as CleanCLIP (s * I @ I_aug^T), and
    `clip_loss` makes the term symmetric. Each image gets its own random augmentation.
    """

    def __init__(
        self, steps: int = 100, lr: float = 1e-4, batch_size: int | None = None, config: Config | None = None,
        progress: bool = False, inmodal_weight: float = 1.0,
    ):
        super().__init__(steps=steps, lr=lr, batch_size=batch_size, config=config, progress=progress)
        if isinstance(inmodal_weight, bool) or not isinstance(inmodal_weight, (int, float)) or inmodal_weight < 0:
            raise ValueError(f"invalid inmodal_weight {inmodal_weight!r}; expected a non-negative weight")
        self.inmodal_weight = inmodal_weight

    def settings(self) -> dict:
        return {**super().settings(), "inmodal_weight": self.inmodal_weight}

    def extra_loss(self):
        def inmodal_image_loss(model, images: torch.Tensor, input_ids, attention_mask) -> torch.Tensor:
            augment = radiograph_augmentation(images.shape[-1])
            views = torch.stack([augment(image) for image in images])
            logits = model.logits(model.encode_image(images), model.encode_image(views))
            return self.inmodal_weight * clip_loss(logits.float())

        return inmodal_image_loss


__all__ = ["CleanCLIP", "radiograph_augmentation"]
