"""Backdoor defenses, by who uses them: data curator, deployer, model consumer, model owner.

`make_defense(name, **params)` builds any of them by name; `defenses.metrics` scores them (AUROC, TPR at
a fixed FPR, poisons found within a review budget, DER).
"""
from .activation_clustering import ActivationClustering
from .base import (
    DEFENSES,
    DataDetector,
    InputDetector,
    Mitigation,
    ModelScanner,
    ScanResult,
    groups_to_score,
    label_groups,
    make_defense,
    register_defense,
)
from .cleanclip import CleanCLIP, radiograph_augmentation
from .decree import DECREE, decision_threshold, frozen, mean_pairwise_cosine
from .finetune import FineTune
from .label_consistency import LabelConsistency
from .metrics import defense_effectiveness_rate, detection_auroc, found_among, roc_points, tpr_at_fpr
from .spectral import SpectralSignatures
from .strip import STRIP, prediction_entropy_bits

__all__ = [
    "DEFENSES", "ActivationClustering", "CleanCLIP", "DECREE", "DataDetector", "FineTune", "InputDetector",
    "LabelConsistency", "Mitigation", "ModelScanner", "STRIP", "ScanResult", "SpectralSignatures",
    "decision_threshold", "defense_effectiveness_rate", "detection_auroc", "found_among", "frozen",
    "groups_to_score", "label_groups", "make_defense", "mean_pairwise_cosine", "prediction_entropy_bits",
    "radiograph_augmentation", "register_defense", "roc_points", "tpr_at_fpr",
]
