"""Rendering: a pose per patient, one atlas lookup, the findings, exposure and noise, in memory-sized chunks."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..labels import NUM_LABELS, label_index, label_indices
from .drawing import EXTENT, N_DEVICE_LAYOUTS, N_TEMPLATES, SIZE_RANGE, _canonical_coords
from .anatomy import anatomy
from .findings import FINDINGS, OPACITIES, RANDOM_PER_FINDING, _column, _frame, _noise_bank, _peripheral_ground_glass, _pneumothorax, _texture_bank


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or not SIZE_RANGE[0] <= size <= SIZE_RANGE[1]:
        raise ValueError(f"invalid image size {size!r}; expected an integer in [{SIZE_RANGE[0]}, {SIZE_RANGE[1]}]")
    return size


def _lookup(atlas: torch.Tensor, tile: int, index: torch.Tensor, pose: torch.Tensor, pixels: int) -> torch.Tensor:
    """(channels, m, pixels, pixels): tile `index[i]` of an atlas seen through pose i, in one grid_sample call."""
    _, channels, height, width = atlas.shape
    cols, rows = width // tile, height // tile
    to_atlas = pose / (torch.tensor([cols, cols, cols, rows, rows, rows]) * EXTENT)
    to_atlas[:, 2] += (2 * (index % cols) + 1) / cols - 1
    to_atlas[:, 5] += (2 * (index // cols) + 1) / rows - 1
    grid = torch.empty(len(index), pixels, pixels, 2)
    _canonical_coords(to_atlas, pixels, out=grid)
    out = F.grid_sample(atlas, grid.view(1, -1, pixels, 2), mode="bilinear", padding_mode="border", align_corners=False)
    return out.view(channels, len(index), pixels, pixels)


def _random_pose(count: int, generator: torch.Generator) -> torch.Tensor:
    """(count, 6) affine maps from image to canonical coordinates: small rotation, shift, zoom, body width."""
    angle, zoom, width, shift_x, shift_y = torch.rand(5, count, generator=generator)
    angle = (angle - 0.5) * 2 * math.radians(5)
    zoom = 0.92 + 0.18 * zoom
    width = zoom * (0.92 + 0.16 * width)
    cos, sin = torch.cos(angle), torch.sin(angle)
    return torch.stack([
        width * cos, -width * sin, (shift_x - 0.5) * 0.12,
        zoom * sin, zoom * cos, (shift_y - 0.5) * 0.12 + 0.02,
    ], 1)


def _opacity_grid(size: int) -> int:
    """Findings are smooth: draw them at half resolution, between 32 and 64 px."""
    return min(size, max(32, min(64, size // 2)))


def _draw_patients(n: int, seed: int) -> dict[str, torch.Tensor]:
    """Every random number of a batch, drawn up front and for every finding, whatever the labels say."""
    generator = torch.Generator().manual_seed(seed)
    return {
        "template": torch.randint(N_TEMPLATES, (n,), generator=generator),
        "layout": torch.randint(N_DEVICE_LAYOUTS, (n,), generator=generator),
        "pose": _random_pose(n, generator),
        "film": torch.rand(n, 3, generator=generator),  # exposure, black level, noise level
        "noise": torch.randint(1 << 30, (n,), generator=generator),
        "texture": torch.randint(1 << 30, (n,), generator=generator),
        "findings": torch.rand(n, len(OPACITIES) + 2, RANDOM_PER_FINDING, generator=generator),
    }


def _aeration(positive, covid, draws, size) -> torch.Tensor | None:
    """(m, size, size): the fraction of lung air left once the findings have filled some of it; None if all 1."""
    drawn = {name: positive[:, label_index(name)] for name in OPACITIES}
    drawn["Lung Opacity"] = drawn["Lung Opacity"] & ~covid  # the COVID-like pattern explains these two labels
    drawn["Pneumonia"] = drawn["Pneumonia"] & ~covid
    if not (covid.any() or any(d.any() for d in drawn.values())):
        return None
    grid = _opacity_grid(size)
    textures = _texture_bank(grid)
    marks = anatomy(size).landmarks[draws["template"]]
    frame = _frame(draws["pose"], marks, textures[draws["texture"] % len(textures)], grid)
    aeration = torch.ones(len(positive), grid, grid)
    patterns = list(OPACITIES.items()) + [("COVID-like", _peripheral_ground_glass)]
    drawn["COVID-like"] = covid
    for k, (name, draw) in enumerate(patterns):
        rows = drawn[name].nonzero().squeeze(1)
        if len(rows):
            aeration[rows] *= 1 - draw(frame.rows(rows), draws["findings"][rows, k])
    if grid != size:
        aeration = F.interpolate(aeration[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    return aeration


def _render_chunk(positive, covid, draws, size) -> torch.Tensor:
    atlas = anatomy(size)
    tissue, air = _lookup(atlas.atlas, atlas.tile, draws["template"], draws["pose"], size)
    aeration = _aeration(positive, covid, draws, size)
    if aeration is not None:
        air.mul_(aeration)

    rows = positive[:, label_index("Pneumothorax")].nonzero().squeeze(1)
    if len(rows):
        u, v = _canonical_coords(draws["pose"][rows], size)
        marks = atlas.landmarks[draws["template"][rows]]
        air[rows] = _pneumothorax(u, v, marks, draws["findings"][rows, -1], air[rows], tissue[rows])

    attenuation = tissue.sub_(air).clamp_(min=0.1)  # even a pneumothorax has skin and muscle in front of it
    rows = positive[:, label_index("Support Devices")].nonzero().squeeze(1)
    if len(rows):
        metal = _lookup(atlas.devices, atlas.tile, draws["layout"][rows], draws["pose"][rows], size)[0]
        attenuation.index_add_(0, rows, metal)

    # Film: brightness 1 - exp(-exposure * attenuation), then a black level and quantum mottle.
    exposure, black, noise_level = (_column(c) for c in draws["film"].T)
    gain = 1 + 0.06 * black
    noise = _noise_bank(size)
    image = attenuation.mul_(-(0.8 + 0.35 * exposure)).exp_().mul_(-gain).add_(gain * (1 - 0.06 * black))
    image.addcmul_(noise[draws["noise"] % len(noise)], 0.004 + 0.014 * noise_level)
    return image.clamp_(0, 1)


def render(labels: torch.Tensor, size: int, seed: int, covid_like: torch.Tensor | None = None) -> torch.Tensor:
    """(n, 1, size, size) float32 radiographs in [0, 1] whose findings follow `labels` (n, 14).

    Deterministic for (labels, size, seed). Every random number is drawn for every image whatever its
    labels, so an image differs from its twin with one label flipped only by that finding.
    `covid_like[i]` replaces image i's Lung Opacity and Pneumonia drawing by bilateral peripheral
    lower-zone ground glass; callers label such images Lung Opacity + Pneumonia.
    """
    size = _check_size(size)
    labels = torch.as_tensor(labels)
    if labels.ndim != 2 or labels.shape[1] != NUM_LABELS:
        raise ValueError(f"labels have shape {tuple(labels.shape)}; expected (n, {NUM_LABELS})")
    n = len(labels)
    covid = torch.zeros(n, dtype=torch.bool) if covid_like is None else torch.as_tensor(covid_like).bool()
    if covid.shape != (n,):
        raise ValueError(f"covid_like has shape {tuple(covid.shape)}; expected ({n},)")
    positive = labels > 0.5
    draws = _draw_patients(n, seed)
    images = torch.empty(n, 1, size, size)
    chunk = max(1, (1 << 21) // size ** 2)  # about 8 MB per tensor: stays in cache-friendly, reused memory
    for start in range(0, n, chunk):
        part = slice(start, start + chunk)
        images[part, 0] = _render_chunk(positive[part], covid[part], {k: d[part] for k, d in draws.items()}, size)
    return images


def render_finding_pairs(size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The same patients without and with each finding (and the COVID-like pattern), for a side-by-side figure.

    Returns (normal (k, 1, size, size), with_finding (k, 1, size, size), names); row i of both shows one
    patient, who differs only by finding names[i].
    """
    names = [name for name in FINDINGS if name != "No Finding"] + ["COVID-like"]
    normal = torch.zeros(len(names), NUM_LABELS)
    normal[:, label_index("No Finding")] = 1
    findings = torch.zeros(len(names), NUM_LABELS)
    for i, name in enumerate(names[:-1]):
        findings[i, label_index(name)] = 1
    findings[-1, label_indices(["Lung Opacity", "Pneumonia"])] = 1
    covid_like = torch.zeros(len(names), dtype=torch.bool)
    covid_like[-1] = True
    return render(normal, size, seed), render(findings, size, seed, covid_like), names
