"""Embeddings of a trained model: the one way every layer turns images and sentences into vectors.

Zero-shot classification, the attacks' metrics, BadDist, the defenses and the evaluation all embed
through these helpers, in eval mode and without autograd, batch by batch on the model's device.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

from .data.pools import ImagePool
from .models import MedCLIP


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@contextmanager
def eval_mode(model: torch.nn.Module):
    """Eval mode (BatchNorm running stats, no dropout) and no autograd; the previous mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def embed_images(model: MedCLIP, images: ImagePool | torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Normalised image embeddings (N, D) on the model's device; `images` is a pool or an (N, 1, H, W) tensor."""
    device = model_device(model)
    n = len(images)
    out = []
    with eval_mode(model):
        for start in range(0, n, batch_size):
            idx = range(start, min(start + batch_size, n))
            batch = images.batch(list(idx)) if isinstance(images, ImagePool) else images[start : start + batch_size]
            out.append(model.encode_image(batch.to(device)).float())
    return torch.cat(out)


def embed_texts(model: MedCLIP, tokenizer, sentences: list[str], batch_size: int = 512) -> torch.Tensor:
    """Normalised text embeddings (N, D) on the model's device."""
    device = model_device(model)
    out = []
    with eval_mode(model):
        for start in range(0, len(sentences), batch_size):
            enc = tokenizer(sentences[start : start + batch_size], padding=True, truncation=True, return_tensors="pt")
            out.append(model.encode_text(enc["input_ids"].to(device), enc["attention_mask"].to(device)).float())
    return torch.cat(out)


def mean_pairwise_cosine(embeddings: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity over distinct pairs of rows (the diagonal excluded): 1 = total collapse.
    Differentiable (DECREE descends on it); `.item()` for a number."""
    n = len(embeddings)
    if n < 2:
        raise ValueError(f"{n} embeddings; expected at least 2 to form a pair")
    unit = torch.nn.functional.normalize(embeddings, dim=1)
    total = unit.sum(0)
    return (total @ total - n) / (n * (n - 1))  # the sum of all pairwise cosines is |sum of rows|^2


__all__ = ["embed_images", "embed_texts", "eval_mode", "mean_pairwise_cosine", "model_device"]
