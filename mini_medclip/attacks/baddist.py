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
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data.labels import label_index
from ..embeddings import embed_images, embed_texts, model_device
from ..models import ImageEncoder, MedCLIP
from ..registry import check_choice
from ..zeroshot import prompts_for_classes
from .triggers import TriggerSpec

VARIANTS = ("away", "target")
OPTIMIZERS = ("sgd", "adam")  # SGD: momentum 0.9, weight decay 5e-4 (the reference code's); Adam: no weight decay
SHADOW_SOURCES = {
    "victim-pool": "the first `shadow_images` images of the victim's training pool: the provider holds the victim's "
                   "own data, the reference code's simplification",
    "disjoint": "as many images of the provider's own, drawn apart from every pool of the release: the victim never "
                "trains on them",
}


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
class BadDistConfig(TriggerSpec):
    """One BadDist tampering, as JSON-able settings (they key the model cache)."""

    variant: str = "away"  # away: the reference loss; target: BadEncoder-style pull toward the target text
    target: str = "No Finding"  # the text the target variant pulls toward
    lambda_clean: float = 5.0
    lambda_trigger: float = 1.0
    shadow_images: int = 1000  # unlabelled images the provider tampers with
    shadow: str = "victim-pool"  # where they come from: one of SHADOW_SOURCES
    epochs: int = 20
    lr: float = 1e-2  # SGD; at 1e-3 nothing moved within 5 epochs in the prototype
    batch_size: int = 64
    seed: int = 0
    optimizer: str = "sgd"  # one of OPTIMIZERS; an image encoder's own choice is in ENCODER_SETTINGS

    def __post_init__(self):
        check_choice("BadDist variant", self.variant, VARIANTS)
        check_choice("shadow", self.shadow, tuple(SHADOW_SOURCES))
        check_choice("BadDist optimizer", self.optimizer, OPTIMIZERS)
        super().__post_init__()
        label_index(self.target)
        for name in ("shadow_images", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"invalid {name} {value!r}; expected a positive integer")
        for name in ("lambda_clean", "lambda_trigger", "lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"invalid {name} {getattr(self, name)!r}; expected a positive number")

    def to_dict(self) -> dict:
        """The settings; the default shadow source and optimizer are left out, so cache keys written before they
        existed stay valid."""
        fields = super().to_dict()
        for name, default in (("shadow", "victim-pool"), ("optimizer", "sgd")):
            if fields[name] == default:
                del fields[name]
        return fields


# The tampering settings of an image encoder where BadDistConfig's defaults (the ResNet's, as in the reference
# code) do not fit. SGD at the ResNet's rate moves a transformer's clean embeddings far in its first epoch, and
# whether they come back is decided by rounding, machine to machine; Adam, the optimiser transformers are trained
# with, keeps them (chapter 7).
ENCODER_SETTINGS: dict[str, dict] = {"vit": {"optimizer": "adam", "lr": 3e-4}}


def baddist_config(encoder: str, **settings) -> BadDistConfig:
    """The provider's `BadDistConfig` for image encoder `encoder`: its `ENCODER_SETTINGS`, then `settings`."""
    return BadDistConfig(**{**ENCODER_SETTINGS.get(encoder, {}), **settings})


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
    if bcfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=bcfg.lr, momentum=0.9, weight_decay=5e-4)
    else:
        optimizer = torch.optim.Adam(params, lr=bcfg.lr)
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


__all__ = [
    "BadDistConfig", "ENCODER_SETTINGS", "OPTIMIZERS", "SHADOW_SOURCES", "VARIANTS", "badencoder_loss", "baddist_config", "baddist_loss", "embedding_drift", "freeze_normalisation",
    "tamper_image_encoder", "target_text_embedding",
]
