"""The label schema: the 14 CheXpert observations in MedCLIP's order.

Every label vector in this package (images, sentences, prompts, evaluation sets) is a length-14 vector in
this order, so this module is the one place that names them.
"""
from __future__ import annotations

import torch

CHEXPERT_LABELS: tuple[str, ...] = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Lesion",
    "Lung Opacity",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
NUM_LABELS = len(CHEXPERT_LABELS)

# The CheXpert-5x200 competition classes, the 5-class zero-shot task.
FIVE_CLASS_TASK: tuple[str, ...] = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")


def label_index(name: str) -> int:
    """Position of an observation in the 14-vector; an unknown name raises with the valid choices."""
    try:
        return CHEXPERT_LABELS.index(name)
    except ValueError:
        raise ValueError(
            f"unknown label {name!r}; expected one of: {', '.join(CHEXPERT_LABELS)}"
        ) from None


def label_indices(names) -> list[int]:
    return [label_index(n) for n in names]


def label_groups(labels: torch.Tensor, order=None) -> torch.Tensor:
    """Each image's group: its first positive label (0..13) in `order` (default CheXpert's), or 14 if none.

    In CheXpert order "No Finding" is label 0, so every image an attacker relabelled "No Finding" lands in
    group 0 whatever other labels it kept: the group a per-class detector has to find the poisons in.
    """
    positive = torch.as_tensor(labels) > 0
    if positive.ndim != 2 or positive.shape[1] != NUM_LABELS:
        raise ValueError(f"labels have shape {tuple(positive.shape)}; expected (N, {NUM_LABELS})")
    order = list(range(NUM_LABELS)) if order is None else list(order)
    positive = positive[:, order]
    first = torch.where(positive.any(1), positive.float().argmax(1), torch.full((len(positive),), NUM_LABELS))
    return torch.tensor(order + [NUM_LABELS])[first]
