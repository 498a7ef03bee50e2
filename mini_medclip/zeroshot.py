"""Zero-shot classification with prompt ensembles, and MedCLIP's 5-run evaluation protocol.

A class is described by several prompts; an image's score for the class is the mean of its (scaled cosine)
logits against those prompts (MedCLIP's `ensemble=True`). The evaluation redraws the prompts 5 times and
reports mean and (population) standard deviation, so a number says how much it depends on the wording.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import confusion_matrix, f1_score, roc_auc_score

from .data.pools import EvalSet, ImagePool, TextPool
from .data.prompts import normal_prompts_from_pool, sample_prompts
from .embeddings import embed_images, embed_texts, eval_mode
from .models import MedCLIP

PROMPTS_PER_CLASS = 10


class ZeroShotClassifier:
    """Embeds every prompt once; then scores any number of image batches against the classes.

    `device`, if given, moves the model there first. The text embeddings are a snapshot: rebuild the
    classifier after the model changes.
    """

    def __init__(self, model: MedCLIP, tokenizer, class_prompts: dict[str, list[str]], device=None):
        if not class_prompts or any(len(p) == 0 for p in class_prompts.values()):
            raise ValueError(f"every class needs at least one prompt; got counts {({c: len(p) for c, p in class_prompts.items()})}")
        if device is not None:
            model.to(device)
        self.model = model
        self.class_names = tuple(class_prompts)
        prompts = [p for c in self.class_names for p in class_prompts[c]]
        self.text_emb = embed_texts(model, tokenizer, prompts)
        owner = torch.tensor([i for i, c in enumerate(self.class_names) for _ in class_prompts[c]])
        one_hot = torch.nn.functional.one_hot(owner, len(self.class_names)).float()
        self.average = (one_hot / one_hot.sum(0)).to(self.text_emb.device)  # (P, C): mean over a class's prompts

    def scores_from_embeddings(self, image_emb: torch.Tensor) -> torch.Tensor:
        """(N, C) class scores on the CPU from normalised image embeddings."""
        with eval_mode(self.model):
            logits = self.model.logits(image_emb.to(self.text_emb.device), self.text_emb)
        return (logits @ self.average).cpu()

    def scores(self, images: ImagePool | torch.Tensor) -> torch.Tensor:
        return self.scores_from_embeddings(embed_images(self.model, images))

    def predict_proba(self, images: ImagePool | torch.Tensor) -> torch.Tensor:
        return self.scores(images).softmax(dim=1)

    def predict(self, images: ImagePool | torch.Tensor) -> torch.Tensor:
        """Class indices (into `class_names`) for a pool or an (N, 1, H, W) tensor in [0, 1]."""
        return self.scores(images).argmax(dim=1)


def prompts_for_classes(class_names, text_pool: TextPool, n: int = PROMPTS_PER_CLASS, seed: int = 0) -> dict[str, list[str]]:
    """Prompts per class: templates for findings; for "No Finding", real normal report sentences (as MedCLIP)."""
    return {
        c: normal_prompts_from_pool(text_pool, n, seed) if c == "No Finding" else sample_prompts(c, n, seed)
        for c in class_names
    }


def class_prompts_for(eval_set: EvalSet, text_pool: TextPool, n: int = PROMPTS_PER_CLASS, seed: int = 0) -> dict[str, list[str]]:
    """`prompts_for_classes` for an evaluation set's own classes."""
    return prompts_for_classes(eval_set.class_names, text_pool, n, seed)


def classification_metrics(targets: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """acc, macro-F1 and AUROC (binary: on the positive class; multi-class: one-vs-rest, macro)."""
    pred = probs.argmax(1)
    labels = list(range(probs.shape[1]))
    if probs.shape[1] == 2:
        auroc = roc_auc_score(targets, probs[:, 1])
    else:
        auroc = roc_auc_score(targets, probs, multi_class="ovr", average="macro", labels=labels)
    return {
        "acc": float((pred == targets).mean()),
        "macro_f1": float(f1_score(targets, pred, average="macro", labels=labels, zero_division=0)),
        "auroc": float(auroc),
    }


def evaluate_zero_shot(
    model: MedCLIP, tokenizer, eval_set: EvalSet, text_pool: TextPool, n_runs: int = 5, seed: int = 0
) -> dict:
    """MedCLIP's protocol: `n_runs` prompt draws (seeds seed, seed+1, ...), mean and population std.

    Images are embedded once; only the prompts change between runs. Returns acc, macro_f1, auroc, their
    `_std`, the per-run values and the first run's confusion matrix (rows: true class, columns: predicted).
    """
    image_emb = embed_images(model, eval_set.images)
    targets = eval_set.targets.numpy()
    runs, first_confusion = [], None
    for run in range(n_runs):
        classifier = ZeroShotClassifier(model, tokenizer, class_prompts_for(eval_set, text_pool, seed=seed + run))
        probs = classifier.scores_from_embeddings(image_emb).softmax(1).numpy()
        runs.append(classification_metrics(targets, probs))
        if first_confusion is None:
            first_confusion = confusion_matrix(targets, probs.argmax(1), labels=list(range(probs.shape[1])))
    out: dict = {"class_names": list(eval_set.class_names), "n_images": len(eval_set)}
    for metric in ("acc", "macro_f1", "auroc"):
        values = np.array([r[metric] for r in runs])
        out[metric], out[f"{metric}_std"] = float(values.mean()), float(values.std())
    out["runs"] = runs
    out["confusion_matrix"] = first_confusion.tolist()
    return out


def evaluate_all(model: MedCLIP, tokenizer, eval_sets: dict[str, EvalSet], text_pool: TextPool, n_runs: int = 5, seed: int = 0) -> dict:
    """`evaluate_zero_shot` on each set: {"five_class": {...}, "covid": {...}, "rsna": {...}}."""
    return {name: evaluate_zero_shot(model, tokenizer, s, text_pool, n_runs, seed) for name, s in eval_sets.items()}


__all__ = ["ZeroShotClassifier", "class_prompts_for", "prompts_for_classes", "classification_metrics", "evaluate_zero_shot", "evaluate_all"]
