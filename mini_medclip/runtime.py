"""Where the code runs: device choice, seeding and the cache folder, so every chapter starts the same way."""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch


def pick_device() -> torch.device:
    """CUDA when present, else Apple's MPS, else the CPU; `MINI_MEDCLIP_DEVICE` overrides."""
    name = os.environ.get("MINI_MEDCLIP_DEVICE")
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cache_root() -> Path:
    """Where trained models and rendered data are kept between runs: `$MINI_MEDCLIP_CACHE`, else ~/.cache/mini_medclip."""
    return Path(os.environ.get("MINI_MEDCLIP_CACHE", "~/.cache/mini_medclip")).expanduser()


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch generator for code that takes one explicitly."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
