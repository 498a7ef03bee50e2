"""How well a defense works: detection metrics for suspicion scores, and DER for a mitigation.

Every detector in this package returns one score per item, oriented "higher = more suspicious", and every
metric here takes the ground truth with label 1 = poisoned. Keeping one orientation everywhere is what
stops an inverted AUROC (0.1 read as "bad" when it means "perfect, upside down") from slipping through.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve


def _scores_and_truth(scores, is_poisoned) -> tuple[np.ndarray, np.ndarray]:
    """(scores, truth) as 1-D numpy arrays of equal length; truth is 0/1 with both classes present."""
    scores = torch.as_tensor(scores).detach().cpu().double().flatten().numpy()
    truth = torch.as_tensor(is_poisoned).detach().cpu().flatten().numpy()
    if len(scores) != len(truth):
        raise ValueError(f"{len(scores)} scores for {len(truth)} ground-truth flags; expected equal counts")
    if not np.isfinite(scores).all():
        raise ValueError(f"{int((~np.isfinite(scores)).sum())} scores are not finite; expected finite numbers")
    if not np.isin(truth, (0, 1)).all():
        raise ValueError(f"is_poisoned holds {sorted(set(truth.tolist()) - {0, 1})[:3]}; expected 0/1 or booleans")
    truth = truth.astype(int)
    if len(np.unique(truth)) < 2:
        present = "poisoned" if truth.any() else "clean"
        raise ValueError(f"every item is {present}; detection metrics need both clean (0) and poisoned (1) items")
    return scores, truth


def detection_auroc(scores, is_poisoned) -> float:
    """Probability that a random poisoned item scores above a random clean one (1 = perfect, 0.5 = chance)."""
    scores, truth = _scores_and_truth(scores, is_poisoned)
    return float(roc_auc_score(truth, scores))


def roc_points(scores, is_poisoned) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-positive rates, true-positive rates, thresholds) of the ROC curve, for plotting."""
    scores, truth = _scores_and_truth(scores, is_poisoned)
    fpr, tpr, thresholds = roc_curve(truth, scores)
    return fpr, tpr, thresholds


def tpr_at_fpr(scores, is_poisoned, fpr: float = 0.05) -> tuple[float, float, float]:
    """(TPR, threshold, achieved FPR) when an item is flagged if its score is strictly above the threshold.

    The threshold is set on the clean scores alone: the largest-but-allowed clean score, so that at most
    floor(fpr * n_clean) clean items are flagged. A defender can do this without knowing the poisons,
    which is why the operating point is reported at a fixed FPR rather than at the best-looking cut.
    Ties at the threshold are not flagged, so the achieved FPR can be below `fpr`.
    """
    if isinstance(fpr, bool) or not isinstance(fpr, (int, float)) or not 0 <= fpr <= 1:
        raise ValueError(f"invalid fpr {fpr!r}; expected a false-positive rate in [0, 1]")
    scores, truth = _scores_and_truth(scores, is_poisoned)
    clean = np.sort(scores[truth == 0])[::-1]
    allowed = math.floor(fpr * len(clean) + 1e-9)  # 1e-9: 0.05 * 100 is 5.000000000000001 in floats
    threshold = -math.inf if allowed >= len(clean) else float(clean[allowed])
    achieved = float((clean > threshold).mean())
    tpr = float((scores[truth == 1] > threshold).mean())
    return tpr, threshold, achieved


def found_among(scores, poisoned_indices, budget: int | None = None) -> int:
    """How many of the recorded poisons are among the `budget` highest scores (default: as many as poisons).

    This is what a curator with a fixed review budget finds: inspect the top `budget` items, count the
    poisons. With budget = number of poisons, found / budget is the precision and the recall at once.
    """
    scores = torch.as_tensor(scores).detach().cpu().double().flatten()
    poisoned = torch.as_tensor(poisoned_indices, dtype=torch.long).flatten()
    n = len(scores)
    if len(poisoned) and (poisoned.min() < 0 or poisoned.max() >= n):
        raise ValueError(f"poisoned indices span [{int(poisoned.min())}, {int(poisoned.max())}]; expected indices in [0, {n})")
    budget = len(poisoned) if budget is None else budget
    if isinstance(budget, bool) or not isinstance(budget, int) or not 0 <= budget <= n:
        raise ValueError(f"invalid budget {budget!r}; expected an integer in [0, {n}] (the number of scores)")
    top = scores.topk(budget).indices
    return int(torch.isin(top, poisoned).sum())


def defense_effectiveness_rate(ba_before: float, asr_before: float, ba_after: float, asr_after: float) -> float:
    """DER = [max(0, ASR drop) - max(0, BA drop) + 1] / 2, in [0, 1]; 0.5 = no effect (BackdoorBench).

    The max(0, .) clips make an ASR that rises or a BA that improves count as no change, so a defense
    is rewarded only for removing the backdoor and penalised only for hurting clean accuracy.
    """
    values = {"ba_before": ba_before, "asr_before": asr_before, "ba_after": ba_after, "asr_after": asr_after}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"invalid {name} {value!r}; expected a rate in [0, 1]")
    asr_drop = max(0.0, asr_before - asr_after)
    ba_drop = max(0.0, ba_before - ba_after)
    return (asr_drop - ba_drop + 1) / 2


__all__ = ["defense_effectiveness_rate", "detection_auroc", "found_among", "roc_points", "tpr_at_fpr"]
