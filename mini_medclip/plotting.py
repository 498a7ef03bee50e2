"""Figures shared by the chapters and the command line (matplotlib only)."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch


def image_grid(images: torch.Tensor, titles=None, ncols: int = 6, size: float = 1.9, suptitle: str | None = None):
    """Show (N, 1, H, W) images in [0, 1] as a grid of grey radiographs; returns the figure."""
    n = len(images)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * (size + 0.25)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, ax in enumerate(axes.flat[:n]):
        ax.imshow(images[i, 0].detach().cpu().numpy(), cmap="gray", vmin=0, vmax=1)
        if titles is not None:
            ax.set_title(titles[i], fontsize=7)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def short_label_names(label_vector: torch.Tensor, names) -> str:
    """'Cardiomegaly, Effusion'-style caption of the positive labels of one 14-vector."""
    positives = [n for n, v in zip(names, label_vector.tolist()) if v > 0]
    return "\n".join(positives) if positives else "(none)"
