"""One attack experiment, end to end: the provider's release, the victim's training, the scores.

Every run follows one protocol, so the attacks differ only in what the attacker controls:

* the model provider releases a pretrained model (chapter 4's clean model, per backbone); under BadDist
  its image encoder is tampered first (`attacks.baddist`);
* the foundation-model developer (the victim) starts its image tower from that release, its text tower
  fresh, and trains with `victim_config` on the embedded pool holding `count` BadMatch records;
* the resulting model is scored on the three zero-shot tasks, with the clean victim's ASR for the same
  trigger as the floor.

`reproduce.py` runs many of these; the defenses evaluate against the same victims.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from ..config import IMAGE_ENCODERS, PRESETS, get_config
from .baddist import (
    VARIANTS, BadDistConfig, build_baddist_model, build_victim_model, clean_pretrained_model, embedding_drift, victim_config,
)
from .badmatch import BadMatchConfig
from .metrics import evaluate_attack

ATTACKS = ("clean", "badmatch", "baddist", "baddist+badmatch")
TASK_NAMES = {"five_class": "5-class", "covid": "COVID-like", "rsna": "RSNA-like"}


@dataclass(frozen=True)
class Run:
    """One trained victim: which backbone, trigger and attack, how many BadMatch records, which seed.

    `variant` is the BadDist loss ("away": the reference objective, "target": BadEncoder-style); it is
    ignored by attacks without BadDist. Clean runs poison nothing, so their count is 0.
    """

    backbone: str = "resnet"
    trigger: str = "patch"
    attack: str = "badmatch"
    count: int = 5
    seed: int = 0
    variant: str = "away"

    def __post_init__(self):
        _choice("backbone", self.backbone, IMAGE_ENCODERS)
        _choice("attack", self.attack, ATTACKS)
        _choice("variant", self.variant, VARIANTS)
        if self.attack in ("clean", "baddist") and self.count != 0:
            raise ValueError(f"a {self.attack!r} run poisons no records; got count {self.count}, expected 0")
        if self.attack in ("badmatch", "baddist+badmatch") and self.count < 1:
            raise ValueError(f"a {self.attack!r} run needs at least one poisoned record; got count {self.count}")

    @property
    def uses_baddist(self) -> bool:
        return self.attack.startswith("baddist")

    @property
    def label(self) -> str:
        """The attack as a table shows it: BadDist runs name their variant."""
        return f"{self.attack} ({self.variant})" if self.uses_baddist else self.attack

    def key(self) -> str:
        return json.dumps(asdict(self) if self.uses_baddist else {**asdict(self), "variant": None}, sort_keys=True)


def _choice(what: str, value, valid) -> None:
    if value not in valid:
        raise ValueError(f"invalid {what} {value!r}; expected one of: {', '.join(map(str, valid))}")


def base_config(preset: str, run: Run):
    """The provider's configuration for a run: the preset with the run's backbone."""
    _choice("preset", preset, tuple(PRESETS))
    return get_config(preset, model__image_encoder=run.backbone)


def train_run(preset: str, run: Run, device=None):
    """The victim model of `run` (trained, or from the cache) and its poisoned indices."""
    cfg = base_config(preset, run)
    n_images = cfg.data.n_train_images
    trigger = run.trigger if run.count else "patch"  # nothing is triggered: keep one cache entry per clean run
    attack = BadMatchConfig(trigger=trigger, rate=run.count / n_images, seed=run.seed)
    baddist = BadDistConfig(trigger=run.trigger, variant=run.variant) if run.uses_baddist else None
    return build_victim_model(cfg, attack, baddist, device, victim_cfg=victim_config(cfg, run.seed))


def evaluate_run(preset: str, run: Run, result, clean_result, data, device=None, seconds: float = 0.0) -> list[dict]:
    """One record per zero-shot task: BA, ASR, robust accuracy, the clean victim's ASR, BadDist's drift."""
    _, text_pool, eval_sets = data
    trigger = BadMatchConfig(trigger=run.trigger).make_trigger()
    drift = None
    if run.uses_baddist:
        cfg = base_config(preset, run)
        clean = clean_pretrained_model(cfg, device)
        tampered = build_baddist_model(cfg, BadDistConfig(trigger=run.trigger, variant=run.variant), device)
        five = eval_sets["five_class"]
        drift = embedding_drift(clean.model, tampered.model, five.images.batch(range(len(five))))
    records = []
    for task, eval_set in eval_sets.items():
        m = evaluate_attack(result.model, result.tokenizer, eval_set, text_pool, trigger)
        floor = evaluate_attack(clean_result.model, clean_result.tokenizer, eval_set, text_pool, trigger, n_runs=1)
        records.append({
            **asdict(run), "variant": run.variant if run.uses_baddist else None, "attack_label": run.label,
            "task": task, "poison_count": run.count, "poison_rate": run.count / base_config(preset, run).data.n_train_images,
            "ba": m["ba"], "ba_std": m["ba_std"], "asr": m["asr"], "asr_std": m["asr_std"], "asr_ci": list(m["asr_ci"]),
            "asr_all_images": m["asr_all_images"], "robust_acc": m["robust_acc"], "asr_clean_model": floor["asr"],
            "clean_embedding_drift": drift, "seconds": seconds, "key": run.key(),
        })
    return records


__all__ = ["ATTACKS", "TASK_NAMES", "Run", "base_config", "evaluate_run", "train_run"]
