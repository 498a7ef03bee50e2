"""Activation clustering (Chen et al., 2018) on image embeddings, per label group.

Each group's embeddings are reduced (PCA) and split in two by k-means. The common "smaller cluster is the
poison" rule flags half-ish of every clean group, because any group splits in two somewhere. Here a split
counts only when it looks like a planted sub-population: one cluster is small and the two are well
separated. A clean group splits into two similar halves with a poor silhouette and scores 0.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import silhouette_samples

from .base import DataDetector, groups_to_score, register_defense


@register_defense("activation-clustering")
class ActivationClustering(DataDetector):
    """Per-image score = group silhouette x own silhouette, for members of a small, separated cluster.

    Rule, per label group (at least `min_group_size` images):
    1. PCA to `n_dims` dimensions, 2-means (seeded);
    2. the split counts if the smaller cluster holds less than `size_threshold` of the group (Chen et al.'s
       relative-size test, 0.35) and the group's mean silhouette is at least `min_silhouette`;
    3. then the minority's members score (mean silhouette of the group) * max(0, own silhouette);
    4. every other image scores 0.
    A 2-means split of one featureless blob has a silhouette near 0.1 (measured on the tests' planted
    pools; a planted poison cluster gave 0.55), hence the 0.2 gate: clean groups score exactly 0, and a
    member of a tight minority in a cleanly split group scores the most.
    """

    def __init__(
        self, n_dims: int = 10, size_threshold: float = 0.35, min_silhouette: float = 0.2, min_group_size: int = 10,
        seed: int = 0,
    ):
        if isinstance(n_dims, bool) or not isinstance(n_dims, int) or n_dims < 1:
            raise ValueError(f"invalid n_dims {n_dims!r}; expected a positive integer")
        if isinstance(size_threshold, bool) or not isinstance(size_threshold, (int, float)) or not 0 < size_threshold <= 0.5:
            raise ValueError(f"invalid size_threshold {size_threshold!r}; expected a cluster share in (0, 0.5]")
        if isinstance(min_silhouette, bool) or not isinstance(min_silhouette, (int, float)) or not -1 <= min_silhouette <= 1:
            raise ValueError(f"invalid min_silhouette {min_silhouette!r}; expected a silhouette in [-1, 1]")
        if isinstance(min_group_size, bool) or not isinstance(min_group_size, int) or min_group_size < 4:
            raise ValueError(f"invalid min_group_size {min_group_size!r}; expected an integer >= 4")
        self.n_dims, self.size_threshold, self.min_silhouette = n_dims, size_threshold, min_silhouette
        self.min_group_size, self.seed = min_group_size, seed

    def score_embeddings(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        embeddings = embeddings.double().numpy()
        scores = np.zeros(len(embeddings))
        for members in groups_to_score(labels, self.min_group_size):
            members = members.numpy()
            group = embeddings[members]
            n_dims = min(self.n_dims, len(group) - 1, group.shape[1])
            reduced = PCA(n_components=n_dims, random_state=self.seed).fit_transform(group)
            clusters = KMeans(n_clusters=2, n_init=10, random_state=self.seed).fit_predict(reduced)
            sizes = np.bincount(clusters, minlength=2)
            minority = int(sizes.argmin())
            if sizes.min() == 0 or sizes[minority] / len(group) >= self.size_threshold:
                continue
            own = silhouette_samples(reduced, clusters)
            if own.mean() < self.min_silhouette:
                continue
            in_minority = clusters == minority
            scores[members[in_minority]] = own.mean() * np.clip(own[in_minority], 0, None)
        return torch.from_numpy(scores).float()


__all__ = ["ActivationClustering"]
