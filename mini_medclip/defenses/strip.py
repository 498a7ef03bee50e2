"""STRIP (Gao et al., 2019) for a zero-shot prompt classifier.

Blend an input with clean radiographs and classify each blend. A clean input's blends drift between
classes (what they show depends on the other image), so the predictions are uncertain. A trigger that
maps to "No Finding" survives the blend and keeps every blend's prediction confident: low entropy.

The entropy depends on the logit scale, so the classifier must be the deployed one (same prompts, same
temperature) and the threshold must be calibrated with it, on clean held-out inputs.
"""
from __future__ import annotations

import torch

from .base import InputDetector, register_defense


def prediction_entropy_bits(class_scores: torch.Tensor) -> torch.Tensor:
    """Entropy in bits of softmax(class_scores) per row: 0 = certain, log2(C) = uniform."""
    log_p = class_scores.float().log_softmax(dim=1)
    return -(log_p.exp() * log_p).sum(1) / torch.log(torch.tensor(2.0))


@register_defense("strip")
class STRIP(InputDetector):
    """Score = -(mean entropy over `n_blends` blends), so higher = more suspicious.

    A blend is (1 - alpha) * input + alpha * reference: `alpha` is the weight of the clean reference.
    The references are a fixed, seeded draw of `n_blends` images from those given to `fit`, the same for
    every input, so scores are reproducible. The classifier is anything with `.scores(images) -> (N, C)`
    logits, e.g. a `ZeroShotClassifier`.
    """

    def __init__(self, n_blends: int = 20, alpha: float = 0.5, batch_size: int = 256, seed: int = 0):
        if isinstance(n_blends, bool) or not isinstance(n_blends, int) or n_blends < 1:
            raise ValueError(f"invalid n_blends {n_blends!r}; expected a positive integer")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
            raise ValueError(f"invalid alpha {alpha!r}; expected a blend weight in (0, 1)")
        self.n_blends, self.alpha, self.batch_size, self.seed = n_blends, alpha, batch_size, seed
        self._classifier = None  # set by fit: fitted state, not a setting (defense settings skip _names)
        self._references = None

    def fit(self, classifier, clean_reference_images: torch.Tensor) -> "STRIP":
        """Keep the deployed classifier and a bank of `n_blends` clean images to blend with."""
        images = clean_reference_images
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 1:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"clean_reference_images have shape {shape}; expected (N, 1, H, W)")
        if len(images) < self.n_blends:
            raise ValueError(f"{len(images)} reference images for n_blends={self.n_blends}; expected at least n_blends")
        pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.seed))[: self.n_blends]
        self._classifier, self._references = classifier, images[pick].float()
        return self

    def score(self, images: torch.Tensor) -> torch.Tensor:
        if self._references is None:
            raise RuntimeError("STRIP is not fitted; call fit(classifier, clean_reference_images) first")
        if images.shape[1:] != self._references.shape[1:]:
            raise ValueError(f"images have shape {tuple(images.shape)}; expected (N, {', '.join(map(str, self._references.shape[1:]))})")
        per_chunk = max(1, self.batch_size // self.n_blends)  # inputs per classifier call
        scores = []
        for chunk in images.float().split(per_chunk):
            blends = (1 - self.alpha) * chunk[:, None] + self.alpha * self._references[None].to(chunk.device)
            entropy = prediction_entropy_bits(self._classifier.scores(blends.flatten(0, 1)))
            scores.append(-entropy.view(len(chunk), self.n_blends).mean(1).cpu())
        return torch.cat(scores)


__all__ = ["STRIP", "prediction_entropy_bits"]
