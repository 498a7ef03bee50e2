"""Attack metrics: benign accuracy, attack success rate, robust accuracy, and their uncertainty.

The pitfall these functions pin down (`paper_spec.md` section 2.6): the reference code triggers every
test image, relabels all of them "Normal" and calls the accuracy the ASR, so images that were normal to
begin with count as successes. A model that ignores the trigger then scores the test set's normal share
(about 50% on COVID, 78% on RSNA). Here `attack_success_rate` counts only images whose true class is
not the target; the inflated variant is kept, under its own name, to show the difference.

Predictions and true labels are class indices (LongTensor or array-like of shape (N,)).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.stats import norm

from ..data.pools import EvalSet, TextPool
from ..embeddings import embed_images
from ..zeroshot import ZeroShotClassifier, class_prompts_for, prompts_for_classes
from .triggers import Trigger


def _as_indices(values, what: str) -> torch.Tensor:
    values = torch.as_tensor(values).long().flatten()
    if len(values) == 0:
        raise ValueError(f"{what} is empty; expected at least one prediction")
    return values


def _non_target(pred: torch.Tensor, true: torch.Tensor, target_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    if pred.shape != true.shape:
        raise ValueError(f"{len(pred)} predictions for {len(true)} true labels; expected equal counts")
    keep = true != target_index
    if not keep.any():
        raise ValueError(f"every image is of the target class {target_index}; the ASR needs non-target images")
    return pred[keep], true[keep]


def attack_success_rate(pred_triggered, true_labels, target_index: int) -> float:
    """Share of triggered images whose true class is not the target that are classified as the target."""
    pred, _ = _non_target(_as_indices(pred_triggered, "pred_triggered"), _as_indices(true_labels, "true_labels"), target_index)
    return (pred == target_index).float().mean().item()


def attack_success_rate_all_images(pred_triggered, target_index: int) -> float:
    """The reference code's ASR: share of *all* triggered images classified as the target (inflated)."""
    return (_as_indices(pred_triggered, "pred_triggered") == target_index).float().mean().item()


def benign_accuracy(pred_clean, true_labels) -> float:
    """Accuracy on clean images: the utility the attacker must not visibly damage."""
    pred, true = _as_indices(pred_clean, "pred_clean"), _as_indices(true_labels, "true_labels")
    if pred.shape != true.shape:
        raise ValueError(f"{len(pred)} predictions for {len(true)} true labels; expected equal counts")
    return (pred == true).float().mean().item()


def robust_accuracy(pred_triggered, true_labels, target_index: int) -> float:
    """Accuracy of triggered non-target images w.r.t. their true labels: what the trigger leaves correct."""
    pred, true = _non_target(_as_indices(pred_triggered, "pred_triggered"), _as_indices(true_labels, "true_labels"), target_index)
    return (pred == true).float().mean().item()


def binomial_ci(successes: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion successes / n.

    Unlike the normal approximation it stays inside [0, 1] and is not degenerate at 0 or n successes,
    which matters for an ASR near 100% measured on a few hundred images.
    """
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"invalid proportion {successes}/{n}; expected n >= 1 and 0 <= successes <= n")
    if not 0 < level < 1:
        raise ValueError(f"invalid confidence level {level!r}; expected a number in (0, 1)")
    z = norm.ppf(0.5 + level / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact ends: no rounding residue at 0 or n
    high = 1.0 if successes == n else min(1.0, centre + half)
    return float(low), float(high)


def attack_classes(eval_set: EvalSet, target: str) -> tuple[tuple[str, ...], int]:
    """(classes the triggered images are scored against, index of the target among them).

    If the target is one of the set's classes (COVID, RSNA: "No Finding" is class 0), the set's classes.
    Otherwise (the 5-class task has no normal class) the target is appended as an extra class: a triggered
    image succeeds when the target beats every one of the task's findings.
    """
    if target in eval_set.class_names:
        return tuple(eval_set.class_names), eval_set.class_names.index(target)
    return (*eval_set.class_names, target), len(eval_set.class_names)


def _mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values))


def evaluate_attack(
    model, tokenizer, eval_set: EvalSet, text_pool: TextPool, trigger: Trigger,
    target: str = "No Finding", n_runs: int = 5, seed: int = 0,
) -> dict:
    """BA, ASR (non-target images), the reference's ASR over all images, and RA, over `n_runs` prompt draws.

    * BA: clean images, classified among the set's own classes (for the 5-class task, the 5 findings).
    * ASR, ASR-all, RA: triggered images, classified among `attack_classes(eval_set, target)`. For the
      5-class task that adds a "No Finding" class (prompts: normal report sentences, as MedCLIP), since
      the attack's goal, "normal", is not a finding; a prediction of it is a success and, for RA, an error.
    * Run r draws prompts with seed + r; images are embedded once. Each metric is the mean over runs,
      with `_std` (population std, across prompt draws) and `_ci` (95% Wilson interval of the run-averaged
      rate over its images: the uncertainty from having few test images).
    """
    clean = eval_set.images.batch(range(len(eval_set)))
    clean_emb = embed_images(model, clean)
    triggered_emb = embed_images(model, trigger(clean))
    true = eval_set.targets
    classes, target_index = attack_classes(eval_set, target)
    runs = []
    for run in range(n_runs):
        benign = ZeroShotClassifier(model, tokenizer, class_prompts_for(eval_set, text_pool, seed=seed + run))
        attack = ZeroShotClassifier(model, tokenizer, prompts_for_classes(classes, text_pool, seed=seed + run))
        pred_triggered = attack.scores_from_embeddings(triggered_emb).argmax(1)
        runs.append({
            "ba": benign_accuracy(benign.scores_from_embeddings(clean_emb).argmax(1), true),
            "asr": attack_success_rate(pred_triggered, true, target_index),
            "asr_all_images": attack_success_rate_all_images(pred_triggered, target_index),
            "robust_acc": robust_accuracy(pred_triggered, true, target_index),
        })
    n_non_target = int((true != target_index).sum())
    denominators = {"ba": len(true), "asr": n_non_target, "asr_all_images": len(true), "robust_acc": n_non_target}
    out: dict = {
        "eval_set": eval_set.name, "target": target, "attack_classes": list(classes), "trigger": repr(trigger),
        "n_images": len(true), "n_non_target": n_non_target,
    }
    for metric, n in denominators.items():
        out[metric], out[f"{metric}_std"] = _mean_std([r[metric] for r in runs])
        out[f"{metric}_ci"] = binomial_ci(out[metric] * n, n)
    out["runs"] = runs
    return out


__all__ = [
    "attack_classes", "attack_success_rate", "attack_success_rate_all_images", "benign_accuracy", "binomial_ci",
    "evaluate_attack", "robust_accuracy",
]
