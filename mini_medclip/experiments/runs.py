"""What one experiment is: a `Run`, and the names every layer uses for attacks and zero-shot tasks.

A run fixes what the attacker controls (backbone, trigger, attack, poisoned records, seed, BadDist variant);
how its victim is trained is the fine-tuning protocol of `protocols.py`.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from ..attacks.baddist import VARIANTS
from ..config import IMAGE_ENCODERS, PRESETS, get_config
from ..registry import check_choice

# "clean" is the run without an attack, everywhere: runs, the CLI, the defense table.
ATTACKS = ("clean", "badmatch", "baddist", "baddist+badmatch")
POISONING_ATTACKS = ("badmatch", "baddist+badmatch")  # the attacks that put records in the victim's pool
TASK_NAMES = {"five_class": "5-class", "covid": "COVID-like", "rsna": "RSNA-like"}


@dataclass(frozen=True)
class Run:
    """One trained victim: which backbone, trigger and attack, how many BadMatch records, which seed.

    `variant` is the BadDist loss ("away": the reference objective, "target": BadEncoder-style); it is
    ignored by attacks without BadDist. Runs without BadMatch poison nothing, so their count is 0.
    """

    backbone: str = "resnet"
    trigger: str = "patch"
    attack: str = "badmatch"
    count: int = 5
    seed: int = 0
    variant: str = "away"

    def __post_init__(self):
        check_choice("backbone", self.backbone, IMAGE_ENCODERS)
        check_choice("attack", self.attack, ATTACKS)
        check_choice("variant", self.variant, VARIANTS)
        if self.attack not in POISONING_ATTACKS and self.count != 0:
            raise ValueError(f"a {self.attack!r} run poisons no records; got count {self.count}, expected 0")
        if self.attack in POISONING_ATTACKS and self.count < 1:
            raise ValueError(f"a {self.attack!r} run needs at least one poisoned record; got count {self.count}")

    @property
    def uses_baddist(self) -> bool:
        return self.attack.startswith("baddist")

    @property
    def label(self) -> str:
        """The attack as a table shows it: BadDist runs name their variant."""
        return f"{self.attack} ({self.variant})" if self.uses_baddist else self.attack

    def clean_twin(self) -> "Run":
        """The clean victim of the same backbone, trigger and seed: the floor a run's ASR is read against."""
        return Run(self.backbone, self.trigger, "clean", 0, self.seed)

    def key(self) -> str:
        return json.dumps(asdict(self) if self.uses_baddist else {**asdict(self), "variant": None}, sort_keys=True)


def base_config(preset: str, run: Run):
    """The provider's configuration for a run: the preset with the run's backbone."""
    check_choice("preset", preset, tuple(PRESETS))
    return get_config(preset, model__image_encoder=run.backbone)


__all__ = ["ATTACKS", "POISONING_ATTACKS", "TASK_NAMES", "Run", "base_config"]
