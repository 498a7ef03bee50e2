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

from ..attacks.baddist import BadDistConfig, target_text_embedding, tamper_image_encoder
from ..attacks.badmatch import BadMatchConfig, choose_poison_indices, poison_image_pool
from ..cache import cached_model
from ..config import EMBEDDED, Config
from ..data.sources import load_data
from ..data.label_sampler import sample_labels
from ..embeddings import eval_mode
from ..runtime import pick_device
from ..train import TrainResult, train
from .runs import VICTIM_PROTOCOLS, Run, base_config

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

    The shadow images are the first `bcfg.shadow_images` of the training pool. Cached next to the
    clean release, keyed by `bcfg`; `seconds` is the tampering time only.
    """
    device = torch.device(device) if device is not None else pick_device()

    def build(cfg: Config, device: torch.device) -> TrainResult:
        clean = pretrained_model(cfg, device)
        image_pool, text_pool, _ = load_data(cfg)
        shadow = image_pool.batch(range(min(bcfg.shadow_images, len(image_pool))))
        target = None
        if bcfg.variant == "target":
            target = target_text_embedding(clean.model, clean.tokenizer, text_pool, bcfg.target)
        started = time.perf_counter()
        encoder, history = tamper_image_encoder(clean.model.image_encoder, shadow, bcfg, target, progress)
        model = copy.deepcopy(clean.model)
        model.image_encoder = encoder
        return TrainResult(model.eval(), clean.tokenizer, history, time.perf_counter() - started)

    return cached_model(cfg, device=device, extra_key={"baddist": bcfg.to_dict()}, build=build)


def victim_config(cfg: Config, seed: int | None = None) -> Config:
    """The "fine-tune" schedule: half the steps of `cfg` at a quarter of its learning rate, reseeded.

    At the from-scratch rate and length the victim's own training washes part of the tampering out
    (chapter 6 measures how much).
    """
    train_cfg = dataclasses.replace(cfg.train, steps=max(1, cfg.train.steps // 2), lr=cfg.train.lr / 4,
                                    seed=cfg.train.seed if seed is None else seed)
    return dataclasses.replace(cfg, train=train_cfg)


def _training_labels(cfg: Config) -> torch.Tensor:
    """The training pool's labels; the embedded pool's without rendering it (it draws them with this call)."""
    if cfg.data.source != EMBEDDED:
        return load_data(cfg)[0].labels  # a spec's pools read their images lazily: the labels are cheap
    return sample_labels(cfg.data.n_train_images, seed=cfg.data.seed)


def build_poisoned_model(
    cfg: Config, attack: BadMatchConfig, device=None, *,
    image_encoder_init: Callable[[], dict[str, torch.Tensor]] | None = None, init_key: dict | None = None,
) -> tuple[TrainResult, torch.Tensor]:
    """Train (or load from the cache) the model of `cfg` on its training pool poisoned by `attack`.

    Without `image_encoder_init` this is the "from-scratch" protocol: exactly the clean model's training,
    only the image pool is swapped. `image_encoder_init` returns the state dict of a released encoder to
    start the image tower from; it is called only when the model has to be trained, so a cache hit never
    loads the release. `init_key` names that encoder in the cache key. Returns the result and the poisoned
    indices (recomputed from the labels when the model is cached).
    """
    if (image_encoder_init is None) != (init_key is None):
        raise ValueError("give image_encoder_init and init_key together (the key names the encoder in the cache)")
    indices = choose_poison_indices(_training_labels(cfg), attack.rate, attack.target, attack.seed)

    def build(cfg: Config, device: torch.device) -> TrainResult:
        image_pool, text_pool, eval_sets = load_data(cfg)
        if not torch.equal(image_pool.labels, _training_labels(cfg)):
            raise RuntimeError("the pool's labels differ from _training_labels(cfg); update _training_labels")
        poisoned = poison_image_pool(image_pool, indices, attack.make_trigger(), attack.target)
        encoder_state = image_encoder_init() if image_encoder_init else None
        return train(cfg, poisoned, text_pool, eval_sets, device=device, image_encoder_init=encoder_state)

    extra_key = {"attack": attack.to_dict()} if init_key is None else {"attack": attack.to_dict(), "image_encoder_init": init_key}
    return cached_model(cfg, device=device, extra_key=extra_key, build=build), indices


def build_victim_model(
    cfg: Config, attack: BadMatchConfig, pretrained: BadDistConfig | None = None, device=None,
    victim_cfg: Config | None = None,
) -> tuple[TrainResult, torch.Tensor]:
    """The "fine-tune" and "retrain" protocols: image tower from the release of `cfg`, fresh text tower, BadMatch data.

    `pretrained=None` starts from the clean release (plain BadMatch with a pretrained encoder); a
    `BadDistConfig` starts from the tampered one (BadDist-assisted BadMatch). The victim trains with
    `victim_cfg` (default `victim_config(cfg)`, the "fine-tune" schedule; `cfg` itself is "retrain") on the
    training pool holding `attack`'s poisons (rate 0 = no poisons: BadDist alone). Returns the result and the
    poisoned indices.
    """
    device = torch.device(device) if device is not None else pick_device()
    key = {"release": cfg.to_dict(), "baddist": None if pretrained is None else pretrained.to_dict()}

    def release_encoder() -> dict[str, torch.Tensor]:
        release = pretrained_model(cfg, device) if pretrained is None else tampered_release(cfg, pretrained, device)
        with eval_mode(release.model):
            return {k: v.detach().clone() for k, v in release.model.image_encoder.state_dict().items()}

    return build_poisoned_model(victim_cfg or victim_config(cfg), attack, device, image_encoder_init=release_encoder, init_key=key)


def run_attack_configs(preset: str | Config, run: Run) -> tuple[BadMatchConfig, BadDistConfig | None]:
    """The attack settings a run stands for: its BadMatch records (rate = count / pool) and its BadDist tampering."""
    cfg = base_config(preset, run)
    trigger = run.trigger if run.count else "patch"  # nothing is triggered: one cache entry per clean run
    attack = BadMatchConfig(trigger=trigger, rate=run.count / cfg.data.n_train_images, seed=run.seed)
    return attack, BadDistConfig(trigger=run.trigger, variant=run.variant) if run.uses_baddist else None


def train_run(preset: str | Config, run: Run, device=None) -> tuple[TrainResult, torch.Tensor]:
    """The victim of `run` under its protocol (trained, or from the cache) and its poisoned indices."""
    cfg = base_config(preset, run)
    attack, baddist = run_attack_configs(preset, run)
    reseeded = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=run.seed))
    if run.protocol == "from-scratch":
        if run.count == 0:  # no poison: the provider's own clean training, one cache entry
            return pretrained_model(reseeded, device), torch.empty(0, dtype=torch.long)
        return build_poisoned_model(reseeded, attack, device)
    victim_cfg = reseeded if run.protocol == "retrain" else victim_config(cfg, run.seed)
    return build_victim_model(cfg, attack, baddist, device, victim_cfg=victim_cfg)


__all__ = [
    "VICTIM_PROTOCOLS", "build_poisoned_model", "build_victim_model", "pretrained_model", "run_attack_configs",
    "tampered_release", "train_on_config_data", "train_run", "victim_config",
]
