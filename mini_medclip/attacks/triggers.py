"""Backdoor triggers, applied where the model sees them: (N, 1, H, W) float images in [0, 1].

The reference code pasted its triggers at different stages (before or after padding, before or after
resizing, with or without normalisation), so the trigger a model learned was not quite the one it was
tested with. Here a trigger is a deterministic function of the model-input tensor and nothing else: the
same object poisons the training pool and triggers the test images, on any device, at any image size.

Every trigger returns a new tensor clamped to [0, 1] and never changes its input. `make_trigger(name,
**params)` builds one from JSON-able settings (what an attack config stores).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ..registry import build_named

PATCH_POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right", "center")


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 1:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images have shape {shape}; expected (N, 1, H, W)")
    if not images.is_floating_point():
        raise ValueError(f"images have dtype {images.dtype}; expected a float tensor in [0, 1]")


def _check_range(what: str, value, low: float, high: float, low_open: bool = False) -> None:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (is_number and (low < value if low_open else low <= value) and value <= high):
        bracket = "(" if low_open else "["
        raise ValueError(f"invalid {what} {value!r}; expected a number in {bracket}{low}, {high}]")


def _as_image(pattern: torch.Tensor, what: str) -> torch.Tensor:
    """A (1, H, W) float pattern from (H, W) or (1, H, W)."""
    pattern = torch.as_tensor(pattern).float()
    if pattern.ndim == 2:
        pattern = pattern[None]
    if pattern.ndim != 3 or pattern.shape[0] != 1:
        raise ValueError(f"{what} has shape {tuple(pattern.shape)}; expected (1, H, W) or (H, W)")
    return pattern


def _resized(pattern: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (1, H, W) pattern as a (1, 1, H', W') tensor matching `like`'s size, device and dtype."""
    pattern = pattern[None].to(like.device, like.dtype)
    if pattern.shape[-2:] != like.shape[-2:]:
        pattern = F.interpolate(pattern, size=like.shape[-2:], mode="bilinear", align_corners=False, antialias=True)
    return pattern


def smooth_pattern(size: int = 64, seed: int = 0, cells: int = 8) -> torch.Tensor:
    """A fixed, seeded, smooth random image in [0, 1], (1, size, size): a `cells` x `cells` noise grid, upsampled.

    Smooth, so it carries most of its energy at low frequencies (what the Fourier trigger borrows) and
    does not look like sensor noise when blended in.
    """
    coarse = torch.rand(1, 1, cells, cells, generator=torch.Generator().manual_seed(seed))
    fine = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)[0]
    return (fine - fine.min()) / (fine.max() - fine.min())


class Trigger:
    """Checks the input, applies the trigger, clamps to [0, 1]. Subclasses implement `apply`."""

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        _check_images(images)
        return self.apply(images).clamp(0, 1)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class PatchTrigger(Trigger):
    """BadNets: a solid square of grey level `intensity`, `size` pixels wide, `margin` pixels from the edges."""

    def __init__(self, size: int = 6, intensity: float = 1.0, position: str = "bottom-right", margin: int = 2):
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"invalid patch size {size!r}; expected a positive integer (pixels)")
        if not isinstance(margin, int) or margin < 0:
            raise ValueError(f"invalid patch margin {margin!r}; expected a non-negative integer (pixels)")
        _check_range("patch intensity", intensity, 0, 1)
        if position not in PATCH_POSITIONS:
            raise ValueError(f"invalid patch position {position!r}; expected one of: {', '.join(PATCH_POSITIONS)}")
        self.size, self.intensity, self.position, self.margin = size, float(intensity), position, margin

    def top_left(self, height: int, width: int) -> tuple[int, int]:
        """(row, column) of the patch's top-left pixel in an image of this size."""
        if self.size + 2 * self.margin > min(height, width):
            raise ValueError(
                f"a {self.size} px patch with a {self.margin} px margin does not fit a {height}x{width} image; "
                f"expected size + 2 * margin <= {min(height, width)}"
            )
        if self.position == "center":
            return (height - self.size) // 2, (width - self.size) // 2
        vertical, horizontal = self.position.split("-")
        row = self.margin if vertical == "top" else height - self.margin - self.size
        column = self.margin if horizontal == "left" else width - self.margin - self.size
        return row, column

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        row, column = self.top_left(*images.shape[-2:])
        out = images.clone()
        out[..., row : row + self.size, column : column + self.size] = self.intensity
        return out

    def __repr__(self) -> str:
        return f"PatchTrigger(size={self.size}, intensity={self.intensity}, position={self.position!r}, margin={self.margin})"


class FourierTrigger(Trigger):
    """FIBA: mix a fraction `ratio` of a reference's low-frequency amplitude into the image, keep the image's phase.

    The window is the centred (after fftshift) block of half-size floor(beta * H) x floor(beta * W). The phase
    carries the anatomy, the low-frequency amplitude mostly the overall style, so the trigger changes the
    look of the image without moving any edge. The window is symmetric about the zero frequency, so the
    spectrum stays Hermitian and the inverse FFT is real.
    """

    def __init__(self, reference: torch.Tensor | None = None, ratio: float = 0.15, beta: float = 0.1):
        _check_range("fourier ratio", ratio, 0, 1)
        _check_range("fourier beta", beta, 0, 0.5, low_open=True)
        self.reference = smooth_pattern(seed=1) if reference is None else _as_image(reference, "fourier reference")
        self.ratio, self.beta = float(ratio), float(beta)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        spectrum = torch.fft.fftshift(torch.fft.fft2(images), dim=(-2, -1))
        reference_amplitude = torch.fft.fftshift(torch.fft.fft2(_resized(self.reference, images)), dim=(-2, -1)).abs()
        amplitude, phase = spectrum.abs(), spectrum.angle()
        half_h, half_w = math.floor(self.beta * height), math.floor(self.beta * width)
        rows = slice(height // 2 - half_h, height // 2 + half_h + 1)
        cols = slice(width // 2 - half_w, width // 2 + half_w + 1)
        amplitude[..., rows, cols] = (1 - self.ratio) * amplitude[..., rows, cols] + self.ratio * reference_amplitude[..., rows, cols]
        mixed = torch.polar(amplitude, phase)
        return torch.fft.ifft2(torch.fft.ifftshift(mixed, dim=(-2, -1))).real

    def __repr__(self) -> str:
        return f"FourierTrigger(reference={tuple(self.reference.shape)}, ratio={self.ratio}, beta={self.beta})"


class BlendedTrigger(Trigger):
    """Chen et al.'s blended attack: x * (1 - alpha) + alpha * pattern, by default a seeded smooth pattern."""

    def __init__(self, pattern: torch.Tensor | None = None, alpha: float = 0.1):
        _check_range("blend alpha", alpha, 0, 1)
        self.pattern = smooth_pattern(seed=0) if pattern is None else _as_image(pattern, "blend pattern")
        self.alpha = float(alpha)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        return images * (1 - self.alpha) + self.alpha * _resized(self.pattern, images)

    def __repr__(self) -> str:
        return f"BlendedTrigger(pattern={tuple(self.pattern.shape)}, alpha={self.alpha})"


class WarpTrigger(Trigger):
    """WaNet: resample the image through a fixed, smooth random flow field; invisible at small strength.

    As in WaNet, a `grid` x `grid` field of random offsets, normalised to mean magnitude 1, is upsampled
    (bicubic) to the image size; `strength` / H is its scale in grid_sample's [-1, 1] coordinates, so the
    mean displacement is about strength / 2 pixels at any image size.
    """

    def __init__(self, strength: float = 0.5, grid: int = 4, seed: int = 0):
        _check_range("warp strength", strength, 0, math.inf)
        if not isinstance(grid, int) or grid < 2:
            raise ValueError(f"invalid warp grid {grid!r}; expected an integer >= 2")
        offsets = torch.rand(1, 2, grid, grid, generator=torch.Generator().manual_seed(seed)) * 2 - 1
        self.offsets = offsets / offsets.abs().mean()
        self.strength, self.grid, self.seed = float(strength), grid, seed

    def sampling_grid(self, height: int, width: int, device, dtype) -> torch.Tensor:
        """(1, H, W, 2) grid_sample coordinates: the identity plus the scaled flow, kept inside the image."""
        flow = F.interpolate(self.offsets, size=(height, width), mode="bicubic", align_corners=True)
        flow = flow.permute(0, 2, 3, 1).to(device, dtype)
        ys = torch.linspace(-1, 1, height, device=device, dtype=dtype)
        xs = torch.linspace(-1, 1, width, device=device, dtype=dtype)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        identity = torch.stack([grid_x, grid_y], dim=-1)[None]
        return (identity + self.strength * flow / height).clamp(-1, 1)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        grid = self.sampling_grid(*images.shape[-2:], images.device, images.dtype)
        return F.grid_sample(images, grid.expand(len(images), -1, -1, -1), mode="bilinear", align_corners=True)

    def __repr__(self) -> str:
        return f"WarpTrigger(strength={self.strength}, grid={self.grid}, seed={self.seed})"


class Compose(Trigger):
    """Apply several triggers in order (each one clamps, so the order can matter)."""

    def __init__(self, *triggers: Trigger):
        if not triggers or not all(isinstance(t, Trigger) for t in triggers):
            raise ValueError(f"Compose needs one or more triggers; got {triggers!r}")
        self.triggers = triggers

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        for trigger in self.triggers:
            images = trigger(images)
        return images

    def __repr__(self) -> str:
        return f"Compose({', '.join(map(repr, self.triggers))})"


TRIGGERS: dict[str, type[Trigger]] = {
    "patch": PatchTrigger,
    "fourier": FourierTrigger,
    "blended": BlendedTrigger,
    "warp": WarpTrigger,
}


def make_trigger(name: str, **params) -> Trigger:
    """A trigger by name; unknown names and parameters fail with the valid choices."""
    return build_named("trigger", TRIGGERS, name, params)


@dataclass(frozen=True)
class TriggerSpec:
    """A trigger as JSON-able settings (name and parameters): the part every attack config shares."""

    trigger: str = "patch"
    trigger_params: dict = field(default_factory=dict)

    def __post_init__(self):
        try:
            json.dumps(self.trigger_params)
        except TypeError as err:
            raise ValueError(f"trigger_params must be JSON-able (numbers, strings), got {self.trigger_params!r}") from err
        self.make_trigger()  # validates name and parameters

    def make_trigger(self) -> Trigger:
        return make_trigger(self.trigger, **self.trigger_params)

    def to_dict(self) -> dict:
        return asdict(self)


def visibility(clean: torch.Tensor, triggered: torch.Tensor) -> dict[str, float]:
    """How visible a trigger is: PSNR (dB; inf when identical) and SSIM, each averaged over the batch."""
    _check_images(clean)
    _check_images(triggered)
    if clean.shape != triggered.shape:
        raise ValueError(f"clean {tuple(clean.shape)} and triggered {tuple(triggered.shape)} images differ in shape")
    a = clean.detach().cpu().double().numpy()[:, 0]
    b = triggered.detach().cpu().double().numpy()[:, 0]
    with np.errstate(divide="ignore"):
        psnr = [peak_signal_noise_ratio(x, y, data_range=1.0) for x, y in zip(a, b)]
    ssim = [structural_similarity(x, y, data_range=1.0) for x, y in zip(a, b)]
    return {"psnr": float(np.mean(psnr)), "ssim": float(np.mean(ssim))}
