"""Label vectors drawn from the real CheXpert training table, restricted to what a phantom can draw.

torchxrayvision ships CheXpert's label CSV (no images) in its wheel, so the phantoms get the real
co-occurrence structure for free: effusion comes with edema and cardiomegaly, support devices with
almost everything, as in an intensive-care population. Labels follow MedCLIP's convention: 1 is
positive; 0, -1 (uncertain) and blank are negative.
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch

from .labels import CHEXPERT_LABELS, label_index
from .wheel_files import torchxrayvision_file

UNDRAWABLE_LABELS: tuple[str, ...] = ("Pleural Other", "Fracture")
DRAWN_LABELS: tuple[str, ...] = tuple(name for name in CHEXPERT_LABELS if name not in UNDRAWABLE_LABELS)
# A No Finding image may still carry tubes and lines (as in CheXpert); it may not carry a pathology.
DRAWN_PATHOLOGIES: tuple[str, ...] = tuple(n for n in DRAWN_LABELS if n not in ("No Finding", "Support Devices"))


def chexpert_table_path() -> Path:
    return torchxrayvision_file("chexpert_train.csv.gz")


@functools.lru_cache(maxsize=1)
def _real_table() -> torch.Tensor:
    """(N, 14) bool: the frontal rows of CheXpert's train.csv, True where the label is 1."""
    import pandas as pd  # only needed once, on the first call

    path = chexpert_table_path()
    if not path.exists():
        raise FileNotFoundError(
            f"CheXpert label table not found at {path}; it ships with the torchxrayvision wheel "
            "(pip install torchxrayvision)"
        )
    table = pd.read_csv(path, usecols=lambda c: c in CHEXPERT_LABELS or c == "Frontal/Lateral")
    if "Frontal/Lateral" in table.columns:
        table = table[table["Frontal/Lateral"] == "Frontal"]
    return torch.from_numpy((table[list(CHEXPERT_LABELS)].to_numpy() == 1.0).copy())


@functools.lru_cache(maxsize=1)
def _restricted_table() -> torch.Tensor:
    """The real table with undrawable labels removed and No Finding made consistent with the rest."""
    labels = _real_table().clone()
    labels[:, [label_index(n) for n in UNDRAWABLE_LABELS]] = False
    no_finding = label_index("No Finding")
    has_pathology = labels[:, [label_index(n) for n in DRAWN_PATHOLOGIES]].any(dim=1)
    labels[has_pathology, no_finding] = False
    labels[~labels.any(dim=1), no_finding] = True
    return labels


def sample_labels(n: int, seed: int) -> torch.Tensor:
    """(n, 14) float labels: rows of the restricted CheXpert table drawn with replacement."""
    if n < 0:
        raise ValueError(f"invalid n {n}; expected a non-negative integer")
    table = _restricted_table()
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randint(len(table), (n,), generator=generator)
    return table[rows].float()


def label_prevalence() -> tuple[torch.Tensor, torch.Tensor]:
    """(real, restricted): the fraction of frontal images positive for each label, in CHEXPERT_LABELS order."""
    return _real_table().float().mean(dim=0), _restricted_table().float().mean(dim=0)
