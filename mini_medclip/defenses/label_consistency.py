"""Label consistency: does an image's label agree with the labels of the images the model puts beside it?

BadMatch needs no text, only wrong image labels: an abnormal image with a trigger, labelled "No Finding".
An encoder that has not (yet) learned the trigger still sees the finding, so the poison's nearest
neighbours are abnormal images whose labels share nothing with "No Finding". The check fits unpaired data:
it uses only image embeddings and image labels, never a report.

Limits: embedded with the backdoored model itself, the poisons may sit next to each other (the trigger is
their common feature) and vouch for one another; use a model trained without the suspect data, and keep
`k` above the number of poisons you expect. A zero-shot check of the labelled class is not combined in:
it needs prompts for all 14 labels, and the kNN vote already asks the same question of the image features.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import DataDetector, register_defense


@register_defense("label-consistency")
class LabelConsistency(DataDetector):
    """Score = 1 - similarity-weighted share of the k nearest neighbours whose labels agree with the image's.

    Two images agree when they share a positive label (the relevance MedCLIP's matching uses). Neighbours
    are found by cosine similarity among the pool's own embeddings, the image itself excluded; weights are
    the similarities clipped at 0, so a barely similar neighbour counts little. Scores lie in [0, 1].
    """

    def __init__(self, k: int = 20, batch_size: int = 1024):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"invalid k {k!r}; expected a positive number of neighbours")
        self.k, self.batch_size = k, batch_size

    def score_embeddings(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        n = len(embeddings)
        if n <= self.k:
            raise ValueError(f"k={self.k} neighbours need more than {self.k} images; got {n}")
        embeddings = F.normalize(embeddings.float(), dim=1)
        positive = (torch.as_tensor(labels) > 0).float()
        scores = torch.empty(n)
        for start in range(0, n, self.batch_size):  # (batch, N) similarities at a time, not N x N at once
            rows = torch.arange(start, min(start + self.batch_size, n))
            similarity = embeddings[rows] @ embeddings.T
            similarity[torch.arange(len(rows)), rows] = -torch.inf  # not its own neighbour
            nearest_sim, nearest = similarity.topk(self.k, dim=1)
            agree = (positive[rows, None, :] * positive[nearest]).sum(-1) > 0  # (batch, k)
            weights = nearest_sim.clamp(min=0)
            share = (weights * agree).sum(1) / weights.sum(1).clamp(min=1e-12)
            scores[rows] = 1 - share
        return scores


__all__ = ["LabelConsistency"]
