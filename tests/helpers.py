"""Small, fast stand-ins for the embedded data and the tiny model, shared by the test files.

`tiny_data` gives pools where each class has its own bright square; `tiny_config` a model small enough that
a few training steps take a second. The fixtures built on them live in `conftest.py`.
"""
from __future__ import annotations

import torch

from mini_medclip.config import get_config
from mini_medclip.data.labels import FIVE_CLASS_TASK, NUM_LABELS, label_index
from mini_medclip.data.pools import EvalSet, InMemoryImagePool, TextPool
from mini_medclip.data.prompts import sample_prompts
from mini_medclip.models import MedCLIP
from mini_medclip.tokenizer import train_tokenizer

NORMAL_SENTENCES = ["no acute cardiopulmonary abnormality", "the lungs are clear", "heart size is normal"]


def one_hot(*names) -> torch.Tensor:
    row = torch.zeros(NUM_LABELS)
    row[[label_index(n) for n in names]] = 1
    return row


def _images(classes: list[int], size: int, seed: int) -> torch.Tensor:
    """Noise plus a bright square whose position says the class (class 5 = normal: no square)."""
    g = torch.Generator().manual_seed(seed)
    images = 0.3 * torch.rand(len(classes), 1, size, size, generator=g)
    step = size // 6
    for i, c in enumerate(classes):
        if c < 5:
            images[i, :, step * c : step * c + step, step * c : step * c + step] = 1.0
    return images


def tiny_data(size: int = 32, n_images: int = 60, seed: int = 0):
    """(image pool, text pool, eval sets) shaped like the embedded data, small and fast."""
    names = list(FIVE_CLASS_TASK) + ["No Finding"]
    classes = [i % 6 for i in range(n_images)]
    labels = torch.stack([one_hot(names[c]) for c in classes])
    image_pool = InMemoryImagePool(_images(classes, size, seed), labels)
    sentences, text_labels = [], []
    for name in FIVE_CLASS_TASK:
        for s in sample_prompts(name, 4, seed=1):
            sentences.append(s)
            text_labels.append(one_hot(name))
    sentences += NORMAL_SENTENCES
    text_labels += [one_hot("No Finding")] * len(NORMAL_SENTENCES)
    text_pool = TextPool(sentences, torch.stack(text_labels))

    five_classes = [c for c in range(5) for _ in range(4)]
    five = EvalSet(
        "five_class", FIVE_CLASS_TASK,
        InMemoryImagePool(_images(five_classes, size, seed + 1), torch.stack([one_hot(names[c]) for c in five_classes])),
        torch.tensor(five_classes),
    )

    def binary(name, disease, c):
        """4 normals, then 4 images drawn (and labelled) as class `c`."""
        cls = [5] * 4 + [c] * 4
        pool = InMemoryImagePool(_images(cls, size, seed + 2), torch.stack([one_hot(names[k] if k < 5 else "No Finding") for k in cls]))
        return EvalSet(name, ("No Finding", disease), pool, torch.tensor([0] * 4 + [1] * 4))

    eval_sets = {"five_class": five, "covid": binary("covid", "COVID", 2), "rsna": binary("rsna", "Pneumonia", 2)}
    return image_pool, text_pool, eval_sets


def untrained_tiny_model(seed: int = 0):
    """(model, tokenizer, data): an untrained model over `tiny_data`, for evaluation plumbing tests."""
    cfg = tiny_config()
    data = tiny_data()
    tokenizer = train_tokenizer(data[1].sentences, cfg.model.vocab_size)
    torch.manual_seed(seed)
    return MedCLIP(cfg.model, vocab_size=len(tokenizer), image_size=cfg.data.image_size).eval(), tokenizer, data


def tiny_config(**overrides):
    small = dict(
        data__image_size=32, model__embed_dim=16, model__resnet_width=8, model__text_hidden=32, model__text_layers=2,
        model__text_heads=2, model__text_intermediate=64, model__vocab_size=200, train__batch_size=8, train__steps=6,
    )
    return get_config("tiny", **{**small, **overrides})


def weights_of(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
