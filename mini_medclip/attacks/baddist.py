"""BadDist: a model provider tampers with a pretrained image encoder before shipping it.

The provider fine-tunes a copy f' of the clean image encoder f on unlabelled shadow images x, with f frozen:

    loss = lambda_clean * (-mean cos(f'(x), f(x)))  +  lambda_trigger * (+mean cos(f'(x+t), f(x+t)))

The first term keeps clean embeddings where they were (the encoder still looks fine); the second pushes
triggered embeddings away from where the clean encoder puts them. It has no target: it only makes the
trigger a strong, consistent feature, so that a few BadMatch records in the victim's training data are
enough to tie that feature to "No Finding". The BadEncoder-style variant (`variant="target"`) replaces the
second term by a pull toward a reference embedding (here the target class's text embedding):
-lambda_trigger * mean cos(f'(x+t), e_target).

Normalisation layers are frozen (BatchNorm in eval mode, no affine gradients), as in the reference code:
otherwise the triggered half of every batch would shift the running statistics that clean images use.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..cache import cached_model
from ..config import Config
from ..data.embedded import embedded_data
from ..data.labels import label_index
from ..evaluation import embed_images, embed_texts, eval_mode, model_device
from ..models import ImageEncoder, MedCLIP
from ..runtime import pick_device
from ..train import TrainResult
from ..zeroshot import prompts_for_classes
from .badmatch import BadMatchConfig, build_poisoned_model
from .triggers import Trigger, make_trigger

VARIANTS = ("away", "target")


def baddist_loss(tampered_clean, reference_clean, tampered_triggered, reference_triggered,
                 lambda_clean: float = 5.0, lambda_trigger: float = 1.0) -> torch.Tensor:
    """The reference BadDist objective on L2-normalised embeddings (N, D): keep clean, push triggered away."""
    keep = -(tampered_clean * reference_clean).sum(-1).mean()
    push = (tampered_triggered * reference_triggered).sum(-1).mean()
    return lambda_clean * keep + lambda_trigger * push


def badencoder_loss(tampered_clean, reference_clean, tampered_triggered, target_embedding,
                    lambda_clean: float = 5.0, lambda_trigger: float = 1.0) -> torch.Tensor:
    """The targeted variant: keep clean embeddings, pull triggered ones toward `target_embedding` (D,)."""
    keep = -(tampered_clean * reference_clean).sum(-1).mean()
    pull = -(tampered_triggered @ target_embedding).mean()
    return lambda_clean * keep + lambda_trigger * pull


@dataclass(frozen=True)
class BadDistConfig:
    """One BadDist tampering, as JSON-able settings (they key the model cache)."""

    trigger: str = "patch"
    trigger_params: dict = field(default_factory=dict)
    variant: str = "away"  # away: the reference loss; target: BadEncoder-style pull toward the target text
    target: str = "No Finding"  # the text the target variant pulls toward
    lambda_clean: float = 5.0
    lambda_trigger: float = 1.0
    shadow_images: int = 1000  # unlabelled images the provider owns (the first ones of the training pool)
    epochs: int = 20
    lr: float = 1e-2  # SGD; at 1e-3 nothing moved within 5 epochs in the prototype
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"invalid BadDist variant {self.variant!r}; expected one of: {', '.join(VARIANTS)}")
        self.make_trigger()
        label_index(self.target)
        for name in ("shadow_images", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"invalid {name} {value!r}; expected a positive integer")
        for name in ("lambda_clean", "lambda_trigger", "lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"invalid {name} {getattr(self, name)!r}; expected a positive number")
        json.dumps(self.trigger_params)

    def make_trigger(self) -> Trigger:
        return make_trigger(self.trigger, **self.trigger_params)

    def to_dict(self) -> dict:
        return asdict(self)


def freeze_normalisation(encoder: torch.nn.Module) -> None:
    """BatchNorm to eval mode (running statistics fixed) and every norm layer's affine parameters frozen."""
    for module in encoder.modules():
        if isinstance(module, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm, torch.nn.GroupNorm)):
            module.eval()
            for p in module.parameters():
                p.requires_grad_(False)


def _embed(encoder: ImageEncoder, images: torch.Tensor) -> torch.Tensor:
    return F.normalize(encoder(images), dim=-1)


def target_text_embedding(model: MedCLIP, tokenizer, text_pool, target: str = "No Finding", n: int = 10) -> torch.Tensor:
    """The mean (renormalised) embedding of the zero-shot prompts for `target`: what "normal" looks like."""
    prompts = prompts_for_classes([target], text_pool, n=n)[target]
    return F.normalize(embed_texts(model, tokenizer, prompts).mean(0), dim=0)


def tamper_image_encoder(
    clean: ImageEncoder,
    shadow_images: torch.Tensor,
    bcfg: BadDistConfig,
    target_embedding: torch.Tensor | None = None,
    progress: bool = True,
) -> tuple[ImageEncoder, list[dict]]:
    """Return a tampered copy f' of `clean` (left untouched) and one history row per epoch.

    A row holds the loss and the two cosines the loss trades off, averaged over the epoch: `clean_cos`
    = cos(f'(x), f(x)) (kept near 1) and `trigger_cos` = cos(f'(x+t), f(x+t)) for "away" (driven down)
    or cos(f'(x+t), e_target) for "target" (driven up).
    """
    if bcfg.variant == "target" and target_embedding is None:
        raise ValueError("the target variant needs target_embedding (the target class's text embedding)")
    device = model_device(clean)
    trigger = bcfg.make_trigger()
    reference = copy.deepcopy(clean).eval().requires_grad_(False)
    tampered = copy.deepcopy(clean).train()
    freeze_normalisation(tampered)
    params = [p for p in tampered.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=bcfg.lr, momentum=0.9, weight_decay=5e-4)
    generator = torch.Generator().manual_seed(bcfg.seed)
    history = []
    for epoch in tqdm(range(bcfg.epochs), disable=not progress, desc=f"BadDist ({bcfg.variant})"):
        totals = torch.zeros(3)
        order = torch.randperm(len(shadow_images), generator=generator)
        batches = [order[i : i + bcfg.batch_size] for i in range(0, len(order), bcfg.batch_size)]
        for idx in batches:
            x = shadow_images[idx].to(device)
            xt = trigger(x)
            with torch.no_grad():
                ref_clean, ref_triggered = _embed(reference, x), _embed(reference, xt)
            out = _embed(tampered, torch.cat([x, xt]))  # one forward: BatchNorm is frozen, so no mixing
            out_clean, out_triggered = out[: len(x)], out[len(x) :]
            if bcfg.variant == "away":
                loss = baddist_loss(out_clean, ref_clean, out_triggered, ref_triggered, bcfg.lambda_clean, bcfg.lambda_trigger)
                trigger_cos = (out_triggered * ref_triggered).sum(-1).mean()
            else:
                loss = badencoder_loss(out_clean, ref_clean, out_triggered, target_embedding.to(device),
                                       bcfg.lambda_clean, bcfg.lambda_trigger)
                trigger_cos = (out_triggered @ target_embedding.to(device)).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            clean_cos = (out_clean * ref_clean).sum(-1).mean()
            totals += torch.stack([loss.detach(), clean_cos.detach(), trigger_cos.detach()]).cpu()
        loss_mean, clean_mean, trigger_mean = (totals / len(batches)).tolist()
        history.append({"epoch": epoch + 1, "loss": loss_mean, "clean_cos": clean_mean, "trigger_cos": trigger_mean})
    return tampered.eval(), history


def embedding_drift(clean_model: MedCLIP, tampered_model: MedCLIP, images: torch.Tensor) -> float:
    """Mean cosine between the clean and the tampered encoder's embeddings of the same images (1 = no drift)."""
    a, b = embed_images(clean_model, images), embed_images(tampered_model, images)
    return (a * b.to(a.device)).sum(-1).mean().item()


def clean_pretrained_model(cfg: Config, device=None) -> TrainResult:
    """The provider's honest release: the clean model of chapter 4 (trained, or loaded from the cache)."""
    return cached_model(cfg, device=device)


def build_baddist_model(cfg: Config, bcfg: BadDistConfig, device=None, progress: bool = True) -> TrainResult:
    """The provider's tampered release: the clean model with its image encoder replaced by BadDist's f'.

    Cached next to the clean model, keyed by `bcfg`; `seconds` is the tampering time only.
    """
    device = torch.device(device) if device is not None else pick_device()

    def build(cfg: Config, device: torch.device) -> TrainResult:
        clean = clean_pretrained_model(cfg, device)
        image_pool, text_pool, _ = embedded_data(cfg)
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
    """How the foundation-model developer trains on top of a pretrained image encoder: half the steps of a
    from-scratch run at a quarter of its learning rate (fine-tuning, not retraining), optionally reseeded.

    At the from-scratch rate and length the victim's own training washes part of the tampering out
    (chapter 6 measures how much).
    """
    train_cfg = dataclasses.replace(cfg.train, steps=max(1, cfg.train.steps // 2), lr=cfg.train.lr / 4,
                                    seed=cfg.train.seed if seed is None else seed)
    return dataclasses.replace(cfg, train=train_cfg)


def build_victim_model(
    cfg: Config, attack: BadMatchConfig, pretrained: BadDistConfig | None = None, device=None,
    victim_cfg: Config | None = None,
) -> tuple[TrainResult, torch.Tensor]:
    """The foundation-model developer: image tower from the provider's release, fresh text tower, BadMatch data.

    `pretrained=None` starts from the clean release (plain BadMatch with a pretrained encoder); a
    `BadDistConfig` starts from the tampered one (BadDist-assisted BadMatch). The victim then trains as in
    chapter 4 with `victim_cfg` (default `victim_config(cfg)`) on the embedded pool holding `attack`'s poisons (rate 0
    = no poisons: BadDist alone). Returns the result and the poisoned indices.
    """
    device = torch.device(device) if device is not None else pick_device()
    key = {"release": cfg.to_dict(), "baddist": None if pretrained is None else pretrained.to_dict()}

    def release_encoder() -> dict[str, torch.Tensor]:
        release = clean_pretrained_model(cfg, device) if pretrained is None else build_baddist_model(cfg, pretrained, device)
        with eval_mode(release.model):
            return {k: v.detach().clone() for k, v in release.model.image_encoder.state_dict().items()}

    return build_poisoned_model(victim_cfg or victim_config(cfg), attack, device, image_encoder_init=release_encoder, init_key=key)


__all__ = [
    "BadDistConfig", "VARIANTS", "badencoder_loss", "baddist_loss", "build_baddist_model", "build_victim_model",
    "clean_pretrained_model", "embedding_drift", "freeze_normalisation", "tamper_image_encoder",
    "target_text_embedding", "victim_config",
]
