"""Real lung masks: torchxrayvision ships 517 lung segmentations from public radiographs in its wheel."""
from __future__ import annotations

import functools
import io
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..wheel_files import torchxrayvision_file
from .drawing import MASK_RES, N_TEMPLATES


def lung_mask_archive() -> Path:
    return torchxrayvision_file("semantic_masks_v7labs_lungs.zip")


def _two_lungs(mask: np.ndarray) -> np.ndarray | None:
    """The two largest blobs cropped to their joint box, patient's right on the image left; None if implausible."""
    from scipy import ndimage

    components, count = ndimage.label(mask)
    if count < 2:
        return None
    areas = ndimage.sum(mask, components, range(1, count + 1))
    first, second = np.argsort(areas)[::-1][:2] + 1
    if areas[second - 1] < 0.6 * areas[first - 1]:
        return None  # one lung collapsed or cropped: not a normal template
    lungs = (components == first) | (components == second)
    rows, cols = np.nonzero(lungs)
    box = lungs[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1]
    height, width = box.shape
    if not 0.85 <= width / height <= 1.6 or not 0.45 <= box.mean() <= 0.8:
        return None
    left_half = box[:, : width // 2].sum()
    return box[:, ::-1] if left_half < box[:, width // 2:].sum() else box  # the right lung is the larger


@functools.lru_cache(maxsize=1)
def lung_masks() -> torch.Tensor:
    """(N_TEMPLATES, MASK_RES, MASK_RES) real lung masks, each stretched to the box around both lungs."""
    from PIL import Image

    path = lung_mask_archive()
    if not path.exists():
        raise FileNotFoundError(f"lung mask archive not found at {path}; it ships with the torchxrayvision wheel")
    masks = []
    with zipfile.ZipFile(path) as archive:
        names = sorted(n for n in archive.namelist() if not n.endswith("/"))
        for i in np.random.default_rng(0).permutation(len(names)):
            image = Image.open(io.BytesIO(archive.read(names[i])))
            image.draft("L", (256, 256))  # JPEG decodes at reduced size: loading stays under a second
            lungs = _two_lungs(np.asarray(image.convert("L").resize((160, 160), Image.BILINEAR)) > 100)
            if lungs is not None:
                resized = Image.fromarray(lungs.astype(np.uint8) * 255).resize((MASK_RES, MASK_RES), Image.BILINEAR)
                masks.append(torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255))
            if len(masks) == N_TEMPLATES:
                break
    return torch.stack(masks)
