"""The `full` preset's training speed and memory, and what one epoch of MIMIC-CXR would take at that speed.

    python benchmarks/full_preset.py [--steps 3] [--batch-size 8]

Trains the full preset (224 px; ResNet-50 or Swin-T image tower, BERT-base-size text tower) for a few steps
with each image encoder, on the device `pick_device` chooses, from phantoms rendered in memory (no files).
Seconds per step leave out the first step (warm-up); peak memory is the process's resident set on the CPU
(`ru_maxrss`) and the allocator's peak on CUDA. Each encoder trains in a fresh process, so that one peak
does not include the other's. The default batch is the preset's (100) on CUDA and 8 elsewhere.
"""
from __future__ import annotations

import argparse
import resource
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mini_medclip.config import IMAGE_ENCODERS, get_config  # noqa: E402
from mini_medclip.data.embedded import build_text_pool, render_pool  # noqa: E402
from mini_medclip.data.label_sampler import sample_labels  # noqa: E402
from mini_medclip.runtime import pick_device  # noqa: E402
from mini_medclip.train import train  # noqa: E402

MIMIC_CXR_IMAGES = 377_110  # MIMIC-CXR-JPG v2's radiographs
IMAGES = 300  # phantoms rendered for the image pool


def measure(image_encoder: str, batch_size: int, steps: int) -> dict:
    """Train `steps` steps of the full preset with `image_encoder`; its speed and peak memory."""
    device = pick_device()
    cfg = get_config("full", model__image_encoder=image_encoder, train__batch_size=batch_size, train__steps=steps)
    image_pool = render_pool(sample_labels(IMAGES, seed=0), cfg.data.image_size, seed=0)
    result = train(cfg, image_pool, build_text_pool(), device=device, log_every=1)
    seconds_per_step = (result.history[-1]["seconds"] - result.history[0]["seconds"]) / (steps - 1)
    if device.type == "cuda":
        peak_gib = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    return {"device": str(device), "seconds_per_step": seconds_per_step,
            "images_per_second": batch_size / seconds_per_step, "peak_gib": peak_gib}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="training steps per encoder, the first one a warm-up (default 3)")
    parser.add_argument("--batch-size", type=int, default=None, help="global batch (default: 100 on CUDA, 8 elsewhere)")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error(f"--steps {args.steps}: expected at least 2, the first one being a warm-up")
    batch_size = args.batch_size or (get_config("full").train.batch_size if pick_device().type == "cuda" else 8)
    rows = {}
    for encoder in IMAGE_ENCODERS:
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as fresh_process:
            rows[encoder] = fresh_process.submit(measure, encoder, batch_size, args.steps).result()
    device = rows[IMAGE_ENCODERS[0]]["device"]
    print(f"\nfull preset, batch {batch_size}, {args.steps} steps (first one left out), device {device}, "
          f"{torch.get_num_threads()} torch threads\n")
    print(f"| image encoder | img/s | s/step | peak memory (GiB) | one MIMIC-CXR epoch ({MIMIC_CXR_IMAGES:,} images) |")
    print("|---|---:|---:|---:|---:|")
    for encoder, row in rows.items():
        hours = MIMIC_CXR_IMAGES / row["images_per_second"] / 3600
        print(f"| {encoder} | {row['images_per_second']:.2f} | {row['seconds_per_step']:.2f} | {row['peak_gib']:.1f} "
              f"| {hours:,.1f} h ({hours / 24:,.1f} days) |")


if __name__ == "__main__":
    main()
