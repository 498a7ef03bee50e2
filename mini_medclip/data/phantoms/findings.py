"""Findings: what each CheXpert finding looks like, as opacities on a coarse grid in each lung's own frame."""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from .drawing import _blur, _canonical_coords, _smoothstep, _soft


FINDINGS: dict[str, str] = {
    "No Finding": "normal anatomy only: lung fields from real masks, heart, mediastinum, ribs, clavicles, spine",
    "Enlarged Cardiomediastinum": "upper mediastinum widened into both upper lungs, above the hila",
    "Cardiomegaly": "heart silhouette widened to a cardiothoracic ratio of 0.55-0.68 (normal about 0.45)",
    "Lung Lesion": "1-3 round, well-defined nodules or masses (radius 2-9% of the image) inside the lungs",
    "Lung Opacity": "patchy ill-defined opacities anywhere in the lungs; in 30% of cases bilateral peripheral "
    "lower-zone ground glass (the COVID-like pattern)",
    "Edema": "bilateral perihilar haze (bat-wing) with Kerley B lines at the lateral bases",
    "Consolidation": "dense, fairly well-bounded airspace opacity filling one lobe (upper lobes stop at the fissure)",
    "Pneumonia": "lobar opacity like consolidation but patchier and less dense",
    "Atelectasis": "plate-like band opacity at a lung base, often with an elevated hemidiaphragm (volume loss)",
    "Pneumothorax": "dark rim without lung markings at the apex and lateral side, bounded by a thin pleural line",
    "Pleural Effusion": "dense fluid at one or both costophrenic angles with a concave meniscus, blunting the angle",
    "Support Devices": "tubes and lines (endotracheal tube, central line, nasogastric tube, ECG leads) as thin "
    "bright curves; sometimes a pacemaker over the upper left chest with leads to the heart",
}


@dataclass
class Frame:
    """Where each pixel of a grid lies in the patient, for a batch of m patients; every field is (m, G, G)."""

    u: torch.Tensor  # canonical x
    v: torch.Tensor  # canonical y
    right: torch.Tensor  # bool: the patient's right hemithorax (the image's left half)
    lat: torch.Tensor  # 0 at the medial edge of this side's lung, 1 at its chest wall
    vert: torch.Tensor  # 0 at this side's lung apex, 1 at its lowest point
    texture: torch.Tensor  # smooth random texture in [-1, 1]
    marks: torch.Tensor  # (m, 2, 4) landmarks: per lung (right, left) lateral x, medial x, top y, bottom y

    def rows(self, index: torch.Tensor) -> "Frame":
        return Frame(*(getattr(self, f)[index] for f in self.__dataclass_fields__))


def _frame(pose: torch.Tensor, marks: torch.Tensor, texture: torch.Tensor, pixels: int) -> Frame:
    u, v = _canonical_coords(pose, pixels)
    m = marks[:, :, :, None, None]
    right = u < (m[:, 0, 0] + m[:, 1, 0]) / 2
    lateral, medial, top, bottom = (torch.where(right, m[:, 0, i], m[:, 1, i]) for i in range(4))
    return Frame(u, v, right, (u - medial) / (lateral - medial), (v - top) / (bottom - top), texture, marks)


@functools.lru_cache(maxsize=8)
def _texture_bank(pixels: int, count: int = 32) -> torch.Tensor:
    """Smooth noise fields in [-1, 1]: the mottled, patchy look of airspace disease."""
    noise = torch.randn(count, pixels, pixels, generator=torch.Generator().manual_seed(7))
    smooth = _blur(noise, pixels / 24)
    return smooth / smooth.abs().amax(dim=(1, 2), keepdim=True)


@functools.lru_cache(maxsize=8)
def _noise_bank(pixels: int, count: int = 64) -> torch.Tensor:
    """Quantum mottle: unit Gaussian noise fields, drawn once per size (sampling them is faster than randn)."""
    return torch.randn(count, pixels, pixels, generator=torch.Generator().manual_seed(8))


def _column(values: torch.Tensor) -> torch.Tensor:
    """(m,) -> (m, 1, 1): a per-patient number that broadcasts over the image."""
    return values[:, None, None]


def _side(f: Frame, right: torch.Tensor) -> torch.Tensor:
    """1 on the chosen hemithorax of each patient (right where `right` is True), else 0."""
    return (f.right == _column(right)).float()


def _lung_point(f: Frame, right: torch.Tensor, lat: torch.Tensor, vert: torch.Tensor):
    """Canonical (x, y) of a point given in a lung's frame, as (m, 1, 1) each."""
    m = torch.where(right[:, None], f.marks[:, 0], f.marks[:, 1])
    lateral, medial, top, bottom = (_column(m[:, i]) for i in range(4))
    return medial + _column(lat) * (lateral - medial), top + _column(vert) * (bottom - top)


def _effusion(f: Frame, r: torch.Tensor) -> torch.Tensor:
    """Fluid settles at the costophrenic angle, its meniscus climbing the chest wall (a concave upper border)."""
    present = torch.where(f.right, _column(r[:, 0] < 0.65), _column(r[:, 0] > 0.35))  # right, left or both
    height = 0.12 + 0.28 * torch.where(f.right, _column(r[:, 1]), _column(r[:, 2]))
    level = 1 - height * (1 + 0.8 * f.lat.clamp(0, 1.2) ** 2)
    return 0.95 * present * _soft(f.vert - level, 0.02) * _soft(f.lat + 0.3, 0.05)


def _cardiomegaly(f: Frame, r: torch.Tensor) -> torch.Tensor:
    """A heart wider than half the chest: cardiothoracic ratio 0.55-0.68, bulging mostly to the patient's left."""
    right_wall, left_wall = _column(f.marks[:, 0, 0]), _column(f.marks[:, 1, 0])
    diaphragm = _column(f.marks[:, :, 3].mean(1))
    width = (0.55 + 0.13 * _column(r[:, 0])) * (left_wall - right_wall)
    centre_x = (left_wall + right_wall) / 2 + 0.13 * width
    half_height = 0.30 + 0.06 * _column(r[:, 1])
    centre_y = diaphragm - 0.7 * half_height
    return _soft(1 - ((f.u - centre_x) / (width / 2)) ** 2 - ((f.v - centre_y) / half_height) ** 2, 0.06)


def _wide_mediastinum(f: Frame, r: torch.Tensor) -> torch.Tensor:
    """The upper mediastinum (above the hila) bulges into both upper lungs."""
    midline = _column(f.marks[:, 0, 0] + f.marks[:, 1, 0]) / 2 + 0.02
    top = _column(f.marks[:, :, 2].min(1).values) + 0.05
    bottom = top + 0.5 * (_column(f.marks[:, :, 3].mean(1)) - top)
    along = ((f.v - top) / (bottom - top)).clamp(0, 1)
    half_width = (0.17 + 0.11 * _column(r[:, 0])) * (0.55 + 0.45 * torch.sin(math.pi * along).clamp(min=0).sqrt())
    return _soft(half_width - (f.u - midline).abs(), 0.015) * _soft(f.v - top, 0.03) * _soft(bottom + 0.05 - f.v, 0.04)


# side (0 right, 1 left), lat centre, vert centre, lat radius, vert radius, fissure (the lobe stops above this vert)
LOBES = torch.tensor([
    [0, 0.50, 0.22, 0.65, 0.30, 0.45],  # right upper lobe, bounded below by the horizontal fissure
    [0, 0.30, 0.62, 0.50, 0.20, 9.00],  # right middle lobe, against the right heart border
    [0, 0.60, 0.72, 0.60, 0.24, 9.00],  # right lower lobe, above the costophrenic angle
    [1, 0.50, 0.25, 0.65, 0.32, 9.00],  # left upper lobe
    [1, 0.30, 0.62, 0.50, 0.20, 9.00],  # lingula, against the left heart border
    [1, 0.60, 0.72, 0.60, 0.24, 9.00],  # left lower lobe
])


def _lobar(f: Frame, r: torch.Tensor, density: torch.Tensor, patchiness: float, scale: float = 0.8) -> torch.Tensor:
    """Airspace opacity filling one lobe: dense and bounded; patchiness breaks it up (pneumonia)."""
    lobe = LOBES[(r[:, 0] * len(LOBES)).long().clamp(max=len(LOBES) - 1)]
    side = _side(f, lobe[:, 0] == 0)
    lobe = lobe[:, :, None, None]
    size = scale + 0.4 * _column(r[:, 1])
    inside = 1 - ((f.lat - lobe[:, 1]) / (lobe[:, 3] * size)) ** 2 - ((f.vert - lobe[:, 2]) / (lobe[:, 4] * size)) ** 2
    region = side * _soft(inside, 0.12) * _soft(lobe[:, 5] - f.vert, 0.015)
    return density * region * (1 - patchiness * (0.5 + 0.5 * f.texture))


def _consolidation(f: Frame, r: torch.Tensor) -> torch.Tensor:
    """Dense, homogeneous and lobe-filling: the whole lobe's air is replaced, up to its fissure."""
    return _lobar(f, r, 0.88 + 0.1 * _column(r[:, 4]), 0.05, scale=1.05)


def _pneumonia(f: Frame, r: torch.Tensor) -> torch.Tensor:
    return _lobar(f, r, 0.65 + 0.25 * _column(r[:, 4]), 0.6)


def _peripheral_ground_glass(f: Frame, r: torch.Tensor) -> torch.Tensor:
    """Bilateral, peripheral, lower-zone hazy opacities: the typical COVID-19 pneumonia pattern."""
    zone = _smoothstep(0.2, 0.75, f.lat) * _smoothstep(0.1, 0.65, f.vert)
    return (0.55 + 0.3 * _column(r[:, 4])) * zone * (0.7 + 0.3 * f.texture)


def _patchy(f: Frame, r: torch.Tensor) -> torch.Tensor:
    """Ill-defined patchy opacities: two or three soft blobs somewhere in the lungs."""
    opacity = torch.zeros_like(f.u)
    for blob, chance in enumerate((1.0, 1.0, 0.5)):
        side, lat, vert, spread = r[:, 4 * blob: 4 * blob + 4].T
        cx, cy = _lung_point(f, side < 0.5, 0.3 + 0.55 * lat, 0.2 + 0.7 * vert)
        spread = _column(0.1 + 0.1 * spread)
        blob_opacity = torch.exp(-((f.u - cx) ** 2 + (f.v - cy) ** 2) / spread ** 2)
        opacity += _column((0.6 + 0.25 * r[:, 12 + blob]) * (r[:, 15] < chance)) * blob_opacity
    return opacity.clamp(max=0.85) * (0.85 + 0.15 * f.texture)


def _lung_opacity(f: Frame, r: torch.Tensor) -> torch.Tensor:
    """Patchy opacities; in 30% of images the bilateral peripheral ground-glass pattern instead."""
    ground_glass = r[:, 11] < 0.3
    opacity = torch.empty_like(f.u)
    opacity[ground_glass] = _peripheral_ground_glass(f.rows(ground_glass), r[ground_glass])
    opacity[~ground_glass] = _patchy(f.rows(~ground_glass), r[~ground_glass])
    return opacity


def _atelectasis(f: Frame, r: torch.Tensor) -> torch.Tensor:
    """A plate-like band at a lung base, often with the hemidiaphragm pulled up (volume loss)."""
    right = r[:, 0] < 0.55
    height = _column(f.marks[:, :, 3].mean(1) - f.marks[:, :, 2].mean(1))
    centre_lat, centre_vert = 0.5 + 0.1 * _column(r[:, 1]), 0.62 + 0.2 * _column(r[:, 2])
    thickness = (0.02 + 0.025 * _column(r[:, 3])) / height
    tilt = 0.3 * (_column(r[:, 4]) - 0.5)
    across = (f.vert - centre_vert - tilt * (f.lat - centre_lat)).abs()
    band = _soft(thickness - across, 0.006) * _soft(0.38 - (f.lat - centre_lat).abs(), 0.05)
    lift = _column(0.1 * r[:, 5] * (r[:, 6] < 0.6))  # an elevated dome: convex upwards, unlike a meniscus
    dome = 1 - lift - 0.12 * (1 - ((f.lat - 0.45) / 0.7) ** 2)
    raised = _soft(f.vert - dome, 0.01) * _soft(f.lat + 0.2, 0.05) * (lift > 0)
    return _side(f, right) * torch.maximum(0.85 * band, raised)


def _edema(f: Frame, r: torch.Tensor) -> torch.Tensor:
    """Bilateral perihilar haze fading to the periphery (bat-wing), with Kerley B lines at the lateral bases."""
    haze = (0.6 + 0.3 * _column(r[:, 0])) * torch.exp(-((f.lat / 0.85) ** 2 + ((f.vert - 0.55) / 0.5) ** 2))
    kerley = (torch.cos(f.v * 60 + 6.3 * _column(r[:, 1])) - 0.5).clamp(min=0)
    kerley = kerley * _smoothstep(0.7, 0.95, f.lat) * _smoothstep(0.6, 0.85, f.vert)
    return (haze + 0.7 * kerley).clamp(max=0.9) * (0.9 + 0.1 * f.texture)


def _lung_lesion(f: Frame, r: torch.Tensor) -> torch.Tensor:
    """One to three round, sharply marginated nodules or masses of varied size."""
    opacity = torch.zeros_like(f.u)
    for nodule, chance in enumerate((1.0, 0.4, 0.15)):
        side, lat, vert, size = r[:, 4 * nodule: 4 * nodule + 4].T
        cx, cy = _lung_point(f, side < 0.55, 0.3 + 0.5 * lat, 0.2 + 0.6 * vert)
        radius = _column(0.05 * 2.7 ** size)  # 0.05 to 0.135 canonical: a nodule to a mass
        distance = ((f.u - cx) ** 2 + (f.v - cy) ** 2).sqrt()
        present = _column(r[:, 12 + nodule] < chance)
        opacity = torch.maximum(opacity, 0.9 * present * _soft(radius - distance, 0.008))
    return opacity


# Findings drawn on the coarse grid: each an opacity in [0, 1], the fraction of lung air it replaces.
OPACITIES = {
    "Lung Opacity": _lung_opacity,
    "Consolidation": _consolidation,
    "Pneumonia": _pneumonia,
    "Edema": _edema,
    "Atelectasis": _atelectasis,
    "Lung Lesion": _lung_lesion,
    "Pleural Effusion": _effusion,
    "Cardiomegaly": _cardiomegaly,
    "Enlarged Cardiomediastinum": _wide_mediastinum,
}
RANDOM_PER_FINDING = 16


def _pneumothorax(u, v, marks, r, air, tissue):
    """Air outside a collapsed lung: a dark rim without markings at the apex and side, edged by the pleural line.

    Works on the full-resolution lung-air channel (m, H, W) because the pleural line is one pixel thin.
    """
    right = r[:, 0] < 0.55
    m = torch.where(right[:, None], marks[:, 0], marks[:, 1])
    lateral, medial, top, bottom = (_column(m[:, i]) for i in range(4))
    side = _column(torch.where(right, -1.0, 1.0))
    cx, cy = (lateral + medial) / 2, top + 0.55 * (bottom - top)
    rx, ry = (lateral - medial).abs() / 2 * 1.05, 0.55 * (bottom - top)
    radius = (((u - cx).abs() / rx) ** 2.5 + ((v - cy).abs() / ry) ** 2.5) ** 0.4  # a squarish ellipse
    edge = 1 - (0.1 + 0.22 * _column(r[:, 1]))  # how far the lung has collapsed
    sector = _soft(side * (u - cx) / rx * 0.8 - (v - cy) / ry + 0.15, 0.15)  # apex and lateral wall only
    in_lung = (air * 5).clamp(0, 1)
    rim = _soft(radius - edge, 0.01) * sector * in_lung
    line = torch.exp(-(((radius - edge) * rx) / 0.01) ** 2) * sector * in_lung
    return air * (1 - rim) + (tissue - 0.33) * rim - 0.45 * line  # the rim: darker than lung, no vessels
