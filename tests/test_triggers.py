"""Triggers: shape, range, determinism, exact placement, and the property that defines each one."""
from __future__ import annotations

import pytest
import torch

from mini_medclip.attacks.triggers import (
    TRIGGERS, BlendedTrigger, Compose, FourierTrigger, PatchTrigger, WarpTrigger, make_trigger, smooth_pattern,
    visibility,
)


def smooth_images(n: int = 3, size: int = 32) -> torch.Tensor:
    """Mid-grey smooth images: like radiographs, little high-frequency content, far from 0 and 1."""
    return torch.stack([0.3 + 0.4 * smooth_pattern(size, seed=10 + i) for i in range(n)])


@pytest.mark.parametrize("name", list(TRIGGERS))
def test_every_trigger_is_batched_clamped_deterministic_and_leaves_its_input_alone(name):
    images = torch.rand(5, 1, 32, 32)
    before = images.clone()
    trigger = make_trigger(name)
    out = trigger(images)
    assert out.shape == images.shape and out.dtype == images.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(images, before)
    assert torch.equal(out, make_trigger(name)(images))  # a fresh object: same trigger
    assert torch.allclose(out[2:3], trigger(images[2:3]), atol=1e-5)  # per-image, not batch-dependent
    assert name in repr(trigger).lower()
    if torch.cuda.is_available():
        torch.testing.assert_close(trigger(images.cuda()).cpu(), out, atol=1e-4, rtol=0)


def test_patch_location_and_size_are_exact():
    images = torch.zeros(2, 1, 20, 24)
    expected = {"top-left": (1, 1), "top-right": (1, 19), "bottom-left": (15, 1), "bottom-right": (15, 19), "center": (8, 10)}
    for position, (row, col) in expected.items():
        out = PatchTrigger(size=4, intensity=0.5, position=position, margin=1)(images)
        mask = torch.zeros(20, 24, dtype=torch.bool)
        mask[row : row + 4, col : col + 4] = True
        assert torch.all(out[:, 0][:, mask] == 0.5), position
        assert torch.all(out[:, 0][:, ~mask] == 0), position


def test_patch_checks_its_settings_and_the_image_size():
    with pytest.raises(ValueError, match="position"):
        PatchTrigger(position="left")
    with pytest.raises(ValueError, match="intensity"):
        PatchTrigger(intensity=2.0)
    with pytest.raises(ValueError, match="does not fit"):
        PatchTrigger(size=30, margin=2)(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        PatchTrigger()(torch.zeros(1, 3, 32, 32))


def test_fourier_keeps_the_phase_and_ratio_zero_is_identity():
    images = smooth_images()
    out = FourierTrigger(ratio=0.3, beta=0.2)(images)
    assert (out - images).abs().max() > 1e-3
    assert out.min() > 0 and out.max() < 1  # nothing clamped, so the phase comparison is exact
    spectrum_in, spectrum_out = torch.fft.fft2(images.double()), torch.fft.fft2(out.double())
    significant = (spectrum_in.abs() > 1e-3) & (spectrum_out.abs() > 1e-3)
    phase_gap = torch.angle(spectrum_out * spectrum_in.conj())[significant]
    assert phase_gap.abs().max() < 1e-3
    torch.testing.assert_close(FourierTrigger(ratio=0.0)(images), images, atol=1e-5, rtol=0)


def test_fourier_resizes_its_reference_and_changes_only_low_frequencies():
    images = smooth_images(size=40)
    trigger = FourierTrigger(reference=smooth_pattern(64, seed=3), ratio=0.5, beta=0.1)
    out = trigger(images)
    shifted_in = torch.fft.fftshift(torch.fft.fft2(images), dim=(-2, -1)).abs()
    shifted_out = torch.fft.fftshift(torch.fft.fft2(out), dim=(-2, -1)).abs()
    outside = torch.ones(40, 40, dtype=torch.bool)
    outside[16:25, 16:25] = False  # half-size floor(0.1 * 40) = 4 around the centre 20
    torch.testing.assert_close(shifted_out[..., outside], shifted_in[..., outside], atol=1e-3, rtol=1e-4)


def test_blend_and_warp_are_identity_at_zero_and_blend_is_the_convex_mix():
    images = torch.rand(3, 1, 32, 32)
    torch.testing.assert_close(BlendedTrigger(alpha=0.0)(images), images)
    torch.testing.assert_close(WarpTrigger(strength=0.0)(images), images, atol=1e-5, rtol=0)  # float32 grid rounding
    pattern = torch.full((1, 32, 32), 0.8)
    torch.testing.assert_close(BlendedTrigger(pattern, alpha=0.25)(images), 0.75 * images + 0.25 * 0.8)


def test_warp_moves_pixels_by_a_fraction_of_a_pixel_and_depends_on_the_seed():
    images = smooth_images()
    a, b = WarpTrigger(seed=0)(images), WarpTrigger(seed=1)(images)
    assert not torch.allclose(a, b)
    flow = WarpTrigger(strength=0.5).sampling_grid(32, 32, "cpu", torch.float32) - WarpTrigger(strength=0.0).sampling_grid(32, 32, "cpu", torch.float32)
    mean_shift_pixels = flow.abs().mean() * (32 - 1) / 2
    assert 0.05 < mean_shift_pixels < 0.5


def test_compose_applies_in_order():
    images = torch.zeros(1, 1, 16, 16)
    patch, blend = PatchTrigger(size=2, intensity=1.0, margin=0), BlendedTrigger(torch.zeros(1, 16, 16), alpha=0.5)
    torch.testing.assert_close(Compose(patch, blend)(images), blend(patch(images)))
    assert Compose(patch, blend)(images).max() == 0.5 and Compose(blend, patch)(images).max() == 1.0
    assert repr(Compose(patch, blend)).startswith("Compose(PatchTrigger(")


def test_make_trigger_names_the_valid_choices():
    with pytest.raises(ValueError, match="blended, fourier, patch, warp"):
        make_trigger("sticker")
    with pytest.raises(ValueError, match="expected some of: size, intensity, position, margin"):
        make_trigger("patch", colour=1.0)
    with pytest.raises(ValueError, match="ratio"):
        make_trigger("fourier", ratio=1.5)
    assert make_trigger("patch", size=3, position="center").position == "center"


def test_visibility_warp_is_nearly_invisible_a_patch_is_not():
    images = smooth_images(size=64)
    warp = visibility(images, WarpTrigger()(images))
    patch = visibility(images, PatchTrigger(size=8, intensity=1.0)(images))
    assert warp["psnr"] > 40 and warp["ssim"] > 0.99
    assert patch["psnr"] < 30 and patch["ssim"] < warp["ssim"]
    assert visibility(images, images)["psnr"] == float("inf")
