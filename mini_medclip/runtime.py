"""Where the code runs: device choice and seeding, so every chapter starts the same way."""
from __future__ import annotations

import os
import random

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


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch generator for code that takes one explicitly."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
