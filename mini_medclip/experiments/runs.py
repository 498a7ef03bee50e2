"""What one experiment is: a `Run`, and the names every layer uses for attacks, victim protocols and tasks.

A run fixes what the attacker controls (backbone, trigger, attack, poisoned records, seed, BadDist variant and
its shadow images), how its victim trains (`protocol`, one of `VICTIM_PROTOCOLS`, which `protocols.py`
implements, scaled by `lr_scale` and `steps_scale`), and which draw of the world it happens in
(`release_seed`: the data and the provider's pretraining).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass

from ..attacks.baddist import SHADOW_SOURCES, VARIANTS
from ..config import IMAGE_ENCODERS, PRESETS, Config, get_config, with_image_encoder
from ..registry import check_choice

# "clean" is the run without an attack, everywhere: runs, the CLI, the defense table.
ATTACKS = ("clean", "badmatch", "baddist", "baddist+badmatch")
POISONING_ATTACKS = ("badmatch", "baddist+badmatch")  # the attacks that put records in the victim's pool
TASK_NAMES = {"five_class": "5-class", "covid": "COVID-like", "rsna": "RSNA-like"}
VICTIM_PROTOCOLS = {
    "fine-tune": "the victim starts its image tower from the provider's release (clean or tampered) and its text "
                 "tower fresh, and trains half the preset's steps (the same for every backbone) at a quarter of the "
                 "learning rate; BadDist reaches a victim only through a release (chapters 6 to 8, `reproduce`)",
    "from-scratch": "the victim trains the whole model from random weights at the preset's schedule; BadMatch "
                    "needs no release, and there is none to tamper with (chapter 5, `train --attack badmatch`)",
    "retrain": "the victim starts from a release like `fine-tune` but trains at its release's own schedule (at "
               "least twice the steps, four times the learning rate), which moves the image tower much further (chapter 6)",
    "whole-model": "the victim starts from the whole release (image tower, text tower and tokenizer), as the paper's "
                   "victim starts from a pretrained MedCLIP, and trains at the `fine-tune` schedule",
}


@dataclass(frozen=True)
class Run:
    """One trained victim: which backbone, trigger and attack, how many BadMatch records, which seed.

    `variant` is the BadDist loss ("away": the reference objective, "target": BadEncoder-style); it is
    ignored by attacks without BadDist. Runs without BadMatch poison nothing, so their count is 0. A
    `from-scratch` victim has no release, so it cannot meet BadDist.

    `seed` draws what the attacker and the victim do (which records are poisoned, the victim's training);
    `release_seed` draws everything before them (the data: pools and test sets, and the provider's clean
    pretraining, from which the tampered release is made). An outcome that holds for one release may not
    hold for the next, so claims are checked over several.

    `lr_scale` and `steps_scale` multiply the protocol's learning rate and number of steps: how hard the
    victim trains decides how much of a tampered release survives it. `shadow` says where the BadDist
    provider's images come from (`SHADOW_SOURCES`).
    """

    backbone: str = "resnet"
    trigger: str = "patch"
    attack: str = "badmatch"
    count: int = 5
    seed: int = 0
    variant: str = "away"
    protocol: str = "fine-tune"
    release_seed: int = 0
    lr_scale: float = 1.0
    steps_scale: float = 1.0
    shadow: str = "victim-pool"

    def __post_init__(self):
        check_choice("backbone", self.backbone, IMAGE_ENCODERS)
        check_choice("attack", self.attack, ATTACKS)
        check_choice("variant", self.variant, VARIANTS)
        check_choice("protocol", self.protocol, tuple(VICTIM_PROTOCOLS))
        check_choice("shadow", self.shadow, tuple(SHADOW_SOURCES))
        if self.shadow != "victim-pool" and not self.uses_baddist:
            raise ValueError(f"a {self.attack!r} run has no BadDist provider, so no shadow images; got shadow "
                             f"{self.shadow!r}, expected 'victim-pool' (the default)")
        for name in ("lr_scale", "steps_scale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise ValueError(f"invalid {name} {value!r}; expected a positive number (1 = the protocol's schedule)")
        if self.protocol == "from-scratch" and self.uses_baddist:
            raise ValueError(f"a 'from-scratch' victim starts from no release, so it cannot carry BadDist; got attack "
                             f"{self.attack!r}, expected one of ('clean', 'badmatch') or protocol 'fine-tune' or 'retrain'")
        if self.attack not in POISONING_ATTACKS and self.count != 0:
            raise ValueError(f"a {self.attack!r} run poisons no records; got count {self.count}, expected 0")
        for name in ("seed", "release_seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"invalid {name} {value!r}; expected a non-negative integer")
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
        """The clean victim of the same backbone, trigger, seeds and protocol: the floor a run's ASR is read against."""
        return Run(self.backbone, self.trigger, "clean", 0, self.seed, protocol=self.protocol, release_seed=self.release_seed,
                   lr_scale=self.lr_scale, steps_scale=self.steps_scale)

    def key(self) -> str:
        """The run's identity in results and caches. Fields that do not apply are left out: the variant of a run
        without BadDist; and every later field at its default (protocol, release, schedule, shadow), so that keys
        written before those fields existed stay valid."""
        fields = asdict(self) if self.uses_baddist else {**asdict(self), "variant": None}
        for name, default in LATER_FIELDS.items():
            if fields[name] == default:
                del fields[name]
        for name in ("lr_scale", "steps_scale"):  # one key per value: 4 and 4.0 are the same schedule
            if name in fields and float(fields[name]).is_integer():
                fields[name] = int(fields[name])
        return json.dumps(fields, sort_keys=True)


# Fields added to `Run` after results were first stored: a key leaves them out at these values.
LATER_FIELDS = {"protocol": "fine-tune", "release_seed": 0, "lr_scale": 1.0, "steps_scale": 1.0, "shadow": "victim-pool"}


def base_config(preset: str | Config, run: Run) -> Config:
    """The provider's configuration for a run: the preset with the run's backbone and release seed.

    `preset` is a preset's name, or a config of one (overridden steps, or reading real data through a data
    spec: `data.sources.with_data_spec`); every experiment function passes it on as it came."""
    if isinstance(preset, Config):
        cfg = with_image_encoder(preset, run.backbone)
    else:
        check_choice("preset", preset, tuple(PRESETS))
        cfg = get_config(preset, model__image_encoder=run.backbone)
    return with_release_seed(cfg, run)


def with_victim_schedule(cfg: Config, run: Run) -> Config:
    """`cfg` (a victim's training config) with its learning rate and steps scaled by the run's `lr_scale` and
    `steps_scale`; the warm-up stays the same share of the steps."""
    if run.lr_scale == 1 and run.steps_scale == 1:
        return cfg
    steps = max(1, round(cfg.train.steps * run.steps_scale))
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=cfg.train.lr * run.lr_scale, steps=steps))


def passes_over_pool(cfg: Config) -> float:
    """How many times a victim trained with `cfg` sees each training record (a poisoned one included): steps x
    batch / pool size."""
    return cfg.train.steps * cfg.train.batch_size / cfg.data.n_train_images


def with_release_seed(cfg: Config, run: Run) -> Config:
    """`cfg` with its data seed and its (provider's) training seed moved on by `run.release_seed`."""
    if run.release_seed == 0:
        return cfg
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, seed=cfg.data.seed + run.release_seed),
                               train=dataclasses.replace(cfg.train, seed=cfg.train.seed + run.release_seed))


__all__ = ["ATTACKS", "LATER_FIELDS", "POISONING_ATTACKS", "TASK_NAMES", "VICTIM_PROTOCOLS", "Run", "base_config",
           "passes_over_pool", "with_release_seed", "with_victim_schedule"]
