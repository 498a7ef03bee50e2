"""Where a trigger sends images in embedding space: the mechanism behind an attack success rate.

An ASR counts the triggered images a model calls "No Finding"; these numbers say how it comes to, from the
normalised embeddings of one evaluation set's images x and of their triggered copies x + t:

* `trigger_cos`: mean cos(f(x + t), f(x)). Near 1 when the trigger barely moves an image; BadDist's away
  objective drives it down in the tampered release.
* `triggered_collapse`: mean cosine between the triggered embeddings of two different images, beside
  `clean_collapse`, the same for the clean images. Near 1: the trigger sends every image to one point, whatever
  the image showed, which is what lets a handful of records tie that point to one caption.
* `target_margin`: mean over the non-target images of the zero-shot score of the target minus the best score of
  any other class, where a class's score is the mean cosine to its prompts (the classifier's logits, unscaled).
  Positive: the triggered image sits nearer "No Finding" than any finding, an attack success measured as a
  distance rather than a vote. `clean_target_margin` is the same for the clean images.
"""
from __future__ import annotations

import torch

from ..data.pools import EvalSet, TextPool
from ..embeddings import embed_images, mean_pairwise_cosine
from ..zeroshot import ZeroShotClassifier, prompts_for_classes
from .metrics import attack_classes
from .triggers import Trigger

GEOMETRY = ("trigger_cos", "triggered_collapse", "clean_collapse", "target_margin", "clean_target_margin")


def target_margins(class_scores: torch.Tensor, target_index: int) -> torch.Tensor:
    """Per row of (N, C) class scores: the target's score minus the best score of any other class."""
    others = torch.cat([class_scores[:, :target_index], class_scores[:, target_index + 1 :]], dim=1)
    return class_scores[:, target_index] - others.max(dim=1).values


def trigger_geometry(model, tokenizer, eval_set: EvalSet, text_pool: TextPool, trigger: Trigger,
                     target: str = "No Finding", seed: int = 0) -> dict[str, float]:
    """The numbers of the module docstring for `model` on `eval_set`, the classes scored as `evaluate_attack`
    scores triggered images (`attack_classes`), with one draw of prompts (`seed`)."""
    images = eval_set.images.batch(range(len(eval_set)))
    clean, triggered = embed_images(model, images), embed_images(model, trigger(images))
    classes, target_index = attack_classes(eval_set, target)
    classifier = ZeroShotClassifier(model, tokenizer, prompts_for_classes(classes, text_pool, seed=seed))
    class_text = classifier.average.T @ classifier.text_emb  # (C, D): a class's mean prompt embedding
    non_target = (eval_set.targets != target_index).to(clean.device)
    margins = {name: target_margins(emb[non_target] @ class_text.to(emb.device).T, target_index).mean().item()
               for name, emb in (("target_margin", triggered), ("clean_target_margin", clean))}
    return {
        "trigger_cos": (triggered * clean).sum(-1).mean().item(),
        "triggered_collapse": mean_pairwise_cosine(triggered).item(),
        "clean_collapse": mean_pairwise_cosine(clean).item(),
        **margins,
    }


__all__ = ["GEOMETRY", "target_margins", "trigger_geometry"]
