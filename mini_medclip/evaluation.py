"""Beyond zero-shot: image-to-text retrieval, a linear probe, an embedding map (the embeddings: `embeddings.py`).

Retrieval and the probe ask two different questions. Retrieval: does the joint space put an image next to
sentences about its findings? The probe: do the frozen image features *contain* the findings, whether or
not they line up with the text? A model can pass the probe and fail retrieval (features without alignment).
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression

from .data.labels import label_indices
from .data.pools import EvalSet, ImagePool, TextPool
from .embeddings import embed_images, embed_texts
from .models import MedCLIP


def _sample(n_total: int, n: int, seed: int) -> torch.Tensor:
    """`n` distinct indices (all of them if n >= n_total), the same for the same seed, sorted."""
    if n >= n_total:
        return torch.arange(n_total)
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:n].sort().values


def retrieval_recall(
    model: MedCLIP, tokenizer, eval_set: EvalSet, text_pool: TextPool, ks=(1, 5, 10), n_images: int = 200, seed: int = 0
) -> dict[str, float]:
    """Image -> text Recall@k over the whole text pool: a hit when a top-k sentence shares a positive label.

    There is no "correct" sentence for an image in unpaired data, so relevance is by labels, as in MedCLIP's
    matching. Returns {"R@1": ..., "R@5": ..., "R@10": ..., "n_images": ...}.
    """
    idx = _sample(len(eval_set), n_images, seed)
    image_emb = embed_images(model, eval_set.images.batch(idx))
    text_emb = embed_texts(model, tokenizer, text_pool.sentences)
    relevant = (eval_set.images.labels[idx] > 0).float() @ (text_pool.labels > 0).float().T > 0  # (n, N_text)
    ranked = (image_emb @ text_emb.T).topk(max(ks), dim=1).indices.cpu()
    hits = relevant.gather(1, ranked)
    out = {f"R@{k}": hits[:, :k].any(1).float().mean().item() for k in ks}
    out["n_images"] = len(idx)
    return out


def linear_probe(
    model: MedCLIP, image_pool: ImagePool, eval_set: EvalSet, n_train: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Logistic regression on frozen image embeddings; trained on pool images, scored on `eval_set`.

    The training split is the pool images with exactly one of `eval_set.class_names` positive (as the
    5-class set is built), at most `n_train` of them, drawn by seed.
    """
    columns = label_indices(eval_set.class_names)
    labels = image_pool.labels[:, columns] > 0
    single = (labels.sum(1) == 1).nonzero().flatten()
    if len(single) == 0:
        raise ValueError(f"no pool image has exactly one of {', '.join(eval_set.class_names)}; cannot fit a probe")
    train_idx = single[_sample(len(single), n_train, seed)]
    x_train = embed_images(model, image_pool.batch(train_idx)).cpu().numpy()
    y_train = labels[train_idx].float().argmax(1).numpy()
    probe = LogisticRegression(max_iter=2000).fit(x_train, y_train)
    x_test = embed_images(model, eval_set.images).cpu().numpy()
    acc = float((probe.predict(x_test) == eval_set.targets.numpy()).mean())
    return {"acc": acc, "n_train": len(train_idx)}


def pca_map(embeddings: torch.Tensor, n_components: int = 2) -> np.ndarray:
    """Project embeddings to `n_components` principal axes for a scatter plot (deterministic)."""
    return PCA(n_components=n_components, random_state=0).fit_transform(embeddings.detach().cpu().numpy())
