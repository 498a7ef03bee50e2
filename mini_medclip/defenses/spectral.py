"""Spectral signatures (Tran et al., 2018) on image embeddings, per label group.

Poisons relabelled "No Finding" are a minority inside that group whose embeddings differ from the normals
in a consistent direction (the trigger's, or the hidden finding's). A consistent shift of a few points
dominates the group's top principal direction, so the squared projection on it singles them out.
"""
from __future__ import annotations

import torch

from .base import DataDetector, groups_to_score, register_defense


@register_defense("spectral")
class SpectralSignatures(DataDetector):
    """Score = squared projection of an image's centred embedding on its group's top singular vector.

    Scores are divided by their group's median, so that one threshold (or one AUROC) covers the whole
    pool: without it a group that merely spreads wider would outrank the poisons. The median, not the mean,
    because the poisons are a minority: they barely move it, while they dominate a mean (a group that is
    one-fifth poison would pull its own poisons' scores down to about 4x the mean, inside the range of a
    clean group's tail). Groups with fewer than `min_group_size` images score 0.
    """

    def __init__(self, min_group_size: int = 10):
        if isinstance(min_group_size, bool) or not isinstance(min_group_size, int) or min_group_size < 2:
            raise ValueError(f"invalid min_group_size {min_group_size!r}; expected an integer >= 2")
        self.min_group_size = min_group_size

    def score_embeddings(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        embeddings = embeddings.double()
        scores = torch.zeros(len(embeddings), dtype=torch.float64)
        for members in groups_to_score(labels, self.min_group_size):
            centred = embeddings[members] - embeddings[members].mean(0)
            top_direction = torch.linalg.svd(centred, full_matrices=False).Vh[0]
            projection = (centred @ top_direction) ** 2
            scores[members] = projection / projection.median().clamp(min=1e-12)
        return scores.float()


__all__ = ["SpectralSignatures"]
