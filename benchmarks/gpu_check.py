"""The GPU check: every chapter on the GPU, a few hundred `full`-preset steps per image encoder, the tiny
clean model's training time; one table at the end.

    bash benchmarks/gpu_check.sh          # on a CUDA machine (what the script is for)
    python benchmarks/gpu_check.py --smoke  # a few steps, no chapters: checks the script itself on a CPU
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import pandas as pd
import torch

from chapter_times import chapters, run
from mini_medclip import get_config, pick_device
from mini_medclip.data.embedded import embedded_data
from mini_medclip.train import train


def peak_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")


def timed_training(cfg, device: torch.device) -> dict:
    """Train `cfg` without validation; images per second over the optimisation time, peak GPU memory."""
    image_pool, text_pool, _ = embedded_data(cfg)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result = train(cfg, image_pool, text_pool, None, device=device)
    images = cfg.train.steps * cfg.train.batch_size
    return {"seconds": round(result.seconds, 1), "images/s": round(images / result.seconds, 1),
            "peak GiB": round(peak_gib(device), 2), "steps": cfg.train.steps, "batch": cfg.train.batch_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full-steps", type=int, default=300, help="steps of each full-preset training")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and no chapters, to check the script on a CPU")
    args = parser.parse_args()
    device = pick_device()
    os.environ.setdefault("MINI_MEDCLIP_CACHE", tempfile.mkdtemp(prefix="mini_medclip_gpu_"))
    rows = {}
    if not args.smoke:
        for path in chapters():
            rows[f"chapter {path.stem} (cold)"] = {"seconds": round(run(path), 1)}
            print(path.stem, rows[f"chapter {path.stem} (cold)"], flush=True)
    steps = 2 if args.smoke else args.full_steps
    small = {"data__n_train_images": 64, "data__image_size": 64, "train__batch_size": 4} if args.smoke else {"data__n_train_images": 5_000}
    for encoder in ("resnet", "vit"):
        cfg = get_config("full", model__image_encoder=encoder, train__steps=steps, **small)
        rows[f"full preset, {encoder} ({cfg.model.resnet_arch if encoder == 'resnet' else cfg.model.vit_arch})"] = timed_training(cfg, device)
    tiny = get_config("tiny", train__steps=2) if args.smoke else get_config("tiny")
    rows["tiny clean model"] = timed_training(tiny, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"\n{name}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}")
    print(pd.DataFrame(rows).T.to_markdown())


if __name__ == "__main__":
    main()
