"""Clean fine-tuning: continue training a suspect model on a small clean set with the normal matching loss.

The cheapest mitigation and the baseline every other one must beat: a few clean steps at a small learning
rate may overwrite the "trigger => No Finding" shortcut (nothing in the clean data reinforces it) while
keeping most of what the model knows. It is the same `train` loop as the original run, started from a
copy of the suspect model, so the only differences are the data, the step count and the learning rate.
"""
from __future__ import annotations

import dataclasses

from ..config import PRESETS, Config
from ..data.pools import ImagePool, TextPool
from ..embeddings import model_device
from ..train import train
from .base import Mitigation, register_defense


@register_defense("finetune")
class FineTune(Mitigation):
    """Fine-tunes all weights for `steps` steps at `lr`; everything else comes from `config`.

    Pass the suspect model's training config so that the loss, its target temperature and the schedule
    match how it was trained; the default is the tiny preset's. `batch_size` None keeps the config's.
    Runs on the model's device; the input model is not modified (`train` copies it).
    """

    def __init__(self, steps: int = 100, lr: float = 1e-4, batch_size: int | None = None, config: Config | None = None, progress: bool = False):
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"invalid steps {steps!r}; expected a positive integer")
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or lr <= 0:
            raise ValueError(f"invalid lr {lr!r}; expected a positive learning rate")
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"invalid batch_size {batch_size!r}; expected a positive integer or None (the config's)")
        self.steps, self.lr, self.batch_size, self.progress = steps, lr, batch_size, progress
        self.config = PRESETS["tiny"] if config is None else config

    def fine_tune_config(self) -> Config:
        """The training config of the fine-tuning run: `config` with this defense's steps, lr and batch size."""
        train_cfg = self.config.train
        overrides = {"steps": self.steps, "lr": self.lr, "batch_size": self.batch_size or train_cfg.batch_size}
        return dataclasses.replace(self.config, train=dataclasses.replace(train_cfg, **overrides))

    def settings(self) -> dict:
        return {"defense": self.name, "config": self.fine_tune_config().to_dict()}

    def extra_loss(self):
        """A term added to the matching loss at every step (none for plain fine-tuning)."""
        return None

    def apply(self, model, tokenizer, clean_pool: ImagePool, text_pool: TextPool):
        result = train(
            self.fine_tune_config(), clean_pool, text_pool, device=model_device(model), progress=self.progress,
            init=(model, tokenizer), extra_loss=self.extra_loss(),
        )
        return result.model, result.tokenizer


__all__ = ["FineTune"]
