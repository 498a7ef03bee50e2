"""Procedural frontal chest radiographs ("phantoms") whose findings follow a 14-label vector.

A phantom is built like a radiograph: every structure adds attenuation (soft tissue, bone, fluid,
metal) or removes it (air in the lungs and trachea), and the film turns attenuation A into brightness
1 - exp(-mu * A). Air-filled lung is dark; a finding that fills alveoli with fluid removes air, so the
lung turns white exactly where the finding is; that is why opacities, effusions and an enlarged heart
all look right with one rule.

Speed comes from doing the expensive part once per image size. The anatomy of 48 "template patients"
(lung fields traced from real radiographs, ribs, clavicles, spine, vessels, ...) is drawn into an atlas
in a canonical frame; a phantom is one bilinear lookup of that atlas through a random pose (rotation,
shift, scale, body width), then findings, exposure and noise. Findings are smooth, so they are
computed on a coarse grid (half resolution, 32 to 64 px) and upsampled; the thin pleural line of a
pneumothorax and the tubes and lines are drawn at full resolution. Batches are rendered in chunks of
about 8 MB per tensor, which keeps memory reused and makes rendering several times faster.

Canonical frame: x from -1 (image left, the patient's right) to 1, y from -1 (top) to 1; the lungs fill
roughly LUNG_BOX.
"""
from __future__ import annotations

import functools
import importlib.resources
import io
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .labels import NUM_LABELS, label_index, label_indices

SIZE_RANGE = (32, 224)
EXTENT = 1.35  # templates cover canonical [-EXTENT, EXTENT]: room for the pose to move the patient
LUNG_BOX = (-0.80, 0.80, -0.74, 0.56)  # left, right, top, bottom of the two lungs, canonical frame
N_TEMPLATES = 48  # template patients, one real lung mask each
N_DEVICE_LAYOUTS = 32
MASK_RES = 128

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
COVID_LIKE = "bilateral peripheral ground-glass opacities, lower-zone predominant (label as Lung Opacity + Pneumonia)"


# ----------------------------------------------------------------------------------------------------
# Real lung masks (torchxrayvision ships 517 lung segmentations from public radiographs)

def lung_mask_archive() -> Path:
    return Path(str(importlib.resources.files("torchxrayvision") / "data" / "semantic_masks_v7labs_lungs.zip"))


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


# ----------------------------------------------------------------------------------------------------
# Drawing helpers, shared by the templates and the findings

def _soft(x: torch.Tensor, width: float) -> torch.Tensor:
    """A step from 0 (x < 0) to 1 (x > 0) over about `width`: antialiased edges at any resolution."""
    return torch.sigmoid(x / width)


def _smoothstep(lo: float, hi: float, x: torch.Tensor) -> torch.Tensor:
    t = ((x - lo) / (hi - lo)).clamp(0, 1)
    return t * t * (3 - 2 * t)


def _canonical_grid(pixels: int, extent: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates (x, y), each (pixels, pixels), spanning [-extent, extent]."""
    line = ((torch.arange(pixels) + 0.5) / pixels * 2 - 1) * extent
    return line[None, :].expand(pixels, pixels), line[:, None].expand(pixels, pixels)


def _chaikin(points: np.ndarray, rounds: int = 4) -> np.ndarray:
    """Round a polyline's corners (Chaikin's algorithm): tubes and vessels bend, they do not kink.

    `points` is (P, D); any extra columns (a per-point weight) are interpolated along.
    """
    for _ in range(rounds):
        q = 0.75 * points[:-1] + 0.25 * points[1:]
        r = 0.25 * points[:-1] + 0.75 * points[1:]
        points = np.concatenate([points[:1], np.stack([q, r], 1).reshape(-1, points.shape[1]), points[-1:]])
    return points


def _resample(curve: np.ndarray, weight, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Points `step` apart along a polyline (P, 2), with the weight interpolated along it."""
    seg = np.linalg.norm(np.diff(curve, axis=0), axis=1)
    along = np.concatenate([[0], np.cumsum(seg)])
    t = np.arange(0, along[-1], step)
    points = np.stack([np.interp(t, along, curve[:, 0]), np.interp(t, along, curve[:, 1])], 1)
    return points, np.interp(t, along, np.broadcast_to(weight, len(curve))) * step


def _splat(canvas: np.ndarray, points: np.ndarray, weight: np.ndarray, extent: float) -> None:
    """Add weighted canonical points into a canvas, each spread bilinearly over its four nearest pixels."""
    pixels = canvas.shape[0]
    xy = (points / extent + 1) / 2 * pixels - 0.5
    x0, y0 = np.floor(xy[:, 0]).astype(int), np.floor(xy[:, 1]).astype(int)
    fx, fy = xy[:, 0] - x0, xy[:, 1] - y0
    weight = weight * (pixels / (2 * extent))  # a line's brightness does not depend on the resolution
    for dx, dy, wt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = x0 + dx, y0 + dy
        ok = (xi >= 0) & (xi < pixels) & (yi >= 0) & (yi < pixels)
        np.add.at(canvas, (yi[ok], xi[ok]), (weight * wt)[ok])


def _stroke(canvas: np.ndarray, curve: np.ndarray, weight: float) -> None:
    """Draw a polyline (canonical points) as a thin antialiased line."""
    _splat(canvas, *_resample(_chaikin(curve), weight, 0.35 * 2 * EXTENT / canvas.shape[0]), EXTENT)


def _blur(images: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Separable Gaussian blur of (..., H, W) images, used only while building templates.

    Wide blurs run on a downsampled copy: the result is smooth anyway, and it keeps 224 px templates fast.
    """
    shape = images.shape
    factor = max(1, int(sigma_px // 2))
    if factor > 1:
        small = F.avg_pool2d(images.reshape(-1, 1, *shape[-2:]), factor, ceil_mode=True)
        small = _blur(small[:, 0], sigma_px / factor)
        return F.interpolate(small[:, None], size=shape[-2:], mode="bilinear", align_corners=False).view(shape)
    radius = max(1, int(3 * sigma_px))
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1) / sigma_px) ** 2)
    taps = (taps / taps.sum()).view(1, 1, -1)
    x = images.reshape(-1, 1, shape[-1])
    x = F.conv1d(F.pad(x, (radius, radius), mode="replicate"), taps).view(shape)
    x = x.transpose(-1, -2).reshape(-1, 1, shape[-2])
    x = F.conv1d(F.pad(x, (radius, radius), mode="replicate"), taps)
    return x.view(*shape[:-2], shape[-1], shape[-2]).transpose(-1, -2).contiguous()


# ----------------------------------------------------------------------------------------------------
# Anatomy templates: everything that does not depend on the labels, drawn once per size

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


@functools.lru_cache(maxsize=1)
def _vessel_trees() -> list[tuple[np.ndarray, np.ndarray]]:
    """Per template, lung markings as weighted points: vessel trees branching out from each hilum,
    thinning and fading to the periphery. Drawn once, in canonical units, and splatted at every size."""
    rng = np.random.default_rng(99)
    hila = _hila(_landmarks_all())
    trees = []
    for template_hila in hila.numpy():
        points, weights = [], []

        def branch(start, heading, length, weight, depth):
            headings = heading + np.cumsum(rng.normal(0, 0.12, 5))
            moves = np.stack([np.cos(headings), np.sin(headings)], 1) * length / 5
            path = np.concatenate([start[None], start + np.cumsum(moves, 0)])
            smooth = _chaikin(np.column_stack([path, np.linspace(weight, 0.75 * weight, len(path))]), 2)
            p, w = _resample(smooth[:, :2], smooth[:, 2], 0.004)
            points.append(p)
            weights.append(w)
            if depth:
                for turn in (-1, 1):
                    spread = turn * rng.uniform(0.25, 0.6)
                    branch(path[-1], headings[-1] + spread, length * rng.uniform(0.6, 0.85), weight * 0.72, depth - 1)

        for side, (hx, hy) in zip((-1, 1), template_hila):
            for angle in np.linspace(-0.42, 0.42, 7) * math.pi + rng.normal(0, 0.1, 7):
                heading = angle if side > 0 else math.pi - angle
                branch(np.array([hx, hy]) + rng.normal(0, 0.03, 2), heading, rng.uniform(0.12, 0.2), 1.3, 4)
        trees.append((np.concatenate(points), np.concatenate(weights)))
    return trees


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
    mid_x, mid_y = (left + right) / 2, (top + bottom) / 2
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


# ----------------------------------------------------------------------------------------------------
# Findings: opacities on a coarse grid, placed in each lung's own frame

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


# ----------------------------------------------------------------------------------------------------
# Rendering

def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or not SIZE_RANGE[0] <= size <= SIZE_RANGE[1]:
        raise ValueError(f"invalid image size {size!r}; expected an integer in [{SIZE_RANGE[0]}, {SIZE_RANGE[1]}]")
    return size


def _pixel_axes(pixels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Image coordinates in [-1, 1] at pixel centres, shaped to broadcast to (n, H, W)."""
    line = (torch.arange(pixels) + 0.5) / pixels * 2 - 1
    return line.view(1, 1, -1), line.view(1, -1, 1)


def _canonical_coords(pose: torch.Tensor, pixels: int, out: torch.Tensor | None = None):
    """(u, v), each (n, pixels, pixels): where each image pixel lands in the canonical frame."""
    x, y = _pixel_axes(pixels)
    p = pose[:, :, None, None]
    if out is None:
        out = torch.empty(len(pose), pixels, pixels, 2)
    u = torch.addcmul(p[:, 1] * y + p[:, 2], p[:, 0], x, out=out[..., 0])
    v = torch.addcmul(p[:, 4] * y + p[:, 5], p[:, 3], x, out=out[..., 1])
    return u, v


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
