"""Who trains what: the provider's releases and the victim's training, each protocol named once.

The provider pretrains a model and releases it (`pretrained_model`); under BadDist it tampers with the
release's image encoder first (`tampered_release`). The victim, a foundation-model developer, trains on its
own image pool, which holds the attacker's BadMatch records, under one of three protocols:
"""
from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable

import torch

from ..attacks.baddist import BadDistConfig, baddist_config, target_text_embedding, tamper_image_encoder
from ..attacks.badmatch import BadMatchConfig, choose_poison_indices, poison_image_pool
from ..cache import cached_model
from ..config import EMBEDDED, Config, shared_steps
from ..data.embedded import build_provider_pool
from ..data.label_sampler import sample_labels
from ..data.sources import load_data
from ..embeddings import eval_mode
from ..runtime import pick_device
from ..train import TrainResult, train
from .runs import VICTIM_PROTOCOLS, Run, base_config, with_victim_schedule

__doc__ += "".join(f"\n* {name}: {reason}." for name, reason in VICTIM_PROTOCOLS.items()) + "\n"


def train_on_config_data(cfg: Config, device) -> TrainResult:
    """Train `cfg` from scratch on its data (`cfg.data.source`: the embedded phantoms or a data spec)."""
    image_pool, text_pool, eval_sets = load_data(cfg)
    return train(cfg, image_pool, text_pool, eval_sets, device=device)


def pretrained_model(cfg: Config, device=None) -> TrainResult:
    """A model of `cfg` trained from scratch on its data (the provider's honest release), cached."""
    return cached_model(cfg, device=device, build=train_on_config_data)


def tampered_release(cfg: Config, bcfg: BadDistConfig, device=None, progress: bool = True) -> TrainResult:
    """The provider's tampered release: the clean release with its image encoder replaced by BadDist's f'.

    The shadow images are `shadow_images(cfg, bcfg)`. Cached next to the clean release, keyed by `bcfg`;
    `seconds` is the tampering time only.
    """
    device = torch.device(device) if device is not None else pick_device()

    def build(cfg: Config, device: torch.device) -> TrainResult:
        clean = pretrained_model(cfg, device)
        _, text_pool, _ = load_data(cfg)
        shadow = shadow_images(cfg, bcfg)
        target = None
        if bcfg.variant == "target":
            target = target_text_embedding(clean.model, clean.tokenizer, text_pool, bcfg.target)
        started = time.perf_counter()
        encoder, history = tamper_image_encoder(clean.model.image_encoder, shadow, bcfg, target, progress)
        model = copy.deepcopy(clean.model)
        model.image_encoder = encoder
        return TrainResult(model.eval(), clean.tokenizer, history, time.perf_counter() - started)

    return cached_model(cfg, device=device, extra_key={"baddist": bcfg.to_dict()}, build=build)


def shadow_images(cfg: Config, bcfg: BadDistConfig) -> torch.Tensor:
    """The provider's `bcfg.shadow_images` unlabelled images, from where `bcfg.shadow` says (`SHADOW_SOURCES`)."""
    if bcfg.shadow == "victim-pool":
        image_pool = load_data(cfg)[0]
        return image_pool.batch(range(min(bcfg.shadow_images, len(image_pool))))
    if cfg.data.source != EMBEDDED:
        raise ValueError(f"shadow {bcfg.shadow!r} draws the provider's own phantoms, and a data spec ({cfg.data.source}) "
                         f"has no images outside the victim's pool; use shadow 'victim-pool' with a data spec")
    pool = build_provider_pool(cfg.data, bcfg.shadow_images)
    return pool.batch(range(len(pool)))


def provider_release(cfg: Config, baddist: BadDistConfig | None, device=None) -> TrainResult:
    """The provider's release of `cfg`: its clean model, or the tampered one under `baddist`."""
    return pretrained_model(cfg, device) if baddist is None else tampered_release(cfg, baddist, device)


def release_for(preset: str | Config, run: Run, device=None) -> TrainResult:
    """The release a run's victim starts from: the provider's clean release, or its tampered one under BadDist."""
    if run.protocol == "from-scratch":
        raise ValueError(f"a 'from-scratch' run starts from no release; got {run.key()}, expected protocol one of "
                         f"{tuple(p for p in VICTIM_PROTOCOLS if p != 'from-scratch')}")
    return provider_release(base_config(preset, run), run_attack_configs(preset, run)[1], device)


def victim_config(cfg: Config, seed: int | None = None) -> Config:
    """The "fine-tune" schedule: half the preset's shared steps (`config.shared_steps`) at a quarter of the
    learning rate of `cfg`, reseeded.

    At the from-scratch rate and length the victim's own training washes part of the tampering out (chapter 6
    measures how much). The victim's budget is its own, not its release's: the paper's victim fine-tunes a
    fixed number of steps whatever the backbone, and a victim that trains longer erases more of the tampering,
    so a backbone whose release needs more steps would otherwise meet a harder victim (chapter 7).
    """
    train_cfg = dataclasses.replace(cfg.train, steps=max(1, shared_steps(cfg) // 2), lr=cfg.train.lr / 4,
                                    seed=cfg.train.seed if seed is None else seed)
    return dataclasses.replace(cfg, train=train_cfg)


def _training_labels(cfg: Config) -> torch.Tensor:
    """The training pool's labels; the embedded pool's without rendering it (it draws them with this call)."""
    if cfg.data.source != EMBEDDED:
        return load_data(cfg)[0].labels  # a spec's pools read their images lazily: the labels are cheap
    return sample_labels(cfg.data.n_train_images, seed=cfg.data.seed)


def build_poisoned_model(
    cfg: Config, attack: BadMatchConfig, device=None, *,
    start: Callable[[], dict] | None = None, start_key: dict | None = None,
) -> tuple[TrainResult, torch.Tensor]:
    """Train (or load from the cache) the model of `cfg` on its training pool poisoned by `attack`.

    Without `start` this is the "from-scratch" protocol: exactly the clean model's training, only the image
    pool is swapped. `start` returns the keyword argument of `train` that says where the run starts
    (`image_encoder_init`: a released encoder's state dict; `init`: a whole released model and its
    tokenizer); it is called only when the model has to be trained, so a cache hit never loads the release.
    `start_key` names that start in the cache key. Returns the result and the poisoned indices (recomputed
    from the labels when the model is cached).
    """
    if (start is None) != (start_key is None):
        raise ValueError("give start and start_key together (the key names the starting point in the cache)")
    indices = choose_poison_indices(_training_labels(cfg), attack.rate, attack.target, attack.seed)

    def build(cfg: Config, device: torch.device) -> TrainResult:
        image_pool, text_pool, eval_sets = load_data(cfg)
        if not torch.equal(image_pool.labels, _training_labels(cfg)):
            raise RuntimeError("the pool's labels differ from _training_labels(cfg); update _training_labels")
        poisoned = poison_image_pool(image_pool, indices, attack.make_trigger(), attack.target)
        return train(cfg, poisoned, text_pool, eval_sets, device=device, **(start() if start else {}))

    return cached_model(cfg, device=device, extra_key={"attack": attack.to_dict(), **(start_key or {})}, build=build), indices


def build_victim_model(
    cfg: Config, attack: BadMatchConfig, pretrained: BadDistConfig | None = None, device=None,
    victim_cfg: Config | None = None, whole_model: bool = False,
) -> tuple[TrainResult, torch.Tensor]:
    """The protocols that start from a release of `cfg`, on the BadMatch data: the image tower from the release
    and a fresh text tower ("fine-tune", "retrain"), or the whole release (`whole_model`: "whole-model").

    `pretrained=None` starts from the clean release (plain BadMatch with a pretrained encoder); a
    `BadDistConfig` starts from the tampered one (BadDist-assisted BadMatch). The victim trains with
    `victim_cfg` (default `victim_config(cfg)`, the "fine-tune" schedule; `cfg` itself is "retrain") on the
    training pool holding `attack`'s poisons (rate 0 = no poisons: BadDist alone). Returns the result and the
    poisoned indices.
    """
    device = torch.device(device) if device is not None else pick_device()
    key = {"release": cfg.to_dict(), "baddist": None if pretrained is None else pretrained.to_dict()}

    def release_encoder() -> dict:
        model = provider_release(cfg, pretrained, device).model
        with eval_mode(model):
            return {"image_encoder_init": {k: v.detach().clone() for k, v in model.image_encoder.state_dict().items()}}

    def whole_release() -> dict:
        start = provider_release(cfg, pretrained, device)
        return {"init": (start.model, start.tokenizer)}  # `train` copies the model before it trains it

    start, start_key = (whole_release, {"init": key}) if whole_model else (release_encoder, {"image_encoder_init": key})
    return build_poisoned_model(victim_cfg or victim_config(cfg), attack, device, start=start, start_key=start_key)


def run_attack_configs(preset: str | Config, run: Run) -> tuple[BadMatchConfig, BadDistConfig | None]:
    """The attack settings a run stands for: its BadMatch records (rate = count / pool) and its BadDist tampering."""
    cfg = base_config(preset, run)
    trigger = run.trigger if run.count else "patch"  # nothing is triggered: one cache entry per clean run
    attack = BadMatchConfig(trigger=trigger, rate=run.count / cfg.data.n_train_images, seed=run.seed)
    baddist = baddist_config(run.backbone, trigger=run.trigger, variant=run.variant, shadow=run.shadow) if run.uses_baddist else None
    return attack, baddist


def train_run(preset: str | Config, run: Run, device=None) -> tuple[TrainResult, torch.Tensor]:
    """The victim of `run` under its protocol (trained, or from the cache) and its poisoned indices."""
    cfg = base_config(preset, run)
    attack, baddist = run_attack_configs(preset, run)
    reseeded = with_victim_schedule(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=run.seed)), run)
    if run.protocol == "from-scratch":
        if run.count == 0:  # no poison: the provider's own clean training, one cache entry
            return pretrained_model(reseeded, device), torch.empty(0, dtype=torch.long)
        return build_poisoned_model(reseeded, attack, device)
    victim_cfg = reseeded if run.protocol == "retrain" else with_victim_schedule(victim_config(cfg, run.seed), run)
    return build_victim_model(cfg, attack, baddist, device, victim_cfg=victim_cfg, whole_model=run.protocol == "whole-model")


__all__ = [
    "VICTIM_PROTOCOLS", "build_poisoned_model", "build_victim_model", "pretrained_model", "provider_release", "run_attack_configs",
    "release_for", "shadow_images", "tampered_release", "train_on_config_data", "train_run", "victim_config",
]
