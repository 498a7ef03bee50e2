"""The canonical frame and the drawing helpers shared by the anatomy templates, the findings and rendering.

Canonical frame: x from -1 (image left, the patient's right) to 1, y from -1 (top) to 1; the lungs fill
roughly LUNG_BOX.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


SIZE_RANGE = (32, 224)
EXTENT = 1.35  # templates cover canonical [-EXTENT, EXTENT]: room for the pose to move the patient
LUNG_BOX = (-0.80, 0.80, -0.74, 0.56)  # left, right, top, bottom of the two lungs, canonical frame
N_TEMPLATES = 48  # template patients, one real lung mask each
N_DEVICE_LAYOUTS = 32
MASK_RES = 128


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

    `points` is (..., P, D), one polyline or a batch of them; extra columns (a per-point weight) are
    interpolated along.
    """
    for _ in range(rounds):
        q = 0.75 * points[..., :-1, :] + 0.25 * points[..., 1:, :]
        r = 0.25 * points[..., :-1, :] + 0.75 * points[..., 1:, :]
        corners = np.stack([q, r], -2).reshape(*q.shape[:-2], -1, points.shape[-1])
        points = np.concatenate([points[..., :1, :], corners, points[..., -1:, :]], -2)
    return points


def _resample(curve: np.ndarray, weight, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Points `step` apart along a polyline (P, 2), with the weight interpolated along it."""
    return _resample_many(curve[None], np.broadcast_to(weight, len(curve))[None], step)[0]


def _resample_many(curves: np.ndarray, weights: np.ndarray, step: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """`_resample` for a batch of polylines (n, P, 2) with weights (n, P): each keeps its own point count."""
    along = np.cumsum(np.linalg.norm(np.diff(curves, axis=1), axis=2), 1)
    along = np.concatenate([np.zeros((len(curves), 1)), along], 1)
    resampled = []
    for curve, weight, distance in zip(curves, weights, along):
        t = np.arange(0, distance[-1], step)
        points = np.stack([np.interp(t, distance, curve[:, 0]), np.interp(t, distance, curve[:, 1])], 1)
        resampled.append((points, np.interp(t, distance, weight) * step))
    return resampled


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
