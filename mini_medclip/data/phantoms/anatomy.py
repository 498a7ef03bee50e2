"""Anatomy templates: everything that does not depend on the labels, drawn once per image size.

48 template patients (a real lung mask each, ribs, clavicles, spine, vessels, devices) go into an atlas in
the canonical frame; rendering looks a phantom up in it through a random pose.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .drawing import EXTENT, LUNG_BOX, N_DEVICE_LAYOUTS, N_TEMPLATES, _blur, _canonical_grid, _chaikin, _resample_many, _smoothstep, _soft, _splat, _stroke
from .masks import lung_masks


def _body(x, y, p):
    """Soft tissue: an elliptic torso (thin at the chest wall, thick in the middle) narrowing into the neck."""
    shoulder = _smoothstep(-1.15, -0.82, y + p["shoulder"] * x.abs() ** 2)
    half_width = 0.38 + (p["torso"] - 0.38) * shoulder
    thickness = (1 - (x / half_width) ** 2).clamp(min=0) ** 0.75
    abdomen = 0.8 * _smoothstep(0.35, 0.85, y) * _soft(0.7 - x.abs(), 0.2)  # liver and abdomen below the diaphragm
    breast = 0.25 * p["breast"] * torch.exp(-(((x.abs() - 0.55) / 0.35) ** 2 + ((y - 0.50) / 0.22) ** 2))
    return (1.3 + abdomen + breast) * thickness * (0.8 + 0.2 * shoulder)


def _mediastinum(x, y, p):
    """Heart, great vessels and spine make the bright central column; the trachea holds air."""
    heart = _soft(1 - ((x - p["heart_x"]) / p["heart_w"]) ** 2 - ((y - 0.30) / 0.32) ** 2, 0.2)
    column = _soft(0.2 + 0.04 * y - x.abs(), 0.06) * _soft(0.7 - y, 0.1)
    knob = _soft(1 - ((x - 0.13) / 0.09) ** 2 - ((y + 0.40) / 0.08) ** 2, 0.3)
    trachea_x = 0.02 * (y + 1)
    trachea = _soft(0.042 - (x - trachea_x).abs(), 0.012) * _soft(-0.36 - y, 0.02)
    bronchi = sum(
        _soft(0.028 - ((x - trachea_x) - side * 0.9 * (y + 0.36)).abs(), 0.012) * _soft(y + 0.36, 0.01) * _soft(-0.2 - y, 0.03)
        for side in (-1, 1)
    )
    return 0.6 * heart + 0.6 * column + 0.15 * knob - 0.3 * trachea - 0.2 * bronchi


def _spine(x, y):
    """Vertebral bodies (with darker disc spaces), pedicles and spinous processes down the midline."""
    period = 0.12
    phase = torch.frac((y + 2) / period)
    column = _soft(0.08 - x.abs(), 0.02)
    discs = 1 - 0.35 * torch.exp(-((phase - 0.5) / 0.08) ** 2)
    pedicles = sum(torch.exp(-(((x - s * 0.058) / 0.016) ** 2 + ((phase - 0.25) / 0.12) ** 2)) for s in (-1, 1))
    spinous = torch.exp(-((x / 0.018) ** 2 + ((phase - 0.75) / 0.12) ** 2))
    return column * (0.2 * discs + 0.1 * pedicles + 0.06 * spinous)


def _ribs(x, y, p):
    """Posterior ribs arc out from the spine and curve down at the chest wall; anterior ribs slope down
    towards the sternum, fainter; the cortex of each rib is brighter than its marrow."""
    side_x = x.abs()
    cage = _soft(p["cage"] * (0.6 + 0.4 * _smoothstep(-1.0, -0.35, y)) - side_x, 0.03) * _soft(0.85 - y, 0.1)
    height_at_spine = y + 0.3 * side_x - p["curl"] * side_x ** 2  # follow each arc back to the spine
    growth = p["growth"]
    rib_number = torch.log1p((height_at_spine - p["first_rib"]).clamp(min=-0.05) * (growth - 1) / p["spacing"]) / torch.log(growth)
    phase = torch.frac(rib_number)
    inside = _soft(0.2 - (phase - 0.5).abs(), 0.03)
    cortex = torch.exp(-(((phase - 0.5).abs() - 0.2) / 0.05) ** 2)
    posterior = (0.1 * inside + 0.1 * cortex) * _soft(side_x - 0.07, 0.02) * _soft(10.5 - rib_number, 0.3)
    anterior_height = y - 0.45 * (1 - side_x) - p["first_rib"] + 0.3
    anterior_phase = torch.frac(anterior_height / (p["spacing"] * 1.9))
    anterior = 0.07 * _soft(0.18 - (anterior_phase - 0.5).abs(), 0.05) * _smoothstep(0.3, 0.65, side_x)
    anterior = anterior * _soft(anterior_height, 0.02) * _soft(0.3 - y, 0.1)
    return (posterior + anterior) * cage


def _shoulder_girdle(x, y, p):
    """Clavicles (S-shaped bars from the sternum to the shoulders), scapulae and humeral heads."""
    side_x = x.abs()
    along = ((side_x - 0.10) / 0.78).clamp(0, 1)
    centre = p["clavicle"] - 0.17 * along + 0.05 * torch.sin(math.pi * along) + 0.025 * torch.sin(2 * math.pi * along)
    half_width = 0.028 + 0.012 * (1 - along)
    distance = (y - centre).abs()
    span = _soft(side_x - 0.10, 0.015) * _soft(0.9 - side_x, 0.03)
    clavicle = (0.28 * _soft(half_width - distance, 0.008) + 0.12 * torch.exp(-((distance - half_width) / 0.01) ** 2)) * span
    scapula_edge = 0.80 + 0.2 * (y + 0.9)
    scapula = 0.10 * _soft(side_x - scapula_edge, 0.02) * _soft(-0.2 - y, 0.12) * _soft(y + 0.95, 0.05)
    head = ((side_x - 1.2) ** 2 + (y + 0.98) ** 2).sqrt()
    humerus = 0.25 * _soft(0.19 - head, 0.01) + 0.1 * torch.exp(-((head - 0.19) / 0.015) ** 2)
    return clavicle + scapula + humerus


VESSEL_DEPTH = 4  # each vessel forks this many times: 2**(depth + 1) - 1 segments per tree


@functools.lru_cache(maxsize=1)
def _vessel_trees() -> list[tuple[np.ndarray, np.ndarray]]:
    """Per template, lung markings as weighted points: vessel trees branching out from each hilum,
    thinning and fading to the periphery. Drawn once, in canonical units, and splatted at every size.

    Each tree grows from a hilum: a segment of 5 jittered steps, then two children turned by a random
    angle, shorter and fainter, down to `VESSEL_DEPTH`. The random numbers are drawn segment by segment,
    depth first (`_vessel_draws`); the geometry is then computed one generation of segments at a time.
    """
    rng = np.random.default_rng(99)
    trees = []
    for template_hila in _hila(_landmarks_all()).numpy():
        roots, segments = _vessel_draws(rng, template_hila)
        points, weights = _vessel_segments(roots, segments)
        trees.append((np.concatenate(points), np.concatenate(weights)))
    return trees


def _vessel_draws(rng: np.random.Generator, template_hila: np.ndarray) -> tuple[dict, list[dict]]:
    """The random numbers of one template's vessel trees in drawing order, and each segment's place in them.

    Segments are listed depth first (a parent, then its first subtree, then its second), the order their
    points are drawn in.
    """
    roots = {"start": [], "heading": [], "length": []}
    segments = []

    def grow(depth: int, **link) -> None:
        """`link` places the segment: parent=None and root=r for a root, else its parent, spread and shrink."""
        segments.append({**link, "depth": depth, "steps": rng.normal(0, 0.12, 5)})
        index = len(segments) - 1
        if depth:
            for turn in (-1, 1):
                spread, shrink = turn * rng.uniform(0.25, 0.6), rng.uniform(0.6, 0.85)
                grow(depth - 1, parent=index, spread=spread, shrink=shrink)

    for side, (hx, hy) in zip((-1, 1), template_hila):
        for angle in np.linspace(-0.42, 0.42, 7) * math.pi + rng.normal(0, 0.1, 7):
            roots["heading"].append(angle if side > 0 else math.pi - angle)
            roots["start"].append(np.array([hx, hy]) + rng.normal(0, 0.03, 2))
            roots["length"].append(rng.uniform(0.12, 0.2))
            grow(VESSEL_DEPTH, parent=None, root=len(roots["length"]) - 1)
    return roots, segments


def _vessel_segments(roots: dict, segments: list[dict]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Points and weights of every segment (depth-first order), one generation of segments at a time."""
    n = len(segments)
    start, heading = np.zeros((n, 2)), np.zeros(n)
    length, weight = np.zeros(n), np.zeros(n)
    end, end_heading = np.zeros((n, 2)), np.zeros(n)
    points, weights = [None] * n, [None] * n
    for depth in range(VESSEL_DEPTH, -1, -1):
        rows = [i for i, s in enumerate(segments) if s["depth"] == depth]
        for i in rows:
            s = segments[i]
            if s["parent"] is None:
                root = s["root"]
                start[i], heading[i], length[i], weight[i] = roots["start"][root], roots["heading"][root], roots["length"][root], 1.3
            else:
                p = s["parent"]
                start[i], heading[i] = end[p], end_heading[p] + s["spread"]
                length[i], weight[i] = length[p] * s["shrink"], weight[p] * 0.72
        headings = heading[rows, None] + np.cumsum(np.stack([segments[i]["steps"] for i in rows]), 1)
        moves = np.stack([np.cos(headings), np.sin(headings)], 2) * length[rows, None, None] / 5
        path = np.concatenate([start[rows, None], start[rows, None] + np.cumsum(moves, 1)], 1)
        end[rows], end_heading[rows] = path[:, -1], headings[:, -1]
        fade = np.linspace(weight[rows], 0.75 * weight[rows], path.shape[1], axis=1)
        smooth = _chaikin(np.concatenate([path, fade[..., None]], 2), 2)
        for i, (p, w) in zip(rows, _resample_many(smooth[..., :2], smooth[..., 2], 0.004)):
            points[i], weights[i] = p, w
    return points, weights


def _hila(landmarks: torch.Tensor) -> torch.Tensor:
    """(K, 2, 2) hilum (x, y) per template and lung: just lateral to the mediastinum, a little above mid-lung."""
    x = landmarks[:, :, 1] + torch.tensor([-0.06, 0.06])
    return torch.stack([x, 0.45 * landmarks[:, :, 2] + 0.55 * landmarks[:, :, 3]], -1)


@dataclass
class Anatomy:
    """The per-size atlas of template patients and device layouts, plus landmarks for the findings."""

    atlas: torch.Tensor  # (1, 2, rows*tile, cols*tile): channel 0 tissue and bone, channel 1 lung air
    devices: torch.Tensor  # (1, 1, rows*tile, cols*tile): metal of N_DEVICE_LAYOUTS layouts
    tile: int
    landmarks: torch.Tensor  # (N_TEMPLATES, 2, 4): per lung (right, left): lateral x, medial x, top y, bottom y


@functools.lru_cache(maxsize=1)
def _template_params() -> dict[str, torch.Tensor]:
    """Per-template anatomical variation, as (N_TEMPLATES, 1, 1) tensors."""
    rng, count = np.random.default_rng(1234), N_TEMPLATES
    draw = {
        "torso": rng.uniform(1.04, 1.2, count),
        "shoulder": rng.uniform(0.05, 0.2, count),
        "breast": rng.uniform(0, 1, count) * (rng.uniform(size=count) < 0.5),
        "heart_x": rng.uniform(0.06, 0.14, count),
        "heart_w": rng.uniform(0.30, 0.38, count),
        "cage": rng.uniform(0.90, 0.98, count),
        "curl": rng.uniform(0.6, 0.75, count),
        "growth": rng.uniform(1.06, 1.1, count),
        "first_rib": rng.uniform(-0.98, -0.9, count),
        "spacing": rng.uniform(0.1, 0.12, count),
        "clavicle": rng.uniform(-0.62, -0.54, count),
        "lung_w": rng.uniform(0.95, 1.04, count),
        "lung_h": rng.uniform(0.95, 1.04, count),
        "stomach": rng.uniform(size=count) < 0.4,
    }
    return {k: torch.as_tensor(np.asarray(v, dtype=np.float32)).view(-1, 1, 1) for k, v in draw.items()}


def _lungs_in_frame(masks: torch.Tensor, x, y, p) -> torch.Tensor:
    """Place each real mask (stretched to LUNG_BOX, jittered per template) into the canonical frame."""
    left, right, top, bottom = LUNG_BOX
    mid_x = (left + right) / 2
    box_x = (x - mid_x) / ((right - left) / 2 * p["lung_w"])
    box_y = (y - bottom) / ((bottom - top) * p["lung_h"]) * 2 + 1  # keep the diaphragm where it is
    grid = torch.stack([box_x.expand(len(masks), -1, -1), box_y.expand(len(masks), -1, -1)], -1)
    return F.grid_sample(masks[:, None], grid, align_corners=False, padding_mode="zeros")[:, 0]


@functools.lru_cache(maxsize=1)
def _landmarks_all() -> torch.Tensor:
    """Landmarks measured once at a fixed resolution, so that every image size shares them."""
    x, y = _canonical_grid(216, EXTENT)
    return _landmarks(_lungs_in_frame(lung_masks(), x, y, _template_params()), x, y)


def _landmarks(lungs: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per template and lung: lateral x, medial x (at mid height), top y and bottom y, in canonical units."""
    marks = torch.zeros(len(lungs), 2, 4)
    for k, lung in enumerate(lungs > 0.5):
        for side, half in enumerate((x < 0, x >= 0)):
            inside = lung & half
            ys, xs = y[inside], x[inside]
            mid = (ys - (ys.min() + ys.max()) / 2).abs() < 0.05
            lateral, medial = (xs.min(), xs[mid].max()) if side == 0 else (xs.max(), xs[mid].min())
            marks[k, side] = torch.stack([lateral, medial, ys.min(), ys.max()])
    return marks


def _device_layouts(rng: np.random.Generator, pixels: int) -> np.ndarray:
    """Tubes, lines and pacemakers as metal density: the radio-opaque things in an ICU radiograph."""
    layouts = np.zeros((N_DEVICE_LAYOUTS, pixels, pixels))
    x, y = [c.numpy() for c in _canonical_grid(pixels, EXTENT)]
    width = max(1.0, pixels / 200)  # lines stay about one pixel wide at every size

    def jitter(points, amount=0.04):
        return np.asarray(points, dtype=float) + rng.normal(0, amount, (len(points), 2))

    for canvas in layouts:
        kinds = rng.uniform(size=6) < (0.6, 0.55, 0.35, 0.3, 0.25, 0.35)
        if not (kinds[0] or kinds[1] or kinds[2]):
            kinds[rng.integers(2)] = True  # every layout has a tube or a central line
        ett, central_line, left_line, ng_tube, pacemaker, ecg = kinds
        if ett:
            _stroke(canvas, jitter([(0.0, -1.5), (0.01, -1.0), (0.02, -0.7), (0.03, -0.48)], 0.015), 1.1 * width)
        if central_line:
            _stroke(canvas, jitter([(-0.45, -1.5), (-0.28, -1.0), (-0.14, -0.6), (-0.09, -0.3), (-0.08, -0.12)], 0.03), 0.8 * width)
        if left_line:
            _stroke(canvas, jitter([(0.95, -0.78), (0.55, -0.74), (0.22, -0.62), (0.0, -0.45), (-0.07, -0.2)], 0.03), 0.8 * width)
        if ng_tube:
            _stroke(canvas, jitter([(-0.03, -1.5), (0.0, -0.6), (0.05, 0.2), (0.18, 0.62), (0.42, 0.74)], 0.02), 0.9 * width)
        if pacemaker:
            cx, cy = 0.58 + rng.normal(0, 0.05), -0.62 + rng.normal(0, 0.04)
            can = (np.abs(x - cx) / 0.09) ** 4 + (np.abs(y - cy) / 0.065) ** 4  # a rounded titanium can
            canvas += 1.0 / (1 + np.exp(np.clip((can - 1) * pixels / 20, -50, 50))) + 0.4 * np.exp(-((x - cx + 0.02) ** 2 + (y - cy) ** 2) / 0.002)
            for tip in ((-0.02, 0.12), (0.12, 0.42)):
                lead = jitter([(cx - 0.08, cy), (0.3, -0.66), (0.08, -0.52), (-0.04, -0.25), tip], 0.025)
                _stroke(canvas, lead, 1.0 * width)
        if ecg:
            for _ in range(rng.integers(2, 5)):
                ex, ey = rng.uniform(-0.95, 0.95), rng.uniform(-1.0, -0.55)
                ring = np.sqrt((x - ex) ** 2 + (y - ey) ** 2)
                canvas += 0.5 * np.exp(-(((ring - 0.05) * pixels / 3) ** 2))
                wire = [(ex, ey), (ex + rng.uniform(-0.3, 0.3), ey - 0.2), (ex + rng.uniform(-0.6, 0.6), -1.5)]
                _stroke(canvas, jitter(wire, 0.05), 0.4 * width)
    return layouts


def _to_atlas(tiles: torch.Tensor, cols: int) -> torch.Tensor:
    """(K, C, T, T) tiles -> (1, C, rows*T, cols*T), row-major; unused slots stay empty."""
    count, channels, tile, _ = tiles.shape
    rows = -(-count // cols)
    padded = torch.cat([tiles, tiles.new_zeros(rows * cols - count, channels, tile, tile)])
    return padded.view(rows, cols, channels, tile, tile).permute(2, 0, 3, 1, 4).reshape(1, channels, rows * tile, cols * tile)


@functools.lru_cache(maxsize=8)
def anatomy(size: int) -> Anatomy:
    """Draw the template patients for one image size (under 2 s at 224 px; cached)."""
    tile = round(size * EXTENT)  # a canonical unit spans size/2 pixels, as in the image at scale 1
    x, y = _canonical_grid(tile, EXTENT)
    p = _template_params()
    lungs = _lungs_in_frame(lung_masks(), x, y, p)
    landmarks = _landmarks_all()
    hila = _hila(landmarks)
    vessels = np.zeros((N_TEMPLATES, tile, tile))
    for canvas, (points, weights) in zip(vessels, _vessel_trees()):
        _splat(canvas, points, weights, EXTENT)
    vessels = _blur(torch.from_numpy(vessels).float(), max(0.6, tile / 300))
    hilar_mass = sum(
        torch.exp(-(((x - hila[:, s, 0, None, None]) / 0.08) ** 2 + ((y - hila[:, s, 1, None, None]) / 0.13) ** 2))
        for s in (0, 1)
    )
    pixel = EXTENT * 2 / tile
    soft_lungs = _blur(_soft(lungs - 0.5, 0.15), max(0.6, 0.012 / pixel))
    depth = 0.25 + 0.75 * _blur(soft_lungs, 0.12 / pixel)  # thicker lung in the middle of each field
    apex_overlap = 0.7 + 0.3 * _smoothstep(-0.8, -0.35, y)  # soft tissue of the neck and shoulders
    air = soft_lungs * (1.12 * depth * apex_overlap - 0.4 * vessels - 0.25 * hilar_mass).clamp(min=0)

    stomach = p["stomach"] * _soft(1 - ((x - 0.42) / 0.12) ** 2 - ((y - 0.74) / 0.06) ** 2, 0.3)
    tissue = _body(x, y, p) + _mediastinum(x, y, p) + _spine(x, y) + _ribs(x, y, p) + _shoulder_girdle(x, y, p)
    coarse = torch.randn(N_TEMPLATES, 1, 12, 12, generator=torch.Generator().manual_seed(5))
    unevenness = F.interpolate(coarse, size=(tile, tile), mode="bicubic", align_corners=False)[:, 0]
    unevenness = unevenness / unevenness.std(dim=(1, 2), keepdim=True)  # muscle, fat and film are never uniform
    tissue = tissue - 0.25 * stomach + 0.06 * unevenness * _soft(tissue - 0.3, 0.1)

    cols = math.ceil(math.sqrt(N_TEMPLATES))
    atlas = _to_atlas(torch.stack([tissue, air], 1).float(), cols)
    devices = torch.from_numpy(_device_layouts(np.random.default_rng(4321), tile)).float()
    return Anatomy(atlas, _to_atlas(devices[:, None], cols), tile, landmarks)
