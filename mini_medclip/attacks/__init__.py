"""Attacks on the trained model: BadMatch poisoning, its triggers, the metrics that score it and the geometry behind them."""
from .badmatch import (
    BadMatchConfig,
    PoisonedImagePool,
    choose_poison_indices,
    poison_image_pool,
    target_label_vector,
)
from .geometry import GEOMETRY, target_margins, trigger_geometry
from .metrics import (
    attack_classes,
    attack_success_rate,
    attack_success_rate_all_images,
    benign_accuracy,
    binomial_ci,
    evaluate_attack,
    robust_accuracy,
)
from .triggers import (
    TRIGGERS,
    BlendedTrigger,
    Compose,
    FourierTrigger,
    PatchTrigger,
    Trigger,
    TriggerSpec,
    WarpTrigger,
    make_trigger,
    smooth_pattern,
    visibility,
)

__all__ = [
    "BadMatchConfig", "PoisonedImagePool", "choose_poison_indices", "poison_image_pool",
    "target_label_vector", "attack_classes", "attack_success_rate", "attack_success_rate_all_images",
    "benign_accuracy", "binomial_ci", "evaluate_attack", "GEOMETRY", "target_margins",
    "trigger_geometry", "robust_accuracy", "TRIGGERS", "BlendedTrigger", "Compose",
    "FourierTrigger", "PatchTrigger", "Trigger", "TriggerSpec", "WarpTrigger", "make_trigger", "smooth_pattern", "visibility",
]
