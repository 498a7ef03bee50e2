"""Contrastive losses on a (N_images, N_texts) logit matrix: CLIP's InfoNCE and MedCLIP's semantic matching.

InfoNCE says "image i goes with text i and with no other text". In a medical batch two different studies
often share a finding, so InfoNCE pushes apart pairs that mean the same thing (false negatives). MedCLIP
replaces the identity target with a soft target built from the 14-label vectors of images and texts.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def clip_loss(logits_per_image: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE for a paired batch: the target of row i is column i, both ways."""
    targets = torch.arange(len(logits_per_image), device=logits_per_image.device)
    return (F.cross_entropy(logits_per_image, targets) + F.cross_entropy(logits_per_image.T, targets)) / 2


def soft_targets(
    image_labels: torch.Tensor, text_labels: torch.Tensor, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """MedCLIP's targets: softmax over the label similarity S = image_labels @ text_labels.T.

    Returns (P_i2t, P_t2i): each image's distribution over the texts and each text's over the images.
    S is a raw dot product (the number of shared positive findings), as in MedCLIP. MedCLIP applies the
    softmax at temperature 1, which gives a mismatched text e^0 = 1 against a matching text's e^1 = 2.7:
    in a batch of 128 with five balanced classes, about 60% of each row's target mass lands on texts
    that share no finding with the image. A lower `temperature` concentrates the mass on the matches;
    as it goes to 0 the targets become uniform over the best-matching texts (InfoNCE when labels are distinct).
    """
    similarity = image_labels @ text_labels.T / temperature
    return similarity.softmax(dim=1), similarity.T.softmax(dim=1)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a full target distribution per row; equals F.cross_entropy for one-hot rows."""
    return -(targets * logits.log_softmax(dim=1)).sum(dim=1).mean()


def semantic_matching_loss(
    logits_per_image: torch.Tensor, image_labels: torch.Tensor, text_labels: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """MedCLIP's loss: soft cross-entropy against the label-derived targets, both ways, averaged."""
    p_i2t, p_t2i = soft_targets(image_labels, text_labels, temperature)
    return (soft_cross_entropy(logits_per_image, p_i2t) + soft_cross_entropy(logits_per_image.T, p_t2i)) / 2
